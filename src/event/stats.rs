//! Run-wide counters: what sources and parse workers counted since start, for the run's
//! summary (metrics are published separately, per batch).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use super::handoff::BatchStats;
use super::reject::RejectReason;

#[derive(Default)]
pub struct PipelineStats {
    pub lines: AtomicU64,
    pub blank: AtomicU64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub ts_errors: AtomicU64,
    pub rejected: [AtomicU64; RejectReason::COUNT],
    pub field_errors: AtomicU64,
    pub implausible_times: AtomicU64,
    /// Incidents open now (correlation and entity incidents), kept by the alert path.
    pub open_incidents: AtomicU64,
    types: Mutex<BTreeMap<String, u64>>,
    sources: Mutex<Vec<std::sync::Arc<SourceHealth>>>,
}

/// Distinct event types kept in the summary; more are counted as `other`.
const MAX_TYPES: usize = 256;

impl PipelineStats {
    pub fn add(&self, b: &BatchStats) {
        self.lines.fetch_add(b.lines, Ordering::Relaxed);
        self.blank.fetch_add(b.blank, Ordering::Relaxed);
        self.events.fetch_add(b.events, Ordering::Relaxed);
        self.bytes.fetch_add(b.bytes, Ordering::Relaxed);
        self.ts_errors.fetch_add(b.ts_errors, Ordering::Relaxed);
        self.implausible_times.fetch_add(b.implausible_times, Ordering::Relaxed);
        self.field_errors.fetch_add(b.field_errors.iter().sum(), Ordering::Relaxed);
        for (i, n) in b.rejected.iter().enumerate() {
            if *n > 0 {
                self.rejected[i].fetch_add(*n, Ordering::Relaxed);
            }
        }
        let mut types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        for (t, n) in &b.types {
            if let Some(c) = types.get_mut(&**t) {
                *c += n;
            } else if types.len() < MAX_TYPES {
                types.insert(t.to_string(), *n);
            } else {
                *types.entry("other".into()).or_default() += n;
            }
        }
    }

    /// Registers a source; its thread keeps the returned record current.
    pub fn add_source(&self, name: &str, kind: &'static str) -> std::sync::Arc<SourceHealth> {
        let h = std::sync::Arc::new(SourceHealth::new(name, kind));
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).push(h.clone());
        h
    }

    pub fn sources(&self) -> Vec<std::sync::Arc<SourceHealth>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Lines dropped by every source's overflow policy.
    pub fn dropped(&self) -> u64 {
        self.sources().iter().map(|s| s.dropped.load(Ordering::Relaxed)).sum()
    }

    /// Lines rejected, every reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().map(|r| r.load(Ordering::Relaxed)).sum()
    }

    pub fn types(&self) -> BTreeMap<String, u64> {
        self.types.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        RejectReason::ALL.iter().map(|r| (r.as_str(), self.rejected[r.index()].load(Ordering::Relaxed))).filter(|(_, n)| *n > 0).collect()
    }
}

/// One source as `/health` and the periodic stats line see it: written by the source's
/// thread (relaxed atomics, a few per batch), read by whoever asks.
#[derive(Debug, Default)]
pub struct SourceHealth {
    pub name: String,
    /// The source's `type` in the configuration (`file`, `syslog_tcp`, …).
    pub kind: &'static str,
    /// Batches and bytes handed to the pipeline.
    pub batches: AtomicU64,
    pub bytes: AtomicU64,
    /// Lines lost to the `drop` overflow policy.
    pub dropped: AtomicU64,
    /// Wall clock (ms since the epoch) of the last batch read; 0: none yet.
    pub last_read_ms: AtomicI64,
    /// Bytes written to the followed files that are not read yet (file sources).
    pub behind_bytes: AtomicU64,
    /// Files open (file sources) or connections (stream listeners).
    pub open: AtomicI64,
    /// Set when the source stopped for good: its error, or `None` once it ended normally.
    ended: Mutex<Option<Option<String>>>,
}

/// Real time in ms since the epoch (not the process clock: idle is a matter of real time).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds without a batch after which a source that read before is `idle`.
pub const IDLE_AFTER_MS: i64 = 10_000;

impl SourceHealth {
    pub fn new(name: &str, kind: &'static str) -> Self {
        Self { name: name.into(), kind, ..Default::default() }
    }

    /// Counts one batch handed to the pipeline.
    pub fn note_batch(&self, bytes: u64, now_ms: i64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.last_read_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The source's thread returned: with its error, or `None` when it ended normally.
    pub fn end(&self, error: Option<String>) {
        *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    /// `reading` (a batch within [`IDLE_AFTER_MS`]), `idle`, `waiting` (nothing read
    /// yet), `finished` or `failed`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        match &*self.ended.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(Some(_)) => return "failed",
            Some(None) => return "finished",
            None => {}
        }
        match self.last_read_ms.load(Ordering::Relaxed) {
            0 => "waiting",
            t if now_ms - t <= IDLE_AFTER_MS => "reading",
            _ => "idle",
        }
    }

    /// The JSON `/health` shows for this source.
    pub fn to_json(&self, now_ms: i64) -> serde_json::Value {
        let last = self.last_read_ms.load(Ordering::Relaxed);
        let error = self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone().flatten();
        serde_json::json!({
            "name": self.name,
            "type": self.kind,
            "state": self.state(now_ms),
            "batches": self.batches.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "idle_secs": (last > 0).then(|| (now_ms - last).max(0) / 1000),
            "behind_bytes": self.behind_bytes.load(Ordering::Relaxed),
            "open": self.open.load(Ordering::Relaxed),
            "error": error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_waiting_then_reading_then_idle_and_ends_finished_or_failed() {
        let s = SourceHealth::new("eve", "file");
        assert_eq!(s.state(1_000), "waiting");
        s.note_batch(100, 1_000);
        assert_eq!(s.state(1_000 + IDLE_AFTER_MS), "reading");
        assert_eq!(s.state(1_001 + IDLE_AFTER_MS), "idle");
        assert_eq!(s.to_json(12_000)["idle_secs"], 11);
        assert_eq!(s.to_json(12_000)["bytes"], 100);
        s.end(Some("gone".into()));
        assert_eq!(s.state(1_000), "failed");
        assert_eq!(s.to_json(1_000)["error"], "gone");
        let t = SourceHealth::new("in", "stdin");
        t.end(None);
        assert_eq!(t.state(0), "finished");
    }
}
