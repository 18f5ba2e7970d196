//! The newest rows of a table numbered by a sequence column (the `actions` table's `seq`):
//! what the commits made after a given number, read back from the sealed files.
//!
//! A commit holds every row made before its cut, so the rows of newer commits have higher
//! numbers: the files are read newest commit first, and the walk stops after the commit
//! holding the row right after the one asked for.

use std::path::{Path, PathBuf};

use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::layout::sealed_files;
use super::recovery::last_epoch_of;
use super::{ArchiveError, Table};

/// Rows of `table` whose `column` (an Int64 sequence number) is above `after`, in no
/// particular order (a commit's rows are spread over the hours of their event times).
pub fn rows_after(root: &Path, table: Table, column: &str, after: i64) -> Result<Vec<RecordBatch>, ArchiveError> {
    let mut files: Vec<(u64, PathBuf)> =
        sealed_files(root, table.dir(), None).into_iter().filter_map(|p| Some((last_epoch_of(p.file_name()?.to_str()?)?, p))).collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut out = Vec::new();
    let mut lowest = i64::MAX;
    let mut i = 0;
    while i < files.len() {
        // One commit's files (a commit can span partitions and lanes).
        let epoch = files[i].0;
        while i < files.len() && files[i].0 == epoch {
            let path = &files[i].1;
            let err = |e: &dyn std::fmt::Display| ArchiveError::Io { path: path.clone(), error: std::io::Error::other(e.to_string()) };
            let f = std::fs::File::open(path).map_err(|e| err(&e))?;
            for batch in ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| err(&e))?.build().map_err(|e| err(&e))? {
                let batch = batch.map_err(|e| err(&e))?;
                let Some(seq) = batch.column_by_name(column).and_then(|c| c.as_any().downcast_ref::<Int64Array>()) else {
                    return Err(err(&format!("no Int64 column `{column}`")));
                };
                if let Some(m) = arrow::compute::min(seq) {
                    lowest = lowest.min(m);
                }
                let keep: BooleanArray = seq.iter().map(|s| Some(s.is_some_and(|s| s > after))).collect();
                if keep.true_count() > 0 {
                    out.push(arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| err(&e))?);
                }
            }
            i += 1;
        }
        if lowest <= after.saturating_add(1) {
            break;
        }
    }
    Ok(out)
}
