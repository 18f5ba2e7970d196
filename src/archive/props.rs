//! Parquet writer settings: the one place that calls `WriterProperties` setters.

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// What the archive lets an operator tune.
#[derive(Debug, Clone, Copy)]
pub struct ParquetSettings {
    pub zstd_level: i32,
    pub row_group_max_bytes: usize,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        Self { zstd_level: 1, row_group_max_bytes: 64 << 20 }
    }
}

/// Columns whose values are (nearly) unique per row: a dictionary only costs CPU before
/// the writer falls back to plain encoding.
const NO_DICTIONARY: [&str; 5] = ["timestamp", "src_port", "flow_id", "community_id", "raw"];

pub fn writer_properties(s: ParquetSettings) -> Result<WriterProperties, parquet::errors::ParquetError> {
    let mut b = WriterProperties::builder();
    for c in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    Ok(b.set_compression(Compression::ZSTD(ZstdLevel::try_new(s.zstd_level)?))
        .set_max_row_group_bytes(Some(s.row_group_max_bytes.max(1)))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("alertflow {}", env!("CARGO_PKG_VERSION")))
        // Min/max statistics of whole lines help no query.
        .set_column_statistics_enabled(ColumnPath::from("raw"), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("syslog_message"), EnabledStatistics::None)
        .build())
}
