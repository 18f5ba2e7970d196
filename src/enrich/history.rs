//! What was seen before: per signature, source, destination and source→destination pair,
//! how many alerts in the last 24 hours and 7 days (hourly buckets of event time), and
//! whether the key was ever seen. Bounded: each kind keeps at most `max_keys` keys, least
//! recently seen first out (a generation of half of them at a time: [`Generations`]). Past analyst verdicts come from a [`VerdictStore`].

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

/// Hourly counts of one key, oldest first, at most a week of hours with alerts. Hours are
/// counted from the epoch (an `i32` holds them for 245,000 years); the first two are kept in
/// place, so most keys, which only ever have an hour or two of alerts, allocate nothing.
#[derive(Debug, Default)]
struct Buckets(smallvec::SmallVec<[(i32, u32); 2]>);

impl Buckets {
    fn seen(&self, hour: i32) -> Seen {
        let (mut d, mut w) = (0u64, 0u64);
        for &(h, n) in &self.0 {
            let age = i64::from(hour) - i64::from(h);
            if (0..HOURS_7D).contains(&age) {
                w += n as u64;
                if age < 24 {
                    d += n as u64;
                }
            }
        }
        Seen { last_24h: d, last_7d: w, first_time: false }
    }

    fn add(&mut self, hour: i32) {
        match self.0.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => {
                self.0.push((hour, 1));
                self.0.sort_unstable_by_key(|(h, _)| *h);
            }
        }
        let newest = i64::from(self.0.last().map_or(hour, |(h, _)| *h));
        self.0.retain(|(h, _)| i64::from(*h) > newest - HOURS_7D);
    }
}

/// The hour of `ts_us` since the epoch (out of `i32`'s range only for times no sensor writes).
fn hour_of(ts_us: i64) -> i32 {
    ts_us.div_euclid(3_600_000_000).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// One kind's keys in two generations of at most half the bound each, instead of a list
/// ordered by recency: a key is looked up in the young generation, then in the old one (and
/// moved to the young one when found there); a new key goes to the young one. When the young
/// generation is full, the old one is dropped (its keys counted as evicted) and the young one
/// becomes the old one. So every key seen among the last `max_keys / 2` keys new or moved is
/// kept, at most `max_keys` are, the least recently seen go first (a generation at a time),
/// and a lookup is one or two probes of a flat table, with no list to reorder.
struct Generations {
    young: hashbrown::HashMap<u64, Buckets, KeyIsHash>,
    old: hashbrown::HashMap<u64, Buckets, KeyIsHash>,
    half: usize,
}

impl Generations {
    fn new(max_keys: usize) -> Self {
        let half = (max_keys / 2).max(1);
        Self { young: Default::default(), old: Default::default(), half }
    }

    /// The buckets of `k` (empty when it is new: `true`), and how many keys went to make room.
    fn get_or_insert(&mut self, k: u64) -> (&mut Buckets, bool, u64) {
        if self.young.contains_key(&k) {
            return (self.young.get_mut(&k).expect("present"), false, 0);
        }
        let (b, new) = match self.old.remove(&k) {
            Some(b) => (b, false),
            None => (Buckets::default(), true),
        };
        let mut evicted = 0;
        if self.young.len() >= self.half {
            evicted = self.old.len() as u64;
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
        (self.young.entry(k).or_insert(b), new, evicted)
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

pub struct History {
    kinds: [Generations; 4],
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
        Self { kinds: std::array::from_fn(|_| Generations::new(max_keys)), evictions: 0 }
    }

    /// What was seen before this alert, then the alert is counted.
    pub fn observe(&mut self, ts_us: i64, signature_id: i64, src: &str, dest: &str) -> HistoryInfo {
        let hour = hour_of(ts_us);
        let sid = signature_id.to_le_bytes();
        let keys = [key(0, &sid), key(0, src.as_bytes()), key(0, dest.as_bytes()), key(key(1, src.as_bytes()), dest.as_bytes())];
        let mut seen = [Seen::default(); 4];
        for (i, k) in keys.into_iter().enumerate() {
            let (b, new, evicted) = self.kinds[i].get_or_insert(k);
            self.evictions += evicted;
            if new {
                seen[i].first_time = true;
            } else {
                seen[i] = b.seen(hour);
            }
            b.add(hour);
        }
        HistoryInfo { signature: seen[0], src: seen[1], dest: seen[2], pair: seen[3], verdicts: Vec::new() }
    }

    pub fn keys(&self) -> usize {
        self.kinds.iter().map(Generations::len).sum()
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

    /// Recency, not age, decides what stays: a source seen again and again is never
    /// forgotten in a flood of new ones; one not seen while the bound's worth of new keys
    /// came is (and is new again).
    #[test]
    fn the_least_recently_seen_go_first() {
        let mut h = History::new(10);
        h.observe(0, 1, "steady", "d");
        h.observe(0, 1, "once", "d");
        for i in 0..200 {
            h.observe(0, 1, &format!("new{i}"), "d");
            if i % 4 == 0 {
                let again = h.observe(0, 1, "steady", "d");
                assert!(!again.src.first_time, "steady forgotten after {i} new sources");
            }
            assert!(h.keys() <= 4 * 10);
        }
        let once = h.observe(H, 1, "once", "d");
        assert!(once.src.first_time, "a source unseen for 200 new ones is forgotten");
        let steady = h.observe(H, 1, "steady", "d");
        assert_eq!(steady.src, Seen { last_24h: 51, last_7d: 51, first_time: false });
    }
}
