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
