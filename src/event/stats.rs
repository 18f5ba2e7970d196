//! Run-wide counters: what sources and parse workers counted since start, for the run's
//! summary (metrics are published separately, per batch).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    types: Mutex<BTreeMap<String, u64>>,
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

    pub fn types(&self) -> BTreeMap<String, u64> {
        self.types.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        RejectReason::ALL.iter().map(|r| (r.as_str(), self.rejected[r.index()].load(Ordering::Relaxed))).filter(|(_, n)| *n > 0).collect()
    }
}
