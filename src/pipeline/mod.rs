//! Wiring: sources → parse workers → archive writer, with bounded channels and an
//! orderly shutdown. No business logic lives here.
//!
//! Built sink first: the archive is opened (and recovered) before anything reads, so
//! sources start from the positions the archive has sealed. Shutdown order: sources stop
//! (flag or end of input) and drop their senders → parse workers drain and exit → the
//! archive writer drains, seals open segments and returns its totals.

pub mod alert_worker;
pub mod alerts;
pub mod commit;
pub mod descriptors;
pub mod hunt;
pub mod snapshots;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use serde::Serialize;

use crate::archive::{ArchiveError, ArchiveTotals};
use crate::config::{Config, SourceKind};
use crate::deadletter::DeadLetter;
use crate::event::stats::PipelineStats;
use crate::ingest::file::FileSource;
use crate::ingest::{net, unix, RawBatch, SourceCtx, SourceInfo};
use crate::metrics as m;
use crate::parse::stage::publish;
use crate::parse::{EveParser, ParseLimits, ParseStage, ParsedBatch};
use commit::Committer;

/// Health facts shared with the HTTP listener.
#[derive(Default)]
pub struct Health {
    pub rows_sealed: AtomicU64,
    pub commits: AtomicU64,
    /// Unix seconds of the last commit (0: none yet).
    pub last_commit_unix: AtomicU64,
    pub archive_failed: AtomicBool,
    /// The run's counters and its sources (set when the pipeline starts).
    pub stats: std::sync::OnceLock<Arc<PipelineStats>>,
}

/// How sources behave: follow forever (`run`) or read to the end (`replay`, `demo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Follow,
    ReadToEnd,
}

/// What a finished (or stopped) pipeline reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub seconds: f64,
    pub bytes_in: u64,
    pub lines: u64,
    pub blank_lines: u64,
    pub events: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub timestamp_errors: u64,
    pub invalid_fields: u64,
    /// Events whose time was outside the plausible window (archived under their arrival hour).
    pub implausible_times: u64,
    pub rows_archived: u64,
    /// Rows of the `alerts` and `incidents` tables.
    pub alert_rows: u64,
    pub incident_rows: u64,
    /// Audit records (rows of `actions`; lines of `_audit/audit.jsonl`).
    pub audit_records: u64,
    pub segments_sealed: u64,
    pub parquet_bytes: u64,
    pub resumed_files: usize,
    pub archive: String,
    pub dead_letter: Option<String>,
}

impl Summary {
    pub fn events_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The human summary printed by `replay` and `demo`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mb = self.bytes_in as f64 / 1e6;
        s.push_str(&format!(
            "{} events in {:.2} s ({:.0} events/s, {:.1} MB/s)\n",
            self.events,
            self.seconds,
            self.events_per_sec(),
            if self.seconds > 0.0 { mb / self.seconds } else { 0.0 }
        ));
        let mut types: Vec<_> = self.events_by_type.iter().collect();
        types.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = types.iter().map(|(t, n)| format!("{t} {n}")).collect();
        s.push_str(&format!("  by type:  {}\n", if list.is_empty() { "-".into() } else { list.join(", ") }));
        let total_rejected: u64 = self.rejected.values().sum();
        if total_rejected == 0 {
            s.push_str("  rejected: none\n");
        } else {
            let list: Vec<String> = self.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
            s.push_str(&format!("  rejected: {total_rejected} ({})", list.join(", ")));
            if let Some(d) = &self.dead_letter {
                s.push_str(&format!(", see {d}"));
            }
            s.push('\n');
        }
        if self.timestamp_errors > 0 || self.invalid_fields > 0 {
            s.push_str(&format!(
                "  kept with nulls: {} without event time (EVE \"ts-error\", syslog without a date), {} unusable field values\n",
                self.timestamp_errors, self.invalid_fields
            ));
        }
        if self.implausible_times > 0 {
            s.push_str(&format!(
                "  implausible event times: {} (outside the plausible window; archived under the hour they arrived, timestamp kept)\n",
                self.implausible_times
            ));
        }
        s.push_str(&format!(
            "  archived: {} rows in {} segments, {:.1} MB parquet under {}\n",
            self.rows_archived,
            self.segments_sealed,
            self.parquet_bytes as f64 / 1e6,
            self.archive
        ));
        if self.alert_rows > 0 || self.incident_rows > 0 {
            s.push_str(&format!(
                "  state: {} alert rows, {} incident changes (tables alerts/ and incidents/ beside events/)\n",
                self.alert_rows, self.incident_rows
            ));
        }
        if self.audit_records > 0 {
            s.push_str(&format!("  audit: {} records (table actions/, trail _audit/audit.jsonl; `alertflow audit verify`)\n", self.audit_records));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    // The cause is part of the message, not a `source`: a cause chain prints it once.
    #[error("dead-letter file {path}: {error}")]
    DeadLetter { path: String, error: std::io::Error },
    #[error("source `{name}`: {error}")]
    Source { name: String, error: std::io::Error },
    #[error("no sources: give an input (--input PATH) or add [[sources]] to the config")]
    NoSources,
}

/// Runs the pipeline until every source has ended (replay) or `shutdown` is set (run).
pub fn run(
    cfg: &Config,
    mode: Mode,
    shutdown: Arc<AtomicBool>,
    progress: Option<Arc<AtomicU64>>,
    health: Option<Arc<Health>>,
) -> Result<Summary, PipelineError> {
    if cfg.sources.is_empty() {
        return Err(PipelineError::NoSources);
    }
    // Descriptors: the soft limit raised to the hard one, listener caps fitted beside the
    // archive's reserve (a flood of idle connections is refused at accept, not by the
    // archive failing).
    let limit = descriptors::raise_limit();
    let mut fitted = cfg.clone();
    descriptors::fit_listeners(&mut fitted, limit);
    let cfg = &fitted;
    let started = Instant::now();
    let dead_letter = Arc::new(match &cfg.dead_letter.path {
        Some(p) => DeadLetter::open(Some(p), cfg.dead_letter.sample_bytes, cfg.dead_letter.max_bytes)
            .map_err(|error| PipelineError::DeadLetter { path: p.display().to_string(), error })?,
        None => DeadLetter::disabled(),
    });
    let stats = Arc::new(PipelineStats::default());
    let health = health.unwrap_or_default();
    let _ = health.stats.set(stats.clone());

    // Sink first: recovery decides where sources resume.
    let (mut archive, recovered) = Committer::open(cfg.archive.clone())?;
    let sealed = archive.sealed();
    if cfg.state.engine.enabled {
        let enrich = (cfg.enrich.enabled || cfg.scorer.is_some()).then(|| start_enrichment(cfg));
        let path = alerts::AlertPath::new(&cfg.state.engine, enrich.as_ref(), cfg.scorer.clone())
            .with_triage(&cfg.triage)
            .with_audit(cfg.audit.enabled)
            .with_lines(cfg.state.output.is_some() || cfg.state.late_output.is_some() || cfg.actions.active())
            .with_stats(stats.clone());
        archive.enable_alerts(path, cfg.state.output.clone(), cfg.state.late_output.clone(), cfg.audit.enabled)?;
        if cfg.state.overload.shed && mode == Mode::Follow {
            archive.shed_when_behind(cfg.state.overload.high_water);
        }
        if cfg.actions.active() {
            archive.enable_actions(cfg.actions.clone())?;
        }
    }
    if recovered.segments > 0 {
        tracing::info!(segments = recovered.segments, rolled_forward = recovered.rolled_forward, discarded = recovered.discarded, "archive recovered");
    }
    let cap = cfg.pipeline.channel_batches;
    // The sources' queue is bounded in bytes (channel_batches × read_bytes); its count of
    // batches only needs to hold many small ones.
    let budget = Arc::new(crate::event::budget::ByteBudget::new(cap as u64 * cfg.pipeline.read_bytes as u64));
    let (raw_tx, raw_rx) = bounded(cap.saturating_mul(64));
    let (parsed_tx, parsed_rx) = bounded::<ParsedBatch>(cap);

    let archive_thread = spawn_commit_thread(archive, parsed_rx, raw_rx.clone(), mode, health.clone(), dead_letter.clone(), shutdown.clone());

    let workers = spawn_parse_workers(cfg, &raw_rx, &parsed_tx, &dead_letter, &stats, &budget);
    drop(raw_rx);
    drop(parsed_tx);

    let progress = progress.unwrap_or_default();
    let mut source_threads = Vec::new();
    let mut resumed_files = 0;
    for (id, sc) in cfg.sources.iter().enumerate() {
        let ctx = SourceCtx {
            info: Arc::new(SourceInfo { id, name: sc.name.as_str().into(), zone: sc.timezone.clone().map(|z| &*Box::leak(Box::new(z))) }),
            tx: raw_tx.clone(),
            budget: budget.clone(),
            shutdown: shutdown.clone(),
            dead_letter: dead_letter.clone(),
            progress: progress.clone(),
            max_line_bytes: cfg.pipeline.max_line_bytes,
            read_bytes: cfg.pipeline.read_bytes,
            overflow: sc.overflow,
            format: sc.format,
            stats: stats.clone(),
            health: stats.add_source(&sc.name, sc.kind.type_name()),
        };
        let record = ctx.health.clone();
        let (handle, resumed) = start_source(sc, ctx, mode, &recovered.checkpoint, &sealed, record)?;
        resumed_files += resumed;
        source_threads.push((sc.name.clone(), handle));
    }
    drop(raw_tx);
    if mode == Mode::Follow {
        // The archive lock, every listener and socket are held now.
        tracing::info!(archive = %cfg.archive.root.display(), sources = cfg.sources.len(), "alertflow running");
        if let Some(every) = cfg.metrics.stats_log {
            spawn_stats_line(every, stats.clone(), health.clone(), shutdown.clone());
        }
    }

    let mut first_err = None;
    for (name, h) in source_threads {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(source = %name, error = %e, "source failed");
                first_err.get_or_insert(PipelineError::Source { name, error: e });
            }
            Err(_) => tracing::error!(source = %name, "source thread panicked"),
        }
    }
    for w in workers {
        let _ = w.join();
    }
    let totals = archive_thread.join().expect("archive thread panicked")?;
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(Summary {
        seconds: started.elapsed().as_secs_f64(),
        bytes_in: stats.bytes.load(Ordering::Relaxed),
        lines: stats.lines.load(Ordering::Relaxed),
        blank_lines: stats.blank.load(Ordering::Relaxed),
        events: stats.events.load(Ordering::Relaxed),
        events_by_type: stats.types(),
        rejected: stats.rejected(),
        timestamp_errors: stats.ts_errors.load(Ordering::Relaxed),
        invalid_fields: stats.field_errors.load(Ordering::Relaxed),
        implausible_times: stats.implausible_times.load(Ordering::Relaxed),
        rows_archived: totals.rows_sealed,
        alert_rows: totals.alert_rows_sealed,
        incident_rows: totals.incident_rows_sealed,
        audit_records: totals.action_rows_sealed,
        segments_sealed: totals.segments_sealed,
        parquet_bytes: totals.bytes_sealed,
        resumed_files,
        archive: cfg.archive.root.join(crate::archive::EVENTS_TABLE).display().to_string(),
        dead_letter: (dead_letter.records() > 0).then(|| dead_letter.path().map(|p| p.display().to_string())).flatten(),
    })
}

/// Logs one line of how the run goes every `every`: events and their rate, rejected and
/// dropped lines, rows archived, seconds since the last commit, bytes the followed files
/// hold beyond what is read, open incidents, and sources not reading.
fn spawn_stats_line(every: Duration, stats: Arc<PipelineStats>, health: Arc<Health>, shutdown: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("stats".into()).spawn(move || {
        let mut last = (Instant::now(), stats.events.load(Ordering::Relaxed), stats.rejected_total(), stats.dropped());
        let mut next = Instant::now() + every;
        while !shutdown.load(Ordering::Relaxed) {
            if Instant::now() < next {
                std::thread::sleep(Duration::from_millis(100).min(every));
                continue;
            }
            next += every;
            let now = (Instant::now(), stats.events.load(Ordering::Relaxed), stats.rejected_total(), stats.dropped());
            let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-3);
            let sources = stats.sources();
            let now_ms = crate::event::stats::now_ms();
            let behind: u64 = sources.iter().map(|s| s.behind_bytes.load(Ordering::Relaxed)).sum();
            let quiet: Vec<String> =
                sources.iter().filter(|s| !matches!(s.state(now_ms), "reading")).map(|s| format!("{}={}", s.name, s.state(now_ms))).collect();
            let last_commit = health.last_commit_unix.load(Ordering::Relaxed);
            tracing::info!(
                events = now.1 - last.1,
                events_per_sec = ((now.1 - last.1) as f64 / secs).round() as u64,
                rejected = now.2 - last.2,
                dropped = now.3 - last.3,
                rows_archived = health.rows_sealed.load(Ordering::Relaxed),
                last_commit_secs = if last_commit > 0 { (now_ms / 1000).saturating_sub(last_commit as i64) } else { -1 },
                behind_bytes = behind,
                open_incidents = stats.open_incidents.load(Ordering::Relaxed),
                not_reading = %quiet.join(" "),
                "stats"
            );
            last = now;
        }
    });
}

/// Opens the enrichment sources and starts their reload thread (file changes every
/// `enrich.reload_poll_secs`, SIGHUP at once); feeds that gain indicators start a
/// retro-hunt over the archive.
fn start_enrichment(cfg: &Config) -> crate::enrich::EnrichRuntime {
    use crate::enrich::{spawn_reloader, EnrichRuntime, Sources, RELOAD_REQUESTED};
    let sources = Sources::open_background(&cfg.enrich);
    let hunt = hunt::RetroHunt::from_config(cfg);
    spawn_reloader(&sources, cfg.enrich.reload_poll, &RELOAD_REQUESTED, move |report| {
        if let Some(h) = &hunt {
            h.start(report);
        }
    });
    let mut config = cfg.enrich.clone();
    config.history_seed = crate::archive::layout::recent_files(&cfg.archive.root, crate::archive::Table::Alerts.dir(), 8, crate::event::time::wall_clock_us());
    EnrichRuntime { sources, config }
}

/// The commit coordinator's thread: takes parsed batches in order, ticks every 100 ms
/// (idle seals, event time moving on), and stops the sources when the archive fails.
fn spawn_commit_thread(
    mut archive: Committer,
    parsed_rx: Receiver<ParsedBatch>,
    raw_depth: Receiver<RawBatch>,
    mode: Mode,
    archive_health: Arc<Health>,
    archive_dl: Arc<DeadLetter>,
    archive_stop: Arc<AtomicBool>,
) -> JoinHandle<Result<ArchiveTotals, ArchiveError>> {
    std::thread::Builder::new()
        .name("archive".into())
        .spawn(move || -> Result<ArchiveTotals, ArchiveError> {
            let tick = Duration::from_millis(100);
            let mut last_commits = 0;
            // The alert path's outputs are taken as soon as they are ready, so actions go
            // out without waiting for the next batch or tick.
            let mut alert_outputs = archive.alert_outputs();
            let mut last_tick = Instant::now();
            loop {
                let mut sel = crossbeam_channel::Select::new();
                let parsed_at = sel.recv(&parsed_rx);
                if let Some(rx) = &alert_outputs {
                    sel.recv(rx);
                }
                // A commit in flight lands as soon as its lanes are done: look often.
                let wait = tick.saturating_sub(last_tick.elapsed());
                let wait = if archive.commit_in_flight() { wait.min(Duration::from_millis(2)) } else { wait };
                let res = match sel.ready_timeout(wait) {
                    Ok(i) if i == parsed_at => match parsed_rx.try_recv() {
                        Ok(batch) => archive.accept(batch),
                        Err(crossbeam_channel::TryRecvError::Empty) => Ok(()),
                        Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                    },
                    Ok(_) => {
                        let r = archive.collect_ready();
                        // A channel whose thread is gone is always "ready": stop watching it.
                        if !archive.alert_thread_running() {
                            alert_outputs = None;
                        }
                        r
                    }
                    Err(_) if last_tick.elapsed() < tick => archive.poll_commit(),
                    Err(_) => {
                        last_tick = Instant::now();
                        archive.tick()
                    }
                };
                if let Err(e) = res {
                    metrics::counter!(m::ARCHIVE_ERRORS).increment(1);
                    archive_health.archive_failed.store(true, Ordering::Relaxed);
                    // Nothing more can be archived: stop the sources (an idle file source
                    // would otherwise wait forever).
                    archive_stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                let t = archive.totals();
                if t.commits != last_commits {
                    last_commits = t.commits;
                    archive_dl.flush();
                    archive_health.rows_sealed.store(t.rows_sealed, Ordering::Relaxed);
                    archive_health.commits.store(t.commits, Ordering::Relaxed);
                    archive_health.last_commit_unix.store((crate::event::time::wall_clock_us() / 1_000_000) as u64, Ordering::Relaxed);
                }
                metrics::gauge!(m::QUEUE_DEPTH, "stage" => "parse").set(raw_depth.len() as f64);
                metrics::gauge!(m::QUEUE_DEPTH, "stage" => "archive").set(parsed_rx.len() as f64);
            }
            let last = (|| {
                if mode == Mode::ReadToEnd {
                    // A replay is complete: open keys roll up, open incidents close.
                    archive.flush_alerts()?;
                }
                archive.finish()
            })();
            let t = match last {
                Ok(t) => t,
                Err(e) => {
                    // The last commit failed: as unhealthy as a failure while running.
                    metrics::counter!(m::ARCHIVE_ERRORS).increment(1);
                    archive_health.archive_failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            };
            archive_dl.flush();
            archive_health.rows_sealed.store(t.rows_sealed, Ordering::Relaxed);
            Ok(t)
        })
        .expect("spawn archive thread")
}

/// The parse workers: raw batches in, parsed batches out, each with its own parser.
fn spawn_parse_workers(
    cfg: &Config,
    raw_rx: &Receiver<RawBatch>,
    parsed_tx: &crossbeam_channel::Sender<ParsedBatch>,
    dead_letter: &Arc<DeadLetter>,
    stats: &Arc<PipelineStats>,
    budget: &Arc<crate::event::budget::ByteBudget>,
) -> Vec<JoinHandle<()>> {
    let plausible = cfg.pipeline.plausible;
    let limits = ParseLimits {
        max_line_bytes: cfg.pipeline.max_line_bytes,
        max_depth: cfg.pipeline.max_json_depth,
        context: cfg.state.engine.enabled && cfg.state.engine.context.enabled,
    };
    let mut workers = Vec::new();
    for i in 0..cfg.pipeline.parse_workers {
        let (rx, tx, dl, st, budget) = (raw_rx.clone(), parsed_tx.clone(), dead_letter.clone(), stats.clone(), budget.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("parse-{i}"))
                .spawn(move || {
                    let mut stage = ParseStage::new(EveParser::new(limits), dl).with_plausible(plausible);
                    for raw in rx {
                        let n = raw.data.len() as u64;
                        let parsed = stage.process(raw);
                        budget.give(n);
                        publish(&parsed.stats);
                        st.add(&parsed.stats);
                        if tx.send(parsed).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawn parse worker"),
        );
    }
    workers
}

/// Binds (sockets) and starts one source on its own thread; returns the thread and how
/// many of its files resume from the archive's positions.
fn start_source(
    sc: &crate::config::SourceConfig,
    ctx: SourceCtx,
    mode: Mode,
    checkpoint: &crate::event::position::Checkpoint,
    sealed: &Arc<crate::event::position::Sealed>,
    record: Arc<crate::event::stats::SourceHealth>,
) -> Result<(JoinHandle<std::io::Result<()>>, usize), PipelineError> {
    let name = sc.name.clone();
    let source_err = |error| PipelineError::Source { name: name.clone(), error };
    let mut resumed_files = 0;
    let handle: std::thread::JoinHandle<std::io::Result<()>> = match &sc.kind {
        SourceKind::File(fc) => {
            let mut fc = fc.clone();
            fc.follow = mode == Mode::Follow;
            let resume = checkpoint.file_offsets(&sc.name);
            resumed_files += resume.len();
            let src = FileSource::new(fc, ctx, resume);
            spawn_source(&name, &record, move || src.run())
        }
        SourceKind::Stdin => spawn_source(&name, &record, move || crate::ingest::stdin::run(ctx, std::io::stdin().lock())),
        SourceKind::UnixStream(uc) => {
            let l = unix::bind_stream(uc).map_err(source_err)?;
            let uc = uc.clone();
            spawn_source(&name, &record, move || unix::run_stream(ctx, uc, l))
        }
        SourceKind::UnixDgram(uc) => {
            let s = unix::bind_dgram(uc).map_err(source_err)?;
            let uc = uc.clone();
            spawn_source(&name, &record, move || unix::run_dgram(ctx, uc, s))
        }
        SourceKind::SyslogUdp(uc) => {
            let s = net::bind_udp(uc).map_err(source_err)?;
            spawn_source(&name, &record, move || net::run_udp(ctx, s))
        }
        SourceKind::SyslogTcp(tc) => {
            let (l, tls) = net::bind_tcp(tc).map_err(source_err)?;
            let tc = tc.clone();
            spawn_source(&name, &record, move || net::run_tcp(ctx, tc, l, tls))
        }
        SourceKind::Redis(rc) => {
            let resume = checkpoint.sources.get(&sc.name).and_then(|s| s.redis.clone());
            let src = crate::ingest::redis::RedisSource::new(ctx, rc.clone(), sealed.clone(), resume);
            spawn_source(&name, &record, move || src.run())
        }
    };
    Ok((handle, resumed_files))
}

/// Runs a source on its own thread; its health record says how it ended.
fn spawn_source(
    name: &str,
    record: &Arc<crate::event::stats::SourceHealth>,
    f: impl FnOnce() -> std::io::Result<()> + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let record = record.clone();
    std::thread::Builder::new()
        .name(format!("source-{name}"))
        .spawn(move || {
            let res = f();
            record.end(res.as_ref().err().map(|e| e.to_string()));
            res
        })
        .expect("spawn source thread")
}
