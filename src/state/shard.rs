//! Keyed shards of the state: dedup keys and correlation groups partitioned over worker
//! threads, each shard owning its maps.
//!
//! An alert goes to the shard of its dedup key for dedup and, for each rule, to the shard
//! of its group key under that rule (the same alert can visit several shards; a group
//! lives in exactly one). The stage in front keeps one watermark, so which alerts are late
//! and when windows close does not depend on how keys hash: the output of N shards is the
//! output of one, only the order of incident changes between groups of one batch may
//! differ. With one shard everything runs on the caller's thread.
//!
//! Snapshots merge the shards into one list of keys and groups, and a restore deals them
//! out by hash again, so the shard count can change between runs.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::correlate::{CorrelationCounts, Correlator, IncidentEvent, Offered, Rule};
use super::dedup::{Decision, Dedup, DedupConfig, DedupCounts, Rollup};
use super::{key_of, AlertRecord, KeyField, LatePolicy};
use crate::event::members::Members;

/// One alert's work in one shard.
#[derive(Debug, Clone)]
struct Task {
    idx: u32,
    dedup: bool,
    rules: Vec<u16>,
}

struct Job {
    alerts: Arc<Vec<AlertRecord>>,
    late: Arc<Vec<bool>>,
    tasks: Vec<Task>,
    advance: Option<i64>,
}

enum Msg {
    Run(Job),
    Snapshot,
    /// A shard's part of a snapshot: its dedup and correlation members, as text.
    Restore(String, String),
}

#[derive(Default)]
struct ShardResult {
    decisions: Vec<(u32, Decision)>,
    offered: Vec<(u32, Offered)>,
    rollups: Vec<Rollup>,
    changes: Vec<IncidentEvent>,
    dedup: DedupCounts,
    corr: CorrelationCounts,
    snapshot: Option<(String, String)>,
}

/// What the shards made of one batch, per alert in batch order.
#[derive(Debug, Default)]
pub struct Merged {
    /// `None`: the alert stayed out of dedup (late, by policy).
    pub decisions: Vec<Option<Decision>>,
    pub offered: Vec<Offered>,
    pub rollups: Vec<Rollup>,
    pub changes: Vec<IncidentEvent>,
}

struct Shard {
    dedup: Dedup,
    corr: Correlator,
}

impl Shard {
    fn run(&mut self, job: &Job) -> ShardResult {
        let mut r = ShardResult::default();
        for t in &job.tasks {
            let a = &job.alerts[t.idx as usize];
            if t.dedup {
                r.decisions.push((t.idx, self.dedup.offer(a, &mut r.rollups)));
            }
            if !t.rules.is_empty() {
                r.offered.push((t.idx, self.corr.offer_rules(a, job.late[t.idx as usize], &t.rules, &mut r.changes)));
            }
        }
        if let Some(w) = job.advance {
            self.dedup.advance(w, &mut r.rollups);
            self.corr.advance(w, &mut r.changes);
        }
        r.dedup = self.dedup.counts;
        r.corr = self.corr.counts;
        r
    }

    /// Every alert, every rule (a single shard).
    fn run_all(&mut self, alerts: &[AlertRecord], late: &[bool], dedup_late: bool, rules: &[u16], advance: Option<i64>) -> ShardResult {
        let mut r = ShardResult { decisions: Vec::with_capacity(alerts.len()), offered: Vec::with_capacity(alerts.len()), ..Default::default() };
        for (i, a) in alerts.iter().enumerate() {
            if !late[i] || dedup_late {
                r.decisions.push((i as u32, self.dedup.offer(a, &mut r.rollups)));
            }
            if !rules.is_empty() {
                r.offered.push((i as u32, self.corr.offer_rules(a, late[i], rules, &mut r.changes)));
            }
        }
        if let Some(w) = advance {
            self.dedup.advance(w, &mut r.rollups);
            self.corr.advance(w, &mut r.changes);
        }
        r.dedup = self.dedup.counts;
        r.corr = self.corr.counts;
        r
    }

    fn handle(&mut self, msg: Msg) -> ShardResult {
        match msg {
            Msg::Run(job) => self.run(&job),
            Msg::Snapshot => ShardResult { snapshot: Some((self.dedup.snapshot(), self.corr.snapshot())), ..Default::default() },
            Msg::Restore(d, c) => {
                // Checked by the caller before it is dealt out.
                let _ = Members::parse(&d).and_then(|m| self.dedup.restore(&m));
                let _ = Members::parse(&c).and_then(|m| self.corr.restore(&m));
                ShardResult { dedup: self.dedup.counts, corr: self.corr.counts, ..Default::default() }
            }
        }
    }
}

struct Remote {
    tx: Option<Sender<Msg>>,
    rx: Receiver<ShardResult>,
    thread: Option<JoinHandle<()>>,
}

pub struct Shards {
    /// Shard 0 runs on the caller's thread; the others on their own.
    local: Shard,
    remote: Vec<Remote>,
    dedup_key: Vec<KeyField>,
    /// Per rule, the fields that place its groups; `None`: all on shard 0 (rules whose
    /// groups one key cannot place: chained rules and those with per-rule aliases).
    rule_keys: Vec<Option<Vec<KeyField>>>,
    late_policy: LatePolicy,
    /// Latest counts of every shard.
    dedup_counts: Vec<DedupCounts>,
    corr_counts: Vec<CorrelationCounts>,
}

/// The shard of a key.
fn shard_of(key: &str, n: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % n as u64) as usize
}

impl Shards {
    pub fn new(n: usize, dedup: &DedupConfig, rules: &[Rule], max_groups: usize, late_policy: LatePolicy) -> Self {
        let n = n.max(1);
        let make = || Shard {
            dedup: Dedup::new(DedupConfig { max_keys: dedup.max_keys.div_ceil(n).max(1), ..dedup.clone() }),
            corr: Correlator::new(rules.to_vec(), max_groups.div_ceil(n).max(1)),
        };
        let local = make();
        let remote = (1..n)
            .map(|i| {
                let mut shard = make();
                let (tx, jobs) = bounded::<Msg>(2);
                let (out, rx) = bounded::<ShardResult>(2);
                let thread = std::thread::Builder::new()
                    .name(format!("state-{i}"))
                    .spawn(move || {
                        for m in jobs {
                            if out.send(shard.handle(m)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn state shard");
                Remote { tx: Some(tx), rx, thread: Some(thread) }
            })
            .collect();
        Self {
            local,
            remote,
            dedup_key: dedup.key.clone(),
            rule_keys: rules
                .iter()
                .map(|r| {
                    let referenced = rules.iter().any(|o| o.selectors.iter().any(|s| s.rule.as_ref() == Some(&r.name)));
                    (!r.chained() && !referenced).then(|| r.group_by.clone())
                })
                .collect(),
            late_policy,
            dedup_counts: vec![DedupCounts::default(); n],
            corr_counts: vec![CorrelationCounts::default(); n],
        }
    }

    pub fn len(&self) -> usize {
        1 + self.remote.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Runs a batch's alerts (`late[i]` for each) and, with `advance`, moves every shard's
    /// event time to that watermark.
    pub fn run(&mut self, alerts: Arc<Vec<AlertRecord>>, late: Arc<Vec<bool>>, advance: Option<i64>) -> Merged {
        let n = self.len();
        let count = alerts.len();
        let dedup_late = self.late_policy == LatePolicy::Reevaluate;
        let all_rules: Vec<u16> = (0..self.rule_keys.len() as u16).collect();
        let results = if n == 1 {
            // One shard: everything here, no routing.
            vec![self.local.run_all(&alerts, &late, dedup_late, &all_rules, advance)]
        } else {
            self.run_routed(alerts, late, dedup_late, advance)
        };
        let mut m = Merged { decisions: vec![None; count], offered: vec![Offered::default(); count], ..Default::default() };
        for (s, r) in results.into_iter().enumerate() {
            self.dedup_counts[s] = r.dedup;
            self.corr_counts[s] = r.corr;
            for (i, d) in r.decisions {
                m.decisions[i as usize] = Some(d);
            }
            for (i, o) in r.offered {
                let slot = &mut m.offered[i as usize];
                slot.joined.extend(o.joined);
                slot.late_output |= o.late_output;
            }
            m.rollups.extend(r.rollups);
            m.changes.extend(r.changes);
        }
        if n > 1 {
            // Rule order, as one shard would list them.
            for o in &mut m.offered {
                o.joined.sort_by_key(|(r, _)| *r);
            }
        }
        m
    }

    /// Each alert to the shard of its dedup key and, per rule, of its group key; every
    /// shard runs its part, the results in shard order.
    fn run_routed(&mut self, alerts: Arc<Vec<AlertRecord>>, late: Arc<Vec<bool>>, dedup_late: bool, advance: Option<i64>) -> Vec<ShardResult> {
        let (n, count) = (self.len(), alerts.len());
        let mut tasks: Vec<Vec<Task>> = vec![Vec::with_capacity(count); n];
        for (i, a) in alerts.iter().enumerate() {
            let dedup = !late[i] || dedup_late;
            let mut per: Vec<Option<Task>> = vec![None; n];
            if dedup {
                let s = shard_of(&key_of(&self.dedup_key, a), n);
                per[s].get_or_insert_with(|| Task { idx: i as u32, dedup: false, rules: Vec::new() }).dedup = true;
            }
            for (r, keys) in self.rule_keys.iter().enumerate() {
                let s = keys.as_ref().map_or(0, |k| shard_of(&key_of(k, a), n));
                per[s].get_or_insert_with(|| Task { idx: i as u32, dedup: false, rules: Vec::new() }).rules.push(r as u16);
            }
            for (s, t) in per.into_iter().enumerate() {
                if let Some(t) = t {
                    tasks[s].push(t);
                }
            }
        }
        let mut tasks = tasks.into_iter();
        let local_tasks = tasks.next().unwrap_or_default();
        for (r, t) in self.remote.iter().zip(tasks) {
            if let Some(tx) = &r.tx {
                let _ = tx.send(Msg::Run(Job { alerts: alerts.clone(), late: late.clone(), tasks: t, advance }));
            }
        }
        let mut results = vec![self.local.run(&Job { alerts, late, tasks: local_tasks, advance })];
        results.extend(self.remote.iter().map(|r| r.rx.recv().unwrap_or_default()));
        results
    }

    pub fn dedup_counts(&self) -> DedupCounts {
        self.dedup_counts.iter().fold(DedupCounts::default(), |a, c| DedupCounts {
            first: a.first + c.first,
            escalated: a.escalated + c.escalated,
            suppressed: a.suppressed + c.suppressed,
            evicted: a.evicted + c.evicted,
            expired: a.expired + c.expired,
        })
    }

    pub fn correlation_counts(&self) -> CorrelationCounts {
        self.corr_counts.iter().fold(CorrelationCounts::default(), |a, c| CorrelationCounts {
            opened: a.opened + c.opened,
            closed: a.closed + c.closed,
            groups_evicted: a.groups_evicted + c.groups_evicted,
            late_skipped: a.late_skipped + c.late_skipped,
            late_reevaluated: a.late_reevaluated + c.late_reevaluated,
            corrected: a.corrected + c.corrected,
        })
    }

    /// Writes `"dedup":…,"correlation":…` (the members of the stage's snapshot object).
    pub fn snapshot_to(&mut self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        if self.remote.is_empty() {
            // One shard: serialized straight into the file, no copy in memory.
            w.write_all(b"\"dedup\":")?;
            self.local.dedup.snapshot_to(w)?;
            w.write_all(b",\"correlation\":")?;
            return self.local.corr.snapshot_to(w);
        }
        let (d, c) = self.snapshot();
        write!(w, "\"dedup\":{d},\"correlation\":{c}")
    }

    /// Tracks what changes from now on, for deltas (the whole state was just saved). One
    /// shard only: with several, every snapshot is whole.
    pub fn track(&mut self) {
        if self.remote.is_empty() {
            self.local.dedup.track();
            self.local.corr.track();
        }
    }

    /// Whether [`Shards::take_changes`] can take a delta (one shard).
    pub fn writes_changes(&self) -> bool {
        self.remote.is_empty()
    }

    /// `"dedup":…,"correlation":…` as deltas (one shard; see `event::delta`), copied out
    /// to be written later.
    pub fn take_changes(&mut self) -> std::io::Result<crate::event::delta::Part> {
        if !self.remote.is_empty() {
            return Err(std::io::Error::other("state deltas need one shard"));
        }
        let (d, c) = (self.local.dedup.take_changes(), self.local.corr.take_changes());
        Ok(Box::new(move |w: &mut dyn std::io::Write| {
            w.write_all(b"\"dedup\":")?;
            d(w)?;
            w.write_all(b",\"correlation\":")?;
            c(w)
        }))
    }

    /// Copies up to `budget` entries of the snapshot capture under way (see
    /// `event::delta`); whether it is finished.
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        self.local.dedup.capture_step(budget) && self.local.corr.capture_step(budget)
    }

    /// Applies a delta of [`Shards::take_changes`] (one shard).
    pub fn apply_changes(&mut self, dedup: &Members, corr: &Members) -> Result<(), serde_json::Error> {
        if !self.remote.is_empty() {
            // Deltas were taken with one shard: applied to the whole state in one place,
            // then dealt out again (a start with a new shard count, so rare).
            let (d, c) = self.snapshot();
            let mut one = Shard { dedup: self.local.dedup.empty_like(), corr: self.local.corr.empty_like() };
            one.dedup.restore(&Members::parse(&d)?)?;
            one.corr.restore(&Members::parse(&c)?)?;
            one.dedup.apply_changes(dedup)?;
            one.corr.apply_changes(corr)?;
            let (d, c) = (one.dedup.snapshot(), one.corr.snapshot());
            return self.restore(&Members::parse(&d)?, &Members::parse(&c)?);
        }
        self.local.dedup.apply_changes(dedup)?;
        self.local.corr.apply_changes(corr)?;
        self.dedup_counts[0] = self.local.dedup.counts;
        self.corr_counts[0] = self.local.corr.counts;
        Ok(())
    }

    /// Every shard's keys and groups as one (dedup, correlation) pair of snapshots (JSON
    /// text).
    pub fn snapshot(&mut self) -> (String, String) {
        let local = (self.local.dedup.snapshot(), self.local.corr.snapshot());
        if self.remote.is_empty() {
            return local;
        }
        let mut parts = vec![local];
        for r in &self.remote {
            if let Some(tx) = &r.tx {
                let _ = tx.send(Msg::Snapshot);
                parts.push(r.rx.recv().ok().and_then(|x| x.snapshot).unwrap_or_default());
            }
        }
        // Several shards: merged as JSON values (shards run with many cores, where this
        // costs less than it does here).
        let parts: Vec<Value> = parts
            .iter()
            .map(|(d, c)| json!({ "dedup": serde_json::from_str::<Value>(d).unwrap_or(Value::Null), "correlation": serde_json::from_str::<Value>(c).unwrap_or(Value::Null) }))
            .collect();
        let concat =
            |part: &str, list: &str| -> Value { Value::Array(parts.iter().flat_map(|p| p[part][list].as_array().cloned().unwrap_or_default()).collect()) };
        let sum = |part: &str, i: usize| -> u64 { parts.iter().map(|p| p[part]["counts"][i].as_u64().unwrap_or(0)).sum() };
        let mut dcounts = serde_json::Map::new();
        for name in ["first", "escalated", "suppressed", "evicted", "expired"] {
            dcounts.insert(name.into(), parts.iter().map(|p| p["dedup"]["counts"][name].as_u64().unwrap_or(0)).sum::<u64>().into());
        }
        let dedup = json!({ "keys": concat("dedup", "keys"), "counts": dcounts });
        let corr = json!({ "groups": concat("correlation", "groups"), "closed": concat("correlation", "closed"), "counts": (0..6).map(|i| sum("correlation", i)).collect::<Vec<_>>() });
        (dedup.to_string(), corr.to_string())
    }

    /// Deals a snapshot's keys and groups out to the shards by hash (each entry as the
    /// text it was written as: only its key is read here).
    pub fn restore(&mut self, dedup: &Members, corr: &Members) -> Result<(), serde_json::Error> {
        let n = self.len();
        if n == 1 {
            self.local.dedup.restore(dedup)?;
            self.local.corr.restore(corr)?;
            self.dedup_counts[0] = self.local.dedup.counts;
            self.corr_counts[0] = self.local.corr.counts;
            return Ok(());
        }
        let deal = |list: &Members<'_>, name: &str, key_at: usize| -> Result<Vec<String>, serde_json::Error> {
            let mut out = vec![String::from("["); n];
            for e in list.get::<Option<Vec<&RawValue>>>(name)?.unwrap_or_default() {
                let fields: Vec<&RawValue> = serde_json::from_str(e.get())?;
                let key: String = fields.get(key_at).map_or(Ok(String::new()), |k| serde_json::from_str(k.get()))?;
                let list = &mut out[shard_of(&key, n)];
                if list.len() > 1 {
                    list.push(',');
                }
                list.push_str(e.get());
            }
            out.iter_mut().for_each(|l| l.push(']'));
            Ok(out)
        };
        let keys = deal(dedup, "keys", 0)?;
        let groups = deal(corr, "groups", 1)?;
        let closed = deal(corr, "closed", 1)?;
        let zero_d = serde_json::to_string(&DedupCounts::default())?;
        let counts = |m: &Members<'_>| m.raw("counts").map_or("null", RawValue::get).to_string();
        let mut parts = Vec::new();
        for s in 0..n {
            // The counts go to shard 0 (they are summed).
            let (dc, cc) = if s == 0 { (counts(dedup), counts(corr)) } else { (zero_d.clone(), "[0,0,0,0,0,0]".to_string()) };
            parts.push((format!("{{\"keys\":{},\"counts\":{dc}}}", keys[s]), format!("{{\"groups\":{},\"closed\":{},\"counts\":{cc}}}", groups[s], closed[s])));
        }
        // Check every part before any shard takes one.
        for (d, c) in &parts {
            Dedup::new(DedupConfig::default()).restore(&Members::parse(d)?)?;
            Members::parse(c)?;
        }
        let mut parts = parts.into_iter();
        let (d, c) = parts.next().unwrap_or_default();
        self.local.dedup.restore(&Members::parse(&d)?)?;
        self.local.corr.restore(&Members::parse(&c)?)?;
        self.dedup_counts[0] = self.local.dedup.counts;
        self.corr_counts[0] = self.local.corr.counts;
        for (i, (r, p)) in self.remote.iter().zip(parts).enumerate() {
            if let Some(tx) = &r.tx {
                let _ = tx.send(Msg::Restore(p.0, p.1));
                if let Ok(res) = r.rx.recv() {
                    self.dedup_counts[i + 1] = res.dedup;
                    self.corr_counts[i + 1] = res.corr;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for r in &mut self.remote {
            r.tx = None;
            while r.rx.try_recv().is_ok() {}
            if let Some(t) = r.thread.take() {
                let _ = t.join();
            }
        }
    }
}
