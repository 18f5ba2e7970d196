//! Configuration: TOML text → validated [`Config`], with every problem reported at once.
//!
//! The document is parsed into toml's spanned tree, then read section by section; each
//! problem (unknown key, wrong type, value out of range, missing key, duplicate source
//! name) becomes a [`ConfigError`] with its dotted path (`sources[1].overflow`) and line.
//! Nothing stops at the first error. Names carry their unit (`idle_seal_ms`,
//! `segment_max_bytes`). The embedded default (`configs/default.toml`) needs no file.

mod actions;
mod layer;
mod reader;
mod triage;

pub use layer::Origin;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::archive::props::RawCodec;
use crate::archive::{ArchiveConfig, ParquetSettings};
use crate::ingest::file::{FileSourceConfig, StartAt};
use crate::ingest::net::{TcpConfig, TlsConfig, UdpConfig};
use crate::ingest::redis::{RedisConfig, RedisMode};
use crate::ingest::unix::UnixConfig;
use crate::ingest::{Format, Overflow};
use reader::{Cx, Tbl};

/// The embedded default configuration (also `alertflow demo`'s).
pub const DEFAULT_TOML: &str = include_str!("../../configs/default.toml");

/// Starting files for `alertflow config init --profile NAME` (`configs/examples/`): each
/// layers over the defaults and sets what that kind of installation needs.
pub const PROFILES: [(&str, &str); 3] = [
    ("sensor", include_str!("../../configs/examples/sensor.toml")),
    ("syslog-collector", include_str!("../../configs/examples/syslog-collector.toml")),
    ("redis", include_str!("../../configs/examples/redis.toml")),
];

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending key (`archive.zstd_level`, `sources[0].type`); empty
    /// for a syntax error.
    pub path: String,
    /// 1-based line in the file, where known.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.path.is_empty(), self.line) {
            (false, Some(l)) => write!(f, "line {l}: {}: {}", self.path, self.message),
            (false, None) => write!(f, "{}: {}", self.path, self.message),
            (true, Some(l)) => write!(f, "line {l}: {}", self.message),
            (true, None) => write!(f, "{}", self.message),
        }
    }
}

/// All problems of one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} problem{} in the configuration", self.0.len(), if self.0.len() == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Parse worker threads.
    pub parse_workers: usize,
    /// Capacity of each channel, in batches.
    pub channel_batches: usize,
    /// Bytes a source reads at once (about one batch).
    pub read_bytes: usize,
    pub max_line_bytes: usize,
    pub max_json_depth: usize,
    /// Event times that decide partitions (see [`crate::parse::stage::Plausible`]).
    pub plausible: crate::parse::stage::Plausible,
}

#[derive(Debug, Clone)]
pub struct DeadLetterConfig {
    pub path: Option<PathBuf>,
    pub sample_bytes: usize,
    pub max_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `None`: no listener.
    pub listen: Option<SocketAddr>,
    /// `POST /api/query` on the listener (`None`: off, the default).
    pub query_api: Option<QueryApiConfig>,
    /// How often `run` logs its one-line stats (`None`: never).
    pub stats_log: Option<Duration>,
}

/// SQL over the archive for tools, on the operations listener: read-only statements, a
/// bearer token, bounded rows and time.
#[derive(Clone)]
pub struct QueryApiConfig {
    pub token: String,
    pub max_rows: usize,
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for QueryApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryApiConfig").field("token", &"<redacted>").field("max_rows", &self.max_rows).field("timeout", &self.timeout).finish()
    }
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    File(FileSourceConfig),
    Stdin,
    UnixStream(UnixConfig),
    UnixDgram(UnixConfig),
    SyslogUdp(UdpConfig),
    SyslogTcp(TcpConfig),
    Redis(RedisConfig),
}

impl SourceKind {
    /// The `type` a configuration gives this kind of source.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::File(_) => "file",
            SourceKind::Stdin => "stdin",
            SourceKind::UnixStream(_) => "unix_stream",
            SourceKind::UnixDgram(_) => "unix_dgram",
            SourceKind::SyslogUdp(_) => "syslog_udp",
            SourceKind::SyslogTcp(_) => "syslog_tcp",
            SourceKind::Redis(_) => "redis",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    pub overflow: Overflow,
    pub format: Format,
    /// Time zone of dates written without an offset (RFC 3164, fast.log); `None` is UTC.
    pub timezone: Option<jiff::tz::TimeZone>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub pipeline: PipelineConfig,
    pub archive: ArchiveConfig,
    pub dead_letter: DeadLetterConfig,
    pub metrics: MetricsConfig,
    pub state: StateSection,
    pub enrich: crate::enrich::EnrichConfig,
    /// Direction, entity, attack stage, rarity, entity risk and behaviour (needs `[state]`).
    pub triage: crate::triage::TriageConfig,
    /// `[audit]`: the hash-chained trail of every decision (`<archive>/_audit/audit.jsonl`).
    pub audit: AuditConfig,
    /// `[actions]`: triggers, destinations and the outbox (`<archive>/_audit/actions-audit.jsonl`).
    pub actions: crate::act::ActionsConfig,
    /// The compiled `[score]` rules; `None`: alerts are not scored.
    pub scorer: Option<std::sync::Arc<crate::score::Scorer>>,
    pub sources: Vec<SourceConfig>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub enabled: bool,
}

/// `[state]`: dedup and correlation of alerts, and where notifications go.
#[derive(Debug, Clone)]
pub struct StateSection {
    pub engine: crate::state::stage::StateConfig,
    /// JSON lines of alerts that go on, roll-ups and incident changes; `None`: none.
    pub output: Option<PathBuf>,
    /// JSON lines of alerts that came after their windows closed (rules with the
    /// `late_output` policy); `None`: they go to `output`, typed `late_alert`.
    pub late_output: Option<PathBuf>,
    /// What loading the Sigma files warned about (unknown metadata keys, …): logged at
    /// start and shown by check-config.
    pub warnings: Vec<String>,
    /// What a live run does when the alert path falls behind.
    pub overload: Overload,
}

/// `[state.overload]`: when the alert path falls behind a live source, leave low-severity
/// alerts out of it (they are archived as events all the same) instead of slowing the
/// archive down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    pub shed: bool,
    /// Batches waiting for the alert path (of 16) from which severity 3 and lower are left
    /// out; with all 16 waiting, severity 2 too. Severity 1 always goes through.
    pub high_water: usize,
}

impl Config {
    /// The embedded default.
    pub fn embedded_default() -> Config {
        Config::parse(DEFAULT_TOML).expect("the embedded default configuration is valid")
    }

    /// Reads and validates a site file, layered over the embedded default (see
    /// [`Config::parse_site`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::parse_site(&Config::read(path)?)
    }

    /// A file's text, or why it cannot be read.
    pub fn read(path: &Path) -> Result<String, ConfigErrors> {
        std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![ConfigError { path: String::new(), line: None, message: format!("cannot read {}: {e}", path.display()) }]))
    }

    /// A site file: validated alone first (so every problem carries the file's own line),
    /// then layered over the embedded default unless it sets `use_defaults = false`. Tables
    /// merge key by key; named entries (`[[state.rules]]`, `[[score.rules]]`, …) replace
    /// the default of the same name, `disabled = true` removes one, others are appended.
    pub fn parse_site(text: &str) -> Result<Config, ConfigErrors> {
        let own = Config::parse(text)?;
        let Some(merged) = layered(text) else { return Ok(own) };
        let merged = toml::to_string(&merged).map_err(|e| ConfigErrors(vec![ConfigError { path: String::new(), line: None, message: e.to_string() }]))?;
        Config::parse(&merged).map_err(|errs| {
            ConfigErrors(
                errs.0
                    .into_iter()
                    .map(|e| ConfigError { line: None, message: format!("{} (in the file layered over the embedded default)", e.message), ..e })
                    .collect(),
            )
        })
    }

    /// The named rules in force for a site file (`state.rules`, `state.selectors`,
    /// `score.rules`, `score.recommend`, `enrich.intel`), each with where it comes from.
    pub fn rules_in_force(text: &str) -> Vec<(&'static str, String, Origin)> {
        let site: toml::Table = text.parse().unwrap_or_default();
        let default: toml::Table = DEFAULT_TOML.parse().unwrap_or_default();
        let merged = layered(text).unwrap_or_else(|| site.clone());
        let mut out = Vec::new();
        for (label, path) in [
            ("state.selectors", &["state", "selectors"][..]),
            ("state.rules", &["state", "rules"]),
            ("score.rules", &["score", "rules"]),
            ("score.recommend", &["score", "recommend"]),
            ("enrich.intel", &["enrich", "intel"]),
        ] {
            let base = if layer::stands_alone(&site) { toml::Table::new() } else { default.clone() };
            for (name, origin) in layer::named_in_force(&merged, &base, &site, path) {
                out.push((label, name, origin));
            }
        }
        out
    }

    /// Validates a TOML document, returning every problem found.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let doc = match toml::de::DeTable::parse(text) {
            Ok(d) => d,
            Err(e) => {
                let line = e.span().map(|s| reader::line_of(text, s.start));
                return Err(ConfigErrors(vec![ConfigError { path: String::new(), line, message: format!("invalid TOML: {}", e.message()) }]));
            }
        };
        let mut cx = Cx::new(text);
        let root = Tbl::root(doc.get_ref(), doc.span());
        let cfg = read_config(&mut cx, &root);
        match (cx.into_errors(), cfg) {
            (errs, _) if !errs.is_empty() => Err(ConfigErrors(errs)),
            (_, Some(c)) => Ok(c),
            (_, None) => Err(ConfigErrors(vec![ConfigError { path: String::new(), line: None, message: "invalid configuration".into() }])),
        }
    }
}

/// The embedded default with `text` merged in; `None` when the file stands alone or is
/// not TOML (its own parse reports that).
fn layered(text: &str) -> Option<toml::Table> {
    let site: toml::Table = text.parse().ok()?;
    if layer::stands_alone(&site) {
        return None;
    }
    let default: toml::Table = DEFAULT_TOML.parse().expect("the embedded default is TOML");
    Some(layer::merge(default, site))
}

const MIB: u64 = 1 << 20;

fn read_config(cx: &mut Cx, root: &Tbl) -> Option<Config> {
    cx.unknown_keys(
        root,
        &["use_defaults", "pipeline", "archive", "dead_letter", "metrics", "state", "enrich", "triage", "score", "audit", "actions", "sources"],
    );
    if root.has("use_defaults") {
        cx.boolean(root, "use_defaults", true);
    }

    let p = cx.section(root, "pipeline");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let workers = cx.uint(&p, "parse_workers", 0, 0, 256);
    let pipeline = PipelineConfig {
        parse_workers: if workers == 0 { (cores / 2).max(1) } else { workers as usize },
        channel_batches: cx.uint(&p, "channel_batches", 16, 1, 65_536) as usize,
        read_bytes: cx.uint(&p, "read_bytes", MIB, 4096, 256 * MIB) as usize,
        max_line_bytes: cx.uint(&p, "max_line_bytes", 16 * MIB, 64, 1024 * MIB) as usize,
        max_json_depth: cx.uint(&p, "max_json_depth", 128, 2, 4096) as usize,
        plausible: {
            let past_days = cx.uint(&p, "plausible_past_days", 0, 0, 36_500) as i64;
            let future_hours = cx.uint(&p, "plausible_future_hours", 24, 1, 87_600) as i64;
            crate::parse::stage::Plausible { past_us: (past_days > 0).then_some(past_days * 86_400_000_000), future_us: future_hours * 3_600_000_000 }
        },
    };
    cx.unknown_keys(
        &p,
        &["parse_workers", "channel_batches", "read_bytes", "max_line_bytes", "max_json_depth", "plausible_past_days", "plausible_future_hours"],
    );

    let a = cx.section(root, "archive");
    let root_dir = PathBuf::from(cx.string(&a, "root").unwrap_or_else(|| "./alertflow-archive".into()));
    let writers = cx.uint(&a, "writer_threads", 0, 0, 256);
    let archive = ArchiveConfig {
        writer_threads: if writers == 0 { cores } else { writers as usize },
        parquet: ParquetSettings {
            zstd_level: cx.uint(&a, "zstd_level", 1, 1, 22) as i32,
            row_group_max_bytes: cx.uint(&a, "row_group_max_bytes", 64 * MIB, 64 * 1024, 4096 * MIB) as usize,
            raw_codec: match cx.string(&a, "raw_codec") {
                None => RawCodec::Zstd,
                Some(s) => RawCodec::parse(&s).unwrap_or_else(|| {
                    cx.error_at(&a, "raw_codec", format!("`{s}` is not a codec; expected one of: {}", RawCodec::NAMES.join(", ")));
                    RawCodec::Zstd
                }),
            },
            data_page_v2: cx.uint(&a, "data_page_version", 1, 1, 2) == 2,
        },
        segment_max_bytes: cx.uint(&a, "segment_max_bytes", 256 * MIB, MIB, 64 * 1024 * MIB),
        max_open_partitions: cx.uint(&a, "max_open_partitions", 16, 1, 4096) as usize,
        lane_queue_batches: cx.uint(&a, "lane_queue_batches", 16, 1, 4096) as usize,
        idle_seal: Duration::from_millis(cx.uint(&a, "idle_seal_ms", 1000, 10, 3_600_000)),
        max_segment_age: Duration::from_secs(cx.uint(&a, "max_segment_age_secs", 10, 1, 86_400)),
        retention: read_retention(cx, &a),
        compaction: read_compaction(cx, &a),
        root: root_dir.clone(),
    };
    cx.unknown_keys(
        &a,
        &[
            "root",
            "writer_threads",
            "zstd_level",
            "raw_codec",
            "data_page_version",
            "row_group_max_bytes",
            "segment_max_bytes",
            "max_open_partitions",
            "lane_queue_batches",
            "idle_seal_ms",
            "max_segment_age_secs",
            "retention_days",
            "retention",
            "compaction",
        ],
    );

    let d = cx.section(root, "dead_letter");
    let enabled = cx.boolean(&d, "enabled", true);
    let dl_path = cx.string(&d, "path").map(PathBuf::from).unwrap_or_else(|| default_dead_letter_path(&root_dir));
    let dead_letter = DeadLetterConfig {
        path: enabled.then_some(dl_path),
        sample_bytes: cx.uint(&d, "sample_bytes", 4096, 0, 16 * MIB) as usize,
        max_bytes: cx.uint(&d, "max_bytes", 64 * MIB, 0, 1 << 50),
    };
    cx.unknown_keys(&d, &["enabled", "path", "sample_bytes", "max_bytes"]);

    let mt = cx.section(root, "metrics");
    let listen = match cx.string(&mt, "listen") {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9187))),
        Some(s) if s.is_empty() => None,
        Some(s) => match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                cx.error_at(&mt, "listen", format!("`{s}` is not an address:port (use \"\" to turn the listener off)"));
                None
            }
        },
    };
    cx.unknown_keys(&mt, &["listen", "query_api", "query_token_env", "query_max_rows", "query_timeout_secs", "stats_log_secs"]);
    let stats_log = match cx.uint(&mt, "stats_log_secs", 60, 0, 86_400) {
        0 => None,
        n => Some(Duration::from_secs(n)),
    };
    let query_api = if cx.boolean(&mt, "query_api", false) {
        let token = match cx.string(&mt, "query_token_env") {
            None => {
                cx.error_here(&mt, "query_token_env", "the query API needs a token: name the environment variable that holds it");
                None
            }
            Some(var) => match std::env::var(&var) {
                Ok(t) if t.len() >= 16 => Some(t),
                Ok(_) => {
                    cx.error_at(&mt, "query_token_env", format!("the token in `{var}` is shorter than 16 characters"));
                    None
                }
                Err(_) => {
                    cx.error_at(&mt, "query_token_env", format!("environment variable `{var}` is not set"));
                    None
                }
            },
        };
        token.map(|token| QueryApiConfig {
            token,
            max_rows: cx.uint(&mt, "query_max_rows", 10_000, 1, 10_000_000) as usize,
            timeout: std::time::Duration::from_secs(cx.uint(&mt, "query_timeout_secs", 30, 1, 3600)),
        })
    } else {
        None
    };

    let mut state = read_state(cx, root);
    let enrich = read_enrich(cx, root);
    let scorer = read_score(cx, root);
    let triage = triage::read_triage(cx, root);
    let au = cx.section(root, "audit");
    cx.unknown_keys(&au, &["enabled"]);
    let audit = AuditConfig { enabled: cx.boolean(&au, "enabled", true) };
    let actions = actions::read_actions(cx, root);
    if let Some(s) = state.as_mut() {
        // Rules' `host` is the side of an alert in the home networks.
        s.engine.home_nets = triage.home_nets.clone();
    }

    let mut sources = Vec::new();
    for (i, s) in cx.array_of_tables(root, "sources").iter().enumerate() {
        if let Some(src) = read_source(cx, s) {
            if sources.iter().any(|o: &SourceConfig| o.name == src.name) {
                cx.error_at(s, "name", format!("duplicate source name `{}`", src.name));
            }
            sources.push(src);
        }
        let _ = i;
    }
    Some(Config {
        pipeline,
        archive,
        dead_letter,
        metrics: MetricsConfig { listen, query_api, stats_log },
        state: state?,
        enrich,
        triage,
        audit,
        actions,
        scorer,
        sources,
    })
}

/// `[archive] retention_days` (0: forever, the default) and `[archive.retention]` with a
/// number of days per table (`events`, `alerts`, `incidents`, `actions`; 0: forever).
fn read_retention(cx: &mut Cx, a: &Tbl) -> crate::archive::retention::Retention {
    use crate::archive::Table;
    let days = |n: u64| (n > 0).then_some(n as u32);
    let all = days(cx.uint(a, "retention_days", 0, 0, 36_500));
    let per = cx.section(a, "retention");
    let names: Vec<&str> = Table::ALL.iter().map(|t| t.dir()).collect();
    cx.unknown_keys(&per, &names);
    let mut r = crate::archive::retention::Retention::default();
    for t in Table::ALL {
        r.days[t as usize] = if per.has(t.dir()) { days(cx.uint(&per, t.dir(), 0, 0, 36_500)) } else { all };
    }
    r
}

/// `[archive.compaction]`: `enabled` (true), `target_mb` (256), `min_files` (8),
/// `quiet_secs` (600).
fn read_compaction(cx: &mut Cx, a: &Tbl) -> crate::archive::compact::CompactionConfig {
    let c = cx.section(a, "compaction");
    let d = crate::archive::compact::CompactionConfig::default();
    let cfg = crate::archive::compact::CompactionConfig {
        enabled: cx.boolean(&c, "enabled", d.enabled),
        target_bytes: cx.uint(&c, "target_mb", d.target_bytes >> 20, 1, 16_384) << 20,
        min_files: cx.uint(&c, "min_files", d.min_files as u64, 2, 1_000_000) as usize,
        quiet: Duration::from_secs(cx.uint(&c, "quiet_secs", d.quiet.as_secs(), 1, 30 * 86_400)),
    };
    cx.unknown_keys(&c, &["enabled", "target_mb", "min_files", "quiet_secs"]);
    cfg
}

/// `<root>/_deadletter/rejected.jsonl`: beside the tables, ignored by table readers.
pub fn default_dead_letter_path(root: &Path) -> PathBuf {
    root.join("_deadletter").join("rejected.jsonl")
}

fn key_fields(cx: &mut Cx, t: &Tbl, key: &str, default: &[crate::state::KeyField]) -> Vec<crate::state::KeyField> {
    use crate::state::KeyField;
    match cx.string_list(t, key) {
        None => default.to_vec(),
        Some(names) => names
            .iter()
            .filter_map(|n| {
                let f = KeyField::from_name(n);
                if f.is_none() {
                    cx.error_at(t, key, format!("`{n}` is not a field; expected one of: {}", KeyField::NAMES.join(", ")));
                }
                f
            })
            .collect(),
    }
}

fn late_policy(cx: &mut Cx, t: &Tbl, key: &str, default: crate::state::LatePolicy) -> crate::state::LatePolicy {
    use crate::state::LatePolicy;
    match cx.string(t, key).as_deref() {
        None => default,
        Some(name) => LatePolicy::from_name(name).unwrap_or_else(|| {
            cx.error_at(t, key, format!("`{name}` is not one of: {}", LatePolicy::NAMES.join(", ")));
            default
        }),
    }
}

fn read_state(cx: &mut Cx, root: &Tbl) -> Option<StateSection> {
    use crate::state::correlate::{Condition, Rule, Selector};
    use crate::state::dedup::DedupConfig;
    use crate::state::KeyField;
    use crate::state::LatePolicy;
    const S: i64 = 1_000_000;
    let st = cx.section(root, "state");
    cx.unknown_keys(
        &st,
        &[
            "enabled",
            "allowed_lateness_secs",
            "max_future_secs",
            "idle_secs",
            "watermark_quorum",
            "max_groups",
            "output",
            "late_policy",
            "late_output",
            "shards",
            "dedup",
            "context",
            "overload",
            "selectors",
            "rules",
            "sigma",
            "sigma_fields",
        ],
    );
    let default_late = late_policy(cx, &st, "late_policy", LatePolicy::Reevaluate);
    let c = cx.section(&st, "context");
    cx.unknown_keys(&c, &["enabled", "ttl_secs", "max_flows", "max_hosts", "max_items", "host_lookups", "max_value_bytes", "max_bytes"]);
    let context = crate::state::context::ContextConfig {
        enabled: cx.boolean(&c, "enabled", true),
        ttl_us: cx.uint(&c, "ttl_secs", 600, 1, 86_400) as i64 * S,
        max_flows: cx.uint(&c, "max_flows", 200_000, 1, 1 << 31) as usize,
        max_hosts: cx.uint(&c, "max_hosts", 100_000, 1, 1 << 31) as usize,
        max_items: cx.uint(&c, "max_items", 16, 1, 1024) as usize,
        host_lookups: cx.uint(&c, "host_lookups", 16, 1, 1024) as usize,
        max_value_bytes: cx.uint(&c, "max_value_bytes", 256, 8, 65_536) as usize,
        max_bytes: cx.uint(&c, "max_bytes", 256 << 20, 1 << 16, 1 << 40) as usize,
    };
    let o = cx.section(&st, "overload");
    cx.unknown_keys(&o, &["shed", "high_water"]);
    let overload = Overload { shed: cx.boolean(&o, "shed", false), high_water: cx.uint(&o, "high_water", 12, 1, 16) as usize };
    let d = cx.section(&st, "dedup");
    cx.unknown_keys(&d, &["key", "window_secs", "rollup_secs", "max_keys"]);
    let dflt = DedupConfig::default();
    let dedup = DedupConfig {
        key: key_fields(cx, &d, "key", &dflt.key),
        window_us: cx.uint(&d, "window_secs", 300, 1, 86_400 * 30) as i64 * S,
        rollup_us: cx.uint(&d, "rollup_secs", 60, 1, 86_400) as i64 * S,
        max_keys: cx.uint(&d, "max_keys", 1_000_000, 1, 1 << 32) as usize,
    };
    let mut selectors: Vec<Selector> = Vec::new();
    for t in cx.array_of_tables(&st, "selectors") {
        cx.unknown_keys(&t, &["name", "signature_ids", "categories", "max_severity", "dest_ports"]);
        let Some(name) = cx.required_string(&t, "name") else { continue };
        if selectors.iter().any(|s| s.name == name) {
            cx.error_at(&t, "name", format!("duplicate selector name `{name}`"));
        }
        selectors.push(Selector {
            name,
            signature_ids: cx.int_list(&t, "signature_ids", 0, i64::MAX),
            categories: cx.string_list(&t, "categories").unwrap_or_default(),
            max_severity: t.has("max_severity").then(|| cx.uint(&t, "max_severity", 3, 0, 255) as i32),
            dest_ports: cx.int_list(&t, "dest_ports", 0, 65_535).into_iter().map(|p| p as i32).collect(),
            ..Default::default()
        });
    }
    let mut rules = Vec::new();
    for t in cx.array_of_tables(&st, "rules") {
        cx.unknown_keys(&t, &["name", "type", "selectors", "group_by", "timespan_secs", "gte", "field", "late"]);
        let late = late_policy(cx, &t, "late", default_late);
        let name = cx.required_string(&t, "name");
        let sel_names = cx.string_list(&t, "selectors").unwrap_or_default();
        let mut sels = Vec::new();
        for n in &sel_names {
            match selectors.iter().find(|s| &s.name == n) {
                Some(s) => sels.push(s.clone()),
                None => cx.error_at(&t, "selectors", format!("no selector named `{n}` in [[state.selectors]]")),
            }
        }
        if sels.len() > 64 {
            cx.error_at(&t, "selectors", "at most 64 selectors per rule");
        }
        let group_by = key_fields(cx, &t, "group_by", &[]);
        let timespan_us = cx.uint(&t, "timespan_secs", 300, 1, 86_400 * 30) as i64 * S;
        let gte = cx.uint(&t, "gte", 1, 1, 1 << 32) as usize;
        let kind = cx.required_string(&t, "type");
        let condition = match kind.as_deref() {
            Some("event_count") => Some(Condition::event_count(gte)),
            Some("value_count") => {
                let field = cx.required_string(&t, "field").and_then(|f| {
                    let k = KeyField::from_name(&f);
                    if k.is_none() {
                        cx.error_at(&t, "field", format!("`{f}` is not a field; expected one of: {}", KeyField::NAMES.join(", ")));
                    }
                    k
                });
                field.map(|field| Condition::value_count(field, gte))
            }
            Some(k @ ("temporal" | "temporal_ordered")) => {
                if sels.len() < 2 {
                    let msg = format!("a {k} rule needs at least two selectors");
                    if t.has("selectors") {
                        cx.error_at(&t, "selectors", msg);
                    } else {
                        cx.error_here(&t, "selectors", msg);
                    }
                }
                Some(if k == "temporal" { Condition::temporal() } else { Condition::temporal_ordered() })
            }
            Some(other) => {
                cx.error_at(&t, "type", format!("`{other}` is not one of: event_count, value_count, temporal, temporal_ordered"));
                None
            }
            None => None,
        };
        if let (Some(name), Some(condition)) = (name, condition) {
            if rules.iter().any(|r: &Rule| r.name == name) {
                cx.error_at(&t, "name", format!("duplicate rule name `{name}`"));
            }
            rules.push(Rule { name, selectors: sels, group_by, timespan_us, condition, late, ..Default::default() });
        }
    }
    // Sigma rules from files, loaded together (references resolve across files).
    let mut fields = crate::state::sigma::FieldMap::default();
    for (name, field, span) in cx.string_map(&st, "sigma_fields") {
        if !fields.add(&name, &field) {
            cx.error_span(
                format!("state.sigma_fields.{name}"),
                span,
                format!("`{field}` is not an alert field; expected one of: {}", KeyField::NAMES.join(", ")),
            );
        }
    }
    let mut files = Vec::new();
    for pattern in cx.string_list(&st, "sigma").unwrap_or_default() {
        let found = crate::ingest::file::expand(std::slice::from_ref(&pattern));
        if found.is_empty() {
            cx.error_at(&st, "sigma", format!("`{pattern}` matches no file"));
        }
        for f in found {
            match std::fs::read_to_string(&f) {
                Ok(t) => files.push((f.display().to_string(), t)),
                Err(e) => cx.error_at(&st, "sigma", format!("{}: {e}", f.display())),
            }
        }
    }
    let mut warnings = Vec::new();
    if !files.is_empty() {
        let loaded = crate::state::sigma::load_all(&files, &selectors, &fields);
        for p in &loaded.problems {
            cx.error_at(&st, "sigma", p.to_string());
        }
        warnings.extend(loaded.warnings.iter().map(|w| format!("state.sigma: {w}")));
        for mut r in loaded.rules {
            r.late = default_late;
            if rules.iter().any(|o: &Rule| o.name == r.name) {
                cx.error_at(&st, "sigma", format!("duplicate rule name `{}` (a [[state.rules]] has it too)", r.name));
            }
            rules.push(r);
        }
    }
    let engine = crate::state::stage::StateConfig {
        enabled: cx.boolean(&st, "enabled", true),
        allowed_lateness_us: cx.uint(&st, "allowed_lateness_secs", 60, 0, 86_400) as i64 * S,
        max_future_us: cx.uint(&st, "max_future_secs", 300, 0, 86_400 * 365) as i64 * S,
        idle_us: cx.uint(&st, "idle_secs", 30, 1, 86_400) as i64 * S,
        watermark_quorum: cx.uint(&st, "watermark_quorum", 3, 1, 1000) as usize,
        dedup,
        rules,
        max_groups: cx.uint(&st, "max_groups", 100_000, 1, 1 << 32) as usize,
        context,
        late_policy: default_late,
        shards: cx.uint(&st, "shards", 1, 1, 64) as usize,
        home_nets: Vec::new(),
        // Set by the pipeline, which opens the enrichment sources.
    };
    let output = cx.string(&st, "output").filter(|o| !o.is_empty()).map(PathBuf::from);
    let late_output = cx.string(&st, "late_output").filter(|o| !o.is_empty()).map(PathBuf::from);
    Some(StateSection { engine, output, late_output, warnings, overload })
}

fn read_enrich(cx: &mut Cx, root: &Tbl) -> crate::enrich::EnrichConfig {
    use crate::enrich::intel::{Format, Kind};
    use crate::enrich::{EnrichConfig, FeedConfig};
    let e = cx.section(root, "enrich");
    cx.unknown_keys(
        &e,
        &[
            "enabled",
            "geoip_city",
            "geoip_asn",
            "assets",
            "intel",
            "history",
            "history_max_keys",
            "memo_entries",
            "reload_poll_secs",
            "retro_hunt_days",
            "retro_hunt_output",
            "sightings",
            "max_indicators_per_feed",
        ],
    );
    let path = |cx: &mut Cx, key: &str| cx.string(&e, key).filter(|p| !p.is_empty()).map(PathBuf::from);
    let d = EnrichConfig::default();
    let mut intel: Vec<FeedConfig> = Vec::new();
    for t in cx.array_of_tables(&e, "intel") {
        cx.unknown_keys(&t, &["name", "path", "format", "type", "confidence", "to_ids_only"]);
        let name = cx.required_string(&t, "name");
        let p = cx.required_string(&t, "path");
        let format = cx.string(&t, "format").and_then(|f| {
            let v = Format::from_name(&f);
            if v.is_none() {
                cx.error_at(&t, "format", format!("`{f}` is not one of: list, csv, misp, stix"));
            }
            v
        });
        let kind = cx.string(&t, "type").and_then(|k| {
            let v = Kind::from_name(&k);
            if v.is_none() {
                cx.error_at(&t, "type", format!("`{k}` is not one of: {}", Kind::NAMES));
            }
            v
        });
        let confidence = cx.uint(&t, "confidence", 50, 0, 100) as u8;
        let to_ids_only = cx.boolean(&t, "to_ids_only", true);
        if let (Some(name), Some(p)) = (name, p) {
            if intel.iter().any(|f| f.name == name) {
                cx.error_at(&t, "name", format!("duplicate feed name `{name}`"));
            }
            intel.push(FeedConfig { name, path: PathBuf::from(p), format, kind, confidence, to_ids_only });
        }
    }
    EnrichConfig {
        enabled: cx.boolean(&e, "enabled", true),
        geoip_city: path(cx, "geoip_city"),
        geoip_asn: path(cx, "geoip_asn"),
        assets: path(cx, "assets"),
        intel,
        history: cx.boolean(&e, "history", d.history),
        history_max_keys: cx.uint(&e, "history_max_keys", d.history_max_keys as u64, 1, 1 << 32) as usize,
        memo_entries: cx.uint(&e, "memo_entries", d.memo_entries as u64, 1, 1 << 28) as usize,
        reload_poll: Duration::from_secs(cx.uint(&e, "reload_poll_secs", d.reload_poll.as_secs(), 0, 86_400)),
        retro_hunt_days: cx.uint(&e, "retro_hunt_days", d.retro_hunt_days as u64, 0, 3650) as u32,
        retro_hunt_output: path(cx, "retro_hunt_output"),
        sightings: cx.boolean(&e, "sightings", d.sightings),
        history_seed: Vec::new(),
        max_indicators_per_feed: cx.uint(&e, "max_indicators_per_feed", d.max_indicators_per_feed as u64, 1, 1 << 31) as usize,
    }
}

fn read_score(cx: &mut Cx, root: &Tbl) -> Option<std::sync::Arc<crate::score::Scorer>> {
    use crate::score::{Aggregator, RecommendSpec, RuleSpec, Scorer, Thresholds};
    let sc = cx.section(root, "score");
    cx.unknown_keys(&sc, &["enabled", "aggregator", "thresholds", "rules", "recommend"]);
    let enabled = cx.boolean(&sc, "enabled", true);
    let aggregator = match cx.string(&sc, "aggregator") {
        None => Aggregator::default(),
        Some(a) => Aggregator::from_name(&a).unwrap_or_else(|| {
            cx.error_at(&sc, "aggregator", format!("`{a}` is not one of: {}", Aggregator::NAMES.join(", ")));
            Aggregator::default()
        }),
    };
    let th = cx.section(&sc, "thresholds");
    cx.unknown_keys(&th, &["critical", "high", "medium", "low"]);
    let dt = Thresholds::default();
    let thresholds = Thresholds {
        critical: cx.number(&th, "critical", dt.critical, 0.0, 100.0),
        high: cx.number(&th, "high", dt.high, 0.0, 100.0),
        medium: cx.number(&th, "medium", dt.medium, 0.0, 100.0),
        low: cx.number(&th, "low", dt.low, 0.0, 100.0),
    };
    if !(thresholds.critical >= thresholds.high && thresholds.high >= thresholds.medium && thresholds.medium >= thresholds.low) {
        cx.error_here(&th, "critical", "thresholds must not decrease: critical ≥ high ≥ medium ≥ low");
    }
    let mut rules = Vec::new();
    let mut rule_tables = Vec::new();
    for t in cx.array_of_tables(&sc, "rules") {
        cx.unknown_keys(&t, &["name", "when", "score", "reason"]);
        let (name, when) = (cx.required_string(&t, "name"), cx.required_string(&t, "when"));
        // A number, or an expression giving one per alert.
        let score_expr = cx.string_or_none(&t, "score");
        let score = if score_expr.is_some() { 0.0 } else { cx.number(&t, "score", 0.0, -100.0, 100.0) };
        let reason = cx.string(&t, "reason").unwrap_or_default();
        if let (Some(name), Some(when)) = (name, when) {
            if rules.iter().any(|r: &RuleSpec| r.name == name) {
                cx.error_at(&t, "name", format!("duplicate rule name `{name}`"));
            }
            rules.push(RuleSpec { reason: if reason.is_empty() { name.clone() } else { reason }, name, when, score, score_expr });
            rule_tables.push(t);
        }
    }
    let mut recs = Vec::new();
    let mut rec_tables = Vec::new();
    for t in cx.array_of_tables(&sc, "recommend") {
        cx.unknown_keys(&t, &["name", "when", "actions", "evidence"]);
        let (name, when) = (cx.required_string(&t, "name"), cx.required_string(&t, "when"));
        let actions = cx.string_list(&t, "actions").unwrap_or_default();
        if actions.is_empty() {
            cx.error_here(&t, "actions", "a recommendation needs at least one action");
        }
        let evidence = cx.string(&t, "evidence").unwrap_or_default();
        if let (Some(name), Some(when)) = (name, when) {
            recs.push(RecommendSpec { name, when, actions, evidence });
            rec_tables.push(t);
        }
    }
    if !enabled {
        return None;
    }
    // Each rule compiles alone so a problem is reported at its own path.
    let mut ok = true;
    for (r, t) in rules.iter().zip(&rule_tables) {
        if let Err(errs) = Scorer::new(std::slice::from_ref(r), &[], aggregator, thresholds) {
            ok = false;
            for e in errs {
                cx.error_at(t, e.part.key(), e.to_string());
            }
        }
    }
    for (r, t) in recs.iter().zip(&rec_tables) {
        if let Err(errs) = Scorer::new(&[], std::slice::from_ref(r), aggregator, thresholds) {
            ok = false;
            for e in errs {
                cx.error_at(t, e.part.key(), e.to_string());
            }
        }
    }
    if !ok || (rules.is_empty() && recs.is_empty()) {
        return None;
    }
    Scorer::new(&rules, &recs, aggregator, thresholds).ok().map(std::sync::Arc::new)
}

const FILE_KEYS: &[&str] = &["path", "paths", "start_at", "poll_interval_ms", "rotate_wait_secs", "max_open_files"];
const UNIX_KEYS: &[&str] = &["path", "socket_mode", "max_connections"];
const UDP_KEYS: &[&str] = &["listen", "recv_buffer_bytes"];
const TCP_KEYS: &[&str] = &["listen", "max_connections", "max_connections_per_client", "idle_timeout_secs", "frame_timeout_secs", "max_frame_bytes", "tls"];
const TLS_KEYS: &[&str] = &["cert", "key", "client_ca", "handshake_timeout_secs"];
const REDIS_KEYS: &[&str] = &["url", "mode", "key", "consumer", "group", "batch", "claim_idle_ms", "processing_list"];

fn socket_addr(cx: &mut Cx, s: &Tbl, key: &str) -> Option<SocketAddr> {
    let v = cx.required_string(s, key)?;
    match v.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.error_at(s, key, format!("`{v}` is not an address:port such as \"0.0.0.0:514\""));
            None
        }
    }
}

fn read_source(cx: &mut Cx, s: &Tbl) -> Option<SourceConfig> {
    let name = cx.required_string(s, "name");
    if let Some(n) = &name {
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            cx.error_at(s, "name", format!("`{n}` is not a valid name (letters, digits, `_`, `-`, `.`)"));
        }
    }
    let kind = cx.required_string(s, "type");
    let mut known: Vec<&str> = vec!["name", "type", "overflow"];
    let kind = match kind.as_deref() {
        Some("file") => {
            known.extend_from_slice(FILE_KEYS);
            let mut paths = cx.string_list(s, "paths").unwrap_or_default();
            if let Some(p) = cx.string(s, "path") {
                paths.insert(0, p);
            }
            if paths.is_empty() {
                cx.error_here(s, "path", "a file source needs `path` (a file name or glob) or `paths`");
            }
            let start_at = match cx.string(s, "start_at").as_deref() {
                None | Some("beginning") => StartAt::Beginning,
                Some("end") => StartAt::End,
                Some(other) => {
                    cx.error_at(s, "start_at", format!("`{other}` is not one of: beginning, end"));
                    StartAt::Beginning
                }
            };
            Some(SourceKind::File(FileSourceConfig {
                paths,
                follow: true,
                start_at,
                poll_interval: Duration::from_millis(cx.uint(s, "poll_interval_ms", 250, 10, 60_000)),
                rotate_wait: Duration::from_secs(cx.uint(s, "rotate_wait_secs", 10, 0, 86_400)),
                max_open_files: cx.uint(s, "max_open_files", 64, 1, 65_536) as usize,
            }))
        }
        Some("stdin") => Some(SourceKind::Stdin),
        Some(t @ ("unix_stream" | "unix_dgram")) => {
            known.extend_from_slice(UNIX_KEYS);
            let path = cx.required_string(s, "path");
            let mode = match cx.string(s, "socket_mode") {
                None => 0o660,
                Some(m) => match u32::from_str_radix(&m, 8) {
                    Ok(v) if v <= 0o777 => v,
                    _ => {
                        cx.error_at(s, "socket_mode", format!("`{m}` is not an octal file mode such as \"0660\""));
                        0o660
                    }
                },
            };
            let max_connections = cx.uint(s, "max_connections", 16, 1, 65_536) as usize;
            if t == "unix_dgram" && s.has("max_connections") {
                cx.error_at(s, "max_connections", "applies to unix_stream sources only");
            }
            path.map(|p| {
                let uc = UnixConfig { path: PathBuf::from(p), mode, max_connections };
                if t == "unix_stream" {
                    SourceKind::UnixStream(uc)
                } else {
                    SourceKind::UnixDgram(uc)
                }
            })
        }
        Some("syslog_udp") => {
            known.extend_from_slice(UDP_KEYS);
            let listen = socket_addr(cx, s, "listen");
            let recv_buffer_bytes = cx.uint(s, "recv_buffer_bytes", 8 << 20, 0, 1 << 30) as usize;
            listen.map(|listen| SourceKind::SyslogUdp(UdpConfig { listen, recv_buffer_bytes }))
        }
        Some("syslog_tcp") => {
            known.extend_from_slice(TCP_KEYS);
            let listen = socket_addr(cx, s, "listen");
            let max_connections = cx.uint(s, "max_connections", 1024, 1, 1 << 20) as usize;
            let max_connections_per_client = cx.uint(s, "max_connections_per_client", 32, 1, 1 << 20) as usize;
            let idle_timeout = Duration::from_secs(cx.uint(s, "idle_timeout_secs", 300, 1, 86_400 * 7));
            let frame_timeout = Duration::from_secs(cx.uint(s, "frame_timeout_secs", 60, 1, 86_400));
            let max_frame_bytes = cx.uint(s, "max_frame_bytes", 1 << 20, 64, 1 << 30) as usize;
            let tls = if s.has("tls") {
                let t = cx.section(s, "tls");
                let cert = cx.required_string(&t, "cert");
                let key = cx.required_string(&t, "key");
                let client_ca = cx.string(&t, "client_ca");
                let handshake_timeout = Duration::from_secs(cx.uint(&t, "handshake_timeout_secs", 10, 1, 3600));
                cx.unknown_keys(&t, TLS_KEYS);
                match (cert, key) {
                    (Some(cert), Some(key)) => {
                        let tls = TlsConfig { cert: cert.into(), key: key.into(), client_ca: client_ca.map(PathBuf::from), handshake_timeout };
                        // A missing or broken certificate, key or CA is a configuration
                        // problem: found here, not when the listener starts.
                        let files = [("cert", Some(&tls.cert)), ("key", Some(&tls.key)), ("client_ca", tls.client_ca.as_ref())];
                        let mut readable = true;
                        for (k, p) in files.into_iter().filter_map(|(k, p)| Some((k, p?))) {
                            if let Err(e) = std::fs::File::open(p) {
                                cx.error_at(&t, k, format!("{}: {e}", p.display()));
                                readable = false;
                            }
                        }
                        if readable {
                            if let Err(e) = crate::ingest::net::tls_acceptor(&tls) {
                                cx.error_at(&t, "cert", e.to_string());
                            }
                        }
                        Some(tls)
                    }
                    _ => None,
                }
            } else {
                None
            };
            listen.map(|listen| {
                SourceKind::SyslogTcp(TcpConfig { listen, max_connections, max_connections_per_client, idle_timeout, frame_timeout, max_frame_bytes, tls })
            })
        }
        Some("redis") => {
            known.extend_from_slice(REDIS_KEYS);
            let url = cx.string(s, "url").unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
            let mode = match cx.string(s, "mode").as_deref() {
                None | Some("list") => Some(RedisMode::List),
                Some("channel") => Some(RedisMode::Channel),
                Some("stream") => Some(RedisMode::Stream),
                Some(other) => {
                    cx.error_at(s, "mode", format!("`{other}` is not one of: list, channel, stream"));
                    None
                }
            };
            let key = cx.required_string(s, "key");
            let consumer = cx.string(s, "consumer").unwrap_or_else(|| "alertflow".into());
            let group = cx.string(s, "group").unwrap_or_else(|| "alertflow".into());
            let batch = cx.uint(s, "batch", 1000, 1, 100_000) as usize;
            let claim_idle = Duration::from_millis(cx.uint(s, "claim_idle_ms", 60_000, 1, 86_400_000));
            let processing_list = cx.string(s, "processing_list");
            if mode != Some(RedisMode::List) && s.has("processing_list") {
                cx.error_at(s, "processing_list", "applies to mode = \"list\" only");
            }
            if mode != Some(RedisMode::Stream) && (s.has("group") || s.has("claim_idle_ms")) {
                cx.error_here(s, "group", "`group` and `claim_idle_ms` apply to mode = \"stream\" only");
            }
            match (mode, key) {
                (Some(mode), Some(key)) => {
                    let processing_list = processing_list.unwrap_or_else(|| format!("{key}:processing:{consumer}"));
                    Some(SourceKind::Redis(RedisConfig { url, mode, key, consumer, group, batch, claim_idle, processing_list }))
                }
                _ => None,
            }
        }
        Some(other) => {
            cx.error_at(
                s,
                "type",
                format!("unknown source type `{other}`; expected one of: file, stdin, unix_stream, unix_dgram, syslog_udp, syslog_tcp, redis"),
            );
            None
        }
        None => None,
    };
    let default_overflow = match kind {
        Some(SourceKind::UnixStream(_) | SourceKind::UnixDgram(_) | SourceKind::SyslogUdp(_) | SourceKind::SyslogTcp(_)) => Overflow::Drop,
        Some(SourceKind::Redis(RedisConfig { mode: RedisMode::Channel, .. })) => Overflow::Drop,
        _ => Overflow::Block,
    };
    known.push("format");
    known.push("timezone");
    let timezone = match cx.string(s, "timezone") {
        None => None,
        Some(z) if z == "UTC" => None,
        Some(z) => match jiff::tz::TimeZone::get(&z) {
            Ok(tz) => Some(tz),
            Err(_) => {
                cx.error_at(s, "timezone", format!("`{z}` is not a time zone name such as \"Europe/Berlin\" or \"UTC\""));
                None
            }
        },
    };
    let default_format = match kind {
        Some(SourceKind::SyslogUdp(_) | SourceKind::SyslogTcp(_)) => Format::Syslog,
        _ => Format::Eve,
    };
    let format = match cx.string(s, "format") {
        None => default_format,
        Some(f) => Format::from_name(&f).unwrap_or_else(|| {
            cx.error_at(s, "format", format!("`{f}` is not one of: eve, fast, syslog, auto"));
            default_format
        }),
    };
    let overflow = match cx.string(s, "overflow").as_deref() {
        None => default_overflow,
        Some("block") => Overflow::Block,
        Some("drop") => Overflow::Drop,
        Some(other) => {
            cx.error_at(s, "overflow", format!("`{other}` is not one of: block, drop"));
            default_overflow
        }
    };
    if kind.is_some() || s.has("type") {
        cx.unknown_keys(s, &known);
    }
    Some(SourceConfig { name: name?, kind: kind?, overflow, format, timezone })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default();
        assert!(c.sources.is_empty());
        assert_eq!(c.pipeline.max_line_bytes, 16 << 20);
    }
}
