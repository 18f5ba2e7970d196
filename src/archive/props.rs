//! Parquet writer settings: the one place that calls `WriterProperties` setters.

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// What the archive lets an operator tune.
#[derive(Debug, Clone, Copy)]
pub struct ParquetSettings {
    pub zstd_level: i32,
    pub row_group_max_bytes: usize,
    /// The codec of the `raw` column (the original lines: most of the bytes) in the
    /// segments a run writes; compaction writes it with zstd.
    pub raw_codec: RawCodec,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        Self { zstd_level: 1, row_group_max_bytes: 64 << 20, raw_codec: RawCodec::Zstd }
    }
}

/// `[archive] raw_codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCodec {
    /// zstd at `zstd_level`, like every other column.
    Zstd,
    /// LZ4 (Parquet's `LZ4_RAW`): several times faster to write, larger.
    Lz4,
    /// Uncompressed.
    None,
}

impl RawCodec {
    pub const NAMES: [&'static str; 3] = ["zstd", "lz4", "none"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zstd" => Some(Self::Zstd),
            "lz4" => Some(Self::Lz4),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// The settings compaction writes with: the same, with `raw` in zstd (a quiet hour is
/// rewritten once, off the hot path, and read for a long time).
pub fn for_compaction(s: ParquetSettings) -> ParquetSettings {
    ParquetSettings { raw_codec: RawCodec::Zstd, ..s }
}

/// Columns whose values are (nearly) unique per row: a dictionary only costs CPU before
/// the writer falls back to plain encoding.
const NO_DICTIONARY: [&str; 5] = ["timestamp", "src_port", "flow_id", "community_id", "raw"];

pub fn writer_properties(s: ParquetSettings) -> Result<WriterProperties, parquet::errors::ParquetError> {
    let mut b = WriterProperties::builder();
    for c in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    let zstd = Compression::ZSTD(ZstdLevel::try_new(s.zstd_level)?);
    let raw = match s.raw_codec {
        RawCodec::Zstd => zstd,
        RawCodec::Lz4 => Compression::LZ4_RAW,
        RawCodec::None => Compression::UNCOMPRESSED,
    };
    Ok(b.set_compression(zstd)
        .set_column_compression(ColumnPath::from("raw"), raw)
        .set_max_row_group_bytes(Some(s.row_group_max_bytes.max(1)))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("alertflow {}", env!("CARGO_PKG_VERSION")))
        // Min/max statistics of whole lines help no query.
        .set_column_statistics_enabled(ColumnPath::from("raw"), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("syslog_message"), EnabledStatistics::None)
        .build())
}
