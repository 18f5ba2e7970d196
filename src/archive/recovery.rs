//! Start-up recovery of the archive (see the module doc of [`crate::archive`]).
//!
//! Walks `events/date=*/hour=*/`, finds the newest commit (the highest epoch with a sealed
//! segment), renames that commit's remaining temporaries into place (they were complete
//! and fsynced before its first rename), deletes every other temporary (a commit that
//! never reached its first rename), and reads the positions from the commit's footer.

use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};

use super::checkpoint::{Checkpoint, KEY_CHECKPOINT, KEY_EPOCH};
use super::{io_err, ArchiveError};

pub fn temp_name(epoch: u64, lane: usize, index: usize) -> String {
    format!(".part-{epoch:012}-{lane:02}-{index:04}.parquet.tmp")
}

pub fn final_name(epoch: u64, index: usize, count: usize) -> String {
    format!("part-{epoch:012}-{index:04}-{count:04}.parquet")
}

/// `(epoch, index, count)` of a sealed segment name.
fn parse_final(name: &str) -> Option<(u64, usize, usize)> {
    let core = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut it = core.split('-');
    let e = it.next()?.parse().ok()?;
    let i = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    it.next().is_none().then_some((e, i, n))
}

/// The epoch of a temporary name.
/// The epoch of a sealed segment's name (`part-<epoch>-<index>-<count>.parquet`).
pub fn epoch_of_final(name: &str) -> Option<u64> {
    parse_final(name).map(|f| f.0)
}

fn parse_temp(name: &str) -> Option<u64> {
    let core = name.strip_prefix(".part-")?.strip_suffix(".parquet.tmp")?;
    let mut it = core.split('-');
    let e = it.next()?.parse().ok()?;
    let _lane: usize = it.next()?.parse().ok()?;
    let _index: usize = it.next()?.parse().ok()?;
    it.next().is_none().then_some(e)
}

#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub checkpoint: Checkpoint,
    /// The epoch the next commit will use.
    pub next_epoch: u64,
    /// Sealed segments found.
    pub segments: usize,
    /// Temporaries of the newest commit renamed into place.
    pub rolled_forward: usize,
    /// Temporaries of unfinished commits deleted.
    pub discarded: usize,
}

struct Found {
    dir: PathBuf,
    name: String,
}

pub fn recover(root: &Path) -> Result<Recovered, ArchiveError> {
    let mut finals: Vec<(u64, usize, usize, Found)> = Vec::new();
    let mut temps: Vec<(u64, Found)> = Vec::new();
    for dir in super::layout::all_partitions(root)?.into_iter().map(|p| p.dir) {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((e, i, n)) = parse_final(&name) {
                finals.push((e, i, n, Found { dir: dir.clone(), name }));
            } else if let Some(e) = parse_temp(&name) {
                temps.push((e, Found { dir: dir.clone(), name }));
            }
        }
    }
    let mut rec = Recovered { segments: finals.len(), ..Default::default() };
    let newest = finals.iter().map(|f| f.0).max();
    if let Some(epoch) = newest {
        let count = finals.iter().find(|f| f.0 == epoch).map(|f| f.2).unwrap_or(0);
        // The commit's remaining temporaries take the indexes its renames did not reach.
        let used: Vec<usize> = finals.iter().filter(|f| f.0 == epoch).map(|f| f.1).collect();
        let mut free = (0..).filter(|i| !used.contains(i));
        for (e, f) in &temps {
            if *e == epoch {
                let index = free.next().expect("unbounded range");
                let from = f.dir.join(&f.name);
                let to = f.dir.join(final_name(*e, index, count));
                std::fs::rename(&from, &to).map_err(io_err(&to))?;
                std::fs::File::open(&f.dir).and_then(|d| d.sync_all()).map_err(io_err(&f.dir))?;
                tracing::info!(segment = %to.display(), "finished an interrupted commit");
                rec.rolled_forward += 1;
                rec.segments += 1;
            }
        }
        let sealed = finals.iter().filter(|f| f.0 == epoch).count() + rec.rolled_forward;
        if sealed != count {
            tracing::warn!(epoch, expected = count, found = sealed, "newest commit is missing segments (deleted by hand?)");
        }
        // Segment 0 was renamed first and carries the checkpoint (segments a lane closed
        // early carry only the epoch); any other segment with one does too.
        let mut segs: Vec<(usize, PathBuf)> = finals.iter().filter(|f| f.0 == epoch).map(|f| (f.1, f.3.dir.join(&f.3.name))).collect();
        segs.sort();
        let mut found = None;
        for (_, seg) in &segs {
            match read_checkpoint(seg) {
                Ok(c) => {
                    found = Some(c);
                    break;
                }
                Err(e) => tracing::debug!(segment = %seg.display(), error = %e, "no checkpoint in this segment"),
            }
        }
        rec.checkpoint = match found {
            Some(c) => c,
            None => read_checkpoint(&segs[0].1)?,
        };
        rec.next_epoch = epoch + 1;
    }
    for (e, f) in &temps {
        if Some(*e) != newest {
            let p = f.dir.join(&f.name);
            std::fs::remove_file(&p).map_err(io_err(&p))?;
            rec.discarded += 1;
        }
    }
    if rec.discarded > 0 {
        tracing::info!(count = rec.discarded, "deleted temporaries of unfinished commits");
    }
    Ok(rec)
}

/// The newest commit with a sealed segment, read from the names alone (changes nothing).
pub fn newest_epoch(root: &Path) -> Result<Option<u64>, ArchiveError> {
    let mut newest = None;
    for dir in super::layout::all_partitions(root)?.into_iter().map(|p| p.dir) {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let name = entry.map_err(io_err(&dir))?.file_name();
            if let Some((e, _, _)) = parse_final(&name.to_string_lossy()) {
                newest = newest.max(Some(e));
            }
        }
    }
    Ok(newest)
}

/// Reads the checkpoint from a sealed segment's footer.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, ArchiveError> {
    let bad = |reason: String| ArchiveError::BadSegment { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let reader = SerializedFileReader::new(file).map_err(|e| bad(e.to_string()))?;
    let kv = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let get = |k: &str| kv.iter().find(|x| x.key == k).and_then(|x| x.value.clone());
    if get(KEY_EPOCH).is_none() {
        return Err(bad("no alertflow.epoch key".into()));
    }
    let json = get(KEY_CHECKPOINT).ok_or_else(|| bad("no alertflow.checkpoint key".into()))?;
    serde_json::from_str(&json).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_final(&final_name(42, 3, 7)), Some((42, 3, 7)));
        assert_eq!(parse_temp(&temp_name(42, 1, 3)), Some(42));
        assert_eq!(parse_final("part-1-2.parquet"), None);
        assert_eq!(parse_temp("part-000000000001-0001.parquet.tmp"), None);
    }
}
