//! Start-up recovery of the archive (see the module doc of [`crate::archive`]).
//!
//! Walks every table's `date=*/hour=*/`, finds the newest commit (the highest epoch with a
//! sealed segment, or the last epoch a compacted file merged), renames that commit's
//! remaining temporaries into place (they were complete and fsynced before its first
//! rename), deletes every other temporary (a commit that never reached its first rename),
//! and reads the positions from the commit's footer: segment 0's, or the compacted file's
//! that took it in (compaction carries the newest checkpoint it merged into its last file).

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

/// The epoch of a sealed segment's name (`part-<epoch>-<index>-<count>.parquet`).
pub fn epoch_of_final(name: &str) -> Option<u64> {
    parse_final(name).map(|f| f.0)
}

/// `(first, last)` epoch of a compacted file's name (`compact-<first>-<last>-<n>.parquet`).
pub fn compacted_range(name: &str) -> Option<(u64, u64)> {
    let core = name.strip_prefix("compact-")?.strip_suffix(".parquet")?;
    let mut it = core.split('-');
    let first = it.next()?.parse().ok()?;
    let last = it.next()?.parse().ok()?;
    let _n: usize = it.next()?.parse().ok()?;
    it.next().is_none().then_some((first, last))
}

/// The newest commit whose rows a sealed file holds: a segment's epoch, or the last epoch
/// a compacted file merged.
pub fn last_epoch_of(name: &str) -> Option<u64> {
    epoch_of_final(name).or_else(|| compacted_range(name).map(|r| r.1))
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
    let mut compacted: Vec<(u64, Found)> = Vec::new();
    for dir in super::layout::all_partitions(root)?.into_iter().map(|p| p.dir) {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((e, i, n)) = parse_final(&name) {
                finals.push((e, i, n, Found { dir: dir.clone(), name }));
            } else if let Some(e) = parse_temp(&name) {
                temps.push((e, Found { dir: dir.clone(), name }));
            } else if let Some((_, last)) = compacted_range(&name) {
                compacted.push((last, Found { dir: dir.clone(), name }));
            }
        }
    }
    let mut rec = Recovered { segments: finals.len(), ..Default::default() };
    let newest = finals.iter().map(|f| f.0).chain(compacted.iter().map(|c| c.0)).max();
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
        // Segments a compaction took in are not counted here (their file lists them).
        let merged = compacted.iter().any(|c| c.0 == epoch);
        if sealed != count && !merged {
            tracing::warn!(epoch, expected = count, found = sealed, "newest commit is missing segments (deleted by hand?)");
        }
        // Segment 0 was renamed first and carries the checkpoint (segments a lane closed
        // early carry only the epoch); any other segment with one does too, and so does a
        // compacted file that merged it.
        let mut segs: Vec<(usize, PathBuf)> = finals.iter().filter(|f| f.0 == epoch).map(|f| (f.1, f.3.dir.join(&f.3.name))).collect();
        segs.sort();
        segs.extend(compacted.iter().filter(|c| c.0 == epoch).map(|c| (usize::MAX, c.1.dir.join(&c.1.name))));
        let mut found = None;
        for (_, seg) in &segs {
            match read_checkpoint_of(seg, epoch) {
                Ok(c) => {
                    found = Some(c);
                    break;
                }
                Err(e) => tracing::debug!(segment = %seg.display(), error = %e, "no checkpoint in this segment"),
            }
        }
        rec.checkpoint = match found {
            Some(c) => c,
            None => read_checkpoint_of(&segs[0].1, epoch)?,
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

/// The newest commit with a sealed segment or merged into a compacted file, read from the
/// names alone (changes nothing).
pub fn newest_epoch(root: &Path) -> Result<Option<u64>, ArchiveError> {
    let mut newest = None;
    for dir in super::layout::all_partitions(root)?.into_iter().map(|p| p.dir) {
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let name = entry.map_err(io_err(&dir))?.file_name();
            newest = newest.max(last_epoch_of(&name.to_string_lossy()));
        }
    }
    Ok(newest)
}

/// Reads the checkpoint of commit `epoch` from a sealed file's footer (a segment of that
/// commit, or a compacted file that carries it).
pub fn read_checkpoint_of(path: &Path, epoch: u64) -> Result<Checkpoint, ArchiveError> {
    let bad = |reason: String| ArchiveError::BadSegment { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let reader = SerializedFileReader::new(file).map_err(|e| bad(e.to_string()))?;
    let kv = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let (epoch_kv, json) = checkpoint_keys(&kv);
    match epoch_kv {
        None => return Err(bad("no alertflow.epoch key".into())),
        Some(e) if e != epoch => return Err(bad(format!("its checkpoint is of commit {e}, not {epoch}"))),
        Some(_) => {}
    }
    let json = json.ok_or_else(|| bad("no alertflow.checkpoint key".into()))?;
    serde_json::from_str(&json).map_err(|e| bad(e.to_string()))
}

/// The commit (`alertflow.epoch`) and checkpoint JSON in a footer's key-value metadata.
pub fn checkpoint_keys(kv: &[parquet::file::metadata::KeyValue]) -> (Option<u64>, Option<String>) {
    let get = |k: &str| kv.iter().find(|x| x.key == k).and_then(|x| x.value.clone());
    (get(KEY_EPOCH).and_then(|e| e.parse().ok()), get(KEY_CHECKPOINT))
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
        assert_eq!(compacted_range("compact-000000000003-000000000041-0002.parquet"), Some((3, 41)));
        assert_eq!(last_epoch_of("compact-000000000003-000000000041-0002.parquet"), Some(41));
        assert_eq!(last_epoch_of(&final_name(42, 0, 2)), Some(42));
        assert_eq!(compacted_range("compact-3-4.parquet"), None);
    }
}
