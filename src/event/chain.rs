//! Hash chains of JSON records: each record names the previous one's hash, so editing,
//! deleting, inserting or reordering a record breaks the chain at that record. Used by the
//! audit trail of decisions and by the journal of actions.
//!
//! A record is `{"seq":…,"id":…,"ts":…,"kind":…,"subject":…,"detail":{…},"prev":…,"hash":…}`:
//! `seq` counts from 1 without gaps, `id` is stable (derived from kind, subject and event
//! time), `prev` is the previous record's `hash`, and `hash` is the SHA-256 of `prev`, a
//! newline and the record's text up to `prev` (closed with `}`).

use std::io::BufRead;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::event::json::push_hex;

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The head of the chain: the last record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub seq: u64,
    pub head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain { seq: 0, head: GENESIS.to_string() }
    }
}

fn sha256(prev: &str, body: &str) -> ring::digest::Digest {
    let mut c = ring::digest::Context::new(&ring::digest::SHA256);
    c.update(prev.as_bytes());
    c.update(b"\n");
    c.update(body.as_bytes());
    c.finish()
}

fn sha256_hex(prev: &str, body: &str) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, sha256(prev, body).as_ref());
    out
}

fn record_digest(kind: &str, subject: &str, ts_us: i64) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(kind.as_bytes());
    h.update(&[0]);
    h.update(subject.as_bytes());
    h.update(&[0]);
    h.update(&ts_us.to_le_bytes());
    h.digest()
}

/// Stable id of a decision: 16 hex digits of xxh3 over kind, subject and event time.
pub fn record_id(kind: &str, subject: &str, ts_us: i64) -> String {
    let mut out = String::with_capacity(16);
    push_hex(&mut out, &record_digest(kind, subject, ts_us).to_be_bytes());
    out
}

/// One record: its line, and where the columns of its `actions` row are in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub ts_us: i64,
    /// The JSONL line (no newline).
    pub line: String,
    id: Range<usize>,
    detail: Range<usize>,
    prev: Range<usize>,
    hash: Range<usize>,
}

impl Record {
    pub fn id(&self) -> &str {
        &self.line[self.id.clone()]
    }

    /// The `detail` object as JSON text.
    pub fn detail(&self) -> &str {
        &self.line[self.detail.clone()]
    }

    pub fn prev(&self) -> &str {
        &self.line[self.prev.clone()]
    }

    pub fn hash(&self) -> &str {
        &self.line[self.hash.clone()]
    }
}

/// Serializer output appended to a string, each piece checked to be UTF-8 (serde_json
/// writes whole characters, so this only fails for a serializer that does not).
struct StrWriter<'a>(&'a mut String);

impl std::io::Write for StrWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let s = std::str::from_utf8(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        self.0.push_str(s);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `detail` as JSON to a record's line (`{}` if it cannot be serialized).
pub fn write_detail(body: &mut String, detail: &impl serde::Serialize) {
    let at = body.len();
    if serde_json::to_writer(StrWriter(body), detail).is_err() {
        body.truncate(at);
        body.push_str(&serde_json::to_string(detail).unwrap_or_else(|_| "{}".to_string()));
    }
}

impl Chain {
    /// The next record, as its line (no newline); the head moves on.
    pub fn append(&mut self, ts_us: i64, kind: &str, subject: &str, detail: &impl serde::Serialize) -> String {
        self.record(ts_us, kind, subject, detail).line
    }

    /// The next record; the head moves on. `detail` is a JSON object (a `Value`, or a
    /// struct serialized with its fields in name order, as a `Value` would write them).
    pub fn record(&mut self, ts_us: i64, kind: &str, subject: &str, detail: &impl serde::Serialize) -> Record {
        self.record_with(ts_us, kind, subject, |body| write_detail(body, detail))
    }

    /// [`Chain::record`] with the detail object written by `detail` at the end of the
    /// line (members in name order), for details on the hot path.
    pub fn record_with(&mut self, ts_us: i64, kind: &str, subject: &str, detail: impl FnOnce(&mut String)) -> Record {
        let seq = self.seq + 1;
        // The members' names, seq, id, time and the two hashes take under 300 bytes, a
        // detail usually under 300 more.
        let mut body = String::with_capacity(600 + kind.len() + subject.len());
        let id = |b: &mut String| push_hex(b, &record_digest(kind, subject, ts_us).to_be_bytes());
        let head = &self.head;
        let r = write_line(&mut body, seq, id, ts_us, kind, subject, detail, head, |body| HashOf::Digest(sha256(head, body)));
        self.head.clear();
        self.head.push_str(&body[r.hash.clone()]);
        self.seq = seq;
        Record { seq, ts_us, line: body, id: r.id, detail: r.detail, prev: r.prev, hash: r.hash }
    }
}

/// A record's parts as its `actions` row holds them.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    pub seq: u64,
    pub id: &'a str,
    pub ts_us: i64,
    pub kind: &'a str,
    pub subject: &'a str,
    /// The `detail` object as JSON text.
    pub detail: &'a str,
    pub prev: &'a str,
    pub hash: &'a str,
}

/// The line of a record from its parts: the text [`Chain::record_with`] made of them, byte
/// for byte (check it with [`check`]: the hash covers the text).
pub fn line_of(p: &Parts) -> String {
    let mut body = String::with_capacity(300 + p.kind.len() + p.subject.len() + p.detail.len());
    write_line(&mut body, p.seq, |b| b.push_str(p.id), p.ts_us, p.kind, p.subject, |b| b.push_str(p.detail), p.prev, |_| HashOf::Hex(p.hash));
    body
}

/// Where the columns of an `actions` row are in a record's line.
struct Spans {
    id: Range<usize>,
    detail: Range<usize>,
    prev: Range<usize>,
    hash: Range<usize>,
}

/// A record's hash: computed, or as read.
enum HashOf<'a> {
    Digest(ring::digest::Digest),
    Hex(&'a str),
}

/// Writes a record's line into `body`: its members in their order, the detail written
/// by `detail`, and the hash `hash` gives for the text up to `prev` closed with `}`.
#[allow(clippy::too_many_arguments)]
fn write_line<'a>(
    body: &mut String,
    seq: u64,
    id: impl FnOnce(&mut String),
    ts_us: i64,
    kind: &str,
    subject: &str,
    detail: impl FnOnce(&mut String),
    prev: &str,
    hash: impl for<'b> FnOnce(&'b str) -> HashOf<'a>,
) -> Spans {
    body.push_str("{\"seq\":");
    crate::event::json::push_int(body, seq as i64);
    body.push_str(",\"id\":\"");
    let id_at = body.len();
    id(body);
    let id = id_at..body.len();
    body.push_str("\",\"ts\":");
    crate::event::json::json_str(body, &crate::event::time::iso(ts_us));
    for (k, v) in [("kind", kind), ("subject", subject)] {
        body.push_str(",\"");
        body.push_str(k);
        body.push_str("\":");
        crate::event::json::json_str(body, v);
    }
    body.push_str(",\"detail\":");
    let detail_at = body.len();
    detail(body);
    let detail_range = detail_at..body.len();
    body.push_str(",\"prev\":\"");
    let prev_at = body.len();
    body.push_str(prev);
    let prev = prev_at..body.len();
    body.push_str("\"}");
    let digest = hash(body);
    body.pop();
    body.push_str(",\"hash\":\"");
    let hash_at = body.len();
    match digest {
        HashOf::Digest(d) => push_hex(body, d.as_ref()),
        HashOf::Hex(h) => body.push_str(h),
    }
    let hash = hash_at..body.len();
    body.push_str("\"}");
    Spans { id, detail: detail_range, prev, hash }
}

/// The first record that breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: {why}", seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
pub struct BadRecord {
    /// 1-based line of the file.
    pub line: usize,
    pub seq: Option<u64>,
    pub why: String,
}

/// What [`verify`] found in a good trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub chain: Chain,
}

/// Checks every record of a trail: sequence, link to the previous record, hash.
pub fn verify(r: impl BufRead) -> Result<Verified, BadRecord> {
    verify_at(r, 0).map(|(v, _)| v)
}

/// [`verify`], also returning the hash of record `seq` when there is one.
pub fn verify_at(r: impl BufRead, want: u64) -> Result<(Verified, Option<String>), BadRecord> {
    let mut found = None;
    let mut chain = Chain::default();
    let mut records = 0;
    for (i, line) in r.lines().enumerate() {
        let line_no = i + 1;
        let bad = |seq: Option<u64>, why: String| BadRecord { line: line_no, seq, why };
        let line = line.map_err(|e| bad(None, format!("unreadable: {e}")))?;
        chain = check(&chain, &line).map_err(|(seq, why)| bad(seq, why))?.1;
        if chain.seq == want {
            found = Some(chain.head.clone());
        }
        records += 1;
    }
    Ok((Verified { records, chain }, found))
}

/// Checks one record against the chain so far: returns the record and the chain's new
/// head, or the record's `seq` (when readable) and what is wrong.
pub fn check(chain: &Chain, line: &str) -> Result<(serde_json::Value, Chain), (Option<u64>, String)> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| (None, format!("not a JSON record: {e}")))?;
    let seq = v["seq"].as_u64();
    let (Some(s), Some(prev), Some(hash)) = (seq, v["prev"].as_str(), v["hash"].as_str()) else {
        return Err((seq, "not an audit record (seq, prev and hash are required)".into()));
    };
    if s != chain.seq + 1 {
        return Err((seq, format!("expected seq {}: a record is missing, inserted or moved", chain.seq + 1)));
    }
    if prev != chain.head {
        return Err((seq, "prev is not the previous record's hash: a record before it was changed, removed or moved".into()));
    }
    let suffix = format!(",\"hash\":\"{hash}\"}}");
    let Some(body) = line.strip_suffix(&suffix) else { return Err((seq, "hash is not the record's last member".into())) };
    if sha256_hex(prev, &format!("{body}}}")) != hash {
        return Err((seq, "hash does not match the record: it was changed".into()));
    }
    let next = Chain { seq: s, head: hash.to_string() };
    Ok((v, next))
}
