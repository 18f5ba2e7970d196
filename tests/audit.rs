//! The audit trail through the binary: every decision of a replay is a hash-chained record
//! with a stable id; `alertflow audit verify` passes a good trail and names the first bad
//! record of a modified, deleted, inserted, reordered or cut-off one; a second run continues
//! the chain; records a crash kept from the file are appended at the next start, once,
//! rebuilt from the `actions` table.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BASE: i64 = 1_795_000_000;

fn alert(t: i64, sid: i64, src: &str, seq: usize) -> String {
    let ts = jiff::Timestamp::from_second(BASE + t).unwrap().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    format!(
        "{{\"timestamp\":\"{ts}.{seq:06}+0000\",\"flow_id\":{},\"event_type\":\"alert\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"10.0.0.5\",\"dest_port\":445,\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\"signature_id\":{sid},\"rev\":1,\"signature\":\"logon {sid}\",\"category\":\"Misc\",\"severity\":3}}}}",
        1000 + seq
    )
}

/// Ten failed logins then a success (the Sigma chain opens an incident), and five repeats
/// of one alert (a roll-up sums them up), starting `t0` seconds after [`BASE`].
fn stream(dir: &Path, name: &str, t0: i64, src: &str) -> PathBuf {
    let mut lines: Vec<String> = (0..10).map(|i| alert(t0 + i * 20, 4625, src, i as usize)).collect();
    lines.push(alert(t0 + 300, 4624, src, 10));
    lines.extend((0..5).map(|i| alert(t0 + 310 + i, 7, "203.0.113.50", 20 + i as usize)));
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn config(dir: &Path, archive: &Path, audit: bool) -> PathBuf {
    let rules = common::data_dir().join("sigma/spec/failed_logins_then_success.yml");
    let p = dir.join(format!("c-{audit}.toml"));
    std::fs::write(
        &p,
        format!(
            "[archive]\nroot = \"{}\"\n\n[metrics]\nlisten = \"\"\n\n[audit]\nenabled = {audit}\n\n[state]\nsigma = [\"{}\"]\n\n[state.sigma_fields]\nEventID = \"signature_id\"\nUser = \"src_ip\"\n",
            archive.display(),
            rules.display()
        ),
    )
    .unwrap();
    p
}

fn replay(cfg: &Path, input: &Path, clock: i64) {
    let out = run_replay(cfg, input, clock);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `alertflow replay` of `input` with the clock at `clock`, whatever its outcome.
fn run_replay(cfg: &Path, input: &Path, clock: i64) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alertflow"))
        .args(["replay", "--json", "--config"])
        .arg(cfg)
        .arg(input)
        .env(alertflow::event::time::CLOCK_ENV, clock.to_string())
        .output()
        .unwrap()
}

fn verify(archive: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["audit", "verify", "--archive"]).arg(archive).output().unwrap()
}

fn trail(archive: &Path) -> Vec<String> {
    std::fs::read_to_string(archive.join("_audit/audit.jsonl")).unwrap().lines().map(str::to_owned).collect()
}

fn field(line: &str, key: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(line).unwrap()[key].clone()
}

/// Verify on a copy of the archive whose trail is `lines`: the exit code and stderr.
fn verify_tampered(archive: &Path, lines: &[String]) -> (Option<i32>, String) {
    let copy = tempfile::tempdir().unwrap();
    for sub in ["_audit", "_state"] {
        // (head.json, the marker of what was written, comes along.)
        std::fs::create_dir_all(copy.path().join(sub)).unwrap();
        for e in std::fs::read_dir(archive.join(sub)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.path().join(sub).join(e.file_name())).unwrap();
        }
    }
    std::fs::write(copy.path().join("_audit/audit.jsonl"), lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let out = verify(copy.path());
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn every_decision_is_recorded_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let input = stream(dir.path(), "a.json", 0, "198.51.100.7");
    replay(&config(dir.path(), &archive, true), &input, BASE + 3600);
    let lines = trail(&archive);
    let mut kinds: Vec<String> = lines.iter().map(|l| field(l, "kind").as_str().unwrap().to_string()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["alert_emitted", "alerts_suppressed", "incident_closed", "incident_opened"], "{lines:#?}");
    let opened = lines.iter().find(|l| field(l, "kind") == "incident_opened").unwrap();
    assert_eq!(field(opened, "detail")["rule"], "Correlation - Multiple Failed Logins Followed by Successful Login");
    assert!(field(opened, "detail")["priority"].is_string(), "{opened}");
    let suppressed = lines.iter().find(|l| field(l, "kind") == "alerts_suppressed" && field(l, "subject").as_str().unwrap().contains("|7|")).unwrap();
    assert_eq!(field(suppressed, "detail")["suppressed"], 4, "five repeats: one emitted, four summed up: {suppressed}");
    let out = verify(&archive);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("ok, {} records", lines.len())));
    // The `actions` table holds the same records, row for line.
    let mut rows = common::read_table(&archive, "actions");
    rows.sort_by_key(|r| r["seq"].parse::<u64>().unwrap());
    assert_eq!(rows.len(), lines.len());
    for (r, l) in rows.iter().zip(&lines) {
        assert_eq!(r["hash"], field(l, "hash").as_str().unwrap());
        assert_eq!(r["record_id"], field(l, "id").as_str().unwrap());
        assert_eq!(serde_json::from_str::<serde_json::Value>(&r["detail"]).unwrap(), field(l, "detail"));
    }

    // The same replay into a fresh archive: the same ids and the same chain.
    let again = dir.path().join("again");
    replay(&config(dir.path(), &again, true), &input, BASE + 3600);
    assert_eq!(trail(&again), lines, "a replay records the same decisions, ids and hashes");

    // Tampering, each named at its record.
    let n = lines.len();
    assert!(n >= 5);
    let mut modified = lines.clone();
    modified[2] = modified[2].replacen("\"decision\":\"first\"", "\"decision\":\"escalated\"", 1);
    assert_ne!(modified[2], lines[2]);
    let mut deleted = lines.clone();
    deleted.remove(1);
    let mut inserted = lines.clone();
    inserted.insert(2, lines[1].clone());
    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    for (what, t, line) in [("modified", &modified, 3), ("deleted", &deleted, 2), ("inserted", &inserted, 3), ("reordered", &reordered, 3)] {
        let (code, err) = verify_tampered(&archive, t);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(err.contains(&format!("line {line} ")), "{what}: {err}");
    }
    // Cut off at the end: the head marker written after each append knows.
    let (code, err) = verify_tampered(&archive, &lines[..n - 1]);
    assert_eq!(code, Some(1), "cut: {err}");
    assert!(err.contains(&format!("records after seq {} were removed", n - 1)), "{err}");

    // Off: no trail.
    let off = dir.path().join("off");
    replay(&config(dir.path(), &off, false), &input, BASE + 3600);
    assert!(!off.join("_audit").exists());
}

#[test]
fn a_second_run_continues_the_chain_and_a_crash_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let cfg = config(dir.path(), &archive, true);
    replay(&cfg, &stream(dir.path(), "a.json", 0, "198.51.100.7"), BASE + 3600);
    let first = trail(&archive);
    replay(&cfg, &stream(dir.path(), "b.json", 2000, "198.51.100.8"), BASE + 5600);
    let both = trail(&archive);
    assert_eq!(&both[..first.len()], &first[..]);
    assert_eq!(field(&both[first.len()], "seq"), first.len() as u64 + 1, "the chain goes on");
    assert!(verify(&archive).status.success());

    // The newest snapshot holds the chain's head; the records are the `actions` rows.
    let state = std::fs::read_dir(archive.join("_state")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let snap: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    assert_eq!(snap["audit"]["chain"]["seq"], both.len() as u64);
    assert_eq!(snap["audit"]["chain"]["head"], field(both.last().unwrap(), "hash"));
    assert!(snap["audit"].get("records").is_none(), "{}", snap["audit"]);

    // A crash after commits landed and before their records were appended (here the
    // second half of the first run's records and all of the second's): the file lacks
    // them, verify says they come at the next start, and they do, once, rebuilt from the
    // commits' `actions` rows.
    let kept = &both[..first.len() / 2];
    assert!(kept.len() < first.len() && !kept.is_empty(), "{} of {}", kept.len(), both.len());
    std::fs::write(archive.join("_audit/audit.jsonl"), kept.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let head = serde_json::json!({"seq": field(kept.last().unwrap(), "seq"), "head": field(kept.last().unwrap(), "hash")});
    std::fs::write(archive.join("_audit/head.json"), head.to_string()).unwrap();
    // Without the rows, verify says what is missing.
    std::fs::rename(archive.join("actions"), dir.path().join("actions-away")).unwrap();
    let out = verify(&archive);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("records after seq {} are missing", kept.len())),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a start refuses to continue the chain over the gap, naming it.
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "").unwrap();
    let out = run_replay(&cfg, &empty, BASE + 5600);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("the trail ends at record {}", kept.len())), "{err}");
    assert_eq!(trail(&archive), kept, "nothing appended");
    std::fs::rename(dir.path().join("actions-away"), archive.join("actions")).unwrap();
    let out = verify(&archive);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("appended at the next start"));
    replay(&cfg, &empty, BASE + 5600);
    assert_eq!(trail(&archive), both, "the missing records are back, once");
    assert!(verify(&archive).status.success());
}
