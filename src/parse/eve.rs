//! Suricata EVE JSON → [`EventView`]. This is the one file that calls simd-json.
//!
//! Per line: strip the terminator (`\n`, `\r\n`), a UTF-8 BOM and an `@cee:` prefix; copy
//! the line once into a reused, padded scratch buffer; build a simd-json tape with reused
//! buffers and a nesting-depth limit; walk the top-level object once, typing only the hot
//! fields (duplicate keys: the last one wins, as in most JSON readers). Lines that use
//! Suricata's non-JSON `\xNN` escapes are rewritten to `\u00NN` and parsed again.
//! The raw bytes are never modified.

use simd_json::prelude::*;
use simd_json::tape::{Object, Value};
use simd_json::{Buffers, ErrorType, Tape};

use super::RejectReason;
use crate::event::time::parse_timestamp_us;
use crate::event::{AlertView, ContextKind, ContextView, EventView, Field, StrOrInt};

/// Limits applied to every line.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    pub max_line_bytes: usize,
    pub max_depth: usize,
    /// Read the few fields of flow, dns, http, tls, fileinfo and anomaly events that the
    /// state stage's flow context uses (off when nothing uses them).
    pub context: bool,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self { max_line_bytes: 16 << 20, max_depth: 128, context: true }
    }
}

/// Counts of typed fields that were present but unusable (kept as null).
pub use crate::event::handoff::FieldErrors;

/// A reusable EVE parser; one per worker thread.
pub struct EveParser {
    limits: ParseLimits,
    buffers: Buffers,
    scratch: Vec<u8>,
    tape: Option<Tape<'static>>,
    /// Per-field counts of unusable values since the last [`EveParser::take_field_errors`].
    field_errors: FieldErrors,
    /// Lines kept by repairing their escapes since the last [`EveParser::take_repaired`].
    repaired: u64,
}

/// What to archive for a line: the bytes that form `raw` (no terminator, BOM or prefix).
/// Returns `None` for a blank line.
pub fn prepare_line(line: &[u8]) -> Option<&[u8]> {
    let mut l = line;
    if let [rest @ .., b'\n'] = l {
        l = rest;
    }
    if let [rest @ .., b'\r'] = l {
        l = rest;
    }
    if let [0xEF, 0xBB, 0xBF, rest @ ..] = l {
        l = rest;
    }
    if let Some(rest) = l.strip_prefix(b"@cee:") {
        l = rest.strip_prefix(b" ").unwrap_or(rest);
    }
    if l.iter().all(|b| b.is_ascii_whitespace()) {
        None
    } else {
        Some(l)
    }
}

impl EveParser {
    pub fn new(limits: ParseLimits) -> Self {
        Self {
            limits,
            buffers: Buffers::with_max_depth(4096, limits.max_depth),
            scratch: Vec::with_capacity(4096 + simd_json::INPUT_PADDING),
            tape: Some(Tape::null().reset()),
            field_errors: [0; Field::COUNT],
            repaired: 0,
        }
    }

    pub fn limits(&self) -> ParseLimits {
        self.limits
    }

    /// Returns and resets the count of lines kept by repairing escapes (`\xNN`, lone
    /// surrogates).
    pub fn take_repaired(&mut self) -> u64 {
        std::mem::take(&mut self.repaired)
    }

    /// Returns and resets the per-field error counts.
    pub fn take_field_errors(&mut self) -> FieldErrors {
        std::mem::replace(&mut self.field_errors, [0; Field::COUNT])
    }

    /// Parses one prepared line (see [`prepare_line`]) and hands the typed view to `f`.
    pub fn parse<R>(&mut self, line: &[u8], f: impl FnOnce(&EventView<'_>) -> R) -> Result<R, RejectReason> {
        if line.len() > self.limits.max_line_bytes {
            return Err(RejectReason::TooLong);
        }
        // Cheap reject of anything that cannot be an object: saves a tape build on garbage.
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                return Err(self.classify_non_object(line));
            }
            _ => return Err(classify(line, false)),
        }
        let first = self.try_parse(line, false, f);
        match first {
            Ok(r) => r,
            Err((too_deep, f)) => {
                if !too_deep && needs_repair(line) {
                    match self.try_parse(line, true, f) {
                        Ok(r) => {
                            self.repaired += 1;
                            return r;
                        }
                        Err((too_deep, _)) => return Err(classify(line, too_deep)),
                    }
                }
                Err(classify(line, too_deep))
            }
        }
    }

    fn classify_non_object(&mut self, line: &[u8]) -> RejectReason {
        // Valid JSON that is not an object is `not_object`; otherwise find the real reason.
        let mut tape = self.tape.take().unwrap_or_else(|| Tape::null().reset()).reset();
        fill_scratch(&mut self.scratch, line, false);
        let len = self.scratch.len() - simd_json::INPUT_PADDING;
        let res = simd_json::fill_tape_padded(&mut self.scratch, len, &mut self.buffers, &mut tape);
        let reason = match res {
            Ok(()) => RejectReason::NotObject,
            Err(e) => classify(line, is_depth(&e)),
        };
        self.tape = Some(tape.reset());
        reason
    }

    /// One parse attempt. On a JSON error, gives the closure back for a retry, with
    /// whether the error was the depth limit.
    #[allow(clippy::type_complexity)]
    fn try_parse<R, F: FnOnce(&EventView<'_>) -> R>(&mut self, line: &[u8], fix_escapes: bool, f: F) -> Result<Result<R, RejectReason>, (bool, F)> {
        fill_scratch(&mut self.scratch, line, fix_escapes);
        let len = self.scratch.len() - simd_json::INPUT_PADDING;
        let mut tape = self.tape.take().unwrap_or_else(|| Tape::null().reset()).reset();
        if let Err(e) = simd_json::fill_tape_padded(&mut self.scratch, len, &mut self.buffers, &mut tape) {
            self.tape = Some(tape.reset());
            return Err((is_depth(&e), f));
        }
        let out = match tape.as_value().as_object() {
            Some(obj) => {
                let mut view = EventView::default();
                match walk_event(&obj, &mut view, &mut self.field_errors, self.limits.context) {
                    Ok(()) => Ok(f(&view)),
                    Err(r) => Err(r),
                }
            }
            None => Err(RejectReason::NotObject),
        };
        self.tape = Some(tape.reset());
        Ok(out)
    }
}

fn is_depth(e: &simd_json::Error) -> bool {
    matches!(e.error(), ErrorType::DepthLimitExceeded)
}

fn classify(line: &[u8], too_deep: bool) -> RejectReason {
    if too_deep {
        RejectReason::TooDeep
    } else if simdutf8::basic::from_utf8(line).is_err() {
        RejectReason::NotUtf8
    } else {
        RejectReason::InvalidJson
    }
}

/// Whether a line that did not parse has escapes [`repair_escapes`] may fix: Suricata's
/// `\xNN`, or a `\uD800`–`\uDFFF` surrogate escape (which may be lone).
fn needs_repair(line: &[u8]) -> bool {
    memchr::memmem::find(line, b"\\x").is_some() || memchr::memmem::find_iter(line, b"\\u").any(|i| matches!(line.get(i + 2), Some(b'd' | b'D')))
}

/// The four hex digits after `\u` at `i` (the backslash), as a number.
fn u_escape(line: &[u8], i: usize) -> Option<u16> {
    if line.get(i + 1) != Some(&b'u') {
        return None;
    }
    let hex = std::str::from_utf8(line.get(i + 2..i + 6)?).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

/// Appends `line` with the escapes JSON does not allow made valid: Suricata's `\xNN`
/// becomes `\u00NN`, and a surrogate escape without its pair becomes `\ufffd` (the
/// replacement character), so the event is kept and its alert decided. Returns how many
/// escapes were rewritten.
pub fn repair_escapes(line: &[u8], out: &mut Vec<u8>) -> usize {
    let mut fixed = 0;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b != b'\\' || i + 1 >= line.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = line[i + 1];
        if next == b'x' && i + 3 < line.len() && line[i + 2].is_ascii_hexdigit() && line[i + 3].is_ascii_hexdigit() {
            out.extend_from_slice(b"\\u00");
            out.push(line[i + 2]);
            out.push(line[i + 3]);
            fixed += 1;
            i += 4;
        } else if let Some(u) = u_escape(line, i).filter(|u| (0xD800..=0xDFFF).contains(u)) {
            let paired = u < 0xDC00 && u_escape(line, i + 6).is_some_and(|l| (0xDC00..=0xDFFF).contains(&l));
            if paired {
                out.extend_from_slice(&line[i..i + 12]);
                i += 12;
            } else {
                out.extend_from_slice(b"\\ufffd");
                fixed += 1;
                i += 6;
            }
        } else {
            out.push(b);
            out.push(next);
            i += 2;
        }
    }
    fixed
}

/// Copies `line` into `scratch` followed by simd-json's padding, optionally repairing its
/// escapes ([`repair_escapes`]).
fn fill_scratch(scratch: &mut Vec<u8>, line: &[u8], fix_escapes: bool) {
    scratch.clear();
    if !fix_escapes {
        scratch.extend_from_slice(line);
    } else {
        repair_escapes(line, scratch);
    }
    scratch.resize(scratch.len() + simd_json::INPUT_PADDING, 0);
}

fn walk_event<'t, 'i>(obj: &Object<'t, 'i>, ev: &mut EventView<'i>, errs: &mut FieldErrors, context: bool) -> Result<(), RejectReason> {
    let mut timestamp: Option<Value<'t, 'i>> = None;
    // The objects of the context kinds, read once the event type is known.
    let mut ctx: [Option<Value<'t, 'i>>; 6] = [None; 6];
    for (key, v) in obj.iter() {
        match key {
            "timestamp" => timestamp = Some(v),
            "dns" => ctx[0] = Some(v),
            "http" => ctx[1] = Some(v),
            "tls" => ctx[2] = Some(v),
            "fileinfo" => ctx[3] = Some(v),
            "flow" => ctx[4] = Some(v),
            "anomaly" => ctx[5] = Some(v),
            "event_type" => ev.event_type = str_field(v, Field::EventType, errs),
            "host" => ev.host = str_field(v, Field::Host, errs),
            "in_iface" => ev.in_iface = str_field(v, Field::InIface, errs),
            "src_ip" => ev.src_ip = str_field(v, Field::SrcIp, errs),
            "src_port" => ev.src_port = port_field(v, Field::SrcPort, errs),
            "dest_ip" => ev.dest_ip = str_field(v, Field::DestIp, errs),
            "dest_port" => ev.dest_port = port_field(v, Field::DestPort, errs),
            "proto" => {
                ev.proto = if let Some(s) = v.into_string() {
                    StrOrInt::Str(s)
                } else if let Some(n) = v.as_i64() {
                    StrOrInt::Int(n)
                } else {
                    note_bad(v, Field::Proto, errs);
                    StrOrInt::Absent
                }
            }
            "app_proto" => ev.app_proto = str_field(v, Field::AppProto, errs),
            "flow_id" => ev.flow_id = i64_field(v, Field::FlowId, errs),
            "community_id" => ev.community_id = str_field(v, Field::CommunityId, errs),
            "alert" => {
                ev.alert = match v.as_object() {
                    Some(a) => Some(walk_alert(&a, errs)),
                    None => {
                        note_bad(v, Field::Alert, errs);
                        None
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(kind) = ev.event_type.filter(|_| context).and_then(ContextKind::from_event_type) {
        let i = ContextKind::ALL.iter().position(|&k| k == kind).expect("kind listed");
        ev.context = ctx[i].and_then(|v| v.as_object()).map(|o| context_view(kind, &o));
    }
    match timestamp {
        None => Err(RejectReason::MissingTimestamp),
        Some(v) => match v.into_string() {
            Some("ts-error") => {
                ev.timestamp_us = None;
                Ok(())
            }
            Some(s) => match parse_timestamp_us(s.as_bytes()) {
                Some(us) => {
                    ev.timestamp_us = Some(us);
                    Ok(())
                }
                None => Err(RejectReason::BadTimestamp),
            },
            None => Err(RejectReason::BadTimestamp),
        },
    }
}

fn walk_alert<'i>(obj: &Object<'_, 'i>, errs: &mut FieldErrors) -> AlertView<'i> {
    let mut a = AlertView::default();
    for (key, v) in obj.iter() {
        match key {
            "gid" => a.gid = i64_field(v, Field::AlertGid, errs),
            "signature_id" => a.signature_id = i64_field(v, Field::AlertSignatureId, errs),
            "rev" => a.rev = i64_field(v, Field::AlertRev, errs),
            "signature" => a.signature = str_field(v, Field::AlertSignature, errs),
            "category" => a.category = str_field(v, Field::AlertCategory, errs),
            "severity" => {
                a.severity = match v.as_i64() {
                    Some(n) if i32::try_from(n).is_ok() => Some(n as i32),
                    _ => {
                        note_bad(v, Field::AlertSeverity, errs);
                        None
                    }
                }
            }
            "action" => a.action = str_field(v, Field::AlertAction, errs),
            _ => {}
        }
    }
    a
}

/// The fields of a context event's object that the flow context keeps. Wrong-typed
/// values are left out (they are not archive columns, so nothing is counted).
fn context_view<'i>(kind: ContextKind, o: &Object<'_, 'i>) -> ContextView<'i> {
    let mut c = ContextView { kind, text: [None; 5], num: [None; 4] };
    // One pass over the object, as for the event's top level.
    for (key, v) in o.iter() {
        match (kind, key) {
            (ContextKind::Dns, "rrname") => c.text[0] = v.into_string(),
            (ContextKind::Dns, "rrtype") => c.text[1] = v.into_string(),
            (ContextKind::Dns, "type") => c.text[2] = v.into_string(),
            (ContextKind::Dns, "rcode") => c.text[3] = v.into_string(),
            (ContextKind::Dns, "rdata") => c.text[4] = c.text[4].or(v.into_string()),
            // Version 3 puts the query in `queries` (and answers in `answers`); the first
            // answer with data is kept.
            (ContextKind::Dns, "queries" | "answers") => {
                let Some(a) = v.as_array() else { continue };
                if key == "answers" && c.text[4].is_none() {
                    c.text[4] = a.iter().filter_map(|x| x.as_object()).find_map(|x| x.get("rdata").and_then(|r| r.into_string()));
                }
                if c.text[0].is_some() {
                    continue;
                }
                if let Some(q) = a.get(0).and_then(|q| q.as_object()) {
                    for (k, x) in q.iter() {
                        match k {
                            "rrname" => c.text[0] = x.into_string(),
                            "rrtype" => c.text[1] = c.text[1].or(x.into_string()),
                            _ => {}
                        }
                    }
                }
            }
            // Version 2 answers grouped by type: the first A, AAAA or CNAME.
            (ContextKind::Dns, "grouped") if c.text[4].is_none() => {
                if let Some(g) = v.as_object() {
                    c.text[4] =
                        ["A", "AAAA", "CNAME"].iter().find_map(|t| g.get(*t).and_then(|l| l.as_array()).and_then(|l| l.get(0)).and_then(|x| x.into_string()));
                }
            }
            (ContextKind::Http, "hostname") => c.text[0] = v.into_string(),
            (ContextKind::Http, "url") => c.text[1] = v.into_string(),
            (ContextKind::Http, "http_method") => c.text[2] = v.into_string(),
            (ContextKind::Http, "http_user_agent") => c.text[3] = v.into_string(),
            (ContextKind::Http, "status") => c.num[0] = v.as_i64(),
            (ContextKind::Http, "length") => c.num[1] = v.as_i64(),
            (ContextKind::Tls, "sni") => c.text[0] = v.into_string(),
            (ContextKind::Tls, "version") => c.text[1] = v.into_string(),
            (ContextKind::Tls, "ja3") => c.text[2] = v.as_object().and_then(|h| h.get("hash")).and_then(|x| x.into_string()),
            (ContextKind::Tls, "ja4") => c.text[3] = v.into_string(),
            (ContextKind::FileInfo, "filename") => c.text[0] = v.into_string(),
            (ContextKind::FileInfo, "sha256") => c.text[1] = v.into_string(),
            (ContextKind::FileInfo, "md5") => c.text[2] = v.into_string(),
            (ContextKind::FileInfo, "magic") => c.text[3] = v.into_string(),
            (ContextKind::FileInfo, "sha1") => c.text[4] = v.into_string(),
            (ContextKind::FileInfo, "size") => c.num[0] = v.as_i64(),
            (ContextKind::Flow, "state") => c.text[0] = v.into_string(),
            (ContextKind::Flow, "reason") => c.text[1] = v.into_string(),
            (ContextKind::Flow, "pkts_toserver") => c.num[0] = v.as_i64(),
            (ContextKind::Flow, "pkts_toclient") => c.num[1] = v.as_i64(),
            (ContextKind::Flow, "bytes_toserver") => c.num[2] = v.as_i64(),
            (ContextKind::Flow, "bytes_toclient") => c.num[3] = v.as_i64(),
            (ContextKind::Anomaly, "type") => c.text[0] = v.into_string(),
            (ContextKind::Anomaly, "event") => c.text[1] = v.into_string(),
            (ContextKind::Anomaly, "layer") => c.text[2] = v.into_string(),
            _ => {}
        }
    }
    c
}

#[inline]
fn note_bad(v: Value<'_, '_>, field: Field, errs: &mut FieldErrors) {
    if v.as_null().is_none() {
        errs[field as usize] += 1;
    }
}

#[inline]
fn str_field<'i>(v: Value<'_, 'i>, field: Field, errs: &mut FieldErrors) -> Option<&'i str> {
    let s = v.into_string();
    if s.is_none() {
        note_bad(v, field, errs);
    }
    s
}

#[inline]
fn i64_field(v: Value<'_, '_>, field: Field, errs: &mut FieldErrors) -> Option<i64> {
    let n = v.as_i64();
    if n.is_none() {
        note_bad(v, field, errs);
    }
    n
}

#[inline]
fn port_field(v: Value<'_, '_>, field: Field, errs: &mut FieldErrors) -> Option<i32> {
    match v.as_i64() {
        Some(n) if (0..=65535).contains(&n) => Some(n as i32),
        _ => {
            note_bad(v, field, errs);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Detaches a string from the parser's buffers for the assertions.
    fn leak(s: Option<&str>) -> Option<&'static str> {
        s.map(|s| &*Box::leak(s.to_owned().into_boxed_str()))
    }

    fn parse(line: &str) -> Result<EventView<'static>, RejectReason> {
        let mut p = EveParser::new(ParseLimits::default());
        p.parse(line.as_bytes(), |v| -> EventView<'static> {
            EventView {
                timestamp_us: v.timestamp_us,
                event_type: leak(v.event_type),
                src_ip: leak(v.src_ip),
                src_port: v.src_port,
                flow_id: v.flow_id,
                proto: match v.proto {
                    StrOrInt::Str(s) => StrOrInt::Str(leak(Some(s)).unwrap()),
                    StrOrInt::Int(n) => StrOrInt::Int(n),
                    StrOrInt::Absent => StrOrInt::Absent,
                },
                alert: v.alert.as_ref().map(|a| AlertView {
                    signature: leak(a.signature),
                    signature_id: a.signature_id,
                    severity: a.severity,
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
    }

    #[test]
    fn types_hot_fields() {
        let v = parse(r#"{"timestamp":"2017-03-06T06:54:10.839668+0000","flow_id":2251799813685247,"event_type":"alert","src_ip":"10.0.0.1","src_port":80,"proto":"TCP","alert":{"signature_id":2019401,"signature":"ET \"x\"","severity":2}}"#).unwrap();
        assert_eq!(v.event_type, Some("alert"));
        assert_eq!(v.flow_id, Some(2_251_799_813_685_247));
        assert_eq!(v.src_port, Some(80));
        assert_eq!(v.proto, StrOrInt::Str("TCP"));
        let a = v.alert.unwrap();
        assert_eq!((a.signature_id, a.signature, a.severity), (Some(2019401), Some("ET \"x\""), Some(2)));
    }

    #[test]
    fn ts_error_is_kept_without_time() {
        let v = parse(r#"{"timestamp":"ts-error","event_type":"flow"}"#).unwrap();
        assert_eq!(v.timestamp_us, None);
        assert_eq!(v.event_type, Some("flow"));
    }

    #[test]
    fn hex_escapes_are_rewritten_but_escaped_backslashes_are_not() {
        let v = parse(r#"{"timestamp":"2017-03-06T06:54:10Z","event_type":"http\x41","src_ip":"a\\x41"}"#).unwrap();
        assert_eq!(v.event_type, Some("httpA"));
        assert_eq!(v.src_ip, Some("a\\x41"));
    }

    #[test]
    fn lone_surrogates_become_the_replacement_character_and_pairs_stay() {
        // An attacker-controlled URL with a lone high surrogate must not remove the alert.
        let line = r#"{"timestamp":"2017-03-06T06:54:10Z","event_type":"alert","src_ip":"a\ud800b","dest_ip":"x\uDC00","alert":{"signature":"pair \ud83d\ude00 end \ud83d"}}"#;
        let mut p = EveParser::new(ParseLimits::default());
        let (sig, src, dst) = p
            .parse(line.as_bytes(), |v| (v.alert.as_ref().unwrap().signature.map(str::to_owned), v.src_ip.map(str::to_owned), v.dest_ip.map(str::to_owned)))
            .unwrap();
        assert_eq!(sig.as_deref(), Some("pair \u{1F600} end \u{FFFD}"));
        assert_eq!((src.as_deref(), dst.as_deref()), (Some("a\u{FFFD}b"), Some("x\u{FFFD}")));
        assert_eq!(p.take_repaired(), 1);
        // A valid line is not counted; an escaped backslash before `u` is not an escape.
        p.parse(br#"{"timestamp":"2017-03-06T06:54:10Z","src_ip":"\\ud800"}"#, |v| assert_eq!(v.src_ip, Some("\\ud800"))).unwrap();
        assert_eq!(p.take_repaired(), 0);
        let mut out = Vec::new();
        assert_eq!(repair_escapes(br#"\ud800\ud800\udc00\x41\\ud800"#, &mut out), 2);
        assert_eq!(out, br#"\ufffd\ud800\udc00\u0041\\ud800"#);
    }

    #[test]
    fn reasons() {
        assert_eq!(parse(r#"{"timestamp":"2017-03-06T06:54:10"#).unwrap_err(), RejectReason::InvalidJson);
        assert_eq!(parse(r#"{"event_type":"flow"}"#).unwrap_err(), RejectReason::MissingTimestamp);
        assert_eq!(parse(r#"{"timestamp":"yesterday"}"#).unwrap_err(), RejectReason::BadTimestamp);
        assert_eq!(parse(r#"{"timestamp":12}"#).unwrap_err(), RejectReason::BadTimestamp);
        assert_eq!(parse(r#"[1,2]"#).unwrap_err(), RejectReason::NotObject);
        assert_eq!(parse("garbage").unwrap_err(), RejectReason::InvalidJson);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&deep).unwrap_err(), RejectReason::TooDeep);
        let deep_obj = format!("{{\"timestamp\":\"2017-03-06T06:54:10Z\",\"a\":{}1{}}}", "[".repeat(500), "]".repeat(500));
        assert_eq!(parse(&deep_obj).unwrap_err(), RejectReason::TooDeep);
        let mut p = EveParser::new(ParseLimits::default());
        assert_eq!(p.parse(b"{\"timestamp\":\"\xff\"}", |_| ()).unwrap_err(), RejectReason::NotUtf8);
    }

    #[test]
    fn wrong_types_become_null_and_are_counted() {
        let mut p = EveParser::new(ParseLimits::default());
        let line = r#"{"timestamp":"2017-03-06T06:54:10Z","src_port":70000,"dest_port":"80","flow_id":18446744073709551615,"proto":null}"#;
        let (sp, dp, fid) = p.parse(line.as_bytes(), |v| (v.src_port, v.dest_port, v.flow_id)).unwrap();
        assert_eq!((sp, dp, fid), (None, None, None));
        let errs = p.take_field_errors();
        assert_eq!(errs[Field::SrcPort as usize], 1);
        assert_eq!(errs[Field::DestPort as usize], 1);
        assert_eq!(errs[Field::FlowId as usize], 1);
        assert_eq!(errs[Field::Proto as usize], 0, "null is absent, not an error");
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let v = parse(r#"{"timestamp":"2017-03-06T06:54:10Z","event_type":"dns","event_type":"alert"}"#).unwrap();
        assert_eq!(v.event_type, Some("alert"));
    }

    #[test]
    fn prepare_strips_terminator_bom_and_cee() {
        assert_eq!(prepare_line(b"\xEF\xBB\xBF@cee: {\"a\":1}\r\n"), Some(&b"{\"a\":1}"[..]));
        assert_eq!(prepare_line(b"@cee:{}"), Some(&b"{}"[..]));
        assert_eq!(prepare_line(b" \r\n"), None);
        assert_eq!(prepare_line(b""), None);
    }
}
