//! Priority scoring as data. A rule is `{name, when, score, reason}`: `when` is a CEL
//! expression over the alert and its enrichment, compiled once at load; `reason` is text
//! with `{{ expression }}` parts rendered for the alert. A declared aggregator turns the
//! scores of the matched rules into a 0–100 score and a priority; recommendation rules
//! (`{name, when, actions, evidence}`) attach response steps with the evidence that
//! triggered them.
//!
//! Variables are resolved by name when a rule reads them (missing values are `""`, `0`,
//! `false` or `[]`, never null, so comparisons need no guards; a name that is not one of
//! these is rejected when the rules load):
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

use std::net::IpAddr;
use std::sync::Arc;

pub mod incident;
pub mod native;
pub mod vars;

use std::cell::OnceCell;

use cel::{Context, Program, Value};

use native::Native;
use vars::{AlertVars, Plain};

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

pub use crate::event::scored::{Priority, Reason, Recommendation, Scored, Thresholds};

/// Text with `{{ expression }}` parts.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Compiled, String),
}

/// An expression: the CEL program, and the same compiled for direct evaluation when it is
/// of the typed subset ([`native`]).
#[derive(Debug)]
struct Compiled {
    program: Program,
    native: Option<Native>,
}

impl Compiled {
    fn new(program: Program) -> Compiled {
        let native = Native::compile(program.expression());
        Compiled { program, native }
    }

    /// `Some(true/false)` for a boolean; `None` for an error or another type.
    fn truth(&self, at: &Eval) -> Option<bool> {
        match &self.native {
            Some(n) => match n.eval(at.vars) {
                Ok(Plain::Bool(b)) => Some(b),
                _ => None,
            },
            None => match self.program.execute(at.cel()) {
                Ok(Value::Bool(b)) => Some(b),
                _ => None,
            },
        }
    }

    /// A finite number capped to ±100; `None` for an error or another type.
    fn points(&self, at: &Eval) -> Option<f64> {
        let capped = |v: f64| v.is_finite().then(|| v.clamp(-100.0, 100.0));
        match &self.native {
            Some(n) => match n.eval(at.vars) {
                Ok(Plain::Int(n)) => Some((n as f64).clamp(-100.0, 100.0)),
                Ok(Plain::Double(v)) => capped(v),
                _ => None,
            },
            None => match self.program.execute(at.cel()) {
                Ok(Value::Int(n)) => Some((n as f64).clamp(-100.0, 100.0)),
                Ok(Value::UInt(n)) => Some((n as f64).min(100.0)),
                Ok(Value::Float(v)) => capped(v),
                _ => None,
            },
        }
    }

    /// Appends the value as text; `?` for an error.
    fn display(&self, at: &Eval, out: &mut String) {
        match &self.native {
            Some(n) => match n.eval(at.vars) {
                Ok(v) => display_plain(&v, out),
                Err(_) => out.push('?'),
            },
            None => match self.program.execute(at.cel()) {
                Ok(v) => display(&v, out),
                Err(_) => out.push('?'),
            },
        }
    }
}

/// One alert's variables, and the CEL context over them, built the first time an
/// expression outside the typed subset needs it.
struct Eval<'v, 'a> {
    vars: &'v AlertVars<'a>,
    cel: OnceCell<Context<'v, 'v>>,
}

impl<'v, 'a> Eval<'v, 'a> {
    fn new(vars: &'v AlertVars<'a>) -> Self {
        Eval { vars, cel: OnceCell::new() }
    }

    fn cel(&self) -> &Context<'v, 'v> {
        self.cel.get_or_init(|| {
            let mut ctx = Context::with_env(ENV.with(Arc::clone));
            add_functions(&mut ctx);
            ctx.set_variable_resolver(self.vars);
            ctx
        })
    }
}

/// The longest reason, evidence or action text a template renders (bytes, then `…`).
pub const MAX_RENDERED_BYTES: usize = 1024;

/// Which text of a rule a problem is in (its key in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulePart {
    When,
    Score,
    Reason,
    Evidence,
    Actions,
}

impl RulePart {
    pub fn key(self) -> &'static str {
        match self {
            RulePart::When => "when",
            RulePart::Score => "score",
            RulePart::Reason => "reason",
            RulePart::Evidence => "evidence",
            RulePart::Actions => "actions",
        }
    }
}

/// What is wrong with one expression or template.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The CEL expression does not parse.
    #[error("{0}")]
    Syntax(String),
    #[error("`{{{{` without `}}}}` in `{0}`")]
    Unclosed(String),
    #[error("`{{{{ {expr} }}}}`: {message}")]
    TemplateSyntax { expr: String, message: String },
    #[error("unknown variable `{0}` (variables: {vars})", vars = VARIABLES.join(", "))]
    UnknownVariable(String),
    #[error("`{word}` is not a variable; {group} has: {known}", known = known.join(", "))]
    UnknownField { word: String, group: String, known: Vec<&'static str> },
}

/// A scoring rule or recommendation that does not compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} `{rule}`: {part}: {problem}", part = part.key())]
pub struct ScoreError {
    /// `rule` or `recommendation`.
    pub kind: &'static str,
    pub rule: String,
    pub part: RulePart,
    pub problem: Problem,
}

impl Template {
    pub fn compile(s: &str) -> Result<Template, Problem> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find("{{") {
            if i > 0 {
                parts.push(Part::Text(rest[..i].to_string()));
            }
            let after = &rest[i + 2..];
            let end = after.find("}}").ok_or_else(|| Problem::Unclosed(s.to_string()))?;
            let expr = after[..end].trim();
            let program = Program::compile(expr).map_err(|e| Problem::TemplateSyntax { expr: expr.to_string(), message: e.to_string() })?;
            parts.push(Part::Expr(Compiled::new(program), expr.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    fn programs(&self) -> impl Iterator<Item = &Program> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e, _) => Some(&e.program),
            Part::Text(_) => None,
        })
    }

    fn exprs(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(_, t) => Some(t.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text with each expression's value, at most [`MAX_RENDERED_BYTES`] (cut on a
    /// character boundary, with `…`): event fields are the sender's to choose, and one
    /// long signature must not make every reason of every alert megabytes long.
    fn render(&self, at: &Eval) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e, _) => e.display(at, &mut out),
            }
            if out.len() > MAX_RENDERED_BYTES {
                break;
            }
        }
        if out.len() > MAX_RENDERED_BYTES {
            let mut cut = MAX_RENDERED_BYTES;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
        out
    }
}

/// As [`display`] shows the same value.
fn display_plain(v: &Plain, out: &mut String) {
    use std::fmt::Write;
    match v {
        Plain::Str(s) => out.push_str(s),
        Plain::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Plain::Double(f) => {
            let _ = write!(out, "{f}");
        }
        Plain::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Plain::Strs(l) => {
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(x);
            }
        }
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
    when: Compiled,
    pub score: f64,
    /// A `score` written as an expression (a number per alert, capped to ±100).
    score_expr: Option<Compiled>,
    reason: Template,
}

/// `{name, when, actions, evidence}`.
#[derive(Debug)]
pub struct RecommendRule {
    pub name: String,
    when: Compiled,
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
    /// `score = "triage.alert_points"`: an expression instead of a number.
    pub score_expr: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecommendSpec {
    pub name: String,
    pub when: String,
    pub actions: Vec<String>,
    pub evidence: String,
}

/// The top-level variable names rules can use.
pub const VARIABLES: [&str; 8] = ["alert", "src", "dest", "intel", "history", "incident", "context", "triage"];

#[derive(Debug)]
pub struct Scorer {
    rules: Vec<(Arc<str>, ScoreRule)>,
    recommend: Vec<(Arc<str>, RecommendRule)>,
    pub aggregator: Aggregator,
    pub thresholds: Thresholds,
}

fn check_refs(p: &Program) -> Result<(), Problem> {
    let refs = p.references();
    for v in refs.variables() {
        if !VARIABLES.contains(&v) {
            return Err(Problem::UnknownVariable(v.to_string()));
        }
    }
    Ok(())
}

/// A rule's `when`: compiles, names known variables and fields only.
fn compile_when(text: &str) -> Result<Compiled, Problem> {
    let p = Program::compile(text).map_err(|e| Problem::Syntax(e.to_string()))?;
    check_refs(&p)?;
    check_fields(text)?;
    Ok(Compiled::new(p))
}

/// A rule's template text: compiles, its expressions name known variables and fields only.
fn compile_template(text: &str) -> Result<Template, Problem> {
    let t = Template::compile(text)?;
    t.programs().try_for_each(check_refs)?;
    t.exprs().try_for_each(check_fields)?;
    Ok(t)
}

/// Every `group.field` a rule's text names must be a variable (a typo would otherwise
/// never match, silently).
fn check_fields(text: &str) -> Result<(), Problem> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut in_str: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                in_str = None;
            }
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            in_str = Some(c);
            i += 1;
            continue;
        }
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'.');
        if boundary && c.is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.') {
                i += 1;
            }
            let word = text[start..i].trim_end_matches('.');
            if let Some((group, _)) = word.split_once('.') {
                if VARIABLES.contains(&group) {
                    // A method call (`alert.category.contains(…)`): the receiver is the variable.
                    let mut name = word;
                    while !vars::NAMES.contains(&name) {
                        match name.rsplit_once('.') {
                            Some((head, _)) if head.contains('.') => name = head,
                            _ => break,
                        }
                    }
                    let is_call = bytes.get(i) == Some(&b'(');
                    if !vars::NAMES.contains(&name) || (name != word && !is_call) {
                        let known: Vec<&'static str> = vars::NAMES.iter().copied().filter(|n| n.starts_with(&format!("{group}."))).collect();
                        return Err(Problem::UnknownField { word: word.to_string(), group: group.to_string(), known });
                    }
                }
            }
            continue;
        }
        i += 1;
    }
    Ok(())
}

impl Scorer {
    /// Compiles every rule; the error lists every problem of every rule.
    pub fn new(rules: &[RuleSpec], recommend: &[RecommendSpec], aggregator: Aggregator, thresholds: Thresholds) -> Result<Scorer, Vec<ScoreError>> {
        let mut errs = Vec::new();
        let mut out_rules = Vec::new();
        for r in rules {
            let err = |part| move |problem| ScoreError { kind: "rule", rule: r.name.clone(), part, problem };
            let when = compile_when(&r.when).map_err(err(RulePart::When));
            let reason = compile_template(&r.reason).map_err(err(RulePart::Reason));
            let expr = r.score_expr.as_deref().map(compile_when).transpose().map_err(err(RulePart::Score));
            match (when, reason, expr) {
                (Ok(w), Ok(t), Ok(x)) => {
                    out_rules.push((Arc::from(r.name.as_str()), ScoreRule { name: r.name.clone(), when: w, score: r.score, score_expr: x, reason: t }));
                }
                (w, t, x) => errs.extend(w.err().into_iter().chain(t.err()).chain(x.err())),
            }
        }
        let mut out_rec = Vec::new();
        for r in recommend {
            let err = |part| move |problem| ScoreError { kind: "recommendation", rule: r.name.clone(), part, problem };
            let when = compile_when(&r.when).map_err(err(RulePart::When));
            let ev = compile_template(&r.evidence).map_err(err(RulePart::Evidence));
            let actions: Result<Vec<Template>, ScoreError> = r.actions.iter().map(|a| compile_template(a).map_err(err(RulePart::Actions))).collect();
            match (when, ev, actions) {
                (Ok(w), Ok(t), Ok(actions)) => {
                    out_rec.push((Arc::from(r.name.as_str()), RecommendRule { name: r.name.clone(), when: w, actions, evidence: t }));
                }
                (w, t, a) => errs.extend(w.err().into_iter().chain(t.err()).chain(a.err())),
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(Scorer { rules: out_rules, recommend: out_rec, aggregator, thresholds })
    }

    pub fn rules(&self) -> usize {
        self.rules.len()
    }

    /// The expressions of every rule and recommendation left to the CEL interpreter (see
    /// [`native`]), by rule name.
    pub fn interpreted(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let templates = |t: &Template| t.parts.iter().filter(|p| matches!(p, Part::Expr(c, _) if c.native.is_none())).count();
        for (name, r) in &self.rules {
            let n = std::iter::once(&r.when).chain(&r.score_expr).filter(|c| c.native.is_none()).count() + templates(&r.reason);
            out.extend(std::iter::repeat_n(&**name, n));
        }
        for (name, r) in &self.recommend {
            let n = usize::from(r.when.native.is_none()) + templates(&r.evidence) + r.actions.iter().map(templates).sum::<usize>();
            out.extend(std::iter::repeat_n(&**name, n));
        }
        out
    }

    /// Evaluates every rule against the variables of one alert.
    pub fn score(&self, vars: &AlertVars) -> Scored {
        let at = Eval::new(vars);
        let mut out = Scored::default();
        let mut scores = Vec::new();
        for (name, r) in &self.rules {
            match r.when.truth(&at) {
                Some(true) => {
                    let score = match &r.score_expr {
                        None => r.score,
                        Some(x) => match x.points(&at) {
                            Some(v) => v,
                            None => {
                                out.errors += 1;
                                continue;
                            }
                        },
                    };
                    scores.push(score);
                    out.reasons.push(Reason { rule: name.clone(), score, reason: r.reason.render(&at) });
                }
                Some(false) => {}
                None => out.errors += 1,
            }
        }
        for (name, r) in &self.recommend {
            match r.when.truth(&at) {
                Some(true) => out.recommendations.push(Recommendation {
                    rule: name.clone(),
                    actions: r.actions.iter().map(|a| a.render(&at)).collect(),
                    evidence: r.evidence.render(&at),
                }),
                Some(false) => {}
                None => out.errors += 1,
            }
        }
        let s = self.aggregator.combine(&scores);
        out.score = s.round() as u8;
        out.priority = Some(self.thresholds.priority(s));
        out
    }
}

thread_local! {
    /// The standard library, built once per thread.
    static ENV: Arc<cel::Env> = Arc::new(cel::Env::stdlib());
}

fn add_functions(c: &mut Context<'_, '_>) {
    c.add_function("in_cidr", |ip: Arc<String>, nets: Value| -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else { return false };
        let one = |n: &str| crate::event::prefix::parse_cidr(n).is_some_and(|(net, len)| crate::event::prefix::net_contains(net, len, ip));
        match &nets {
            Value::String(s) => one(s),
            Value::List(l) => l.iter().any(|x| matches!(x, Value::String(s) if one(s))),
            _ => false,
        }
    })
    .expect("in_cidr is not a standard function");
}

#[cfg(test)]
mod tests {
    use super::vars::{AlertVars, Decided};
    use super::*;
    use crate::event::alert::AlertRecord;
    use crate::event::enriched::Place;
    use crate::event::enriched::{Enrichment, GeoHit};

    fn rule(name: &str, when: &str, score: f64, reason: &str) -> RuleSpec {
        RuleSpec { name: name.into(), when: when.into(), score, score_expr: None, reason: reason.into() }
    }

    fn run(sc: &Scorer, sev: i32, country: &str, ip: &str) -> Scored {
        let a = AlertRecord { severity: sev, signature: "ET SCAN x".into(), category: "Attempted Recon".into(), src_ip: ip.into(), ..Default::default() };
        let mut e = Enrichment::default();
        e.src.geo = Some(Arc::new(GeoHit { place: Some(Place { country: Some(country.into()), ..Default::default() }), asn: None }));
        sc.score(&AlertVars {
            alert: &a,
            enrichment: &e,
            decided: Decided { dedup_count: 1, decision: "first", late: false, incidents: &[] },
            around: &[],
            triage: None,
        })
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
            &[RecommendSpec {
                name: "block".into(),
                when: "src.country == 'RU' && alert.severity <= 2".into(),
                actions: vec!["block {{src.ip}}".into()],
                evidence: "{{src.ip}} ({{src.country}})".into(),
            }],
            Aggregator::Sum,
            Thresholds::default(),
        )
        .unwrap();
        let out = run(&sc, 1, "RU", "203.0.113.7");
        assert_eq!(out.score, 95);
        assert_eq!(out.priority, Some(Priority::Critical));
        assert_eq!(out.reasons.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(), ["severity 1", "source in RU", "scan signature"]);
        assert_eq!(out.recommendations[0].evidence, "203.0.113.7 (RU)");
        assert_eq!(out.recommendations[0].actions, ["block 203.0.113.7"]);
        let out = run(&sc, 3, "DE", "10.1.2.3");
        assert_eq!((out.score, out.priority_str()), (0, "info"), "-20 + 5 is capped at 0");
        assert_eq!(out.reasons.len(), 2);
    }

    #[test]
    fn the_shipped_rules_need_no_interpreter() {
        let cfg = crate::config::Config::embedded_default();
        let sc = cfg.scorer.expect("scoring is on by default");
        assert!(sc.rules() >= 3);
        assert_eq!(sc.interpreted(), Vec::<&str>::new());
        let sc = Scorer::new(
            &[rule("cidr", "in_cidr(src.ip, '10.0.0.0/8')", 1.0, "{{alert.severity > 1 ? 'a' : 'b'}} {{src.ip}}")],
            &[],
            Aggregator::Max,
            Thresholds::default(),
        )
        .unwrap();
        assert_eq!(sc.interpreted(), ["cidr", "cidr"]);
        let out = run(&sc, 1, "RU", "10.9.9.9");
        assert_eq!((out.score, out.reasons[0].reason.as_str()), (1, "b 10.9.9.9"), "both paths in one rule");
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
        let e = Scorer::new(
            &[
                rule("bad", "alert.severity <=", 1.0, ""),
                rule("unknown", "foo.bar == 1", 1.0, ""),
                rule("tmpl", "true", 1.0, "{{ alert."),
                rule("typo", "alert.sevrity == 1", 1.0, ""),
                rule("typo2", "true", 1.0, "{{src.asset.nam}}"),
            ],
            &[],
            Aggregator::Max,
            Thresholds::default(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(matches!(&e[0], ScoreError { rule, part: RulePart::When, problem: Problem::Syntax(_), .. } if rule == "bad"), "{e:?}");
        assert_eq!(e[1].problem, Problem::UnknownVariable("foo".into()));
        assert!(matches!(&e[2], ScoreError { rule, part: RulePart::Reason, problem: Problem::Unclosed(_), .. } if rule == "tmpl"), "{e:?}");
        let text: Vec<String> = e.iter().map(|x| x.to_string()).collect();
        assert!(text[0].contains("rule `bad`") && text[1].contains("unknown variable `foo`") && text[2].contains("rule `tmpl`: reason"), "{text:?}");
        assert!(text[3].contains("`alert.sevrity` is not a variable") && text[3].contains("alert.severity"), "{text:?}");
        assert!(matches!(&e[4].problem, Problem::UnknownField { word, group, .. } if word == "src.asset.nam" && group == "src"), "{e:?}");
        // Methods on variables and names inside strings are fine.
        Scorer::new(
            &[rule("ok", "alert.category.contains('x.y') && alert.signature.startsWith('src.nope')", 1.0, "{{ alert.signature.size() }}")],
            &[],
            Aggregator::Max,
            Thresholds::default(),
        )
        .unwrap();
    }

    #[test]
    fn rendered_reasons_are_bounded_whatever_the_event_says() {
        let sc =
            Scorer::new(&[rule("long", "true", 10.0, "sig: {{alert.signature}} / {{alert.signature}}")], &[], Aggregator::Max, Thresholds::default()).unwrap();
        let alert = AlertRecord { signature: "é".repeat(500_000), ..Default::default() };
        let out = sc.score(&AlertVars {
            alert: &alert,
            enrichment: &Enrichment::default(),
            decided: Decided { dedup_count: 1, decision: "first", late: false, incidents: &[] },
            around: &[],
            triage: None,
        });
        let r = &out.reasons[0].reason;
        assert!(r.len() <= MAX_RENDERED_BYTES + '…'.len_utf8() && r.ends_with('…') && r.starts_with("sig: éé"), "{} bytes", r.len());
    }

    #[test]
    fn a_rule_that_fails_at_runtime_is_counted_not_matched() {
        let sc =
            Scorer::new(&[rule("type error", "alert.severity == 'x' || alert.severity > 'y'", 50.0, "")], &[], Aggregator::Max, Thresholds::default()).unwrap();
        let out = run(&sc, 1, "RU", "1.2.3.4");
        assert_eq!((out.score, out.errors), (0, 1));
    }
}
