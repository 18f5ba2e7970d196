//! Sources: where lines come from.
//!
//! Every source runs on its own thread (its reads are blocking system calls, and a sensor
//! has few of them), reads large chunks, frames them into whole lines ([`framing`]) and
//! sends [`RawBatch`]es into the bounded pipeline channel. Backpressure is per source:
//! `block` waits for room (files, stdin: the data waits safely on disk or in the pipe);
//! `drop` counts and discards (sockets: the sender cannot wait).
//!
//! A batch carries the source position reached after its last line; the archive records
//! it in the segment footer when the batch's rows are sealed, which is what makes restart
//! exactly-once for files.

pub mod file;
pub mod framing;
pub mod net;
pub mod octet;
pub mod redis;
pub mod stdin;
pub mod unix;
pub mod wake;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

use crate::deadletter::{DeadLetter, LineOrigin};
pub use crate::event::handoff::{Format, RawBatch, SourceInfo};
pub use crate::event::position::{Position, RedisPosition};
use crate::event::reject::RejectReason;
use crate::metrics as m;

/// What happens when the pipeline is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Block,
    Drop,
}

/// What every source gets from the pipeline.
#[derive(Clone)]
pub struct SourceCtx {
    pub info: Arc<SourceInfo>,
    pub tx: Sender<RawBatch>,
    /// Bytes the queue to the parse workers may hold (they give them back on receipt).
    pub budget: Arc<crate::event::budget::ByteBudget>,
    pub shutdown: Arc<AtomicBool>,
    pub dead_letter: Arc<DeadLetter>,
    /// Bytes read so far (drives the replay progress bar).
    pub progress: Arc<AtomicU64>,
    pub max_line_bytes: usize,
    pub read_bytes: usize,
    pub overflow: Overflow,
    pub format: Format,
    pub stats: Arc<crate::event::stats::PipelineStats>,
    /// This source's record for `/health` and the stats line.
    pub health: Arc<crate::event::stats::SourceHealth>,
}

impl SourceCtx {
    pub fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// Sends a batch according to the overflow policy. Returns false when the pipeline is
    /// gone (shutting down).
    pub fn send(&self, batch: RawBatch) -> bool {
        self.note_read(&batch);
        match self.overflow {
            Overflow::Block => {
                let n = batch.data.len() as u64;
                while !self.budget.try_take(n) {
                    if self.stopping() {
                        return false;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                let ok = self.tx.send(batch).is_ok();
                self.note_sent(n);
                ok
            }
            Overflow::Drop => self.try_send(batch),
        }
    }

    /// Counts the bytes of a batch read from the source.
    pub fn note_read(&self, batch: &RawBatch) {
        let len = batch.data.len() as u64;
        self.progress.fetch_add(len, Ordering::Relaxed);
        metrics::counter!(m::SOURCE_BYTES, "source" => self.info.name.to_string()).increment(len);
    }

    fn note_sent(&self, bytes: u64) {
        metrics::counter!(m::SOURCE_BATCHES, "source" => self.info.name.to_string()).increment(1);
        self.health.note_batch(bytes, crate::event::stats::now_ms());
    }

    fn note_dropped(&self, lines: u64) {
        metrics::counter!(m::SOURCE_DROPPED_LINES, "source" => self.info.name.to_string()).increment(lines);
        self.health.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// The `drop` policy: send if there is room, else count the batch's messages as lost.
    fn try_send(&self, batch: RawBatch) -> bool {
        let n = batch.data.len() as u64;
        if !self.budget.try_take(n) {
            self.note_dropped(batch.count_messages());
            return true;
        }
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.note_sent(n);
                true
            }
            Err(TrySendError::Full(b)) => {
                self.budget.give(n);
                self.note_dropped(b.count_messages());
                true
            }
            Err(TrySendError::Disconnected(_)) => {
                self.budget.give(n);
                false
            }
        }
    }

    /// [`SourceCtx::send`] for async sources: `block` waits for room without blocking the
    /// runtime thread.
    pub async fn send_async(&self, batch: RawBatch) -> bool {
        self.note_read(&batch);
        if self.overflow == Overflow::Drop {
            return self.try_send(batch);
        }
        let n = batch.data.len() as u64;
        while !self.budget.try_take(n) {
            if self.stopping() {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let mut batch = batch;
        loop {
            match self.tx.try_send(batch) {
                Ok(()) => {
                    self.note_sent(n);
                    return true;
                }
                Err(TrySendError::Full(b)) => {
                    if self.stopping() {
                        self.budget.give(n);
                        return false;
                    }
                    batch = b;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.budget.give(n);
                    return false;
                }
            }
        }
    }

    /// Reports a line that framing had to skip (longer than `max_line_bytes`).
    pub fn overlong(&self, path: Option<&str>, o: &framing::Overlong, with_offset: bool) {
        metrics::counter!(m::REJECTED_LINES, "reason" => RejectReason::TooLong.as_str()).increment(1);
        let origin = LineOrigin { source: &self.info.name, path, offset: with_offset.then_some(o.offset) };
        // The real length is unknown while skipping; at least the limit was exceeded.
        self.dead_letter.record(origin, RejectReason::TooLong, &o.sample, self.max_line_bytes as u64 + 1);
        self.stats.rejected[RejectReason::TooLong.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Sleeps up to `dur`, waking early when shutdown is requested.
pub fn nap(shutdown: &AtomicBool, dur: std::time::Duration) {
    let step = std::time::Duration::from_millis(20);
    let end = std::time::Instant::now() + dur;
    while !shutdown.load(Ordering::Relaxed) {
        let now = std::time::Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep(step.min(end - now));
    }
}
