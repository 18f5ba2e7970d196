//! The variables of one alert, resolved by name when a rule reads them (nothing is built
//! for fields no rule uses): `alert.severity`, `src.asset.criticality_level`, … (see the
//! module documentation of `score` for the list).

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;

use crate::event::alert::AlertRecord;
use crate::event::enriched::{Enrichment, Side};
use crate::event::triage::Assessment;
use crate::event::{ContextKind, ContextView};

/// What the state stage decided about the alert.
#[derive(Debug, Clone, Copy)]
pub struct Decided<'a> {
    pub dedup_count: i64,
    /// `first`, `escalated`, `suppressed`, `late`.
    pub decision: &'a str,
    pub late: bool,
    pub incidents: &'a [String],
}

/// Every variable name rules can use.
pub const NAMES: &[&str] = &[
    "alert.signature_id",
    "alert.signature",
    "alert.category",
    "alert.severity",
    "alert.sensor",
    "alert.proto",
    "alert.src_port",
    "alert.dest_port",
    "alert.flow_id",
    "alert.late",
    "alert.dedup_count",
    "alert.decision",
    "src.ip",
    "src.port",
    "src.country",
    "src.country_name",
    "src.continent",
    "src.city",
    "src.subdivision",
    "src.asn",
    "src.as_org",
    "src.internal",
    "src.asset.name",
    "src.asset.owner",
    "src.asset.criticality",
    "src.asset.criticality_level",
    "src.asset.tags",
    "dest.ip",
    "dest.port",
    "dest.country",
    "dest.country_name",
    "dest.continent",
    "dest.city",
    "dest.subdivision",
    "dest.asn",
    "dest.as_org",
    "dest.internal",
    "dest.asset.name",
    "dest.asset.owner",
    "dest.asset.criticality",
    "dest.asset.criticality_level",
    "dest.asset.tags",
    "intel.matched",
    "intel.count",
    "intel.max_confidence",
    "intel.feeds",
    "intel.types",
    "intel.indicators",
    "intel.fields",
    "history.signature_24h",
    "history.signature_7d",
    "history.src_24h",
    "history.src_7d",
    "history.dest_24h",
    "history.dest_7d",
    "history.pair_24h",
    "history.pair_7d",
    "history.first_signature",
    "history.first_src",
    "history.first_dest",
    "history.first_pair",
    "history.verdicts",
    "history.false_positives",
    "history.true_positives",
    "incident.count",
    "incident.ids",
    "context.dns",
    "context.http_hosts",
    "context.urls",
    "context.tls_sni",
    "context.ja3",
    "context.ja4",
    "context.files",
    "context.file_hashes",
    "context.anomalies",
    "triage.direction",
    "triage.entity",
    "triage.peer",
    "triage.stage",
    "triage.stage_from",
    "triage.rarity",
    "triage.chronic",
    "triage.new_to_entity",
    "triage.weight",
    "triage.risk",
    "triage.stages",
    "triage.behaviours",
    "triage.alert_points",
    "triage.entity_points",
    "triage.alert_why",
    "triage.entity_why",
    "triage.in_incident",
];

/// One alert as CEL variables.
pub struct AlertVars<'a> {
    pub alert: &'a AlertRecord,
    pub enrichment: &'a Enrichment,
    pub decided: Decided<'a>,
    /// The context events of the alert's flow.
    pub around: &'a [ContextView<'a>],
    /// What triage found (`None`: triage is off; its variables read as empty).
    pub triage: Option<&'a Assessment>,
}

/// One variable's value, borrowed from the alert where it can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain<'b> {
    Str(&'b str),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Distinct strings, in the order first seen.
    Strs(Vec<&'b str>),
}

impl Plain<'_> {
    /// As a CEL value.
    pub fn to_cel<'b>(&self) -> CowVal<'b, 'b>
    where
        Self: 'b,
    {
        match self {
            Plain::Str(v) => own(CelString::from(*v)),
            Plain::Int(v) => own(CelInt::from(*v)),
            Plain::Double(v) => own(CelDouble::from(*v)),
            Plain::Bool(v) => own(CelBool::from(*v)),
            Plain::Strs(v) => own(CelList::from(v.iter().map(|x| Box::new(CelString::from(*x)) as Box<dyn Val + 'b>).collect::<Vec<_>>())),
        }
    }
}

type V<'b> = Option<Plain<'b>>;

fn own<'b>(v: impl Val + 'b) -> CowVal<'b, 'b> {
    CowVal::Owned(Box::new(v))
}

fn s(v: &str) -> V<'_> {
    Some(Plain::Str(v))
}

fn i(v: i64) -> V<'static> {
    Some(Plain::Int(v))
}

fn f(v: f64) -> V<'static> {
    Some(Plain::Double(v))
}

fn b(v: bool) -> V<'static> {
    Some(Plain::Bool(v))
}

/// A list of distinct strings.
fn strs<'b>(items: impl Iterator<Item = &'b str>) -> V<'b> {
    let mut seen: Vec<&'b str> = Vec::new();
    for x in items {
        if !seen.contains(&x) {
            seen.push(x);
        }
    }
    Some(Plain::Strs(seen))
}

fn side<'b>(field: &str, ip: &'b str, port: Option<i32>, x: &'b Side) -> V<'b> {
    let place = x.geo.as_ref().and_then(|g| g.place.as_ref());
    let asn = x.geo.as_ref().and_then(|g| g.asn.as_ref());
    let t = |v: Option<&'b Box<str>>| s(v.map_or("", |b| b));
    let asset = x.asset.as_deref();
    match field {
        "ip" => s(ip),
        "port" => i(port.unwrap_or(0) as i64),
        "country" => t(place.and_then(|p| p.country.as_ref())),
        "country_name" => t(place.and_then(|p| p.country_name.as_ref())),
        "continent" => t(place.and_then(|p| p.continent.as_ref())),
        "city" => t(place.and_then(|p| p.city.as_ref())),
        "subdivision" => t(place.and_then(|p| p.subdivision.as_ref())),
        "asn" => i(asn.and_then(|a| a.number).unwrap_or(0) as i64),
        "as_org" => t(asn.and_then(|a| a.organization.as_ref())),
        "internal" => b(asset.is_some()),
        "asset.name" => s(asset.map_or("", |a| &a.name)),
        "asset.owner" => t(asset.and_then(|a| a.owner.as_ref())),
        "asset.criticality" => t(asset.and_then(|a| a.criticality.as_ref())),
        "asset.criticality_level" => i(asset.map_or(0, |a| a.criticality_level())),
        "asset.tags" => strs(asset.into_iter().flat_map(|a| a.tags.iter().map(|t| &**t))),
        _ => None,
    }
}

impl AlertVars<'_> {
    fn of_kind<'b>(&'b self, kind: ContextKind, slots: &'b [usize]) -> V<'b> {
        strs(self.around.iter().filter(move |c| c.kind == kind).flat_map(move |c| slots.iter().filter_map(move |&k| c.text[k])))
    }
}

impl VariableResolver for AlertVars<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        self.get(name).map(|v| v.to_cel())
    }
}

impl AlertVars<'_> {
    /// The value of one of [`NAMES`]; `None` for any other name.
    pub fn get<'b>(&'b self, name: &str) -> Option<Plain<'b>> {
        let (a, e, d) = (self.alert, self.enrichment, &self.decided);
        let (group, field) = name.split_once('.')?;
        match group {
            "alert" => match field {
                "signature_id" => i(a.signature_id),
                "signature" => s(&a.signature),
                "category" => s(&a.category),
                "severity" => i(a.severity as i64),
                "sensor" => s(&a.sensor),
                "proto" => s(&a.proto),
                "src_port" => i(a.src_port.unwrap_or(0) as i64),
                "dest_port" => i(a.dest_port.unwrap_or(0) as i64),
                "flow_id" => i(a.flow_id.unwrap_or(0)),
                "late" => b(d.late),
                "dedup_count" => i(d.dedup_count),
                "decision" => s(d.decision),
                _ => None,
            },
            "src" => side(field, &a.src_ip, a.src_port, &e.src),
            "dest" => side(field, &a.dest_ip, a.dest_port, &e.dest),
            "intel" => {
                let h = &e.intel;
                match field {
                    "matched" => b(!h.is_empty()),
                    "count" => i(h.len() as i64),
                    "max_confidence" => i(h.iter().map(|x| x.confidence as i64).max().unwrap_or(0)),
                    "feeds" => strs(h.iter().map(|x| x.feed.strip_prefix("intel:").unwrap_or(&x.feed))),
                    "types" => strs(h.iter().map(|x| x.kind.as_str())),
                    "indicators" => strs(h.iter().map(|x| &*x.indicator)),
                    "fields" => strs(h.iter().map(|x| x.field)),
                    _ => None,
                }
            }
            "history" => {
                let none = crate::event::enriched::HistoryInfo::default();
                let h = e.history.as_ref().unwrap_or(&none);
                let verdicts = |v: &str| i(h.verdicts.iter().filter(|x| x.verdict == v).count() as i64);
                match field {
                    "signature_24h" => i(h.signature.last_24h as i64),
                    "signature_7d" => i(h.signature.last_7d as i64),
                    "src_24h" => i(h.src.last_24h as i64),
                    "src_7d" => i(h.src.last_7d as i64),
                    "dest_24h" => i(h.dest.last_24h as i64),
                    "dest_7d" => i(h.dest.last_7d as i64),
                    "pair_24h" => i(h.pair.last_24h as i64),
                    "pair_7d" => i(h.pair.last_7d as i64),
                    "first_signature" => b(h.signature.first_time),
                    "first_src" => b(h.src.first_time),
                    "first_dest" => b(h.dest.first_time),
                    "first_pair" => b(h.pair.first_time),
                    "verdicts" => match &e.history {
                        Some(h) => strs(h.verdicts.iter().map(|x| x.verdict.as_str())),
                        None => strs(std::iter::empty()),
                    },
                    "false_positives" => verdicts("false_positive"),
                    "true_positives" => verdicts("true_positive"),
                    _ => None,
                }
            }
            "incident" => match field {
                "count" => i(d.incidents.len() as i64),
                "ids" => strs(d.incidents.iter().map(String::as_str)),
                _ => None,
            },
            "triage" => {
                static NONE: std::sync::LazyLock<Assessment> = std::sync::LazyLock::new(Assessment::default);
                let t = self.triage.unwrap_or(&NONE);
                match field {
                    "direction" => s(if self.triage.is_some() { t.direction.as_str() } else { "" }),
                    "entity" => s(&t.entity),
                    "peer" => s(&t.peer),
                    "stage" => s(if self.triage.is_some() { t.stage.as_str() } else { "" }),
                    "stage_from" => s(t.stage_from),
                    "rarity" => i(t.rarity as i64),
                    "chronic" => b(t.chronic),
                    "new_to_entity" => b(t.new_to_entity),
                    "weight" => f((t.weight * 100.0).round() / 100.0),
                    "risk" => f((t.risk * 100.0).round() / 100.0),
                    "stages" => strs(t.stages.iter().map(|x| x.as_str())),
                    "behaviours" => strs(t.behaviours.iter().map(|x| x.kind)),
                    "alert_points" => i(t.alert_points as i64),
                    "entity_points" => i(t.entity_points as i64),
                    "alert_why" => s(&t.alert_why),
                    "entity_why" => s(&t.entity_why),
                    "in_incident" => b(t.incident.is_some()),
                    _ => None,
                }
            }
            "context" => match field {
                "dns" => self.of_kind(ContextKind::Dns, &[0]),
                "http_hosts" => self.of_kind(ContextKind::Http, &[0]),
                "urls" => self.of_kind(ContextKind::Http, &[1]),
                "tls_sni" => self.of_kind(ContextKind::Tls, &[0]),
                "ja3" => self.of_kind(ContextKind::Tls, &[2]),
                "ja4" => self.of_kind(ContextKind::Tls, &[3]),
                "files" => self.of_kind(ContextKind::FileInfo, &[0]),
                "file_hashes" => self.of_kind(ContextKind::FileInfo, &[1, 2, 4]),
                "anomalies" => i(self.around.iter().filter(|c| c.kind == ContextKind::Anomaly).count() as i64),
                _ => None,
            },
            _ => None,
        }
    }
}
