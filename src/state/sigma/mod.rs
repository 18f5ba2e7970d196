//! Sigma rules (the SigmaHQ specification, v2.1) → correlation [`Rule`]s.
//!
//! Files hold YAML documents (`---`): correlation rules, and the detection rules they
//! count, written against alert fields ([`detection`]). A correlation's `rules` name, by
//! `name` or `id`, a detection or correlation rule of any loaded file, or an alert
//! selector of the configuration (`[[state.selectors]]`). Everything the specification
//! defines is honoured or refused at load with the file, document and key; nothing is
//! accepted and then ignored:
//! * `type`: event_count, value_count, temporal, temporal_ordered, value_sum, value_avg,
//!   value_percentile; `condition` with `gt`, `gte`, `lt`, `lte`, `eq`, `neq` together
//!   (a range), and `field` (a list for value_count: the fields' values together);
//! * chained correlations: a correlation over other correlations sees their matches;
//!   cycles are refused; a referenced correlation opens no incidents of its own unless the
//!   rule naming it says `generate: true`;
//! * `aliases` with a different field per rule; field names through [`fields::FieldMap`];
//! * `level` sets the least priority of the rule's incidents;
//! * two rules may share a title (their `id`s tell them apart in incidents); `name`s and
//!   `id`s must be unique across the loaded files.
//!
//! Unknown top-level keys are warnings (metadata); unknown keys inside `correlation` or
//! its `condition` are problems, since they would change what a rule means.

pub mod detection;
pub mod fields;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

pub use detection::Detection;
pub use fields::FieldMap;

use super::correlate::{Condition, Measure, Range, Rule, Selector};
use super::KeyField;

/// An alert field by its own name or a Sigma name of the default field map.
pub fn field(name: &str) -> Option<KeyField> {
    FieldMap::default().get(name)
}

fn timespan_us(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    // At most a year: longer windows are a typo, and hold state for ever.
    let secs = n.checked_mul(unit_secs).filter(|s| *s > 0 && *s <= 366 * 86_400)?;
    Some(secs * 1_000_000)
}

/// What is wrong with a Sigma document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Yaml(String),
    #[error("a rule needs a title, name or id")]
    NoName,
    #[error("`{0}` names no rule of a loaded Sigma file and no selector in [[state.selectors]]")]
    UnknownSelector(String),
    #[error("`{0}` is not a field alerts carry; use an alert field ({fields}) or a Sigma name from the field map, or add it under [state.sigma_fields]", fields = KeyField::NAMES.join(", "))]
    UnknownField(String),
    #[error("`{target}` is not a field alerts carry")]
    UnknownAliasField { alias: String, target: String },
    #[error("no field for rule `{rule}`")]
    AliasMissingRule { alias: String, rule: String },
    #[error("is empty")]
    EmptyAlias(String),
    #[error("`{0}` is not like 30s, 5m, 1h or 1d (at most a year)")]
    BadTimespan(String),
    #[error("{0}")]
    BadCondition(String),
    #[error("`field` is required for {0}")]
    MissingField(String),
    #[error("a {0} correlation needs at least two rules")]
    TooFewRules(String),
    #[error("`{0}` is not one of: event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile")]
    UnknownType(String),
    #[error("`{0}` is required")]
    Missing(&'static str),
    #[error("`{0}` is not a key of a Sigma rule here")]
    UnknownKey(String),
    #[error("{0}")]
    Detection(String),
    #[error("`{0}` is not one of: informational, low, medium, high, critical")]
    BadLevel(String),
    #[error("{what} `{value}` is also used by document {other_document} of {other_file}")]
    Duplicate { what: &'static str, value: String, other_file: String, other_document: usize },
    #[error("rules reference each other in a cycle: {0}")]
    Cycle(String),
    #[error("Sigma filters are not supported (they would change other rules)")]
    Filter,
    #[error("neither a detection nor a correlation rule")]
    NotARule,
    #[error("{0}")]
    Other(String),
}

/// A problem (or warning) of one document of a Sigma file, with the key it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct SigmaError {
    pub file: String,
    /// 1-based document of the file.
    pub document: usize,
    pub rule: Option<String>,
    /// Dotted key path (`correlation.condition.gte`), when the problem has one.
    pub key: Option<String>,
    pub problem: Problem,
}

impl std::fmt::Display for SigmaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}: ", self.file)?;
        }
        write!(f, "document {}", self.document)?;
        if let Some(r) = &self.rule {
            write!(f, " (`{r}`)")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// What a set of Sigma files loaded to.
#[derive(Debug, Default)]
pub struct Loaded {
    pub rules: Vec<Rule>,
    pub problems: Vec<SigmaError>,
    pub warnings: Vec<SigmaError>,
}

struct Doc {
    file: usize,
    document: usize,
    v: Value,
    /// The rule's name in incidents (unique among the loaded rules).
    label: String,
}

fn split_documents(text: &str) -> Vec<String> {
    let mut docs: Vec<String> = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().expect("one at least");
            d.push_str(line);
            d.push('\n');
        }
    }
    docs
}

const TOP_KEYS: &[&str] = &[
    "title",
    "id",
    "name",
    "status",
    "description",
    "author",
    "references",
    "date",
    "modified",
    "taxonomy",
    "correlation",
    "falsepositives",
    "level",
    "generate",
    "tags",
    "related",
    "license",
    "fields",
    "logsource",
    "detection",
    "scope",
];
const CORRELATION_KEYS: &[&str] = &["type", "rules", "aliases", "group-by", "timespan", "condition", "generate"];
const CONDITION_KEYS: &[&str] = &["gt", "gte", "lt", "lte", "eq", "neq", "field"];

fn level(s: &str) -> Option<u8> {
    Some(match s {
        "informational" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => return None,
    })
}

/// Loads one Sigma file alone (default field map): its rules, or its first problem.
pub fn load(text: &str, selectors: &[Selector]) -> Result<Vec<Rule>, Box<SigmaError>> {
    let mut l = load_all(&[(String::new(), text.to_string())], selectors, &FieldMap::default());
    if l.problems.is_empty() {
        Ok(l.rules)
    } else {
        Err(Box::new(l.problems.remove(0)))
    }
}

/// Loads Sigma files together (`(path, text)`): references resolve across them. Every
/// problem of every file is reported; rules come only when there is none.
pub fn load_all(files: &[(String, String)], selectors: &[Selector], fields: &FieldMap) -> Loaded {
    let mut out = Loaded::default();
    let mut docs: Vec<Doc> = Vec::new();
    for (fi, (path, text)) in files.iter().enumerate() {
        for (i, d) in split_documents(text).iter().enumerate().filter(|(_, d)| !d.trim().is_empty()) {
            let document = i + 1;
            let err = |problem| SigmaError { file: path.clone(), document, rule: None, key: None, problem };
            match serde_saphyr::from_str::<Value>(d) {
                Ok(v @ Value::Object(_)) => docs.push(Doc { file: fi, document, v, label: String::new() }),
                Ok(Value::Null) => {}
                Ok(_) => out.problems.push(err(Problem::Yaml("a document is a map of keys".into()))),
                Err(e) => out.problems.push(err(Problem::Yaml(e.to_string()))),
            }
        }
    }
    // Labels: `name`, else `title`, else `id`; titles shared by several rules get their id.
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut title_uses: HashMap<String, usize> = HashMap::new();
    for d in &docs {
        if text(&d.v, "name").is_none() {
            if let Some(t) = text(&d.v, "title") {
                *title_uses.entry(t).or_default() += 1;
            }
        }
    }
    for d in &mut docs {
        let (name, title, id) = (text(&d.v, "name"), text(&d.v, "title"), text(&d.v, "id"));
        d.label = match (name, title, id) {
            (Some(n), _, _) => n,
            (None, Some(t), id) if title_uses.get(&t).copied().unwrap_or(0) > 1 => {
                format!("{t} [{}]", id.unwrap_or_else(|| format!("document {}", d.document)))
            }
            (None, Some(t), _) => t,
            (None, None, Some(id)) => id,
            (None, None, None) => String::new(),
        };
    }
    // References by name and by id, unique across the files.
    let mut refs: HashMap<String, usize> = HashMap::new();
    for (di, d) in docs.iter().enumerate() {
        let at = |key: &str, problem| SigmaError {
            file: files[d.file].0.clone(),
            document: d.document,
            rule: Some(d.label.clone()),
            key: Some(key.into()),
            problem,
        };
        for key in ["name", "id"] {
            if let Some(v) = text(&d.v, key) {
                if let Some(&other) = refs.get(&v) {
                    let o = &docs[other];
                    if !(key == "id" && text(&o.v, "name").as_deref() == Some(&v)) {
                        out.problems.push(at(
                            key,
                            Problem::Duplicate { what: key_what(key), value: v.clone(), other_file: files[o.file].0.clone(), other_document: o.document },
                        ));
                    }
                    continue;
                }
                refs.insert(v, di);
            }
        }
    }
    // Which correlation rules are named by others, and whether one of those asks for them.
    let mut referenced: HashMap<usize, bool> = HashMap::new();
    for d in &docs {
        let generate = d.v.get("generate").or_else(|| d.v.pointer("/correlation/generate")).and_then(Value::as_bool).unwrap_or(false);
        for r in d.v.pointer("/correlation/rules").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if let Some(&t) = refs.get(r) {
                if docs[t].v.get("correlation").is_some() {
                    *referenced.entry(t).or_default() |= generate;
                }
            }
        }
    }
    // Base detection rules → selectors.
    let mut detections: HashMap<usize, Selector> = HashMap::new();
    let field_of = |n: &str| fields.get(n);
    for (di, d) in docs.iter().enumerate() {
        let file = &files[d.file].0;
        let at = |key: Option<String>, problem| SigmaError {
            file: file.clone(),
            document: d.document,
            rule: Some(d.label.clone()).filter(|l| !l.is_empty()),
            key,
            problem,
        };
        let Some(obj) = d.v.as_object() else { continue };
        for k in obj.keys().filter(|k| !TOP_KEYS.contains(&k.as_str())) {
            if k == "filter" {
                continue;
            }
            out.warnings.push(at(Some(k.clone()), Problem::UnknownKey(k.clone())));
        }
        if d.label.is_empty() {
            out.problems.push(at(None, Problem::NoName));
            continue;
        }
        if let Some(l) = obj.get("level") {
            if l.as_str().and_then(level).is_none() {
                out.problems.push(at(Some("level".into()), Problem::BadLevel(l.as_str().map_or_else(|| l.to_string(), str::to_owned))));
            }
        }
        match (obj.get("correlation"), obj.get("detection"), obj.get("filter")) {
            (Some(_), Some(_), _) => out.problems.push(at(None, Problem::Other("a document is either a detection or a correlation rule, not both".into()))),
            (Some(_), None, _) => {}
            (None, Some(det), _) => match detection::compile(det, &field_of) {
                Ok(det) => {
                    detections.insert(di, Selector { name: d.label.clone(), detection: Some(Arc::new(det)), ..Default::default() });
                }
                Err(ps) => out.problems.extend(ps.into_iter().map(|(k, m)| at(Some(k), Problem::Detection(m)))),
            },
            (None, None, Some(_)) => out.problems.push(at(Some("filter".into()), Problem::Filter)),
            (None, None, None) => out.problems.push(at(None, Problem::NotARule)),
        }
    }
    // Correlation rules.
    let mut edges: HashMap<usize, Vec<usize>> = HashMap::new();
    for (di, d) in docs.iter().enumerate() {
        let Some(c) = d.v.get("correlation") else { continue };
        if d.label.is_empty() {
            continue;
        }
        let file = &files[d.file].0;
        let at = |key: &str, problem| SigmaError { file: file.clone(), document: d.document, rule: Some(d.label.clone()), key: Some(key.to_string()), problem };
        let mut problems = Vec::new();
        let Some(c) = c.as_object() else {
            out.problems.push(at("correlation", Problem::Other("is not a map".into())));
            continue;
        };
        for k in c.keys().filter(|k| !CORRELATION_KEYS.contains(&k.as_str())) {
            problems.push(at(&format!("correlation.{k}"), Problem::UnknownKey(k.clone())));
        }
        let kind = c.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        if !c.contains_key("type") {
            problems.push(at("correlation.type", Problem::Missing("type")));
        }
        // The rules it counts.
        let names: Vec<String> = match c.get("rules") {
            Some(Value::Array(xs)) => xs.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => {
                problems.push(at("correlation.rules", Problem::Missing("rules")));
                Vec::new()
            }
        };
        let mut sels = Vec::new();
        for n in &names {
            if let Some(&t) = refs.get(n) {
                if let Some(s) = detections.get(&t) {
                    sels.push(Selector { name: n.clone(), ..s.clone() });
                } else if docs[t].v.get("correlation").is_some() {
                    edges.entry(di).or_default().push(t);
                    sels.push(Selector { name: n.clone(), rule: Some(docs[t].label.clone()), ..Default::default() });
                } else {
                    // A document with problems of its own (reported there).
                    sels.push(Selector { name: n.clone(), rule: Some(String::new()), ..Default::default() });
                }
            } else if let Some(s) = selectors.iter().find(|s| &s.name == n) {
                sels.push(s.clone());
            } else {
                problems.push(at("correlation.rules", Problem::UnknownSelector(n.clone())));
            }
        }
        if sels.len() > 64 {
            problems.push(at("correlation.rules", Problem::Other("at most 64 rules per correlation".into())));
        }
        // Aliases: per rule name, the field.
        let mut aliases: HashMap<String, HashMap<String, String>> = HashMap::new();
        if let Some(a) = c.get("aliases") {
            match a.as_object() {
                Some(m) => {
                    for (alias, per) in m {
                        let per: HashMap<String, String> = per
                            .as_object()
                            .map(|p| p.iter().map(|(r, f)| (r.clone(), f.as_str().unwrap_or_default().to_string())).collect())
                            .unwrap_or_default();
                        if per.is_empty() {
                            problems.push(at(&format!("correlation.aliases.{alias}"), Problem::EmptyAlias(alias.clone())));
                        }
                        aliases.insert(alias.clone(), per);
                    }
                }
                None => problems.push(at("correlation.aliases", Problem::Other("is a map of alias → { rule: field }".into()))),
            }
        }
        // A name resolved per selector: an alias's field for that rule, or the field itself.
        let resolve = |name: &str, key: &str, problems: &mut Vec<SigmaError>| -> Vec<Option<KeyField>> {
            match aliases.get(name) {
                Some(per) => names
                    .iter()
                    .map(|r| match per.get(r) {
                        None => {
                            problems.push(at(&format!("correlation.aliases.{name}"), Problem::AliasMissingRule { alias: name.into(), rule: r.clone() }));
                            None
                        }
                        Some(t) => {
                            let f = fields.get(t);
                            if f.is_none() {
                                problems
                                    .push(at(&format!("correlation.aliases.{name}.{r}"), Problem::UnknownAliasField { alias: name.into(), target: t.clone() }));
                            }
                            f
                        }
                    })
                    .collect(),
                None => {
                    let f = fields.get(name);
                    if f.is_none() {
                        problems.push(at(key, Problem::UnknownField(name.into())));
                    }
                    vec![f; names.len().max(1)]
                }
            }
        };
        let group_names: Vec<String> = match c.get("group-by") {
            None => Vec::new(),
            Some(Value::Array(xs)) => xs.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(_) => {
                problems.push(at("correlation.group-by", Problem::Other("is a list of field names".into())));
                Vec::new()
            }
        };
        if !c.contains_key("group-by") {
            out.warnings.push(at("correlation.group-by", Problem::Other("not given: all matching alerts form one group".into())));
        }
        let per_group: Vec<Vec<Option<KeyField>>> = group_names.iter().map(|g| resolve(g, "correlation.group-by", &mut problems)).collect();
        // Per selector: its group fields.
        let n_sel = names.len().max(1);
        let per_selector: Vec<Vec<KeyField>> =
            (0..n_sel).map(|i| per_group.iter().map(|fs| fs.get(i).or(fs.last()).copied().flatten().unwrap_or(KeyField::Sensor)).collect()).collect();
        let uniform = per_selector.windows(2).all(|w| w[0] == w[1]);
        let group_by = per_selector.first().cloned().unwrap_or_default();
        let timespan = c.get("timespan").and_then(Value::as_str).unwrap_or_default();
        let span = match c.get("timespan") {
            None => {
                problems.push(at("correlation.timespan", Problem::Missing("timespan")));
                0
            }
            Some(_) => timespan_us(timespan).unwrap_or_else(|| {
                problems.push(at("correlation.timespan", Problem::BadTimespan(timespan.to_string())));
                0
            }),
        };
        // The condition.
        let cond = c.get("condition").and_then(Value::as_object);
        if c.get("condition").is_some_and(|v| !v.is_object()) {
            problems.push(at("correlation.condition", Problem::Other("is a map such as {gte: 10}".into())));
        }
        let mut range = Range::default();
        let mut any_bound = false;
        for (k, v) in cond.into_iter().flatten() {
            if !CONDITION_KEYS.contains(&k.as_str()) {
                problems.push(at(&format!("correlation.condition.{k}"), Problem::UnknownKey(k.clone())));
                continue;
            }
            if k == "field" {
                continue;
            }
            let Some(x) = v.as_f64() else {
                problems.push(at(&format!("correlation.condition.{k}"), Problem::BadCondition(format!("`{v}` is not a number"))));
                continue;
            };
            any_bound = true;
            match k.as_str() {
                "gt" => range.lo = Some((x, false)),
                "gte" => range.lo = Some((x, true)),
                "lt" => range.hi = Some((x, false)),
                "lte" => range.hi = Some((x, true)),
                "eq" => range.eq = Some(x),
                _ => range.neq = Some(x),
            }
        }
        if cond.is_some_and(|m| m.contains_key("gt") && m.contains_key("gte")) || cond.is_some_and(|m| m.contains_key("lt") && m.contains_key("lte")) {
            problems.push(at("correlation.condition", Problem::BadCondition("two bounds on one side (gt with gte, or lt with lte)".into())));
        }
        if any_bound && range.is_empty() {
            problems.push(at("correlation.condition", Problem::BadCondition(format!("no value satisfies {range}"))));
        }
        let field_names: Vec<String> = match cond.and_then(|m| m.get("field")) {
            None => Vec::new(),
            Some(Value::Array(xs)) => xs.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect(),
            Some(v) => vec![v.as_str().map_or_else(|| v.to_string(), str::to_owned)],
        };
        let mut value_fields = Vec::new();
        for f in &field_names {
            let per = resolve(f, "correlation.condition.field", &mut problems);
            match per.first().copied().flatten() {
                Some(first) if per.iter().all(|x| *x == Some(first)) => value_fields.push(first),
                Some(_) => problems
                    .push(at("correlation.condition.field", Problem::Other(format!("alias `{f}` names different fields per rule; a value field must be one")))),
                None => {}
            }
        }
        let needs_bound = |problems: &mut Vec<SigmaError>| {
            if !any_bound {
                problems.push(at("correlation.condition", Problem::BadCondition(format!("a {kind} correlation needs one of gt, gte, lt, lte, eq, neq"))));
            }
        };
        let one_field = |problems: &mut Vec<SigmaError>| -> Option<KeyField> {
            match (field_names.len(), value_fields.first()) {
                (0, _) => {
                    problems.push(at("correlation.condition.field", Problem::MissingField(kind.clone())));
                    None
                }
                (1, f) => f.copied(),
                _ => {
                    problems.push(at("correlation.condition.field", Problem::Other(format!("{kind} takes one field"))));
                    None
                }
            }
        };
        let measure = match kind.as_str() {
            "event_count" => {
                needs_bound(&mut problems);
                Some(Measure::Events)
            }
            "value_count" => {
                needs_bound(&mut problems);
                if field_names.is_empty() {
                    problems.push(at("correlation.condition.field", Problem::MissingField(kind.clone())));
                }
                Some(Measure::Distinct(value_fields.clone()))
            }
            "value_sum" | "value_avg" | "value_percentile" => {
                needs_bound(&mut problems);
                one_field(&mut problems).map(|f| match kind.as_str() {
                    "value_sum" => Measure::Sum(f),
                    "value_avg" => Measure::Avg(f),
                    _ => Measure::Percentile(f),
                })
            }
            "temporal" | "temporal_ordered" => {
                if names.len() < 2 {
                    problems.push(at("correlation.rules", Problem::TooFewRules(kind.clone())));
                }
                if any_bound && !(1..=names.len()).any(|n| range.contains(n as f64)) {
                    problems.push(at(
                        "correlation.condition",
                        Problem::BadCondition(format!("counts rules matched: 1 to {} can never satisfy {range}", names.len())),
                    ));
                }
                if !field_names.is_empty() {
                    problems.push(at("correlation.condition.field", Problem::Other(format!("a {kind} correlation counts rules, not values"))));
                }
                Some(if kind == "temporal" { Measure::Rules } else { Measure::OrderedRules })
            }
            "" => None,
            other => {
                problems.push(at("correlation.type", Problem::UnknownType(other.to_string())));
                None
            }
        };
        let emit = referenced.get(&di).is_none_or(|g| *g);
        let level = d.v.get("level").and_then(Value::as_str).and_then(level);
        if !problems.is_empty() {
            out.problems.extend(problems);
            continue;
        }
        let Some(measure) = measure else { continue };
        out.rules.push(Rule {
            name: d.label.clone(),
            selectors: sels,
            group_by,
            group_by_per_selector: if uniform { Vec::new() } else { per_selector },
            timespan_us: span,
            condition: Condition { measure, range: any_bound.then_some(range) },
            emit,
            level,
            ..Default::default()
        });
    }
    // Cycles between correlation rules.
    let mut reported: HashSet<usize> = HashSet::new();
    for &start in edges.keys() {
        let mut path = vec![start];
        if let Some(cycle) = find_cycle(start, &edges, &mut path, &mut HashSet::new()) {
            if cycle.iter().any(|c| reported.contains(c)) {
                continue;
            }
            reported.extend(cycle.iter().copied());
            let d = &docs[cycle[0]];
            let names: Vec<&str> = cycle.iter().chain(std::iter::once(&cycle[0])).map(|&i| docs[i].label.as_str()).collect();
            out.problems.push(SigmaError {
                file: files[d.file].0.clone(),
                document: d.document,
                rule: Some(d.label.clone()),
                key: Some("correlation.rules".into()),
                problem: Problem::Cycle(names.join(" → ")),
            });
        }
    }
    if !out.problems.is_empty() {
        out.rules.clear();
    }
    out
}

fn key_what(key: &str) -> &'static str {
    if key == "id" {
        "id"
    } else {
        "name"
    }
}

/// A cycle through `at` (the rules on it, in order), if any.
fn find_cycle(at: usize, edges: &HashMap<usize, Vec<usize>>, path: &mut Vec<usize>, seen: &mut HashSet<usize>) -> Option<Vec<usize>> {
    for &next in edges.get(&at).into_iter().flatten() {
        if let Some(p) = path.iter().position(|&x| x == next) {
            return Some(path[p..].to_vec());
        }
        if seen.insert(next) {
            path.push(next);
            if let Some(c) = find_cycle(next, edges, path, seen) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}
