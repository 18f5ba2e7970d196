//! Matching traffic against indicator sets: the values an event offers (addresses, DNS
//! names, HTTP hosts and URLs, TLS SNI and fingerprints, file hashes), every feed's
//! indicator they hit, and the `intel_alert` line of an event that raised no alert.

use std::net::IpAddr;

use crate::event::json::JsonObject;
use crate::event::{ContextKind, ContextView};

use super::intel::{IndicatorSet, Probe};
use super::{IntelHit, Version};

/// What an event that is not an alert offers for matching: its addresses and, for dns,
/// http, tls and fileinfo, its names and hashes.
pub fn event_probes<'a>(src: Option<&'a str>, dest: Option<&'a str>, c: Option<&ContextView<'a>>) -> Vec<(&'static str, Probe<'a>, &'a str)> {
    let mut probes = Vec::with_capacity(6);
    for (field, ip) in [("src_ip", src), ("dest_ip", dest)] {
        if let Some(text) = ip.filter(|t| !t.is_empty()) {
            if let Ok(a) = text.parse() {
                probes.push((field, Probe::Ip(a), text));
            }
        }
    }
    if let Some(c) = c {
        context_probes(c, &mut probes);
    }
    probes
}

/// Every feed's indicator each probe matches, once per feed, indicator and field.
pub fn match_feeds<'s>(feeds: impl Iterator<Item = (&'s Version, &'s IndicatorSet)>, probes: &[(&'static str, Probe<'_>, &str)]) -> Vec<IntelHit> {
    let mut hits: Vec<IntelHit> = Vec::new();
    for (version, set) in feeds {
        for (field, p, value) in probes {
            let Some(i) = set.lookup(*p) else { continue };
            let ind = set.indicator(i);
            if hits.iter().any(|h| &*h.indicator == ind.value && *h.feed == *version.name && h.field == *field) {
                continue;
            }
            hits.push(IntelHit {
                feed: version.name.as_str().into(),
                feed_version: version.label.clone(),
                indicator: ind.value.into(),
                kind: ind.kind,
                field,
                value: (*value).into(),
                confidence: ind.confidence,
                description: ind.description.map(Into::into),
            });
        }
    }
    hits
}

/// An `intel_alert` line: indicators in an event that raised no alert (`origin`: `live`
/// or `retro-hunt`), with the event's own time; `more` adds fields.
#[allow(clippy::too_many_arguments)]
pub fn intel_alert_line(
    origin: &str,
    ts_us: Option<i64>,
    event_type: &str,
    sensor: Option<&str>,
    src: Option<&str>,
    dest: Option<&str>,
    flow_id: Option<i64>,
    matches: &str,
    more: impl FnOnce(&mut JsonObject<'_>),
) -> String {
    let mut line = String::with_capacity(256 + matches.len());
    let mut o = JsonObject::open(&mut line);
    o.str("type", "intel_alert");
    o.int("schema_version", crate::event::alert::LINE_SCHEMA_VERSION);
    o.str("origin", origin);
    if let Some(t) = ts_us.and_then(|t| jiff::Timestamp::from_microsecond(t).ok()) {
        o.str("timestamp", &t.to_string());
    }
    o.str("event_type", event_type);
    if let Some(s) = sensor {
        o.str("sensor", s);
    }
    o.str("src_ip", src.unwrap_or(""));
    o.str("dest_ip", dest.unwrap_or(""));
    o.opt_int("flow_id", flow_id);
    o.raw("matches", matches);
    more(&mut o);
    o.close();
    line
}

/// The values of a context event that indicators are matched against.
pub fn context_probes<'a>(c: &ContextView<'a>, probes: &mut Vec<(&'static str, Probe<'a>, &'a str)>) {
    let t = |i: usize| c.text[i].filter(|s| !s.is_empty());
    match c.kind {
        ContextKind::Dns => {
            if let Some(n) = t(0) {
                probes.push(("dns.rrname", Probe::Domain(n), n));
            }
            if let Some(ans) = t(4) {
                match ans.parse::<IpAddr>() {
                    Ok(ip) => probes.push(("dns.answer", Probe::Ip(ip), ans)),
                    Err(_) => probes.push(("dns.answer", Probe::Domain(ans), ans)),
                }
            }
        }
        ContextKind::Http => {
            if let Some(h) = t(0) {
                probes.push(("http.hostname", Probe::Domain(h), h));
            }
            if let Some(u) = t(1) {
                probes.push(("http.url", Probe::Url(t(0), u), u));
            }
        }
        ContextKind::Tls => {
            if let Some(s) = t(0) {
                probes.push(("tls.sni", Probe::Sni(s), s));
            }
            if let Some(h) = t(2) {
                probes.push(("tls.ja3", Probe::Ja3(h), h));
            }
            if let Some(h) = t(3) {
                probes.push(("tls.ja4", Probe::Ja4(h), h));
            }
        }
        ContextKind::FileInfo => {
            if let Some(h) = t(1) {
                probes.push(("fileinfo.sha256", Probe::Hash(h), h));
            }
            if let Some(h) = t(2) {
                probes.push(("fileinfo.md5", Probe::Hash(h), h));
            }
            if let Some(h) = t(4) {
                probes.push(("fileinfo.sha1", Probe::Hash(h), h));
            }
        }
        ContextKind::Flow | ContextKind::Anomaly => {}
    }
}
