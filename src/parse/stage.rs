//! The parse stage: one [`RawBatch`] in, one [`ParsedBatch`] out.
//!
//! Runs on a worker thread with its own parser and builder (no sharing, no per-event
//! allocation). Blank lines are skipped and counted; rejected lines go to the dead-letter
//! file; good events are appended to the batch. Counters are gathered per batch and
//! published once per batch.

use std::sync::Arc;

use super::eve::{prepare_line, EveParser};
use super::fast::{parse_fast, FastAlert};
use super::syslog::{self, Rfc5424Error, TimeHint};
use crate::deadletter::{DeadLetter, LineOrigin};
use crate::event::handoff::{BatchStats, Format, ParsedBatch, RawBatch, SYSLOG_RULE_COUNT};
use crate::event::reject::RejectReason;
use crate::event::time::wall_clock_us;
use crate::event::{AlertView, EventBatchBuilder, EventView, Field, StrOrInt, SyslogView};

/// The RFC 5424 rules, in the order of [`Rfc5424Error`].
pub const SYSLOG_RULES: [Rfc5424Error; SYSLOG_RULE_COUNT] = [
    Rfc5424Error::Pri,
    Rfc5424Error::Version,
    Rfc5424Error::Timestamp,
    Rfc5424Error::Hostname,
    Rfc5424Error::AppName,
    Rfc5424Error::ProcId,
    Rfc5424Error::MsgId,
    Rfc5424Error::StructuredData,
    Rfc5424Error::Message,
];

pub struct ParseStage {
    parser: EveParser,
    dead_letter: Arc<DeadLetter>,
    /// Latin-1 decoding of non-UTF-8 syslog lines.
    text: String,
    /// Structured data rendered as JSON.
    sd_json: String,
    plausible: Plausible,
}

/// What the dispatcher found a message to be.
enum Kind {
    Eve,
    Fast,
    Syslog,
}

fn detect(format: Format, line: &[u8]) -> Kind {
    match format {
        Format::Eve => Kind::Eve,
        Format::Fast => Kind::Fast,
        Format::Syslog => Kind::Syslog,
        Format::Auto => {
            let l = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            let first = l.iter().position(|b| !b.is_ascii_whitespace()).map(|i| &l[i..]).unwrap_or(b"");
            const MONTHS: [&[u8]; 12] = [b"Jan ", b"Feb ", b"Mar ", b"Apr ", b"May ", b"Jun ", b"Jul ", b"Aug ", b"Sep ", b"Oct ", b"Nov ", b"Dec "];
            let dated = |s: &[u8]| s.len() > 10 && s[..4].iter().all(u8::is_ascii_digit) && s[4] == b'-' && s[7] == b'-';
            match first.first() {
                Some(b'<') => Kind::Syslog,
                // `MM/DD/YYYY-` or `MM/DD-` then `[**]` later on.
                Some(b'0'..=b'9') if first.get(2) == Some(&b'/') && memchr::memmem::find(first, b"[**]").is_some() => Kind::Fast,
                // PRI-less syslog: a BSD or RFC 3339 date first.
                _ if first.len() > 4 && MONTHS.iter().any(|m| first[..4].eq_ignore_ascii_case(m)) => Kind::Syslog,
                _ if dated(first) => Kind::Syslog,
                // Everything else is read as EVE, so garbage gets EVE's rejection reasons.
                _ => Kind::Eve,
            }
        }
    }
}

/// The message inside a syslog frame, after a BOM and leading spaces.
fn payload(msg: &[u8]) -> &[u8] {
    let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
    let i = msg.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(msg.len());
    &msg[i..]
}

/// Text of a fast alert as an alert event.
fn alert_event<'a>(a: &FastAlert<'a>) -> EventView<'a> {
    EventView {
        timestamp_us: a.timestamp_us,
        event_type: Some("alert"),
        src_ip: (!a.src_ip.is_empty()).then_some(a.src_ip),
        src_port: a.src_port,
        dest_ip: (!a.dest_ip.is_empty()).then_some(a.dest_ip),
        dest_port: a.dest_port,
        proto: if a.proto.is_empty() { StrOrInt::Absent } else { StrOrInt::Str(a.proto) },
        alert: Some(AlertView {
            gid: Some(a.gid),
            signature_id: Some(a.signature_id),
            rev: Some(a.rev),
            signature: Some(a.signature),
            category: a.category,
            severity: a.priority,
            action: Some(a.action),
        }),
        ..Default::default()
    }
}

/// Event times that decide partitions: inside `[1970, 2200)` always, and inside the
/// window around the wall clock the configuration sets. Outside it, an event is archived
/// under the hour it arrived (its `timestamp` column unchanged) and counted, so crafted or
/// broken times cannot open a partition per hour, nor one that readers cannot parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plausible {
    /// How far before the wall clock an event time may be (`None`: no limit).
    pub past_us: Option<i64>,
    /// How far after the wall clock an event time may be.
    pub future_us: i64,
}

impl Default for Plausible {
    fn default() -> Self {
        Self { past_us: None, future_us: 24 * 3600 * 1_000_000 }
    }
}

/// 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z in microseconds.
const EARLIEST_US: i64 = 0;
const LATEST_US: i64 = 7_258_118_400_000_000;

impl Plausible {
    /// The accepted range `[from, to)` at wall-clock time `now_us`.
    pub fn range(&self, now_us: i64) -> (i64, i64) {
        let from = self.past_us.map_or(EARLIEST_US, |p| now_us.saturating_sub(p).max(EARLIEST_US));
        let to = now_us.saturating_add(self.future_us).min(LATEST_US);
        (from, to)
    }
}

/// Appends events and keeps the batch's counters.
struct Sink<'s> {
    builder: EventBatchBuilder,
    stats: BatchStats,
    last_time: Option<i64>,
    source: &'s str,
    /// Accepted partition times `[from, to)` and the arrival time for the rest.
    range: (i64, i64),
    arrival_us: i64,
}

impl Sink<'_> {
    fn emit(&mut self, ev: &EventView<'_>, raw: &str) {
        let partition_us = match ev.timestamp_us {
            Some(t) if t >= self.range.0 && t < self.range.1 => {
                self.last_time = Some(t);
                t
            }
            Some(_) => {
                self.stats.implausible_times += 1;
                self.arrival_us
            }
            // No event time: file it with the event before it, else with now.
            None => *self.last_time.get_or_insert(self.arrival_us),
        };
        self.builder.append(ev, partition_us, self.source, raw);
        self.stats.events += 1;
        self.stats.ts_errors += ev.timestamp_us.is_none() as u64;
        self.stats.count_type(ev.event_type.unwrap_or("(none)"));
    }
}

impl ParseStage {
    pub fn new(parser: EveParser, dead_letter: Arc<DeadLetter>) -> Self {
        Self { parser, dead_letter, text: String::new(), sd_json: String::new(), plausible: Plausible::default() }
    }

    /// Sets the window of plausible event times (default: up to 24 h ahead, any past).
    pub fn with_plausible(mut self, plausible: Plausible) -> Self {
        self.plausible = plausible;
        self
    }

    pub fn process(&mut self, raw: RawBatch) -> ParsedBatch {
        let stats = BatchStats { bytes: raw.data.len() as u64, ..Default::default() };
        let approx_rows = raw.data.len() / 400 + 1;
        let now = wall_clock_us();
        let mut sink = Sink {
            builder: EventBatchBuilder::with_capacity(approx_rows, raw.data.len()),
            stats,
            last_time: None,
            source: &raw.source.name,
            range: self.plausible.range(now),
            arrival_us: now,
        };
        let hint = TimeHint { now_us: now, zone: raw.source.zone };
        for (off, line) in raw.messages() {
            sink.stats.lines += 1;
            let Some(prepared) = prepare_line(line) else {
                sink.stats.blank += 1;
                continue;
            };
            let res = match detect(raw.format, prepared) {
                Kind::Eve => self.eve(prepared, &mut sink),
                Kind::Fast => fast_line(prepared, hint, &mut sink),
                Kind::Syslog => self.syslog(prepared, hint, &mut sink),
            };
            if let Err(reason) = res {
                sink.stats.rejected[reason.index()] += 1;
                let origin = LineOrigin { source: sink.source, path: raw.path_at(off), offset: raw.base_offset.map(|b| b + off as u64) };
                self.dead_letter.record(origin, reason, line, line.len() as u64);
            }
        }
        let mut stats = sink.stats;
        stats.field_errors = self.parser.take_field_errors();
        stats.repaired_escapes = self.parser.take_repaired();
        ParsedBatch { source: raw.source.clone(), stream: raw.stream, seq: raw.seq, position: raw.position.clone(), events: sink.builder.finish(), stats }
    }

    fn eve(&mut self, prepared: &[u8], sink: &mut Sink<'_>) -> Result<(), RejectReason> {
        self.parser.parse(prepared, |ev| {
            // `prepared` passed the parser's UTF-8 validation; this check is the cheap
            // SIMD one and never fails here.
            let raw_text = simdutf8::basic::from_utf8(prepared).unwrap_or_default();
            sink.emit(ev, raw_text);
        })
    }

    fn syslog(&mut self, line: &[u8], hint: TimeHint, sink: &mut Sink<'_>) -> Result<(), RejectReason> {
        if line.len() > self.parser.limits().max_line_bytes {
            return Err(RejectReason::TooLong);
        }
        // The archive holds text: a line that is not UTF-8 (old devices send Latin-1) is
        // stored decoded as Latin-1, one character per byte, so the bytes can be recovered.
        let text: &str = match simdutf8::basic::from_utf8(line) {
            Ok(t) => t,
            Err(_) => {
                sink.stats.latin1 += 1;
                self.text.clear();
                self.text.extend(line.iter().map(|&b| b as char));
                &self.text
            }
        };
        let (msg, broken) = syslog::parse(text.as_bytes(), hint);
        if let Some(rule) = broken {
            sink.stats.nonconforming[rule as usize] += 1;
        }
        self.sd_json.clear();
        if let Some(sd) = msg.structured_data {
            syslog::structured_data_json(sd, &mut self.sd_json);
        }
        let mut header = SyslogView {
            facility: msg.facility(),
            severity: msg.severity(),
            hostname: msg.hostname,
            app_name: msg.app_name,
            procid: msg.procid,
            msgid: msg.msgid,
            structured_data: msg.structured_data.map(|_| self.sd_json.as_str()),
            message: None,
        };
        // Message slices start and end at ASCII delimiters of valid UTF-8 text.
        // The column holds the text without a BOM (`raw` keeps it).
        let message = std::str::from_utf8(msg.message.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg.message)).unwrap_or_default();
        let body = payload(msg.message);
        if body.first() == Some(&b'{') || body.starts_with(b"@cee:") {
            let eve = prepare_line(body).unwrap_or(body);
            let done = self.parser.parse(eve, |ev| {
                let mut ev = ev.clone();
                ev.syslog = Some(header.clone());
                sink.emit(&ev, text);
            });
            match done {
                Ok(()) => return Ok(()),
                // A cut-off or broken payload stays a syslog event: nothing is lost.
                Err(_) => sink.stats.payload_invalid += 1,
            }
        } else if matches!(body.first(), Some(b'[' | b'0'..=b'9')) {
            if let Some(a) = std::str::from_utf8(body).ok().and_then(|b| parse_fast(b, hint)) {
                let mut ev = alert_event(&a);
                ev.timestamp_us = a.timestamp_us.or(msg.timestamp_us);
                ev.syslog = Some(header);
                sink.emit(&ev, text);
                return Ok(());
            }
        }
        header.message = Some(message);
        let ev = EventView { timestamp_us: msg.timestamp_us, event_type: Some("syslog"), syslog: Some(header), ..Default::default() };
        sink.emit(&ev, text);
        Ok(())
    }
}

fn fast_line(line: &[u8], hint: TimeHint, sink: &mut Sink<'_>) -> Result<(), RejectReason> {
    let text = simdutf8::basic::from_utf8(line).map_err(|_| RejectReason::NotUtf8)?;
    let a = parse_fast(text, hint).ok_or(RejectReason::InvalidFastAlert)?;
    sink.emit(&alert_event(&a), text);
    Ok(())
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
    for r in SYSLOG_RULES {
        let n = stats.nonconforming[r as usize];
        if n > 0 {
            metrics::counter!(m::SYSLOG_NONCONFORMING, "rule" => r.as_str()).increment(n);
        }
    }
    if stats.payload_invalid > 0 {
        metrics::counter!(m::SYSLOG_PAYLOAD_INVALID).increment(stats.payload_invalid);
    }
    if stats.latin1 > 0 {
        metrics::counter!(m::SYSLOG_LATIN1).increment(stats.latin1);
    }
    if stats.repaired_escapes > 0 {
        metrics::counter!(m::REPAIRED_ESCAPES).increment(stats.repaired_escapes);
    }
    if stats.implausible_times > 0 {
        metrics::counter!(m::IMPLAUSIBLE_TIMES).increment(stats.implausible_times);
    }
    for f in Field::ALL {
        let n = stats.field_errors[f as usize];
        if n > 0 {
            metrics::counter!(m::FIELD_INVALID, "field" => f.name()).increment(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_detection() {
        let kind = |l: &[u8]| match detect(Format::Auto, l) {
            Kind::Eve => "eve",
            Kind::Fast => "fast",
            Kind::Syslog => "syslog",
        };
        assert_eq!(kind(b"{\"timestamp\":\"x\"}"), "eve");
        assert_eq!(kind(b"@cee: {}"), "eve");
        assert_eq!(kind(b"<13>1 - - - - - - x"), "syslog");
        assert_eq!(kind(b"Sep  5 16:05:26 dev snort: [1:1:0] x"), "syslog");
        assert_eq!(kind(b"2026-11-28T05:33:51+00:00 host app: x"), "syslog");
        assert_eq!(kind(b"02/05/2021-07:34:50.000003  [**] [1:1:0] x [**] [Priority: 3] {TCP} a:1 -> b:2"), "fast");
        assert_eq!(kind(b"garbage"), "eve");
        assert_eq!(kind(b"\xff\xfe"), "eve");
    }
}
