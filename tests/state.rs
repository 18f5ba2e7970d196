//! Dedup and correlation over real alerts and over generated streams: counts are
//! conserved, no key goes on twice inside its window, a replay gives identical output.

use crate::common;

use std::path::PathBuf;

use alertflow::state::correlate::{Condition, Correlator, IncidentEvent, Rule, Status};
use alertflow::state::dedup::{Decision, Dedup, DedupConfig, Rollup};
use alertflow::state::watermark::Watermark;
use alertflow::state::{AlertRecord, KeyField};
use common::Rng;
use serde_json::Value;

fn corpus_alerts() -> Vec<AlertRecord> {
    let mut dirs = vec![common::data_dir().join("eve")];
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/eve");
    if shared.exists() {
        dirs.push(shared);
    }
    let mut out = Vec::new();
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "ndjson") && !p.to_string_lossy().contains("index"))
            .collect();
        files.sort();
        for f in files {
            for line in std::fs::read_to_string(&f).unwrap_or_default().lines() {
                let Some(row) = common::reference_row(line, "x") else { continue };
                if row.event_type.as_deref() != Some("alert") {
                    continue;
                }
                let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                out.push(AlertRecord {
                    alert_id: alertflow::state::stage::alert_id("x", line),
                    ts_us: row.timestamp.unwrap_or(0),
                    sensor: row.sensor.unwrap_or_default(),
                    signature_id: row.alert_signature_id.unwrap_or(0),
                    signature: row.alert_signature.unwrap_or_default(),
                    category: row.alert_category.unwrap_or_default(),
                    severity: row.alert_severity.unwrap_or(3),
                    src_ip: row.src_ip.unwrap_or_default(),
                    src_port: row.src_port,
                    dest_ip: row.dest_ip.unwrap_or_default(),
                    dest_port: row.dest_port,
                    proto: row.proto.unwrap_or_default(),
                    fields: None,
                    flow_id: v["flow_id"].as_i64(),
                    community_id: v["community_id"].as_str().unwrap_or_default().to_string(),
                    app_proto: v["app_proto"].as_str().unwrap_or_default().to_string(),
                    action: v["alert"]["action"].as_str().unwrap_or_default().to_string(),
                    gid: v["alert"]["gid"].as_i64(),
                    rev: v["alert"]["rev"].as_i64(),
                });
            }
        }
    }
    out
}

#[derive(Debug, Default, PartialEq)]
struct Output {
    decisions: Vec<Decision>,
    rollups: Vec<Rollup>,
    incidents: Vec<IncidentEvent>,
    late: u64,
    /// Every decision's key, event time and whether it was a `First`, in order.
    log: Vec<(String, i64, bool)>,
}

/// Runs a stream through watermark → dedup → correlation, with event time as the clock.
fn run(alerts: &[AlertRecord], rules: Vec<Rule>) -> Output {
    let s = 1_000_000;
    let mut wm = Watermark::new(60 * s, 3600 * s, 300 * s);
    let mut dedup = Dedup::new(DedupConfig::default());
    let mut corr = Correlator::new(rules, 100_000);
    let mut out = Output::default();
    let mut clock = i64::MIN;
    for a in alerts {
        clock = clock.max(a.ts_us);
        let o = wm.observe(a.ts_us, clock);
        if o.late {
            out.late += 1;
            continue;
        }
        let mut a = a.clone();
        a.ts_us = o.ts_us;
        let d = dedup.offer(&a, &mut out.rollups);
        let key = match &d {
            Decision::First { key } | Decision::Escalated { key, .. } | Decision::Suppressed { key, .. } => key.clone(),
        };
        out.log.push((key.to_string(), a.ts_us, matches!(d, Decision::First { .. })));
        out.decisions.push(d);
        corr.offer(&a, &mut out.incidents);
        if let Some(w) = wm.current(clock) {
            dedup.advance(w, &mut out.rollups);
            corr.advance(w, &mut out.incidents);
        }
    }
    dedup.advance(i64::MAX, &mut out.rollups);
    corr.advance(i64::MAX, &mut out.incidents);
    out
}

/// The property itself: a key goes on as `First` again only when more than a window of
/// event time has passed since its latest alert (its entry expired), unless keys were
/// evicted. Returns how many keys went on more than once.
fn assert_no_key_twice_in_its_window(out: &Output, window_us: i64, what: &str) -> usize {
    let evictions = out.rollups.iter().any(|r| r.reason == "evicted");
    let mut latest: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut again = std::collections::HashSet::new();
    for (key, ts, first) in &out.log {
        match latest.get(key.as_str()) {
            Some(&prev) if *first => {
                again.insert(key.as_str());
                assert!(
                    evictions || ts - prev > window_us,
                    "{what}: `{key}` went on as first at {ts}, {} s after its alert at {prev}",
                    (ts - prev) / 1_000_000
                );
            }
            None => assert!(*first, "{what}: the first alert of `{key}` is not a First"),
            Some(_) => {}
        }
        let e = latest.entry(key).or_insert(*ts);
        *e = (*e).max(*ts);
    }
    again.len()
}

fn scan_rule() -> Rule {
    Rule {
        name: "one source, many ports".into(),
        selectors: vec![],
        group_by: vec![KeyField::SrcIp],
        timespan_us: 300_000_000,
        condition: Condition::value_count(KeyField::DestPort, 10),
        ..Default::default()
    }
}

fn burst_rule() -> Rule {
    Rule {
        name: "signature burst".into(),
        selectors: vec![],
        group_by: vec![KeyField::SignatureId, KeyField::DestIp],
        timespan_us: 60_000_000,
        condition: Condition::event_count(20),
        ..Default::default()
    }
}

#[test]
fn real_alerts_reduce_and_conserve_counts() {
    // The corpus concatenates hundreds of pcaps from different years: merged in event-time
    // order it is one long, time-ordered sensor stream.
    let mut alerts = corpus_alerts();
    alerts.sort_by_key(|a| a.ts_us);
    assert!(alerts.len() > 1000);
    let out = run(&alerts, vec![scan_rule(), burst_rule()]);
    let emitted = out.decisions.iter().filter(|d| !matches!(d, Decision::Suppressed { .. })).count();
    let suppressed = out.decisions.len() - emitted;
    let opened = out.incidents.iter().filter(|i| i.status == Status::Open).count();
    let closed = out.incidents.iter().filter(|i| i.status == Status::Closed).count();
    println!(
        "raw alerts {}, late {}, emitted {emitted}, suppressed {suppressed}, roll-ups {}, incidents {opened} (closed {closed})",
        alerts.len(),
        out.late,
        out.rollups.len()
    );
    // Conservation: every alert is late, emitted or suppressed; every suppressed alert is
    // in exactly one roll-up.
    assert_eq!(out.late as usize + out.decisions.len(), alerts.len());
    assert_eq!(out.rollups.iter().map(|r| r.suppressed as usize).sum::<usize>(), suppressed);
    // Every incident that opened closed (the stream ended), under a stable id.
    assert_eq!(opened, closed);
    assert!(emitted < alerts.len());
}

#[test]
fn generated_streams_conserve_counts_and_never_repeat_a_key_in_its_window() {
    let s = 1_000_000i64;
    let mut repeated_keys = 0;
    for seed in 1..40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut t = 1_700_000_000 * s;
        let mut alerts = Vec::new();
        for _ in 0..2000 {
            t += rng.below((5 * s) as usize) as i64;
            // Out of order by up to 90 s (some beyond the 60 s lateness).
            let jitter = rng.below((90 * s) as usize) as i64;
            alerts.push(AlertRecord {
                ts_us: t - jitter,
                sensor: format!("s{}", rng.below(2)),
                signature_id: rng.below(5) as i64,
                severity: 1 + rng.below(3) as i32,
                src_ip: format!("10.0.0.{}", rng.below(4)),
                dest_ip: format!("10.0.1.{}", rng.below(4)),
                dest_port: Some(rng.below(30) as i32),
                proto: "TCP".into(),
                ..Default::default()
            });
        }
        let out = run(&alerts, vec![scan_rule(), burst_rule()]);
        let suppressed = out.decisions.iter().filter(|d| matches!(d, Decision::Suppressed { .. })).count();
        assert_eq!(out.late as usize + out.decisions.len(), alerts.len(), "seed {seed}");
        assert_eq!(out.rollups.iter().map(|r| r.suppressed as usize).sum::<usize>(), suppressed, "seed {seed}");
        // No key goes on as "first" twice while its entry lives: a second First for a
        // key needs its expiry (or eviction) roll-up and a window of event time in between.
        repeated_keys += assert_no_key_twice_in_its_window(&out, DedupConfig::default().window_us, &format!("seed {seed}"));
        // Incident ids are unique per open, and every open closes.
        let opened: Vec<_> = out.incidents.iter().filter(|i| i.status == Status::Open).map(|i| i.id.clone()).collect();
        let unique: std::collections::HashSet<_> = opened.iter().collect();
        assert_eq!(unique.len(), opened.len(), "seed {seed}");
        assert_eq!(out.incidents.iter().filter(|i| i.status == Status::Closed).count(), opened.len(), "seed {seed}");
        assert_eq!(run(&alerts, vec![scan_rule(), burst_rule()]), out, "seed {seed}: deterministic");
    }
    // The streams are long enough for keys to expire and go on again (the property is
    // exercised, not vacuous).
    assert!(repeated_keys > 0, "no key went on twice in any stream");
}

// ---- end to end: the binary's pipeline with the state stage ----

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::read_table;

fn eve_alert(ts_s: i64, sid: i64, src: &str, dst: &str, dport: u16, seq: usize) -> String {
    let t = jiff::Timestamp::from_second(ts_s).unwrap().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    format!(
        "{{\"timestamp\":\"{t}.{seq:06}+0000\",\"flow_id\":{},\"event_type\":\"alert\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"{dst}\",\"dest_port\":{dport},\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\"signature_id\":{sid},\"rev\":1,\"signature\":\"test {sid}\",\"category\":\"Misc\",\"severity\":2}}}}",
        1000 + seq
    )
}

/// Event time of the first alert of [`alert_stream`] (2026-11-18T11:06:40Z).
const STREAM_BASE: i64 = 1_795_000_000;

/// `alertflow replay --json` with the process clock set to `clock` (epoch seconds), so
/// what counts as "in the future" does not depend on the day the test runs.
fn replay_at(cfg: &Path, input: &Path, clock: i64) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_alertflow"))
        .args(["replay", "--json", "--config"])
        .arg(cfg)
        .arg(input)
        .env(alertflow::event::time::CLOCK_ENV, clock.to_string())
        .output()
        .unwrap()
}

/// 20 repeating keys and one source scanning 25 ports, 2,000 alerts over ~10 minutes.
fn alert_stream() -> Vec<String> {
    let base = STREAM_BASE;
    let mut out = Vec::new();
    for i in 0..2000usize {
        let t = base + (i as i64) * 300 / 1000;
        let line = if i % 40 == 7 && i / 40 < 25 {
            eve_alert(t, 9000, "192.0.2.66", "10.0.0.1", 1000 + (i / 40) as u16, i)
        } else {
            eve_alert(t, 100 + (i % 5) as i64, &format!("10.1.0.{}", i % 4), "10.0.0.2", 443, i)
        };
        out.push(line);
    }
    out
}

fn state_config(dir: &Path, input: &Path, notify: &Path) -> std::path::PathBuf {
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"\"\n\n[state]\noutput = \"{}\"\nallowed_lateness_secs = 5\n\n[[state.rules]]\nname = \"scan\"\ntype = \"value_count\"\ngroup_by = [\"src_ip\"]\nfield = \"dest_port\"\ngte = 20\ntimespan_secs = 600\n\n[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{}\"\npoll_interval_ms = 50\n",
        dir.join("archive").display(), notify.display(), input.display())).unwrap();
    cfg
}

#[test]
fn replay_fills_alerts_and_incidents_and_notifies_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let lines = alert_stream();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let notify = dir.path().join("notify.jsonl");
    let cfg = state_config(dir.path(), &input, &notify);
    let out = replay_at(&cfg, &input, STREAM_BASE + 700);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archive = dir.path().join("archive");
    let alerts = read_table(&archive, "alerts");
    assert_eq!(alerts.len(), lines.len(), "one alerts row per alert event");
    let suppressed = alerts.iter().filter(|r| r["suppressed"] == "true").count();
    let keys: std::collections::HashSet<_> = alerts.iter().map(|r| r["dedup_key"].clone()).collect();
    assert_eq!(keys.len(), 20 + 1, "20 repeating keys and the scan (ports are not in the default key)");
    let notes: Vec<Value> = std::fs::read_to_string(&notify).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let firsts: Vec<_> = notes.iter().filter(|n| n["type"] == "alert" && n["decision"] == "first").collect();
    // Each key goes on once inside its window (the stream spans 10 minutes, the window
    // is 5: a key may go on once more after its window passed).
    let distinct_first: std::collections::HashSet<_> =
        firsts.iter().map(|n| (n["dedup_key"].as_str().unwrap().to_string(), n["timestamp"].as_str().unwrap().to_string())).collect();
    assert_eq!(distinct_first.len(), firsts.len());
    assert!(suppressed > 1500, "{suppressed} suppressed");
    let rolled: u64 = notes.iter().filter(|n| n["type"] == "rollup").map(|n| n["suppressed"].as_u64().unwrap()).sum();
    assert_eq!(rolled as usize, suppressed, "every suppressed alert is in a roll-up");
    let incidents = read_table(&archive, "incidents");
    let opened: Vec<_> = incidents.iter().filter(|r| r["status"] == "open").collect();
    assert_eq!(opened.len(), 1, "{incidents:#?}");
    assert_eq!(opened[0]["rule"], "scan");
    assert_eq!(opened[0]["group_key"], "192.0.2.66");
    assert_eq!(opened[0]["alert_ids"].split(',').count(), 20);
    assert!(incidents.iter().any(|r| r["status"] == "closed" && r["incident_id"] == opened[0]["incident_id"] && r["alert_count"] == "25"));
    let member = alerts.iter().filter(|r| r.get("incident_id") == Some(&opened[0]["incident_id"])).count();
    // From the alert that opened it on, alerts carry the incident id; the open row lists
    // the window's alerts before it.
    assert_eq!(member, 25 - 20 + 1, "the scan's alerts point at their incident");
    let listed: std::collections::HashSet<&str> = opened[0]["alert_ids"].split(',').collect();
    let scan_ids: std::collections::HashSet<&str> = alerts.iter().filter(|r| r["src_ip"] == "192.0.2.66").map(|r| r["alert_id"].as_str()).collect();
    assert!(listed.is_subset(&scan_ids));
    // The incident's lines together list each of its 25 members once (each line the ones
    // that joined since the previous), and every line says which schema it follows.
    let lines: Vec<&Value> = notes.iter().filter(|n| n["type"] == "incident" && n["incident_id"] == opened[0]["incident_id"].as_str()).collect();
    let members: Vec<&str> = lines.iter().flat_map(|l| l["alert_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap())).collect();
    let distinct: std::collections::HashSet<&str> = members.iter().copied().collect();
    assert_eq!((members.len(), distinct.len()), (25, 25), "{lines:#?}");
    assert!(distinct.is_subset(&scan_ids));
    assert_eq!(lines.last().unwrap()["status"], "closed");
    assert_eq!(lines.last().unwrap()["alert_count"], 25);
    assert!(notes.iter().all(|n| n["schema_version"] == 1), "every line has the schema version");
    let roll = notes.iter().find(|n| n["type"] == "rollup").unwrap();
    assert!(roll["signature_id"].as_i64().is_some() && roll["signature"].as_str().is_some_and(|s| !s.is_empty()), "{roll}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["alert_rows"], 2000);
}

/// The same stream replayed with the process clock an hour before its first alert: every
/// alert is "in the future" and is clamped to the clock plus `max_future` (5 minutes), so
/// no notification carries a time from the stream. Shows the clock the tests set is the
/// one the pipeline uses.
#[test]
fn the_process_clock_decides_what_is_in_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    std::fs::write(&input, alert_stream().join("\n") + "\n").unwrap();
    let notify = dir.path().join("notify.jsonl");
    let cfg = state_config(dir.path(), &input, &notify);
    let out = replay_at(&cfg, &input, STREAM_BASE - 3600);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let notes: Vec<Value> = std::fs::read_to_string(&notify).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let alerts: Vec<&Value> = notes.iter().filter(|n| n["type"] == "alert").collect();
    assert!(!alerts.is_empty());
    for a in alerts {
        let t = alertflow::event::time::parse_timestamp_us(a["timestamp"].as_str().unwrap().as_bytes()).unwrap() / 1_000_000;
        assert!(t < STREAM_BASE - 3600 + 400, "clamped near the process clock: {a}");
    }
}

/// The decisions of an archive's `alerts` table, one sorted row per alert. Alert ids and
/// dedup keys name the source (`replay` in a replay, `eve` live): the source's name is left
/// out of the key, alerts are matched by flow id and time, incidents by membership.
fn decisions(archive: &Path) -> Vec<Vec<String>> {
    let value = |r: &std::collections::BTreeMap<String, String>, c: &str| {
        let v = r.get(c).cloned().unwrap_or_default();
        if c == "dedup_key" {
            v.split_once('|').map(|x| x.1.to_string()).unwrap_or(v)
        } else if c == "incident_id" {
            (!v.is_empty()).to_string()
        } else {
            v
        }
    };
    let mut rows: Vec<Vec<String>> = read_table(archive, "alerts").iter().map(|r| DECISION_COLUMNS.iter().map(|c| value(r, c)).collect()).collect();
    rows.sort();
    rows
}

const DECISION_COLUMNS: [&str; 9] = ["flow_id", "timestamp", "dedup_key", "dedup_count", "suppressed", "late", "incident_id", "score", "priority"];

/// Without `[state] output` (nor an outbox) nobody reads the alert path's JSON lines, so
/// they are not made: the archive's alerts and incidents and the audit trail are the same
/// as with the output file, which holds the lines.
#[test]
fn without_an_output_the_same_decisions_and_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let lines = alert_stream();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let notify = dir.path().join("notify.jsonl");
    let with = state_config(dir.path(), &input, &notify);
    let text = std::fs::read_to_string(&with).unwrap();
    let without = dir.path().join("without.toml");
    let other = dir.path().join("other");
    std::fs::write(
        &without,
        text.replace(&format!("output = \"{}\"\n", notify.display()), "")
            .replace(&dir.path().join("archive").display().to_string(), &other.display().to_string()),
    )
    .unwrap();
    assert!(!std::fs::read_to_string(&without).unwrap().contains("output ="));
    for cfg in [&with, &without] {
        let out = replay_at(cfg, &input, STREAM_BASE + 700);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let archive = dir.path().join("archive");
    assert!(std::fs::read_to_string(&notify).unwrap().lines().count() > 20);
    assert_eq!(decisions(&other), decisions(&archive));
    let incidents = |a: &Path| {
        let mut v: Vec<(String, String)> = read_table(a, "incidents").iter().map(|r| (r["status"].clone(), r["alert_count"].clone())).collect();
        v.sort();
        v
    };
    assert!(!incidents(&archive).is_empty());
    assert_eq!(incidents(&other), incidents(&archive));
    let trail = |a: &Path| -> Vec<(String, String)> {
        std::fs::read_to_string(a.join("_audit/audit.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| (v["kind"].as_str().unwrap().to_string(), v["detail"].to_string()))
            .collect()
    };
    let kinds: std::collections::HashSet<String> = trail(&archive).into_iter().map(|(k, _)| k).collect();
    assert!(kinds.contains("alert_emitted") && kinds.contains("alerts_suppressed") && kinds.contains("incident_opened"), "{kinds:?}");
    assert_eq!(trail(&other), trail(&archive));
}

/// The state stage's shards (`[state] shards`) through the whole pipeline: four shards
/// decide as one does.
#[test]
fn four_state_shards_through_the_pipeline_decide_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    std::fs::write(&input, alert_stream().join("\n") + "\n").unwrap();
    let mut results = Vec::new();
    for shards in [1, 4] {
        let sub = dir.path().join(format!("shards-{shards}"));
        std::fs::create_dir_all(&sub).unwrap();
        let cfg = state_config(&sub, &input, &sub.join("notify.jsonl"));
        let text = std::fs::read_to_string(&cfg).unwrap().replace("[state]\n", &format!("[state]\nshards = {shards}\n"));
        std::fs::write(&cfg, text).unwrap();
        let out = replay_at(&cfg, &input, STREAM_BASE + 700);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        results.push(decisions(&sub.join("archive")));
    }
    assert_eq!(results[0].len(), 2000);
    assert!(results[0].iter().any(|r| r[6] == "true"), "an incident is among the decisions");
    assert_eq!(results[0], results[1]);
}

/// Sigma correlation rules loaded from a file named in the configuration, through the
/// binary: ten probes of ten ports open the `port_scan` incident (`gt: 9`); nine failed
/// logins (`gte: 10`) open nothing.
#[test]
fn sigma_rules_from_the_configuration_open_incidents_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let mut lines = Vec::new();
    for i in 0..10usize {
        lines.push(eve_alert(STREAM_BASE + i as i64, 2, "192.0.2.1", "10.0.0.1", 1000 + i as u16, i));
    }
    for i in 0..9usize {
        lines.push(eve_alert(STREAM_BASE + 20 + i as i64, 1, "10.0.0.9", "10.0.0.5", 22, 100 + i));
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let cfg = dir.path().join("c.toml");
    let sigma = common::data_dir().join("sigma/correlations.yml");
    let selectors: String = [("failed_login", 1), ("probe", 2), ("recon", 10), ("exploit", 11), ("callback", 12)]
        .iter()
        .map(|(n, sid)| format!("[[state.selectors]]\nname = \"{n}\"\nsignature_ids = [{sid}]\n\n"))
        .collect();
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nroot = \"{}\"\n\n[metrics]\nlisten = \"\"\n\n[state]\nsigma = [\"{}\"]\n\n{selectors}",
            dir.path().join("archive").display(),
            sigma.display()
        ),
    )
    .unwrap();
    let out = replay_at(&cfg, &input, STREAM_BASE + 700);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let incidents = read_table(&dir.path().join("archive"), "incidents");
    let opened: Vec<_> = incidents.iter().filter(|r| r["status"] == "open").collect();
    assert_eq!(opened.len(), 1, "{incidents:#?}");
    assert_eq!((opened[0]["rule"].as_str(), opened[0]["group_key"].as_str()), ("port_scan", "192.0.2.1"));
}

/// What a replay decides equals what the live pipeline decides on the same alerts arriving
/// in chunks: the same alert ids, dedup decisions and counts, incident membership, scores.
#[test]
fn live_run_decides_as_the_replay_of_the_same_file() {
    let lines = alert_stream();
    // Replay.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let cfg = state_config(dir.path(), &input, &dir.path().join("notify.jsonl"));
    let out = replay_at(&cfg, &input, STREAM_BASE + 700);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed = decisions(&dir.path().join("archive"));
    // Live: the file grows in chunks of 250 while `alertflow run` follows it.
    let live_dir = tempfile::tempdir().unwrap();
    let live_input = live_dir.path().join("eve.json");
    std::fs::write(&live_input, "").unwrap();
    let live_cfg = state_config(live_dir.path(), &live_input, &live_dir.path().join("notify.jsonl"));
    let child = common::Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["run", "--config"])
            .arg(&live_cfg)
            .env("ALERTFLOW_LOG", "error")
            .env(alertflow::event::time::CLOCK_ENV, (STREAM_BASE + 700).to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let archive = live_dir.path().join("archive");
    for chunk in lines.chunks(250) {
        let mut f = std::fs::OpenOptions::new().append(true).open(&live_input).unwrap();
        f.write_all((chunk.join("\n") + "\n").as_bytes()).unwrap();
        drop(f);
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_table(&archive, "alerts").len() < lines.len() {
        assert!(Instant::now() < deadline, "live run stuck at {} alerts", read_table(&archive, "alerts").len());
        std::thread::sleep(Duration::from_millis(50));
    }
    child.stop();
    let live = decisions(&archive);
    assert_eq!(live.len(), lines.len());
    assert!(replayed.iter().any(|r| r[4] == "true") && replayed.iter().any(|r| r[6] == "true"), "suppressions and an incident are compared");
    for (l, r) in live.iter().zip(&replayed) {
        assert_eq!(l, r, "live and replay differ ({DECISION_COLUMNS:?})");
    }
    assert_eq!(live, replayed);
}

#[test]
fn sigkill_and_restart_neither_forget_nor_repeat() {
    kill_and_restart(false);
}

/// The same with the snapshot chain folded after every delta (off the alert path's
/// thread; kills land while folds run): restarts restore from the folded snapshots.
#[test]
fn sigkill_and_restart_with_folded_snapshots() {
    kill_and_restart(true);
}

fn kill_and_restart(fold: bool) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    std::fs::write(&input, "").unwrap();
    let notify = dir.path().join("notify.jsonl");
    let cfg = state_config(dir.path(), &input, &notify);
    let lines = alert_stream();
    let archive = dir.path().join("archive");
    let start = |cfg: &Path| {
        common::Running::new(
            Command::new(env!("CARGO_BIN_EXE_alertflow"))
                .args(["run", "--config"])
                .arg(cfg)
                .env("ALERTFLOW_LOG", "error")
                .env(alertflow::event::time::CLOCK_ENV, (STREAM_BASE + 700).to_string())
                .env(alertflow::pipeline::snapshots::CHAIN_MIN_BYTES_VAR, if fold { "1" } else { "67108864" })
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut written = 0;
    for round in 0..4 {
        let child = start(&cfg);
        let chunk = &lines[written..(written + 500).min(lines.len())];
        let mut f = std::fs::OpenOptions::new().append(true).open(&input).unwrap();
        for l in chunk {
            writeln!(f, "{l}").unwrap();
        }
        drop(f);
        written += chunk.len();
        let target = written - 100 * (round < 3) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        while read_table(&archive, "alerts").len() < target {
            assert!(Instant::now() < deadline, "round {round}: archive did not reach {target}");
            std::thread::sleep(Duration::from_millis(50));
        }
        if round < 3 {
            child.kill9();
        } else {
            let deadline = Instant::now() + Duration::from_secs(60);
            while read_table(&archive, "alerts").len() < lines.len() {
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(500));
            child.stop();
        }
    }
    let alerts = read_table(&archive, "alerts");
    assert_eq!(alerts.len(), lines.len(), "every alert archived once");
    let ids: std::collections::HashSet<_> = alerts.iter().map(|r| r["alert_id"].clone()).collect();
    assert_eq!(ids.len(), lines.len());
    // No incident opened twice, whatever the kills.
    let incidents = read_table(&archive, "incidents");
    let opened: Vec<_> = incidents.iter().filter(|r| r["status"] == "open").map(|r| r["incident_id"].clone()).collect();
    assert_eq!(opened.len(), 1, "{incidents:#?}");
    // No alert announced twice: a key's "first" appears at most once per window start.
    let notes: Vec<Value> = std::fs::read_to_string(&notify).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut seen = std::collections::HashSet::new();
    for n in notes.iter().filter(|n| n["type"] == "alert") {
        assert!(seen.insert(n["alert_id"].as_str().unwrap().to_string()), "alert {} announced twice", n["alert_id"]);
    }
    let mut inc = std::collections::HashSet::new();
    for n in notes.iter().filter(|n| n["type"] == "incident" && n["status"] == "open") {
        assert!(inc.insert(n["incident_id"].as_str().unwrap().to_string()), "incident announced twice");
    }
    // Dedup state survives the kills: every key of the stream stays inside its window
    // (a repeat every ~1.5 s, window 300 s), so each goes on as "first" exactly once. A
    // restart that lost the state would announce each key again, with another alert id.
    let mut firsts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for n in notes.iter().filter(|n| n["type"] == "alert" && n["decision"] == "first") {
        *firsts.entry(n["dedup_key"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let keys: std::collections::HashSet<_> = alerts.iter().map(|r| r["dedup_key"].clone()).collect();
    assert_eq!(firsts.len(), keys.len(), "every key went on once");
    assert!(firsts.values().all(|&n| n == 1), "a key went on as first again after a kill: {firsts:?}");
    // The state went from run to run as a chain of deltas (each what changed since the
    // snapshot before), restored after every kill: `snap-<seq>-e<epoch>-b<base>.json`, no
    // gap; without folding, all on the empty state; with, from a folded whole snapshot.
    let files = alertflow::pipeline::snapshots::list(&archive.join("_state")).unwrap();
    let chain = alertflow::pipeline::snapshots::chain(&files).unwrap();
    assert!(chain.windows(2).all(|w| w[1].seq == w[0].seq + 1), "{files:?}");
    match fold {
        false => {
            assert!(files.len() >= 4 && chain.len() == files.len(), "{files:?}");
            assert!(files.iter().all(|f| f.base == 0), "{files:?}");
        }
        true => {
            assert!(chain[0].whole() && chain[0].seq >= 2, "{files:?}");
            // The files before the newest landed fold are gone (a fold that ended after the
            // last commit leaves the one before it until the next commit).
            assert!(files.iter().filter(|f| f.whole()).count() <= 2, "files before the fold removed: {files:?}");
        }
    }
}

/// A burst of 10 M distinct keys against a cap of 100,000: the cap holds, every eviction
/// is counted and rolled up when it had repeats, nothing panics.
#[test]
fn ten_million_distinct_keys_stay_within_the_cap() {
    let mut d = Dedup::new(DedupConfig { max_keys: 100_000, ..Default::default() });
    let mut out = Vec::new();
    let mut a = AlertRecord { sensor: "s".into(), signature_id: 1, severity: 2, dest_ip: "10.0.0.1".into(), proto: "TCP".into(), ..Default::default() };
    let n: u64 = 10_000_000;
    for i in 0..n {
        a.ts_us = 1_700_000_000_000_000 + i as i64;
        a.src_ip = format!("{}.{}.{}.{}", i >> 24, (i >> 16) & 255, (i >> 8) & 255, i & 255);
        d.offer(&a, &mut out);
        assert!(d.len() <= 100_000);
    }
    assert_eq!(d.len(), 100_000);
    assert_eq!(d.counts.first, n);
    assert_eq!(d.counts.evicted, n - 100_000);
    assert!(out.is_empty(), "no key had repeats, so no roll-up");
}

/// Sigma correlation rules: each of the four types fires on a crafted stream and not on
/// a near miss.
#[test]
fn sigma_correlations_fire_and_near_misses_do_not() {
    use alertflow::state::correlate::Selector;
    let sel = |name: &str, sids: &[i64]| Selector { name: name.into(), signature_ids: sids.to_vec(), ..Default::default() };
    let selectors = vec![sel("failed_login", &[1]), sel("probe", &[2]), sel("recon", &[10]), sel("exploit", &[11]), sel("callback", &[12])];
    let text = std::fs::read_to_string(common::data_dir().join("sigma/correlations.yml")).unwrap();
    let rules = alertflow::state::sigma::load(&text, &selectors).unwrap();
    let names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["many_failed_logins", "port_scan", "chain_any_order", "kill_chain"]);
    let s = 1_000_000i64;
    let al = |t: i64, sid: i64, sensor: &str, src: &str, dst: &str, port: i32| AlertRecord {
        alert_id: format!("{t}-{sid}"),
        ts_us: t * s,
        sensor: sensor.into(),
        signature_id: sid,
        severity: 2,
        src_ip: src.into(),
        dest_ip: dst.into(),
        dest_port: Some(port),
        proto: "TCP".into(),
        ..Default::default()
    };
    let fired = |alerts: &[AlertRecord]| -> Vec<String> {
        let mut c = Correlator::new(rules.clone(), 1000);
        let mut out = Vec::new();
        for a in alerts {
            c.offer(a, &mut out);
        }
        let mut v: Vec<String> = out.iter().filter(|e| e.status == Status::Open).map(|e| e.rule.clone()).collect();
        v.sort();
        v
    };
    // event_count: 10 failed logins on one host within an hour; 9 is a near miss, and so
    // are 10 spread over two hours.
    let logins = |n: i64, step: i64| (0..n).map(|i| al(i * step, 1, "web1", "10.0.0.9", "10.0.0.1", 22)).collect::<Vec<_>>();
    assert_eq!(fired(&logins(10, 60)), ["many_failed_logins"]);
    assert!(fired(&logins(9, 60)).is_empty());
    assert!(fired(&logins(10, 800)).is_empty());
    // value_count: more than 9 distinct ports (gt: 9) in 5 minutes from one source.
    let probes = |ports: i32| (0..ports).map(|p| al(p as i64, 2, "s", "192.0.2.1", "10.0.0.1", 1000 + p)).collect::<Vec<_>>();
    assert_eq!(fired(&probes(10)), ["port_scan"]);
    assert!(fired(&probes(9)).is_empty());
    // temporal (any order) and temporal_ordered, grouped by the destination.
    let chain =
        |sids: [i64; 3], gap: i64| sids.iter().enumerate().map(|(i, &sid)| al(i as i64 * gap, sid, "s", "198.51.100.7", "10.0.0.5", 443)).collect::<Vec<_>>();
    assert_eq!(fired(&chain([10, 11, 12], 60)), ["chain_any_order", "kill_chain"]);
    assert_eq!(fired(&chain([12, 11, 10], 60)), ["chain_any_order"], "wrong order: only the unordered rule");
    assert!(fired(&chain([10, 11, 12], 1000)).is_empty(), "too far apart for 30 minutes");
    assert!(fired(&chain([10, 11, 11], 60)).is_empty(), "callback missing");
    // Errors name the rule and the problem.
    let err = alertflow::state::sigma::load("name: x\ncorrelation:\n  type: event_count\n  rules: [nope]\n  timespan: 1h\n  condition: {gte: 1}\n", &selectors)
        .unwrap_err();
    assert_eq!(err.problem, alertflow::state::sigma::Problem::UnknownSelector("nope".into()));
    assert_eq!((err.document, err.rule.as_deref()), (1, Some("x")));
    assert!(err.to_string().contains("`nope` names no rule"), "{err}");
    let err = alertflow::state::sigma::load(
        "name: x\ncorrelation:\n  type: event_count\n  rules: [probe]\n  timespan: 1 fortnight\n  condition: {gte: 1}\n",
        &selectors,
    )
    .unwrap_err();
    assert_eq!(err.problem, alertflow::state::sigma::Problem::BadTimespan("1 fortnight".into()));
    assert!(err.to_string().contains("timespan"), "{err}");
}

fn mixed_alert(t: i64, frac: usize, flow: i64, (src, dst): (&str, &str), port: usize, (sid, severity): (i64, usize)) -> String {
    let ts = jiff::Timestamp::from_second(t).unwrap().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    format!(
        "{{\"timestamp\":\"{ts}.{frac:06}+0000\",\"flow_id\":{flow},\"event_type\":\"alert\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"{dst}\",\"dest_port\":{port},\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\"signature_id\":{sid},\"rev\":1,\"signature\":\"s{sid}\",\"category\":\"Misc\",\"severity\":{severity}}}}}"
    )
}

/// A stream of alerts (repeats, scans, bursts, out of order, some late, some from the
/// future) with http/dns/flow events around them, as EVE lines with their arrival clock.
/// Whatever the seed, it holds one incident of the `pair` rule that closes and is then
/// corrected by a late alert (on a host pair the random part never uses).
fn mixed_state_stream(seed: u64, n: usize) -> Vec<(String, i64)> {
    let mut rng = Rng(seed);
    let base = 1_795_000_000i64;
    let mut out = Vec::with_capacity(n);
    let mut clock = base;
    let mut planted = None;
    for i in 0..n {
        clock += rng.below(3) as i64;
        if i == n / 2 {
            for k in 0..3 {
                out.push((mixed_alert(clock + k, 900_000 + k as usize, 9_000 + k, ("10.9.0.1", "10.9.0.2"), 22, (200, 2)), clock + k));
            }
            planted = Some(clock + 1);
        }
        if let Some(t) = planted.filter(|t| clock > t + 400) {
            out.push((mixed_alert(t, 900_100, 9_100, ("10.9.0.1", "10.9.0.2"), 22, (200, 2)), clock));
            planted = None;
        }
        let mut t = clock;
        match rng.below(20) {
            0 => t -= 70 + rng.below(200) as i64, // late
            1 => t += 100_000,                    // far future
            2..=5 => t -= rng.below(30) as i64,   // out of order within lateness
            _ => {}
        }
        let ts = jiff::Timestamp::from_second(t).unwrap().strftime("%Y-%m-%dT%H:%M:%S").to_string();
        let flow = 5000 + rng.below(300) as i64;
        let src = format!("10.1.0.{}", rng.below(10));
        let dst = format!("10.2.0.{}", rng.below(8));
        let line = match rng.below(6) {
            0 => format!("{{\"timestamp\":\"{ts}.{i:06}+0000\",\"flow_id\":{flow},\"event_type\":\"http\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"{dst}\",\"dest_port\":80,\"proto\":\"TCP\",\"http\":{{\"hostname\":\"h{}.example\",\"url\":\"/{i}\",\"http_method\":\"GET\",\"status\":200}}}}", rng.below(50)),
            1 => format!("{{\"timestamp\":\"{ts}.{i:06}+0000\",\"flow_id\":{flow},\"event_type\":\"dns\",\"src_ip\":\"{src}\",\"src_port\":5353,\"dest_ip\":\"10.0.0.53\",\"dest_port\":53,\"proto\":\"UDP\",\"dns\":{{\"type\":\"query\",\"id\":1,\"rrname\":\"d{}.example\",\"rrtype\":\"A\"}}}}", rng.below(80)),
            2 => format!("{{\"timestamp\":\"{ts}.{i:06}+0000\",\"flow_id\":{flow},\"event_type\":\"flow\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"{dst}\",\"dest_port\":80,\"proto\":\"TCP\",\"flow\":{{\"pkts_toserver\":3,\"pkts_toclient\":2,\"bytes_toserver\":300,\"bytes_toclient\":900,\"state\":\"closed\",\"reason\":\"timeout\"}}}}"),
            _ => {
                let sid = 100 + rng.below(8) as i64;
                let port = 20 + rng.below(40);
                mixed_alert(t, i, flow, (&src, &dst), port, (sid, 1 + rng.below(3)))
            }
        };
        out.push((line, clock));
    }
    out
}

fn batch_of(lines: &[(String, i64)]) -> alertflow::event::EventBatch {
    let mut parser = alertflow::parse::eve::EveParser::new(Default::default());
    let mut b = alertflow::event::EventBatchBuilder::with_capacity(lines.len(), 0);
    for (l, _) in lines {
        parser.parse(l.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "gen", l)).unwrap();
    }
    b.finish()
}

fn sharded_config(shards: usize) -> alertflow::state::stage::StateConfig {
    let text = format!(
        "[metrics]\nlisten = \"\"\n[state]\nshards = {shards}\nallowed_lateness_secs = 60\n[state.dedup]\nwindow_secs = 120\nrollup_secs = 30\n\
         [[state.rules]]\nname = \"scan\"\ntype = \"value_count\"\ngroup_by = [\"src_ip\"]\nfield = \"dest_port\"\ngte = 6\ntimespan_secs = 120\n\
         [[state.rules]]\nname = \"burst\"\ntype = \"event_count\"\ngroup_by = [\"signature_id\", \"dest_ip\"]\ngte = 4\ntimespan_secs = 60\nlate = \"drop\"\n\
         [[state.rules]]\nname = \"pair\"\ntype = \"event_count\"\ngroup_by = [\"src_ip\", \"dest_ip\"]\ngte = 3\ntimespan_secs = 90\n"
    );
    alertflow::config::Config::parse(&text).unwrap().state.engine
}

/// What a run produced: per alert row (id, key, count, suppressed, late, incident), and
/// all JSON lines.
fn run_stage(shards: usize, stream: &[(String, i64)], restart_at: Option<(usize, usize)>) -> (Vec<String>, Vec<String>) {
    use alertflow::pipeline::alerts::{AlertOutput as StateOutput, AlertPath};
    use arrow::array::{Array, BooleanArray, Int64Array, StringArray};
    let mut stage = AlertPath::new(&sharded_config(shards), None, None);
    let (mut rows, mut lines) = (Vec::new(), Vec::new());
    let mut take = |o: StateOutput| {
        if let Some(a) = o.alerts {
            let c = &a.columns;
            let s = |n: &str| c.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
            let b = |n: &str| c.column_by_name(n).unwrap().as_any().downcast_ref::<BooleanArray>().unwrap().clone();
            let (id, key, inc, ctx) = (s("alert_id"), s("dedup_key"), s("incident_id"), s("flow_context"));
            let count = c.column_by_name("dedup_count").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().clone();
            let (sup, late) = (b("suppressed"), b("late"));
            for i in 0..c.num_rows() {
                let opt = |a: &StringArray| if a.is_valid(i) { a.value(i).to_string() } else { "-".into() };
                rows.push(format!(
                    "{} {} {} {} {} {} {}",
                    id.value(i),
                    opt(&key),
                    if count.is_valid(i) { count.value(i) } else { -1 },
                    sup.value(i),
                    late.value(i),
                    opt(&inc),
                    opt(&ctx)
                ));
            }
        }
        lines.extend(o.lines);
        lines.extend(o.late_lines);
    };
    for (k, chunk) in stream.chunks(250).enumerate() {
        if let Some((at, new_shards)) = restart_at {
            if k == at {
                let snap = stage.snapshot();
                stage = AlertPath::new(&sharded_config(new_shards), None, None);
                stage.restore(&snap).unwrap();
            }
        }
        let now = chunk.last().unwrap().1 * 1_000_000;
        take(stage.process(&batch_of(chunk), now));
    }
    let mut o = StateOutput::default();
    stage.flush(&mut o);
    take(o);
    lines.sort();
    (rows, lines)
}

#[test]
fn sharded_state_equals_one_shard_and_restores_across_shard_counts() {
    let seed = common::seed("sharded state");
    let stream = mixed_state_stream(seed, 12_000);
    let (rows1, lines1) = run_stage(1, &stream, None);
    let alerts = rows1.len();
    assert!(alerts > 5_000, "{alerts} alerts");
    assert!(lines1.iter().any(|l| l.contains("\"status\":\"corrected\"")), "late alerts corrected closed incidents (seed {seed})");
    assert!(lines1.iter().any(|l| l.contains("\"type\":\"flow_context\"")));
    assert!(rows1.iter().filter(|r| r.ends_with('}')).count() > alerts / 2, "most alerts have flow context");
    for shards in [2, 4, 7] {
        let (rows, lines) = run_stage(shards, &stream, None);
        same(&rows, &rows1, &format!("alerts rows with {shards} shards (seed {seed})"));
        same(&lines, &lines1, &format!("JSON lines with {shards} shards (seed {seed})"));
    }
    // Snapshot with 4 shards, restore into 2 (and 1 into 3): the same as never stopping.
    // Flow context is not checkpointed (only flows waiting for their end), so the
    // comparison leaves it out.
    let strip = |rows: Vec<String>| rows.into_iter().map(|r| r.splitn(7, ' ').take(6).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>();
    let not_ctx = |lines: Vec<String>| {
        lines
            .into_iter()
            .filter(|l| !l.contains("\"type\":\"flow_context\""))
            .map(|l| {
                let mut v: Value = serde_json::from_str(&l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("flow_context");
                o.remove("context");
                v.to_string()
            })
            .collect::<Vec<_>>()
    };
    let base_rows = strip(rows1);
    let mut base_lines = not_ctx(lines1);
    base_lines.sort();
    for (from, to) in [(4, 2), (1, 3)] {
        // Stop after a third of the stream, snapshot, restart with another shard count.
        let (rows, lines) = run_stage(from, &stream, Some((stream.len() / 250 / 3, to)));
        same(&strip(rows), &base_rows, &format!("alerts rows, restart {from} → {to} shards (seed {seed})"));
        let mut lines = not_ctx(lines);
        lines.sort();
        same(&lines, &base_lines, &format!("JSON lines, restart {from} → {to} shards (seed {seed})"));
    }
}

/// Equal lists, or the first difference.
fn same(got: &[String], want: &[String], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!("{what}: {} vs {} items, first difference at {i}:\n  got:  {:?}\n  want: {:?}", got.len(), want.len(), got.get(i), want.get(i));
    }
}

/// `late_policy = "late_output"` with `late_output` set: late alerts go to their own file,
/// typed `late_alert`, and nowhere else; on-time alerts go to `output`.
#[test]
fn late_alerts_go_to_their_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let base = 1_795_000_000;
    // Four alerts move event time on; the fifth is 10 minutes older than the rest.
    let lines: Vec<String> =
        [(0, 1), (100, 2), (200, 3), (300, 4), (-300, 5)].iter().map(|&(dt, i)| eve_alert(base + dt, 100 + i as i64, "10.1.0.1", "10.0.0.2", 443, i)).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let (out, late) = (dir.path().join("out.jsonl"), dir.path().join("late/late.jsonl"));
    let mut cfg = common::test_config(&dir.path().join("archive"));
    cfg.state.output = Some(out.clone());
    cfg.state.late_output = Some(late.clone());
    cfg.state.engine.late_policy = alertflow::state::LatePolicy::LateOutput;
    cfg.state.engine.watermark_quorum = 1;
    let s = common::replay(&mut cfg, &[input]);
    assert_eq!(s.alert_rows, 5);
    let read = |p: &Path| -> Vec<Value> { std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    let late_lines = read(&late);
    assert_eq!(late_lines.len(), 1, "{late_lines:?}");
    assert_eq!((late_lines[0]["type"].as_str(), late_lines[0]["signature_id"].as_i64()), (Some("late_alert"), Some(105)));
    let main = read(&out);
    let sids: Vec<i64> = main.iter().filter(|v| v["type"] == "alert").map(|v| v["signature_id"].as_i64().unwrap()).collect();
    assert_eq!(sids, [101, 102, 103, 104]);
    assert!(main.iter().all(|v| v["type"] != "late_alert"), "late alerts only in their own file");
}

/// Snapshots as deltas (what changed since the one before) restore exactly the state a
/// whole snapshot holds: dedup keys and correlation groups in their eviction order, flow
/// contexts of open incidents, triage's entities and signatures, the recent alert lines.
/// Deltas and whole snapshots in a random order, each copied out in slices while the next
/// batches change the state (as on the alert path's thread), compared at several points.
#[test]
fn delta_snapshots_restore_what_a_whole_snapshot_holds() {
    use alertflow::pipeline::alerts::{AlertPath, HeldBack};
    use serde_json::Value;
    let seed = common::seed("delta snapshots");
    let mut rng = common::Rng(seed);
    let stream = mixed_state_stream(seed, 9_000);
    let text = "[metrics]\nlisten = \"\"\n[triage]\nenabled = true\nhome_nets = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n[state]\nallowed_lateness_secs = 60\n[state.dedup]\nwindow_secs = 120\nrollup_secs = 30\nmax_keys = 300\n\
         [[state.rules]]\nname = \"scan\"\ntype = \"value_count\"\ngroup_by = [\"src_ip\"]\nfield = \"dest_port\"\ngte = 6\ntimespan_secs = 120\n\
         [[state.rules]]\nname = \"pair\"\ntype = \"event_count\"\ngroup_by = [\"src_ip\", \"dest_ip\"]\ngte = 3\ntimespan_secs = 90\n";
    let cfg = alertflow::config::Config::parse(text).unwrap();
    let fresh = || AlertPath::new(&cfg.state.engine, None, None).with_triage(&cfg.triage);
    // The same chain restored with three shards (a start with a new shard count): the
    // same keys and groups, dealt out.
    let sharded = alertflow::config::Config::parse(&text.replace("[state]\n", "[state]\nshards = 3\n")).unwrap();
    let entries = |v: &Value, part: &str, list: &str| -> Vec<String> {
        let mut e: Vec<String> = v[part][list].as_array().unwrap().iter().map(|x| x.to_string()).collect();
        e.sort();
        e
    };
    let whole = |p: &mut AlertPath| -> Value { serde_json::from_str(&p.snapshot()).unwrap() };
    let mut live = fresh();
    let mut mirror = fresh();
    // A new archive: deltas build on the empty state.
    live.track_changes();
    let delta_now = |p: &mut AlertPath| -> String {
        let (parts, whole, tail) = p.snapshot_parts(false).unwrap();
        assert!(!whole);
        p.finish_capture();
        let mut buf = Vec::new();
        let mut head = HeldBack::new(&mut buf);
        parts.write(&mut head).unwrap();
        tail.append_to(head).unwrap();
        String::from_utf8(buf).unwrap()
    };
    let mut chain: Vec<String> = Vec::new();
    let (mut deltas, mut compared, mut sliced, mut finished_early) = (0, 0, 0, 0);
    for (k, chunk) in stream.chunks(300).enumerate() {
        if k % 6 == 5 {
            // The chain so far, with a delta of now, restores the live state.
            chain.push(delta_now(&mut live));
            let mut restored = fresh();
            for s in &chain {
                restored.restore(s).unwrap();
            }
            let want = whole(&mut live);
            let got = whole(&mut restored);
            assert_eq!(got, want, "state restored from {} snapshots at chunk {k} (seed {seed})", chain.len());
            assert!(want["dedup"]["keys"].as_array().unwrap().len() > 50 && !want["triage"]["entities"].as_object().unwrap().is_empty());
            let mut three = AlertPath::new(&sharded.state.engine, None, None).with_triage(&sharded.triage);
            for s in &chain {
                three.restore(s).unwrap();
            }
            let got3 = whole(&mut three);
            for (part, list) in [("dedup", "keys"), ("correlation", "groups"), ("correlation", "closed")] {
                let (got, want) = (entries(&got3, part, list), entries(&want, part, list));
                assert!(got == want, "{part} {list} restored into three shards: {} vs {} entries (seed {seed})", got.len(), want.len());
            }
            assert_eq!(got3["triage"], want["triage"]);
            compared += 1;
            // That whole snapshot is the new base.
            chain = vec![want.to_string()];
        }
        // The snapshot of this point is cut, and (as on the alert path's thread) copied out
        // in slices while the next batches change the state; it holds this point, as the
        // mirror (fed the same batches, never cut) shows.
        let at_cut = whole(&mut mirror);
        let (parts, wrote_whole, tail) = live.snapshot_parts(rng.below(5) == 0).unwrap();
        for part in chunk.chunks(25) {
            let mut budget = rng.below(60);
            if live.capture_step(&mut budget) {
                finished_early += 1;
            } else {
                sliced += 1;
            }
            let (now, batch) = (part.last().unwrap().1 * 1_000_000, batch_of(part));
            live.process(&batch, now);
            mirror.process(&batch, now);
        }
        live.finish_capture();
        let mut buf = Vec::new();
        let mut head = HeldBack::new(&mut buf);
        parts.write(&mut head).unwrap();
        tail.append_to(head).unwrap();
        let text = String::from_utf8(buf).unwrap();
        if wrote_whole {
            chain.clear();
        } else {
            deltas += 1;
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["delta"], true);
        }
        chain.push(text);
        let mut restored = fresh();
        for s in &chain {
            restored.restore(s).unwrap();
        }
        assert_eq!(whole(&mut restored), at_cut, "the state at the cut of chunk {k}, copied out in slices (seed {seed})");
    }
    // The state after the last chunk, in one more delta.
    chain.push(delta_now(&mut live));
    let mut restored = fresh();
    for s in &chain {
        restored.restore(s).unwrap();
    }
    assert_eq!(whole(&mut restored), whole(&mut live), "the final chain (seed {seed})");
    assert!(compared >= 4 && deltas >= 10, "{compared} comparisons, {deltas} deltas");
    assert!(sliced > 100 && finished_early > 0, "captures in slices: {sliced}, finished early: {finished_early}");
}

/// Folding a chain of snapshot files (`snapshots::fold`, run off the alert path's thread):
/// an empty path of the same shape restores the base and the deltas from their files and
/// writes the state of the newest delta whole — exactly the whole snapshot the live path
/// would have written at that cut, with the delta's audit and due members — and restoring
/// from it (and the deltas after it, some cut before the fold landed) gives the live state.
#[test]
fn folding_a_snapshot_chain_writes_the_state_at_its_newest_delta() {
    use alertflow::pipeline::alerts::{AlertPath, HeldBack};
    use alertflow::pipeline::snapshots::{self, Policy};
    use serde_json::Value;
    let seed = common::seed("fold snapshots");
    let stream = mixed_state_stream(seed, 6_000);
    let text = "[metrics]\nlisten = \"\"\n[triage]\nenabled = true\nhome_nets = [\"10.0.0.0/8\"]\n[state]\nallowed_lateness_secs = 60\n[state.dedup]\nwindow_secs = 120\nmax_keys = 400\n\
         [[state.rules]]\nname = \"pair\"\ntype = \"event_count\"\ngroup_by = [\"src_ip\", \"dest_ip\"]\ngte = 3\ntimespan_secs = 90\n";
    let cfg = alertflow::config::Config::parse(text).unwrap();
    let mut live = AlertPath::new(&cfg.state.engine, None, None).with_triage(&cfg.triage).with_audit(true);
    let whole = |p: &mut AlertPath| -> Value { serde_json::from_str(&p.snapshot()).unwrap() };
    let state_of = |mut v: Value| -> Value {
        for m in ["audit", "due"] {
            v.as_object_mut().unwrap().remove(m);
        }
        v
    };
    let dir = tempfile::tempdir().unwrap();
    let mut policy = Policy::empty();
    live.track_changes();
    let write_delta = |live: &mut AlertPath, policy: &mut Policy, epoch: u64| -> (u64, Value) {
        let (parts, whole, mut tail) = live.snapshot_parts(false).unwrap();
        assert!(!whole);
        live.finish_capture();
        tail.due = Some(format!("{{\"epoch\":{epoch}}}"));
        let mut buf = Vec::new();
        let mut head = HeldBack::new(&mut buf);
        parts.write(&mut head).unwrap();
        tail.append_to(head).unwrap();
        let (seq, name) = policy.next(epoch, false);
        std::fs::write(dir.path().join(name), &buf).unwrap();
        (seq, serde_json::from_slice(&buf).unwrap())
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    let (mut folds, mut epoch) = (0, 0);
    let mut at: Option<(u64, Value)> = None;
    for (k, chunk) in stream.chunks(250).enumerate() {
        live.process(&batch_of(chunk), chunk.last().unwrap().1 * 1_000_000);
        epoch += 1;
        let (seq, delta) = write_delta(&mut live, &mut policy, epoch);
        if k % 5 == 1 {
            // Fold later, after one more delta is cut (as when the fold runs beside the
            // writer): remember the state here.
            let mut w = whole(&mut live);
            w["audit"] = delta["audit"].clone();
            w["due"] = delta["due"].clone();
            at = Some((seq, w));
        } else if let Some((fseq, want)) = at.take() {
            let shape = live.shape();
            let f = snapshots::fold(dir.path(), fseq, shape.empty(), &never).unwrap().unwrap();
            assert!(f.file.whole() && f.file.seq == fseq && f.read_files >= 2, "{f:?}");
            let got: Value = serde_json::from_str(&std::fs::read_to_string(&f.file.path).unwrap()).unwrap();
            assert!(state_of(got.clone()) == state_of(want.clone()), "the fold holds the state at snapshot {fseq} (seed {seed})");
            assert_eq!((&got["audit"], &got["due"]), (&want["audit"], &want["due"]), "audit and due members carried over");
            assert!(got["audit"]["chain"]["seq"].as_u64().is_some_and(|s| s > 0), "{}", got["audit"]);
            // `bytes`: the state's text, before the members carried over.
            let raw = std::fs::read(&f.file.path).unwrap();
            assert!(raw[f.bytes as usize - 1] == b',' && raw[f.bytes as usize..].starts_with(b"\"audit\":"), "{}", f.bytes);
            policy.fold_ended(Some((fseq, f.bytes)));
            // The landed commits: the files before the fold go, and the chain from it
            // restores the live state (the delta cut while folding names the older base).
            snapshots::remove_unneeded(dir.path(), epoch).unwrap();
            let files = snapshots::list(dir.path()).unwrap();
            assert!(files[0].whole() && files[0].seq == fseq && files.len() == 2, "{files:?}");
            assert!(files[1].base < fseq, "the delta cut while folding names the older base: {files:?}");
            let mut restored = live.shape().empty();
            for f in snapshots::chain(&files).unwrap() {
                restored.restore(&std::fs::read_to_string(&f.path).unwrap()).unwrap();
            }
            assert!(state_of(whole(&mut restored)) == state_of(whole(&mut live)), "restored from the fold at {fseq} (seed {seed})");
            folds += 1;
        }
    }
    assert!(folds >= 4, "{folds} folds");
    // A fold told to stop gives up without a file.
    let (seq, _) = write_delta(&mut live, &mut policy, epoch + 1);
    let stop = std::sync::atomic::AtomicBool::new(true);
    assert!(snapshots::fold(dir.path(), seq, live.shape().empty(), &stop).unwrap().is_none());
    assert!(!snapshots::list(dir.path()).unwrap().iter().any(|f| f.seq == seq && f.whole()));
}

/// `[state.overload] shed`: a live run whose alert path is behind (made slow here) leaves
/// the less severe alerts out of it and says so, while every event is archived and every
/// severity-1 alert still gets its alert row.
#[test]
fn a_live_run_behind_sheds_low_severity_alerts_and_archives_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    let port = common::free_port();
    let (n, mut high) = (4_000usize, 0usize);
    let mut text = String::new();
    for i in 0..n {
        let severity = if i % 4 == 0 { 1 } else { 3 };
        high += (severity == 1) as usize;
        let src = format!("10.7.{}.{}", i / 250, i % 250);
        text.push_str(&mixed_alert(1_795_000_000 + (i / 20) as i64, i, i as i64, (&src, "192.0.2.9"), 443, (7000 + (i % 5) as i64, severity)));
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[pipeline]\nread_bytes = 8192\n[archive]\nroot = \"{}\"\nidle_seal_ms = 200\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\
             [state.overload]\nshed = true\nhigh_water = 2\n",
            archive.display()
        ),
    )
    .unwrap();
    let child = common::run_following(&cfg, &input, &[(alertflow::pipeline::alert_worker::FAULT_SLOW_ALERT_PATH, "25")]);
    let shed = || -> u64 {
        let (_, body) = common::http_get(port, "/metrics");
        body.lines().filter(|l| l.starts_with("alertflow_alerts_shed_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>() as u64
    };
    common::wait_for("every event archived", || common::read_archive(&archive).len() == n);
    common::wait_for("every alert archived or shed", || read_table(&archive, "alerts").len() as u64 + shed() == n as u64);
    let alerts = read_table(&archive, "alerts");
    let by_severity = common::count_by(alerts.iter().map(|r| r["alert_severity"].clone()));
    assert_eq!(by_severity.get("1").copied().unwrap_or(0), high, "every severity-1 alert went through");
    assert!(shed() > 0 && by_severity.get("3").copied().unwrap_or(0) < n - high, "severity 3 shed: {by_severity:?}");
    let (_, body) = common::http_get(port, "/metrics");
    assert!(!body.lines().any(|l| l.starts_with("alertflow_alerts_shed_total{severity=\"1\"}")));
    child.stop();
}
