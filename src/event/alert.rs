//! The alert model: the fields of an alert that the alert path looks at, what dedup
//! decided about it, roll-ups of its repeats, and incident changes. Produced by the state
//! stage, read by enrichment, scoring, the outputs and the archive's tables.

use std::sync::Arc;

/// `schema_version` of every line written to `state.output` (alerts, roll-ups, incident
/// changes, flow contexts, intel alerts). Fields may be added within a version; a
/// removal or a change of meaning makes a new one. See README, "Lines for downstream tools".
pub const LINE_SCHEMA_VERSION: i64 = 1;

/// The fields of an alert that dedup and correlation look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRecord {
    /// Stable id of the alert (see [`alert_id`]).
    pub alert_id: String,
    pub ts_us: i64,
    pub sensor: String,
    pub signature_id: i64,
    pub signature: String,
    pub category: String,
    /// Suricata severity: 1 is the most severe.
    pub severity: i32,
    pub src_ip: String,
    pub src_port: Option<i32>,
    pub dest_ip: String,
    pub dest_port: Option<i32>,
    pub proto: String,
    pub flow_id: Option<i64>,
    /// The flow's Community ID and application protocol, as the sensor wrote them ("" when not).
    pub community_id: String,
    pub app_proto: String,
    /// What the sensor did (`allowed`, `blocked`; "" when not written).
    pub action: String,
    /// The rule's generator id and revision.
    pub gid: Option<i64>,
    pub rev: Option<i64>,
    /// The monitored host and what the flow context knew of the alert's flow when it was
    /// correlated; filled only when a correlation rule or the dedup key reads them.
    pub fields: Option<Box<AlertFields>>,
}

/// Fields of an alert beyond its own line: the monitored host (the side of the alert in
/// the home networks) and values from its flow's context events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFields {
    /// The side inside the home networks; the destination when both or neither are.
    pub host: String,
    /// (field, value) pairs, a field possibly more than once (several DNS queries on a
    /// flow), in the order the flow saw them. Fields are named as in
    /// `state::KeyField::NAMES` (`dns_query`, `tls_sni`, `flow_bytes_toserver`, …).
    pub values: Vec<(&'static str, Box<str>)>,
}

impl AlertFields {
    /// Every value of `field`.
    pub fn all<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values.iter().filter(move |(f, _)| *f == field).map(|(_, v)| &**v)
    }

    /// The first value of `field`.
    pub fn first<'a>(&'a self, field: &'a str) -> Option<&'a str> {
        self.all(field).next()
    }
}

/// A stable id for an alert: 16 hex digits of xxh3 over its source and raw line.
pub fn alert_id(source: &str, raw: &str) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(source.as_bytes());
    h.update(&[0]);
    h.update(raw.as_bytes());
    let mut id = String::with_capacity(16);
    crate::event::json::push_hex(&mut id, &h.digest().to_be_bytes());
    id
}

/// What happened to one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The first alert of its key in the window: goes on.
    First { key: Arc<str> },
    /// More severe than what its key had: goes on, suppression broken.
    Escalated { key: Arc<str>, count: u64 },
    /// A repeat: held back and counted (`count` alerts of this key so far).
    Suppressed { key: Arc<str>, count: u64 },
}

/// "Still happening": the repeats of a key since the last roll-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    pub key: String,
    pub first_us: i64,
    pub last_us: i64,
    /// All alerts of the key in this window.
    pub count: u64,
    /// Repeats suppressed since the previous roll-up.
    pub suppressed: u64,
    /// The signature of the key's first alert, and the most severe severity among its alerts.
    pub signature_id: i64,
    pub severity: i32,
    pub dest_ports: Vec<i32>,
    pub sensors: Vec<String>,
    /// Why this roll-up was emitted: `interval`, `expired`, `evicted`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Updated,
    Closed,
    /// A late alert joined an incident after it closed (re-evaluation).
    Corrected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Updated => "updated",
            Status::Closed => "closed",
            Status::Corrected => "corrected",
        }
    }
}

/// One incident state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentEvent {
    pub id: String,
    pub rule: String,
    pub group_key: String,
    pub status: Status,
    pub first_us: i64,
    pub last_us: i64,
    pub alert_count: u64,
    /// Alerts that joined with this change (at most [`MAX_MEMBERS`]): the window's alerts
    /// when it opens, those that joined since the previous change on an update or close.
    pub alert_ids: Vec<String>,
    /// The rule's own level (0 informational … 4 critical): the incident's priority is at
    /// least this.
    pub level: Option<u8>,
}

/// Member ids listed per incident change.
pub const MAX_MEMBERS: usize = 1000;
