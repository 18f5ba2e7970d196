//! Parquet writer settings: the one place that calls `WriterProperties` setters.

use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

/// What the archive lets an operator tune.
#[derive(Debug, Clone, Copy)]
pub struct ParquetSettings {
    pub zstd_level: i32,
    pub row_group_max_bytes: usize,
    /// The codec of the `raw` column (the original lines: most of the bytes) in the
    /// segments a run writes; compaction writes it with zstd.
    pub raw_codec: RawCodec,
    /// Data pages of format version 2 instead of 1 (the default). Version 2 compresses a
    /// page's values straight from the encoder's buffer, where version 1 first copies them
    /// behind the levels into a second buffer that then grows for the compressor and is
    /// shrunk after it: less CPU, but each compressed page keeps a buffer sized for the
    /// worst case until its row group is written, so more memory.
    pub data_page_v2: bool,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        Self { zstd_level: 1, row_group_max_bytes: 64 << 20, raw_codec: RawCodec::Zstd, data_page_v2: false }
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
    let version = if s.data_page_v2 { WriterVersion::PARQUET_2_0 } else { WriterVersion::PARQUET_1_0 };
    // Version 2 would otherwise change the encodings a column falls back to (delta
    // encodings, slower to write and to read): plain, as with version 1.
    Ok(b.set_writer_version(version)
        .set_encoding(Encoding::PLAIN)
        .set_compression(zstd)
        .set_column_compression(ColumnPath::from("raw"), raw)
        .set_max_row_group_bytes(Some(s.row_group_max_bytes.max(1)))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("alertflow {}", env!("CARGO_PKG_VERSION")))
        // Min/max statistics of whole lines help no query.
        .set_column_statistics_enabled(ColumnPath::from("raw"), EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("syslog_message"), EnabledStatistics::None)
        .build())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::PageType;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// The page types and value encodings of the `raw` column written with `s`.
    fn raw_pages(s: ParquetSettings) -> (Vec<PageType>, Vec<Encoding>) {
        // About 3 MB of lines: several pages of the default 1 MiB.
        let raw: ArrayRef = Arc::new(StringArray::from_iter_values((0..20_000).map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 300)))));
        let batch = RecordBatch::try_from_iter([("raw", raw)]).unwrap();
        let mut buf = Vec::new();
        let props = writer_properties(s).unwrap();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let r = SerializedFileReader::new(bytes::Bytes::from(buf)).unwrap();
        let rg = r.get_row_group(0).unwrap();
        let (mut types, mut encodings) = (Vec::new(), Vec::new());
        for page in rg.get_column_page_reader(0).unwrap() {
            let page = page.unwrap();
            types.push(page.page_type());
            encodings.push(page.encoding());
        }
        (types, encodings)
    }

    #[test]
    fn data_pages_are_version_1_by_default_and_2_when_asked_both_plain() {
        let (types, encodings) = raw_pages(ParquetSettings::default());
        assert!(types.len() > 1, "several pages: {types:?}");
        assert!(types.iter().all(|t| *t == PageType::DATA_PAGE), "{types:?}");
        assert!(encodings.iter().all(|e| *e == Encoding::PLAIN), "{encodings:?}");
        let (types, encodings) = raw_pages(ParquetSettings { data_page_v2: true, ..Default::default() });
        assert!(types.len() > 1, "several pages: {types:?}");
        assert!(types.iter().all(|t| *t == PageType::DATA_PAGE_V2), "{types:?}");
        assert!(encodings.iter().all(|e| *e == Encoding::PLAIN), "{encodings:?}");
    }
}
