//! What was seen before: per signature, source, destination and source→destination pair,
//! how many alerts in the last 24 hours and 7 days (hourly buckets of event time), and
//! whether the key was ever seen. Bounded: each kind keeps at most `max_keys` keys, least
//! recently seen first out. Past analyst verdicts come from a [`VerdictStore`].

use std::num::NonZeroUsize;

use lru::LruCache;

pub use crate::event::enriched::{HistoryInfo, Seen, Verdict};

/// Where past verdicts come from (the analyst API provides one; the default has none).
pub trait VerdictStore: Send + Sync {
    /// Verdicts on alerts of this signature involving this host, newest first.
    fn verdicts(&self, signature_id: i64, host: &str) -> Vec<Verdict>;
}

/// No verdicts yet.
#[derive(Debug, Default)]
pub struct NoVerdicts;

impl VerdictStore for NoVerdicts {
    fn verdicts(&self, _: i64, _: &str) -> Vec<Verdict> {
        Vec::new()
    }
}

const HOURS_7D: i64 = 168;

/// Hourly counts of one key, oldest first, at most a week of hours with alerts.
#[derive(Debug, Default)]
struct Buckets(Vec<(i64, u32)>);

impl Buckets {
    fn seen(&self, hour: i64) -> Seen {
        let (mut d, mut w) = (0u64, 0u64);
        for &(h, n) in &self.0 {
            if h > hour - HOURS_7D && h <= hour {
                w += n as u64;
                if h > hour - 24 {
                    d += n as u64;
                }
            }
        }
        Seen { last_24h: d, last_7d: w, first_time: false }
    }

    fn add(&mut self, hour: i64) {
        match self.0.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => {
                // Most keys only ever have an hour or two of alerts: the first one gets a
                // list of one place instead of a vector's first growth to four.
                self.0.reserve_exact(usize::from(self.0.is_empty()));
                self.0.push((hour, 1));
                self.0.sort_unstable_by_key(|(h, _)| *h);
            }
        }
        let newest = self.0.last().map_or(hour, |(h, _)| *h);
        self.0.retain(|(h, _)| *h > newest - HOURS_7D);
    }
}

pub struct History {
    kinds: [LruCache<u64, Buckets, KeyIsHash>; 4],
    pub evictions: u64,
}

/// The maps' keys are xxh3 hashes already: they are their own hash.
type KeyIsHash = std::hash::BuildHasherDefault<PassThrough>;

#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; any other input still hashes.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The key of a value in one kind's map (each kind has its own, so the seed only keeps the
/// pair's two halves apart).
fn key(seed: u64, v: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(v, seed)
}

impl History {
    pub fn new(max_keys: usize) -> Self {
        let cap = NonZeroUsize::new(max_keys.max(1)).expect("non-zero");
        Self { kinds: std::array::from_fn(|_| LruCache::with_hasher(cap, KeyIsHash::default())), evictions: 0 }
    }

    /// What was seen before this alert, then the alert is counted.
    pub fn observe(&mut self, ts_us: i64, signature_id: i64, src: &str, dest: &str) -> HistoryInfo {
        let hour = ts_us.div_euclid(3_600_000_000);
        let sid = signature_id.to_le_bytes();
        let keys = [key(0, &sid), key(0, src.as_bytes()), key(0, dest.as_bytes()), key(key(1, src.as_bytes()), dest.as_bytes())];
        let mut seen = [Seen::default(); 4];
        for (i, k) in keys.into_iter().enumerate() {
            let cache = &mut self.kinds[i];
            // One lookup whether the key is new or not; a new key in a full map evicts the
            // least recently seen.
            let full = cache.len() == cache.cap().get();
            let mut new = false;
            let b = cache.get_or_insert_mut(k, || {
                new = true;
                Buckets::default()
            });
            if new {
                seen[i].first_time = true;
                self.evictions += u64::from(full);
            } else {
                seen[i] = b.seen(hour);
            }
            b.add(hour);
        }
        HistoryInfo { signature: seen[0], src: seen[1], dest: seen[2], pair: seen[3], verdicts: Vec::new() }
    }

    pub fn keys(&self) -> usize {
        self.kinds.iter().map(|c| c.len()).sum()
    }
}

/// An archived segment that could not be read while seeding.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SeedError {
    pub path: std::path::PathBuf,
    pub message: String,
}

/// Counts the alerts of the last week in archived `alerts` segments (oldest first), so
/// history survives a restart; returns how many.
pub fn seed(h: &mut History, files: &[std::path::PathBuf], now_us: i64) -> Result<usize, SeedError> {
    use arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let mut rows: Vec<(i64, i64, String, String)> = Vec::new();
    for f in files {
        let err = |e: &dyn std::fmt::Display| SeedError { path: f.clone(), message: e.to_string() };
        let file = std::fs::File::open(f).map_err(|e| err(&e))?;
        let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(&e))?;
        let schema = b.schema().clone();
        let cols: Vec<usize> = ["timestamp", "alert_signature_id", "src_ip", "dest_ip"].iter().filter_map(|c| schema.index_of(c).ok()).collect();
        if cols.len() != 4 {
            continue;
        }
        let mask = ProjectionMask::roots(b.parquet_schema(), cols);
        for batch in b.with_projection(mask).build().map_err(|e| err(&e))? {
            let batch = batch.map_err(|e| err(&e))?;
            let ts = batch.column_by_name("timestamp").and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>()).cloned();
            let sid = batch.column_by_name("alert_signature_id").and_then(|c| c.as_any().downcast_ref::<Int64Array>()).cloned();
            let src = batch.column_by_name("src_ip").and_then(|c| c.as_any().downcast_ref::<StringArray>()).cloned();
            let dst = batch.column_by_name("dest_ip").and_then(|c| c.as_any().downcast_ref::<StringArray>()).cloned();
            let (Some(ts), Some(sid), Some(src), Some(dst)) = (ts, sid, src, dst) else { continue };
            for i in 0..batch.num_rows() {
                if !ts.is_valid(i) || ts.value(i) < now_us - 7 * 86_400_000_000 {
                    continue;
                }
                let s = |a: &StringArray| if a.is_valid(i) { a.value(i).to_string() } else { String::new() };
                rows.push((ts.value(i), if sid.is_valid(i) { sid.value(i) } else { 0 }, s(&src), s(&dst)));
            }
        }
    }
    rows.sort_unstable_by_key(|r| r.0);
    for (t, sid, src, dst) in &rows {
        h.observe(*t, *sid, src, dst);
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    const H: i64 = 3_600_000_000;

    #[test]
    fn counts_by_window_and_first_time() {
        let mut h = History::new(100);
        let first = h.observe(0, 1, "a", "b");
        assert!(first.signature.first_time && first.pair.first_time);
        h.observe(H, 1, "a", "b");
        h.observe(30 * H, 1, "a", "c");
        let now = h.observe(31 * H, 1, "a", "b");
        assert_eq!(now.signature, Seen { last_24h: 1, last_7d: 3, first_time: false });
        assert_eq!(now.pair, Seen { last_24h: 0, last_7d: 2, first_time: false });
        let later = h.observe(31 * H + 200 * H, 1, "a", "b");
        assert_eq!(later.signature, Seen { last_24h: 0, last_7d: 0, first_time: false }, "older than a week");
    }

    #[test]
    fn bounded_per_kind() {
        let mut h = History::new(10);
        for i in 0..100 {
            h.observe(0, i, &format!("s{i}"), "d");
        }
        assert_eq!(h.keys(), 10 + 10 + 1 + 10);
        assert!(h.evictions >= 270);
    }
}
