//! Alert deduplication in event time.
//!
//! Alerts with the same key (default: sensor, signature id, source, destination, proto)
//! inside `window` are repeats. The first alert of a key goes on at once; repeats are
//! suppressed, never hidden: every `rollup` of event time a key with suppressed repeats
//! yields a [`Rollup`] ("still happening": count, first/last seen, distinct destination
//! ports and sensors). A repeat more severe than anything seen for its key breaks the
//! suppression and goes on. A key expires `window` after its last alert. At most
//! `max_keys` keys are held; when full, the key seen longest ago is evicted (counted) and
//! its pending roll-up is emitted first, so no count is lost.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::{write_key, AlertRecord, KeyField};
use crate::event::delta::{write_json, LruChanges, Part, TrackedLru};
use crate::event::members::Members;

#[derive(Debug, Clone)]
pub struct DedupConfig {
    pub key: Vec<KeyField>,
    pub window_us: i64,
    pub rollup_us: i64,
    pub max_keys: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            key: vec![KeyField::Sensor, KeyField::SignatureId, KeyField::SrcIp, KeyField::DestIp, KeyField::Proto],
            window_us: 300_000_000,
            rollup_us: 60_000_000,
            max_keys: 1_000_000,
        }
    }
}

pub use crate::event::alert::{Decision, Rollup};

/// Distinct values kept per key for roll-ups.
const MAX_DISTINCT: usize = 32;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    first_us: i64,
    last_us: i64,
    count: u64,
    since_rollup: u64,
    next_rollup_us: i64,
    most_severe: i32,
    /// The signature of the key's first alert (for its roll-ups).
    #[serde(default)]
    signature_id: i64,
    /// Distinct destination ports and sensors (at most [`MAX_DISTINCT`] each; small, so
    /// vectors with a linear search beat trees).
    dest_ports: Vec<i32>,
    sensors: Vec<String>,
    /// Due time of this key's live entry in the timer queue (`i64::MAX`: none).
    #[serde(skip, default = "never")]
    queued_us: i64,
}

fn never() -> i64 {
    i64::MAX
}

impl Entry {
    /// The first watermark at which this key needs attention: its roll-up, or its expiry
    /// (a key expires once the watermark is past last + window).
    fn due(&self, window_us: i64) -> i64 {
        let expiry = self.last_us.saturating_add(window_us).saturating_add(1);
        if self.since_rollup > 0 {
            expiry.min(self.next_rollup_us)
        } else {
            expiry
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupCounts {
    pub first: u64,
    pub escalated: u64,
    pub suppressed: u64,
    pub evicted: u64,
    pub expired: u64,
}

pub struct Dedup {
    cfg: DedupConfig,
    /// Keys in order of their last alert (least recent first out when full). A key's text
    /// is shared by the cache, its timer entries, the change tracking and the decisions
    /// made about it.
    keys: TrackedLru<Arc<str>, Entry>,
    /// (due, key), earliest first: when keys need a roll-up or expire, so an advance
    /// touches only the keys that are due. One live entry per key (its `queued_us`);
    /// entries of removed keys or superseded times are skipped when they come up.
    timers: BinaryHeap<Reverse<(i64, Arc<str>)>>,
    /// Where an alert's key is written before it becomes shared text (one allocation).
    scratch: String,
    pub counts: DedupCounts,
}

/// Puts `key` in the timer queue if it needs attention before its live entry fires.
fn schedule(timers: &mut BinaryHeap<Reverse<(i64, Arc<str>)>>, key: &Arc<str>, e: &mut Entry, window_us: i64) {
    let due = e.due(window_us);
    if due < e.queued_us {
        e.queued_us = due;
        timers.push(Reverse((due, key.clone())));
    }
}

impl Dedup {
    pub fn new(cfg: DedupConfig) -> Self {
        Self { cfg, keys: TrackedLru::unbounded(), timers: BinaryHeap::new(), scratch: String::new(), counts: DedupCounts::default() }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Takes one alert (its `ts_us` already through the watermark). Roll-ups forced out by
    /// eviction go to `out`.
    pub fn offer(&mut self, a: &AlertRecord, out: &mut Vec<Rollup>) -> Decision {
        self.scratch.clear();
        write_key(&self.cfg.key, a, &mut self.scratch);
        let key: Arc<str> = self.scratch.as_str().into();
        if let Some(e) = self.keys.get_mut(&key) {
            if a.ts_us - e.last_us <= self.cfg.window_us {
                e.count += 1;
                e.last_us = e.last_us.max(a.ts_us);
                note_distinct(e, a);
                if a.severity < e.most_severe {
                    e.most_severe = a.severity;
                    self.counts.escalated += 1;
                    return Decision::Escalated { key, count: e.count };
                }
                e.since_rollup += 1;
                if e.since_rollup == 1 {
                    schedule(&mut self.timers, &key, e, self.cfg.window_us);
                }
                self.counts.suppressed += 1;
                return Decision::Suppressed { key, count: e.count };
            }
            // The window passed: the key starts over (its last roll-up first).
            let e = self.keys.pop(&key).expect("present");
            if let Some(r) = rollup(&key, &e, "expired") {
                out.push(r);
            }
            self.counts.expired += 1;
        }
        if self.keys.len() >= self.cfg.max_keys {
            self.evict_oldest(out);
        }
        let mut e = Entry {
            first_us: a.ts_us,
            last_us: a.ts_us,
            count: 1,
            since_rollup: 0,
            next_rollup_us: a.ts_us + self.cfg.rollup_us,
            most_severe: a.severity,
            signature_id: a.signature_id,
            dest_ports: Vec::new(),
            sensors: Vec::new(),
            queued_us: i64::MAX,
        };
        note_distinct(&mut e, a);
        schedule(&mut self.timers, &key, &mut e, self.cfg.window_us);
        self.keys.put(key.clone(), e);
        self.counts.first += 1;
        Decision::First { key }
    }

    /// Evicts the key whose last alert is the least recent (O(1)).
    fn evict_oldest(&mut self, out: &mut Vec<Rollup>) {
        if let Some((k, e)) = self.keys.pop_lru() {
            if let Some(r) = rollup(&k, &e, "evicted") {
                out.push(r);
            }
            self.counts.evicted += 1;
        }
    }

    /// The keys and counts as JSON text, for a snapshot (written straight from the map:
    /// this runs with every commit, over up to `max_keys` keys).
    pub fn snapshot(&self) -> String {
        super::snapshot_text(|w| self.snapshot_to(w))
    }

    /// [`Dedup::snapshot`] written to `w` as it is serialized.
    pub fn snapshot_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        #[derive(serde::Serialize)]
        struct Snap<'a> {
            keys: Vec<(&'a Arc<str>, &'a Entry)>,
            counts: DedupCounts,
        }
        // Least recent first, so a restore rebuilds the same eviction order.
        serde_json::to_writer(w, &Snap { keys: self.keys.iter().rev().collect(), counts: self.counts }).map_err(std::io::Error::other)
    }

    pub fn restore(&mut self, v: &Members) -> Result<(), serde_json::Error> {
        let keys: Vec<(Arc<str>, Entry)> = v.get("keys")?;
        self.keys = TrackedLru::unbounded();
        for (k, e) in keys {
            self.keys.put(k, e);
        }
        self.counts = v.get("counts")?;
        self.timers.clear();
        let window = self.cfg.window_us;
        for (k, e) in self.keys.iter_mut_untracked() {
            e.queued_us = i64::MAX;
            schedule(&mut self.timers, k, e, window);
        }
        Ok(())
    }

    /// A dedup with the same configuration, and no key.
    pub fn empty_like(&self) -> Self {
        Self::new(self.cfg.clone())
    }

    /// Tracks the keys changed from now on (the whole state was just saved).
    pub fn track(&mut self) {
        self.keys.track();
    }

    /// Copies up to `budget` entries of the snapshot capture under way (see
    /// `event::delta`); whether it is finished.
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        self.keys.capture_step(budget)
    }

    /// The keys changed since the last snapshot and the counts (a delta: see
    /// `event::delta`), cut now, written by the returned part once the capture is finished
    /// ([`Dedup::capture_step`]).
    pub fn take_changes(&mut self) -> Part {
        let (keys, counts) = (self.keys.take_changes(), self.counts);
        Box::new(move |w: &mut dyn std::io::Write| {
            w.write_all(b"{\"keys\":")?;
            keys.write(w, |w, k| write_json(w, k), |w, k, e| write_json(w, &(k, e)))?;
            w.write_all(b",\"counts\":")?;
            write_json(w, &counts)?;
            w.write_all(b"}")
        })
    }

    /// Applies a delta of [`Dedup::take_changes`] to the restored state.
    pub fn apply_changes(&mut self, v: &Members) -> Result<(), serde_json::Error> {
        let c: LruChanges<Arc<str>, Entry> = LruChanges::parse(&v.members("keys")?)?;
        self.counts = v.get("counts")?;
        let (timers, window) = (&mut self.timers, self.cfg.window_us);
        self.keys.apply_changes(c, |k, e| {
            e.queued_us = i64::MAX;
            schedule(timers, k, e, window);
        });
        Ok(())
    }

    /// Moves event time to `watermark`: due roll-ups and expired keys (with their last
    /// roll-up) go to `out`.
    pub fn advance(&mut self, watermark: i64, out: &mut Vec<Rollup>) {
        let window = self.cfg.window_us;
        let rollup_us = self.cfg.rollup_us;
        let start = out.len();
        let mut expired = Vec::new();
        while self.timers.peek().is_some_and(|Reverse((due, _))| *due <= watermark) {
            let Some(Reverse((due, k))) = self.timers.pop() else { break };
            // (A superseded time changes nothing: not looked at mutably.)
            if self.keys.peek(&k).is_none_or(|e| e.queued_us != due) {
                continue;
            }
            let Some(e) = self.keys.peek_mut(&k) else { continue };
            e.queued_us = i64::MAX;
            if e.last_us + window < watermark {
                expired.push(k);
                continue;
            }
            if e.since_rollup > 0 && e.next_rollup_us <= watermark {
                out.extend(rollup(&k, e, "interval"));
                e.since_rollup = 0;
                while e.next_rollup_us <= watermark {
                    e.next_rollup_us += rollup_us;
                }
            }
            schedule(&mut self.timers, &k, e, window);
        }
        for k in expired {
            let e = self.keys.pop(&k).expect("present");
            out.extend(rollup(&k, &e, "expired"));
            self.counts.expired += 1;
        }
        // Deterministic order (a replay gives the same output): by time, then key.
        out[start..].sort_by(|a, b| a.last_us.cmp(&b.last_us).then_with(|| a.key.cmp(&b.key)));
    }
}

/// Adds the alert's port and sensor to the key's distinct values. Most keys only ever see
/// one of each (the default key holds the sensor), so the first one gets a list of exactly
/// one place instead of a vector's first growth to four.
fn note_distinct(e: &mut Entry, a: &AlertRecord) {
    if let Some(p) = a.dest_port {
        if e.dest_ports.len() < MAX_DISTINCT && !e.dest_ports.contains(&p) {
            e.dest_ports.reserve_exact(usize::from(e.dest_ports.is_empty()));
            e.dest_ports.push(p);
        }
    }
    if e.sensors.len() < MAX_DISTINCT && !e.sensors.contains(&a.sensor) {
        e.sensors.reserve_exact(usize::from(e.sensors.is_empty()));
        e.sensors.push(a.sensor.clone());
    }
}

fn rollup(key: &str, e: &Entry, reason: &'static str) -> Option<Rollup> {
    (e.since_rollup > 0).then(|| Rollup {
        key: key.to_string(),
        first_us: e.first_us,
        last_us: e.last_us,
        count: e.count,
        suppressed: e.since_rollup,
        signature_id: e.signature_id,
        severity: e.most_severe,
        dest_ports: {
            let mut p = e.dest_ports.clone();
            p.sort_unstable();
            p
        },
        sensors: {
            let mut v = e.sensors.clone();
            v.sort();
            v
        },
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn alert(ts: i64, sid: i64, sev: i32, port: i32) -> AlertRecord {
        AlertRecord {
            ts_us: ts * S,
            sensor: "s1".into(),
            signature_id: sid,
            severity: sev,
            src_ip: "10.0.0.1".into(),
            dest_ip: "10.0.0.2".into(),
            dest_port: Some(port),
            proto: "TCP".into(),
            ..Default::default()
        }
    }

    #[test]
    fn first_goes_on_repeats_roll_up_escalation_breaks_through() {
        let mut d = Dedup::new(DedupConfig::default());
        let mut out = Vec::new();
        assert!(matches!(d.offer(&alert(0, 1, 3, 80), &mut out), Decision::First { .. }));
        for t in 1..10 {
            assert!(matches!(d.offer(&alert(t, 1, 3, 80 + t as i32), &mut out), Decision::Suppressed { .. }));
        }
        assert!(matches!(d.offer(&alert(10, 1, 1, 80), &mut out), Decision::Escalated { count: 11, .. }));
        d.advance(59 * S, &mut out);
        assert!(out.is_empty(), "no roll-up before its interval");
        d.advance(61 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].count, out[0].suppressed, out[0].dest_ports.len(), out[0].reason), (11, 9, 10, "interval"));
        // Quiet: the key expires 300 s after its last alert; nothing pending, no roll-up.
        out.clear();
        d.advance(400 * S, &mut out);
        assert!(out.is_empty() && d.is_empty());
        assert_eq!(d.counts, DedupCounts { first: 1, escalated: 1, suppressed: 9, evicted: 0, expired: 1 });
    }

    #[test]
    fn the_cap_evicts_the_oldest_key_with_its_rollup() {
        let mut d = Dedup::new(DedupConfig { max_keys: 2, ..Default::default() });
        let mut out = Vec::new();
        d.offer(&alert(0, 1, 3, 80), &mut out);
        d.offer(&alert(1, 1, 3, 80), &mut out);
        d.offer(&alert(2, 2, 3, 80), &mut out);
        d.offer(&alert(3, 3, 3, 80), &mut out);
        assert_eq!(d.len(), 2);
        assert_eq!(d.counts.evicted, 1);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].reason, out[0].suppressed), ("evicted", 1));
    }
}
