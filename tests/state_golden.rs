//! Golden tests of the state stage: each file in `tests/data/state/golden/` holds a
//! `[state]` config, an input stream of EVE events (with the wall-clock time each one
//! arrives) and the expected outputs, one compact line per JSON line the stage writes.
//! The stage runs in process with an injected clock, so a case is exact and never sleeps.
//!
//! Input entries are either `{ raw = '<EVE line>', arrive = s }` or a short form of an
//! alert, `{ t = s, sid = n, src = "..", dst = "..", dport = n, severity = n, flow = n }`,
//! written out as a Suricata EVE alert; `{ advance = s }` moves the wall clock with no
//! events (an idle sensor) and shows as `-- advance s` among the outputs. Times are seconds after 2026-11-01T00:00:00Z. Set
//! `ALERTFLOW_GOLDEN_PRINT=1` to print what a case produced.

use std::path::Path;

use alertflow::event::EventBatchBuilder;
use alertflow::parse::eve::{EveParser, ParseLimits};
use alertflow::pipeline::alerts::{AlertOutput as StateOutput, AlertPath};
use serde_json::Value;

const BASE: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z
const S: i64 = 1_000_000;

fn iso(s: i64) -> String {
    jiff::Timestamp::from_second(BASE + s).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.6f+0000").to_string()
}

fn alert_line(e: &toml::Table) -> String {
    let get = |k: &str, d: i64| e.get(k).and_then(|v| v.as_integer()).unwrap_or(d);
    let s = |k: &str, d: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or(d).to_string();
    let flow = e.get("flow").and_then(|v| v.as_integer()).map_or(String::new(), |f| format!("\"flow_id\":{f},"));
    format!(
        "{{\"timestamp\":\"{}\",{flow}\"event_type\":\"alert\",\"src_ip\":\"{}\",\"src_port\":40000,\"dest_ip\":\"{}\",\"dest_port\":{},\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\"signature_id\":{},\"rev\":1,\"signature\":\"sig {}\",\"category\":\"Misc\",\"severity\":{}}}}}",
        iso(get("t", 0)),
        s("src", "10.0.0.1"),
        s("dst", "10.0.0.2"),
        get("dport", 80),
        get("sid", 1),
        get("sid", 1),
        get("severity", 2)
    )
}

/// One JSON output line in the compact form the golden files use.
fn compact(v: &Value, alert_time: &std::collections::HashMap<String, String>) -> String {
    let t = |k: &str| {
        let ts = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", v[k].as_str().unwrap_or_default())
            .or_else(|_| v[k].as_str().unwrap_or_default().parse::<jiff::Timestamp>());
        ts.map(|x| (x.as_second() - BASE).to_string()).unwrap_or_else(|_| "?".into())
    };
    let ctx = |c: &Value| {
        let mut k: Vec<&str> = c.as_object().map(|o| o.keys().map(String::as_str).filter(|k| *k != "flow_id").collect()).unwrap_or_default();
        k.sort();
        if k.is_empty() {
            String::new()
        } else {
            format!(" ctx={}", k.join(","))
        }
    };
    match v["type"].as_str().unwrap_or_default() {
        "alert" => format!(
            "alert sid={} t={} {} count={}{}{}",
            v["signature_id"],
            t("timestamp"),
            v["decision"].as_str().unwrap_or_default(),
            v["dedup_count"],
            if v["incident_ids"].as_array().is_some_and(|a| !a.is_empty()) { " in-incident" } else { "" },
            ctx(&v["flow_context"])
        ),
        "late_alert" => format!("late_alert sid={} t={}", v["signature_id"], t("timestamp")),
        "rollup" => format!(
            "rollup key={} count={} suppressed={} reason={}",
            v["dedup_key"].as_str().unwrap_or_default(),
            v["count"],
            v["suppressed"],
            v["reason"].as_str().unwrap_or_default()
        ),
        "incident" => format!(
            "incident {} {} {} first={} last={} count={} members={}",
            v["rule"].as_str().unwrap_or_default(),
            v["group_key"].as_str().unwrap_or_default(),
            v["status"].as_str().unwrap_or_default(),
            t("first_seen"),
            t("last_seen"),
            v["alert_count"],
            v["alert_ids"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|id| alert_time.get(id.as_str().unwrap_or_default()).cloned().unwrap_or_else(|| "?".into()))
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        ),
        "flow_context" => format!("flow_context flow={} alerts={}{}", v["flow_id"], v["alert_ids"].as_array().map_or(0, Vec::len), ctx(&v["flow_context"])),
        other => format!("unknown {other}"),
    }
}

struct Ran {
    lines: Vec<String>,
    late_rows: usize,
    alert_rows: usize,
}

fn run_case(path: &Path, shards: usize) -> (Ran, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let case: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let state = case["config"].as_str().expect("config").replacen("[state]\n", &format!("[state]\nshards = {shards}\n"), 1);
    let config = format!("[metrics]\nlisten = \"\"\n\n{state}");
    let cfg = alertflow::config::Config::parse(&config).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut stage = AlertPath::new(&cfg.state.engine, None, None);
    let mut parser = EveParser::new(ParseLimits::default());
    let mut ran = Ran { lines: Vec::new(), late_rows: 0, alert_rows: 0 };
    let mut alert_time = std::collections::HashMap::new();
    let mut clock = 0i64;
    let collect = |out: StateOutput, ran: &mut Ran, alert_time: &std::collections::HashMap<String, String>| {
        if let Some(a) = &out.alerts {
            ran.alert_rows += a.num_rows();
            let late = a.columns.column_by_name("late").unwrap().as_any().downcast_ref::<arrow::array::BooleanArray>().unwrap();
            ran.late_rows += late.true_count();
        }
        for l in out.lines.iter().chain(&out.late_lines) {
            ran.lines.push(compact(&serde_json::from_str(l).unwrap(), alert_time));
        }
    };
    for e in case["input"].as_array().expect("input") {
        let e = e.as_table().expect("input entries are tables");
        if let Some(to) = e.get("advance").and_then(|v| v.as_integer()) {
            clock = to;
            ran.lines.push(format!("-- advance {to}"));
            let mut out = StateOutput::default();
            stage.advance((BASE + clock) * S, &mut out);
            collect(out, &mut ran, &alert_time);
            continue;
        }
        let line = match e.get("raw").and_then(|v| v.as_str()) {
            Some(raw) => raw.to_string(),
            None => alert_line(e),
        };
        let t = e.get("t").and_then(|v| v.as_integer()).unwrap_or(clock);
        clock = e.get("arrive").and_then(|v| v.as_integer()).unwrap_or(clock.max(t));
        let mut b = EventBatchBuilder::with_capacity(1, line.len());
        parser.parse(line.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "golden", &line)).unwrap_or_else(|r| panic!("{line}: {r:?}"));
        if e.get("raw").is_none() {
            alert_time.insert(alertflow::state::stage::alert_id("golden", &line), t.to_string());
        }
        let out = stage.process(&b.finish(), (BASE + clock) * S);
        collect(out, &mut ran, &alert_time);
    }
    if case.get("flush").and_then(|v| v.as_bool()).unwrap_or(true) {
        let mut out = StateOutput::default();
        stage.flush(&mut out);
        collect(out, &mut ran, &alert_time);
    }
    let expected = case["expected"].as_array().expect("expected").iter().map(|v| v.as_str().unwrap().to_string()).collect();
    if let Some(n) = case.get("late_rows").and_then(|v| v.as_integer()) {
        assert_eq!(ran.late_rows as i64, n, "{}: alerts rows flagged late", path.display());
    }
    (ran, expected)
}

/// The case files, in name order.
fn case_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/state/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    files.sort();
    assert!(files.len() >= 8, "golden cases present");
    files
}

#[test]
fn golden_cases() {
    let files = case_files();
    let mut failed = Vec::new();
    for f in &files {
        let (ran, expected) = run_case(f, 1);
        if std::env::var_os("ALERTFLOW_GOLDEN_PRINT").is_some() {
            eprintln!("== {}\n{}", f.display(), ran.lines.iter().map(|l| format!("  \"{l}\",")).collect::<Vec<_>>().join("\n"));
        }
        let inputs_alerts = ran.alert_rows;
        assert!(inputs_alerts > 0, "{}: the case has alerts", f.display());
        if ran.lines != expected {
            failed.push(format!("{}\n  expected:\n    {}\n  got:\n    {}", f.display(), expected.join("\n    "), ran.lines.join("\n    ")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Sharded, every case gives the same outputs; only the order of changes of different
/// groups within one batch may differ.
#[test]
fn golden_cases_sharded() {
    let files = case_files();
    for shards in [2, 3, 8] {
        for f in &files {
            let (ran, mut expected) = run_case(f, shards);
            let mut got = ran.lines;
            got.sort();
            expected.sort();
            assert_eq!(got, expected, "{} with {shards} shards", f.display());
        }
    }
}
