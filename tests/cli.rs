//! The binary end to end: Unix socket sources as Suricata writes to them, the metrics and
//! health listener, `demo`, and `replay` summaries.

use crate::common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn corpus_lines(n: usize) -> Vec<String> {
    std::fs::read_to_string(data_dir().join("eve/eve-suricata-verify-8.0.6.ndjson")).unwrap().lines().take(n).map(str::to_string).collect()
}

/// Starts `alertflow run`; with `port`, metrics and health listen there.
fn run_with(dir: &Path, sources: &str, port: Option<u16>) -> Running {
    let cfg = dir.join("c.toml");
    let listen = port.map(|p| format!("127.0.0.1:{p}")).unwrap_or_default();
    let text = format!("[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"{listen}\"\n\n{sources}", dir.join("archive").display());
    std::fs::write(&cfg, text).unwrap();
    Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "warn").stdout(Stdio::null()).spawn().unwrap(),
    )
}

#[test]
fn unix_stream_source_with_metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("eve.sock");
    // A stale socket file from a crashed run is replaced.
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let port = free_port();
    // Sockets drop and count by default when the pipeline is behind; this test wants every
    // line, so the source pushes back on the writer instead.
    let child = run_with(
        dir.path(),
        &format!("[[sources]]\nname = \"suricata\"\ntype = \"unix_stream\"\npath = \"{}\"\noverflow = \"block\"\n", sock.display()),
        Some(port),
    );
    wait_for("the health endpoint", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    // The metrics port being up does not mean the socket is: it is bound, then chmod'ed.
    // Ready is: the new socket (the stale file replaced) accepts, with its mode set.
    let mode = || std::fs::metadata(&sock).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
    let mut probes = 0;
    wait_for("the socket, bound and chmod'ed to 0660", || {
        let up = UnixStream::connect(&sock).is_ok();
        probes += up as u32;
        up && mode() == 0o660
    });

    let lines = corpus_lines(500);
    let mut conn = UnixStream::connect(&sock).unwrap();
    for l in &lines {
        conn.write_all(l.as_bytes()).unwrap();
        conn.write_all(b"\n").unwrap();
    }
    conn.write_all(b"{not json\n").unwrap();
    drop(conn);
    let archive = dir.path().join("archive");
    wait_for("500 rows", || {
        let n = read_archive(&archive).len();
        eprintln!("unix_stream: {n} rows");
        n == 500
    });

    // The files are readable from the commit point on; the health figures and the segment
    // counter follow once the commit has completed (directories synced).
    let mut h = serde_json::Value::Null;
    wait_for("/health to count the 500 sealed rows", || {
        let (status, health) = http_get(port, "/health");
        assert_eq!(status, 200);
        h = serde_json::from_str(&health).unwrap();
        h["rows_sealed"] == 500
    });
    // The malformed line may be read, and so parsed and counted, in a batch of its own after
    // the 500 rows: the counters are waited for, then checked exactly.
    let value = |metrics: &str, name: &str| -> Option<f64> {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    };
    let mut metrics = String::new();
    wait_for("the rejected line to be counted", || {
        let (status, text) = http_get(port, "/metrics");
        assert_eq!(status, 200);
        metrics = text;
        value(&metrics, "alertflow_rejected_lines_total{reason=\"invalid_json\"}").is_some()
    });
    let value = |name: &str| value(&metrics, name).unwrap_or_else(|| panic!("{name} missing in\n{metrics}"));
    assert_eq!(value("alertflow_parse_events_total"), 500.0);
    assert_eq!(value("alertflow_rejected_lines_total{reason=\"invalid_json\"}"), 1.0);
    assert!(value("alertflow_archive_rows_total") >= 500.0);
    assert!(value("alertflow_archive_segments_sealed_total") >= 1.0);
    assert_eq!(value("alertflow_source_connections_total{source=\"suricata\"}"), 1.0 + probes as f64, "the writer and the readiness probes");
    assert_eq!(h["status"], "ok");
    assert_eq!(http_get(port, "/nope").0, 404);
    child.stop();
    assert!(!sock.exists(), "socket removed at shutdown");
    let rows = read_archive(&archive);
    assert!(rows.iter().all(|r| r.source.as_deref() == Some("suricata")));
    let mut raws: Vec<_> = rows.iter().map(|r| r.raw.clone()).collect();
    let mut want = lines.clone();
    raws.sort();
    want.sort();
    assert_eq!(raws, want);
}

/// With the default `drop` policy a socket never stalls its writer; whatever the pipeline had
/// no room for is counted, so archived + dropped always accounts for every line sent.
#[test]
fn unix_stream_drop_policy_accounts_for_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("eve.sock");
    let port = free_port();
    let child = run_with(dir.path(), &format!("[[sources]]\nname = \"s\"\ntype = \"unix_stream\"\npath = \"{}\"\n", sock.display()), Some(port));
    wait_for("the health endpoint", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    wait_for("the socket", || UnixStream::connect(&sock).is_ok());
    let lines = corpus_lines(400);
    let mut conn = UnixStream::connect(&sock).unwrap();
    for _ in 0..5 {
        for l in &lines {
            conn.write_all(l.as_bytes()).unwrap();
            conn.write_all(b"\n").unwrap();
        }
    }
    drop(conn);
    let sent = (5 * lines.len()) as f64;
    let archive = dir.path().join("archive");
    let metric = |metrics: &str, name: &str| -> f64 {
        metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
    };
    wait_for("archived + dropped = sent", || {
        let (_, metrics) = http_get(port, "/metrics");
        let dropped = metric(&metrics, "alertflow_source_dropped_lines_total{source=\"s\"}");
        let rows = read_archive(&archive).len() as f64;
        rows + dropped == sent
    });
    child.stop();
}

#[test]
fn unix_dgram_source() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("eve.dgram");
    let child =
        run_with(dir.path(), &format!("[[sources]]\nname = \"dg\"\ntype = \"unix_dgram\"\npath = \"{}\"\noverflow = \"block\"\n", sock.display()), None);
    wait_for("the socket", || sock.exists());
    let client = UnixDatagram::unbound().unwrap();
    let lines = corpus_lines(200);
    for l in &lines {
        // Suricata sends one event per datagram, without a newline.
        client.send_to(l.as_bytes(), &sock).unwrap();
    }
    let archive = dir.path().join("archive");
    wait_for("200 rows", || read_archive(&archive).len() == 200);
    child.stop();
}

#[test]
fn demo_runs_with_no_arguments_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("demo").current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10260 events, 1557 alerts -> "), "{text}");
    assert!(text.contains("10260 event rows read back"), "{text}");
    // The queue: numbered items, the first an incident whose story reaches C2.
    let first = text.lines().position(|l| l.trim_start().starts_with("1. ")).expect("a queue");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[first].contains("critical") && lines[first].contains("incident of"), "{text}");
    assert!(lines[first + 1].contains("c2"), "{text}");
    assert!(!text.contains("events/s"), "no rate for a one-second demo: {text}");
    assert_eq!(read_archive(&dir.path().join("alertflow-demo")).len(), 10260);
    // Running it again starts over instead of appending.
    let again = Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("demo").current_dir(dir.path()).output().unwrap();
    assert!(again.status.success());
    assert_eq!(read_archive(&dir.path().join("alertflow-demo")).len(), 10260);
    // It never clears a folder it did not make.
    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["demo", "--dir", "mine"]).current_dir(dir.path()).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(foreign.exists());
}

#[test]
fn replay_summary_counts_types_and_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let input = data_dir().join("eve/eve-edgecase-fever-broken-line.ndjson");
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["replay", "--json", "--archive"]).arg(dir.path()).arg(&input).output().unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["events"], 2);
    assert_eq!(s["events_by_type"]["dns"], 1);
    assert_eq!(s["events_by_type"]["http"], 1);
    assert_eq!(s["rejected"]["invalid_json"], 1);
    assert_eq!(s["rows_archived"], 2);
    let human = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["replay", "--archive"]).arg(dir.path().join("b")).arg(&input).output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("rejected: 1 (invalid_json 1), see "), "{text}");
    assert!(text.contains("archived: 2 rows"), "{text}");
}

#[test]
fn a_second_process_on_the_same_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    std::fs::write(&input, corpus_lines(10).join("\n") + "\n").unwrap();
    let child = run_with(dir.path(), &format!("[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{}\"\n", input.display()), None);
    let archive = dir.path().join("archive");
    wait_for("10 rows", || read_archive(&archive).len() == 10);
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["replay", "--archive"]).arg(&archive).arg(&input).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in use by another alertflow process"), "{err}");
    child.stop();
}

/// An archive that cannot write (the partition's path is taken by a file, which stops
/// root as well as anyone) fails the pipeline, and `/health`, 200 before, answers 503.
#[test]
fn health_answers_503_after_an_archive_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    std::fs::create_dir_all(root.join("events")).unwrap();
    std::fs::write(root.join("events/date=2024-05-01"), "in the way\n").unwrap();
    let input = dir.path().join("eve.json");
    std::fs::write(&input, r#"{"timestamp":"2024-05-01T10:00:00.000001+0000","event_type":"flow","src_ip":"10.0.0.1","src_port":1,"dest_ip":"10.0.0.2","dest_port":2,"proto":"TCP"}"#.to_string() + "\n").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let health = std::sync::Arc::new(alertflow::pipeline::Health::default());
    let port = alertflow::api::serve(&rt, "127.0.0.1:0".parse().unwrap(), handle, health.clone(), None).unwrap().port();
    let (status, body) = http_get(port, "/health");
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    let mut cfg = test_config(&root);
    cfg.sources = vec![alertflow::config::SourceConfig {
        name: "replay".into(),
        kind: alertflow::config::SourceKind::File(alertflow::demo::replay_file_config(vec![input.display().to_string()])),
        overflow: alertflow::ingest::Overflow::Block,
        format: alertflow::ingest::Format::Eve,
        timezone: None,
    }];
    let res = alertflow::pipeline::run(
        &cfg,
        alertflow::pipeline::Mode::ReadToEnd,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        None,
        Some(health),
    );
    assert!(res.is_err(), "the pipeline reports the archive failure");
    let (status, body) = http_get(port, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"failing\""), "{body}");
}
