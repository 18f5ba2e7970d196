//! The alert path's snapshot files: whole snapshots and deltas, which to write, which to
//! restore from, which to remove.
//!
//! Every snapshot is a file `snap-<seq>-e<epoch>-b<base>.json` in the archive's `_state`
//! folder: `seq` counts snapshots (1, 2, …), `epoch` is the commit it belongs to, `base` the
//! whole snapshot it builds on — its own `seq` for a whole one, `0` for deltas from the
//! empty state of a new archive. A delta holds what changed since the snapshot before it
//! (see `event::delta`), so the state of snapshot `n` is its base with every delta after
//! it up to `n` applied in order.
//!
//! Most snapshots are deltas: a commit changes a small part of what the state holds (a
//! million dedup keys, every entity), and the alert path stops deciding while it writes
//! one. A whole snapshot is written when the deltas since the base add up to the base's
//! size (at least [`CHAIN_MIN_BYTES`]): then a restore reads at most about twice the
//! state, and the writing cost stays in proportion to what changes.
//!
//! A snapshot of a commit that did not land (a crash between the snapshot and the commit
//! point) is removed at start before anything else is written. Once a commit whose newest
//! snapshot builds on base `b` has landed, the files before `b` are removed.

use std::path::{Path, PathBuf};

/// Deltas may add up to this much before a whole snapshot is due, however small the state.
pub const CHAIN_MIN_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapFile {
    pub seq: u64,
    pub epoch: u64,
    pub base: u64,
    pub path: PathBuf,
}

impl SnapFile {
    pub fn whole(&self) -> bool {
        self.base == self.seq
    }
}

pub fn file_name(seq: u64, epoch: u64, base: u64) -> String {
    format!("snap-{seq:012}-e{epoch:012}-b{base:012}.json")
}

fn parse_name(name: &str) -> Option<(u64, u64, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".json")?;
    let mut it = rest.split('-');
    let seq = it.next()?.parse().ok()?;
    let epoch = it.next()?.strip_prefix('e')?.parse().ok()?;
    let base = it.next()?.strip_prefix('b')?.parse().ok()?;
    it.next().is_none().then_some((seq, epoch, base))
}

/// The snapshot files in `dir`, by `seq`.
pub fn list(dir: &Path) -> std::io::Result<Vec<SnapFile>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if let Some((seq, epoch, base)) = name.to_str().and_then(parse_name) {
            out.push(SnapFile { seq, epoch, base, path: e.path() });
        }
    }
    out.sort_by_key(|f| f.seq);
    Ok(out)
}

/// Removes the snapshots of commits from `epoch` on (they did not land) and snapshot files
/// a crash left half-written; returns the rest.
pub fn remove_uncommitted(dir: &Path, epoch: u64) -> std::io::Result<Vec<SnapFile>> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_str().is_some_and(|n| n.starts_with("snap-") && n.ends_with(".json.tmp")) {
            std::fs::remove_file(e.path())?;
        }
    }
    let (keep, gone): (Vec<SnapFile>, Vec<SnapFile>) = list(dir)?.into_iter().partition(|f| f.epoch < epoch);
    for f in &gone {
        std::fs::remove_file(&f.path)?;
        tracing::info!(snapshot = %f.path.display(), "snapshot of a commit that did not land removed");
    }
    if !gone.is_empty() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(keep)
}

/// The files to restore the newest snapshot of `files` from: its base (when whole) and the
/// deltas after it, in order. Names the first file missing from the chain.
pub fn chain(files: &[SnapFile]) -> Result<Vec<SnapFile>, String> {
    let Some(newest) = files.last() else { return Ok(Vec::new()) };
    let first = if newest.base == 0 { 1 } else { newest.base };
    let chain: Vec<SnapFile> = files.iter().filter(|f| f.seq >= first).cloned().collect();
    for (i, f) in chain.iter().enumerate() {
        let want = first + i as u64;
        if f.seq != want {
            return Err(format!("snapshot {want} of the chain from {first} to {} is missing", newest.seq));
        }
        let base_ok = if f.seq == first && newest.base != 0 { f.whole() } else { f.base == newest.base };
        if !base_ok {
            return Err(format!("snapshot {} does not build on base {}", f.path.display(), newest.base));
        }
    }
    if chain.last().map(|f| f.seq) != Some(newest.seq) {
        return Err(format!("snapshot chain to {} is incomplete", newest.seq));
    }
    Ok(chain)
}

/// Removes the files no snapshot of a commit up to `epoch` builds on any more: those
/// before the base of the newest one (and snapshots of the older single-file form).
pub fn remove_unneeded(dir: &Path, epoch: u64) -> std::io::Result<()> {
    let files = list(dir)?;
    let Some(newest) = files.iter().rev().find(|f| f.epoch <= epoch) else { return Ok(()) };
    let keep_from = if newest.base == 0 { 1 } else { newest.base };
    for f in files.iter().filter(|f| f.seq < keep_from) {
        std::fs::remove_file(&f.path)?;
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_str().is_some_and(|n| n.starts_with("state-") && n.ends_with(".json")) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Which snapshot comes next, and whether it is whole (kept by the alert path's thread).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The `seq` of the next snapshot.
    pub next_seq: u64,
    /// The base the next delta builds on (`Some(0)`: the empty state; `None`: no base,
    /// the next snapshot is whole).
    pub base: Option<u64>,
    /// Size of the base.
    pub base_bytes: u64,
    /// Size of the deltas since it.
    pub chain_bytes: u64,
}

impl Policy {
    /// A new archive: deltas build on the empty state.
    pub fn empty() -> Self {
        Self { next_seq: 1, base: Some(0), base_bytes: 0, chain_bytes: 0 }
    }

    /// After restoring `chain` (from files of these sizes), or nothing restored.
    pub fn after(chain: &[(SnapFile, u64)], newest_seq: u64) -> Self {
        match chain.first() {
            None => Self { next_seq: newest_seq + 1, base: None, base_bytes: 0, chain_bytes: 0 },
            Some((f, bytes)) if f.whole() => {
                Self { next_seq: newest_seq + 1, base: Some(f.seq), base_bytes: *bytes, chain_bytes: chain[1..].iter().map(|(_, b)| b).sum() }
            }
            Some(_) => Self { next_seq: newest_seq + 1, base: Some(0), base_bytes: 0, chain_bytes: chain.iter().map(|(_, b)| b).sum() },
        }
    }

    /// Whether the next snapshot is to be whole.
    pub fn whole_due(&self) -> bool {
        self.base.is_none() || self.chain_bytes >= self.base_bytes.max(CHAIN_MIN_BYTES)
    }

    /// The `seq` and file name of the next snapshot, whole or not; counts it.
    pub fn next(&mut self, epoch: u64, whole: bool) -> (u64, String) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let base = if whole { seq } else { self.base.unwrap_or(seq) };
        if whole {
            // Deltas from here on build on it.
            self.base = Some(seq);
            self.chain_bytes = 0;
        }
        (seq, file_name(seq, epoch, base))
    }

    /// Snapshot `seq` was written with `bytes` of state.
    pub fn wrote(&mut self, seq: u64, whole: bool, bytes: u64) {
        if whole {
            if self.base == Some(seq) {
                self.base_bytes = bytes;
                self.chain_bytes = 0;
            }
        } else {
            self.chain_bytes += bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: u64, epoch: u64, base: u64) -> SnapFile {
        SnapFile { seq, epoch, base, path: PathBuf::from(file_name(seq, epoch, base)) }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&file_name(7, 3, 5)), Some((7, 3, 5)));
        assert_eq!(parse_name("state-000000000003.json"), None);
        assert_eq!(parse_name("snap-1-e2-b1.json.tmp"), None);
    }

    #[test]
    fn chain_from_base_or_from_empty() {
        let files = vec![f(1, 0, 0), f(2, 1, 0), f(3, 2, 3), f(4, 3, 3), f(5, 3, 3)];
        assert_eq!(chain(&files).unwrap().iter().map(|x| x.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(chain(&files[..2]).unwrap().iter().map(|x| x.seq).collect::<Vec<_>>(), vec![1, 2]);
        // A delta missing in the middle, or the base gone: named.
        let gap = vec![f(3, 2, 3), f(5, 3, 3)];
        assert!(chain(&gap).unwrap_err().contains("snapshot 4"));
        let no_base = vec![f(4, 3, 3), f(5, 3, 3)];
        assert!(chain(&no_base).is_err());
    }

    #[test]
    fn uncommitted_and_unneeded_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(dir.path().join(name), "{}").unwrap();
        for (seq, epoch, base) in [(1, 0, 0), (2, 1, 0), (3, 2, 3), (4, 3, 3), (5, 4, 3)] {
            touch(&file_name(seq, epoch, base));
        }
        touch("state-000000000001.json");
        touch(&format!("{}.tmp", file_name(6, 5, 3)));
        touch("retro-hunt.jsonl");
        // Commit 4 did not land: its snapshot and the half-written one go.
        let kept = remove_uncommitted(dir.path(), 4).unwrap();
        assert_eq!(kept.iter().map(|f| f.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(chain(&kept).unwrap().iter().map(|f| f.seq).collect::<Vec<_>>(), vec![3, 4]);
        // Once commit 3 landed, nothing builds on 1 and 2 (nor on the single-file form).
        remove_unneeded(dir.path(), 3).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, vec!["retro-hunt.jsonl".to_string(), file_name(3, 2, 3), file_name(4, 3, 3)]);
    }

    #[test]
    fn whole_when_deltas_outgrow_the_base() {
        let mut p = Policy::empty();
        assert!(!p.whole_due());
        assert_eq!(p.next(1, false), (1, file_name(1, 1, 0)));
        p.wrote(1, false, CHAIN_MIN_BYTES);
        assert!(p.whole_due());
        assert_eq!(p.next(2, true), (2, file_name(2, 2, 2)));
        // The next delta builds on it before its size is known.
        assert_eq!(p.next(3, false), (3, file_name(3, 3, 2)));
        p.wrote(2, true, 3 * CHAIN_MIN_BYTES);
        p.wrote(3, false, CHAIN_MIN_BYTES);
        assert!(!p.whole_due());
        p.wrote(4, false, 2 * CHAIN_MIN_BYTES);
        assert!(p.whole_due());
    }
}
