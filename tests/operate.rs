//! What an operator sees in the log: an input that matches nothing is said once (with the
//! missing folder) and again when it starts matching; no colour codes when stderr is a file;
//! a busy port is one clear error naming the address, and "running" is never logged before
//! every listener is held.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_for(log: &std::path::Path, what: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(what) || Instant::now() >= deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_input_that_matches_nothing_is_said_once_and_again_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("sensor");
    let log = dir.path().join("alertflow.log");
    let child = common::Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["run", "--metrics-listen", "", "--archive"])
            .arg(dir.path().join("archive"))
            .arg("--input")
            .arg(format!("{}/eve*.json", watched.display()))
            .env("ALERTFLOW_LOG", "info")
            .env("NO_COLOR", "")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let text = wait_for(&log, "its folder does not exist", 20);
    assert!(text.contains("input matches no file: its folder does not exist"), "{text}");
    assert!(text.contains(&watched.display().to_string()), "names the missing folder: {text}");
    let text = wait_for(&log, "alertflow running", 20);
    assert!(text.contains("alertflow running"), "{text}");
    // No colour codes in a log file.
    assert!(!text.contains('\u{1b}'), "ANSI escape codes in a redirected log: {text:?}");
    // Said once, not at every poll.
    std::thread::sleep(Duration::from_millis(1500));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("input matches no file").count(), 1, "{text}");
    // The file appears: said, and followed.
    std::fs::create_dir_all(&watched).unwrap();
    std::fs::write(watched.join("eve.json"), "{\"timestamp\":\"2026-11-18T11:06:40.000000+0000\",\"event_type\":\"stats\"}\n").unwrap();
    let text = wait_for(&log, "input matches files now", 20);
    assert!(text.contains("input matches files now"), "{text}");
    let text = wait_for(&log, "following file", 20);
    assert!(text.contains("following file"), "{text}");
    child.stop();
}

#[test]
fn a_busy_port_is_one_clear_error_with_its_address_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nroot = \"{}\"\n\n[metrics]\nlisten = \"\"\n\n[[sources]]\nname = \"tcp\"\ntype = \"syslog_tcp\"\nlisten = \"{addr}\"\n",
            dir.path().join("archive").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "info").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on tcp {addr}")), "{err}");
    assert_eq!(err.matches("in use").count(), 1, "the cause once: {err}");
    assert!(!err.contains("alertflow running"), "running before its listeners: {err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    drop(busy);
}

/// Every rejection reason is logged at once with where the line came from and a sample;
/// more of the same reason within a minute are not logged again (they are all in the
/// dead-letter file).
#[test]
fn a_rejected_line_is_logged_once_per_reason_with_a_sample() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let good = "{\"timestamp\":\"2026-11-18T11:06:40.000000+0000\",\"event_type\":\"stats\"}";
    let text = [good, "garbage-7f3a {", "garbage-second {", "{\"event_type\":\"flow\",\"note\":\"no-time-91c\"}", "garbage-third {", good].join("\n") + "\n";
    std::fs::write(&input, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow"))
        .args(["replay", "--json", "--archive"])
        .arg(dir.path().join("archive"))
        .arg(&input)
        .env_remove("ALERTFLOW_LOG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("rejected line").count(), 2, "one line per reason: {err}");
    let invalid = err.lines().find(|l| l.contains("invalid_json")).unwrap_or_else(|| panic!("{err}"));
    assert!(invalid.contains("garbage-7f3a"), "the first sample: {invalid}");
    assert!(invalid.contains(&input.display().to_string()), "the path: {invalid}");
    let missing = err.lines().find(|l| l.contains("missing_timestamp")).unwrap_or_else(|| panic!("{err}"));
    assert!(missing.contains("no-time-91c"), "{missing}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rejected"]["invalid_json"], 3);
    assert_eq!(common::dead_letters(&dir.path().join("archive")).len(), 4, "every rejection in the dead-letter file");
}

/// `run` logs a one-line stats summary every `stats_log_secs`; `/health` shows each source
/// with its state, and a syslog client's connection is logged at debug as it comes and goes.
#[test]
fn the_stats_line_and_per_source_health_show_what_each_source_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let line = |i: u32| {
        format!("{{\"timestamp\":\"2026-11-18T11:06:{:02}.000000+0000\",\"flow_id\":{i},\"event_type\":\"flow\",\"src_ip\":\"10.0.0.1\",\"src_port\":1,\"dest_ip\":\"10.0.0.2\",\"dest_port\":2,\"proto\":\"TCP\"}}\n", i % 60)
    };
    std::fs::write(&input, (0..5).map(line).collect::<String>()).unwrap();
    let (mport, tport) = (common::free_port(), common::free_port());
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\nstats_log_secs = 1\n\n[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{}\"\npoll_interval_ms = 50\n\n[[sources]]\nname = \"tcp\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tport}\"\n",
            dir.path().join("archive").display(),
            input.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("alertflow.log");
    let child = common::run_logged(&cfg, &log, "info,alertflow::ingest=debug");
    let text = wait_for(&log, "events_per_sec", 30);
    let stats = text.lines().find(|l| l.contains("events_per_sec")).unwrap_or_else(|| panic!("no stats line: {text}"));
    for field in ["events=", "rejected=", "dropped=", "rows_archived=", "last_commit_secs=", "behind_bytes=", "open_incidents="] {
        assert!(stats.contains(field), "{field} in {stats}");
    }
    let health = |what: &str| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body) = common::http_get(mport, "/health");
            assert_eq!(code, 200, "{body}");
            let h: serde_json::Value = serde_json::from_str(&body).unwrap();
            let src = |n: &str| h["sources"].as_array().unwrap().iter().find(|s| s["name"] == n).cloned().unwrap();
            let ok = match what {
                "read" => src("eve")["bytes"].as_u64() > Some(0) && src("tcp")["state"] == "waiting" && h["events"] == 5,
                "connected" => src("tcp")["open"] == 1 && src("tcp")["state"] == "reading",
                _ => src("tcp")["open"] == 0,
            };
            if ok {
                return h;
            }
            assert!(Instant::now() < deadline, "{what}: {h}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let h = health("read");
    assert_eq!(h["status"], "ok");
    let eve = h["sources"].as_array().unwrap().iter().find(|s| s["name"] == "eve").unwrap().clone();
    assert_eq!(eve["type"], "file");
    assert_eq!(eve["open"], 1, "one file followed: {eve}");
    assert_eq!(eve["behind_bytes"], 0, "{eve}");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", tport)).unwrap();
    std::io::Write::write_all(&mut client, b"<13>1 2026-11-18T11:06:40Z host app - - - hello\n").unwrap();
    let text = wait_for(&log, "client connected", 30);
    assert!(text.contains("client connected"), "{text}");
    health("connected");
    drop(client);
    let text = wait_for(&log, "client disconnected", 30);
    assert!(text.contains("client disconnected"), "{text}");
    health("closed");
    child.stop();
}
