//! Priority scoring as data. A rule is `{name, when, score, reason}`: `when` is a CEL
//! expression over the alert and its enrichment, compiled once at load; `reason` is text
//! with `{{ expression }}` parts rendered for the alert. A declared aggregator turns the
//! scores of the matched rules into a 0–100 score and a priority; recommendation rules
//! (`{name, when, actions, evidence}`) attach response steps with the evidence that
//! triggered them.
//!
//! Variables (missing values are `""`, `0`, `false` or `[]`, never null, so comparisons
//! need no guards):
//! - `alert`: `signature_id`, `signature`, `category`, `severity`, `sensor`, `proto`,
//!   `src_port`, `dest_port`, `flow_id`, `late`, `dedup_count`, `decision`
//!   (`first`, `escalated`, `suppressed`, `late`)
//! - `src`, `dest`: `ip`, `port`, `country`, `country_name`, `continent`, `city`,
//!   `subdivision`, `asn`, `as_org`, `internal` (the inventory knows it), `asset`
//!   (`name`, `owner`, `criticality`, `criticality_level` 0–4, `tags`)
//! - `intel`: `matched`, `count`, `max_confidence`, `feeds`, `types`, `indicators`, `fields`
//! - `history`: `signature_24h`, `signature_7d`, `src_24h`, `src_7d`, `dest_24h`,
//!   `dest_7d`, `pair_24h`, `pair_7d`, `first_signature`, `first_src`, `first_dest`,
//!   `first_pair`, `verdicts`, `false_positives`, `true_positives`
//! - `incident`: `count` (incidents the alert joined), `ids`
//! - `context`: `dns`, `http_hosts`, `urls`, `tls_sni`, `ja3`, `ja4`, `files`,
//!   `file_hashes`, `anomalies` (lists of what the alert's flow carried)
//!
//! Functions beyond the CEL standard library: `in_cidr(ip, "10.0.0.0/8")` or
//! `in_cidr(ip, ["10.0.0.0/8", "fd00::/8"])`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

pub mod vars;

use cel::objects::{Key, Map};
use cel::{Context, Program, Value};

/// How matched rules combine into the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregator {
    /// The highest matched score.
    Max,
    /// The sum of the matched scores, capped to 0–100 (negative scores lower it).
    #[default]
    Sum,
    /// The mean of the matched scores.
    Mean,
    /// 100 × (1 − Π(1 − s/100)): independent pieces of evidence.
    NoisyOr,
}

impl Aggregator {
    pub const NAMES: [&'static str; 4] = ["max", "sum", "mean", "noisy_or"];

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "max" => Aggregator::Max,
            "sum" => Aggregator::Sum,
            "mean" => Aggregator::Mean,
            "noisy_or" => Aggregator::NoisyOr,
            _ => return None,
        })
    }

    pub fn combine(self, scores: &[f64]) -> f64 {
        if scores.is_empty() {
            return 0.0;
        }
        let s = match self {
            Aggregator::Max => scores.iter().copied().fold(f64::MIN, f64::max),
            Aggregator::Sum => scores.iter().sum(),
            Aggregator::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
            Aggregator::NoisyOr => 100.0 * (1.0 - scores.iter().map(|s| 1.0 - s.clamp(0.0, 100.0) / 100.0).product::<f64>()),
        };
        s.clamp(0.0, 100.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Info => "info",
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

/// Lowest score of each priority.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub critical: f64,
    pub high: f64,
    pub medium: f64,
    pub low: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { critical: 90.0, high: 70.0, medium: 40.0, low: 20.0 }
    }
}

impl Thresholds {
    pub fn priority(&self, score: f64) -> Priority {
        if score >= self.critical {
            Priority::Critical
        } else if score >= self.high {
            Priority::High
        } else if score >= self.medium {
            Priority::Medium
        } else if score >= self.low {
            Priority::Low
        } else {
            Priority::Info
        }
    }
}

/// Text with `{{ expression }}` parts.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Program),
}

impl Template {
    pub fn compile(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let end = after.find("}}").ok_or_else(|| format!("`{{{{` without `}}}}` in `{s}`"))?;
            let expr = after[..end].trim();
            parts.push(Part::Expr(Program::compile(expr).map_err(|e| format!("`{{{{ {expr} }}}}`: {e}"))?));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    fn programs(&self) -> impl Iterator<Item = &Program> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    pub fn render(&self, ctx: &Context) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => match e.execute(ctx) {
                    Ok(v) => display(&v, &mut out),
                    Err(_) => out.push('?'),
                },
            }
        }
        out
    }
}

fn display(v: &Value, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::String(s) => out.push_str(s),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::List(l) => {
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                display(x, out);
            }
        }
        Value::Null => out.push_str("null"),
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}

/// `{name, when, score, reason}`.
#[derive(Debug)]
pub struct ScoreRule {
    pub name: String,
    when: Program,
    pub score: f64,
    reason: Template,
}

/// `{name, when, actions, evidence}`.
#[derive(Debug)]
pub struct RecommendRule {
    pub name: String,
    when: Program,
    /// Steps, rendered per alert (`block {{src.ip}}`).
    actions: Vec<Template>,
    evidence: Template,
}

/// A rule as written in the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: String,
    pub when: String,
    pub score: f64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecommendSpec {
    pub name: String,
    pub when: String,
    pub actions: Vec<String>,
    pub evidence: String,
}

/// One matched rule of an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub rule: Arc<str>,
    pub score: f64,
    pub reason: String,
}

/// One recommendation with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub rule: Arc<str>,
    pub actions: Vec<String>,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scored {
    pub score: u8,
    pub priority: Option<Priority>,
    pub reasons: Vec<Reason>,
    pub recommendations: Vec<Recommendation>,
    /// Rules whose `when` failed for this alert (wrong type, missing function…).
    pub errors: u32,
}

impl Scored {
    pub fn priority_str(&self) -> &'static str {
        self.priority.unwrap_or(Priority::Info).as_str()
    }
}

/// The top-level variable names rules can use.
pub const VARIABLES: [&str; 7] = ["alert", "src", "dest", "intel", "history", "incident", "context"];

#[derive(Debug)]
pub struct Scorer {
    rules: Vec<(Arc<str>, ScoreRule)>,
    recommend: Vec<(Arc<str>, RecommendRule)>,
    pub aggregator: Aggregator,
    pub thresholds: Thresholds,
    /// Which of [`VARIABLES`] any rule refers to (the others are not built).
    used: [bool; 7],
}

fn check_refs(p: &Program, what: &str) -> Result<(), String> {
    let refs = p.references();
    for v in refs.variables() {
        if !VARIABLES.contains(&v) {
            return Err(format!("{what}: unknown variable `{v}` (variables: {})", VARIABLES.join(", ")));
        }
    }
    Ok(())
}

impl Scorer {
    /// Compiles every rule; the error lists every rule that does not compile.
    pub fn new(rules: &[RuleSpec], recommend: &[RecommendSpec], aggregator: Aggregator, thresholds: Thresholds) -> Result<Scorer, Vec<String>> {
        let mut errs = Vec::new();
        let mut used = [false; 7];
        let mut note = |p: &Program| {
            let refs = p.references();
            for (i, v) in VARIABLES.iter().enumerate() {
                used[i] |= refs.has_variable(v);
            }
        };
        let mut out_rules = Vec::new();
        for r in rules {
            let when = Program::compile(&r.when).map_err(|e| format!("rule `{}`: when: {e}", r.name)).and_then(|p| check_refs(&p, &format!("rule `{}`: when", r.name)).map(|_| p));
            let reason = Template::compile(&r.reason).map_err(|e| format!("rule `{}`: reason: {e}", r.name)).and_then(|t| {
                t.programs().try_for_each(|p| check_refs(p, &format!("rule `{}`: reason", r.name)))?;
                Ok(t)
            });
            match (when, reason) {
                (Ok(w), Ok(t)) => {
                    note(&w);
                    t.programs().for_each(&mut note);
                    out_rules.push((Arc::from(r.name.as_str()), ScoreRule { name: r.name.clone(), when: w, score: r.score, reason: t }));
                }
                (w, t) => errs.extend(w.err().into_iter().chain(t.err())),
            }
        }
        let mut out_rec = Vec::new();
        for r in recommend {
            let when = Program::compile(&r.when).map_err(|e| format!("recommendation `{}`: when: {e}", r.name)).and_then(|p| check_refs(&p, &format!("recommendation `{}`: when", r.name)).map(|_| p));
            let tmpl = |what: &str, text: &str| {
                Template::compile(text).map_err(|e| format!("recommendation `{}`: {what}: {e}", r.name)).and_then(|t| {
                    t.programs().try_for_each(|p| check_refs(p, &format!("recommendation `{}`: {what}", r.name)))?;
                    Ok(t)
                })
            };
            let ev = tmpl("evidence", &r.evidence);
            let actions: Result<Vec<Template>, String> = r.actions.iter().map(|a| tmpl("actions", a)).collect();
            match (when, ev, actions) {
                (Ok(w), Ok(t), Ok(actions)) => {
                    note(&w);
                    t.programs().for_each(&mut note);
                    actions.iter().flat_map(|a| a.programs()).for_each(&mut note);
                    out_rec.push((Arc::from(r.name.as_str()), RecommendRule { name: r.name.clone(), when: w, actions, evidence: t }));
                }
                (w, t, a) => errs.extend(w.err().into_iter().chain(t.err()).chain(a.err())),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Scorer { rules: out_rules, recommend: out_rec, aggregator, thresholds, used })
    }

    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// Whether rules refer to the variable (index into [`VARIABLES`]).
    pub fn uses(&self, var: usize) -> bool {
        self.used[var]
    }

    /// Evaluates every rule against the variables of one alert.
    pub fn score(&self, vars: &Vars) -> Scored {
        ROOT.with(|root| {
            let mut ctx = root.new_inner_scope();
            for (i, v) in vars.0.iter().enumerate() {
                if let Some(v) = v {
                    ctx.add_variable_from_value(VARIABLES[i], v.clone());
                }
            }
            self.score_in(&ctx)
        })
    }

    fn score_in(&self, ctx: &Context) -> Scored {
        let mut out = Scored::default();
        let mut scores = Vec::new();
        for (name, r) in &self.rules {
            match r.when.execute(ctx) {
                Ok(Value::Bool(true)) => {
                    scores.push(r.score);
                    out.reasons.push(Reason { rule: name.clone(), score: r.score, reason: r.reason.render(ctx) });
                }
                Ok(Value::Bool(false)) => {}
                _ => out.errors += 1,
            }
        }
        for (name, r) in &self.recommend {
            match r.when.execute(ctx) {
                Ok(Value::Bool(true)) => out.recommendations.push(Recommendation { rule: name.clone(), actions: r.actions.iter().map(|a| a.render(ctx)).collect(), evidence: r.evidence.render(ctx) }),
                Ok(Value::Bool(false)) => {}
                _ => out.errors += 1,
            }
        }
        let s = self.aggregator.combine(&scores);
        out.score = s.round() as u8;
        out.priority = Some(self.thresholds.priority(s));
        out
    }
}

thread_local! {
    /// The standard library plus alertflow's functions, built once per thread.
    static ROOT: Context<'static, 'static> = root_context();
}

fn root_context() -> Context<'static, 'static> {
    let mut c = Context::default();
    c.add_function("in_cidr", |ip: Arc<String>, nets: Value| -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else { return false };
        let ip = crate::enrich::prefix::canonical(ip);
        let one = |n: &str| {
            crate::enrich::prefix::parse_cidr(n).is_some_and(|(net, len)| {
                let mut t = crate::enrich::prefix::PrefixTable::new();
                t.insert(net, len, ());
                t.lookup(ip).is_some()
            })
        };
        match &nets {
            Value::String(s) => one(s),
            Value::List(l) => l.iter().any(|x| matches!(x, Value::String(s) if one(s))),
            _ => false,
        }
    })
    .expect("in_cidr is not a standard function");
    c
}

/// The variables of one alert, by [`VARIABLES`] index (`None`: not used by any rule).
#[derive(Debug, Default, Clone)]
pub struct Vars(pub [Option<Value>; 7]);

/// Map keys are made once per thread name, then shared.
fn key(k: &'static str) -> Key {
    thread_local! {
        static LOCAL: std::cell::RefCell<HashMap<&'static str, Arc<String>>> = std::cell::RefCell::new(HashMap::new());
    }
    LOCAL.with(|l| Key::String(l.borrow_mut().entry(k).or_insert_with(|| Arc::new(k.to_string())).clone()))
}

/// Builds a CEL map from `(key, value)` pairs.
pub fn map(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let m: HashMap<Key, Value> = entries.into_iter().map(|(k, v)| (key(k), v)).collect();
    Value::Map(Map { map: Arc::new(m) })
}

pub fn s(v: &str) -> Value {
    Value::String(Arc::new(v.to_string()))
}

pub fn list<I: IntoIterator<Item = Value>>(items: I) -> Value {
    Value::List(Arc::new(items.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, when: &str, score: f64, reason: &str) -> RuleSpec {
        RuleSpec { name: name.into(), when: when.into(), score, reason: reason.into() }
    }

    fn vars(sev: i64, country: &str, ip: &str) -> Vars {
        let mut v = Vars::default();
        v.0[0] = Some(map([("severity", Value::Int(sev)), ("signature", s("ET SCAN x")), ("category", s("Attempted Recon"))]));
        v.0[1] = Some(map([("ip", s(ip)), ("country", s(country))]));
        v
    }

    #[test]
    fn rules_match_aggregate_and_render_reasons() {
        let sc = Scorer::new(
            &[
                rule("high severity", "alert.severity <= 1", 60.0, "severity {{alert.severity}}"),
                rule("from RU", "src.country in ['RU', 'KP']", 30.0, "source in {{ src.country }}"),
                rule("internal", "in_cidr(src.ip, ['10.0.0.0/8', '192.168.0.0/16'])", -20.0, "internal source {{src.ip}}"),
                rule("scan", "alert.signature.matches('^ET SCAN')", 5.0, "scan signature"),
            ],
            &[RecommendSpec { name: "block".into(), when: "src.country == 'RU' && alert.severity <= 2".into(), actions: vec!["block source at the edge".into()], evidence: "{{src.ip}} ({{src.country}})".into() }],
            Aggregator::Sum,
            Thresholds::default(),
        )
        .unwrap();
        let out = sc.score(&vars(1, "RU", "203.0.113.7"));
        assert_eq!(out.score, 95);
        assert_eq!(out.priority, Some(Priority::Critical));
        assert_eq!(out.reasons.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(), ["severity 1", "source in RU", "scan signature"]);
        assert_eq!(out.recommendations[0].evidence, "203.0.113.7 (RU)");
        let out = sc.score(&vars(3, "DE", "10.1.2.3"));
        assert_eq!((out.score, out.priority_str()), (0, "info"), "-20 + 5 is capped at 0");
        assert_eq!(out.reasons.len(), 2);
    }

    #[test]
    fn aggregators() {
        assert_eq!(Aggregator::Max.combine(&[30.0, 60.0]), 60.0);
        assert_eq!(Aggregator::Sum.combine(&[70.0, 60.0]), 100.0);
        assert_eq!(Aggregator::Mean.combine(&[30.0, 60.0]), 45.0);
        assert!((Aggregator::NoisyOr.combine(&[50.0, 50.0]) - 75.0).abs() < 1e-9);
        assert_eq!(Aggregator::Sum.combine(&[]), 0.0);
    }

    #[test]
    fn compile_errors_name_the_rule() {
        let e = Scorer::new(&[rule("bad", "alert.severity <=", 1.0, ""), rule("unknown", "foo.bar == 1", 1.0, ""), rule("tmpl", "true", 1.0, "{{ alert.")], &[], Aggregator::Max, Thresholds::default()).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("rule `bad`") && e[1].contains("unknown variable `foo`") && e[2].contains("rule `tmpl`: reason"), "{e:?}");
    }

    #[test]
    fn a_rule_that_fails_at_runtime_is_counted_not_matched() {
        let sc = Scorer::new(&[rule("type error", "alert.severity == 'x' || alert.severity > 'y'", 50.0, "")], &[], Aggregator::Max, Thresholds::default()).unwrap();
        let out = sc.score(&vars(1, "RU", "1.2.3.4"));
        assert_eq!((out.score, out.errors), (0, 1));
    }
}
