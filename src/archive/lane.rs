//! Writer lanes: the threads that encode Parquet.
//!
//! Encoding (dictionary, zstd) is the most expensive step of the pipeline, so the archive
//! spreads it over `writer_threads` lanes. Each lane owns one open segment per partition
//! (hour) it has been given rows for. The coordinator ([`super::ArchiveWriter`]) sends
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
}

struct OpenSegment {
    table: Table,
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    dir: PathBuf,
    rows: u64,
}

pub struct Lane {
    id: usize,
    /// The archive root; each table is a directory under it.
    root: PathBuf,
    props: WriterProperties,
    epoch: u64,
    next_index: usize,
    open: BTreeMap<(Table, i64), OpenSegment>,
    /// Bytes held by this lane's open segments (read by the coordinator).
    open_bytes: Arc<AtomicU64>,
    /// First write error; reported at the next seal.
    failed: Option<ArchiveError>,
}

impl Lane {
    pub fn new(id: usize, root: PathBuf, props: WriterProperties, epoch: u64, open_bytes: Arc<AtomicU64>) -> Self {
        Self { id, root, props, epoch, next_index: 0, open: BTreeMap::new(), open_bytes, failed: None }
    }

    pub fn run(mut self, rx: Receiver<LaneMsg>) {
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
                    let res = match self.failed.take() {
                        Some(e) => Err(e),
                        None => self.seal(&metadata),
                    };
                    self.epoch = epoch + 1;
                    self.next_index = 0;
                    let _ = reply.send(res);
                }
            }
        }
        // Channel closed without a final seal: open temporaries stay unsealed and are
        // discarded by recovery, exactly like after a crash.
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
        let bytes: usize = self.open.values().map(|s| s.writer.bytes_written() + s.writer.in_progress_size()).sum();
        self.open_bytes.store(bytes as u64, Ordering::Relaxed);
        Ok(())
    }

    fn write_partition(&mut self, table: Table, hour: i64, rows: &RecordBatch) -> Result<(), ArchiveError> {
        if !self.open.contains_key(&(table, hour)) {
            let dir = self.root.join(table.dir()).join(partition_path(hour));
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let tmp = dir.join(recovery::temp_name(self.epoch, self.id, self.next_index));
            self.next_index += 1;
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let writer = ArrowWriter::try_new(file, rows.schema(), Some(self.props.clone()))?;
            self.open.insert((table, hour), OpenSegment { table, writer, tmp, dir, rows: 0 });
        }
        let seg = self.open.get_mut(&(table, hour)).expect("just inserted");
        seg.writer.write(rows)?;
        seg.rows += rows.num_rows() as u64;
        Ok(())
    }

    fn seal(&mut self, metadata: &[KeyValue]) -> Result<Vec<SealedTemp>, ArchiveError> {
        let mut out = Vec::with_capacity(self.open.len());
        for (_, mut seg) in std::mem::take(&mut self.open) {
            for kv in metadata {
                seg.writer.append_key_value_metadata(kv.clone());
            }
            let file = seg.writer.into_inner()?;
            file.sync_all().map_err(io_err(&seg.tmp))?;
            let bytes = file.metadata().map_err(io_err(&seg.tmp))?.len();
            out.push(SealedTemp { table: seg.table, tmp: seg.tmp, dir: seg.dir, rows: seg.rows, bytes });
        }
        self.open_bytes.store(0, Ordering::Relaxed);
        Ok(out)
    }
}
