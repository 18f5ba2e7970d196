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
    pub files: Vec<FilePosition>,
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
