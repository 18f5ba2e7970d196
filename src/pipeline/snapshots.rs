//! The alert path's snapshot files: whole snapshots and deltas, which to write, which to
//! restore from, which to remove, and folding a chain into a whole snapshot.
//!
//! Every snapshot is a file `snap-<seq>-e<epoch>-b<base>.json` in the archive's `_state`
//! folder: `seq` counts snapshots (1, 2, …), `epoch` is the commit it belongs to, `base` the
//! whole snapshot it builds on — its own `seq` for a whole one, `0` for deltas from the
//! empty state of a new archive. A delta holds what changed since the snapshot before it
//! (see `event::delta`), so the state of snapshot `n` is the newest whole one at or before
//! `n` with every delta after it up to `n` applied in order.
//!
//! The alert path writes deltas: a commit changes a small part of what the state holds (a
//! million dedup keys, every entity), and the alert path stops deciding while it cuts one.
//! When the deltas since the base add up to the base's size (at least
//! [`CHAIN_MIN_BYTES`]), the chain is **folded** on a thread of its own ([`fold`]): an
//! empty path of the same shape restores the base and the deltas from their files and
//! writes the state of the newest delta `n` whole, as `snap-<n>-e<epoch>-b<n>.json` beside
//! that delta; later deltas build on it. So a restore reads at most about twice the state,
//! the writing cost stays in proportion to what changes, and no whole snapshot is ever
//! serialized where the state lives. (Deltas cut while a fold runs still name the older
//! base: a delta applies to the state of the snapshot before it, whatever its base.)
//!
//! A snapshot of a commit that did not land (a crash between the snapshot and the commit
//! point) is removed at start before anything else is written. Once a commit has landed,
//! the files before the whole snapshot its state starts from are removed.

use std::sync::atomic::{AtomicBool, Ordering};

use std::path::{Path, PathBuf};

use crate::event::members::Members;

/// Deltas may add up to this much before the chain is folded, however small the state.
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
    // A folded whole snapshot after the delta of the same point.
    out.sort_by_key(|f| (f.seq, f.whole()));
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

/// The files to restore the newest snapshot of `files` from: the newest whole one at or
/// before it (none: the chain starts from the empty state) and the deltas after it, in
/// order. Names the first file missing from the chain.
pub fn chain(files: &[SnapFile]) -> Result<Vec<SnapFile>, String> {
    let Some(newest) = files.last() else { return Ok(Vec::new()) };
    let start = files.iter().rev().find(|f| f.whole());
    let first = start.map_or(1, |w| w.seq + 1);
    if start.is_none_or(|w| w.seq < newest.base) && newest.base != 0 {
        return Err(format!("whole snapshot {} that snapshot {} builds on is missing", newest.base, newest.seq));
    }
    let mut chain: Vec<SnapFile> = start.cloned().into_iter().collect();
    let from = start.map_or(0, |w| w.seq);
    for (i, f) in files.iter().filter(|f| f.seq >= first).enumerate() {
        let want = first + i as u64;
        if f.seq != want {
            return Err(format!("snapshot {want} of the chain from {first} to {} is missing", newest.seq));
        }
        // A delta builds on the start of the chain or on an older whole snapshot (it was
        // cut while the start was being folded), never on a newer one.
        if f.whole() || f.base > from {
            return Err(format!("snapshot {} does not build on base {from}", f.path.display()));
        }
        chain.push(f.clone());
    }
    Ok(chain)
}

/// Removes the files no snapshot of a commit up to `epoch` builds on any more: those
/// before the whole snapshot the newest one's chain starts from, the delta that whole
/// snapshot was folded from (and snapshots of the older single-file form).
pub fn remove_unneeded(dir: &Path, epoch: u64) -> std::io::Result<()> {
    let files: Vec<SnapFile> = list(dir)?.into_iter().filter(|f| f.epoch <= epoch).collect();
    if let Some(start) = files.iter().rev().find(|f| f.whole()) {
        for f in files.iter().filter(|f| f.seq < start.seq || (f.seq == start.seq && !f.whole())) {
            std::fs::remove_file(&f.path)?;
        }
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name().to_str().is_some_and(|n| n.starts_with("state-") && n.ends_with(".json")) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// A whole snapshot folded from a chain.
#[derive(Debug)]
pub struct Folded {
    pub file: SnapFile,
    /// Bytes of state in it (without the audit and due members).
    pub bytes: u64,
    /// Files read and their bytes.
    pub read_files: usize,
    pub read_bytes: u64,
}

/// Folds the chain up to snapshot `seq` in `dir` into a whole snapshot of the same point,
/// written durably beside it: `empty` (an empty path of the alert path's [`Shape`]
/// (super::alerts::Shape)) restores the chain's files in order and writes its state
/// whole, with the audit and due members of snapshot `seq` as they are. Gives up (`Ok(None)`)
/// when `stop` is set.
pub fn fold(dir: &Path, seq: u64, mut empty: super::alerts::AlertPath, stop: &AtomicBool) -> Result<Option<Folded>, String> {
    let files: Vec<SnapFile> = list(dir).map_err(|e| format!("{}: {e}", dir.display()))?.into_iter().filter(|f| f.seq <= seq).collect();
    let chain = chain(&files)?;
    let Some(last) = chain.last().filter(|f| f.seq == seq).cloned() else { return Err(format!("snapshot {seq} is not in {}", dir.display())) };
    if last.whole() {
        return Err(format!("snapshot {seq} is whole already"));
    }
    let mut read_bytes = 0;
    let mut read = |f: &SnapFile| -> Result<String, String> {
        let text = std::fs::read_to_string(&f.path).map_err(|e| format!("{}: {e}", f.path.display()))?;
        read_bytes += text.len() as u64;
        Ok(text)
    };
    let at = |f: &SnapFile| {
        let path = f.path.display().to_string();
        move |e: serde_json::Error| format!("{path}: {e}")
    };
    // Members go from their text into the state: no JSON tree. One file's text at a time
    // (the base's is the largest); the newest one's stays, for its audit and due members.
    for f in &chain[..chain.len() - 1] {
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let text = read(f)?;
        empty.restore_members(&Members::parse(&text).map_err(at(f))?).map_err(at(f))?;
    }
    let text = read(&last)?;
    let newest = Members::parse(&text).map_err(at(&last))?;
    empty.restore_members(&newest).map_err(at(&last))?;
    let (parts, _, _) = empty.snapshot_parts(true).map_err(|e| e.to_string())?;
    if stop.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let path = dir.join(file_name(seq, last.epoch, seq));
    let mut bytes = 0;
    super::alerts::write_durably_with(&path, |w| {
        let mut head = super::alerts::HeldBack::new(w);
        parts.write(&mut head)?;
        bytes = head.bytes();
        // The members that are not state, as the delta holds them.
        let w = head.object_open()?;
        for member in ["audit", "due"] {
            if let Some(raw) = newest.raw(member).filter(|_| !newest.is_null(member)) {
                write!(w, ",\"{member}\":")?;
                w.write_all(raw.get().as_bytes())?;
            }
        }
        w.write_all(b"}")
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(Folded { file: SnapFile { seq, epoch: last.epoch, base: seq, path }, bytes, read_files: chain.len(), read_bytes }))
}

/// Which snapshot comes next, whether it is whole, and when the chain is to be folded
/// (shared by the alert path's thread, the snapshot writer and the fold).
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
    /// A fold under way, and the size of the deltas it folds.
    pub folding: Option<u64>,
    /// A fold failed: the alert path writes the next snapshot whole itself.
    pub whole_next: bool,
}

impl Policy {
    /// A new archive: deltas build on the empty state.
    pub fn empty() -> Self {
        Self { next_seq: 1, base: Some(0), ..Self::default() }
    }

    /// After restoring `chain` (from files of these sizes), or nothing restored.
    pub fn after(chain: &[(SnapFile, u64)], newest_seq: u64) -> Self {
        let next_seq = newest_seq + 1;
        match chain.first() {
            None => Self { next_seq, ..Self::default() },
            Some((f, bytes)) if f.whole() => {
                Self { next_seq, base: Some(f.seq), base_bytes: *bytes, chain_bytes: chain[1..].iter().map(|(_, b)| b).sum(), ..Self::default() }
            }
            Some(_) => Self { next_seq, base: Some(0), chain_bytes: chain.iter().map(|(_, b)| b).sum(), ..Self::default() },
        }
    }

    /// Whether the alert path is to write the next snapshot whole: there is no base (or a
    /// fold failed).
    pub fn whole_due(&self) -> bool {
        self.base.is_none() || self.whole_next
    }

    /// Whether the chain is to be folded now (none is under way): the deltas since the base
    /// add up to its size, at least [`chain_min_bytes`].
    pub fn fold_due(&self) -> bool {
        self.base.is_some() && self.folding.is_none() && !self.whole_next && self.chain_bytes >= self.base_bytes.max(chain_min_bytes())
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
            self.whole_next = false;
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

    /// A fold of the deltas written so far starts.
    pub fn fold_started(&mut self) {
        self.folding = Some(self.chain_bytes);
    }

    /// The fold ended: with snapshot `seq` whole (`bytes` of state), deltas from here on
    /// build on it; without, the alert path writes the next one whole.
    pub fn fold_ended(&mut self, folded: Option<(u64, u64)>) {
        let folded_bytes = self.folding.take().unwrap_or(0);
        match folded {
            Some((seq, bytes)) => {
                self.base = Some(seq);
                self.base_bytes = bytes;
                self.chain_bytes = self.chain_bytes.saturating_sub(folded_bytes);
            }
            None => self.whole_next = true,
        }
    }
}

/// Deltas may add up to this much before the chain is folded, however small the state
/// ([`CHAIN_MIN_BYTES`]; the environment variable [`CHAIN_MIN_BYTES_VAR`] sets it, for
/// tests).
pub fn chain_min_bytes() -> u64 {
    static MIN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| std::env::var(CHAIN_MIN_BYTES_VAR).ok().and_then(|v| v.parse().ok()).unwrap_or(CHAIN_MIN_BYTES))
}

pub const CHAIN_MIN_BYTES_VAR: &str = "ALERTFLOW_SNAPSHOT_CHAIN_MIN_BYTES";

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
    fn chain_from_a_folded_snapshot() {
        // Snapshot 3 folded into a whole one beside its delta while 4 was cut (still on
        // base 1); 5 builds on the fold.
        let files = vec![f(1, 0, 1), f(2, 1, 1), f(3, 2, 1), f(3, 2, 3), f(4, 3, 1), f(5, 4, 3)];
        let c = chain(&files).unwrap();
        assert_eq!(c.iter().map(|x| (x.seq, x.whole())).collect::<Vec<_>>(), vec![(3, true), (4, false), (5, false)]);
        // Before the fold landed: from base 1.
        assert_eq!(chain(&files[..3]).unwrap().iter().map(|x| x.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        // The fold gone (5 names it): named, not restored from 1.
        let mut no_fold = files.clone();
        no_fold.remove(3);
        assert!(chain(&no_fold).unwrap_err().contains("whole snapshot 3"), "{:?}", chain(&no_fold));
        // A delta after the fold naming a newer base than the chain's start.
        let wrong = vec![f(3, 2, 3), f(4, 3, 3), f(5, 4, 4)];
        assert!(chain(&wrong).is_err());
    }

    #[test]
    fn folded_files_replace_their_chain_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |name: &str| std::fs::write(dir.path().join(name), "{}").unwrap();
        for (seq, epoch, base) in [(1, 0, 1), (2, 1, 1), (3, 2, 1), (3, 2, 3), (4, 3, 1), (5, 4, 3)] {
            touch(&file_name(seq, epoch, base));
        }
        // Commit 1 landed: the fold (commit 2) does not count yet.
        remove_unneeded(dir.path(), 1).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 6);
        remove_unneeded(dir.path(), 4).unwrap();
        let left: Vec<(u64, bool)> = list(dir.path()).unwrap().iter().map(|f| (f.seq, f.whole())).collect();
        assert_eq!(left, vec![(3, true), (4, false), (5, false)]);
    }

    #[test]
    fn fold_when_deltas_outgrow_the_base() {
        let min = chain_min_bytes();
        let mut p = Policy::empty();
        assert!(!p.whole_due() && !p.fold_due());
        assert_eq!(p.next(1, false), (1, file_name(1, 1, 0)));
        p.wrote(1, false, min);
        assert!(p.fold_due() && !p.whole_due());
        p.fold_started();
        assert!(!p.fold_due(), "one fold at a time");
        // A delta cut while the fold runs still builds on the empty state.
        assert_eq!(p.next(2, false), (2, file_name(2, 2, 0)));
        p.wrote(2, false, 10);
        p.fold_ended(Some((1, 3 * min)));
        assert_eq!((p.base, p.base_bytes, p.chain_bytes), (Some(1), 3 * min, 10));
        assert_eq!(p.next(3, false), (3, file_name(3, 3, 1)));
        p.wrote(3, false, 3 * min);
        assert!(p.fold_due());
        // A failed fold: the alert path writes the next one whole.
        p.fold_started();
        p.fold_ended(None);
        assert!(p.whole_due() && !p.fold_due());
        assert_eq!(p.next(4, true), (4, file_name(4, 4, 4)));
        p.wrote(4, true, 5);
        assert!(!p.whole_due() && !p.fold_due());
        // No base (restored from the older single-file form): whole.
        assert!(Policy::after(&[], 7).whole_due());
    }
}
