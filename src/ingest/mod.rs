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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};

use crate::deadletter::{DeadLetter, LineOrigin};
use crate::metrics as m;
use crate::parse::RejectReason;

/// What happens when the pipeline is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Block,
    Drop,
}

/// How the bytes of a source are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Suricata EVE JSON, one event a line.
    #[default]
    Eve,
    /// Fast-alert lines (Suricata `fast.log`, Snort `alert_fast`).
    Fast,
    /// Syslog messages (RFC 5424 or RFC 3164); the message decides the event.
    Syslog,
    /// Decided per line: syslog when the line starts with `<PRI>` or a date, a fast
    /// alert when it starts with a fast.log date and holds `[**]`, else EVE JSON.
    Auto,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Eve => "eve",
            Format::Fast => "fast",
            Format::Syslog => "syslog",
            Format::Auto => "auto",
        }
    }

    pub fn from_name(s: &str) -> Option<Format> {
        Some(match s {
            "eve" => Format::Eve,
            "fast" => Format::Fast,
            "syslog" => Format::Syslog,
            "auto" => Format::Auto,
            _ => return None,
        })
    }
}

/// Identity of a configured source.
#[derive(Debug)]
pub struct SourceInfo {
    /// Index in the pipeline's source list.
    pub id: usize,
    /// The config name; it is the `source` column and the metrics label.
    pub name: Arc<str>,
    /// The sender's time zone for dates written without an offset (RFC 3164, fast.log);
    /// `None` is UTC. Zones live for the process (a few per configuration).
    pub zone: Option<&'static jiff::tz::TimeZone>,
}

/// Where a source stands after a batch. Recorded in sealed segments.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// Push sources (sockets, stdin): nothing to resume.
    None,
    /// A file identified by the fingerprint of its first line, read up to `offset`.
    File { fingerprint: u64, offset: u64, path: Arc<str> },
    /// A Redis list or stream (see [`redis`]).
    Redis(RedisPos),
}

/// How far a Redis batch reaches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisPos {
    pub list_seq: Option<u64>,
    pub stream_id: Option<(u64, u64)>,
    pub claimed: Vec<String>,
}

/// A chunk of whole lines from one source.
#[derive(Debug, Clone)]
pub struct RawBatch {
    pub source: Arc<SourceInfo>,
    /// Order of this batch within its stream (one file, one connection).
    pub seq: u64,
    /// The stream the sequence belongs to: batches of one stream are archived in order.
    pub stream: u64,
    pub data: Bytes,
    /// Offset of `data[0]` in the file, for dead-letter records.
    pub base_offset: Option<u64>,
    /// File or socket path, for dead-letter records.
    pub path: Option<Arc<str>>,
    /// Position after the last line of `data`.
    pub position: Position,
    pub format: Format,
    /// End offsets of the messages in `data` when the transport frames them (datagrams,
    /// octet counting); empty when `data` is newline-separated lines.
    pub frames: Vec<u32>,
}

impl RawBatch {
    /// The messages of the batch with their offsets in `data`.
    pub fn messages(&self) -> Box<dyn Iterator<Item = (usize, &[u8])> + '_> {
        if self.frames.is_empty() {
            Box::new(framing::lines(&self.data))
        } else {
            let data = &self.data[..];
            let mut start = 0usize;
            Box::new(self.frames.iter().map(move |&end| {
                let s = start;
                start = end as usize;
                (s, &data[s..end as usize])
            }))
        }
    }

    /// Number of messages (lines or frames) in the batch.
    pub fn count_messages(&self) -> u64 {
        if self.frames.is_empty() {
            memchr::memchr_iter(b'\n', &self.data).count().max(1) as u64
        } else {
            self.frames.len() as u64
        }
    }
}

/// What every source gets from the pipeline.
#[derive(Clone)]
pub struct SourceCtx {
    pub info: Arc<SourceInfo>,
    pub tx: Sender<RawBatch>,
    pub shutdown: Arc<AtomicBool>,
    pub dead_letter: Arc<DeadLetter>,
    /// Bytes read so far (drives the replay progress bar).
    pub progress: Arc<AtomicU64>,
    pub max_line_bytes: usize,
    pub read_bytes: usize,
    pub overflow: Overflow,
    pub format: Format,
    pub stats: Arc<crate::pipeline::stats::PipelineStats>,
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
                let ok = self.tx.send(batch).is_ok();
                self.note_sent();
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

    fn note_sent(&self) {
        metrics::counter!(m::SOURCE_BATCHES, "source" => self.info.name.to_string()).increment(1);
    }

    /// The `drop` policy: send if there is room, else count the batch's messages as lost.
    fn try_send(&self, batch: RawBatch) -> bool {
        match self.tx.try_send(batch) {
            Ok(()) => {
                self.note_sent();
                true
            }
            Err(TrySendError::Full(b)) => {
                metrics::counter!(m::SOURCE_DROPPED_LINES, "source" => self.info.name.to_string()).increment(b.count_messages());
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// [`SourceCtx::send`] for async sources: `block` waits for room without blocking the
    /// runtime thread.
    pub async fn send_async(&self, batch: RawBatch) -> bool {
        self.note_read(&batch);
        if self.overflow == Overflow::Drop {
            return self.try_send(batch);
        }
        let mut batch = batch;
        loop {
            match self.tx.try_send(batch) {
                Ok(()) => {
                    self.note_sent();
                    return true;
                }
                Err(TrySendError::Full(b)) => {
                    if self.stopping() {
                        return false;
                    }
                    batch = b;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                Err(TrySendError::Disconnected(_)) => return false,
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
