//! The archive's folders, read in one place: `<root>/<table>/date=YYYY-MM-DD/hour=HH/`
//! partitions holding sealed `part-*.parquet` files (temporaries start with `.`).
//! Recovery, the retro-hunt, history seeding and the demo read the archive through this.

use std::path::{Path, PathBuf};

use super::{io_err, ArchiveError, Table};

/// One `date=…/hour=…` folder of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub date: String,
    pub hour: String,
    pub dir: PathBuf,
}

/// The partitions of `<root>/<table>` (none when the table has no folder yet).
pub fn partitions(root: &Path, table: &str) -> Result<Vec<Partition>, ArchiveError> {
    let table = root.join(table);
    let mut out = Vec::new();
    if !table.is_dir() {
        return Ok(out);
    }
    for date in std::fs::read_dir(&table).map_err(io_err(&table))? {
        let date = date.map_err(io_err(&table))?;
        let name = date.file_name().to_string_lossy().into_owned();
        let Some(d) = name.strip_prefix("date=") else { continue };
        let dp = date.path();
        if !dp.is_dir() {
            continue;
        }
        for hour in std::fs::read_dir(&dp).map_err(io_err(&dp))? {
            let hour = hour.map_err(io_err(&dp))?;
            let hname = hour.file_name().to_string_lossy().into_owned();
            if let Some(h) = hname.strip_prefix("hour=").filter(|_| hour.path().is_dir()) {
                out.push(Partition { date: d.to_string(), hour: h.to_string(), dir: hour.path() });
            }
        }
    }
    out.sort_by(|a, b| (&a.date, &a.hour).cmp(&(&b.date, &b.hour)));
    Ok(out)
}

/// The partitions of every table (a commit spans all tables).
pub fn all_partitions(root: &Path) -> Result<Vec<Partition>, ArchiveError> {
    let mut out = Vec::new();
    for t in Table::ALL {
        out.extend(partitions(root, t.dir())?);
    }
    Ok(out)
}

/// Whether `name` is a sealed segment (not a temporary being written).
pub fn is_sealed(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('.')
}

/// Sealed Parquet files of `<root>/<table>/`, from partition date `since` on (all when
/// `None`), sorted. Folders that cannot be read are skipped.
pub fn sealed_files(root: &Path, table: &str, since: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in partitions(root, table).unwrap_or_default() {
        if since.is_some_and(|s| p.date.as_str() < s) {
            continue;
        }
        let Ok(files) = std::fs::read_dir(&p.dir) else { continue };
        for f in files.flatten() {
            if is_sealed(&f.file_name().to_string_lossy()) {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

/// Sealed files of `<root>/<table>/` whose `date=` partition is within `days` of `now_us`.
pub fn recent_files(root: &Path, table: &str, days: u32, now_us: i64) -> Vec<PathBuf> {
    let first_day = (now_us.div_euclid(86_400_000_000) - days as i64 + 1).max(0);
    let first = jiff::Timestamp::from_microsecond(first_day * 86_400_000_000).map(|t| t.strftime("%Y-%m-%d").to_string()).unwrap_or_default();
    sealed_files(root, table, Some(&first))
}
