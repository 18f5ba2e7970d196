//! Syslog, fast.log and Redis end to end: real files replayed through the pipeline, real
//! `logger` sending to a running alertflow over UDP, TCP and a Unix socket, TLS with a CA
//! made by `openssl` in the test, a real `redis-server` in its three Suricata modes, and
//! abusive senders.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alertflow::ingest::Format;
use common::redis::Redis;
use common::*;
use serde_json::Value;

/// Whether `f` came true within `secs`.
fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn wait_for(what: &str, secs: u64, f: impl FnMut() -> bool) {
    assert!(wait_until(secs, f), "timed out waiting for {what}");
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run_config(dir: &Path, sources: &str) -> Running {
    let cfg = dir.join("c.toml");
    let text = format!("[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"\"\n\n{sources}", dir.join("archive").display());
    std::fs::write(&cfg, text).unwrap();
    Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "warn").stdout(Stdio::null()).spawn().unwrap(),
    )
}

fn metric(port: u16, name: &str) -> f64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[test]
fn eve_over_syslog_archives_the_same_event_as_the_eve_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let files: Vec<PathBuf> =
        ["syslog-suricata-eve-rfc3164.log", "syslog-suricata-eve-rfc5424.log"].iter().map(|f| data_dir().join("syslog").join(f)).collect();
    let summary = replay_as(&mut cfg, &files, Format::Auto);
    let rows = read_archive(dir.path());
    let expected: Vec<Value> = std::fs::read_to_string(data_dir().join("syslog/syslog-suricata-eve.expected.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: usize = files.iter().map(|f| std::fs::read_to_string(f).unwrap().lines().count()).sum();
    assert_eq!(rows.len(), lines, "every message archived: {summary:?}");
    let (mut eve, mut cut) = (0, 0);
    for r in &rows {
        assert_eq!(r.syslog_hostname.as_deref(), Some("sensor01"));
        assert_eq!((r.syslog_facility, r.syslog_severity), (Some(21), Some(6)));
        assert_eq!(r.syslog_app_name.as_deref(), Some("suricata"));
        let payload = &r.raw[r.raw.find('{').unwrap()..];
        match reference_row(payload, "replay") {
            Some(want) => {
                eve += 1;
                // The EVE fields are exactly those of the EVE line itself.
                let got = Row {
                    syslog_facility: None,
                    syslog_severity: None,
                    syslog_hostname: None,
                    syslog_app_name: None,
                    syslog_procid: None,
                    syslog_msgid: None,
                    syslog_structured_data: None,
                    syslog_message: None,
                    partition: String::new(),
                    raw: want.raw.clone(),
                    sensor: want.sensor.clone(),
                    ..r.clone()
                };
                assert_eq!(got, want);
                assert_eq!(r.syslog_message, None);
            }
            None => {
                // rsyslog cut the payload at 8 KiB: kept as a syslog event, not lost.
                cut += 1;
                assert_eq!(r.event_type.as_deref(), Some("syslog"));
                assert!(r.syslog_message.as_deref().unwrap().starts_with('{'));
            }
        }
    }
    let incomplete = expected.iter().filter(|e| e["payload_is_complete_json"] == false).count() * 2;
    assert_eq!(cut, incomplete, "truncated payloads");
    println!("EVE over syslog: {eve} events equal their EVE line, {cut} truncated payloads kept as syslog events");
}

#[test]
fn fast_log_and_syslog_alerts_archive_as_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let fast = data_dir().join("fastlog/fast-log-suricata-verify-8.0.6.log");
    let alerts = data_dir().join("syslog/syslog-suricata-alert-rfc5424.log");
    replay_as(&mut cfg, &[fast.clone(), alerts.clone()], Format::Auto);
    let rows = read_archive(dir.path());
    let n_fast = std::fs::read_to_string(&fast).unwrap().lines().count();
    let n_sys = std::fs::read_to_string(&alerts).unwrap().lines().count();
    assert_eq!(rows.len(), n_fast + n_sys);
    assert!(rows.iter().all(|r| r.event_type.as_deref() == Some("alert") && r.alert_signature_id.is_some() && r.src_ip.is_some()));
    let from_syslog: Vec<_> = rows.iter().filter(|r| r.syslog_hostname.is_some()).collect();
    assert_eq!(from_syslog.len(), n_sys);
    // The header time stamps the alert (the message itself carries none).
    assert!(from_syslog.iter().all(|r| r.timestamp.is_some() && r.partition.starts_with("date=2026-11-28")));
    // Raw keeps the whole message as received.
    let first = std::fs::read_to_string(&alerts).unwrap().lines().next().unwrap().to_string();
    assert!(rows.iter().any(|r| r.raw == first));
    // --format fast rejects what is not a fast alert, with its reason.
    let dir2 = tempfile::tempdir().unwrap();
    let mixed = dir2.path().join("mixed.log");
    std::fs::write(&mixed, format!("{}\nnot an alert\n", std::fs::read_to_string(&fast).unwrap().lines().next().unwrap())).unwrap();
    let mut cfg2 = test_config(&dir2.path().join("a"));
    let s = replay_as(&mut cfg2, &[mixed], Format::Fast);
    assert_eq!(s.rows_archived, 1);
    assert_eq!(dead_letters(&dir2.path().join("a"))[0]["reason"], "invalid_fast_alert");
}

#[test]
fn fast_log_alert_on_a_raw_packet_archives_without_addresses() {
    // Suricata's fast.log for a packet without a decoded IP header: the packet in hex.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fast.log");
    let raw = "10/12/2023-14:02:11.123456  [**] [1:2200003:2] SURICATA IPv4 truncated packet [**] [Classification: Generic Protocol Command Decode] [Priority: 3] [**] [Raw pkt: 00 1B 21 3A 4C 5D 00 1C 7E 0A 44 20 08 00 45 00 ] [pcap file packet: 7]";
    let ip = "10/12/2023-14:02:12.000001  [**] [1:2100498:7] GPL ATTACK_RESPONSE id check returned root [**] [Classification: Potentially Bad Traffic] [Priority: 2] {TCP} 192.0.2.10:80 -> 198.51.100.7:51234";
    std::fs::write(&log, format!("{raw}\n{ip}\n")).unwrap();
    let mut cfg = test_config(&dir.path().join("a"));
    let s = replay_as(&mut cfg, &[log], Format::Fast);
    assert_eq!((s.rows_archived, s.rejected.values().sum::<u64>()), (2, 0), "{s:?}");
    let rows = read_archive(&dir.path().join("a"));
    let r = rows.iter().find(|r| r.raw == raw).expect("the raw-packet alert is archived");
    assert_eq!((r.event_type.as_deref(), r.alert_signature_id), (Some("alert"), Some(2_200_003)));
    assert_eq!((r.src_ip.as_deref(), r.dest_ip.as_deref()), (None, None));
    assert!(r.timestamp.is_some());
    let r = rows.iter().find(|r| r.raw == ip).unwrap();
    assert_eq!(r.src_ip.as_deref(), Some("192.0.2.10"));
}

fn logger(args: &[&str], msg: &str) {
    let st = Command::new("logger").args(args).arg(msg).status().expect("util-linux logger is installed");
    assert!(st.success(), "logger {args:?} failed");
}

#[test]
fn logger_over_udp_tcp_and_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (udp, tcp) = (free_udp_port(), free_port());
    let sock = dir.path().join("log.sock");
    let sources = format!(
        "[[sources]]\nname = \"udp\"\ntype = \"syslog_udp\"\nlisten = \"127.0.0.1:{udp}\"\n\n[[sources]]\nname = \"tcp\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tcp}\"\noverflow = \"block\"\n\n[[sources]]\nname = \"devlog\"\ntype = \"unix_dgram\"\nformat = \"syslog\"\npath = \"{}\"\n",
        sock.display()
    );
    let child = run_config(dir.path(), &sources);
    wait_for("listeners", 30, || TcpStream::connect(("127.0.0.1", tcp)).is_ok() && sock.exists());
    let alert = "[1:2019401:3] ET POLICY test [Classification: Potential Corporate Privacy Violation] [Priority: 2] {TCP} 10.0.0.1:1234 -> 10.0.0.2:80";
    let udp_s = udp.to_string();
    let tcp_s = tcp.to_string();
    logger(
        &[
            "--udp",
            "-n",
            "127.0.0.1",
            "-P",
            &udp_s,
            "--rfc5424",
            "-t",
            "suricata",
            "--sd-id",
            "origin@32473",
            "--sd-param",
            "ip=\"10.0.0.9\"",
            "-p",
            "local5.info",
        ],
        alert,
    );
    logger(&["--udp", "-n", "127.0.0.1", "-P", &udp_s, "--rfc3164", "-t", "app", "-p", "user.warning"], "plain udp 3164");
    logger(&["--tcp", "-n", "127.0.0.1", "-P", &tcp_s, "--rfc5424", "--octet-count", "-t", "app", "--msgid", "ID7"], "tcp octet counted\nwith a newline");
    logger(&["--tcp", "-n", "127.0.0.1", "-P", &tcp_s, "--rfc3164", "-t", "app"], "tcp lf framed");
    let sock_s = sock.display().to_string();
    logger(&["-u", &sock_s, "--socket-errors=on", "-t", "local", "-i"], "unix socket message");
    let archive = dir.path().join("archive");
    wait_for("5 rows", 30, || read_archive(&archive).len() >= 5);
    child.stop();
    let rows = read_archive(&archive);
    assert_eq!(rows.len(), 5, "{rows:#?}");
    let by_src = |s: &str| rows.iter().filter(|r| r.source.as_deref() == Some(s)).cloned().collect::<Vec<_>>();
    let udp_rows = by_src("udp");
    let a = udp_rows.iter().find(|r| r.event_type.as_deref() == Some("alert")).expect("alert over udp");
    assert_eq!((a.alert_signature_id, a.alert_severity, a.src_port, a.dest_ip.as_deref()), (Some(2019401), Some(2), Some(1234), Some("10.0.0.2")));
    assert_eq!((a.syslog_facility, a.syslog_severity, a.syslog_app_name.as_deref()), (Some(21), Some(6), Some("suricata")));
    let sd: Value = serde_json::from_str(a.syslog_structured_data.as_deref().unwrap()).unwrap();
    assert_eq!(sd["origin@32473"]["ip"], "10.0.0.9");
    let p = udp_rows.iter().find(|r| r.event_type.as_deref() == Some("syslog")).unwrap();
    assert_eq!((p.syslog_severity, p.syslog_message.as_deref(), p.syslog_app_name.as_deref()), (Some(4), Some("plain udp 3164"), Some("app")));
    let tcp_rows = by_src("tcp");
    assert!(tcp_rows.iter().any(|r| r.syslog_message.as_deref() == Some("tcp octet counted\nwith a newline") && r.syslog_msgid.as_deref() == Some("ID7")));
    assert!(tcp_rows.iter().any(|r| r.syslog_message.as_deref() == Some("tcp lf framed")));
    let local = by_src("devlog");
    assert_eq!(local[0].syslog_message.as_deref(), Some("unix socket message"));
    assert_eq!(local[0].syslog_app_name.as_deref(), Some("local"));
    assert!(local[0].syslog_procid.is_some());
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, by `openssl`.
fn make_pki(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=alertflow test CA",
    ]);
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{who}.ext"),
        ]);
    }
}

#[test]
fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    make_pki(&pki);
    let (port, mport) = (free_port(), free_port());
    let p = |f: &str| pki.join(f).display().to_string();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"tls\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{port}\"\noverflow = \"block\"\n\n[sources.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nhandshake_timeout_secs = 2\n",
        dir.path().join("archive").display(), p("server.pem"), p("server.key"), p("ca.pem"))).unwrap();
    let child = Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "warn").stdout(Stdio::null()).spawn().unwrap(),
    );
    wait_for("listener", 30, || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let send = |with_cert: bool, msg: &str| -> bool {
        let mut args = vec![
            "s_client".to_string(),
            "-connect".into(),
            format!("127.0.0.1:{port}"),
            "-CAfile".into(),
            p("ca.pem"),
            "-verify_return_error".into(),
            "-quiet".into(),
        ];
        if with_cert {
            args.extend(["-cert".into(), p("client.pem"), "-key".into(), p("client.key")]);
        }
        let mut c = Command::new("openssl").args(&args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let framed = format!("{} {msg}", msg.len());
        let _ = c.stdin.take().unwrap().write_all(framed.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The readiness probe's own connection fails its handshake too: the counter is read
    // once it has settled, and only its change is asserted.
    let failures = || metric(mport, "alertflow_source_tls_failures_total");
    let mut last = -1.0;
    wait_for("the failure counter to settle", 30, || {
        std::thread::sleep(Duration::from_millis(300));
        let now = failures();
        std::mem::replace(&mut last, now) == now
    });
    let before = failures();
    send(true, "<13>1 2026-11-28T10:00:00Z h app - - - over tls");
    let archive = dir.path().join("archive");
    wait_for("the TLS message", 30, || read_archive(&archive).len() == 1);
    assert_eq!(failures(), before, "a good handshake is not a failure");
    send(false, "<13>1 2026-11-28T10:00:00Z h app - - - no client certificate");
    wait_for("the refused handshake counted", 30, || failures() >= before + 1.0);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(failures(), before + 1.0, "exactly the client without a certificate");
    // A client that connects and never starts its handshake is closed after
    // `handshake_timeout_secs` (2) and counted as a handshake timeout.
    let handshakes = || metric_where(mport, "alertflow_source_timeouts_total", "kind=\"handshake\"");
    assert_eq!(handshakes(), 0.0);
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut byte = [0u8; 1];
    match silent.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the server should close a silent TLS client, got {other:?}"),
    }
    wait_for("the handshake timeout counted", 30, || handshakes() == 1.0);
    assert_eq!(failures(), before + 1.0, "a timeout is not a handshake failure");
    std::thread::sleep(Duration::from_millis(500));
    child.stop();
    let rows = read_archive(&archive);
    assert_eq!(rows.len(), 1, "only the client with a certificate got through");
    assert_eq!(rows[0].syslog_message.as_deref(), Some("over tls"));
}

/// Every sample of the metric `name` (exact name) whose labels contain `label`, summed.
fn metric_where(port: u16, name: &str, label: &str) -> f64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A frame that claims 4 GiB and a 1 byte-per-second sender are cut by the frame timeout
/// (not the idle one), 300 idle connections against a cap of 64 never hold more than 64
/// slots, every connection is either accepted or refused, and afterwards a good sender's
/// messages all arrive.
#[test]
fn abusive_senders_do_not_stop_a_good_one() {
    // The test holds 300+ sockets of its own.
    alertflow::pipeline::descriptors::raise_limit();
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"tcp\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{port}\"\nmax_connections = 64\nidle_timeout_secs = 2\nframe_timeout_secs = 2\nmax_frame_bytes = 4096\noverflow = \"block\"\n",
        dir.path().join("archive").display())).unwrap();
    let child = Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "error").stdout(Stdio::null()).spawn().unwrap(),
    );
    let tcp = |m: &str| metric_where(mport, m, "source=\"tcp\"");
    // Connections this test made that reached the listener (each is accepted or refused).
    let mut made = 0u32;
    wait_for("listener", 30, || {
        let up = TcpStream::connect(("127.0.0.1", port)).is_ok();
        made += up as u32;
        up && TcpStream::connect(("127.0.0.1", mport)).is_ok()
    });
    // Every probe accepted (one can still wait in the listen backlog) and closed.
    wait_for("the probes accepted and closed", 30, || {
        tcp("alertflow_source_connections_total") + tcp("alertflow_source_connections_refused_total") == made as f64
            && tcp("alertflow_source_active_connections") == 0.0
    });
    // A frame that claims 4 GiB, then trickles.
    let mut huge = TcpStream::connect(("127.0.0.1", port)).unwrap();
    huge.write_all(b"4294967295 <13>1 - - - - - - x").unwrap();
    // A 1 byte-per-second sender.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"<").unwrap();
    made += 2;
    wait_for("both abusers accepted", 30, || tcp("alertflow_source_active_connections") == 2.0);
    // 300 connections that never send: 62 take the free slots, the rest are refused.
    let idle: Vec<TcpStream> = (0..300).map(|i| TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("idle connection {i}: {e}"))).collect();
    made += 300;
    let mut most = 0.0f64;
    wait_for("every connection accepted or refused", 30, || {
        most = most.max(tcp("alertflow_source_active_connections"));
        tcp("alertflow_source_connections_total") + tcp("alertflow_source_connections_refused_total") == made as f64
    });
    let accepted = tcp("alertflow_source_connections_total");
    let refused = tcp("alertflow_source_connections_refused_total");
    // The abusers keep the frame open but never idle: only the frame timeout can cut them.
    let mut ticks = 0;
    wait_for("two frame timeouts", 30, || {
        let _ = huge.write_all(b"xx");
        let _ = slow.write_all(b"1");
        most = most.max(tcp("alertflow_source_active_connections"));
        ticks += 1;
        std::thread::sleep(Duration::from_millis(250));
        tcp("alertflow_source_timeouts_total") >= accepted - (made - 302) as f64
            && metric_where(mport, "alertflow_source_timeouts_total", "kind=\"frame\"") >= 2.0
    });
    assert!(ticks > 1, "the abusers trickled while they were open");
    assert!(most <= 64.0, "never more connections open than the cap: {most}");
    assert!(refused >= 300.0 - 64.0, "the excess is refused: {refused} refused, {accepted} accepted");
    // Frame timeouts for the two abusers; idle timeouts for the accepted idle ones.
    assert_eq!(metric_where(mport, "alertflow_source_timeouts_total", "kind=\"frame\""), 2.0);
    let idle_accepted = accepted - (made - 302) as f64 - 2.0;
    assert_eq!(metric_where(mport, "alertflow_source_timeouts_total", "kind=\"idle\""), idle_accepted, "{accepted} accepted");
    drop(idle);
    wait_for("slots freed", 30, || tcp("alertflow_source_active_connections") == 0.0);
    let mut good = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for i in 0..100 {
        writeln!(good, "<13>1 2026-11-28T10:00:00Z h good - - - message {i}").unwrap();
    }
    drop(good);
    let archive = dir.path().join("archive");
    wait_for("the good sender's 100 messages", 30, || read_archive(&archive).len() >= 100);
    assert!(tcp("alertflow_source_oversize_frames_total") >= 1.0);
    child.stop();
    let rows = read_archive(&archive);
    assert_eq!(rows.len(), 100);
    assert!(rows.iter().all(|r| r.syslog_app_name.as_deref() == Some("good")), "only the good sender's messages: {rows:#?}");
    // The trickle was cut off and recorded as such.
    assert!(dead_letters(&archive).iter().any(|d| d["reason"] == "truncated"));
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `local` (another client).
fn connect_from(local: &str, port: u16) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
        sock.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// One host holding 100 idle connections gets `max_connections_per_client` (8) of them;
/// the rest are refused as `per_client`, and a sender from another address delivers all
/// its messages while the flood is still held.
#[test]
fn one_client_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"tcp\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{port}\"\nmax_connections = 64\nmax_connections_per_client = 8\nidle_timeout_secs = 120\noverflow = \"block\"\n",
        dir.path().join("archive").display())).unwrap();
    let child = Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "error").stdout(Stdio::null()).spawn().unwrap(),
    );
    let tcp = |m: &str, label: &str| metric_where(mport, m, label);
    let mut made = 0u32;
    wait_for("listener", 30, || {
        let up = TcpStream::connect(("127.0.0.1", port)).is_ok();
        made += up as u32;
        up && TcpStream::connect(("127.0.0.1", mport)).is_ok()
    });
    // Every probe accepted (a probe can still wait in the listen backlog when the metrics
    // come up) and closed, its slot free again, before the flood.
    wait_for("the probes accepted and closed", 30, || {
        tcp("alertflow_source_connections_total", "") + tcp("alertflow_source_connections_refused_total", "") == made as f64
            && tcp("alertflow_source_active_connections", "") == 0.0
    });
    let flood: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    made += 100;
    wait_for("every connection accepted or refused", 30, || {
        tcp("alertflow_source_connections_total", "") + tcp("alertflow_source_connections_refused_total", "") == made as f64
    });
    assert_eq!(tcp("alertflow_source_active_connections", ""), 8.0, "the flooding host holds its 8 slots");
    assert_eq!(tcp("alertflow_source_connections_refused_total", "reason=\"per_client\""), 92.0);
    assert_eq!(tcp("alertflow_source_connections_refused_total", "reason=\"max_connections\""), 0.0);
    let mut good = connect_from("127.0.0.2", port);
    for i in 0..100 {
        writeln!(good, "<13>1 2026-11-28T10:00:00Z h good - - - message {i}").unwrap();
    }
    drop(good);
    let archive = dir.path().join("archive");
    wait_for("the other host's 100 messages", 30, || read_archive(&archive).len() == 100);
    assert_eq!(tcp("alertflow_source_active_connections", ""), 8.0, "the flood was still held");
    drop(flood);
    child.stop();
    assert!(read_archive(&archive).iter().all(|r| r.syslog_app_name.as_deref() == Some("good")));
}

/// 500 connections with one short message each, under the default `drop` policy: each
/// connection's message is a batch of its own; the queue is bounded in bytes, so 500 small
/// batches fit and none is dropped.
#[test]
fn many_small_senders_are_not_dropped() {
    alertflow::pipeline::descriptors::raise_limit();
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_port(), free_port());
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 200\n\n[pipeline]\nmax_line_bytes = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"tcp\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{port}\"\nmax_connections_per_client = 1024\n",
        dir.path().join("archive").display())).unwrap();
    let child = Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "error").stdout(Stdio::null()).spawn().unwrap(),
    );
    wait_for("listener", 30, || TcpStream::connect(("127.0.0.1", port)).is_ok() && TcpStream::connect(("127.0.0.1", mport)).is_ok());
    let batches_before = metric(mport, "alertflow_source_batches_total{source=\"tcp\"}");
    // Every connection open first, then one message on each: 500 senders at once.
    let mut conns: Vec<TcpStream> = (0..500).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        if i == 7 {
            // Longer than `max_line_bytes`: a dead letter that must name this connection.
            writeln!(c, "<13>1 2026-11-28T10:00:00Z h small - - - {}", "x".repeat(200)).unwrap();
        } else {
            writeln!(c, "<13>1 2026-11-28T10:00:00Z h small - - - message {i}").unwrap();
        }
    }
    let seventh = format!("tcp://{}", conns[7].local_addr().unwrap());
    drop(conns);
    let archive = dir.path().join("archive");
    wait_for("499 messages", 60, || read_archive(&archive).len() == 499);
    assert_eq!(metric(mport, "alertflow_source_dropped_lines_total"), 0.0);
    // The listener coalesces the connections' messages into shared batches.
    let batches = metric(mport, "alertflow_source_batches_total{source=\"tcp\"}") - batches_before;
    assert!((1.0..=100.0).contains(&batches), "{batches} batches for 500 one-message connections");
    child.stop();
    assert_eq!(read_archive(&archive).len(), 499);
    let dl = dead_letters(&archive);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0]["reason"], "too_long");
    assert_eq!(dl[0]["path"], seventh.as_str(), "the dead letter names its sender inside a shared batch");
}

/// RESP for one command.
fn resp(args: &[&str]) -> String {
    let mut s = format!("*{}\r\n", args.len());
    for a in args {
        s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s
}

fn eve_lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(data_dir().join("eve/eve-suricata-verify-8.0.6.ndjson")).unwrap();
    text.lines().filter(|l| reference_row(l, "x").is_some()).cycle().take(n).map(str::to_string).collect()
}

/// Feeds `lines` while alertflow is killed with SIGKILL twice, then checks that the
/// archive holds each line exactly once.
fn redis_kill9_exactly_once(mode: &str, push: &str) {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let sources = format!("[[sources]]\nname = \"r\"\ntype = \"redis\"\nurl = \"{}\"\nmode = \"{mode}\"\nkey = \"suricata\"\nbatch = 200\n", redis.url());
    let lines = eve_lines(6000);
    let mut unique: Vec<String> = Vec::new();
    // Make each line distinct so duplicates are visible.
    for (i, l) in lines.iter().enumerate() {
        unique.push(l.replacen('{', &format!("{{\"seqno\":{i},"), 1));
    }
    let feed = |chunk: &[String]| {
        let cmds: String =
            chunk.iter().map(|l| if push == "XADD" { resp(&["XADD", "suricata", "*", "eve", l]) } else { resp(&[push, "suricata", l]) }).collect();
        redis.pipe(&cmds);
    };
    let archive = dir.path().join("archive");
    for round in 0..3 {
        let before = read_archive(&archive).len();
        let child = run_config(dir.path(), &sources);
        feed(&unique[round * 2000..(round + 1) * 2000]);
        if round < 2 {
            // Kill mid-stream, once this process has read and archived something itself
            // (rows from an earlier round do not count).
            wait_for("rows of this round", 30, || read_archive(&archive).len() > before);
            std::thread::sleep(Duration::from_millis(150 * round as u64));
            child.kill9();
            assert!(read_archive(&archive).len() > before, "round {round}: the kill landed after a read");
        } else {
            wait_for("every line archived", 60, || read_archive(&archive).len() >= unique.len());
            std::thread::sleep(Duration::from_millis(1500));
            child.stop();
        }
    }
    let rows = read_archive(&archive);
    let mut raws: Vec<String> = rows.iter().map(|r| r.raw.clone()).collect();
    raws.sort();
    let mut want = unique.clone();
    want.sort();
    assert_eq!(raws.len(), want.len(), "rows archived once each");
    assert!(raws == want, "archive holds exactly the lines pushed");
    if mode == "list" {
        assert_eq!(redis.cli(&["LLEN", "suricata"]).trim(), "0");
        assert_eq!(redis.cli(&["LLEN", "suricata:processing:alertflow"]).trim(), "0", "acknowledged after sealing");
    } else {
        let pending = redis.cli(&["XPENDING", "suricata", "alertflow"]);
        assert!(pending.starts_with('0'), "everything acknowledged: {pending}");
    }
}

#[test]
fn redis_list_survives_sigkill_exactly_once() {
    redis_kill9_exactly_once("list", "LPUSH");
}

#[test]
fn redis_stream_survives_sigkill_exactly_once() {
    redis_kill9_exactly_once("stream", "XADD");
}

#[test]
fn redis_channel_best_effort_and_stream_gap_reported() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let cfg = dir.path().join("c.toml");
    // A stream with entries trimmed before the group ever read them.
    let cmds: String = eve_lines(50).iter().map(|l| resp(&["XADD", "trimmed", "*", "eve", l])).collect();
    redis.pipe(&cmds);
    redis.cli(&["XGROUP", "CREATE", "trimmed", "alertflow", "0"]);
    redis.cli(&["XTRIM", "trimmed", "MAXLEN", "20"]);
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"ch\"\ntype = \"redis\"\nurl = \"{url}\"\nmode = \"channel\"\nkey = \"eve-*\"\n\n[[sources]]\nname = \"st\"\ntype = \"redis\"\nurl = \"{url}\"\nmode = \"stream\"\nkey = \"trimmed\"\n",
        dir.path().join("archive").display(), url = redis.url())).unwrap();
    let child = Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "error").stdout(Stdio::null()).spawn().unwrap(),
    );
    wait_for("metrics", 30, || TcpStream::connect(("127.0.0.1", mport)).is_ok());
    wait_for("subscribed", 30, || redis.cli(&["PUBSUB", "NUMPAT"]).trim() == "1");
    let lines = eve_lines(100);
    let cmds: String = lines.iter().map(|l| resp(&["PUBLISH", "eve-sensor1", l])).collect();
    redis.pipe(&cmds);
    let archive = dir.path().join("archive");
    wait_for("channel and stream rows", 30, || read_archive(&archive).len() == 120);
    wait_for("the gap reported", 30, || metric(mport, "alertflow_redis_stream_gap_entries_total") == 30.0);
    child.stop();
    let rows = read_archive(&archive);
    assert_eq!(rows.iter().filter(|r| r.source.as_deref() == Some("ch")).count(), 100);
    assert_eq!(rows.iter().filter(|r| r.source.as_deref() == Some("st")).count(), 20);
}

#[test]
fn redis_stream_claims_entries_of_a_stopped_consumer_and_channel_reconnects() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let lines = eve_lines(30);
    let cmds: String = lines.iter().map(|l| resp(&["XADD", "s", "*", "eve", l])).collect();
    redis.pipe(&cmds);
    redis.cli(&["XGROUP", "CREATE", "s", "alertflow", "0"]);
    // Another consumer took ten entries and stopped before acknowledging them.
    redis.cli(&["XREADGROUP", "GROUP", "alertflow", "gone", "COUNT", "10", "STREAMS", "s", ">"]);
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"st\"\ntype = \"redis\"\nurl = \"{url}\"\nmode = \"stream\"\nkey = \"s\"\nclaim_idle_ms = 200\n\n[[sources]]\nname = \"ch\"\ntype = \"redis\"\nurl = \"{url}\"\nmode = \"channel\"\nkey = \"eve\"\n",
        dir.path().join("archive").display(), url = redis.url())).unwrap();
    let child = Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "error").stdout(Stdio::null()).spawn().unwrap(),
    );
    let archive = dir.path().join("archive");
    wait_for("all 30 stream entries, the claimed ones included", 30, || read_archive(&archive).len() == 30);
    wait_for("everything acknowledged", 30, || redis.cli(&["XPENDING", "s", "alertflow"]).starts_with('0'));
    assert!(metric(mport, "alertflow_redis_claimed_total") >= 10.0);
    // The subscriber's connection is killed; it reconnects, counts the loss window and
    // receives what is published afterwards.
    wait_for("subscribed", 30, || redis.cli(&["PUBSUB", "NUMSUB", "eve"]).lines().nth(1).map(str::trim) == Some("1"));
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    wait_for("the disconnect counted", 30, || metric(mport, "alertflow_redis_disconnects_total") >= 1.0);
    wait_for("subscribed again", 30, || redis.cli(&["PUBSUB", "NUMSUB", "eve"]).lines().nth(1).map(str::trim) == Some("1"));
    redis.pipe(&eve_lines(5).iter().map(|l| resp(&["PUBLISH", "eve", l])).collect::<String>());
    wait_for("the channel's 5 rows", 30, || read_archive(&archive).len() == 35);
    child.stop();
}

/// Packets the network devices' backlogs dropped, summed over the CPUs.
fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|d| u64::from_str_radix(d, 16).ok()))
        .sum()
}

/// A UDP flood into a small receive buffer: whatever is not archived is counted, either by
/// the kernel (receive buffer full, read from /proc/net/udp) or by the pipeline.
#[test]
fn udp_flood_accounts_for_every_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let (port, mport) = (free_udp_port(), free_port());
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"udp\"\ntype = \"syslog_udp\"\nlisten = \"127.0.0.1:{port}\"\nrecv_buffer_bytes = 4096\n",
        dir.path().join("archive").display())).unwrap();
    let log = dir.path().join("alertflow.log");
    let child = common::run_logged(&cfg, &log, "info");
    // "running" comes once the UDP socket is bound: earlier datagrams would find no port.
    wait_for("running", 30, || std::fs::read_to_string(&log).unwrap_or_default().contains("alertflow running"));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 30_000;
    let backlog_drops_before = softnet_drops();
    for i in 0..sent {
        let msg = format!("<13>1 2026-11-28T10:00:00Z h app - - - datagram {i}");
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        // Bursts the loopback device's backlog (1,000 packets) can take: the flood is
        // meant to overrun the socket's 4 KiB buffer, not the device queue in front of it.
        if i % 256 == 255 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let archive = dir.path().join("archive");
    let mut last = (-1.0, Instant::now());
    let mut seen = String::new();
    let done = wait_until(60, || {
        let rows = read_archive(&archive).len() as f64;
        let kernel = metric(mport, "alertflow_source_kernel_drops_total");
        let pipeline = metric(mport, "alertflow_source_dropped_lines_total");
        let accounted = rows + kernel + pipeline;
        seen = format!("archived {rows}, kernel drops {kernel}, pipeline drops {pipeline}, backlog drops {}", softnet_drops() - backlog_drops_before);
        assert!(accounted <= sent as f64, "more accounted for than sent: {rows} + {kernel} + {pipeline}");
        if accounted == sent as f64 {
            return true;
        }
        // A datagram the loopback backlog dropped (a starved CPU) never reached the socket:
        // the kernel counts it per CPU (/proc/net/softnet_stat), not per socket. Settled
        // counts whose gap those drops explain account for every datagram too.
        if accounted != last.0 {
            last = (accounted, Instant::now());
            return false;
        }
        let backlog = softnet_drops() - backlog_drops_before;
        last.1.elapsed() > Duration::from_secs(3) && accounted + backlog as f64 >= sent as f64
    });
    assert!(done, "not every one of the {sent} datagrams accounted for: {seen}");
    println!("kernel drops: {}", metric(mport, "alertflow_source_kernel_drops_total"));
    child.stop();
}

/// Under the common 1,024 open-file limit, 1,100 idle connections to the syslog TCP port
/// (configured cap 1,024) and 200 to the metrics port: the listener caps are fitted beside
/// the archive's reserve, the metrics listener has its own cap, and the archive keeps
/// sealing a followed file's events; `/health` still answers.
#[test]
fn idle_connection_floods_do_not_starve_the_archive_of_descriptors() {
    // The test itself holds 1,300 sockets: its own soft limit goes to the hard one.
    alertflow::pipeline::descriptors::raise_limit();
    let dir = tempfile::tempdir().unwrap();
    let (tcp, metrics_port) = (free_port(), free_port());
    let input = dir.path().join("eve.json");
    std::fs::write(&input, "").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[[sources]]\nname = \"tcp\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tcp}\"\nmax_connections = 1024\n\n[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{}\"\n",
            dir.path().join("archive").display(),
            input.display()
        ),
    )
    .unwrap();
    let exe = env!("CARGO_BIN_EXE_alertflow");
    let mut child = Running::new(
        Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -Sn 1024 && ulimit -Hn 1024 && exec '{exe}' run --config '{}'", cfg.display()))
            .env("ALERTFLOW_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let health = |port: u16| -> Option<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        resp.split_whitespace().nth(1)?.parse().ok()
    };
    wait_for("listeners", 30, || health(metrics_port) == Some(200) && TcpStream::connect(("127.0.0.1", tcp)).is_ok());
    let mut idle = Vec::new();
    for _ in 0..1100 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", tcp)) {
            idle.push(c);
        }
    }
    for _ in 0..200 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", metrics_port)) {
            idle.push(c);
        }
    }
    assert!(idle.len() >= 1100, "the flood connected ({} sockets)", idle.len());
    // The archive still takes and seals events (the next segment needs descriptors).
    let lines: String = (0..5).map(|i| format!("{}\n", r#"{"timestamp":"2024-05-01T10:00:00.000001+0000","event_type":"flow","src_ip":"10.0.0.1","src_port":N,"dest_ip":"10.0.0.2","dest_port":2,"proto":"TCP"}"#.replace('N', &i.to_string()))).collect();
    std::fs::OpenOptions::new().append(true).open(&input).unwrap().write_all(lines.as_bytes()).unwrap();
    wait_for("five events sealed", 60, || read_archive(&dir.path().join("archive")).len() == 5);
    assert!(child.alive(), "the process is still running");
    // The metrics listener frees its slots within its deadline and answers again.
    wait_for("/health answers during the flood", 30, || health(metrics_port) == Some(200));
    let refused = metric(metrics_port, "alertflow_source_connections_refused_total");
    assert!(refused >= 1100.0 - 1024.0 + 1.0, "the fitted cap refused the excess: {refused}");
    drop(idle);
    child.stop();
}
