//! The outbox's journal: every action queued, each attempt's result, retries, dead letters
//! and replays, as hash-chained audit records (`event::chain`) in
//! `<archive>/_audit/actions-audit.jsonl`. It is both the audit trail of what alertflow did
//! and the outbox itself: the queue is rebuilt from it at start.
//!
//! Kinds: `action_queued` (subject: the idempotency key; detail: action, trigger, event,
//! cool-down slot, the line; a digest also lists the `held` entries it carries),
//! `action_held` (a pick kept for its trigger's digest), `action_delivered`, `action_retry`, `action_dead`,
//! `action_dropped` (queue full), `action_replayed`. Records are written in groups and
//! fsynced once per group.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::event::chain::{check, Chain};

pub const FILE: &str = "_audit/actions-audit.jsonl";

/// A journal sync taking longer than this is logged (debug): deliveries wait for it.
const SLOW_SYNC_MS: f64 = 20.0;

pub fn path_in(archive_root: &Path) -> PathBuf {
    archive_root.join(FILE)
}

pub struct Journal {
    path: PathBuf,
    f: std::fs::File,
    chain: Chain,
    buf: Vec<u8>,
}

/// Every record of a journal file, checked; a last line cut off by a crash is left out
/// (and its byte offset returned, so the writer can cut it).
pub fn read(path: &Path) -> Result<(Vec<Value>, Chain, Option<u64>), String> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), Chain::default(), None)),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut r = std::io::BufReader::new(f);
    let mut chain = Chain::default();
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        let got = r.read_line(&mut line).map_err(|e| format!("{}: {e}", path.display()))?;
        if got == 0 {
            return Ok((out, chain, None));
        }
        n += 1;
        if !line.ends_with('\n') {
            // Cut off by a crash mid-write: never fsynced, so never acknowledged.
            return Ok((out, chain, Some(offset)));
        }
        let (v, next) = check(&chain, line.trim_end_matches('\n'))
            .map_err(|(seq, why)| format!("{}: line {n}{}: {why}", path.display(), seq.map(|s| format!(" (seq {s})")).unwrap_or_default()))?;
        chain = next;
        out.push(v);
        offset += got as u64;
    }
}

impl Journal {
    /// Opens (creating) the journal and returns its records.
    pub fn open(path: PathBuf) -> Result<(Journal, Vec<Value>), String> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let (records, chain, cut) = read(&path)?;
        let f = std::fs::File::options().create(true).append(true).open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(at) = cut {
            f.set_len(at).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok((Journal { path, f, chain, buf: Vec::new() }, records))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a record (written at the next [`Journal::sync`]); returns its sequence number.
    pub fn add(&mut self, ts_us: i64, kind: &str, subject: &str, detail: &Value) -> u64 {
        let r = self.chain.record(ts_us, kind, subject, detail);
        self.buf.extend_from_slice(r.line.as_bytes());
        self.buf.push(b'\n');
        r.seq
    }

    /// Writes the records added and makes them durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.f.write_all(&self.buf)?;
        self.f.sync_data()?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if ms >= SLOW_SYNC_MS {
            tracing::debug!(ms = format_args!("{ms:.1}"), bytes = self.buf.len(), "action journal sync slow");
        }
        self.buf.clear();
        Ok(())
    }

    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }
}

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Held for its trigger's digest.
    Held,
    /// Sent as part of a digest (the digest is an entry of its own).
    Digested,
    Pending,
    Delivered,
    Dead,
    Dropped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Held => "held",
            Status::Digested => "digested",
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
            Status::Dropped => "dropped",
        }
    }
}

/// One outbox entry as the journal tells it.
#[derive(Debug, Clone)]
pub struct EntryView {
    /// The `seq` of its `action_queued` record.
    pub entry: u64,
    pub key: String,
    pub action: String,
    pub trigger: String,
    pub event: String,
    pub queued: String,
    pub status: Status,
    pub attempts: u32,
    /// The last attempt's result or error.
    pub last: String,
    pub cooldown: Option<String>,
    pub data: Value,
}

/// Every entry of a journal's records, in the order they were queued.
pub fn entries(records: &[Value]) -> Vec<EntryView> {
    let mut out: Vec<EntryView> = Vec::new();
    let mut at: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for v in records {
        let d = &v["detail"];
        let text = |x: &Value| x.as_str().unwrap_or_default().to_string();
        if v["kind"] == "action_queued" || v["kind"] == "action_held" {
            let seq = v["seq"].as_u64().unwrap_or(0);
            for h in d["held"].as_array().into_iter().flatten().filter_map(Value::as_u64) {
                if let Some(&i) = at.get(&h) {
                    out[i].status = Status::Digested;
                }
            }
            at.insert(seq, out.len());
            out.push(EntryView {
                entry: seq,
                key: text(&v["subject"]),
                action: text(&d["action"]),
                trigger: text(&d["trigger"]),
                event: text(&d["event"]),
                queued: text(&v["ts"]),
                status: if v["kind"] == "action_held" { Status::Held } else { Status::Pending },
                attempts: 0,
                last: String::new(),
                cooldown: d["cooldown"].as_str().map(str::to_string),
                data: d["data"].clone(),
            });
            continue;
        }
        let Some(e) = d["entry"].as_u64().and_then(|s| at.get(&s)).map(|&i| &mut out[i]) else { continue };
        let attempt = d["attempt"].as_u64().map(|a| a as u32);
        match v["kind"].as_str().unwrap_or_default() {
            "action_delivered" => {
                e.status = Status::Delivered;
                e.last = text(&d["result"]);
            }
            "action_dead" => {
                e.status = Status::Dead;
                e.last = text(&d["error"]);
            }
            "action_dropped" => {
                e.status = Status::Dropped;
                e.last = text(&d["error"]);
            }
            "action_retry" => e.last = text(&d["error"]),
            "action_replayed" => {
                e.status = Status::Pending;
                e.attempts = 0;
                continue;
            }
            _ => continue,
        }
        if let Some(a) = attempt {
            e.attempts = a;
        }
    }
    out
}
