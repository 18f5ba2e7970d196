//! Sigma correlation rules (the SigmaHQ correlation specification) → [`Rule`]s.
//!
//! A file holds one or more YAML documents (`---`); documents with a `correlation`
//! section become rules, others (base detection rules) are skipped. The `rules` a
//! correlation references are the names of alert selectors from the configuration
//! (`[[state.selectors]]`). Supported: `type` event_count, value_count, temporal,
//! temporal_ordered; `group-by`; `timespan` (`30s`, `5m`, `1h`, `1d`); `condition` with
//! `gte` or `gt` (and `field` for value_count); `aliases` whose fields all name the same
//! alert field. Field names are the alert fields (`src_ip`, …) or their common Sigma/ECS
//! names (`SourceIp`, `source.ip`, `DestinationPort`, `ComputerName`, …).

use std::collections::HashMap;

use serde::Deserialize;

use super::correlate::{Condition, Rule, Selector};
use super::KeyField;

#[derive(Debug, Deserialize)]
struct Doc {
    title: Option<String>,
    name: Option<String>,
    id: Option<String>,
    correlation: Option<Correlation>,
}

#[derive(Debug, Deserialize)]
struct Correlation {
    #[serde(rename = "type")]
    kind: String,
    rules: Vec<String>,
    #[serde(rename = "group-by", default)]
    group_by: Vec<String>,
    timespan: String,
    #[serde(default)]
    condition: HashMap<String, serde_json::Value>,
    #[serde(default)]
    aliases: HashMap<String, HashMap<String, String>>,
}

/// An alert field by its own name or a common Sigma/ECS name.
pub fn field(name: &str) -> Option<KeyField> {
    if let Some(f) = KeyField::from_name(name) {
        return Some(f);
    }
    Some(match name {
        "SourceIp" | "source.ip" | "src" => KeyField::SrcIp,
        "SourcePort" | "source.port" => KeyField::SrcPort,
        "DestinationIp" | "destination.ip" | "dst" => KeyField::DestIp,
        "DestinationPort" | "destination.port" | "dst_port" => KeyField::DestPort,
        "ComputerName" | "Hostname" | "host" | "host.name" | "observer.name" => KeyField::Sensor,
        "rule.id" | "sid" => KeyField::SignatureId,
        "rule.category" => KeyField::Category,
        "event.severity" => KeyField::Severity,
        "network.transport" | "Protocol" => KeyField::Proto,
        _ => return None,
    })
}

fn timespan_us(s: &str) -> Option<i64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        _ => return None,
    };
    (secs > 0).then_some(secs * 1_000_000)
}

/// What is wrong with a correlation rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Yaml(String),
    #[error("a correlation needs a name, title or id")]
    NoName,
    #[error("rules: no alert selector named `{0}` in [[state.selectors]]")]
    UnknownSelector(String),
    #[error("`{0}` is not an alert field; use one of: {fields}", fields = KeyField::NAMES.join(", "))]
    UnknownField(String),
    #[error("aliases.{alias}: `{target}` is not an alert field")]
    UnknownAliasField { alias: String, target: String },
    #[error("aliases.{0} is empty")]
    EmptyAlias(String),
    #[error("aliases.{0}: the rules' fields differ; alerts have one schema")]
    AliasFieldsDiffer(String),
    #[error("timespan `{0}` is not like 30s, 5m, 1h or 1d")]
    BadTimespan(String),
    #[error("condition: only `gte` and `gt` are supported")]
    UnsupportedCondition,
    #[error("condition.field is required for value_count")]
    MissingField,
    #[error("a {0} correlation needs at least two rules")]
    TooFewRules(String),
    #[error("type `{0}` is not one of: event_count, value_count, temporal, temporal_ordered")]
    UnknownType(String),
}

/// A problem of one document of a Sigma file (and of its rule, once it has a name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct SigmaError {
    /// 1-based document of the file.
    pub document: usize,
    pub rule: Option<String>,
    pub problem: Problem,
}

impl std::fmt::Display for SigmaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule {
            Some(r) => write!(f, "`{r}`: {}", self.problem),
            None => write!(f, "document {}: {}", self.document, self.problem),
        }
    }
}

/// Loads the correlation rules of one Sigma file. Errors name the document and the key.
pub fn load(text: &str, selectors: &[Selector]) -> Result<Vec<Rule>, SigmaError> {
    let mut rules = Vec::new();
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
    for (i, d) in docs.iter().enumerate().filter(|(_, d)| !d.trim().is_empty()) {
        let document = i + 1;
        let doc: Doc = serde_saphyr::from_str(d).map_err(|e| SigmaError { document, rule: None, problem: Problem::Yaml(e.to_string()) })?;
        let Some(c) = doc.correlation else { continue };
        let name = doc.name.or(doc.title).or(doc.id).ok_or(SigmaError { document, rule: None, problem: Problem::NoName })?;
        let at = |problem: Problem| SigmaError { document, rule: Some(name.clone()), problem };
        let mut sels = Vec::new();
        for r in &c.rules {
            let s = selectors.iter().find(|s| &s.name == r).ok_or_else(|| at(Problem::UnknownSelector(r.clone())))?;
            sels.push(s.clone());
        }
        let resolve = |f: &str| -> Result<KeyField, SigmaError> {
            if let Some(targets) = c.aliases.get(f) {
                let mut fields = targets.values().map(|t| field(t).ok_or_else(|| at(Problem::UnknownAliasField { alias: f.to_string(), target: t.clone() })));
                let first = fields.next().ok_or_else(|| at(Problem::EmptyAlias(f.to_string())))??;
                for other in fields {
                    if other? != first {
                        return Err(at(Problem::AliasFieldsDiffer(f.to_string())));
                    }
                }
                return Ok(first);
            }
            field(f).ok_or_else(|| at(Problem::UnknownField(f.to_string())))
        };
        let group_by = c.group_by.iter().map(|g| resolve(g)).collect::<Result<Vec<_>, _>>()?;
        let timespan_us = timespan_us(&c.timespan).ok_or_else(|| at(Problem::BadTimespan(c.timespan.clone())))?;
        let count = |cond: &HashMap<String, serde_json::Value>| -> Result<usize, SigmaError> {
            let num = |k: &str| cond.get(k).and_then(serde_json::Value::as_u64);
            match (num("gte"), num("gt")) {
                (Some(n), _) => Ok(n as usize),
                (None, Some(n)) => Ok(n as usize + 1),
                _ => Err(at(Problem::UnsupportedCondition)),
            }
        };
        let condition = match c.kind.as_str() {
            "event_count" => Condition::EventCount { gte: count(&c.condition)? },
            "value_count" => {
                let f = c.condition.get("field").and_then(serde_json::Value::as_str).ok_or_else(|| at(Problem::MissingField))?;
                Condition::ValueCount { field: resolve(f)?, gte: count(&c.condition)? }
            }
            "temporal" | "temporal_ordered" => {
                if sels.len() < 2 {
                    return Err(at(Problem::TooFewRules(c.kind.clone())));
                }
                if c.kind == "temporal" {
                    Condition::Temporal
                } else {
                    Condition::TemporalOrdered
                }
            }
            other => return Err(at(Problem::UnknownType(other.to_string()))),
        };
        rules.push(Rule { name, selectors: sels, group_by, timespan_us, condition, late: Default::default() });
    }
    Ok(rules)
}
