//! Compaction: the sealed segments of a quiet partition merged into files of a target size.
//!
//! A live sensor at a trickle seals a small segment every `idle_seal_ms`; an hour of them
//! is thousands of files, and every reader pays per file. Once no commit has touched a
//! partition for `quiet_secs`, its sealed files are read in commit order and written into
//! `compact-<first epoch>-<last epoch>-<n>.parquet` files of up to `target_bytes` in a
//! staging folder, `<root>/_compact/<table>/date=…/hour=…`, outside every table. The newest
//! checkpoint among them (the positions recovery resumes from, in the footer of a commit's
//! segment 0) goes into the footer of the last file, under the epoch it belongs to, so the
//! newest commit's segments are merged like the others.
//!
//! The swap is one atomic step: `renameat2(RENAME_EXCHANGE)` exchanges the partition
//! folder and the staging folder, so a reader lists either the old segments or the new
//! files, never both and never neither; the staging folder then holds the old segments and
//! is removed. Whatever a crash leaves under `_compact/` is garbage on either side of the
//! exchange (before it: a half-written copy; after it: the replaced segments), so the next
//! start removes it. The exchange happens on the commit thread when no commit is being
//! sealed and no segment of that hour is open, after checking that the partition still
//! holds exactly the segments that were copied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::checkpoint::{KEY_CHECKPOINT, KEY_EPOCH};
use super::{io_err, recovery, ArchiveError, Table};

/// The folder under the archive root where compacted files are built.
pub const STAGING: &str = "_compact";

/// Fault point for crash tests: `before_exchange` or `after_exchange` kills the process
/// (SIGKILL) at that step of the first compaction (never set in operation).
pub const FAULT_KILL_IN_COMPACTION: &str = "ALERTFLOW_FAULT_KILL_IN_COMPACTION";

/// Footer key listing the segments a compacted file was made of.
pub const KEY_COMPACTED_FROM: &str = "alertflow.compacted_from";

/// `[archive.compaction]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionConfig {
    pub enabled: bool,
    /// Compacted files are closed at about this size.
    pub target_bytes: u64,
    /// A partition with fewer segments is left as it is.
    pub min_files: usize,
    /// No commit has touched the partition for this long.
    pub quiet: Duration,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self { enabled: true, target_bytes: 256 << 20, min_files: 8, quiet: Duration::from_secs(600) }
    }
}

/// One partition to compact: its folder, the staging folder, and the segments to merge.
#[derive(Debug, Clone)]
pub struct Plan {
    pub table: Table,
    /// `<root>/<table>/date=…/hour=…`.
    pub dir: PathBuf,
    /// `date=…/hour=…`.
    pub partition: String,
    pub staging: PathBuf,
    /// File names in the partition, in commit order.
    pub sources: Vec<String>,
}

/// A plan carried out up to the exchange.
#[derive(Debug)]
pub struct Built {
    pub plan: Plan,
    pub files: usize,
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The (first, last) epoch of a segment (both its own) or a compacted file (the range it
/// merged).
fn epochs_of(name: &str) -> Option<(u64, u64)> {
    recovery::compacted_range(name).or_else(|| recovery::epoch_of_final(name).map(|e| (e, e)))
}

/// The last epoch of a segment or compacted file.
fn epoch_of(name: &str) -> Option<u64> {
    epochs_of(name).map(|(_, last)| last)
}

/// The first epoch of a segment or compacted file.
fn first_epoch_of(name: &str) -> Option<u64> {
    epochs_of(name).map(|(first, _)| first)
}

/// Sealed files of a partition folder (segments and compacted files), and whether a
/// temporary is being written there.
fn survey(dir: &Path) -> Result<(Vec<(String, u64)>, bool), ArchiveError> {
    let mut files = Vec::new();
    let mut temp = false;
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            temp = true;
        } else if epoch_of(&name).is_some() {
            files.push((name, e.metadata().map_err(io_err(dir))?.len()));
        }
    }
    files.sort_by_key(|(n, _)| (first_epoch_of(n), n.clone()));
    Ok((files, temp))
}

/// What to merge in `dir`: every sealed file, when there are at least `min_files` of them
/// and they are not already one file per target size.
pub fn plan(root: &Path, table: Table, dir: &Path, cfg: &CompactionConfig) -> Result<Option<Plan>, ArchiveError> {
    let Ok(rel) = dir.strip_prefix(root.join(table.dir())) else { return Ok(None) };
    let (sources, temp) = survey(dir)?;
    if temp {
        return Ok(None);
    }
    let bytes: u64 = sources.iter().map(|s| s.1).sum();
    let needed = bytes.div_ceil(cfg.target_bytes.max(1)).max(1) as usize;
    if sources.len() < cfg.min_files.max(2) || sources.len() <= needed {
        return Ok(None);
    }
    let partition = rel.to_string_lossy().into_owned();
    Ok(Some(Plan {
        table,
        dir: dir.to_path_buf(),
        staging: root.join(STAGING).join(table.dir()).join(&partition),
        partition,
        sources: sources.into_iter().map(|s| s.0).collect(),
    }))
}

/// Writes the merged files into the staging folder, fsynced (the partition is untouched).
pub fn build(plan: Plan, props: &WriterProperties, target_bytes: u64) -> Result<Built, ArchiveError> {
    let staging = &plan.staging;
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(io_err(staging))?;
    }
    std::fs::create_dir_all(staging).map_err(io_err(staging))?;
    let first = plan.sources.first().and_then(|n| first_epoch_of(n)).unwrap_or(0);
    let last = plan.sources.iter().filter_map(|n| epoch_of(n)).max().unwrap_or(0);
    let from = plan.sources.join(",");
    let mut built = Built { files: 0, rows: 0, bytes_before: 0, bytes_after: 0, plan: plan.clone() };
    let mut writer: Option<(ArrowWriter<std::fs::File>, PathBuf)> = None;
    // A full file is closed when the next batch comes, so the last one is known at the end.
    let mut full = false;
    let mut schema = None;
    // The newest checkpoint among the sources: (epoch, JSON).
    let mut checkpoint: Option<(u64, String)> = None;
    let close = |w: ArrowWriter<std::fs::File>, path: &Path, built: &mut Built| -> Result<(), ArchiveError> {
        let f = w.into_inner().map_err(|error| ArchiveError::Segment { path: path.to_path_buf(), error })?;
        f.sync_all().map_err(io_err(path))?;
        built.bytes_after += f.metadata().map_err(io_err(path))?.len();
        built.files += 1;
        Ok(())
    };
    for name in &plan.sources {
        let src = plan.dir.join(name);
        let bad = |error| ArchiveError::Segment { path: src.clone(), error };
        let file = std::fs::File::open(&src).map_err(io_err(&src))?;
        built.bytes_before += file.metadata().map_err(io_err(&src))?.len();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(bad)?;
        if let (Some(e), Some(json)) = recovery::checkpoint_keys(builder.metadata().file_metadata().key_value_metadata().map_or(&[][..], |v| v)) {
            if checkpoint.as_ref().is_none_or(|(newest, _)| e > *newest) {
                checkpoint = Some((e, json));
            }
        }
        let reader = builder.with_batch_size(8192).build().map_err(bad)?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.into()))?;
            // Segments of one partition written by different versions may differ in
            // columns: such a partition is left as it is.
            let s = schema.get_or_insert_with(|| batch.schema());
            if *s != batch.schema() {
                return Err(ArchiveError::Compaction { path: src.clone(), reason: "its columns differ from the partition's other segments".into() });
            }
            if std::mem::take(&mut full) {
                let (w, path) = writer.take().expect("open");
                close(w, &path, &mut built)?;
            }
            if writer.is_none() {
                let path = staging.join(format!("compact-{first:012}-{last:012}-{:04}.parquet", built.files));
                let f = std::fs::File::create(&path).map_err(io_err(&path))?;
                let mut w =
                    ArrowWriter::try_new(f, batch.schema(), Some(props.clone())).map_err(|error| ArchiveError::Segment { path: path.clone(), error })?;
                w.append_key_value_metadata(KeyValue::new(KEY_COMPACTED_FROM.into(), from.clone()));
                writer = Some((w, path));
            }
            let (w, path) = writer.as_mut().expect("just opened");
            w.write(&batch).map_err(|error| ArchiveError::Segment { path: path.clone(), error })?;
            built.rows += batch.num_rows() as u64;
            full = (w.bytes_written() + w.in_progress_size()) as u64 >= target_bytes;
        }
    }
    if let Some((mut w, path)) = writer.take() {
        // Recovery reads the positions of the newest commit from here once its segments
        // are gone (see `recovery`).
        if let Some((epoch, json)) = checkpoint {
            w.append_key_value_metadata(KeyValue::new(KEY_EPOCH.into(), epoch.to_string()));
            w.append_key_value_metadata(KeyValue::new(KEY_CHECKPOINT.into(), json));
        }
        close(w, &path, &mut built)?;
    }
    super::sync_dir(staging)?;
    Ok(built)
}

/// Whether the partition still holds every segment the plan copied, nothing being written,
/// and otherwise only files of later commits (they stay; see [`exchange`]).
pub fn unchanged(plan: &Plan) -> Result<bool, ArchiveError> {
    if !plan.dir.is_dir() {
        return Ok(false);
    }
    let (files, temp) = survey(&plan.dir)?;
    let last = plan.sources.iter().filter_map(|s| epoch_of(s)).max();
    let all_there = plan.sources.iter().all(|s| files.iter().any(|f| &f.0 == s));
    let others_newer = files.iter().filter(|f| !plan.sources.contains(&f.0)).all(|f| epoch_of(&f.0) > last);
    Ok(!temp && all_there && others_newer)
}

/// Atomically exchanges the partition folder and the staging folder, then makes both
/// durable: the partition now holds the compacted files, the staging folder the replaced
/// segments. Files of later commits in the partition (never part of a plan) are first
/// hard-linked into the staging folder, so they are in the partition before and after.
pub fn exchange(plan: &Plan) -> Result<(), ArchiveError> {
    let (files, _) = survey(&plan.dir)?;
    for (name, _) in files.iter().filter(|(n, _)| !plan.sources.contains(n)) {
        let (from, to) = (plan.dir.join(name), plan.staging.join(name));
        std::fs::hard_link(&from, &to).map_err(io_err(&to))?;
    }
    super::sync_dir(&plan.staging)?;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| ArchiveError::Io { path: p.to_path_buf(), error: std::io::Error::other(e) })
    };
    let (a, b) = (c(&plan.dir)?, c(&plan.staging)?);
    // SAFETY: two NUL-terminated paths; renameat2 reads them and changes no memory of ours.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc != 0 {
        return Err(ArchiveError::Io { path: plan.dir.clone(), error: std::io::Error::last_os_error() });
    }
    for d in [plan.dir.parent(), plan.staging.parent()].into_iter().flatten() {
        super::sync_dir(d)?;
    }
    Ok(())
}

/// Removes what a compaction left under `_compact/` (at start, and after an exchange).
pub fn remove_staging(root: &Path) -> Result<bool, ArchiveError> {
    let dir = root.join(STAGING);
    if !dir.exists() {
        return Ok(false);
    }
    std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(true)
}

/// Compaction as the archive runs it: which partitions commits touched and when, one
/// build at a time on a thread of its own, the exchange at a safe moment.
pub struct Compactor {
    cfg: CompactionConfig,
    root: PathBuf,
    props: WriterProperties,
    /// Partitions touched by commits (or found at start), with when.
    touched: std::collections::HashMap<(Table, PathBuf), std::time::Instant>,
    job: Option<crossbeam_channel::Receiver<(PathBuf, Result<Built, ArchiveError>)>>,
    /// Built, waiting for a moment when its hour is not being written.
    ready: Option<Built>,
    /// Partitions that could not be compacted (not tried again in this run).
    failed: std::collections::HashSet<PathBuf>,
    fault: Option<String>,
}

/// Candidates looked at per call (the map may hold every partition of a large archive).
const CANDIDATES_PER_CALL: usize = 16;

impl Compactor {
    /// Removes what an interrupted compaction left, and takes every partition as a candidate.
    pub fn start(cfg: CompactionConfig, root: &Path, props: WriterProperties) -> Result<Self, ArchiveError> {
        if remove_staging(root)? {
            tracing::info!("removed what an interrupted compaction left");
        }
        let now = std::time::Instant::now();
        let long_ago = now.checked_sub(cfg.quiet).unwrap_or(now);
        let mut touched = std::collections::HashMap::new();
        for t in Table::ALL {
            for p in super::layout::partitions(root, t.dir())? {
                touched.insert((t, p.dir), long_ago);
            }
        }
        Ok(Self {
            cfg,
            root: root.to_path_buf(),
            props,
            touched,
            job: None,
            ready: None,
            failed: Default::default(),
            fault: std::env::var(FAULT_KILL_IN_COMPACTION).ok(),
        })
    }

    /// A commit wrote into this partition.
    pub fn touch(&mut self, table: Table, dir: &Path) {
        self.touched.insert((table, dir.to_path_buf()), std::time::Instant::now());
    }

    fn fault_point(&self, at: &str) {
        if self.fault.as_deref() == Some(at) {
            tracing::error!(at, "fault point: killing the process inside a compaction");
            // SAFETY: raising a signal on this process; SIGKILL is what a crash looks like.
            unsafe { libc::raise(libc::SIGKILL) };
        }
    }

    /// Called on the commit thread between commits. `busy(partition)`: whether a segment of
    /// that `date=…/hour=…` is open (then no exchange now).
    pub fn maintain(&mut self, busy: impl Fn(&str) -> bool) {
        self.take_finished();
        if self.job.is_some() {
            return;
        }
        if let Some(b) = self.ready.take() {
            if busy(&b.plan.partition) {
                self.ready = Some(b);
                return;
            }
            self.land(b);
        }
        self.pick();
    }

    /// While a commit is being sealed: only takes a finished build (it lands later).
    pub fn maintain_busy(&mut self) {
        self.take_finished();
    }

    fn take_finished(&mut self) {
        let Some(rx) = &self.job else { return };
        match rx.try_recv() {
            Ok((_, Ok(b))) => {
                self.job = None;
                self.ready = Some(b);
            }
            Ok((dir, Err(e))) => {
                self.job = None;
                tracing::warn!(error = %e, partition = %dir.display(), "compaction failed; the partition stays as it is");
                metrics::counter!(crate::metrics::ARCHIVE_ERRORS).increment(1);
                self.failed.insert(dir);
                let _ = remove_staging(&self.root);
            }
            Err(crossbeam_channel::TryRecvError::Empty) => {}
            Err(crossbeam_channel::TryRecvError::Disconnected) => self.job = None,
        }
    }

    fn land(&mut self, b: Built) {
        let plan = &b.plan;
        let res = unchanged(plan).and_then(|same| {
            if !same {
                return Ok(false);
            }
            self.fault_point("before_exchange");
            exchange(plan)?;
            self.fault_point("after_exchange");
            Ok(true)
        });
        match res {
            Ok(true) => {
                metrics::counter!(crate::metrics::ARCHIVE_COMPACTIONS).increment(1);
                metrics::counter!(crate::metrics::ARCHIVE_COMPACTED_SEGMENTS).increment(plan.sources.len() as u64);
                tracing::info!(
                    table = plan.table.dir(),
                    partition = %plan.partition,
                    segments = plan.sources.len(),
                    files = b.files,
                    rows = b.rows,
                    bytes_before = b.bytes_before,
                    bytes_after = b.bytes_after,
                    "compacted"
                );
            }
            Ok(false) => {
                // Changed since it was copied (a late commit, retention): later, afresh.
                self.touch(plan.table, &plan.dir.clone());
            }
            Err(e) => {
                tracing::warn!(error = %e, partition = %plan.partition, "compaction not completed; the partition stays as it is");
                metrics::counter!(crate::metrics::ARCHIVE_ERRORS).increment(1);
                self.failed.insert(plan.dir.clone());
            }
        }
        // The replaced segments (or the unused copy) go, off the commit thread.
        let staging = plan.staging.clone();
        let _ = std::thread::Builder::new().name("compact-clean".into()).spawn(move || {
            if let Err(e) = std::fs::remove_dir_all(&staging) {
                tracing::warn!(error = %e, dir = %staging.display(), "could not remove replaced segments");
            }
        });
    }

    fn pick(&mut self) {
        if self.job.is_some() || self.ready.is_some() {
            return;
        }
        let quiet: Vec<(Table, PathBuf)> =
            self.touched.iter().filter(|(_, t)| t.elapsed() >= self.cfg.quiet).map(|(k, _)| k.clone()).take(CANDIDATES_PER_CALL).collect();
        for key in quiet {
            self.touched.remove(&key);
            if self.failed.contains(&key.1) {
                continue;
            }
            match plan(&self.root, key.0, &key.1, &self.cfg) {
                Ok(Some(plan)) => {
                    let (tx, rx) = crossbeam_channel::bounded(1);
                    let (props, target) = (self.props.clone(), self.cfg.target_bytes);
                    let spawned = std::thread::Builder::new().name("compact".into()).spawn(move || {
                        crate::event::thread::run_in_background();
                        let dir = plan.dir.clone();
                        let _ = tx.send((dir, build(plan, &props, target)));
                    });
                    if spawned.is_ok() {
                        self.job = Some(rx);
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, dir = %key.1.display(), "partition not surveyed for compaction"),
            }
        }
    }
}

/// What `alertflow compact` did to one partition.
#[derive(Debug)]
pub struct Done {
    pub table: Table,
    pub partition: String,
    pub segments: usize,
    pub files: usize,
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Compacts every partition of an archive no process is writing (`alertflow compact`):
/// quiet or not, with at least `cfg.min_files` segments.
/// With `dry_run`, the plans only (nothing is written).
pub fn run_by_hand(root: &Path, cfg: &CompactionConfig, props: &WriterProperties, dry_run: bool) -> Result<Vec<Done>, ArchiveError> {
    let _lock = super::lock_archive(root)?;
    if !dry_run {
        remove_staging(root)?;
    }
    let mut out = Vec::new();
    for t in Table::ALL {
        for p in super::layout::partitions(root, t.dir())? {
            let Some(plan) = plan(root, t, &p.dir, cfg)? else { continue };
            let mut done =
                Done { table: t, partition: plan.partition.clone(), segments: plan.sources.len(), files: 0, rows: 0, bytes_before: 0, bytes_after: 0 };
            if !dry_run {
                let b = build(plan, props, cfg.target_bytes)?;
                exchange(&b.plan)?;
                std::fs::remove_dir_all(&b.plan.staging).map_err(io_err(&b.plan.staging))?;
                (done.files, done.rows, done.bytes_before, done.bytes_after) = (b.files, b.rows, b.bytes_before, b.bytes_after);
            }
            out.push(done);
        }
    }
    if !dry_run {
        remove_staging(root)?;
    }
    Ok(out)
}
