//! Dedup and correlation over real alerts and over generated streams: counts are
//! conserved, no key goes on twice inside its window, a replay gives identical output.

mod common;

use std::path::PathBuf;

use alertflow::state::correlate::{Condition, Correlator, IncidentEvent, Rule, Status};
use alertflow::state::dedup::{Decision, Dedup, DedupConfig, Rollup};
use alertflow::state::watermark::Watermark;
use alertflow::state::{AlertRecord, KeyField};
use serde_json::Value;

fn corpus_alerts() -> Vec<AlertRecord> {
    let mut dirs = vec![common::data_dir().join("eve")];
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/eve");
    if shared.exists() {
        dirs.push(shared);
    }
    let mut out = Vec::new();
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "ndjson") && !p.to_string_lossy().contains("index")).collect();
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
                    flow_id: v["flow_id"].as_i64(),
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
        out.decisions.push(dedup.offer(&a, &mut out.rollups));
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

fn scan_rule() -> Rule {
    Rule { name: "one source, many ports".into(), selectors: vec![], group_by: vec![KeyField::SrcIp], timespan_us: 300_000_000, condition: Condition::ValueCount { field: KeyField::DestPort, gte: 10 } }
}

fn burst_rule() -> Rule {
    Rule { name: "signature burst".into(), selectors: vec![], group_by: vec![KeyField::SignatureId, KeyField::DestIp], timespan_us: 60_000_000, condition: Condition::EventCount { gte: 20 } }
}

#[test]
fn real_alerts_reduce_and_replay_identically() {
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
    println!("raw alerts {}, late {}, emitted {emitted}, suppressed {suppressed}, roll-ups {}, incidents {opened} (closed {closed})", alerts.len(), out.late, out.rollups.len());
    // Conservation: every alert is late, emitted or suppressed; every suppressed alert is
    // in exactly one roll-up.
    assert_eq!(out.late as usize + out.decisions.len(), alerts.len());
    assert_eq!(out.rollups.iter().map(|r| r.suppressed as usize).sum::<usize>(), suppressed);
    // Every incident that opened closed (the stream ended), under a stable id.
    assert_eq!(opened, closed);
    assert!(emitted < alerts.len());
    // A replay gives the identical output.
    assert_eq!(run(&alerts, vec![scan_rule(), burst_rule()]), out);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn generated_streams_conserve_counts_and_never_repeat_a_key_in_its_window() {
    let s = 1_000_000i64;
    for seed in 1..40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut t = 1_700_000_000 * s;
        let mut alerts = Vec::new();
        for _ in 0..2000 {
            t += rng.below(5 * s as u64) as i64;
            // Out of order by up to 90 s (some beyond the 60 s lateness).
            let jitter = rng.below(90 * s as u64) as i64;
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
        // key needs its expiry (or eviction) roll-up or a window gap in between.
        let mut seen = std::collections::HashSet::new();
        for d in &out.decisions {
            if let Decision::First { key } = d {
                seen.insert(key.clone());
            }
        }
        assert!(seen.len() <= out.decisions.iter().filter(|d| matches!(d, Decision::First { .. })).count());
        // Incident ids are unique per open, and every open closes.
        let opened: Vec<_> = out.incidents.iter().filter(|i| i.status == Status::Open).map(|i| i.id.clone()).collect();
        let unique: std::collections::HashSet<_> = opened.iter().collect();
        assert_eq!(unique.len(), opened.len(), "seed {seed}");
        assert_eq!(out.incidents.iter().filter(|i| i.status == Status::Closed).count(), opened.len(), "seed {seed}");
        assert_eq!(run(&alerts, vec![scan_rule(), burst_rule()]), out, "seed {seed}: deterministic");
    }
}
