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
//! [`Segments`] (on the commit coordinator's thread) hands batches to the [`lane`] threads
//! that encode Parquet, keeps what is open (rows, bytes, partitions, age), seals the open
//! temporaries of a commit ([`Segments::seal`]) and renames them into place
//! ([`Segments::publish`]). When to commit, and what else a commit holds (the alert
//! path's snapshot, the positions, the notifications), is the pipeline's commit protocol
//! (`pipeline::commit`).

pub mod checkpoint;
pub mod compact;
pub mod lane;
pub mod layout;
pub mod props;
pub mod recovery;
pub mod retention;
pub mod tail;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use parquet::file::metadata::KeyValue;

use crate::event::EventBatch;
use crate::metrics as m;
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
    /// One row per audit record (the hash-chained trail of decisions and actions).
    Actions,
}

impl Table {
    pub const ALL: [Table; 4] = [Table::Events, Table::Alerts, Table::Incidents, Table::Actions];

    pub fn dir(self) -> &'static str {
        match self {
            Table::Events => EVENTS_TABLE,
            Table::Alerts => "alerts",
            Table::Incidents => "incidents",
            Table::Actions => "actions",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The cause is part of the message (not a `source`), so a cause chain does not
    /// print it twice.
    #[error("archive i/o on {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("writing segment {path}: {error}")]
    Segment { path: PathBuf, error: parquet::errors::ParquetError },
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
    #[error("compacting {path}: {reason}")]
    Compaction { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |error| ArchiveError::Io { path: path.to_path_buf(), error }
}

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub root: PathBuf,
    pub parquet: ParquetSettings,
    /// Threads that encode Parquet.
    pub writer_threads: usize,
    pub segment_max_bytes: u64,
    pub max_open_partitions: usize,
    /// Batches each writer lane's queue holds: enough to ride out a lane's row-group flush
    /// or a moment without a core, so the commit thread (and the alert path behind it)
    /// does not wait for encoding.
    pub lane_queue_batches: usize,
    pub idle_seal: Duration,
    pub max_segment_age: Duration,
    /// Days each table keeps (see [`retention`]).
    pub retention: retention::Retention,
    /// Merging the segments of quiet partitions (see [`compact`]).
    pub compaction: compact::CompactionConfig,
}

/// Totals since start.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveTotals {
    /// Rows of the events table.
    pub rows_sealed: u64,
    pub alert_rows_sealed: u64,
    pub incident_rows_sealed: u64,
    pub action_rows_sealed: u64,
    pub segments_sealed: u64,
    pub bytes_sealed: u64,
    pub commits: u64,
}

struct LaneHandle {
    tx: Sender<LaneMsg>,
    open_bytes: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

/// The archive's open segments: Parquet writers on lane threads, sealed and renamed into
/// place by a commit.
/// The first commit of a process comes at most this long after its first row: a process
/// restarted faster than `max_segment_age` (a crash loop over a backlog) still makes
/// progress with every start.
pub const FIRST_COMMIT_AGE: Duration = Duration::from_secs(1);

/// The age of the oldest open row that makes a commit due, after `commits` commits.
fn age_limit(commits: u64, max_segment_age: Duration) -> Duration {
    if commits == 0 {
        max_segment_age.min(FIRST_COMMIT_AGE)
    } else {
        max_segment_age
    }
}

/// Environment variable of the crash tests' fault point (see [`Segments::publish`]).
pub const FAULT_KILL_AFTER_RENAMES: &str = "ALERTFLOW_FAULT_KILL_AFTER_RENAMES";

pub struct Segments {
    cfg: ArchiveConfig,
    epoch: u64,
    lanes: Vec<LaneHandle>,
    next_lane: usize,
    next_state_lane: usize,
    open_hours: BTreeSet<i64>,
    open_rows: u64,
    oldest_open: Option<Instant>,
    last_write: Instant,
    totals: ArchiveTotals,
    /// Fault point for crash tests: the process kills itself (SIGKILL) after this many renames (read from
    /// `ALERTFLOW_FAULT_KILL_AFTER_RENAMES` at open; never set in operation).
    kill_after_renames: Option<u64>,
    renames: u64,
    /// When retention last looked for expired partitions.
    last_retention: Option<Instant>,
    /// The thread emptying the trash, while it runs.
    trash: Option<JoinHandle<()>>,
    /// A commit is being sealed ([`Segments::begin_seal`] up to its publish).
    sealing: bool,
    compactor: Option<compact::Compactor>,
    /// Held for the writer's lifetime: one process writes an archive at a time.
    _lock: File,
}

/// How often retention looks for expired partitions (after a commit).
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// The temporaries of one commit, complete and durable, waiting to be renamed.
pub struct Sealed {
    epoch: u64,
    rows: u64,
    files: Vec<lane::SealedTemp>,
}

/// A lane's answer to a seal: its temporaries.
type LaneReply = crossbeam_channel::Receiver<Result<Vec<lane::SealedTemp>, ArchiveError>>;

/// A commit whose segments the lanes are closing ([`Segments::begin_seal`]).
pub struct PendingSeal {
    epoch: u64,
    rows: u64,
    /// Lanes that have not answered yet.
    replies: Vec<Option<LaneReply>>,
    files: Vec<lane::SealedTemp>,
    first_err: Option<ArchiveError>,
}

impl PendingSeal {
    /// The commit's number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn take(&mut self, i: usize, answer: Result<Result<Vec<lane::SealedTemp>, ArchiveError>, ()>) {
        match answer {
            Ok(Ok(mut v)) => self.files.append(&mut v),
            Ok(Err(e)) => {
                self.first_err.get_or_insert(e);
            }
            Err(()) => {
                self.first_err.get_or_insert(ArchiveError::LaneGone(i));
            }
        }
    }

    /// Whether every lane has answered (without waiting).
    pub fn ready(&mut self) -> bool {
        for i in 0..self.replies.len() {
            let answer = match &self.replies[i] {
                None => continue,
                Some(rx) => match rx.try_recv() {
                    Ok(a) => Ok(a),
                    Err(crossbeam_channel::TryRecvError::Empty) => return false,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => Err(()),
                },
            };
            self.replies[i] = None;
            self.take(i, answer);
        }
        true
    }

    /// Waits for every lane: the commit's temporaries, complete and fsynced.
    pub fn wait(mut self) -> Result<Sealed, ArchiveError> {
        for i in 0..self.replies.len() {
            if let Some(rx) = self.replies[i].take() {
                let answer = rx.recv().map_err(|_| ());
                self.take(i, answer);
            }
        }
        if let Some(e) = self.first_err {
            return Err(e);
        }
        // Segments whose footer holds the checkpoint go first: the first rename is the
        // commit point, and recovery reads the positions from segment 0 of the newest commit.
        let mut files = self.files;
        files.sort_by_key(|f| !f.checkpoint);
        Ok(Sealed { epoch: self.epoch, rows: self.rows, files })
    }
}

impl Segments {
    /// Opens the archive: takes its lock, runs recovery, starts the writer lanes, and
    /// returns the segments with what recovery found (the positions to resume from).
    pub fn open(cfg: ArchiveConfig) -> Result<(Self, recovery::Recovered), ArchiveError> {
        let table = cfg.root.join(EVENTS_TABLE);
        std::fs::create_dir_all(&table).map_err(io_err(&table))?;
        let lock = lock_archive(&cfg.root)?;
        let rec = recovery::recover(&cfg.root)?;
        let props = props::writer_properties(cfg.parquet)?;
        let lanes = (0..cfg.writer_threads.max(1))
            .map(|id| {
                let (tx, rx) = bounded(cfg.lane_queue_batches.max(1));
                let open_bytes = Arc::new(AtomicU64::new(lane::tag_bytes(rec.next_epoch, 0)));
                let lane = Lane::new(id, cfg.root.clone(), props.clone(), rec.next_epoch, cfg.max_open_partitions, open_bytes.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("archive-lane-{id}"))
                    .spawn(move || {
                        crate::event::thread::run_in_background();
                        lane.run(rx)
                    })
                    .expect("spawn writer lane");
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
            totals: ArchiveTotals::default(),
            kill_after_renames: std::env::var(FAULT_KILL_AFTER_RENAMES).ok().and_then(|v| v.parse().ok()),
            renames: 0,
            last_retention: None,
            trash: None,
            sealing: false,
            compactor: None,
            _lock: lock,
            cfg,
        };
        let mut w = w;
        // What a crash left in the trash goes now (beside the start).
        if w.cfg.root.join(retention::TRASH).exists() {
            w.empty_trash();
        }
        if w.cfg.compaction.enabled {
            let props = props::writer_properties(props::for_compaction(w.cfg.parquet))?;
            w.compactor = Some(compact::Compactor::start(w.cfg.compaction, &w.cfg.root, props)?);
        }
        Ok((w, rec))
    }

    /// The number of the next commit.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn root(&self) -> &Path {
        &self.cfg.root
    }

    pub fn totals(&self) -> ArchiveTotals {
        self.totals
    }

    /// Rows written since the last commit.
    pub fn open_rows(&self) -> u64 {
        self.open_rows
    }

    /// Hands rows of `table` to a lane. The events table and the alert path's tables
    /// rotate over the lanes separately (sharing one rotation would pin events to one lane).
    pub fn write(&mut self, table: Table, batch: EventBatch) -> Result<(), ArchiveError> {
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(());
        }
        let hours = &batch.hours;
        let first = hours[0];
        self.open_hours.insert(first);
        if hours.iter().any(|&h| h != first) {
            self.open_hours.extend(hours.iter().copied());
        }
        let next = if table == Table::Events { &mut self.next_lane } else { &mut self.next_state_lane };
        let lane = *next;
        *next = (lane + 1) % self.lanes.len();
        self.send_to_free_lane(lane, LaneMsg::Write(table, batch))?;
        self.open_rows += rows;
        self.oldest_open.get_or_insert_with(Instant::now);
        if table == Table::Events {
            self.last_write = Instant::now();
            metrics::counter!(m::ARCHIVE_ROWS).increment(rows);
            metrics::gauge!(m::ARCHIVE_OPEN_ROWS).set(self.open_rows as f64);
            metrics::gauge!(m::ARCHIVE_OPEN_PARTITIONS).set(self.open_hours.len() as f64);
        }
        Ok(())
    }

    /// Sends a batch to lane `first` or, when its queue is full, to the next lane with room:
    /// a lane flushing a row group (tens of MB encoded and written at once) stops taking
    /// batches for that long, and the commit thread waiting on it would hold up every alert
    /// behind it. Which lane writes a batch does not matter: each writes its own segments and
    /// every lane is sealed at the commit. Only when every queue is full does it wait.
    fn send_to_free_lane(&self, first: usize, msg: LaneMsg) -> Result<(), ArchiveError> {
        let n = self.lanes.len();
        let mut msg = msg;
        for i in 0..n {
            let lane = (first + i) % n;
            match self.lanes[lane].tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(crossbeam_channel::TrySendError::Full(back)) => msg = back,
                Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(ArchiveError::LaneGone(lane)),
            }
        }
        let started = Instant::now();
        self.lanes[first].tx.send(msg).map_err(|_| ArchiveError::LaneGone(first))?;
        metrics::counter!(m::ARCHIVE_LANE_WAITS).increment(1);
        tracing::debug!(lane = first, waited_ms = started.elapsed().as_millis() as u64, "every writer lane busy");
        Ok(())
    }

    /// Counts as new rows for the idle timer (rows the alert path produced on its own).
    pub fn touch(&mut self) {
        self.last_write = Instant::now();
    }

    fn open_bytes(&self) -> u64 {
        self.lanes.iter().map(|l| lane::bytes_of(self.epoch, l.open_bytes.load(Ordering::Relaxed))).sum()
    }

    /// Open segments are as large, or span as many partitions, as a commit allows.
    pub fn full(&self) -> bool {
        self.open_bytes() >= self.cfg.segment_max_bytes || self.open_hours.len() > self.cfg.max_open_partitions
    }

    /// No new rows for `idle_seal`, or the oldest open row is older than `max_segment_age`
    /// (than [`FIRST_COMMIT_AGE`] before this process's first commit).
    pub fn due(&self) -> bool {
        let age = age_limit(self.totals.commits, self.cfg.max_segment_age);
        self.last_write.elapsed() >= self.cfg.idle_seal || self.oldest_open.is_some_and(|t| t.elapsed() >= age)
    }

    /// Starts a commit: every lane is told to close its segments with `checkpoint` (JSON)
    /// and the epoch in their footers, after the batches sent before. Rows written from now
    /// on go to the next commit's segments while the lanes finish; the returned seal is
    /// [`PendingSeal::ready`] once every lane has answered.
    pub fn begin_seal(&mut self, checkpoint: &str) -> Result<PendingSeal, ArchiveError> {
        let mut replies = Vec::with_capacity(self.lanes.len());
        for (i, lane) in self.lanes.iter().enumerate() {
            let (tx, rx) = bounded(1);
            let metadata = vec![
                KeyValue::new(checkpoint::KEY_EPOCH.into(), self.epoch.to_string()),
                KeyValue::new(checkpoint::KEY_CHECKPOINT.into(), checkpoint.to_string()),
            ];
            lane.tx.send(LaneMsg::Seal { epoch: self.epoch, metadata, reply: tx }).map_err(|_| ArchiveError::LaneGone(i))?;
            replies.push(Some(rx));
        }
        let pending = PendingSeal { epoch: self.epoch, rows: self.open_rows, replies, files: Vec::new(), first_err: None };
        self.sealing = true;
        self.epoch += 1;
        self.open_rows = 0;
        self.open_hours.clear();
        self.oldest_open = None;
        metrics::gauge!(m::ARCHIVE_OPEN_PARTITIONS).set(0.0);
        metrics::gauge!(m::ARCHIVE_OPEN_ROWS).set(0.0);
        Ok(pending)
    }

    /// Renames the sealed temporaries into place (the first rename is the commit point)
    /// and makes the new names durable.
    pub fn publish(&mut self, sealed: Sealed) -> Result<(), ArchiveError> {
        let (epoch, rows) = (sealed.epoch, sealed.rows);
        let sealed = sealed.files;
        let n = sealed.len();
        let mut dirs: Vec<&Path> = Vec::new();
        for (i, s) in sealed.iter().enumerate() {
            let dest = s.dir.join(recovery::final_name(epoch, i, n));
            std::fs::rename(&s.tmp, &dest).map_err(io_err(&dest))?;
            self.renames += 1;
            if self.kill_after_renames == Some(self.renames) {
                // The crash tests' deterministic kill between two renames of one commit.
                tracing::error!(renames = self.renames, segment = %dest.display(), "fault point: killing the process inside a commit");
                // SAFETY: raising a signal on this process; SIGKILL is what a crash looks like.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            match s.table {
                Table::Events => self.totals.rows_sealed += s.rows,
                Table::Alerts => self.totals.alert_rows_sealed += s.rows,
                Table::Incidents => self.totals.incident_rows_sealed += s.rows,
                Table::Actions => self.totals.action_rows_sealed += s.rows,
            }
            self.totals.bytes_sealed += s.bytes;
            metrics::counter!(m::ARCHIVE_BYTES).increment(s.bytes);
            if !dirs.contains(&s.dir.as_path()) {
                dirs.push(&s.dir);
            }
            if let Some(c) = self.compactor.as_mut() {
                c.touch(s.table, &s.dir);
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
        self.totals.segments_sealed += n as u64;
        metrics::counter!(m::ARCHIVE_SEGMENTS).increment(n as u64);
        metrics::counter!(m::ARCHIVE_COMMITS).increment(1);
        tracing::debug!(epoch, segments = n, rows, "committed");
        self.totals.commits += 1;
        self.sealing = false;
        self.expire_if_due();
        Ok(())
    }

    /// Between commits: lands a compaction that is built when its hour is not being
    /// written, and starts the next one on a quiet partition (see [`compact`]).
    pub fn maintain(&mut self) {
        let Some(c) = self.compactor.as_mut() else { return };
        let (sealing, open) = (self.sealing, &self.open_hours);
        // While a commit is sealed nothing is exchanged, and nothing new is planned
        // (its temporaries are in the partitions).
        if sealing {
            c.maintain_busy();
            return;
        }
        c.maintain(|partition| open.iter().any(|&h| crate::event::time::partition_path(h) == partition));
    }

    /// Right after a commit (nothing open): once every [`RETENTION_EVERY`], moves the
    /// partitions past their table's retention to the trash and empties it on a thread.
    /// A failure is logged and counted; the archive goes on.
    fn expire_if_due(&mut self) {
        if !self.cfg.retention.any() || self.last_retention.is_some_and(|t| t.elapsed() < RETENTION_EVERY) {
            return;
        }
        self.last_retention = Some(Instant::now());
        let root = self.cfg.root.clone();
        let newest = self.epoch.checked_sub(1);
        let res = retention::find(&root, &self.cfg.retention, crate::event::time::wall_clock_us(), newest)
            .and_then(|pass| retention::move_to_trash(&root, &pass.expired, self.epoch).map(|n| (n, pass)));
        match res {
            Ok((n, pass)) => {
                metrics::counter!(m::ARCHIVE_RETENTION_PARTITIONS).increment(n as u64);
                metrics::counter!(m::ARCHIVE_RETENTION_BYTES).increment(pass.expired.iter().map(|e| e.bytes).sum());
                for (e, why) in &pass.kept {
                    tracing::info!(table = e.table.dir(), date = %e.date, why, "retention: expired partition kept");
                }
                if n > 0 {
                    self.empty_trash();
                }
            }
            Err(e) => {
                metrics::counter!(m::ARCHIVE_ERRORS).increment(1);
                tracing::warn!(error = %e, "retention: expired partitions not removed");
            }
        }
    }

    /// Empties the trash on a thread of its own (one at a time).
    fn empty_trash(&mut self) {
        if self.trash.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let root = self.cfg.root.clone();
        self.trash = std::thread::Builder::new()
            .name("archive-trash".into())
            .spawn(move || {
                if let Err(e) = retention::empty_trash(&root) {
                    tracing::warn!(error = %e, "retention: could not empty the trash");
                }
            })
            .ok();
    }

    /// Stops the lanes (after the last commit) and waits for the trash to be emptied.
    pub fn close(mut self) {
        for lane in std::mem::take(&mut self.lanes) {
            drop(lane.tx);
            let _ = lane.thread.join();
        }
        if let Some(t) = self.trash.take() {
            let _ = t.join();
        }
    }
}

/// Takes the archive's lock (one writer at a time), held as long as the file is open.
pub fn lock_archive(root: &Path) -> Result<File, ArchiveError> {
    let lock_path = root.join(".alertflow.lock");
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(ArchiveError::Locked(root.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(ArchiveError::Io { path: lock_path, error: e }),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_commit_of_a_process_comes_early() {
        let ten = Duration::from_secs(10);
        assert_eq!(age_limit(0, ten), FIRST_COMMIT_AGE);
        assert_eq!(age_limit(1, ten), ten);
        assert_eq!(age_limit(0, Duration::from_millis(200)), Duration::from_millis(200), "a shorter configured age still wins");
    }

    /// "No space left on device" names the file and is said once in a cause chain.
    #[test]
    fn archive_errors_name_their_file_and_say_their_cause_once() {
        use std::error::Error as _;
        let e = ArchiveError::Io { path: "/a/events/x.tmp".into(), error: std::io::Error::from_raw_os_error(28) };
        let text = e.to_string();
        assert!(text.contains("/a/events/x.tmp") && text.contains("No space left on device"), "{text}");
        assert!(e.source().is_none(), "the cause is in the message, not repeated as a source");
        let e = ArchiveError::Segment { path: "/a/events/y.tmp".into(), error: parquet::errors::ParquetError::General("disk".into()) };
        assert!(e.to_string().contains("/a/events/y.tmp"));
    }
}
