//! The parse stage: one [`RawBatch`] in, one [`ParsedBatch`] out.
//!
//! Runs on a worker thread with its own parser and builder (no sharing, no per-event
//! allocation). Blank lines are skipped and counted; rejected lines go to the dead-letter
//! file; good events are appended to the batch. Counters are gathered per batch and
//! published once per batch.

use std::sync::Arc;

use super::eve::{prepare_line, EveParser, FieldErrors};
use super::RejectReason;
use crate::deadletter::{DeadLetter, LineOrigin};
use crate::event::time::wall_clock_us;
use crate::event::{EventBatch, EventBatchBuilder, Field};
use crate::ingest::framing::lines;
use crate::ingest::{Position, RawBatch, SourceInfo};

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
    /// Events per `event_type` (at most [`MAX_TYPES_PER_BATCH`] names, then `other`).
    pub types: Vec<(Box<str>, u64)>,
}

impl BatchStats {
    fn count_type(&mut self, t: &str) {
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

pub struct ParseStage {
    parser: EveParser,
    dead_letter: Arc<DeadLetter>,
}

impl ParseStage {
    pub fn new(parser: EveParser, dead_letter: Arc<DeadLetter>) -> Self {
        Self { parser, dead_letter }
    }

    pub fn process(&mut self, raw: RawBatch) -> ParsedBatch {
        let mut stats = BatchStats { bytes: raw.data.len() as u64, ..Default::default() };
        let approx_rows = raw.data.len() / 400 + 1;
        let mut builder = EventBatchBuilder::with_capacity(approx_rows, raw.data.len());
        let source_name: &str = &raw.source.name;
        let mut last_time: Option<i64> = None;
        for (off, line) in lines(&raw.data) {
            stats.lines += 1;
            let Some(prepared) = prepare_line(line) else {
                stats.blank += 1;
                continue;
            };
            let res = self.parser.parse(prepared, |ev| {
                let partition_us = match ev.timestamp_us {
                    Some(t) => {
                        last_time = Some(t);
                        t
                    }
                    // No event time: file it with the event before it, else with now.
                    None => last_time.unwrap_or_else(wall_clock_us),
                };
                // `prepared` passed the parser's UTF-8 validation; this check is the cheap
                // SIMD one and never fails here.
                let raw_text = simdutf8::basic::from_utf8(prepared).unwrap_or_default();
                builder.append(ev, partition_us, source_name, raw_text);
                stats.events += 1;
                stats.ts_errors += ev.timestamp_us.is_none() as u64;
                stats.count_type(ev.event_type.unwrap_or("(none)"));
            });
            match res {
                Ok(()) => {}
                Err(reason) => {
                    stats.rejected[reason.index()] += 1;
                    let origin = LineOrigin { source: source_name, path: raw.path.as_deref(), offset: raw.base_offset.map(|b| b + off as u64) };
                    self.dead_letter.record(origin, reason, line, line.len() as u64);
                }
            }
        }
        stats.field_errors = self.parser.take_field_errors();
        ParsedBatch { source: raw.source, stream: raw.stream, seq: raw.seq, position: raw.position, events: builder.finish(), stats }
    }
}

/// Publishes a batch's counters to the metrics recorder.
pub fn publish(stats: &BatchStats) {
    use crate::metrics as m;
    metrics::counter!(m::PARSE_LINES).increment(stats.lines);
    metrics::counter!(m::PARSE_BLANK_LINES).increment(stats.blank);
    metrics::counter!(m::PARSE_EVENTS).increment(stats.events);
    if stats.ts_errors > 0 {
        metrics::counter!(m::TIMESTAMP_ERRORS).increment(stats.ts_errors);
    }
    for r in RejectReason::ALL {
        let n = stats.rejected[r.index()];
        if n > 0 {
            metrics::counter!(m::REJECTED_LINES, "reason" => r.as_str()).increment(n);
        }
    }
    for f in Field::ALL {
        let n = stats.field_errors[f as usize];
        if n > 0 {
            metrics::counter!(m::FIELD_INVALID, "field" => f.name()).increment(n);
        }
    }
}
