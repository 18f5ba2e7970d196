//! An entity incident as the `incidents` table and the analyst's queue show it: its
//! members, the stages and behaviours seen, and the host's story in one line.

use super::{Entity, TriageChange, RULE};
use crate::event::alert::{IncidentEvent, Status, MAX_MEMBERS};

pub(super) fn change(entity: &str, e: &mut Entity, at: usize, status: Status) -> TriageChange {
    let o = &mut e.incidents[at];
    let ids: Vec<String> = o.new_ids.drain(..).take(MAX_MEMBERS).collect();
    let stages: Vec<serde_json::Value> =
        e.stage_first.iter().map(|(s, t)| serde_json::json!({"stage": s.as_str(), "first": crate::event::time::iso(*t)})).collect();
    let sigs: Vec<serde_json::Value> = o.sigs.iter().map(|(id, name, n)| serde_json::json!({"signature_id": id, "signature": name, "alerts": n})).collect();
    let behaviours: Vec<serde_json::Value> = e.behaviours.iter().map(|(k, t, _, _)| serde_json::json!({"kind": k, "text": t})).collect();
    let mut story = entity.to_string();
    if let Some(a) = &e.asset {
        story.push_str(&format!(" [{a}]"));
    }
    story.push_str(&format!(": risk {:.0}", e.risk));
    if !e.stage_first.is_empty() {
        // Times of day (the incident's first_seen holds the date).
        let st: Vec<String> = e.stage_first.iter().map(|(s, t)| format!("{} {}", s.as_str(), crate::event::time::iso(*t).get(11..19).unwrap_or(""))).collect();
        story.push_str(&format!("; stages {}", st.join(" → ")));
    }
    for (_, t, _, _) in &e.behaviours {
        story.push_str(&format!("; {t}"));
    }
    let top: Vec<String> = {
        let mut s = o.sigs.clone();
        s.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        s.iter().take(3).map(|(_, n, c)| format!("{n} ×{c}")).collect()
    };
    if !top.is_empty() {
        story.push_str(&format!("; signatures {}", top.join(", ")));
    }
    let context = serde_json::json!({
        "entity": entity,
        "asset": e.asset,
        "risk": (e.risk * 10.0).round() / 10.0,
        "stages": stages,
        "behaviours": behaviours,
        "signatures": sigs,
        "peers": o.peers,
        "story": story,
    });
    TriageChange {
        event: IncidentEvent {
            id: o.id.clone(),
            rule: RULE.to_string(),
            group_key: entity.to_string(),
            status,
            first_us: o.first_us,
            last_us: o.last_us,
            alert_count: o.count,
            alert_ids: ids,
            level: None,
        },
        context,
        story,
    }
}
