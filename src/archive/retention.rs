//! Retention: whole `date=` partitions older than a table's retention are removed.
//!
//! A partition goes in two steps: it is renamed out of its table into
//! `<root>/_trash/<table>/date=…-<epoch>` (one atomic rename: readers see all of it or
//! none of it, and `_trash` is no table), then the trash is deleted on a thread of its own.
//! A crash in between leaves files only in `_trash`, which the next start empties. Never
//! removed: a partition holding a segment of the newest commit, or a compacted file that
//! merged it (recovery reads the source positions from it), or one with a temporary in it (a commit being written); passes run
//! on the commit coordinator right after a commit, when nothing is open.
//!
//! The cut is by event date (UTC): with `days = 30`, on 2026-12-04 every `date=` before
//! 2026-11-04 goes; the day of the cut and after stay.

use std::path::{Path, PathBuf};

use super::{io_err, ArchiveError, Table};

/// Days each table keeps (`None`: forever).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub days: [Option<u32>; 4],
}

impl Retention {
    pub fn days(&self, t: Table) -> Option<u32> {
        self.days[t as usize]
    }

    pub fn any(&self) -> bool {
        self.days.iter().any(Option::is_some)
    }
}

/// The folder expired partitions are moved into before they are deleted.
pub const TRASH: &str = "_trash";

/// One expired partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub table: Table,
    pub date: String,
    pub dir: PathBuf,
    pub files: u64,
    pub bytes: u64,
}

/// What a pass found: partitions to remove, and those kept although expired (with why).
#[derive(Debug, Default)]
pub struct Pass {
    pub expired: Vec<Expired>,
    pub kept: Vec<(Expired, &'static str)>,
}

/// `YYYY-MM-DD` of the day `days` before `now_us` (UTC).
pub fn cutoff_date(now_us: i64, days: u32) -> String {
    let day = now_us.div_euclid(86_400_000_000) - days as i64;
    let (y, m, d) = crate::event::time::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The partitions of every table older than its retention. `newest_epoch`: the newest
/// commit, whose partitions are kept.
pub fn find(root: &Path, retention: &Retention, now_us: i64, newest_epoch: Option<u64>) -> Result<Pass, ArchiveError> {
    let mut pass = Pass::default();
    for t in Table::ALL {
        let Some(days) = retention.days(t) else { continue };
        let cut = cutoff_date(now_us, days);
        let dir = root.join(t.dir());
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(date) = name.strip_prefix("date=") else { continue };
            // Dates sort as text; anything that is not a date is left alone.
            if date.len() != 10 || date >= cut.as_str() || !entry.path().is_dir() {
                continue;
            }
            let (files, bytes, temp, holds_newest) = survey(&entry.path(), newest_epoch)?;
            let e = Expired { table: t, date: date.to_string(), dir: entry.path(), files, bytes };
            if holds_newest {
                pass.kept.push((e, "holds the newest commit"));
            } else if temp {
                pass.kept.push((e, "a commit is being written into it"));
            } else {
                pass.expired.push(e);
            }
        }
    }
    pass.expired.sort_by(|a, b| (a.table, &a.date).cmp(&(b.table, &b.date)));
    Ok(pass)
}

/// Files and bytes under a date folder, whether a temporary is among them, and whether a
/// file holds rows of commit `newest` (a segment of it, or a compacted file ending with it).
fn survey(dir: &Path, newest: Option<u64>) -> Result<(u64, u64, bool, bool), ArchiveError> {
    let (mut files, mut bytes, mut temp, mut holds) = (0, 0, false, false);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io_err(&d))? {
            let entry = entry.map_err(io_err(&d))?;
            let ft = entry.file_type().map_err(io_err(&d))?;
            if ft.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            files += 1;
            bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            temp |= name.ends_with(".tmp");
            holds |= newest.is_some_and(|n| super::recovery::last_epoch_of(&name) == Some(n));
        }
    }
    Ok((files, bytes, temp, holds))
}

/// Moves each partition into the trash (one rename each). Returns those moved.
pub fn move_to_trash(root: &Path, expired: &[Expired], epoch: u64) -> Result<usize, ArchiveError> {
    let mut moved = 0;
    for e in expired {
        let trash = root.join(TRASH).join(e.table.dir());
        std::fs::create_dir_all(&trash).map_err(io_err(&trash))?;
        let to = trash.join(format!("date={}-{epoch}", e.date));
        std::fs::rename(&e.dir, &to).map_err(io_err(&to))?;
        moved += 1;
        tracing::info!(table = e.table.dir(), date = %e.date, files = e.files, bytes = e.bytes, "retention: partition removed");
        if let Some(fault) = std::env::var_os(FAULT_KILL_IN_RETENTION) {
            if fault == "after_move" {
                // The tests' kill in the middle of deleting: some files of the moved
                // partition gone, others not.
                if let Some(first) = first_file(&to) {
                    let _ = std::fs::remove_file(first);
                }
                tracing::error!(partition = %to.display(), "fault point: killing the process while deleting a partition");
                // SAFETY: raising a signal on this process; SIGKILL is what a crash looks like.
                unsafe { libc::raise(libc::SIGKILL) };
            }
        }
    }
    if moved > 0 {
        for t in Table::ALL {
            let d = root.join(t.dir());
            if d.is_dir() {
                std::fs::File::open(&d).and_then(|f| f.sync_all()).map_err(io_err(&d))?;
            }
        }
    }
    Ok(moved)
}

/// Environment variable of the retention fault point (tests only): `after_move` kills the
/// process once the first partition is in the trash and partly deleted.
pub const FAULT_KILL_IN_RETENTION: &str = "ALERTFLOW_FAULT_KILL_IN_RETENTION";

fn first_file(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            if entry.file_type().ok()?.is_dir() {
                stack.push(entry.path());
            } else {
                return Some(entry.path());
            }
        }
    }
    None
}

/// `alertflow prune`: one pass over an archive no process is writing (its lock is taken),
/// or with `dry_run` only what would go (no lock, nothing changed).
pub fn prune(root: &Path, retention: &Retention, now_us: i64, dry_run: bool) -> Result<Pass, ArchiveError> {
    if !root.join(super::EVENTS_TABLE).is_dir() {
        return Err(ArchiveError::Io {
            path: root.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no archive here (no events/ folder)"),
        });
    }
    let _lock = if dry_run { None } else { Some(super::lock_archive(root)?) };
    let newest = super::recovery::newest_epoch(root)?;
    let pass = find(root, retention, now_us, newest)?;
    if !dry_run {
        move_to_trash(root, &pass.expired, newest.map_or(0, |e| e + 1))?;
        empty_trash(root).map_err(io_err(&root.join(TRASH)))?;
    }
    Ok(pass)
}

/// Deletes everything in the trash (what a pass moved, or what a crash left).
pub fn empty_trash(root: &Path) -> std::io::Result<()> {
    let trash = root.join(TRASH);
    match std::fs::remove_dir_all(&trash) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn the_cut_is_by_date_and_the_newest_commit_and_open_commits_stay() {
        assert_eq!(cutoff_date(1_796_342_400_000_000, 30), "2026-11-04"); // 2026-12-04
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        touch(&r.join("events/date=2026-11-03/hour=10/part-000000000001-0000-0001.parquet"));
        touch(&r.join("events/date=2026-11-04/hour=00/part-000000000002-0000-0001.parquet"));
        touch(&r.join("events/date=2026-10-01/hour=00/part-000000000007-0000-0002.parquet"));
        touch(&r.join("events/date=2026-09-01/hour=00/.part-000000000008-00-0000.parquet.tmp"));
        touch(&r.join("alerts/date=2026-11-01/hour=10/part-000000000001-0001-0001.parquet"));
        let mut ret = Retention::default();
        ret.days[Table::Events as usize] = Some(30);
        let pass = find(r, &ret, 1_796_342_400_000_000, Some(7)).unwrap();
        let gone: Vec<&str> = pass.expired.iter().map(|e| e.date.as_str()).collect();
        assert_eq!(gone, ["2026-11-03"], "alerts keep everything; 11-04 is inside the 30 days");
        let kept: Vec<(&str, &str)> = pass.kept.iter().map(|(e, why)| (e.date.as_str(), *why)).collect();
        assert!(kept.contains(&("2026-10-01", "holds the newest commit")), "{kept:?}");
        assert!(kept.contains(&("2026-09-01", "a commit is being written into it")), "{kept:?}");
        assert_eq!(move_to_trash(r, &pass.expired, 9).unwrap(), 1);
        assert!(!r.join("events/date=2026-11-03").exists());
        assert!(r.join("_trash/events/date=2026-11-03-9/hour=10").is_dir());
        empty_trash(r).unwrap();
        assert!(!r.join(TRASH).exists());
        empty_trash(r).unwrap();
    }
}
