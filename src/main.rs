//! The `alertflow` command line. Everything here is argument handling, logging set-up,
//! signals and exit codes; the work is in the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use alertflow::config::{Config, ConfigErrors, SourceConfig, SourceKind};
use alertflow::ingest::file::FileSource;
use alertflow::ingest::{Format, Overflow};
use alertflow::pipeline::{self, Health, Mode};

/// mimalloc unless built with `--features system-allocator` (for heap profilers such as
/// heaptrack, which see only the system allocator).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "alertflow",
    version,
    about = "Streaming alert processor for IDS sensors: ingest, dedup, correlate, triage, score, act, archive to Parquet",
    long_about = "Streaming alert processor for Suricata and Snort sensors. Ingests EVE JSON, syslog and fast-alert lines from files, \
sockets and Redis; deduplicates, correlates (Sigma) and triages alerts; enriches and scores them; runs notifications and response \
actions through an audited outbox; archives every event exactly once to Parquet that `alertflow query`, DuckDB, pyarrow and Spark read.\n\n\
Start with `alertflow demo`, or `alertflow config init --profile sensor --out alertflow.toml` and `alertflow run --config alertflow.toml`."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Follow the configured sources until SIGINT/SIGTERM, then seal and exit
    Run {
        /// Configuration file (default: the embedded default)
        #[arg(long)]
        config: Option<PathBuf>,
        /// Archive root (overrides archive.root)
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Follow this file or glob (may be repeated; adds a file source named `input`)
        #[arg(long = "input")]
        inputs: Vec<String>,
        /// Metrics and health listener address, "" for none (overrides metrics.listen)
        #[arg(long)]
        metrics_listen: Option<String>,
        /// What the `--input` files hold
        #[arg(long, value_enum, default_value = "eve")]
        format: FormatArg,
    },
    /// Push files (`-` for stdin) through the pipeline once, seal, print a summary
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Print the summary as JSON on stdout
        #[arg(long)]
        json: bool,
        /// Never show the progress bar
        #[arg(long)]
        no_progress: bool,
        /// What the inputs hold; `auto` decides per line (syslog, fast alert, else EVE JSON)
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// Validate a configuration file, reporting every problem with its path and line
    CheckConfig { file: PathBuf },
    /// Configuration files: a commented starting file per kind of installation
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Print the completion script of a shell (bash, zsh, fish, elvish, powershell)
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (alertflow.1 and one per command) into a folder
    Man {
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Scan the archived events of the last days for the indicators of a feed file; print
    /// one `intel_alert` JSON line per matching event (with its original time)
    Hunt {
        /// Archive root
        #[arg(long)]
        archive: PathBuf,
        /// Indicator feed: a list, CSV, MISP JSON export or STIX 2.1 bundle
        #[arg(long)]
        feed: PathBuf,
        /// Feed format (default: from the file name and content)
        #[arg(long, value_parser = ["list", "csv", "misp", "stix"])]
        feed_format: Option<String>,
        /// Type of every entry of a list (default: from each entry's shape)
        #[arg(long = "type")]
        kind: Option<String>,
        /// How many days back (by the archive's date partitions)
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Write the lines here instead of stdout
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The audit trail of an archive
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// SQL over the archive: `events`, `alerts`, `incidents`, `actions` by name, `date` and
    /// `hour` from the folders (a condition on them opens only those folders)
    Query {
        /// Archive root
        #[arg(long, required_unless_present = "list")]
        archive: Option<PathBuf>,
        /// A SQL statement, or the name of a saved query (see --list)
        sql: Option<String>,
        /// List the saved queries
        #[arg(long)]
        list: bool,
        /// Print the archive's tables and the incident views (incidents_now,
        /// incident_members) as DuckDB views, to paste into DuckDB
        #[arg(long, conflicts_with_all = ["sql", "list"])]
        duckdb_views: bool,
        /// Only events since (24h, 7d, 90m, or 2026-11-18T10:00:00Z)
        #[arg(long)]
        since: Option<String>,
        /// Only events before (same forms)
        #[arg(long)]
        until: Option<String>,
        /// Output: an aligned table on a terminal, CSV otherwise; parquet needs --out
        #[arg(long, value_parser = ["table", "csv", "json", "parquet"])]
        format: Option<String>,
        /// Write the answer to this file
        #[arg(long)]
        out: Option<PathBuf>,
        /// A saved query's parameter (repeatable): --set host=10.0.0.5
        #[arg(long = "set")]
        set: Vec<String>,
    },
    /// A report of the archive for a SOC lead: one self-contained HTML file with charts
    /// (or Markdown, or JSON with every statement behind it)
    Report {
        /// Archive root
        #[arg(long)]
        archive: PathBuf,
        /// Only events since (24h, 7d, or 2026-11-18T10:00:00Z)
        #[arg(long)]
        since: Option<String>,
        /// Only events before
        #[arg(long)]
        until: Option<String>,
        #[arg(long, value_parser = ["html", "md", "json"])]
        format: Option<String>,
        /// Write it here (default: stdout)
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The outbox of actions: list entries, send dead letters again
    Actions {
        #[command(subcommand)]
        cmd: ActionsCmd,
    },
    /// Remove the date partitions older than the retention (what `run` does every hour
    /// when `archive.retention_days` is set), or with --dry-run list what would go
    Prune {
        /// Configuration file: its archive root and retention
        #[arg(long)]
        config: Option<PathBuf>,
        /// Archive root (overrides archive.root)
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Days every table keeps (overrides the configuration)
        #[arg(long)]
        days: Option<u32>,
        /// Print what would be removed; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Merge the small segments of each partition into larger files (what `run` does by
    /// itself once an hour is quiet), in an archive no process is writing
    Compact {
        /// Configuration file: its archive root and `[archive.compaction]`
        #[arg(long)]
        config: Option<PathBuf>,
        /// Archive root (overrides archive.root)
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Print what would be merged; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Archive a bundled sample of real Suricata output into ./alertflow-demo/
    Demo {
        #[arg(long, default_value = "alertflow-demo")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Write a commented starting configuration for a kind of installation
    Init {
        /// sensor (follow Suricata's EVE files), syslog-collector (UDP/TCP/TLS listeners)
        /// or redis (Suricata's Redis output)
        #[arg(long, default_value = "sensor", value_parser = ["sensor", "syslog-collector", "redis"])]
        profile: String,
        /// Write here instead of stdout (an existing file is kept unless --force)
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        force: bool,
    },
    /// Validate a configuration file (as `check-config`)
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check every record's sequence, link and hash, and the chain head of the newest
    /// commit; exit 1 naming the first bad record
    Verify {
        /// Archive root
        #[arg(long)]
        archive: PathBuf,
    },
}

#[derive(Subcommand)]
enum ActionsCmd {
    /// One line per outbox entry: status, attempts, destination, trigger, key, last result
    List {
        /// Archive root
        #[arg(long)]
        archive: PathBuf,
        /// Only entries in this state
        #[arg(long, value_parser = ["pending", "delivered", "dead", "dropped"])]
        status: Option<String>,
        /// One JSON object per entry
        #[arg(long)]
        json: bool,
    },
    /// Queue dead or dropped entries again (alertflow must not be running on the archive;
    /// the next start delivers them, with the same idempotency id)
    Replay {
        /// Archive root
        #[arg(long)]
        archive: PathBuf,
        /// Entries by idempotency key (repeatable)
        #[arg(long)]
        key: Vec<String>,
        /// Every dead and dropped entry
        #[arg(long)]
        dead: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Eve,
    Fast,
    Syslog,
    Auto,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Eve => Format::Eve,
            FormatArg::Fast => Format::Fast,
            FormatArg::Syslog => Format::Syslog,
            FormatArg::Auto => Format::Auto,
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALERTFLOW_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour codes only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// mimalloc option numbers (mimalloc v3 `mi_option_e`).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Keeps freed memory mapped: batches of the same sizes are allocated and freed all the
/// time, and returning them to the OS only to fault them in again cost a third of the
/// CPU in measurements. Peak memory is bounded by the configuration anyway. The
/// `MIMALLOC_*` environment variables still win.
///
/// Transparent huge pages are off for the process: once the page cache holds the input
/// and the archive, every 2 MiB fault waited for the kernel to compact memory (system
/// time 1–3 s of a 3 s replay of a million events, 22 s of a 43 s alert storm); with 4 KiB
/// pages the same runs spent 0.6 s and 7 s.
fn tune_allocator() {
    // SAFETY: mi_option_set only stores an option value; it is safe to call at any time.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 1);
        }
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0);
            // Under `always` the kernel would still back large regions with huge pages.
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Run { config, archive, inputs, metrics_listen, format } => {
            init_logging("info");
            cmd_run(config, archive, inputs, metrics_listen, format.into())
        }
        Cmd::Replay { config, archive, json, no_progress, inputs, format } => {
            init_logging("warn");
            cmd_replay(config, archive, inputs, json, no_progress, format.into())
        }
        Cmd::CheckConfig { file } | Cmd::Config { cmd: ConfigCmd::Check { file } } => return cmd_check(&file),
        Cmd::Config { cmd: ConfigCmd::Init { profile, out, force } } => cmd_config_init(&profile, out, force),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "alertflow", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { out } => cmd_man(&out),
        Cmd::Hunt { archive, feed, feed_format, kind, days, output } => {
            init_logging("warn");
            cmd_hunt(&archive, &feed, feed_format.as_deref(), kind.as_deref(), days, output.as_deref())
        }
        Cmd::Audit { cmd: AuditCmd::Verify { archive } } => return cmd_audit_verify(&archive),
        Cmd::Actions { cmd } => return cmd_actions(cmd),
        Cmd::Report { archive, since, until, format, out } => return cmd_report(&archive, since, until, format, out),
        Cmd::Query { archive, duckdb_views: true, .. } => return cmd_duckdb_views(&archive.unwrap_or_default()),
        Cmd::Query { archive, sql, list, since, until, format, out, set, .. } => {
            return cmd_query(&archive.unwrap_or_default(), sql, list, since, until, format, out, set)
        }
        Cmd::Prune { config, archive, days, dry_run } => {
            init_logging("warn");
            cmd_prune(config, archive, days, dry_run)
        }
        Cmd::Compact { config, archive, dry_run } => {
            init_logging("warn");
            cmd_compact(config, archive, dry_run)
        }
        Cmd::Demo { dir } => {
            init_logging("warn");
            cmd_demo(&dir)
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigErrors>() {
                eprintln!("alertflow: {ce}");
                return ExitCode::from(2);
            }
            eprintln!("alertflow: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    let cfg = match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded_default(),
    };
    for w in &cfg.state.warnings {
        tracing::warn!("{w}");
    }
    Ok(cfg)
}

#[cfg(feature = "query")]
fn cmd_duckdb_views(archive: &std::path::Path) -> ExitCode {
    let tables = alertflow::api::archive_tables(archive);
    if tables.is_empty() {
        eprintln!("alertflow: query: {}: no archive with data here", archive.display());
        return ExitCode::from(2);
    }
    print!("{}", alertflow::query::duckdb_views(&tables));
    ExitCode::SUCCESS
}

#[cfg(not(feature = "query"))]
fn cmd_duckdb_views(_: &std::path::Path) -> ExitCode {
    eprintln!("alertflow: query: this build has no SQL engine (build with the default `query` feature)");
    ExitCode::from(2)
}

#[cfg(feature = "query")]
#[allow(clippy::too_many_arguments)]
fn cmd_query(
    archive: &std::path::Path,
    sql: Option<String>,
    list: bool,
    since: Option<String>,
    until: Option<String>,
    format: Option<String>,
    out: Option<PathBuf>,
    set: Vec<String>,
) -> ExitCode {
    use alertflow::query::{self, saved, Format, QueryError};
    use std::io::IsTerminal;
    let fail = |e: QueryError| {
        eprintln!("alertflow: query: {e}");
        ExitCode::from(2)
    };
    if list {
        for s in saved::ALL {
            println!("{:<20} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let Some(text) = sql else { return fail(QueryError("give a SQL statement or a saved query's name (--list shows them)".into())) };
    let mut params = Vec::new();
    for kv in &set {
        match kv.split_once('=') {
            Some((k, v)) => params.push((k.to_string(), v.to_string())),
            None => return fail(QueryError(format!("--set `{kv}`: expected NAME=VALUE"))),
        }
    }
    let statement = match saved::find(&text) {
        Some(s) => match saved::fill(s, &params) {
            Ok(sql) => sql,
            Err(e) => return fail(QueryError(e)),
        },
        None if !params.is_empty() => return fail(QueryError(format!("`{text}` is not a saved query: --set is for saved queries"))),
        None if !text.contains(char::is_whitespace) => {
            return fail(QueryError(format!("`{text}` is neither SQL nor a saved query (--list shows them)")));
        }
        None => text,
    };
    let req = match query_request(archive, statement, since.as_deref(), until.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let batches = match query::run(&req) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let fmt = match format.as_deref() {
        Some("parquet") => {
            let Some(path) = out else { return fail(QueryError("--format parquet needs --out FILE".into())) };
            return match query::write_parquet(&batches, &path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            };
        }
        Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(_) => Format::Table,
        None if out.is_none() && std::io::stdout().is_terminal() => Format::Table,
        None => Format::Csv,
    };
    let text = match query::render(&batches, fmt) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    match out {
        Some(p) => {
            if let Err(e) = std::fs::write(&p, text) {
                return fail(QueryError(format!("{}: {e}", p.display())));
            }
        }
        None => {
            print!("{text}");
            if fmt == Format::Table {
                println!();
            }
        }
    }
    ExitCode::SUCCESS
}

/// The tables of an archive with data, bounded by `--since` / `--until`; an empty range is
/// an error.
#[cfg(feature = "query")]
fn query_request(
    archive: &std::path::Path,
    sql: String,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<alertflow::query::Request, alertflow::query::QueryError> {
    use alertflow::query::{self, QueryError, Request};
    let fail = |e: QueryError| Err(e);
    let now = alertflow::event::time::wall_clock_us();
    let since_us = since.map(|s| query::parse_time(s, now)).transpose()?;
    let until_us = until.map(|s| query::parse_time(s, now)).transpose()?;
    if let (Some(s), Some(u)) = (since_us, until_us) {
        if s >= u {
            return fail(QueryError("--since is not before --until: the time range is empty".into()));
        }
    }
    let tables = alertflow::api::archive_tables(archive);
    if since_us.is_some() || until_us.is_some() {
        // An hour partition covers [hour, hour + 1 h): does any overlap the range?
        let mut held: Vec<i64> = Vec::new();
        for t in &tables {
            for p in alertflow::archive::layout::partitions(archive, t.name).unwrap_or_default() {
                if let Ok(ts) = format!("{}T{}:00:00Z", p.date, p.hour).parse::<jiff::Timestamp>() {
                    held.push(ts.as_microsecond());
                }
            }
        }
        let hour = 3_600_000_000;
        let overlaps = held.iter().any(|&h| since_us.is_none_or(|s| h + hour > s) && until_us.is_none_or(|u| h < u));
        if !overlaps {
            let iso = |us: i64| jiff::Timestamp::from_microsecond(us).map(|t| t.strftime("%Y-%m-%dT%H:00Z").to_string()).unwrap_or_default();
            let span = match (held.iter().min(), held.iter().max()) {
                (Some(a), Some(b)) => format!("the archive holds {} to {}", iso(*a), iso(*b + hour)),
                _ => "the archive holds nothing".to_string(),
            };
            return fail(QueryError(format!("no data in the time range ({span})")));
        }
    }
    Ok(Request { root: archive.to_path_buf(), tables, sql, since_us, until_us })
}

#[cfg(feature = "query")]
fn cmd_report(archive: &std::path::Path, since: Option<String>, until: Option<String>, format: Option<String>, out: Option<PathBuf>) -> ExitCode {
    use alertflow::query::report;
    let fail = |e: String| {
        eprintln!("alertflow: report: {e}");
        ExitCode::from(2)
    };
    let req = match query_request(archive, String::new(), since.as_deref(), until.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail(e.0),
    };
    let mut rejected = std::collections::BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(archive.join("_deadletter/rejected.jsonl")) {
        for l in text.lines() {
            let reason =
                serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["reason"].as_str().map(str::to_string)).unwrap_or_else(|| "unreadable".into());
            *rejected.entry(reason).or_insert(0u64) += 1;
        }
    }
    let r = match report::build(&req, rejected) {
        Ok(r) => r,
        Err(e) => return fail(e.0),
    };
    let text = match format.as_deref() {
        Some("json") => serde_json::to_string_pretty(&r).expect("report serializes"),
        Some("md") => report::markdown(&r),
        _ => report::html(&r),
    };
    match out {
        Some(p) => match std::fs::write(&p, text) {
            Ok(()) => {
                eprintln!("report written to {}", p.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{}: {e}", p.display())),
        },
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}

#[cfg(not(feature = "query"))]
fn cmd_report(_: &std::path::Path, _: Option<String>, _: Option<String>, _: Option<String>, _: Option<PathBuf>) -> ExitCode {
    eprintln!("alertflow: report: this build has no SQL engine (build with the default `query` feature)");
    ExitCode::from(2)
}

#[cfg(not(feature = "query"))]
#[allow(clippy::too_many_arguments)]
fn cmd_query(
    _: &std::path::Path,
    _: Option<String>,
    _: bool,
    _: Option<String>,
    _: Option<String>,
    _: Option<String>,
    _: Option<PathBuf>,
    _: Vec<String>,
) -> ExitCode {
    eprintln!("alertflow: query: this build has no SQL engine (build with the default `query` feature)");
    ExitCode::from(2)
}

/// Both chains of an archive: the decisions' trail and the actions' journal.
fn cmd_audit_verify(archive: &std::path::Path) -> ExitCode {
    let mut ok = true;
    match alertflow::output::audit::verify_archive(archive, |after, upto| pipeline::commit::audit_records(archive, after, upto)) {
        Ok(msg) => println!("{msg}"),
        Err(e) => {
            eprintln!("alertflow: audit: {e}");
            ok = false;
        }
    }
    let journal = alertflow::act::journal::path_in(archive);
    if journal.exists() {
        match alertflow::act::journal::read(&journal) {
            Ok((records, chain, cut)) => {
                let tail = if cut.is_some() { "; a last record cut off by a crash is dropped at the next start" } else { "" };
                println!("{}: ok, {} records, head {}{tail}", journal.display(), records.len(), chain.head);
            }
            Err(e) => {
                eprintln!("alertflow: audit: {e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn cmd_actions(cmd: ActionsCmd) -> ExitCode {
    use alertflow::act::journal;
    let fail = |msg: String| {
        eprintln!("alertflow: actions: {msg}");
        ExitCode::from(2)
    };
    let archive = match &cmd {
        ActionsCmd::List { archive, .. } | ActionsCmd::Replay { archive, .. } => archive.clone(),
    };
    if !archive.is_dir() {
        return fail(format!("{}: no such archive", archive.display()));
    }
    let path = journal::path_in(&archive);
    match cmd {
        ActionsCmd::List { status, json, .. } => {
            let records = match journal::read(&path) {
                Ok((r, _, _)) => r,
                Err(e) => return fail(e),
            };
            let entries = journal::entries(&records);
            let shown: Vec<_> = entries.iter().filter(|e| status.as_deref().is_none_or(|s| e.status.as_str() == s)).collect();
            for e in &shown {
                if json {
                    let v = serde_json::json!({
                        "entry": e.entry, "key": e.key, "status": e.status.as_str(), "attempts": e.attempts, "action": e.action,
                        "trigger": e.trigger, "event": e.event, "queued": e.queued, "last": e.last, "id": alertflow::act::id_of(&e.key),
                    });
                    println!("{v}");
                } else {
                    println!("{:<9} {:>3}  {:<16} {:<16} {}  {}", e.status.as_str(), e.attempts, e.action, e.trigger, e.key, e.last);
                }
            }
            if !json {
                let count = |s: journal::Status| entries.iter().filter(|e| e.status == s).count();
                eprintln!(
                    "{} entries: {} pending, {} delivered, {} dead, {} dropped",
                    entries.len(),
                    count(journal::Status::Pending),
                    count(journal::Status::Delivered),
                    count(journal::Status::Dead),
                    count(journal::Status::Dropped)
                );
            }
            ExitCode::SUCCESS
        }
        ActionsCmd::Replay { key, dead, .. } => {
            if key.is_empty() && !dead {
                return fail("name entries with --key KEY, or --dead for every dead and dropped entry".into());
            }
            // The running process owns the journal.
            let lock_path = archive.join(".alertflow.lock");
            let lock = match std::fs::File::options().create(true).truncate(false).write(true).open(&lock_path) {
                Ok(f) => f,
                Err(e) => return fail(format!("{}: {e}", lock_path.display())),
            };
            if lock.try_lock().is_err() {
                return fail(format!("alertflow is running on {}: stop it first (the next start delivers what is replayed)", archive.display()));
            }
            let (mut j, records) = match journal::Journal::open(path) {
                Ok(x) => x,
                Err(e) => return fail(e),
            };
            let entries = journal::entries(&records);
            for k in &key {
                match entries.iter().find(|e| &e.key == k) {
                    None => return fail(format!("no entry with key `{k}`")),
                    Some(e) if matches!(e.status, journal::Status::Pending | journal::Status::Delivered) => {
                        return fail(format!("`{k}` is {}, not dead or dropped", e.status.as_str()))
                    }
                    Some(_) => {}
                }
            }
            let now = alertflow::event::time::wall_clock_us();
            let mut n = 0;
            for e in entries.iter().filter(|e| matches!(e.status, journal::Status::Dead | journal::Status::Dropped) && (dead || key.contains(&e.key))) {
                j.add(now, "action_replayed", &e.key, &serde_json::json!({"entry": e.entry, "action": e.action}));
                n += 1;
            }
            if let Err(e) = j.sync() {
                return fail(format!("{}: {e}", j.path().display()));
            }
            println!("{n} entries queued again; the next start delivers them");
            ExitCode::SUCCESS
        }
    }
}

fn cmd_hunt(
    archive: &std::path::Path,
    feed: &std::path::Path,
    format: Option<&str>,
    kind: Option<&str>,
    days: u32,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use alertflow::enrich::intel::{Format as FeedFormat, IndicatorSet, Kind, LoadOptions};
    use alertflow::pipeline::hunt::{event_files, hunt, Wanted};
    let bytes = std::fs::read(feed).with_context(|| format!("reading {}", feed.display()))?;
    let format = format.and_then(FeedFormat::from_name).unwrap_or_else(|| FeedFormat::guess(feed, &bytes));
    let kind = match kind {
        Some(k) => Some(Kind::from_name(k).ok_or_else(|| anyhow::anyhow!("--type {k}: not one of {}", Kind::NAMES))?),
        None => None,
    };
    let now = alertflow::event::time::wall_clock_us();
    let set =
        IndicatorSet::load(&bytes, &LoadOptions { format, kind, now_us: now, ..Default::default() }).map_err(|e| anyhow::anyhow!("{}: {e}", feed.display()))?;
    let name = feed.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let files = event_files(archive, days, now);
    let wanted = [Wanted { version: alertflow::enrich::Version::new(&name, &bytes, now), set: &set }];
    let stats = match output {
        Some(p) => hunt(&files, &wanted, &mut std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?))?,
        None => hunt(&files, &wanted, &mut std::io::BufWriter::new(std::io::stdout().lock()))?,
    };
    eprintln!(
        "hunted {} indicators over {} events in {} files: {} matching events ({} unreadable lines)",
        set.len(),
        stats.events,
        stats.files,
        stats.matches,
        stats.unreadable
    );
    Ok(())
}

fn cmd_check(file: &std::path::Path) -> ExitCode {
    match Config::load(file) {
        Ok(c) => {
            // The enrichment files must load too.
            if c.enrich.enabled {
                let (_, report) = alertflow::enrich::Sources::open(&c.enrich);
                if !report.failed.is_empty() {
                    for (name, e) in &report.failed {
                        eprintln!("{}: enrich: {name}: {e}", file.display());
                    }
                    eprintln!("{}: {} problem{}", file.display(), report.failed.len(), if report.failed.len() == 1 { "" } else { "s" });
                    return ExitCode::from(2);
                }
            }
            for w in &c.state.warnings {
                eprintln!("{}: warning: {w}", file.display());
            }
            if let Some(sc) = &c.scorer {
                let mut slow = sc.interpreted();
                slow.dedup();
                for name in slow {
                    eprintln!("{}: note: score rule `{name}` runs in the CEL interpreter (functions, macros, ternaries or mixed int and double are beyond the typed subset evaluated on the alert's fields; same results, slower per alert)", file.display());
                }
            }
            println!("{}: ok ({} source{})", file.display(), c.sources.len(), if c.sources.len() == 1 { "" } else { "s" });
            let text = Config::read(file).map(|t| Config::rules_in_force(&t)).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            // Rules from Sigma files (the configuration's own are listed below).
            let sigma: Vec<_> = c.state.engine.rules.iter().filter(|r| !text.iter().any(|(s, n, _)| *s == "state.rules" && *n == r.name)).collect();
            if !sigma.is_empty() {
                use std::io::Write as _;
                let _ = writeln!(out, "state.sigma rules in force:");
                for r in sigma {
                    let role = if r.emit { "" } else { ", feeds other rules" };
                    let range = r.condition.range.map(|x| format!(", {x}")).unwrap_or_default();
                    let _ = writeln!(out, "  {}  ({}{range}{role})", r.name, r.condition.type_name());
                }
            }
            let mut last = "";
            for (section, name, origin) in &text {
                use std::io::Write as _;
                // A closed pipe (`| head`) ends the listing, not the process.
                if *section != last {
                    last = section;
                    if writeln!(out, "{section} in force:").is_err() {
                        break;
                    }
                }
                if writeln!(out, "  {name}  ({})", origin.as_str()).is_err() {
                    break;
                }
            }
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!("{}: {} problem{}", file.display(), errs.0.len(), if errs.0.len() == 1 { "" } else { "s" });
            ExitCode::from(2)
        }
    }
}

fn cmd_run(config: Option<PathBuf>, archive: Option<PathBuf>, inputs: Vec<String>, metrics_listen: Option<String>, format: Format) -> anyhow::Result<()> {
    let mut cfg = load_config(config.as_ref())?;
    apply_archive(&mut cfg, archive);
    if !inputs.is_empty() {
        let mut fc = alertflow::demo::replay_file_config(inputs);
        fc.follow = true;
        cfg.sources.push(SourceConfig { name: unique_name(&cfg, "input"), kind: SourceKind::File(fc), overflow: Overflow::Block, format, timezone: None });
    }
    if let Some(l) = metrics_listen {
        cfg.metrics.listen = if l.is_empty() { None } else { Some(l.parse().with_context(|| format!("--metrics-listen {l}"))?) };
    }
    let shutdown = Arc::new(AtomicBool::new(false));
    let health = Arc::new(Health::default());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().thread_name("alertflow-io").build()?;
    if let Some(addr) = cfg.metrics.listen {
        let handle = alertflow::api::install_recorder().map_err(anyhow::Error::msg)?;
        let query = cfg.metrics.query_api.clone().map(|config| alertflow::api::QueryApi { config, archive: cfg.archive.root.clone() });
        let local = alertflow::api::serve(&rt, addr, handle, health.clone(), query).with_context(|| format!("metrics listener on {addr}"))?;
        tracing::info!(%local, "serving /metrics and /health");
    }
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading enrichment sources");
            alertflow::enrich::RELOAD_REQUESTED.store(true, Ordering::Relaxed);
        }
    });
    let flag = shutdown.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: sealing open segments");
        flag.store(true, Ordering::Relaxed);
    });
    // "running" is logged by the pipeline once the archive lock and every listener are held.
    let summary = pipeline::run(&cfg, Mode::Follow, shutdown, None, Some(health))?;
    tracing::info!(events = summary.events, rows = summary.rows_archived, segments = summary.segments_sealed, "stopped");
    rt.shutdown_background();
    Ok(())
}

fn cmd_replay(config: Option<PathBuf>, archive: Option<PathBuf>, inputs: Vec<String>, json: bool, no_progress: bool, format: Format) -> anyhow::Result<()> {
    let mut cfg = load_config(config.as_ref())?;
    apply_archive(&mut cfg, archive);
    // Replay reads what it is given, not the configured sources.
    cfg.sources.clear();
    let files: Vec<String> = inputs.iter().filter(|i| i.as_str() != "-").cloned().collect();
    for f in &files {
        let found = alertflow::ingest::file::expand(std::slice::from_ref(f));
        anyhow::ensure!(found.iter().any(|p| p.is_file()), "{f}: no such file");
    }
    if !files.is_empty() {
        cfg.sources.push(SourceConfig {
            name: "replay".into(),
            kind: SourceKind::File(alertflow::demo::replay_file_config(files.clone())),
            overflow: Overflow::Block,
            format,
            timezone: None,
        });
    }
    if inputs.iter().any(|i| i == "-") {
        cfg.sources.push(SourceConfig { name: "stdin".into(), kind: SourceKind::Stdin, overflow: Overflow::Block, format, timezone: None });
    }
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bar = (!no_progress && !json && std::io::stderr().is_terminal()).then(|| {
        let total = FileSource::total_bytes(&files);
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let (p, d) = (progress.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                pb.set_position(p.load(Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            pb.finish_and_clear();
        })
    });
    let result = pipeline::run(&cfg, Mode::ReadToEnd, Arc::new(AtomicBool::new(false)), Some(progress), None);
    done.store(true, Ordering::Relaxed);
    if let Some(b) = bar {
        let _ = b.join();
    }
    let summary = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    Ok(())
}

fn cmd_config_init(profile: &str, out: Option<PathBuf>, force: bool) -> anyhow::Result<()> {
    let text = alertflow::config::PROFILES.iter().find(|(n, _)| *n == profile).map(|(_, t)| *t).expect("clap checks the profile");
    match out {
        None => print!("{text}"),
        Some(p) => {
            anyhow::ensure!(force || !p.exists(), "{} exists; give --force to overwrite it", p.display());
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {} (profile {profile}); check it with: alertflow check-config {}", p.display(), p.display());
        }
    }
    Ok(())
}

fn cmd_man(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cmd = <Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(cmd, out).with_context(|| format!("writing man pages into {}", out.display()))?;
    Ok(())
}

fn cmd_prune(config: Option<PathBuf>, archive: Option<PathBuf>, days: Option<u32>, dry_run: bool) -> anyhow::Result<()> {
    use alertflow::archive::retention;
    let mut cfg = load_config(config.as_ref())?;
    apply_archive(&mut cfg, archive);
    if let Some(d) = days {
        anyhow::ensure!(d > 0, "--days 0 would keep nothing; give the number of days to keep");
        cfg.archive.retention.days = [Some(d); 4];
    }
    let r = cfg.archive.retention;
    anyhow::ensure!(r.any(), "no retention: set archive.retention_days in the configuration or give --days");
    let root = &cfg.archive.root;
    let pass = retention::prune(root, &r, alertflow::event::time::wall_clock_us(), dry_run).map_err(|e| match e {
        alertflow::archive::ArchiveError::Locked(_) => {
            anyhow::anyhow!("{}: a running alertflow holds this archive; it removes expired partitions itself every hour", root.display())
        }
        e => e.into(),
    })?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for e in &pass.expired {
        println!("{verb} {}/date={} ({} files, {} bytes)", e.table.dir(), e.date, e.files, e.bytes);
    }
    for (e, why) in &pass.kept {
        println!("kept {}/date={}: {why}", e.table.dir(), e.date);
    }
    let bytes: u64 = pass.expired.iter().map(|e| e.bytes).sum();
    println!("{verb} {} partitions, {} bytes", pass.expired.len(), bytes);
    Ok(())
}

fn cmd_compact(config: Option<PathBuf>, archive: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    use alertflow::archive::{compact, props};
    let mut cfg = load_config(config.as_ref())?;
    apply_archive(&mut cfg, archive);
    let root = &cfg.archive.root;
    anyhow::ensure!(root.join("events").is_dir(), "{}: no archive here", root.display());
    let writer = props::writer_properties(props::for_compaction(cfg.archive.parquet))?;
    let done = compact::run_by_hand(root, &cfg.archive.compaction, &writer, dry_run).map_err(|e| match e {
        alertflow::archive::ArchiveError::Locked(_) => {
            anyhow::anyhow!("{}: a running alertflow holds this archive; it compacts quiet hours itself", root.display())
        }
        e => e.into(),
    })?;
    for d in &done {
        if dry_run {
            println!("would merge {}/{}: {} segments", d.table.dir(), d.partition, d.segments);
        } else {
            println!(
                "merged {}/{}: {} segments into {} files ({} rows, {} bytes -> {} bytes)",
                d.table.dir(),
                d.partition,
                d.segments,
                d.files,
                d.rows,
                d.bytes_before,
                d.bytes_after
            );
        }
    }
    let segments: usize = done.iter().map(|d| d.segments).sum();
    println!("{} {} partitions, {segments} segments", if dry_run { "would merge" } else { "merged" }, done.len());
    Ok(())
}

fn cmd_demo(dir: &std::path::Path) -> anyhow::Result<()> {
    let r = alertflow::demo::run(dir)?;
    println!("alertflow demo: one hour of a small site (~300 workstations, ~20 servers) behind one");
    println!("Suricata sensor, real traffic with attacks planted (data/demo/SOURCES.md), replayed with");
    println!("the default configuration and the site's asset inventory.\n");
    let items = r.queue.len().max(1);
    println!(
        "{} events, {} alerts -> {} items for the analyst ({:.0}x fewer): incidents, and alerts at medium or above",
        r.summary.events,
        r.alerts,
        r.queue.len(),
        r.alerts as f64 / items as f64
    );
    println!("archived under {} (events/, alerts/, incidents/; {} event rows read back)\n", r.dir.display(), r.rows_read_back);
    println!("the analyst's queue, by score:");
    for (i, it) in r.queue.iter().take(10).enumerate() {
        let what = match (it.kind, it.alerts) {
            ("incident", 1) => "incident of 1 alert".to_string(),
            ("incident", n) => format!("incident of {n} alerts"),
            _ => "alert".to_string(),
        };
        println!("{:>3}. {:>3} {:<8} {what}", i + 1, it.score, it.priority);
        let mut text = it.text.clone();
        if text.len() > 400 {
            let mut cut = 400;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        println!("       {text}");
    }
    if r.queue.len() > 10 {
        println!("  … and {} more", r.queue.len() - 10);
    }
    let inc = r.dir.join("incidents");
    println!("\nquery it with DuckDB:");
    println!(
        "  duckdb -c \"SELECT incident_id, max(score) AS score, max(alert_count) AS alerts, arg_max(reasons->>'$[0].reason', last_seen) AS story FROM read_parquet('{}/**/*.parquet', hive_partitioning=true) GROUP BY 1 ORDER BY 2 DESC LIMIT 10\"",
        inc.display()
    );
    Ok(())
}

fn apply_archive(cfg: &mut Config, archive: Option<PathBuf>) {
    if let Some(root) = archive {
        // A dead-letter file left at its default follows the archive.
        if cfg.dead_letter.path.as_deref() == Some(alertflow::config::default_dead_letter_path(&cfg.archive.root).as_path()) {
            cfg.dead_letter.path = Some(alertflow::config::default_dead_letter_path(&root));
        }
        cfg.archive.root = root;
    }
}

fn unique_name(cfg: &Config, base: &str) -> String {
    let mut name = base.to_string();
    let mut i = 2;
    while cfg.sources.iter().any(|s| s.name == name) {
        name = format!("{base}{i}");
        i += 1;
    }
    name
}
