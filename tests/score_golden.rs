//! Scoring golden tests: each file in `tests/data/score/` holds a configuration (`config`,
//! with `{dir}` standing for a folder holding the case's `[files]`), input alerts in short
//! form and, per alert in order, the expected score, priority, reasons (`rule: reason`)
//! and recommendations (`rule: action; action | evidence`). The alerts go through the
//! state stage with enrichment and scoring, in process.

use crate::common;

use alertflow::enrich::{EnrichRuntime, Sources};
use alertflow::event::EventBatchBuilder;
use alertflow::parse::eve::{EveParser, ParseLimits};
use alertflow::pipeline::alerts::AlertPath;
use alertflow::state::stage::StateConfig;
use arrow::array::{Array, Int32Array, StringArray};
use serde_json::Value;

fn alert_line(e: &toml::Table) -> String {
    let i = |k: &str, d: i64| e.get(k).and_then(|v| v.as_integer()).unwrap_or(d);
    let s = |k: &str, d: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or(d).to_string();
    let t = jiff::Timestamp::from_second(1_795_000_000 + i("t", 0)).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.6f+0000");
    let sid = i("sid", 1);
    format!(
        r#"{{"timestamp":"{t}","flow_id":{},"event_type":"alert","src_ip":"{}","src_port":40000,"dest_ip":"{}","dest_port":{},"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":{sid},"rev":1,"signature":"{}","category":"{}","severity":{}}}}}"#,
        i("flow", sid * 1000 + i("t", 0)),
        s("src", "10.0.0.1"),
        s("dst", "10.0.0.2"),
        i("dport", 80),
        s("signature", &format!("sig {sid}")),
        s("category", "Misc activity"),
        i("severity", 2)
    )
}

fn strings(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array()).map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

#[test]
fn scoring_golden_cases() {
    let mut files: Vec<_> = std::fs::read_dir(common::data_dir().join("score"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    for path in files {
        let case: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let dir = tempfile::tempdir().unwrap();
        if let Some(f) = case.get("files").and_then(|f| f.as_table()) {
            for (n, text) in f {
                std::fs::write(dir.path().join(n), text.as_str().unwrap()).unwrap();
            }
        }
        let text = case["config"].as_str().unwrap().replace("{dir}", &dir.path().display().to_string());
        let cfg = alertflow::config::Config::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (sources, report) = Sources::open(&cfg.enrich);
        assert!(report.failed.is_empty(), "{name}: {report:?}");
        let mut stage = AlertPath::new(&StateConfig::default(), Some(&EnrichRuntime { sources, config: cfg.enrich.clone() }), cfg.scorer.clone());
        let alerts = case["alert"].as_array().unwrap();
        let expect = case["expect"].as_array().unwrap();
        assert_eq!(alerts.len(), expect.len(), "{name}: one [[expect]] per [[alert]]");
        let mut parser = EveParser::new(ParseLimits::default());
        for (k, (a, want)) in alerts.iter().zip(expect).enumerate() {
            // One alert per batch: history sees them in order.
            let line = alert_line(a.as_table().unwrap());
            let mut b = EventBatchBuilder::with_capacity(1, line.len());
            parser.parse(line.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "golden", &line)).unwrap();
            let out = stage.process(&b.finish(), 1_795_000_000_000_000 + k as i64);
            let rows = out.alerts.unwrap().columns;
            let score = rows.column_by_name("score").unwrap().as_any().downcast_ref::<Int32Array>().unwrap();
            let text = |c: &str| rows.column_by_name(c).unwrap().as_any().downcast_ref::<StringArray>().unwrap().value(0).to_string();
            let reasons: Value = serde_json::from_str(&text("reasons")).unwrap();
            let reasons: Vec<String> =
                reasons.as_array().unwrap().iter().map(|r| format!("{}: {}", r["rule"].as_str().unwrap(), r["reason"].as_str().unwrap())).collect();
            let recs: Value = serde_json::from_str(&text("recommendations")).unwrap();
            let recs: Vec<String> = recs
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    format!(
                        "{}: {} | {}",
                        r["rule"].as_str().unwrap(),
                        r["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect::<Vec<_>>().join("; "),
                        r["evidence"].as_str().unwrap()
                    )
                })
                .collect();
            let want = want.as_table().unwrap();
            let ctx = format!("{name}, alert {}", k + 1);
            assert_eq!(score.value(0) as i64, want["score"].as_integer().unwrap(), "{ctx}: score (reasons {reasons:?})");
            assert_eq!(text("priority"), want["priority"].as_str().unwrap(), "{ctx}: priority");
            assert_eq!(reasons, strings(want.get("reasons")), "{ctx}: reasons");
            if want.contains_key("recommendations") {
                assert_eq!(recs, strings(want.get("recommendations")), "{ctx}: recommendations");
            }
        }
    }
}

/// An incident still open across a restart keeps what its earlier alerts scored (the
/// alert that opened it is a severity 1, the one after the restart a severity 3): the
/// score, reasons and recommendations of its changes after the restart equal those of a
/// run that never stopped.
#[test]
fn an_open_incident_keeps_its_score_and_reasons_across_a_restart() {
    use alertflow::pipeline::alerts::AlertOutput;
    let cfg = alertflow::config::Config::parse(
        r#"
[[state.rules]]
name = "two alerts on one host"
type = "event_count"
group_by = ["dest_ip"]
gte = 2
timespan_secs = 600

[[score.rules]]
name = "severity 1"
when = "alert.severity == 1"
score = 80
reason = "severity 1: {{alert.signature}}"

[[score.rules]]
name = "severity 3"
when = "alert.severity >= 3"
score = 10
reason = "low severity"

[[score.recommend]]
name = "look"
when = "alert.severity == 1"
actions = ["look at {{dest.ip}}"]
evidence = "{{alert.signature}}"
"#,
    )
    .unwrap();
    let alert = |t: i64, sid: i64, severity: i64| {
        let mut e = toml::Table::new();
        for (k, v) in [("t", t), ("sid", sid), ("severity", severity)] {
            e.insert(k.into(), toml::Value::Integer(v));
        }
        alert_line(&e)
    };
    let batch = |lines: &[String]| {
        let mut parser = EveParser::new(ParseLimits::default());
        let mut b = EventBatchBuilder::with_capacity(lines.len(), 4096);
        for l in lines {
            parser.parse(l.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "golden", l)).unwrap();
        }
        b.finish()
    };
    let now = |t: i64| (1_795_000_000 + t) * 1_000_000;
    let run = |restart: bool| -> Vec<Value> {
        let mut path = AlertPath::new(&cfg.state.engine, None, cfg.scorer.clone());
        let mut lines = path.process(&batch(&[alert(0, 2, 3), alert(5, 1, 1)]), now(5)).lines;
        if restart {
            let snap = path.snapshot();
            path = AlertPath::new(&cfg.state.engine, None, cfg.scorer.clone());
            path.restore(&snap).unwrap();
        }
        lines.extend(path.process(&batch(&[alert(60, 3, 3)]), now(60)).lines);
        let mut out = AlertOutput::default();
        path.flush(&mut out);
        lines.extend(out.lines);
        lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["type"] == "incident").collect()
    };
    let live = run(false);
    let restarted = run(true);
    let statuses: Vec<&str> = restarted.iter().map(|v| v["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["open", "closed"]);
    assert_eq!(restarted, live, "the incident's changes after a restart equal a run that never stopped");
    let closed = &restarted[1];
    // The alert after the restart joined the incident before it closed.
    assert_eq!(closed["alert_count"], 3);
    assert_eq!((closed["score"].as_i64(), closed["priority"].as_str()), (Some(80), Some("high")));
    let rules: Vec<&str> = closed["reasons"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["severity 1", "severity 3"]);
    assert_eq!(closed["recommendations"][0]["rule"], "look");
}
