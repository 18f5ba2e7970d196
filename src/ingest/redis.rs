//! Redis sources, in the three modes of Suricata's EVE Redis output.
//!
//! * **list** (Suricata `mode: list`, LPUSH): entries are moved atomically with `LMOVE
//!   key processing RIGHT LEFT` (pipelined, then `BLMOVE` when the list is empty) into a
//!   processing list of this consumer. They leave it only after the archive segment
//!   holding them is sealed (`RPOP processing n` with an `INCRBY <processing>:acked n`, in
//!   one transaction). Every entry thus has a number: acked + its place in the processing
//!   list. The archive's checkpoint records the highest number sealed; at start, entries
//!   up to it are removed without archiving them again and the rest are read again. A
//!   `kill -9` loses nothing and archives nothing twice.
//! * **stream** (`mode: stream`, XADD): a consumer group (`XGROUP CREATE … MKSTREAM`) read
//!   with `XREADGROUP`; entries are `XACK`ed after sealing. At start, this consumer's
//!   pending entries that the checkpoint covers are acked, the others read again. Entries
//!   pending on other consumers for longer than `claim_idle_ms` are claimed
//!   (`XAUTOCLAIM`). Entries trimmed away before the group read them are counted as a gap
//!   (`entries-added` − `entries-read` − what is still in the stream).
//! * **channel** (`mode: channel`, PUBLISH): `SUBSCRIBE` (or `PSUBSCRIBE` for a pattern).
//!   Best effort: what is published while disconnected is gone; disconnects are counted.
//!
//! Each entry is one message (EVE JSON by default; `format` applies). The source runs on
//! its own thread with a blocking connection and reconnects with backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use super::octet::Frames;
use super::{Position, RawBatch, SourceCtx};
use crate::event::position::{RedisPosition, Sealed};
use crate::metrics as m;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    List,
    Channel,
    Stream,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub mode: RedisMode,
    pub key: String,
    pub consumer: String,
    pub group: String,
    /// Entries fetched per round trip.
    pub batch: usize,
    pub claim_idle: Duration,
    pub processing_list: String,
}

pub use crate::event::position::parse_id;

const BLOCK: Duration = Duration::from_millis(200);
const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub struct RedisSource {
    ctx: SourceCtx,
    cfg: RedisConfig,
    sealed: Arc<Sealed>,
    /// Position recorded in the archive when the source started.
    resume: Option<RedisPosition>,
    seq: u64,
    path: Arc<str>,
}

fn io_err(e: redis::RedisError) -> std::io::Error {
    std::io::Error::other(e)
}

impl RedisSource {
    pub fn new(ctx: SourceCtx, cfg: RedisConfig, sealed: Arc<Sealed>, resume: Option<RedisPosition>) -> Self {
        let path = format!(
            "redis:{}:{}",
            cfg.key,
            match cfg.mode {
                RedisMode::List => "list",
                RedisMode::Channel => "channel",
                RedisMode::Stream => "stream",
            }
        )
        .into();
        Self { ctx, cfg, sealed, resume, seq: 0, path }
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let client = redis::Client::open(self.cfg.url.as_str())?;
        let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
        con.set_read_timeout(Some(BLOCK + Duration::from_secs(5)))?;
        Ok(con)
    }

    /// Runs until shutdown, reconnecting after errors.
    pub fn run(mut self) -> std::io::Result<()> {
        // The first connection must work: a wrong URL is a configuration error.
        let mut con = Some(self.connect().map_err(io_err)?);
        let mut backoff = Duration::from_millis(100);
        while !self.ctx.stopping() {
            let c = match con.take() {
                Some(c) => c,
                None => match self.connect() {
                    Ok(c) => {
                        backoff = Duration::from_millis(100);
                        c
                    }
                    Err(e) => {
                        tracing::warn!(source = %self.ctx.info.name, error = %e, "redis connect failed; retrying");
                        super::nap(&self.ctx.shutdown, backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            let res = match self.cfg.mode {
                RedisMode::List => self.run_list(c),
                RedisMode::Stream => self.run_stream(c),
                RedisMode::Channel => self.run_channel(c),
            };
            match res {
                Ok(()) => break,
                Err(Stop::PipelineGone) => break,
                Err(Stop::Redis(e)) => {
                    metrics::counter!(m::REDIS_DISCONNECTS, "source" => self.ctx.info.name.to_string()).increment(1);
                    tracing::warn!(source = %self.ctx.info.name, error = %e, "redis connection lost; reconnecting");
                    super::nap(&self.ctx.shutdown, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, frames: Frames, pos: Position) -> Result<(), Stop> {
        if frames.is_empty() && !matches!(pos, Position::Redis(_)) {
            return Ok(());
        }
        let b = RawBatch {
            source: self.ctx.info.clone(),
            seq: self.seq,
            stream: 0,
            data: bytes::Bytes::from(frames.data),
            base_offset: None,
            path: Some(self.path.clone()),
            origins: Vec::new(),
            position: pos,
            format: self.ctx.format,
            frames: frames.ends,
        };
        self.seq += 1;
        if self.ctx.send(b) {
            Ok(())
        } else {
            Err(Stop::PipelineGone)
        }
    }

    // ---- list ----

    fn run_list(&mut self, mut con: Connection) -> Result<(), Stop> {
        let proc_list = self.cfg.processing_list.clone();
        let acked_key = format!("{proc_list}:acked");
        let mut acked: u64 = redis::cmd("GET").arg(&acked_key).query::<Option<u64>>(&mut con)?.unwrap_or(0);
        let pending: u64 = redis::cmd("LLEN").arg(&proc_list).query(&mut con)?;
        // What the archive holds, in entry numbers; a number outside what Redis can
        // explain (Redis was reset, or another archive) is not trusted.
        let sealed = self.sealed.redis(&self.ctx.info.name).and_then(|r| r.list_seq).or(self.resume.as_ref().and_then(|r| r.list_seq));
        let sealed = match sealed {
            Some(s) if s >= acked && s <= acked + pending => s,
            Some(s) => {
                tracing::warn!(source = %self.ctx.info.name, sealed = s, acked, pending, "archive position does not match the processing list; reading the processing list again");
                acked
            }
            None => acked,
        };
        if sealed > acked {
            let n = sealed - acked;
            list_ack(&mut con, &proc_list, &acked_key, n)?;
            metrics::counter!(m::REDIS_ALREADY_ARCHIVED, "source" => self.ctx.info.name.to_string()).increment(n);
            acked = sealed;
        }
        // Entries moved before a restart but not archived: read them again, oldest first.
        let mut moved = acked;
        let left: Vec<Vec<u8>> = redis::cmd("LRANGE").arg(&proc_list).arg(0).arg(-1).query(&mut con)?;
        for chunk in left.rchunks(self.cfg.batch.max(1)).collect::<Vec<_>>().into_iter() {
            let mut frames = Frames::default();
            for e in chunk.iter().rev() {
                push_frame(&mut frames, e);
            }
            moved += chunk.len() as u64;
            self.send(frames, Position::Redis(RedisPosition { list_seq: Some(moved), ..Default::default() }))?;
        }
        let mut gen = self.sealed.generation();
        let mut frames = Frames::default();
        let mut first: Option<Instant> = None;
        let mut since_ack = Instant::now();
        while !self.ctx.stopping() {
            // Pipelined non-blocking moves; one blocking move when the list is empty.
            let mut p = redis::pipe();
            for _ in 0..self.cfg.batch {
                p.cmd("LMOVE").arg(&self.cfg.key).arg(&proc_list).arg("RIGHT").arg("LEFT");
            }
            let got: Vec<Option<Vec<u8>>> = p.query(&mut con)?;
            let mut n = 0u64;
            for e in got.into_iter().flatten() {
                push_frame(&mut frames, &e);
                n += 1;
            }
            if n == 0 {
                let e: Option<Vec<u8>> =
                    redis::cmd("BLMOVE").arg(&self.cfg.key).arg(&proc_list).arg("RIGHT").arg("LEFT").arg(BLOCK.as_secs_f64()).query(&mut con)?;
                if let Some(e) = e {
                    push_frame(&mut frames, &e);
                    n = 1;
                }
            }
            if n > 0 {
                moved += n;
                first.get_or_insert_with(Instant::now);
            }
            if !frames.is_empty() && (n == 0 || frames.data.len() >= self.ctx.read_bytes || first.is_some_and(|t| t.elapsed() >= FLUSH_EVERY)) {
                first = None;
                self.send(frames.take(), Position::Redis(RedisPosition { list_seq: Some(moved), ..Default::default() }))?;
            }
            // Acknowledge what the archive has sealed.
            let g = self.sealed.generation();
            if g != gen || since_ack.elapsed() >= Duration::from_secs(1) {
                gen = g;
                since_ack = Instant::now();
                if let Some(s) = self.sealed.redis(&self.ctx.info.name).and_then(|r| r.list_seq) {
                    if s > acked && s <= moved {
                        list_ack(&mut con, &proc_list, &acked_key, s - acked)?;
                        metrics::counter!(m::REDIS_ACKED, "source" => self.ctx.info.name.to_string()).increment(s - acked);
                        acked = s;
                    }
                }
            }
        }
        if !frames.is_empty() {
            self.send(frames.take(), Position::Redis(RedisPosition { list_seq: Some(moved), ..Default::default() }))?;
        }
        Ok(())
    }

    // ---- stream ----

    fn run_stream(&mut self, mut con: Connection) -> Result<(), Stop> {
        let (key, group, consumer) = (self.cfg.key.clone(), self.cfg.group.clone(), self.cfg.consumer.clone());
        match redis::cmd("XGROUP").arg("CREATE").arg(&key).arg(&group).arg("0").arg("MKSTREAM").query::<()>(&mut con) {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
        let archived = self.sealed.redis(&self.ctx.info.name).or_else(|| self.resume.clone()).unwrap_or_default();
        let sealed_id = archived.stream_id;
        // Our pending entries: archived ones are acknowledged, the rest read again.
        // Ids sent to the pipeline and not yet acknowledged, in the order they were sent
        // (which is the order the archive seals them in).
        let mut unacked: VecDeque<String> = VecDeque::new();
        let mut last_id: Option<(u64, u64)> = sealed_id;
        let mut start = "0-0".to_string();
        loop {
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(&consumer)
                .arg("COUNT")
                .arg(self.cfg.batch)
                .arg("STREAMS")
                .arg(&key)
                .arg(&start)
                .query(&mut con)?;
            let entries = stream_entries(&reply);
            if entries.is_empty() {
                break;
            }
            start = entries.last().map(|e| e.0.clone()).unwrap_or_default();
            let mut frames = Frames::default();
            let mut done = Vec::new();
            let mut ids = Vec::new();
            for (id, payload) in entries {
                let pid = parse_id(&id);
                let covered = pid.is_some_and(|p| sealed_id.is_some_and(|s| p <= s)) || archived.claimed.contains(&id);
                if covered {
                    done.push(id);
                } else {
                    if let Some(p) = pid {
                        last_id = Some(last_id.map_or(p, |l| l.max(p)));
                    }
                    push_frame(&mut frames, payload.as_deref().unwrap_or_default());
                    ids.push(id);
                }
            }
            if !done.is_empty() {
                xack(&mut con, &key, &group, &done)?;
                metrics::counter!(m::REDIS_ALREADY_ARCHIVED, "source" => self.ctx.info.name.to_string()).increment(done.len() as u64);
            }
            if !ids.is_empty() {
                unacked.extend(ids);
                self.send(frames, Position::Redis(RedisPosition { stream_id: last_id, ..Default::default() }))?;
            }
        }
        let mut gen = self.sealed.generation();
        let mut last_claim = Instant::now();
        let mut last_gap_check = Instant::now() - Duration::from_secs(10);
        let mut gap_seen: Option<u64> = None;
        let mut gap_reported = false;
        let name = self.ctx.info.name.to_string();
        while !self.ctx.stopping() {
            // Before reading: entries trimmed while this group lagged are only visible
            // while it still lags.
            if last_gap_check.elapsed() >= Duration::from_secs(5) {
                last_gap_check = Instant::now();
                if let Some(lost) = stream_gap(&mut con, &key, &group)? {
                    let prev = *gap_seen.get_or_insert(lost);
                    if lost > prev || (prev == lost && lost > 0 && !gap_reported) {
                        let n = if lost > prev { lost - prev } else { lost };
                        tracing::warn!(source = %name, entries = n, "stream entries were trimmed before this group read them");
                        metrics::counter!(m::REDIS_STREAM_GAP, "source" => name.clone()).increment(n);
                        gap_seen = Some(lost);
                    }
                    gap_reported = true;
                }
            }
            let reply: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&group)
                .arg(&consumer)
                .arg("COUNT")
                .arg(self.cfg.batch)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .query(&mut con)?;
            let entries = stream_entries(&reply);
            if !entries.is_empty() {
                let mut frames = Frames::default();
                for (id, payload) in entries {
                    if let Some(p) = parse_id(&id) {
                        last_id = Some(last_id.map_or(p, |l| l.max(p)));
                    }
                    push_frame(&mut frames, payload.as_deref().unwrap_or_default());
                    unacked.push_back(id);
                }
                self.send(frames, Position::Redis(RedisPosition { stream_id: last_id, ..Default::default() }))?;
            }
            if last_claim.elapsed() >= self.cfg.claim_idle.min(Duration::from_secs(5)) {
                last_claim = Instant::now();
                let reply: Value = redis::cmd("XAUTOCLAIM")
                    .arg(&key)
                    .arg(&group)
                    .arg(&consumer)
                    .arg(self.cfg.claim_idle.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(self.cfg.batch)
                    .query(&mut con)?;
                let claimed = match &reply {
                    Value::Array(parts) if parts.len() >= 2 => entries_of(&parts[1]),
                    _ => Vec::new(),
                };
                // Entries claimed from others that are ours already (our own pending ones
                // are never idle that long while we run) are archived like new ones.
                let claimed: Vec<_> = if claimed.is_empty() {
                    claimed
                } else {
                    let mine: std::collections::HashSet<&String> = unacked.iter().collect();
                    claimed.into_iter().filter(|(id, _)| !mine.contains(id)).collect()
                };
                if !claimed.is_empty() {
                    metrics::counter!(m::REDIS_CLAIMED, "source" => name.clone()).increment(claimed.len() as u64);
                    let mut frames = Frames::default();
                    let mut ids = Vec::new();
                    for (id, payload) in claimed {
                        push_frame(&mut frames, payload.as_deref().unwrap_or_default());
                        unacked.push_back(id.clone());
                        ids.push(id);
                    }
                    self.send(frames, Position::Redis(RedisPosition { stream_id: last_id, claimed: ids, ..Default::default() }))?;
                }
            }
            // Acknowledge what the archive has sealed.
            let g = self.sealed.generation();
            if g != gen {
                gen = g;
                if let Some(pos) = self.sealed.redis(&name) {
                    let sealed_id = pos.stream_id;
                    let mut done = Vec::new();
                    while let Some(id) = unacked.front() {
                        let covered = parse_id(id).is_some_and(|p| sealed_id.is_some_and(|s| p <= s)) || pos.claimed.contains(id);
                        if !covered {
                            break;
                        }
                        done.extend(unacked.pop_front());
                    }
                    if !done.is_empty() {
                        xack(&mut con, &key, &group, &done)?;
                        metrics::counter!(m::REDIS_ACKED, "source" => name.clone()).increment(done.len() as u64);
                    }
                }
            }
        }
        Ok(())
    }

    // ---- channel ----

    fn run_channel(&mut self, mut con: Connection) -> Result<(), Stop> {
        let pattern = self.cfg.key.contains(['*', '?', '[']);
        let mut ps = con.as_pubsub();
        if pattern {
            ps.psubscribe(&self.cfg.key)?;
        } else {
            ps.subscribe(&self.cfg.key)?;
        }
        ps.set_read_timeout(Some(FLUSH_EVERY))?;
        let mut frames = Frames::default();
        let mut first: Option<Instant> = None;
        while !self.ctx.stopping() {
            match ps.get_message() {
                Ok(msg) => {
                    push_frame(&mut frames, msg.get_payload_bytes());
                    first.get_or_insert_with(Instant::now);
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    if !frames.is_empty() {
                        let f = frames.take();
                        drop(ps);
                        self.send(f, Position::None)?;
                    }
                    return Err(e.into());
                }
            }
            if !frames.is_empty() && (frames.data.len() >= self.ctx.read_bytes || first.is_some_and(|t| t.elapsed() >= FLUSH_EVERY)) {
                first = None;
                self.send(frames.take(), Position::None)?;
            }
        }
        Ok(())
    }
}

enum Stop {
    PipelineGone,
    Redis(redis::RedisError),
}

impl From<redis::RedisError> for Stop {
    fn from(e: redis::RedisError) -> Self {
        Stop::Redis(e)
    }
}

fn push_frame(frames: &mut Frames, e: &[u8]) {
    frames.data.extend_from_slice(e);
    frames.ends.push(frames.data.len() as u32);
}

fn list_ack(con: &mut Connection, proc_list: &str, acked_key: &str, n: u64) -> redis::RedisResult<()> {
    redis::pipe().atomic().cmd("RPOP").arg(proc_list).arg(n).ignore().cmd("INCRBY").arg(acked_key).arg(n).ignore().query(con)
}

fn xack(con: &mut Connection, key: &str, group: &str, ids: &[String]) -> redis::RedisResult<()> {
    for chunk in ids.chunks(1000) {
        redis::cmd("XACK").arg(key).arg(group).arg(chunk).query::<u64>(con)?;
    }
    Ok(())
}

fn bulk(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    bulk(v).and_then(|b| String::from_utf8(b).ok())
}

/// `[[id, [field, value, …]], …]` → (id, payload). The payload is the `eve` field, else
/// the first field's value (`None` for an entry deleted while pending).
fn entries_of(v: &Value) -> Vec<(String, Option<Vec<u8>>)> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .iter()
        .filter_map(|it| {
            let Value::Array(pair) = it else { return None };
            let id = text(pair.first()?)?;
            let payload = match pair.get(1) {
                Some(Value::Array(fields)) => {
                    let mut chosen = None;
                    for kv in fields.chunks(2) {
                        if let [k, v] = kv {
                            if text(k).as_deref() == Some("eve") {
                                chosen = bulk(v);
                                break;
                            }
                            if chosen.is_none() {
                                chosen = bulk(v);
                            }
                        }
                    }
                    chosen
                }
                _ => None,
            };
            Some((id, payload))
        })
        .collect()
}

/// The entries of an XREADGROUP reply for one stream (RESP2 array or RESP3 map).
fn stream_entries(v: &Value) -> Vec<(String, Option<Vec<u8>>)> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => entries_of(&kv[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(m) => m.iter().flat_map(|(_, e)| entries_of(e)).collect(),
        _ => Vec::new(),
    }
}

fn info_field(v: &Value, name: &str) -> Option<Value> {
    match v {
        Value::Array(items) => items.chunks(2).find(|kv| text(&kv[0]).as_deref() == Some(name)).and_then(|kv| kv.get(1).cloned()),
        Value::Map(m) => m.iter().find(|(k, _)| text(k).as_deref() == Some(name)).map(|(_, v)| v.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

/// Entries added to the stream that this group never read and that are gone from it.
/// Trimming removes the oldest entries, so unread entries can only be gone when the
/// stream's first entry is past the group's last delivered id; then every entry still
/// in the stream is unread, and the rest of what was added and not read is lost.
fn stream_gap(con: &mut Connection, key: &str, group: &str) -> Result<Option<u64>, Stop> {
    let info: Value = redis::cmd("XINFO").arg("STREAM").arg(key).query(con)?;
    let groups: Value = redis::cmd("XINFO").arg("GROUPS").arg(key).query(con)?;
    let Some(added) = info_field(&info, "entries-added").as_ref().and_then(int) else { return Ok(None) };
    let len = info_field(&info, "length").as_ref().and_then(int).unwrap_or(0);
    let first = match info_field(&info, "first-entry") {
        Some(Value::Array(e)) => e.first().and_then(text).as_deref().and_then(parse_id),
        _ => None,
    };
    let Value::Array(gs) = groups else { return Ok(None) };
    for g in gs {
        if info_field(&g, "name").as_ref().and_then(text).as_deref() != Some(group) {
            continue;
        }
        let last = info_field(&g, "last-delivered-id").as_ref().and_then(text).as_deref().and_then(parse_id).unwrap_or((0, 0));
        // A group created at `0` that has read nothing has no count yet.
        let read = match info_field(&g, "entries-read").as_ref().and_then(int) {
            Some(r) => r,
            None if last == (0, 0) => 0,
            None => return Ok(None),
        };
        return Ok(Some(match first {
            Some(f) if f > last => added.saturating_sub(read).saturating_sub(len),
            _ => 0,
        }));
    }
    Ok(None)
}
