//! The archive: event batches in, sealed Parquet segments out.
//!
//! Layout: `<root>/events/date=YYYY-MM-DD/hour=HH/part-<epoch>-<i>-<n>.parquet` (UTC event
//! time), zstd, row groups bounded by bytes, one open writer per partition.
//!
//! Exactly-once: rows are written into hidden temporaries (`.part-<epoch>-<i>.parquet.tmp`,
//! ignored by DuckDB, pyarrow and Spark). A commit closes every open writer with the
//! current source positions in its footer, fsyncs each file, then renames them into place
//! and fsyncs the directories. The first rename is the commit point: on start,
//! [`recovery::recover`] finishes a half-renamed commit, deletes temporaries of commits that
//! never started renaming, and returns the newest positions, from which sources resume.
//!
//! Triggers for a commit: open bytes ≥ `segment_max_bytes`, more open partitions than
//! `max_open_partitions`, no new rows for `idle_seal`, oldest open row older than
//! `max_segment_age`, and shutdown. Positions advance only with the batches whose rows
//! they cover; batches of one stream are written in their original order.

pub mod checkpoint;
pub mod props;
pub mod recovery;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::event::time::partition_path;
use crate::event::EventBatch;
use crate::ingest::Position;
use crate::metrics as m;
use crate::parse::ParsedBatch;
pub use checkpoint::Checkpoint;
pub use props::ParquetSettings;

/// Name of the events table directory under the archive root.
pub const EVENTS_TABLE: &str = "events";

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
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    pub root: PathBuf,
    pub parquet: ParquetSettings,
    pub segment_max_bytes: u64,
    pub max_open_partitions: usize,
    pub idle_seal: Duration,
    pub max_segment_age: Duration,
}

struct OpenSegment {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    dir: PathBuf,
    index: usize,
    rows: u64,
}

/// Totals since start.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveTotals {
    pub rows_sealed: u64,
    pub segments_sealed: u64,
    pub bytes_sealed: u64,
    pub commits: u64,
}

pub struct ArchiveWriter {
    cfg: ArchiveConfig,
    table: PathBuf,
    props: WriterProperties,
    epoch: u64,
    open: BTreeMap<i64, OpenSegment>,
    next_index: usize,
    open_rows: u64,
    oldest_open: Option<Instant>,
    last_write: Instant,
    checkpoint: Checkpoint,
    reorder: HashMap<(usize, u64), Reorder>,
    totals: ArchiveTotals,
}

#[derive(Default)]
struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, ParsedBatch>,
}

impl ArchiveWriter {
    /// Opens the archive: runs recovery and returns the writer with the positions to resume.
    pub fn open(cfg: ArchiveConfig) -> Result<(Self, recovery::Recovered), ArchiveError> {
        let table = cfg.root.join(EVENTS_TABLE);
        std::fs::create_dir_all(&table).map_err(io_err(&table))?;
        let rec = recovery::recover(&table)?;
        let props = props::writer_properties(cfg.parquet)?;
        let w = Self {
            table,
            props,
            epoch: rec.next_epoch,
            open: BTreeMap::new(),
            next_index: 0,
            open_rows: 0,
            oldest_open: None,
            last_write: Instant::now(),
            checkpoint: rec.checkpoint.clone(),
            reorder: HashMap::new(),
            totals: ArchiveTotals::default(),
            cfg,
        };
        Ok((w, rec))
    }

    pub fn totals(&self) -> ArchiveTotals {
        self.totals
    }

    /// The positions covered by the last commit plus what is open now.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
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
        if batch.events.num_rows() > 0 {
            self.write_rows(&batch.events)?;
        }
        if let Position::File { fingerprint, offset, path } = &batch.position {
            self.checkpoint.advance(&batch.source.name, *fingerprint, *offset, path);
        }
        if self.open_bytes() >= self.cfg.segment_max_bytes || self.open.len() > self.cfg.max_open_partitions {
            self.commit()?;
        }
        Ok(())
    }

    fn write_rows(&mut self, events: &EventBatch) -> Result<(), ArchiveError> {
        let hours = &events.hours;
        let first = hours[0];
        if hours.iter().all(|&h| h == first) {
            self.write_partition(first, &events.columns)?;
        } else {
            let mut distinct: Vec<i64> = hours.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for h in distinct {
                let mask: BooleanArray = hours.iter().map(|&x| Some(x == h)).collect();
                let part = filter_record_batch(&events.columns, &mask)?;
                self.write_partition(h, &part)?;
            }
        }
        let n = events.num_rows() as u64;
        self.open_rows += n;
        self.last_write = Instant::now();
        self.oldest_open.get_or_insert(self.last_write);
        metrics::counter!(m::ARCHIVE_ROWS).increment(n);
        metrics::gauge!(m::ARCHIVE_OPEN_ROWS).set(self.open_rows as f64);
        Ok(())
    }

    fn write_partition(&mut self, hour: i64, rows: &RecordBatch) -> Result<(), ArchiveError> {
        if !self.open.contains_key(&hour) {
            let dir = self.table.join(partition_path(hour));
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let index = self.next_index;
            self.next_index += 1;
            let tmp = dir.join(recovery::temp_name(self.epoch, index));
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let writer = ArrowWriter::try_new(file, rows.schema(), Some(self.props.clone()))?;
            self.open.insert(hour, OpenSegment { writer, tmp, dir, index, rows: 0 });
            metrics::gauge!(m::ARCHIVE_OPEN_PARTITIONS).set(self.open.len() as f64);
        }
        let seg = self.open.get_mut(&hour).expect("just inserted");
        seg.writer.write(rows)?;
        seg.rows += rows.num_rows() as u64;
        Ok(())
    }

    fn open_bytes(&self) -> u64 {
        self.open.values().map(|s| (s.writer.bytes_written() + s.writer.in_progress_size()) as u64).sum()
    }

    /// Called periodically: seals on idle time or segment age.
    pub fn tick(&mut self) -> Result<(), ArchiveError> {
        if self.open.is_empty() {
            return Ok(());
        }
        let idle = self.last_write.elapsed() >= self.cfg.idle_seal;
        let old = self.oldest_open.is_some_and(|t| t.elapsed() >= self.cfg.max_segment_age);
        if idle || old {
            self.commit()?;
        }
        Ok(())
    }

    /// Seals every open segment with the current positions. A commit with no rows writes
    /// nothing (its positions are carried by the next commit).
    pub fn commit(&mut self) -> Result<(), ArchiveError> {
        if self.open.is_empty() {
            return Ok(());
        }
        let n = self.open.len();
        let ckpt = serde_json::to_string(&self.checkpoint).expect("checkpoint serializes");
        let mut sealed = Vec::with_capacity(n);
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (_, mut seg) in std::mem::take(&mut self.open) {
            seg.writer.append_key_value_metadata(KeyValue::new(checkpoint::KEY_EPOCH.into(), self.epoch.to_string()));
            seg.writer.append_key_value_metadata(KeyValue::new(checkpoint::KEY_SEGMENTS.into(), n.to_string()));
            seg.writer.append_key_value_metadata(KeyValue::new(checkpoint::KEY_CHECKPOINT.into(), ckpt.clone()));
            let file = seg.writer.into_inner()?;
            file.sync_all().map_err(io_err(&seg.tmp))?;
            let bytes = file.metadata().map_err(io_err(&seg.tmp))?.len();
            let dest = seg.dir.join(recovery::final_name(self.epoch, seg.index, n));
            if !dirs.contains(&seg.dir) {
                dirs.push(seg.dir.clone());
            }
            sealed.push((seg.tmp, dest, seg.rows, bytes));
        }
        // Every temporary is complete and durable: the first rename commits.
        for (tmp, dest, rows, bytes) in &sealed {
            std::fs::rename(tmp, dest).map_err(io_err(dest))?;
            self.totals.rows_sealed += rows;
            self.totals.bytes_sealed += bytes;
            self.totals.segments_sealed += 1;
            metrics::counter!(m::ARCHIVE_BYTES).increment(*bytes);
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        sync_dir(&self.table)?;
        metrics::counter!(m::ARCHIVE_SEGMENTS).increment(n as u64);
        metrics::counter!(m::ARCHIVE_COMMITS).increment(1);
        metrics::gauge!(m::ARCHIVE_OPEN_PARTITIONS).set(0.0);
        metrics::gauge!(m::ARCHIVE_OPEN_ROWS).set(0.0);
        tracing::debug!(epoch = self.epoch, segments = n, rows = self.open_rows, "committed");
        self.totals.commits += 1;
        self.epoch += 1;
        self.next_index = 0;
        self.open_rows = 0;
        self.oldest_open = None;
        Ok(())
    }

    /// Flushes and seals everything (shutdown, end of replay).
    pub fn finish(mut self) -> Result<ArchiveTotals, ArchiveError> {
        // Batches still waiting for an earlier sequence number cannot be archived without
        // a gap; they are read again after restart.
        let waiting: usize = self.reorder.values().map(|r| r.waiting.len()).sum();
        if waiting > 0 {
            tracing::warn!(batches = waiting, "batches left out of order at shutdown; they will be read again");
        }
        self.commit()?;
        Ok(self.totals)
    }

    pub fn table_dir(&self) -> &Path {
        &self.table
    }
}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}
