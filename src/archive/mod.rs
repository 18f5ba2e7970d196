//! The archive: event batches in, sealed Parquet segments out.
//!
//! Layout: `<root>/events/date=YYYY-MM-DD/hour=HH/part-<epoch>-<i>-<n>.parquet` (UTC event
//! time), zstd, row groups bounded by bytes, one open writer per partition per writer lane.
//!
//! Exactly-once: rows are written into hidden temporaries
//! (`.part-<epoch>-<lane>-<i>.parquet.tmp`, ignored by DuckDB, pyarrow and Spark). A commit
//! closes every open writer with the current source positions in its footer, fsyncs each
//! file, then renames them into place and fsyncs the directories. The first rename is the
//! commit point: on start, [`recovery::recover`] finishes a half-renamed commit, deletes
//! temporaries of commits that never started renaming, and returns the newest positions,
//! from which sources resume.
//!
//! The coordinator ([`ArchiveWriter`], one thread) keeps batches of each stream in their
//! original order, advances positions, decides when to commit and renames; the Parquet
//! encoding runs on [`lane`] threads. Triggers for a commit: open bytes ≥
//! `segment_max_bytes`, more partitions than `max_open_partitions`, no new rows for
//! `idle_seal`, oldest open row older than `max_segment_age`, and shutdown.

pub mod checkpoint;
pub mod lane;
pub mod props;
pub mod recovery;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use parquet::file::metadata::KeyValue;

use crate::event::position::Position;
use crate::metrics as m;
use crate::event::handoff::ParsedBatch;
pub use checkpoint::Checkpoint;
use lane::{Lane, LaneMsg};
pub use props::ParquetSettings;

/// Name of the events table directory under the archive root.
pub const EVENTS_TABLE: &str = "events";

/// The tables of the archive, each a directory of Hive partitions under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Every event, as parsed.
    Events,
    /// One row per alert event, with dedup and incident annotations.
    Alerts,
    /// One row per incident state change.
    Incidents,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Events, Table::Alerts, Table::Incidents];

    pub fn dir(self) -> &'static str {
        match self {
            Table::Events => EVENTS_TABLE,
            Table::Alerts => "alerts",
            Table::Incidents => "incidents",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("parquet writer: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("segment {path} has no readable checkpoint: {reason}")]
    BadSegment { path: PathBuf, reason: String },
    #[error("archive writer lane {0} stopped")]
    LaneGone(usize),
    #[error("archive {0} is in use by another alertflow process")]
    Locked(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub root: PathBuf,
    pub parquet: ParquetSettings,
    /// Threads that encode Parquet.
    pub writer_threads: usize,
    pub segment_max_bytes: u64,
    pub max_open_partitions: usize,
    pub idle_seal: Duration,
    pub max_segment_age: Duration,
}

/// Totals since start.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveTotals {
    /// Rows of the events table.
    pub rows_sealed: u64,
    pub alert_rows_sealed: u64,
    pub incident_rows_sealed: u64,
    pub segments_sealed: u64,
    pub bytes_sealed: u64,
    pub commits: u64,
}

struct LaneHandle {
    tx: Sender<LaneMsg>,
    open_bytes: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

pub struct ArchiveWriter {
    cfg: ArchiveConfig,
    epoch: u64,
    lanes: Vec<LaneHandle>,
    next_lane: usize,
    next_state_lane: usize,
    open_hours: BTreeSet<i64>,
    open_rows: u64,
    oldest_open: Option<Instant>,
    last_write: Instant,
    checkpoint: Checkpoint,
    reorder: HashMap<(usize, u64), Reorder>,
    totals: ArchiveTotals,
    sealed: Arc<checkpoint::Sealed>,
    /// Dedup and correlation of alerts, run on batches in archive order.
    state: Option<StateRuntime>,
    /// Too many notifications wait: commit at the next opportunity.
    commit_due: bool,
    /// Held for the writer's lifetime: one process writes an archive at a time.
    _lock: File,
}

/// The state stage and what belongs to it: its snapshot directory and the JSON lines
/// waiting for the commit that holds their rows.
struct StateRuntime {
    worker: crate::state::worker::StateWorker,
    dir: PathBuf,
    output: Option<(PathBuf, std::io::BufWriter<File>)>,
    pending: Vec<String>,
    /// Late alerts of the `late_output` policy, when they have a file of their own.
    late_output: Option<(PathBuf, std::io::BufWriter<File>)>,
    pending_late: Vec<String>,
}

fn open_output(p: Option<PathBuf>) -> Result<Option<(PathBuf, std::io::BufWriter<File>)>, ArchiveError> {
    let Some(p) = p else { return Ok(None) };
    if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let f = File::options().create(true).append(true).open(&p).map_err(io_err(&p))?;
    Ok(Some((p, std::io::BufWriter::new(f))))
}

/// Notification lines held for the next commit before it is forced.
const MAX_PENDING_LINES: usize = 100_000;

/// Snapshot file of the state after commit `epoch`.
fn state_file(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("state-{epoch:012}.json"))
}

#[derive(Default)]
struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, ParsedBatch>,
}

impl ArchiveWriter {
    /// Opens the archive: runs recovery, starts the writer lanes, and returns the writer
    /// with what recovery found (the positions to resume from).
    pub fn open(cfg: ArchiveConfig) -> Result<(Self, recovery::Recovered), ArchiveError> {
        let table = cfg.root.join(EVENTS_TABLE);
        std::fs::create_dir_all(&table).map_err(io_err(&table))?;
        let lock_path = cfg.root.join(".alertflow.lock");
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(ArchiveError::Locked(cfg.root.clone())),
            Err(std::fs::TryLockError::Error(e)) => return Err(ArchiveError::Io { path: lock_path, source: e }),
        }
        let rec = recovery::recover(&cfg.root)?;
        let props = props::writer_properties(cfg.parquet)?;
        let lanes = (0..cfg.writer_threads.max(1))
            .map(|id| {
                let (tx, rx) = bounded(4);
                let open_bytes = Arc::new(AtomicU64::new(0));
                let lane = Lane::new(id, cfg.root.clone(), props.clone(), rec.next_epoch, open_bytes.clone());
                let thread = std::thread::Builder::new().name(format!("archive-lane-{id}")).spawn(move || lane.run(rx)).expect("spawn writer lane");
                LaneHandle { tx, open_bytes, thread }
            })
            .collect();
        let w = Self {
            epoch: rec.next_epoch,
            lanes,
            next_lane: 0,
            next_state_lane: 0,
            open_hours: BTreeSet::new(),
            open_rows: 0,
            oldest_open: None,
            last_write: Instant::now(),
            checkpoint: rec.checkpoint.clone(),
            reorder: HashMap::new(),
            totals: ArchiveTotals::default(),
            sealed: Arc::new(checkpoint::Sealed::new(rec.checkpoint.clone())),
            state: None,
            commit_due: false,
            _lock: lock,
            cfg,
        };
        Ok((w, rec))
    }

    /// Turns on dedup and correlation: the `alerts` and `incidents` tables fill from the
    /// events, and the state saved with the newest commit is restored.
    pub fn enable_state(&mut self, cfg: &crate::state::stage::StateConfig, output: Option<PathBuf>, late_output: Option<PathBuf>) -> Result<(), ArchiveError> {
        let dir = self.cfg.root.join("_state");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut stage = crate::state::stage::StateStage::new(cfg);
        if self.epoch > 0 {
            let f = state_file(&dir, self.epoch - 1);
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    stage.restore(&text).map_err(|e| ArchiveError::BadSegment { path: f.clone(), reason: format!("state snapshot: {e}") })?;
                    tracing::info!(snapshot = %f.display(), "state restored");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ArchiveError::Io { path: f, source: e }),
            }
        }
        let output = open_output(output)?;
        let late_output = open_output(late_output)?;
        let worker = crate::state::worker::StateWorker::spawn(stage);
        self.state = Some(StateRuntime { worker, dir, output, pending: Vec::new(), late_output, pending_late: Vec::new() });
        Ok(())
    }

    /// Sends the state stage's table rows to the lanes and keeps its lines for the commit.
    fn write_state(&mut self, out: crate::state::stage::StateOutput) -> Result<(), ArchiveError> {
        for (table, batch) in [(Table::Alerts, out.alerts), (Table::Incidents, out.incidents)] {
            let Some(batch) = batch else { continue };
            if batch.num_rows() == 0 {
                continue;
            }
            self.open_hours.extend(batch.hours.iter().copied());
            self.open_rows += batch.num_rows() as u64;
            self.oldest_open.get_or_insert_with(Instant::now);
            // Their own rotation: sharing the events' would pin events to one lane.
            let lane = self.next_state_lane;
            self.next_state_lane = (self.next_state_lane + 1) % self.lanes.len();
            self.lanes[lane].tx.send(LaneMsg::Write(table, batch)).map_err(|_| ArchiveError::LaneGone(lane))?;
        }
        let mut full = false;
        if let Some(st) = self.state.as_mut() {
            st.pending.extend(out.lines);
            if st.late_output.is_some() {
                st.pending_late.extend(out.late_lines);
            } else {
                st.pending.extend(out.late_lines);
            }
            full = st.pending.len() + st.pending_late.len() >= MAX_PENDING_LINES;
        }
        // Notifications wait for their commit: bound what waits (the caller commits).
        self.commit_due |= full;
        Ok(())
    }

    /// Writes the state outputs that are ready (or, with `wait`, all outstanding ones).
    fn collect_state(&mut self, wait: bool) -> Result<(), ArchiveError> {
        let outs = match self.state.as_mut() {
            Some(st) if wait => st.worker.drain(),
            Some(st) => st.worker.ready(),
            None => return Ok(()),
        };
        for o in outs {
            self.write_state(o)?;
        }
        Ok(())
    }

    /// The state after everything submitted, saved durably as the snapshot of `epoch`.
    fn save_state(&mut self, epoch: u64) -> Result<(), ArchiveError> {
        self.collect_state(true)?;
        let Some(st) = self.state.as_mut() else { return Ok(()) };
        let path = state_file(&st.dir, epoch);
        if let Some(res) = st.worker.save_snapshot(&path) {
            res.map_err(|e| ArchiveError::Io { path, source: e })?;
        }
        Ok(())
    }

    /// Positions of the newest commit, for sources that acknowledge upstream.
    pub fn sealed(&self) -> Arc<checkpoint::Sealed> {
        self.sealed.clone()
    }

    pub fn totals(&self) -> ArchiveTotals {
        self.totals
    }

    /// Takes a parsed batch. Batches of a positioned stream are applied in sequence order.
    pub fn accept(&mut self, batch: ParsedBatch) -> Result<(), ArchiveError> {
        if matches!(batch.position, Position::None) {
            return self.apply(batch);
        }
        let key = (batch.source.id, batch.stream);
        let r = self.reorder.entry(key).or_default();
        if batch.seq != r.next {
            r.waiting.insert(batch.seq, batch);
            return Ok(());
        }
        r.next += 1;
        self.apply(batch)?;
        loop {
            let r = self.reorder.get_mut(&key).expect("entry exists");
            let next = r.next;
            match r.waiting.remove(&next) {
                Some(b) => {
                    r.next += 1;
                    self.apply(b)?;
                }
                None => break,
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: ParsedBatch) -> Result<(), ArchiveError> {
        let rows = batch.events.num_rows() as u64;
        if let (Some(st), true) = (&mut self.state, rows > 0) {
            // Cheap: the columns are shared, not copied.
            st.worker.process(&batch.events, crate::event::time::wall_clock_us());
        }
        if rows > 0 {
            let hours = &batch.events.hours;
            let first = hours[0];
            self.open_hours.insert(first);
            if hours.iter().any(|&h| h != first) {
                self.open_hours.extend(hours.iter().copied());
            }
            let lane = self.next_lane;
            self.next_lane = (self.next_lane + 1) % self.lanes.len();
            self.lanes[lane].tx.send(LaneMsg::Write(Table::Events, batch.events)).map_err(|_| ArchiveError::LaneGone(lane))?;
            self.open_rows += rows;
            self.last_write = Instant::now();
            self.oldest_open.get_or_insert(self.last_write);
            metrics::counter!(m::ARCHIVE_ROWS).increment(rows);
            metrics::gauge!(m::ARCHIVE_OPEN_ROWS).set(self.open_rows as f64);
            metrics::gauge!(m::ARCHIVE_OPEN_PARTITIONS).set(self.open_hours.len() as f64);
        }
        self.collect_state(false)?;
        if std::mem::take(&mut self.commit_due) {
            self.commit()?;
        }
        match &batch.position {
            Position::File { fingerprint, offset, path } => self.checkpoint.advance(&batch.source.name, *fingerprint, *offset, path),
            Position::Redis(r) => self.checkpoint.advance_redis(&batch.source.name, r),
            Position::None => {}
        }
        if self.open_bytes() >= self.cfg.segment_max_bytes || self.open_hours.len() > self.cfg.max_open_partitions {
            self.commit()?;
        }
        Ok(())
    }

    fn open_bytes(&self) -> u64 {
        self.lanes.iter().map(|l| l.open_bytes.load(Ordering::Relaxed)).sum()
    }

    /// Called periodically: seals on idle time or segment age.
    pub fn tick(&mut self) -> Result<(), ArchiveError> {
        if let Some(st) = self.state.as_mut() {
            st.worker.advance(crate::event::time::wall_clock_us());
            let rows_before = self.open_rows;
            self.collect_state(false)?;
            if self.open_rows > rows_before {
                self.last_write = Instant::now();
            }
        }
        if self.open_rows == 0 {
            if self.state.as_ref().is_some_and(|s| !s.pending.is_empty() || !s.pending_late.is_empty()) {
                self.emit_without_rows()?;
            }
            return Ok(());
        }
        let idle = self.last_write.elapsed() >= self.cfg.idle_seal;
        let old = self.oldest_open.is_some_and(|t| t.elapsed() >= self.cfg.max_segment_age);
        if idle || old || std::mem::take(&mut self.commit_due) {
            self.commit()?;
        }
        Ok(())
    }

    /// Seals every open segment with the current positions. A commit with no rows writes
    /// nothing (its positions are carried by the next commit).
    pub fn commit(&mut self) -> Result<(), ArchiveError> {
        // Every state output of the batches so far belongs to this commit.
        self.collect_state(true)?;
        self.commit_due = false;
        if self.open_rows == 0 {
            if self.state.as_ref().is_some_and(|s| !s.pending.is_empty() || !s.pending_late.is_empty()) {
                self.emit_without_rows()?;
            }
            return Ok(());
        }
        let ckpt = serde_json::to_string(&self.checkpoint).expect("checkpoint serializes");
        // Every lane closes its segments; they answer once all earlier batches are written.
        let mut replies = Vec::with_capacity(self.lanes.len());
        for (i, lane) in self.lanes.iter().enumerate() {
            let (tx, rx) = bounded(1);
            let metadata = vec![KeyValue::new(checkpoint::KEY_EPOCH.into(), self.epoch.to_string()), KeyValue::new(checkpoint::KEY_CHECKPOINT.into(), ckpt.clone())];
            lane.tx.send(LaneMsg::Seal { epoch: self.epoch, metadata, reply: tx }).map_err(|_| ArchiveError::LaneGone(i))?;
            replies.push(rx);
        }
        let mut sealed = Vec::new();
        let mut first_err = None;
        for (i, rx) in replies.into_iter().enumerate() {
            match rx.recv() {
                Ok(Ok(mut v)) => sealed.append(&mut v),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(ArchiveError::LaneGone(i));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // The state after this commit is saved before the commit point: a restart from
        // this commit continues with exactly this state.
        self.save_state(self.epoch)?;
        // Every temporary is complete and durable: the first rename commits.
        let n = sealed.len();
        let mut dirs: Vec<&Path> = Vec::new();
        for (i, s) in sealed.iter().enumerate() {
            let dest = s.dir.join(recovery::final_name(self.epoch, i, n));
            std::fs::rename(&s.tmp, &dest).map_err(io_err(&dest))?;
            match s.table {
                Table::Events => self.totals.rows_sealed += s.rows,
                Table::Alerts => self.totals.alert_rows_sealed += s.rows,
                Table::Incidents => self.totals.incident_rows_sealed += s.rows,
            }
            self.totals.bytes_sealed += s.bytes;
            metrics::counter!(m::ARCHIVE_BYTES).increment(s.bytes);
            if !dirs.contains(&s.dir.as_path()) {
                dirs.push(&s.dir);
            }
        }
        // New partition directories must be durable too: sync each, its date directory
        // and the table directories touched.
        let mut parents: Vec<&Path> = Vec::new();
        for d in &dirs {
            sync_dir(d)?;
            if let Some(p) = d.parent() {
                if !parents.contains(&p) {
                    parents.push(p);
                }
            }
        }
        for p in parents {
            sync_dir(p)?;
        }
        let mut tables: Vec<Table> = sealed.iter().map(|s| s.table).collect();
        tables.sort();
        tables.dedup();
        for t in tables {
            sync_dir(&self.cfg.root.join(t.dir()))?;
        }
        self.sealed.publish(&self.checkpoint);
        if let Some(st) = self.state.as_mut() {
            emit_lines(st)?;
            // Older snapshots are no longer needed (the newest commit is this one).
            if self.epoch > 0 {
                let _ = std::fs::remove_file(state_file(&st.dir, self.epoch - 1));
            }
        }
        self.totals.segments_sealed += n as u64;
        metrics::counter!(m::ARCHIVE_SEGMENTS).increment(n as u64);
        metrics::counter!(m::ARCHIVE_COMMITS).increment(1);
        metrics::gauge!(m::ARCHIVE_OPEN_PARTITIONS).set(0.0);
        metrics::gauge!(m::ARCHIVE_OPEN_ROWS).set(0.0);
        tracing::debug!(epoch = self.epoch, segments = n, rows = self.open_rows, "committed");
        self.totals.commits += 1;
        self.epoch += 1;
        self.open_rows = 0;
        self.open_hours.clear();
        self.oldest_open = None;
        Ok(())
    }

    /// Notifications produced without new rows (roll-ups, a watermark moving on): the
    /// state is saved over the newest commit's snapshot (the archive position is the
    /// same), then the lines go out.
    fn emit_without_rows(&mut self) -> Result<(), ArchiveError> {
        self.collect_state(true)?;
        if self.open_rows > 0 {
            // The outputs brought rows: they and the lines go with the next commit.
            return Ok(());
        }
        if self.epoch > 0 {
            self.save_state(self.epoch - 1)?;
        }
        match self.state.as_mut() {
            Some(st) => emit_lines(st),
            None => Ok(()),
        }
    }

    /// End of a replay: every open dedup key rolls up and every open incident closes.
    pub fn flush_state(&mut self) -> Result<(), ArchiveError> {
        let Some(st) = self.state.as_mut() else { return Ok(()) };
        st.worker.flush();
        self.collect_state(true)
    }

    /// Seals everything and stops the lanes (shutdown, end of replay).
    pub fn finish(mut self) -> Result<ArchiveTotals, ArchiveError> {
        // Batches still waiting for an earlier sequence number cannot be archived without
        // a gap; they are read again after restart.
        let waiting: usize = self.reorder.values().map(|r| r.waiting.len()).sum();
        if waiting > 0 {
            tracing::warn!(batches = waiting, "batches left out of order at shutdown; they will be read again");
        }
        self.commit()?;
        for lane in std::mem::take(&mut self.lanes) {
            drop(lane.tx);
            let _ = lane.thread.join();
        }
        Ok(self.totals)
    }
}

/// Appends the pending JSON lines to the output (when one is configured).
fn emit_lines(st: &mut StateRuntime) -> Result<(), ArchiveError> {
    use std::io::Write;
    let lines = std::mem::take(&mut st.pending);
    let late = std::mem::take(&mut st.pending_late);
    metrics::counter!(m::STATE_NOTIFICATIONS).increment(lines.len() as u64);
    for (out, lines) in [(st.output.as_mut(), lines), (st.late_output.as_mut(), late)] {
        if let Some((path, w)) = out {
            for l in &lines {
                w.write_all(l.as_bytes()).and_then(|_| w.write_all(b"\n")).map_err(io_err(path))?;
            }
            w.flush().map_err(io_err(path))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}
