//! Where sources stand: the position a batch reaches, the positions recorded in every
//! sealed segment's footer ([`Checkpoint`]), and the "sealed up to here" notice
//! ([`Sealed`]) that acknowledging sources (Redis) read. Written by the commit, read by
//! recovery and by sources; no stage logic.

use std::sync::Arc;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Files remembered per source; the least recently advanced are forgotten first.
pub const MAX_FILES_PER_SOURCE: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub sources: BTreeMap<String, SourceCheckpoint>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilePosition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisPosition>,
}

/// Claimed stream entries remembered per source (they arrive out of id order).
pub const MAX_CLAIMED_IDS: usize = 1024;

/// How far a Redis source reaches: carried by each batch, and recorded per source in
/// every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisPosition {
    /// List mode: number of entries ever moved into the processing list that are archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_seq: Option<u64>,
    /// Stream mode: every entry read with `>` up to this id is archived (`ms-seq` as text).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "stream_id_text")]
    pub stream_id: Option<(u64, u64)>,
    /// Stream mode: ids of entries claimed from stopped consumers that are archived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claimed: Vec<String>,
}

/// The positions of the newest commit, for sources that acknowledge upstream only what
/// is sealed (Redis lists and streams). Updated after every commit.
#[derive(Debug, Default)]
pub struct Sealed {
    inner: std::sync::Mutex<Checkpoint>,
    generation: std::sync::atomic::AtomicU64,
}

impl Sealed {
    pub fn new(c: Checkpoint) -> Self {
        Self { inner: std::sync::Mutex::new(c), generation: Default::default() }
    }
    pub fn publish(&self, c: &Checkpoint) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = c.clone();
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
    /// Changes whenever a commit lands.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
    pub fn redis(&self, source: &str) -> Option<RedisPosition> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).sources.get(source).and_then(|s| s.redis.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePosition {
    /// xxh3 fingerprint of the file's first line, hex.
    pub fingerprint: String,
    pub offset: u64,
    /// Last path the file was read under (for people; identity is the fingerprint).
    pub path: String,
}

impl Checkpoint {
    /// Resume offsets of one source, by fingerprint.
    pub fn file_offsets(&self, source: &str) -> std::collections::HashMap<u64, u64> {
        self.sources
            .get(source)
            .map(|s| s.files.iter().filter_map(|f| u64::from_str_radix(&f.fingerprint, 16).ok().map(|fp| (fp, f.offset))).collect())
            .unwrap_or_default()
    }

    /// Records a Redis source's position (ids only move forward).
    pub fn advance_redis(&mut self, source: &str, pos: &RedisPosition) {
        let s = self.sources.entry(source.to_string()).or_default();
        let r = s.redis.get_or_insert_with(Default::default);
        if let Some(seq) = pos.list_seq {
            r.list_seq = Some(r.list_seq.map_or(seq, |old| old.max(seq)));
        }
        if let Some(id) = pos.stream_id {
            if r.stream_id.is_none_or(|old| id > old) {
                r.stream_id = Some(id);
            }
        }
        for c in &pos.claimed {
            r.claimed.push(c.clone());
        }
        if r.claimed.len() > MAX_CLAIMED_IDS {
            let extra = r.claimed.len() - MAX_CLAIMED_IDS;
            r.claimed.drain(..extra);
        }
    }

    /// Records that `source` has archived file `fingerprint` up to `offset`.
    pub fn advance(&mut self, source: &str, fingerprint: u64, offset: u64, path: &str) {
        let s = self.sources.entry(source.to_string()).or_default();
        let fp = format!("{fingerprint:016x}");
        // Most recently advanced last, so the oldest are trimmed first.
        if let Some(i) = s.files.iter().position(|f| f.fingerprint == fp) {
            let mut f = s.files.remove(i);
            f.offset = offset;
            if f.path != path {
                f.path = path.to_string();
            }
            s.files.push(f);
        } else {
            s.files.push(FilePosition { fingerprint: fp, offset, path: path.to_string() });
            if s.files.len() > MAX_FILES_PER_SOURCE {
                s.files.remove(0);
            }
        }
    }
}

/// Where a source stands after a batch. Recorded in sealed segments.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// Push sources (sockets, stdin): nothing to resume.
    None,
    /// A file identified by the fingerprint of its first line, read up to `offset`.
    File { fingerprint: u64, offset: u64, path: Arc<str> },
    /// A Redis list or stream (see `ingest::redis`).
    Redis(RedisPosition),
}

/// `1700000000000-3` → `(1700000000000, 3)`.
pub fn parse_id(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Stream ids as Redis writes them (`1700000000000-3`) in the checkpoint JSON.
mod stream_id_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &Option<(u64, u64)>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some((a, b)) => s.serialize_str(&format!("{a}-{b}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u64, u64)>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => super::parse_id(&t).map(Some).ok_or_else(|| serde::de::Error::custom(format!("bad stream id `{t}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint remembers the newest [`MAX_CLAIMED_IDS`] claimed stream entries, in
    /// the order they were claimed, across any number of commits; ids only move forward.
    #[test]
    fn claimed_ids_keep_the_newest_1024_and_ids_only_move_forward() {
        let mut c = Checkpoint::default();
        for batch in 0..15u64 {
            let claimed = (0..100).map(|i| format!("{}-0", batch * 100 + i)).collect();
            c.advance_redis("s", &RedisPosition { stream_id: Some((batch, 0)), claimed, ..Default::default() });
        }
        c.advance_redis("s", &RedisPosition { stream_id: Some((3, 0)), ..Default::default() });
        let r = c.sources["s"].redis.clone().unwrap();
        assert_eq!(r.claimed.len(), MAX_CLAIMED_IDS);
        assert_eq!(r.claimed.first().map(String::as_str), Some("476-0"), "the oldest 476 were dropped");
        assert_eq!(r.claimed.last().map(String::as_str), Some("1499-0"));
        assert_eq!(r.stream_id, Some((14, 0)), "an older id does not move the position back");
        // The checkpoint JSON carries them as Redis writes ids.
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"14-0\"") && json.contains("\"1499-0\""), "{json}");
        assert_eq!(serde_json::from_str::<RedisPosition>(&json).unwrap(), r);
    }
}
