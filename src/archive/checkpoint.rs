//! Source positions recorded in every sealed segment's footer.
//!
//! Key-value metadata written into each segment of a commit:
//! * `alertflow.epoch` — the commit number (monotonic across restarts; the segment's
//!   file name also carries it, with the number of segments the commit sealed);
//! * `alertflow.checkpoint` — JSON of [`Checkpoint`]: for every source, the resume
//!   position of every file it has read (fingerprint → offset after the last archived
//!   line). A commit's positions cover exactly the rows sealed by it and all commits before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const KEY_EPOCH: &str = "alertflow.epoch";
pub const KEY_CHECKPOINT: &str = "alertflow.checkpoint";

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

/// How far a Redis source is archived.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisPosition {
    /// List mode: number of entries ever moved into the processing list that are archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_seq: Option<u64>,
    /// Stream mode: every entry read with `>` up to this id is archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
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
    pub fn advance_redis(&mut self, source: &str, pos: &crate::ingest::RedisPos) {
        let s = self.sources.entry(source.to_string()).or_default();
        let r = s.redis.get_or_insert_with(Default::default);
        if let Some(seq) = pos.list_seq {
            r.list_seq = Some(r.list_seq.map_or(seq, |old| old.max(seq)));
        }
        if let Some(id) = pos.stream_id {
            let newer = r.stream_id.as_deref().and_then(crate::ingest::redis::parse_id).is_none_or(|old| id > old);
            if newer {
                r.stream_id = Some(format!("{}-{}", id.0, id.1));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_and_read_back() {
        let mut c = Checkpoint::default();
        c.advance("eve", 0xabc, 10, "/a");
        c.advance("eve", 0xdef, 5, "/b");
        c.advance("eve", 0xabc, 20, "/a.1");
        let offs = c.file_offsets("eve");
        assert_eq!(offs.get(&0xabc), Some(&20));
        assert_eq!(offs.get(&0xdef), Some(&5));
        assert_eq!(c.sources["eve"].files.last().unwrap().path, "/a.1");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), c);
    }
}
