//! The event model: one typed view per input line and the columnar batch that carries
//! events between stages.
//!
//! * [`EventView`] holds the hot fields of one event, borrowed from the parser's scratch
//!   buffer; it lives only while the parser builds its batch (no per-event allocation).
//! * [`EventBatch`] is the unit that flows between stages: an Arrow `RecordBatch` in the
//!   public `events` schema (see README "Archive schema"), plus the hour bucket of each row.
//!   Later stages add annotation columns; the raw line travels with every row so the
//!   archive keeps what the parser did not type.

pub mod alert;
pub mod batch;
pub mod budget;
pub mod chain;
pub mod delta;
pub mod enriched;
pub mod handoff;
pub mod json;
pub mod members;
pub mod position;
pub mod prefix;
pub mod reject;
#[cfg(test)]
pub mod rng;
pub mod scored;
pub mod stats;
pub mod thread;
pub mod time;
pub mod triage;

pub use batch::{events_schema, EventBatch, EventBatchBuilder};

/// A string-or-number field (EVE `proto` is a name, or a number for unknown protocols).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum StrOrInt<'a> {
    #[default]
    Absent,
    Str(&'a str),
    Int(i64),
}

/// The `alert` object's hot fields.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AlertView<'a> {
    pub gid: Option<i64>,
    pub signature_id: Option<i64>,
    pub rev: Option<i64>,
    pub signature: Option<&'a str>,
    pub category: Option<&'a str>,
    pub severity: Option<i32>,
    pub action: Option<&'a str>,
}

/// Syslog header fields of an event that arrived as a syslog message.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyslogView<'a> {
    pub facility: u8,
    pub severity: u8,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    /// Structured data as a JSON object text.
    pub structured_data: Option<&'a str>,
    /// The message text of a `syslog` event. Messages decoded into EVE or alert events
    /// leave this empty: `raw` holds them.
    pub message: Option<&'a str>,
}

/// The typed hot fields of one event. `None` means absent, null or of the wrong type.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct EventView<'a> {
    /// Event time in µs UTC; `None` when the sensor wrote `"ts-error"`.
    pub timestamp_us: Option<i64>,
    pub event_type: Option<&'a str>,
    /// EVE `host` (the sensor name), when the sensor writes one.
    pub host: Option<&'a str>,
    pub in_iface: Option<&'a str>,
    pub src_ip: Option<&'a str>,
    pub src_port: Option<i32>,
    pub dest_ip: Option<&'a str>,
    pub dest_port: Option<i32>,
    pub proto: StrOrInt<'a>,
    pub app_proto: Option<&'a str>,
    pub flow_id: Option<i64>,
    pub community_id: Option<&'a str>,
    pub alert: Option<AlertView<'a>>,
    pub syslog: Option<SyslogView<'a>>,
    /// What a flow, dns, http, tls, fileinfo or anomaly event says about its flow (the
    /// state stage's flow context); not an archive column.
    pub context: Option<ContextView<'a>>,
}

/// The kinds of events that describe the traffic around an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    Dns,
    Http,
    Tls,
    FileInfo,
    Flow,
    Anomaly,
}

impl ContextKind {
    pub const ALL: [ContextKind; 6] = [ContextKind::Dns, ContextKind::Http, ContextKind::Tls, ContextKind::FileInfo, ContextKind::Flow, ContextKind::Anomaly];

    /// The EVE `event_type` (and object key) of the kind.
    pub fn event_type(self) -> &'static str {
        match self {
            ContextKind::Dns => "dns",
            ContextKind::Http => "http",
            ContextKind::Tls => "tls",
            ContextKind::FileInfo => "fileinfo",
            ContextKind::Flow => "flow",
            ContextKind::Anomaly => "anomaly",
        }
    }

    pub fn from_event_type(s: &str) -> Option<ContextKind> {
        ContextKind::ALL.into_iter().find(|k| k.event_type() == s)
    }

    /// The names of the text and number slots of a [`ContextView`] of this kind.
    pub fn slots(self) -> ([&'static str; 5], [&'static str; 4]) {
        match self {
            ContextKind::Dns => (["rrname", "rrtype", "type", "rcode", "answer"], ["", "", "", ""]),
            ContextKind::Http => (["hostname", "url", "method", "user_agent", ""], ["status", "length", "", ""]),
            ContextKind::Tls => (["sni", "version", "ja3", "ja4", ""], ["", "", "", ""]),
            ContextKind::FileInfo => (["filename", "sha256", "md5", "magic", "sha1"], ["size", "", "", ""]),
            ContextKind::Flow => (["state", "reason", "", "", ""], ["pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient"]),
            ContextKind::Anomaly => (["type", "event", "layer", "", ""], ["", "", "", ""]),
        }
    }
}

/// The few fields of a context event the state stage summarizes, in the slots
/// [`ContextKind::slots`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextView<'a> {
    pub kind: ContextKind,
    pub text: [Option<&'a str>; 5],
    pub num: [Option<i64>; 4],
}

/// Typed fields whose value can be present but unusable (wrong type or out of range).
/// Such a value becomes null in the archive and is counted per field; the line itself
/// is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Timestamp,
    EventType,
    Host,
    InIface,
    SrcIp,
    SrcPort,
    DestIp,
    DestPort,
    Proto,
    AppProto,
    FlowId,
    CommunityId,
    Alert,
    AlertGid,
    AlertSignatureId,
    AlertRev,
    AlertSignature,
    AlertCategory,
    AlertSeverity,
    AlertAction,
}

impl Field {
    pub const COUNT: usize = 20;
    pub const ALL: [Field; Field::COUNT] = [
        Field::Timestamp,
        Field::EventType,
        Field::Host,
        Field::InIface,
        Field::SrcIp,
        Field::SrcPort,
        Field::DestIp,
        Field::DestPort,
        Field::Proto,
        Field::AppProto,
        Field::FlowId,
        Field::CommunityId,
        Field::Alert,
        Field::AlertGid,
        Field::AlertSignatureId,
        Field::AlertRev,
        Field::AlertSignature,
        Field::AlertCategory,
        Field::AlertSeverity,
        Field::AlertAction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Timestamp => "timestamp",
            Field::EventType => "event_type",
            Field::Host => "host",
            Field::InIface => "in_iface",
            Field::SrcIp => "src_ip",
            Field::SrcPort => "src_port",
            Field::DestIp => "dest_ip",
            Field::DestPort => "dest_port",
            Field::Proto => "proto",
            Field::AppProto => "app_proto",
            Field::FlowId => "flow_id",
            Field::CommunityId => "community_id",
            Field::Alert => "alert",
            Field::AlertGid => "alert.gid",
            Field::AlertSignatureId => "alert.signature_id",
            Field::AlertRev => "alert.rev",
            Field::AlertSignature => "alert.signature",
            Field::AlertCategory => "alert.category",
            Field::AlertSeverity => "alert.severity",
            Field::AlertAction => "alert.action",
        }
    }
}
