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

pub fn writer_properties(s: ParquetSettings) -> Result<WriterProperties, parquet::errors::ParquetError> {
    let raw = ColumnPath::from("raw");
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(s.zstd_level)?))
        .set_max_row_group_bytes(Some(s.row_group_max_bytes.max(1)))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("alertflow {}", env!("CARGO_PKG_VERSION")))
        // The raw line is unique per row: a dictionary and min/max statistics only cost.
        .set_column_dictionary_enabled(raw.clone(), false)
        .set_column_statistics_enabled(raw, EnabledStatistics::None)
        .build())
}
