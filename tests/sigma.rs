//! Sigma correlation rules as the specification (v2.1) defines them: every correlation
//! example of the specification, loaded as it is, fires on a positive stream and stays
//! silent on its near misses. Field names EVE alerts cannot carry (`EventID`, `User`,
//! `Image`, ECS `event.*`) are mapped onto alert fields through the field map, as an
//! operator would in `[state.sigma_fields]`.

use crate::common;

use std::process::Command;

use alertflow::event::alert::AlertFields;
use alertflow::state::correlate::{Correlator, IncidentEvent, Rule, Status};
use alertflow::state::sigma::{load_all, FieldMap, Loaded, Problem};
use alertflow::state::AlertRecord;

const S: i64 = 1_000_000;
const BASE: i64 = 1_795_000_000;

fn spec_text(file: &str) -> (String, String) {
    let p = common::data_dir().join("sigma/spec").join(file);
    (file.to_string(), std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
}

fn field_map(map: &[(&str, &str)]) -> FieldMap {
    let mut fm = FieldMap::default();
    for (sigma, field) in map {
        assert!(fm.add(sigma, field), "{field}");
    }
    fm
}

/// The example `file` with the base rules it references (their `EventID` is the
/// signature id), through `map`.
fn spec(file: &str, map: &[(&str, &str)]) -> Vec<Rule> {
    let mut fm = field_map(map);
    fm.add(EVENT_ID.0, EVENT_ID.1);
    let l = load_all(&[spec_text(file), spec_text("base_rules.yml")], &[], &fm);
    assert!(l.problems.is_empty(), "{file}: {:#?}", l.problems.iter().map(ToString::to_string).collect::<Vec<_>>());
    assert!(!l.rules.is_empty(), "{file}: no rule");
    l.rules
}

fn load_text(files: &[(&str, &str)], map: &[(&str, &str)]) -> Loaded {
    let files: Vec<(String, String)> = files.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
    load_all(&files, &[], &field_map(map))
}

/// An alert at `t` seconds after [`BASE`].
#[derive(Clone)]
struct A(AlertRecord);

impl A {
    fn new(t: i64, sid: i64) -> Self {
        A(AlertRecord {
            alert_id: format!("a{t}-{sid}"),
            ts_us: (BASE + t) * S,
            sensor: "sensor-1".into(),
            signature_id: sid,
            signature: format!("test {sid}"),
            category: "Misc".into(),
            severity: 2,
            src_ip: "198.51.100.7".into(),
            src_port: Some(40000),
            dest_ip: "10.0.0.5".into(),
            dest_port: Some(443),
            proto: "TCP".into(),
            ..Default::default()
        })
    }
    fn id(mut self, id: &str) -> Self {
        self.0.alert_id = id.into();
        self
    }
    fn src(mut self, ip: &str) -> Self {
        self.0.src_ip = ip.into();
        self
    }
    fn dst(mut self, ip: &str) -> Self {
        self.0.dest_ip = ip.into();
        self
    }
    fn with(mut self, f: impl FnOnce(&mut AlertRecord)) -> Self {
        f(&mut self.0);
        self
    }
    /// A value from the flow context (`dns_query`, `flow_bytes_toserver`, …).
    fn ctx(mut self, field: &'static str, value: &str) -> Self {
        let host = self.0.dest_ip.clone();
        let f = self.0.fields.get_or_insert_with(|| Box::new(AlertFields { host, values: Vec::new() }));
        f.values.push((field, value.into()));
        self
    }
}

/// Incident changes of `rules` over `alerts`, the watermark then moved to `until` seconds.
fn run(rules: &[Rule], alerts: &[A], until: i64) -> Vec<IncidentEvent> {
    let mut c = Correlator::new(rules.to_vec(), 100_000);
    let mut out = Vec::new();
    for a in alerts {
        c.offer(&a.0, &mut out);
    }
    c.advance((BASE + until) * S, &mut out);
    out
}

/// (rule, group key) of the incidents that opened.
fn opened(rules: &[Rule], alerts: &[A], until: i64) -> Vec<(String, String)> {
    run(rules, alerts, until).into_iter().filter(|e| e.status == Status::Open).map(|e| (e.rule, e.group_key)).collect()
}

fn silent(rules: &[Rule], alerts: &[A], until: i64, why: &str) {
    let o = opened(rules, alerts, until);
    assert!(o.is_empty(), "{why}: {o:?}");
}

const EVENT_ID: (&str, &str) = ("EventID", "signature_id");

#[test]
fn event_count_counts_per_monitored_host_not_per_sensor() {
    let rules = spec("event_count.yml", &[EVENT_ID]);
    let failed = |n: i64, step: i64, hosts: i64| (0..n).map(|i| A::new(i * step, 4625).dst(&format!("10.0.0.{}", 1 + i % hosts))).collect::<Vec<_>>();
    assert_eq!(opened(&rules, &failed(100, 30, 1), 7200), [("Many failed logins".to_string(), "10.0.0.1".to_string())]);
    silent(&rules, &failed(99, 30, 1), 7200, "99 failed logins");
    silent(&rules, &failed(100, 30, 100), 7200, "100 servers seen by one sensor are 100 hosts");
    silent(&rules, &failed(100, 72, 1), 14400, "100 spread over two hours");
    // Another event id is not a failed login.
    let other: Vec<A> = (0..100).map(|i| A::new(i, 4624)).collect();
    silent(&rules, &other, 7200, "successful logins");
}

#[test]
fn event_count_groups_by_a_flow_context_field() {
    let rules = spec("event_count_ecs.yml", &[EVENT_ID]);
    let with_names = |names: &[&str]| (0..100).map(|i| A::new(i, 4625).ctx("dns_query", names[i as usize % names.len()])).collect::<Vec<_>>();
    assert_eq!(opened(&rules, &with_names(&["login.example.org"]), 7200), [("Many failed logins".to_string(), "login.example.org".to_string())]);
    silent(&rules, &with_names(&["a.example.org", "b.example.org"]), 7200, "50 per name");
}

#[test]
fn value_count_counts_distinct_values_per_group() {
    // The accounts of the example: user agents of the flows here.
    let rules = spec("value_count.yml", &[("User", "http_user_agent")]);
    let agents = |n: i64, srcs: i64| {
        (0..n).map(|i| A::new(i * 60, 4625).src(&format!("198.51.100.{}", 1 + i % srcs)).ctx("http_user_agent", &format!("agent/{i}"))).collect::<Vec<_>>()
    };
    let o = opened(&rules, &agents(100, 1), 86_400 * 2);
    assert_eq!(o, [("Failed login".to_string(), "10.0.0.5|198.51.100.1".to_string())], "group-by ComputerName (host), WorkstationName (source)");
    silent(&rules, &agents(99, 1), 86_400 * 2, "99 accounts");
    silent(&rules, &agents(100, 2), 86_400 * 2, "100 accounts over two workstations");
}

#[test]
fn temporal_in_any_order_and_in_order() {
    let any = spec("temporal.yml", &[("User", "src_ip")]);
    let ordered = spec("temporal_ordered.yml", &[("User", "src_ip")]);
    let seq = |sids: &[i64], gap: i64| sids.iter().enumerate().map(|(i, &s)| A::new(i as i64 * gap, s)).collect::<Vec<_>>();
    assert_eq!(opened(&any, &seq(&[2003, 2001, 2002], 60), 3600), [("Recon".to_string(), "10.0.0.5|198.51.100.7".to_string())]);
    silent(&any, &seq(&[2001, 2003, 2003], 60), 3600, "recon_cmd_b missing");
    silent(&any, &seq(&[2001, 2002, 2003], 160), 3600, "more than 5 minutes");
    let mut other_user = seq(&[2001, 2002], 60);
    other_user.push(A::new(130, 2003).src("198.51.100.8"));
    silent(&any, &other_user, 3600, "the third command by another user");
    assert_eq!(opened(&ordered, &seq(&[2001, 2002, 2003], 60), 3600).len(), 1);
    silent(&ordered, &seq(&[2003, 2002, 2001], 60), 3600, "reverse order");
    silent(&ordered, &seq(&[2001, 2003, 2002], 60), 3600, "b after c");
}

#[test]
fn value_sum_adds_flow_bytes() {
    let rules = spec("value_sum.yml", &[("User", "src_ip")]);
    let sent = |bytes: &[i64], gap: i64| {
        bytes.iter().enumerate().map(|(i, b)| A::new(i as i64 * gap, 1).ctx("flow_bytes_toserver", &b.to_string())).collect::<Vec<_>>()
    };
    let o = run(&rules, &sent(&[400_000, 400_000, 400_000], 60), 7200);
    let open: Vec<_> = o.iter().filter(|e| e.status == Status::Open).collect();
    assert_eq!(open.len(), 1);
    assert_eq!((open[0].rule.as_str(), open[0].alert_count), ("Possible Exfiltration to Website", 3));
    silent(&rules, &sent(&[400_000, 400_000], 60), 7200, "800 kB");
    silent(&rules, &sent(&[400_000, 400_000, 400_000], 2000), 7200, "1.2 MB over more than an hour");
    silent(&rules, &sent(&[1_000_000], 60), 7200, "exactly 1 MB is not more");
}

#[test]
fn value_avg_is_judged_on_the_complete_window() {
    let rules = spec("value_avg.yml", &[("User", "src_ip")]);
    let sent = |bytes: &[i64]| bytes.iter().enumerate().map(|(i, b)| A::new(i as i64 * 600, 1).ctx("flow_bytes_toserver", &b.to_string())).collect::<Vec<_>>();
    // Within the day the window is open: nothing yet, even though 600 > 500 on its own.
    silent(&rules, &sent(&[600, 700, 400]), 3600, "window still open");
    let o = opened(&rules, &sent(&[600, 700, 400]), 86_400 + 3600);
    assert_eq!(o, [("Suspicious average network traffic".to_string(), "198.51.100.7|198.51.100.7".to_string())]);
    silent(&rules, &sent(&[600, 300, 400]), 86_400 + 3600, "average 433");
}

#[test]
fn value_percentile_finds_a_rare_value() {
    let rules = spec("value_percentile.yml", &[("Image", "dns_query")]);
    let names = |common: i64| {
        let mut v: Vec<A> = (0..common).map(|i| A::new(i, 1).ctx("dns_query", "update.example.com")).collect();
        v.push(A::new(common + 1, 1).ctx("dns_query", "rare.example.net"));
        v
    };
    assert_eq!(opened(&rules, &names(200), 90_000).len(), 1, "one in 201 is under 1 %");
    silent(&rules, &names(50), 90_000, "one in 51 is 2 %");
}

#[test]
fn aliases_name_a_different_field_per_rule() {
    // EVE alerts carry no ECS event.* fields: mapped onto alert fields for this test.
    let map = [("event.category", "category"), ("event.type", "signature"), ("event.outcome", "proto")];
    let rules = spec("aliases.yml", &map);
    let error = |t: i64| A::new(t, 1).src("203.0.113.9").dst("10.0.0.5").ctx("http_status", "500");
    let connect = |t: i64, remote: &str| {
        A::new(t, 2).src("10.0.0.5").dst(remote).with(|a| {
            a.category = "network".into();
            a.signature = "connection".into();
            a.proto = "success".into();
        })
    };
    assert_eq!(opened(&rules, &[error(0), connect(4, "203.0.113.9")], 60), [("—".to_string(), "10.0.0.5|203.0.113.9".to_string())]);
    silent(&rules, &[error(0), connect(4, "203.0.113.10")], 60, "another remote");
    silent(&rules, &[error(0), connect(11, "203.0.113.9")], 60, "11 s later");
    silent(&rules, &[error(0), error(2)], 60, "no connection");
}

#[test]
fn chained_failed_logins_then_success_opens_the_outer_incident_only() {
    let rules = spec("failed_logins_then_success.yml", &[EVENT_ID, ("User", "src_ip")]);
    let outer = "Correlation - Multiple Failed Logins Followed by Successful Login";
    let stream = |failures: i64, success_at: i64, success_src: &str| {
        let mut v: Vec<A> = (0..failures).map(|i| A::new(i * 30, 4625).id(&format!("f{i}"))).collect();
        v.push(A::new(success_at, 4624).src(success_src).id("ok"));
        v.sort_by_key(|a| a.0.ts_us);
        v
    };
    let out = run(&rules, &stream(10, 400, "198.51.100.7"), 7200);
    let open: Vec<_> = out.iter().filter(|e| e.status == Status::Open).collect();
    assert_eq!(open.len(), 1, "the inner rule opens nothing of its own: {out:#?}");
    assert_eq!((open[0].rule.as_str(), open[0].group_key.as_str(), open[0].level), (outer, "198.51.100.7", Some(3)));
    let mut members = open[0].alert_ids.clone();
    members.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("f{i}")).chain(["ok".to_string()]).collect();
    want.sort();
    assert_eq!(members, want, "the failures and the success");
    assert_eq!(open[0].alert_count, 11);
    assert_eq!(open[0].first_us, (BASE) * S, "first seen: the first failure");
    silent(&rules, &stream(9, 400, "198.51.100.7"), 7200, "nine failures");
    silent(&rules, &stream(10, 400, "198.51.100.8"), 7200, "success of another user");
    silent(&rules, &stream(10, 270 + 660, "198.51.100.7"), 7200, "success 11 minutes after the tenth failure");
    let mut before = stream(10, 0, "198.51.100.7");
    before[0].0.ts_us -= 60 * S;
    before.sort_by_key(|a| a.0.ts_us);
    silent(&rules, &before, 7200, "success before the failures");
    // With `generate: true` the inner rule opens its own incidents too.
    let text = spec_text("failed_logins_then_success.yml").1.replacen("level: high\n", "level: high\ngenerate: true\n", 1);
    let l = load_text(&[("chain.yml", &text)], &[EVENT_ID, ("User", "src_ip")]);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    let mut rules: Vec<String> = opened(&l.rules, &stream(10, 400, "198.51.100.7"), 7200).into_iter().map(|(r, _)| r).collect();
    rules.sort();
    assert_eq!(rules, ["Correlation - Multiple Failed Logins Followed by Successful Login", "multiple_failed_login"]);
}

const FAILED: &str = "title: failed\nname: failed\ndetection:\n  s:\n    signature_id: 1\n  condition: s\n";

#[test]
fn ranges_keep_their_upper_bound_and_temporal_counts_rules() {
    let range = format!("{FAILED}---\ntitle: 101 to 200\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [dst_ip]\n  timespan: 1h\n  condition:\n    gt: 100\n    lte: 200\n");
    let l = load_text(&[("r.yml", &range)], &[]);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    let burst = |n: i64| (0..n).map(|i| A::new(i, 1)).collect::<Vec<_>>();
    assert_eq!(opened(&l.rules, &burst(150), 7200).len(), 1, "150 is in range");
    silent(&l.rules, &burst(250), 7200, "250 is above the range");
    silent(&l.rules, &burst(100), 7200, "100 is not above 100");
    // The 150 open once the hour is over, not before.
    silent(&l.rules, &burst(150), 600, "the hour is not over");
    let lt = format!(
        "{FAILED}---\ntitle: few\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [dst_ip]\n  timespan: 1h\n  condition:\n    lt: 3\n"
    );
    let l = load_text(&[("lt.yml", &lt)], &[]);
    assert_eq!(opened(&l.rules, &burst(2), 7200).len(), 1);
    silent(&l.rules, &burst(3), 7200, "3 is not below 3");
    let neq = format!(
        "{FAILED}---\ntitle: not five\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [dst_ip]\n  timespan: 1h\n  condition:\n    neq: 5\n"
    );
    let l = load_text(&[("neq.yml", &neq)], &[]);
    assert_eq!(opened(&l.rules, &burst(4), 7200).len(), 1);
    silent(&l.rules, &burst(5), 7200, "exactly five");
    // temporal with a condition: two of three rules.
    let three = "title: a\nname: a\ndetection:\n  s:\n    signature_id: 1\n  condition: s\n---\ntitle: b\nname: b\ndetection:\n  s:\n    signature_id: 2\n  condition: s\n---\ntitle: c\nname: c\ndetection:\n  s:\n    signature_id: 3\n  condition: s\n---\ntitle: two of three\ncorrelation:\n  type: temporal\n  rules: [a, b, c]\n  group-by: [host]\n  timespan: 5m\n  condition:\n    gte: 2\n";
    let l = load_text(&[("t.yml", three)], &[]);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    assert_eq!(opened(&l.rules, &[A::new(0, 1), A::new(10, 3)], 3600).len(), 1, "a and c");
    silent(&l.rules, &[A::new(0, 1), A::new(10, 1)], 3600, "a twice is one rule");
}

#[test]
fn rules_are_found_by_id_across_files_and_titles_may_repeat() {
    let base = "title: failed\nid: 11111111-1111-4111-8111-111111111111\ndetection:\n  s:\n    signature_id: 1\n  condition: s\n";
    let corr = |id: &str, n: u32| {
        format!("title: Same title\nid: {id}\ncorrelation:\n  type: event_count\n  rules: [11111111-1111-4111-8111-111111111111]\n  group-by: [dst_ip]\n  timespan: 1h\n  condition:\n    gte: {n}\n")
    };
    let a = corr("22222222-2222-4222-8222-222222222222", 2);
    let b = corr("33333333-3333-4333-8333-333333333333", 3);
    let l = load_text(&[("base.yml", base), ("a.yml", &a), ("b.yml", &b)], &[]);
    assert!(l.problems.is_empty(), "{:?}", l.problems);
    let mut names: Vec<_> = opened(&l.rules, &[A::new(0, 1), A::new(1, 1), A::new(2, 1)], 7200).into_iter().map(|(r, _)| r).collect();
    names.sort();
    assert_eq!(names, ["Same title [22222222-2222-4222-8222-222222222222]", "Same title [33333333-3333-4333-8333-333333333333]"]);
}

#[test]
fn every_problem_of_every_file_is_reported_at_once() {
    let bad = "title: one\nname: one\nowner: me\ncorrelation:\n  type: event_count\n  rules: [nope]\n  group-by: [NoSuchField]\n  timespan: 5 minutes\n  condition:\n    gte: 3\n    gtee: 4\n---\ntitle: two\ncorrelation:\n  type: value_count\n  rules: [one]\n  group-by: [src_ip]\n  timespan: 1h\n  condition:\n    gte: 2\n---\ntitle: three\ndetection:\n  s:\n    Unknown: 1\n  condition: s or t\n";
    let other = "title: four\ncorrelation:\n  type: value_median\n  rules: [one]\n  timespan: 1h\n  condition: {gte: 1}\nlevel: urgent\n";
    let l = load_text(&[("bad.yml", bad), ("other.yml", other)], &[]);
    let text: Vec<String> = l.problems.iter().map(ToString::to_string).collect();
    let has = |s: &str| assert!(text.iter().any(|t| t.contains(s)), "missing `{s}` in {text:#?}");
    has("bad.yml: document 1 (`one`): correlation.rules: `nope` names no rule");
    has("correlation.group-by: `NoSuchField` is not a field");
    has("correlation.timespan: `5 minutes`");
    has("correlation.condition.gtee: `gtee` is not a key");
    has("bad.yml: document 2 (`two`): correlation.condition.field: `field` is required for value_count");
    has("bad.yml: document 3 (`three`): detection.s.Unknown");
    has("detection.condition: `s or t`");
    has("other.yml: document 1 (`four`): correlation.type: `value_median`");
    has("level: `urgent`");
    assert!(l.rules.is_empty());
    assert!(l.warnings.iter().any(|w| w.to_string().contains("owner") && matches!(w.problem, Problem::UnknownKey(_))), "{:?}", l.warnings);
    // A timespan past a year (or past i64) is a problem, not an overflow.
    let long = "title: l\ncorrelation:\n  type: event_count\n  rules: [x]\n  group-by: [src_ip]\n  timespan: 99999999999999999d\n  condition: {gte: 1}\n";
    let l = load_text(&[("l.yml", long)], &[]);
    assert!(l.problems.iter().any(|p| matches!(p.problem, Problem::BadTimespan(_))), "{:?}", l.problems);
    // No rules but aliases: a problem, not a crash.
    let empty = "title: e\ncorrelation:\n  type: temporal\n  rules: []\n  group-by: [ip]\n  timespan: 1m\n  aliases:\n    ip:\n      a: src_ip\n";
    let l = load_text(&[("e.yml", empty)], &[]);
    assert!(l.problems.iter().any(|p| matches!(p.problem, Problem::TooFewRules(_))), "{:?}", l.problems);
    // Cycles are refused.
    let cycle = "title: a\nname: a\ncorrelation:\n  type: event_count\n  rules: [b]\n  group-by: [src_ip]\n  timespan: 1h\n  condition: {gte: 1}\n---\ntitle: b\nname: b\ncorrelation:\n  type: event_count\n  rules: [a]\n  group-by: [src_ip]\n  timespan: 1h\n  condition: {gte: 1}\n";
    let l = load_text(&[("c.yml", cycle)], &[]);
    assert!(l.problems.iter().any(|p| matches!(&p.problem, Problem::Cycle(c) if c == "a → b → a" || c == "b → a → b")), "{:?}", l.problems);
}

/// Through the binary: the specification's chained example with the field map in the
/// configuration, an EVE file replayed, the incident in the archive with the rule's level;
/// check-config lists every problem of a bad file and its warnings.
#[test]
fn chained_example_end_to_end_and_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let alert = |t: i64, sid: i64, seq: usize| {
        let ts = jiff::Timestamp::from_second(BASE + t).unwrap().strftime("%Y-%m-%dT%H:%M:%S").to_string();
        format!(
            "{{\"timestamp\":\"{ts}.{seq:06}+0000\",\"flow_id\":{},\"event_type\":\"alert\",\"src_ip\":\"198.51.100.7\",\"src_port\":40000,\"dest_ip\":\"10.0.0.5\",\"dest_port\":445,\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\"signature_id\":{sid},\"rev\":1,\"signature\":\"logon {sid}\",\"category\":\"Misc\",\"severity\":3}}}}",
            1000 + seq
        )
    };
    let mut lines: Vec<String> = (0..10).map(|i| alert(i * 20, 4625, i as usize)).collect();
    lines.push(alert(300, 4624, 10));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let rules = common::data_dir().join("sigma/spec/failed_logins_then_success.yml");
    // One state shard, then four (chained rules run on the first): the same incidents.
    let replay = |name: &str, shards: u32| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[archive]\nroot = \"{}\"\n\n[metrics]\nlisten = \"\"\n\n[state]\nshards = {shards}\nsigma = [\"{}\"]\n\n[state.sigma_fields]\nEventID = \"signature_id\"\nUser = \"src_ip\"\n",
                dir.path().join(name).display(),
                rules.display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["replay", "--json", "--config"])
            .arg(&cfg)
            .arg(&input)
            .env(alertflow::event::time::CLOCK_ENV, (BASE + 3600).to_string())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        common::read_table(&dir.path().join(name), "incidents")
    };
    let incidents = replay("archive", 1);
    let ids = |rows: &[std::collections::BTreeMap<String, String>]| {
        let mut v: Vec<(String, String)> = rows.iter().map(|r| (r["incident_id"].clone(), r["status"].clone())).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&incidents), ids(&replay("sharded", 4)), "four shards decide as one");
    let sigma: Vec<_> = incidents.iter().filter(|r| r["status"] == "open" && r["rule"].starts_with("Correlation - ")).collect();
    assert_eq!(sigma.len(), 1, "{incidents:#?}");
    assert_eq!(sigma[0]["group_key"], "198.51.100.7");
    assert!(["high", "critical"].contains(&sigma[0]["priority"].as_str()), "level high is the least priority: {:?}", sigma[0]);
    assert!(!incidents.iter().any(|r| r["rule"] == "multiple_failed_login"), "the inner rule opens nothing");

    // check-config: every problem of a bad file at once, with the warnings.
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "title: one\nname: one\nowner: me\ncorrelation:\n  type: event_count\n  rules: [nope]\n  group-by: [src_ip]\n  timespan: 5 minutes\n  condition: {gte: 3}\n---\ntitle: two\ncorrelation:\n  type: temporal\n  rules: [one]\n  group-by: [src_ip]\n  timespan: 1h\n").unwrap();
    let bad_cfg = dir.path().join("bad.toml");
    std::fs::write(&bad_cfg, format!("[metrics]\nlisten = \"\"\n\n[state]\nsigma = [\"{}\"]\n", bad.display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["check-config"]).arg(&bad_cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "`nope` names no rule",
        "`5 minutes` is not like",
        "document 2 (`two`): correlation.rules: a temporal correlation needs at least two rules",
        "3 problems",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    let warn_only = dir.path().join("warn.yml");
    std::fs::write(&warn_only, "title: one\nname: one\nowner: me\ndetection:\n  s:\n    signature_id: 1\n  condition: s\n---\ntitle: many\ncorrelation:\n  type: event_count\n  rules: [one]\n  group-by: [src_ip]\n  timespan: 1h\n  condition: {gte: 3}\n").unwrap();
    std::fs::write(&bad_cfg, format!("[metrics]\nlisten = \"\"\n\n[state]\nsigma = [\"{}\"]\n", warn_only.display())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["check-config"]).arg(&bad_cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: state.sigma:") && err.contains("owner"), "{err}");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("state.sigma rules in force:\n  many  (event_count, >= 3)"), "{listed}");
}

/// docs/sigma.md lists every name of the field map.
#[test]
fn the_field_table_in_the_docs_is_the_one_in_force() {
    let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/sigma.md")).unwrap();
    for (field, names) in alertflow::state::sigma::fields::TABLE {
        let row = doc.lines().find(|l| l.starts_with(&format!("| `{field}` |"))).unwrap_or_else(|| panic!("no row for {field}"));
        for n in *names {
            assert!(row.contains(&format!("`{n}`")), "{field}: `{n}` missing in docs/sigma.md");
        }
    }
}
