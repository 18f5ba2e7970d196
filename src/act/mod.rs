//! Actions: what alertflow does about what it decided.
//!
//! Triggers ([`trigger`]) pick the alert and incident lines of the alert path that call for
//! an action; each pick becomes an outbox entry with an idempotency key (subject, event,
//! trigger, action), appended to a hash-chained journal ([`journal`]) and fsynced before
//! the archive commit that holds its alerts; the outbox thread ([`outbox`]) delivers it at
//! once — webhooks ([`webhook`], guarded by [`guard`]), response scripts ([`exec`]), JSONL
//! streams — with rate limits, retries with backoff and jitter, a circuit breaker per
//! destination and dead letters. A restart re-reads the journal: what was queued and not
//! delivered goes out, and the decisions the restart makes again (from the events after the
//! newest commit) find their keys already queued, so no second notification goes out.

pub mod email;
pub mod exec;
pub mod guard;
pub mod journal;
pub mod outbox;
pub mod template;
pub mod trigger;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

/// A secret read from the environment or a file: never shown by `Debug`, logs or records.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The body a webhook sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"schema":"alertflow.action/1", "id", "key", "trigger", "event", "timestamp", "data": <line>}`.
    Generic,
    Slack,
    Mattermost,
    /// Microsoft Teams (Workflows): an Adaptive Card message.
    Teams,
    /// PagerDuty Events API v2: trigger on open, resolve on close; dedup key = subject.
    PagerDuty,
}

impl Format {
    pub const NAMES: &'static str = "generic, slack, mattermost, teams, pagerduty";

    pub fn from_name(s: &str) -> Option<Format> {
        Some(match s {
            "generic" => Format::Generic,
            "slack" => Format::Slack,
            "mattermost" => Format::Mattermost,
            "teams" => Format::Teams,
            "pagerduty" => Format::PagerDuty,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub format: Format,
    /// Standard Webhooks signing secret (`whsec_` + base64, or raw bytes).
    pub secret: Option<Secret>,
    /// PagerDuty's integration key.
    pub routing_key: Option<Secret>,
    /// Fixed request headers (values may be secrets).
    pub headers: Vec<(String, Secret)>,
    /// Networks a webhook may reach although private, loopback or link-local.
    pub allow: Vec<(std::net::IpAddr, u8)>,
    /// The message text of chat and paging formats (a template, see [`template`]).
    pub text: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Program and arguments; each argument is a template substituted once.
    pub argv: Vec<String>,
    /// Environment variables passed through from alertflow's own (all others cleared).
    pub env: Vec<String>,
}

/// How a Redis destination hands over the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// `RPUSH key envelope`.
    List,
    /// `XADD key [MAXLEN ~ n] * id <id> envelope <json>`.
    Stream,
    /// `PUBLISH key envelope` (receivers that are not subscribed miss it).
    Publish,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (a password belongs in `url_env`).
    pub url: Secret,
    pub mode: RedisMode,
    pub key: String,
    /// Streams are trimmed to about this many entries (0: never).
    pub maxlen: u64,
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    Starttls,
    /// Plain text: only for a relay on a trusted network or loopback.
    None,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
    /// Templates.
    pub subject: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Webhook(WebhookConfig),
    Exec(ExecConfig),
    /// Appends the generic envelope as one line per action (the scored stream for
    /// downstream tools).
    Jsonl(PathBuf),
    /// The envelope to a Redis list, stream or channel.
    Redis(RedisConfig),
    Email(EmailConfig),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Webhook(_) => "webhook",
            Kind::Exec(_) => "exec",
            Kind::Jsonl(_) => "jsonl",
            Kind::Redis(_) => "redis",
            Kind::Email(_) => "email",
        }
    }
}

/// One destination (`[[actions.destinations]]`).
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    pub kind: Kind,
    /// Per attempt (request, or run of a script: then its process group is killed).
    pub timeout: Duration,
    /// Attempts before the entry becomes a dead letter.
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// At most this many deliveries a minute (0: no limit); more wait their turn.
    pub rate_per_minute: u32,
    /// A template: deliveries with the same value wait `per_key_interval` after each other
    /// (e.g. one block per address an hour).
    pub per_key: Option<String>,
    pub per_key_interval: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Destination {
    pub fn new(name: &str, kind: Kind) -> Self {
        Destination {
            name: name.to_string(),
            kind,
            timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            rate_per_minute: 0,
            per_key: None,
            per_key_interval: Duration::from_secs(3600),
            concurrency: 2,
        }
    }
}

/// What a trigger fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum On {
    Alert,
    IncidentOpened,
    IncidentUpdated,
    /// An update that raised the incident's priority above any it had.
    IncidentEscalated,
    IncidentClosed,
    /// A trigger's digest: what it picked during `digest_minutes` (not a trigger event).
    Digest,
}

impl On {
    pub const NAMES: &'static str = "alert, incident_opened, incident_updated, incident_escalated, incident_closed";

    pub fn from_name(s: &str) -> Option<On> {
        Some(match s {
            "alert" => On::Alert,
            "incident_opened" => On::IncidentOpened,
            "incident_updated" => On::IncidentUpdated,
            "incident_escalated" => On::IncidentEscalated,
            "incident_closed" => On::IncidentClosed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            On::Alert => "alert",
            On::IncidentOpened => "incident_opened",
            On::IncidentUpdated => "incident_updated",
            On::IncidentEscalated => "incident_escalated",
            On::IncidentClosed => "incident_closed",
            On::Digest => "digest",
        }
    }
}

/// One trigger (`[[actions.triggers]]`).
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    pub name: String,
    pub on: Vec<On>,
    /// Least priority rank (0 info … 4 critical); `None`: any.
    pub min_priority: Option<u8>,
    /// Incident rules (empty: any).
    pub rules: Vec<String>,
    /// A CEL condition over the line (`event`), e.g. `event.src_ip.startsWith("10.")`.
    pub when: Option<String>,
    /// Destination names.
    pub actions: Vec<String>,
    /// Event time between two firings with the same cool-down key.
    pub cooldown: Duration,
    /// A template; `None`: the subject (alert or incident id).
    pub cooldown_key: Option<String>,
    /// Zero: each pick goes out at once. Otherwise picks are held and sent as one digest
    /// per destination every this long.
    pub digest: Duration,
}

/// `[actions]`.
#[derive(Debug, Clone)]
pub struct ActionsConfig {
    pub destinations: Vec<Destination>,
    pub triggers: Vec<TriggerConfig>,
    /// Entries waiting at most; more are dropped (recorded and counted).
    pub queue_max: usize,
    /// Idempotency keys remembered (the oldest are forgotten first).
    pub remember_keys: usize,
    /// Consecutive failures that open a destination's circuit, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    /// At shutdown, how long to wait for the queue to empty (the rest goes out after the
    /// next start).
    pub drain: Duration,
}

impl Default for ActionsConfig {
    fn default() -> Self {
        ActionsConfig {
            destinations: Vec::new(),
            triggers: Vec::new(),
            queue_max: 10_000,
            remember_keys: 1_000_000,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(30),
            drain: Duration::from_secs(10),
        }
    }
}

impl ActionsConfig {
    /// Anything to do.
    pub fn active(&self) -> bool {
        !self.triggers.is_empty() && !self.destinations.is_empty()
    }
}

/// Priority names by rank.
pub const PRIORITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

pub fn priority_rank(p: &str) -> Option<u8> {
    PRIORITIES.iter().position(|x| *x == p).map(|i| i as u8)
}

/// One delivery attempt of an outbox entry.
#[derive(Debug, Clone)]
pub struct Job {
    /// The entry's sequence number in the journal.
    pub entry: u64,
    /// The receivers' idempotency id (`webhook-id`): the same on every retry and restart.
    pub id: String,
    pub key: String,
    pub trigger: String,
    pub on: On,
    /// 1 for the first.
    pub attempt: u32,
    /// The alert or incident line.
    pub data: std::sync::Arc<serde_json::Value>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done: what the receiver said (status, exit code, output).
    Delivered(String),
    /// Try again later (no sooner than `after` when the receiver said so).
    Retry { error: String, after: Option<Duration> },
    /// Trying again cannot help (refused address, 4xx, 410 Gone, bad argument).
    Failed(String),
}

/// The versioned JSON every generic webhook and JSONL destination receives.
pub fn envelope(j: &Job) -> serde_json::Value {
    let ts = j.data.get("last_seen").or_else(|| j.data.get("timestamp")).cloned().unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "schema": "alertflow.action/1",
        "id": j.id,
        "key": j.key,
        "trigger": j.trigger,
        "event": j.on.as_str(),
        "timestamp": ts,
        "data": &*j.data,
    })
}

/// The idempotency id of a key: `msg_` and 32 hex digits.
pub fn id_of(key: &str) -> String {
    let h = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
    format!("msg_{h:032x}")
}
