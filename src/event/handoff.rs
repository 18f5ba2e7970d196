//! What the stages hand each other between threads: a source's identity and format, the
//! raw line batches sources send to the parse workers, and the parsed batches the parse
//! workers send on, with their counts. Plain data: no stage logic lives here.

use std::sync::Arc;

use bytes::Bytes;

use super::position::Position;
use super::reject::RejectReason;
use super::{EventBatch, Field};

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
    /// When the messages of several peers share the batch (a listener's connections
    /// coalesced): the end offset in `data` of each peer's run and that peer's path.
    /// Empty when `path` names the origin of every message.
    pub origins: Vec<(u32, Arc<str>)>,
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
            Box::new(lines(&self.data))
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

    /// The path of the message starting at `offset`, for dead-letter records.
    pub fn path_at(&self, offset: usize) -> Option<&str> {
        if self.origins.is_empty() {
            return self.path.as_deref();
        }
        let i = self.origins.partition_point(|(end, _)| (*end as usize) <= offset);
        self.origins.get(i).map(|(_, p)| &**p).or(self.path.as_deref())
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

/// The newline-separated lines of `data` (the last one may lack its newline), with their
/// offsets.
pub fn lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let start = pos;
        match memchr::memchr(b'\n', &data[pos..]) {
            Some(i) => {
                pos += i + 1;
                Some((start, &data[start..start + i]))
            }
            None => {
                pos = data.len();
                Some((start, &data[start..]))
            }
        }
    })
}

/// Values of each typed field that could not be used, per batch.
pub type FieldErrors = [u64; Field::COUNT];

/// The RFC 5424 rules a message is checked against (see `parse::stage::SYSLOG_RULES`).
pub const SYSLOG_RULE_COUNT: usize = 9;

/// Distinct event types counted per batch before the rest are counted as `other`.
const MAX_TYPES_PER_BATCH: usize = 64;

/// Counts for one batch.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    pub lines: u64,
    pub blank: u64,
    pub events: u64,
    pub bytes: u64,
    pub ts_errors: u64,
    pub rejected: [u64; RejectReason::COUNT],
    pub field_errors: FieldErrors,
    /// Events per `event_type` (at most `MAX_TYPES_PER_BATCH` names, then `other`).
    pub types: Vec<(Box<str>, u64)>,
    /// Messages claiming RFC 5424 that broke a rule (read leniently), per rule.
    pub nonconforming: [u64; SYSLOG_RULE_COUNT],
    /// Syslog messages whose JSON payload was not an EVE event (kept as `syslog` events).
    pub payload_invalid: u64,
    /// Syslog lines stored decoded as Latin-1.
    pub latin1: u64,
    /// EVE lines kept by repairing escapes JSON does not allow (`\xNN`, lone surrogates).
    pub repaired_escapes: u64,
    /// Events whose time was outside the plausible window, filed under their arrival hour.
    pub implausible_times: u64,
}

impl BatchStats {
    pub fn count_type(&mut self, t: &str) {
        if let Some(e) = self.types.iter_mut().find(|(n, _)| &**n == t) {
            e.1 += 1;
        } else if self.types.len() < MAX_TYPES_PER_BATCH {
            self.types.push((t.into(), 1));
        } else if let Some(e) = self.types.iter_mut().find(|(n, _)| &**n == "other") {
            e.1 += 1;
        } else {
            self.types.push(("other".into(), 1));
        }
    }
}

/// A parsed batch on its way to the archive.
#[derive(Debug)]
pub struct ParsedBatch {
    pub source: Arc<SourceInfo>,
    pub stream: u64,
    pub seq: u64,
    pub position: Position,
    pub events: EventBatch,
    pub stats: BatchStats,
}
