//! Saved queries: what an analyst asks every day, by name (`alertflow query top-signatures`).
//! A `{param}` is filled from `--set param=value`; values are restricted to the characters
//! of addresses, numbers and names, so a value cannot change the statement.

pub struct Saved {
    pub name: &'static str,
    pub about: &'static str,
    pub sql: &'static str,
    /// Parameters the statement needs.
    pub params: &'static [&'static str],
}

pub const ALL: &[Saved] = &[
    Saved {
        name: "top-signatures",
        about: "signatures by alerts, with hosts and the first and last time seen",
        sql: "SELECT alert_signature_id AS signature_id, alert_signature AS signature, count(*) AS alerts, \
              count(DISTINCT src_ip) AS sources, count(DISTINCT dest_ip) AS destinations, \
              min(timestamp) AS first_seen, max(timestamp) AS last_seen \
              FROM alerts GROUP BY alert_signature_id, alert_signature ORDER BY alerts DESC, signature_id LIMIT 20",
        params: &[],
    },
    Saved {
        name: "top-talkers",
        about: "addresses by events they sent, with the alerts among them",
        sql: "SELECT src_ip, count(*) AS events, sum(CASE WHEN event_type = 'alert' THEN 1 ELSE 0 END) AS alerts, \
              count(DISTINCT dest_ip) AS peers FROM events WHERE src_ip IS NOT NULL \
              GROUP BY src_ip ORDER BY events DESC, src_ip LIMIT 20",
        params: &[],
    },
    Saved {
        name: "alerts-by-priority",
        about: "alerts per hour and priority",
        sql: "SELECT date, hour, coalesce(priority, 'unscored') AS priority, count(*) AS alerts FROM alerts \
              GROUP BY date, hour, coalesce(priority, 'unscored') ORDER BY date, hour, priority",
        params: &[],
    },
    Saved {
        name: "incidents",
        about: "each incident's latest state, with its score, reasons and alert count",
        sql: "SELECT incident_id, rule, group_key, status, first_seen, last_seen, alert_count, score, priority, reasons FROM incidents_now \
              ORDER BY score DESC NULLS LAST, last_seen DESC",
        params: &[],
    },
    Saved {
        name: "incident-alerts",
        about: "the alerts of one incident (--set incident=ID)",
        sql: "SELECT a.timestamp, a.alert_id, a.alert_signature AS signature, a.src_ip, a.dest_ip, a.dest_port, a.score, a.priority, a.reasons \
              FROM incident_members m JOIN alerts a ON a.alert_id = m.alert_id WHERE m.incident_id = '{incident}' ORDER BY a.timestamp, a.alert_id",
        params: &["incident"],
    },
    Saved {
        name: "flow",
        about: "every event of one flow (--set flow_id=N)",
        sql: "SELECT timestamp, event_type, src_ip, src_port, dest_ip, dest_port, proto, app_proto, alert_signature, raw \
              FROM events WHERE flow_id = {flow_id} ORDER BY timestamp",
        params: &["flow_id"],
    },
    Saved {
        name: "host",
        about: "one host's events by type and peer (--set host=IP; add --since 24h for its last day)",
        sql: "SELECT event_type, CASE WHEN src_ip = '{host}' THEN dest_ip ELSE src_ip END AS peer, count(*) AS events, \
              min(timestamp) AS first_seen, max(timestamp) AS last_seen FROM events \
              WHERE src_ip = '{host}' OR dest_ip = '{host}' GROUP BY 1, 2 ORDER BY events DESC LIMIT 100",
        params: &["host"],
    },
];

pub fn find(name: &str) -> Option<&'static Saved> {
    ALL.iter().find(|s| s.name == name)
}

/// The statement with its parameters filled, or what is wrong.
pub fn fill(s: &Saved, set: &[(String, String)]) -> Result<String, String> {
    let mut sql = s.sql.to_string();
    for p in s.params {
        let Some((_, v)) = set.iter().find(|(k, _)| k == p) else {
            return Err(format!("query `{}` needs --set {p}=VALUE", s.name));
        };
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || ".:-_".contains(c)) {
            return Err(format!("`{v}` is not a value for {p} (letters, digits and . : - _ only)"));
        }
        sql = sql.replace(&format!("{{{p}}}"), v);
    }
    if let Some((k, _)) = set.iter().find(|(k, _)| !s.params.contains(&k.as_str())) {
        return Err(format!("query `{}` has no parameter `{k}`", s.name));
    }
    Ok(sql)
}
