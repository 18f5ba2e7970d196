//! Writer lanes: the threads that encode Parquet.
//!
//! Encoding (dictionary, zstd) is the most expensive step of the pipeline, so the archive
//! spreads it over `writer_threads` lanes. Each lane owns one open segment per partition
//! (hour) it has been given rows for, at most `max_open` at once: opening one more closes
//! the least recently written (footer with the epoch, fsynced) into a temporary that waits
//! for the commit like the others, so one batch spanning thousands of hours holds neither
//! thousands of encoders in memory nor thousands of descriptors. The coordinator ([`super::ArchiveWriter`]) sends
//! batches round-robin and, to commit, a `Seal` message down every lane's channel: since a
//! channel is FIFO, a lane has written every batch sent before the seal when it closes its
//! segments and answers with their temporary paths.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{Receiver, Sender};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::{io_err, recovery, ArchiveError, Table};
use crate::event::time::partition_path;
use crate::event::EventBatch;

fn segment_err(path: &std::path::Path) -> impl FnOnce(parquet::errors::ParquetError) -> ArchiveError + '_ {
    move |error| ArchiveError::Segment { path: path.to_path_buf(), error }
}

const BYTES_BITS: u32 = 48;

/// A lane's open bytes with the low bits of their epoch above them: while a commit is
/// sealed, the coordinator already counts the next epoch's bytes and must not read the
/// sealing one's.
pub fn tag_bytes(epoch: u64, bytes: u64) -> u64 {
    (epoch << BYTES_BITS) | bytes.min((1 << BYTES_BITS) - 1)
}

/// The bytes of a tagged value if they belong to `epoch`.
pub fn bytes_of(epoch: u64, tagged: u64) -> u64 {
    let tag_mask = (1u64 << (64 - BYTES_BITS)) - 1;
    if (tagged >> BYTES_BITS) == (epoch & tag_mask) {
        tagged & ((1 << BYTES_BITS) - 1)
    } else {
        0
    }
}

pub enum LaneMsg {
    Write(Table, EventBatch),
    /// Close every open segment with this footer metadata and report them.
    Seal {
        epoch: u64,
        metadata: Vec<KeyValue>,
        reply: Sender<Result<Vec<SealedTemp>, ArchiveError>>,
    },
}

/// A closed, fsynced temporary waiting to be renamed into place.
#[derive(Debug)]
pub struct SealedTemp {
    pub table: Table,
    pub tmp: PathBuf,
    pub dir: PathBuf,
    pub rows: u64,
    pub bytes: u64,
    /// Whether its footer carries the commit's checkpoint (segments closed early do not).
    pub checkpoint: bool,
}

struct OpenSegment {
    table: Table,
    writer: ArrowWriter<WritebackFile>,
    tmp: PathBuf,
    dir: PathBuf,
    rows: u64,
    /// When it was last written (the lane's write counter).
    last_used: u64,
}

/// Dirty bytes of a segment after which their writeback is started.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// A segment's file that starts the kernel's writeback of every [`WRITEBACK_EVERY`] bytes
/// written to it, without waiting for it. A commit's fsync then finds little left to write:
/// without this, a segment's bytes sit dirty in the page cache until the seal, and flushing
/// them all at once there stalls every other fsync on the disk (the outbox journal's, the
/// state snapshot's) for as long. It watches the bytes themselves, not the batches: a row
/// group is written in one go when it fills or at the seal (up to `row_group_max_bytes`).
pub struct WritebackFile {
    file: File,
    written: u64,
    written_back: u64,
}

impl WritebackFile {
    pub fn new(file: File) -> Self {
        Self { file, written: 0, written_back: 0 }
    }

    pub fn into_file(self) -> File {
        self.file
    }

    fn start_writeback(&mut self) {
        use std::os::fd::AsRawFd;
        let (from, to) = (self.written_back, self.written);
        // SAFETY: a valid descriptor owned by `file`; the call only schedules I/O.
        unsafe { libc::sync_file_range(self.file.as_raw_fd(), from as i64, (to - from) as i64, libc::SYNC_FILE_RANGE_WRITE) };
        self.written_back = to;
    }
}

impl std::io::Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::io::Write::write(&mut self.file, buf)?;
        self.written += n as u64;
        if self.written >= self.written_back + WRITEBACK_EVERY {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut self.file)
    }
}

pub struct Lane {
    id: usize,
    /// The archive root; each table is a directory under it.
    root: PathBuf,
    props: WriterProperties,
    epoch: u64,
    next_index: usize,
    open: BTreeMap<(Table, i64), OpenSegment>,
    /// At most this many open segments; more close the least recently written.
    max_open: usize,
    /// Segments of this epoch closed early (complete, fsynced, waiting for the commit).
    closed: Vec<SealedTemp>,
    writes: u64,
    /// Bytes of this epoch's segments, open and closed early, tagged with the epoch
    /// ([`tag_bytes`]; read by the coordinator).
    open_bytes: Arc<AtomicU64>,
    /// First write error; reported at the next seal.
    failed: Option<ArchiveError>,
}

impl Lane {
    pub fn new(id: usize, root: PathBuf, props: WriterProperties, epoch: u64, max_open: usize, open_bytes: Arc<AtomicU64>) -> Self {
        Self {
            id,
            root,
            props,
            epoch,
            next_index: 0,
            open: BTreeMap::new(),
            max_open: max_open.max(1),
            closed: Vec::new(),
            writes: 0,
            open_bytes,
            failed: None,
        }
    }

    /// Takes the lane's batches until its channel closes. A commit's segments are finished
    /// (last row group, footer, fsync) by a thread of the lane's own, `archive-seal-<lane>`,
    /// so the lane takes the next commit's batches at once: finishing takes as long as
    /// writing and syncing up to a row group per segment, and a lane that stopped for it
    /// would fill its channel and stop the coordinator — and every alert behind it. One
    /// commit is in flight at a time, so the sealer's queue of one never waits.
    pub fn run(mut self, rx: Receiver<LaneMsg>) {
        std::thread::scope(|s| {
            let (to_sealer, closings) = crossbeam_channel::bounded::<(Closing, Sender<Result<Vec<SealedTemp>, ArchiveError>>)>(1);
            std::thread::Builder::new()
                .name(format!("archive-seal-{}", self.id))
                .spawn_scoped(s, move || {
                    crate::event::thread::run_in_background();
                    for (closing, reply) in closings {
                        let _ = reply.send(closing.finish());
                    }
                })
                .expect("spawn segment sealer");
            for msg in rx {
                match msg {
                    LaneMsg::Write(table, batch) => {
                        if self.failed.is_none() {
                            if let Err(e) = self.write(table, &batch) {
                                self.failed = Some(e);
                            }
                        }
                    }
                    LaneMsg::Seal { epoch, metadata, reply } => {
                        let closing = Closing {
                            open: std::mem::take(&mut self.open).into_values().collect(),
                            closed: std::mem::take(&mut self.closed),
                            failed: self.failed.take(),
                            metadata,
                            lane: self.id,
                        };
                        self.epoch = epoch + 1;
                        self.next_index = 0;
                        self.open_bytes.store(tag_bytes(self.epoch, 0), Ordering::Relaxed);
                        let _ = to_sealer.send((closing, reply));
                    }
                }
            }
            // Channel closed without a final seal: open temporaries stay unsealed and are
            // discarded by recovery, exactly like after a crash. The sealer finishes what it
            // was given and ends with its queue (the scope joins it).
            drop(to_sealer);
        });
    }

    fn write(&mut self, table: Table, events: &EventBatch) -> Result<(), ArchiveError> {
        let hours = &events.hours;
        let Some(&first) = hours.first() else { return Ok(()) };
        if hours.iter().all(|&h| h == first) {
            self.write_partition(table, first, &events.columns)?;
        } else {
            let mut distinct = hours.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for h in distinct {
                let mask: BooleanArray = hours.iter().map(|&x| Some(x == h)).collect();
                let part = filter_record_batch(&events.columns, &mask)?;
                self.write_partition(table, h, &part)?;
            }
        }
        let open: usize = self.open.values().map(|s| s.writer.bytes_written() + s.writer.in_progress_size()).sum();
        let closed: u64 = self.closed.iter().map(|s| s.bytes).sum();
        self.open_bytes.store(tag_bytes(self.epoch, open as u64 + closed), Ordering::Relaxed);
        Ok(())
    }

    /// Closes the least recently written open segment (its footer carries the epoch; the
    /// commit's checkpoint goes into the segments still open at the seal).
    fn close_oldest(&mut self) -> Result<(), ArchiveError> {
        let Some((&key, _)) = self.open.iter().min_by_key(|(_, s)| s.last_used) else { return Ok(()) };
        let mut seg = self.open.remove(&key).expect("present");
        seg.writer.append_key_value_metadata(KeyValue::new(super::checkpoint::KEY_EPOCH.into(), self.epoch.to_string()));
        let file = seg.writer.into_inner().map_err(segment_err(&seg.tmp))?.into_file();
        file.sync_all().map_err(io_err(&seg.tmp))?;
        let bytes = file.metadata().map_err(io_err(&seg.tmp))?.len();
        self.closed.push(SealedTemp { table: seg.table, tmp: seg.tmp, dir: seg.dir, rows: seg.rows, bytes, checkpoint: false });
        Ok(())
    }

    fn write_partition(&mut self, table: Table, hour: i64, rows: &RecordBatch) -> Result<(), ArchiveError> {
        self.writes += 1;
        if !self.open.contains_key(&(table, hour)) {
            if self.open.len() >= self.max_open {
                self.close_oldest()?;
            }
            let dir = self.root.join(table.dir()).join(partition_path(hour));
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let tmp = dir.join(recovery::temp_name(self.epoch, self.id, self.next_index));
            self.next_index += 1;
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let writer = ArrowWriter::try_new(WritebackFile::new(file), rows.schema(), Some(self.props.clone())).map_err(segment_err(&tmp))?;
            self.open.insert((table, hour), OpenSegment { table, writer, tmp, dir, rows: 0, last_used: 0 });
        }
        let seg = self.open.get_mut(&(table, hour)).expect("just inserted");
        seg.last_used = self.writes;
        let (started, before) = (std::time::Instant::now(), seg.writer.bytes_written());
        seg.writer.write(rows).map_err(segment_err(&seg.tmp))?;
        let flushed = seg.writer.bytes_written() - before;
        if flushed > 0 {
            // A row group filled: encoded and written in one go, the lane takes no batch meanwhile.
            tracing::debug!(lane = self.id, bytes = flushed, ms = started.elapsed().as_millis() as u64, "row group written");
        }
        seg.rows += rows.num_rows() as u64;
        Ok(())
    }
}

/// A commit's segments, taken from a lane at its seal.
struct Closing {
    open: Vec<OpenSegment>,
    closed: Vec<SealedTemp>,
    /// The lane's first write error of the commit: reported instead of its segments.
    failed: Option<ArchiveError>,
    metadata: Vec<KeyValue>,
    lane: usize,
}

impl Closing {
    /// Closes every open segment with the commit's footer metadata (fsynced) and returns
    /// them with the segments closed early.
    fn finish(self) -> Result<Vec<SealedTemp>, ArchiveError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut out = Vec::with_capacity(self.open.len() + self.closed.len());
        for mut seg in self.open {
            for kv in &self.metadata {
                seg.writer.append_key_value_metadata(kv.clone());
            }
            let started = std::time::Instant::now();
            let file = seg.writer.into_inner().map_err(segment_err(&seg.tmp))?.into_file();
            let closed = started.elapsed();
            file.sync_all().map_err(io_err(&seg.tmp))?;
            tracing::debug!(
                lane = self.lane,
                rows = seg.rows,
                close_ms = closed.as_millis() as u64,
                sync_ms = (started.elapsed() - closed).as_millis() as u64,
                "segment sealed"
            );
            let bytes = file.metadata().map_err(io_err(&seg.tmp))?.len();
            out.push(SealedTemp { table: seg.table, tmp: seg.tmp, dir: seg.dir, rows: seg.rows, bytes, checkpoint: true });
        }
        out.extend(self.closed);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_bytes_count_only_for_their_epoch() {
        assert_eq!(bytes_of(7, tag_bytes(7, 1234)), 1234);
        assert_eq!(bytes_of(8, tag_bytes(7, 1234)), 0, "the sealing epoch's bytes are not the next one's");
        assert_eq!(bytes_of(70_000, tag_bytes(70_000, 5)), 5, "epochs past the tag's bits wrap consistently");
        assert_eq!(bytes_of(1, tag_bytes(1, u64::MAX)), (1 << 48) - 1, "bytes saturate below the tag");
    }
}
