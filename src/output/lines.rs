//! JSON lines for downstream tools: alerts that go on, late alerts, roll-ups and
//! incident changes, each one object per line with a `type`.

use std::sync::Arc;

use crate::event::alert::{AlertRecord, IncidentEvent, Rollup, LINE_SCHEMA_VERSION as SCHEMA_VERSION};
use crate::event::json::JsonObject;

/// An alert's notification line: `kind`, the alert's fields, what `more` adds, and its
/// flow context.
pub fn alert_line(kind: &str, a: &AlertRecord, context: Option<&str>, more: impl FnOnce(&mut JsonObject<'_>)) -> String {
    let mut line = String::with_capacity(512);
    let mut o = JsonObject::open(&mut line);
    o.str("type", kind);
    o.int("schema_version", SCHEMA_VERSION);
    alert_fields(&mut o, a);
    more(&mut o);
    if let Some(c) = context {
        o.raw("flow_context", c);
    }
    o.close();
    line
}

/// The fields every alert line has.
fn alert_fields(o: &mut JsonObject<'_>, a: &AlertRecord) {
    o.str("alert_id", &a.alert_id);
    o.str("timestamp", &iso(a.ts_us));
    o.str("sensor", &a.sensor);
    o.int("signature_id", a.signature_id);
    o.str("signature", &a.signature);
    o.str("category", &a.category);
    o.int("severity", a.severity as i64);
    o.str("src_ip", &a.src_ip);
    o.opt_int("src_port", a.src_port.map(i64::from));
    o.str("dest_ip", &a.dest_ip);
    o.opt_int("dest_port", a.dest_port.map(i64::from));
    o.str("proto", &a.proto);
    o.opt_int("flow_id", a.flow_id);
    if !a.community_id.is_empty() {
        o.str("community_id", &a.community_id);
    }
    if !a.app_proto.is_empty() {
        o.str("app_proto", &a.app_proto);
    }
    if !a.action.is_empty() {
        o.str("action", &a.action);
    }
    o.opt_int("gid", a.gid);
    o.opt_int("rev", a.rev);
}

pub use crate::event::time::iso;

/// An alert's enrichment and score as JSON texts (for its line and its row).
#[derive(Debug, Default)]
pub struct Rendered {
    pub intel: Option<String>,
    pub enrichment: Option<String>,
    pub score: Option<(i32, &'static str)>,
    pub reasons: Option<String>,
    pub recommendations: Option<String>,
    pub versions: Option<Arc<[Arc<str>]>>,
}

impl Rendered {
    pub fn write(&self, o: &mut JsonObject<'_>) {
        if let Some((s, p)) = self.score {
            o.int("score", s as i64);
            o.str("priority", p);
        }
        for (k, v) in [("reasons", &self.reasons), ("recommendations", &self.recommendations), ("intel", &self.intel), ("enrichment", &self.enrichment)] {
            if let Some(v) = v {
                o.raw(k, v);
            }
        }
        if let Some(v) = &self.versions {
            if !v.is_empty() {
                o.strs("source_versions", v);
            }
        }
    }
}

/// An alert that goes on (first of its key, or escalated): `type` `alert`.
pub fn alert(a: &AlertRecord, context: Option<&str>, key: &str, count: u64, decision: &str, incidents: &[String], r: &Rendered) -> String {
    alert_line("alert", a, context, |o| {
        o.str("dedup_key", key);
        o.int("dedup_count", count as i64);
        o.str("decision", decision);
        o.strs("incident_ids", incidents);
        r.write(o);
    })
}

/// A late alert kept out of dedup by the `late_output` policy: `type` `late_alert`.
pub fn late_alert(a: &AlertRecord, context: Option<&str>, incidents: &[String], r: &Rendered) -> String {
    alert_line("late_alert", a, context, |o| {
        o.strs("incident_ids", incidents);
        r.write(o);
    })
}

/// "Still happening": the repeats of a dedup key since its last roll-up, with the
/// signature and priority of the key's alert line when they are known.
pub fn rollup(r: &Rollup, signature: Option<&str>, priority: Option<&str>) -> String {
    serde_json::json!({
        "type": "rollup", "schema_version": SCHEMA_VERSION, "dedup_key": r.key, "first_seen": iso(r.first_us), "last_seen": iso(r.last_us),
        "count": r.count, "suppressed": r.suppressed, "dest_ports": r.dest_ports, "sensors": r.sensors, "reason": r.reason,
        "signature_id": r.signature_id, "signature": signature, "severity": r.severity, "priority": priority,
    })
    .to_string()
}

/// An incident's score as its row and line carry it.
#[derive(Debug, Clone, Default)]
pub struct IncidentScoreText {
    pub score: Option<i32>,
    pub priority: Option<&'static str>,
    /// JSON lists (see `event::scored`).
    pub reasons: Option<String>,
    pub recommendations: Option<String>,
}

/// One incident change: `type` `incident`.
pub fn incident(c: &IncidentEvent, context: &serde_json::Value, s: &IncidentScoreText) -> String {
    let parse = |t: &Option<String>| t.as_deref().map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap_or_default());
    serde_json::json!({
        "type": "incident", "schema_version": SCHEMA_VERSION, "incident_id": c.id, "rule": c.rule, "group_key": c.group_key, "status": c.status.as_str(),
        "first_seen": iso(c.first_us), "last_seen": iso(c.last_us), "alert_count": c.alert_count, "alert_ids": c.alert_ids, "context": context,
        "score": s.score, "priority": s.priority,
        "reasons": parse(&s.reasons),
        "recommendations": parse(&s.recommendations),
    })
    .to_string()
}

/// The final picture of a flow that raised alerts, when it ends: `type` `flow_context`.
pub fn flow_context(flow_id: i64, alert_ids: &[String], summary: &str) -> String {
    let mut line = String::with_capacity(256 + summary.len());
    let mut o = JsonObject::open(&mut line);
    o.str("type", "flow_context");
    o.int("schema_version", SCHEMA_VERSION);
    o.int("flow_id", flow_id);
    o.strs("alert_ids", alert_ids);
    o.raw("flow_context", summary);
    o.close();
    line
}
