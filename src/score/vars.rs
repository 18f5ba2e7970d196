//! The CEL variables of one alert (see the module documentation of `score`).

use std::sync::Arc;

use cel::Value;

use super::{list, map, s, Scorer, Vars};
use crate::enrich::{Enrichment, Side};
use crate::event::{ContextKind, ContextView};
use crate::state::AlertRecord;

/// What the state stage decided about the alert.
#[derive(Debug, Clone, Copy)]
pub struct Decided<'a> {
    pub dedup_count: i64,
    /// `first`, `escalated`, `suppressed`, `late`.
    pub decision: &'a str,
    pub late: bool,
    pub incidents: &'a [String],
}

fn side(ip: &str, port: Option<i32>, x: &Side) -> Value {
    let place = x.geo.as_ref().and_then(|g| g.place.as_ref());
    let asn = x.geo.as_ref().and_then(|g| g.asn.as_ref());
    let t = |v: Option<&Box<str>>| s(v.map_or("", |b| b));
    let asset = match &x.asset {
        Some(a) => map([
            ("name", s(&a.name)),
            ("owner", t(a.owner.as_ref())),
            ("criticality", t(a.criticality.as_ref())),
            ("criticality_level", Value::Int(a.criticality_level())),
            ("tags", list(a.tags.iter().map(|x| s(x)))),
        ]),
        None => map([("name", s("")), ("owner", s("")), ("criticality", s("")), ("criticality_level", Value::Int(0)), ("tags", list([]))]),
    };
    map([
        ("ip", s(ip)),
        ("port", Value::Int(port.unwrap_or(0) as i64)),
        ("country", t(place.and_then(|p| p.country.as_ref()))),
        ("country_name", t(place.and_then(|p| p.country_name.as_ref()))),
        ("continent", t(place.and_then(|p| p.continent.as_ref()))),
        ("city", t(place.and_then(|p| p.city.as_ref()))),
        ("subdivision", t(place.and_then(|p| p.subdivision.as_ref()))),
        ("asn", Value::Int(asn.and_then(|a| a.number).unwrap_or(0) as i64)),
        ("as_org", t(asn.and_then(|a| a.organization.as_ref()))),
        ("internal", Value::Bool(x.asset.is_some())),
        ("asset", asset),
    ])
}

fn uniq(values: impl Iterator<Item = String>) -> Value {
    let mut v: Vec<String> = Vec::new();
    for x in values {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    list(v.into_iter().map(|x| Value::String(Arc::new(x))))
}

/// Builds the variables the scorer's rules refer to (the others stay `None`).
pub fn build(sc: &Scorer, a: &AlertRecord, e: &Enrichment, d: Decided<'_>, around: &[ContextView<'_>]) -> Vars {
    let mut v = Vars::default();
    if sc.uses(0) {
        v.0[0] = Some(map([
            ("signature_id", Value::Int(a.signature_id)),
            ("signature", s(&a.signature)),
            ("category", s(&a.category)),
            ("severity", Value::Int(a.severity as i64)),
            ("sensor", s(&a.sensor)),
            ("proto", s(&a.proto)),
            ("src_port", Value::Int(a.src_port.unwrap_or(0) as i64)),
            ("dest_port", Value::Int(a.dest_port.unwrap_or(0) as i64)),
            ("flow_id", Value::Int(a.flow_id.unwrap_or(0))),
            ("late", Value::Bool(d.late)),
            ("dedup_count", Value::Int(d.dedup_count)),
            ("decision", s(d.decision)),
        ]));
    }
    if sc.uses(1) {
        v.0[1] = Some(side(&a.src_ip, a.src_port, &e.src));
    }
    if sc.uses(2) {
        v.0[2] = Some(side(&a.dest_ip, a.dest_port, &e.dest));
    }
    if sc.uses(3) {
        let hits = &e.intel;
        v.0[3] = Some(map([
            ("matched", Value::Bool(!hits.is_empty())),
            ("count", Value::Int(hits.len() as i64)),
            ("max_confidence", Value::Int(hits.iter().map(|h| h.confidence as i64).max().unwrap_or(0))),
            ("feeds", uniq(hits.iter().map(|h| h.feed.strip_prefix("intel:").unwrap_or(&h.feed).to_string()))),
            ("types", uniq(hits.iter().map(|h| h.kind.as_str().to_string()))),
            ("indicators", uniq(hits.iter().map(|h| h.indicator.to_string()))),
            ("fields", uniq(hits.iter().map(|h| h.field.to_string()))),
        ]));
    }
    if sc.uses(4) {
        let h = e.history.clone().unwrap_or_default();
        let count = |name: &str| h.verdicts.iter().filter(|v| v.verdict == name).count() as i64;
        v.0[4] = Some(map([
            ("signature_24h", Value::Int(h.signature.last_24h as i64)),
            ("signature_7d", Value::Int(h.signature.last_7d as i64)),
            ("src_24h", Value::Int(h.src.last_24h as i64)),
            ("src_7d", Value::Int(h.src.last_7d as i64)),
            ("dest_24h", Value::Int(h.dest.last_24h as i64)),
            ("dest_7d", Value::Int(h.dest.last_7d as i64)),
            ("pair_24h", Value::Int(h.pair.last_24h as i64)),
            ("pair_7d", Value::Int(h.pair.last_7d as i64)),
            ("first_signature", Value::Bool(h.signature.first_time)),
            ("first_src", Value::Bool(h.src.first_time)),
            ("first_dest", Value::Bool(h.dest.first_time)),
            ("first_pair", Value::Bool(h.pair.first_time)),
            ("verdicts", list(h.verdicts.iter().map(|x| s(&x.verdict)))),
            ("false_positives", Value::Int(count("false_positive"))),
            ("true_positives", Value::Int(count("true_positive"))),
        ]));
    }
    if sc.uses(5) {
        v.0[5] = Some(map([("count", Value::Int(d.incidents.len() as i64)), ("ids", list(d.incidents.iter().map(|x| s(x))))]));
    }
    if sc.uses(6) {
        let of = |kind: ContextKind, slot: usize| uniq(around.iter().filter(|c| c.kind == kind).filter_map(|c| c.text[slot]).map(str::to_string));
        let hashes = uniq(around.iter().filter(|c| c.kind == ContextKind::FileInfo).flat_map(|c| [c.text[1], c.text[2], c.text[4]]).flatten().map(str::to_string));
        v.0[6] = Some(map([
            ("dns", of(ContextKind::Dns, 0)),
            ("http_hosts", of(ContextKind::Http, 0)),
            ("urls", of(ContextKind::Http, 1)),
            ("tls_sni", of(ContextKind::Tls, 0)),
            ("ja3", of(ContextKind::Tls, 2)),
            ("ja4", of(ContextKind::Tls, 3)),
            ("files", of(ContextKind::FileInfo, 0)),
            ("file_hashes", hashes),
            ("anomalies", Value::Int(around.iter().filter(|c| c.kind == ContextKind::Anomaly).count() as i64)),
        ]));
    }
    v
}
