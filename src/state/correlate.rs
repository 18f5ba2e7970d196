//! Correlation rules over alerts, in sliding event-time windows, opening incidents.
//!
//! A rule looks at the alerts its selectors match (all alerts when it names none), grouped
//! by `group_by`, within `timespan` of each other:
//! * `event_count` — at least `gte` alerts;
//! * `value_count` — at least `gte` distinct values of `field` (one source hitting many
//!   hosts or ports);
//! * `temporal` — every selector matched at least once, in any order;
//! * `temporal_ordered` — the selectors matched in their order (scan → exploit → C2).
//!
//! When a rule fires for a group, an incident opens with an id derived from the rule, the
//! group key and the window's first alert time (a replay or restart derives the same id);
//! later alerts of the group join it (an `updated` change at most once a minute of event
//! time); it closes once the watermark passes its last alert + `timespan`. Groups are capped (`max_groups`, oldest evicted and counted).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use lru::LruCache;

use super::{key_of, AlertRecord, KeyField, LatePolicy};

/// Which alerts a rule looks at. Every criterion given must hold.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub name: String,
    pub signature_ids: Vec<i64>,
    pub categories: Vec<String>,
    /// Severity at most this (1 is the most severe).
    pub max_severity: Option<i32>,
    pub dest_ports: Vec<i32>,
}

impl Selector {
    pub fn matches(&self, a: &AlertRecord) -> bool {
        (self.signature_ids.is_empty() || self.signature_ids.contains(&a.signature_id))
            && (self.categories.is_empty() || self.categories.iter().any(|c| c == &a.category))
            && self.max_severity.is_none_or(|m| a.severity <= m)
            && (self.dest_ports.is_empty() || a.dest_port.is_some_and(|p| self.dest_ports.contains(&p)))
    }
}

#[derive(Debug, Clone)]
pub enum Condition {
    EventCount { gte: usize },
    ValueCount { field: KeyField, gte: usize },
    Temporal,
    TemporalOrdered,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub selectors: Vec<Selector>,
    pub group_by: Vec<KeyField>,
    pub timespan_us: i64,
    pub condition: Condition,
    /// What a late alert does to this rule.
    pub late: LatePolicy,
}

pub use crate::event::alert::{IncidentEvent, Status, MAX_MEMBERS};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Incident {
    id: String,
    first_us: i64,
    last_us: i64,
    alert_count: u64,
    /// Alerts that joined since the last change was emitted (at most [`MAX_MEMBERS`]).
    #[serde(default)]
    joined: Vec<String>,
    /// Event time of the last emitted change.
    #[serde(default)]
    emitted_us: i64,
}

/// An incident emits `updated` at most once per this much event time (the alerts that
/// joined meanwhile go with it); the close carries the rest.
pub const UPDATE_INTERVAL_US: i64 = 60_000_000;

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Group {
    /// (time, selector bit mask, field value for value_count, alert id), by time. Kept
    /// only until the rule fires (then the incident counts), at most [`MAX_WINDOW`].
    window: VecDeque<(i64, u64, String, String)>,
    /// Alerts per distinct value in the window (value_count).
    values: std::collections::HashMap<String, u32>,
    /// Alerts per selector in the window (temporal).
    per_selector: Vec<u32>,
    incident: Option<Incident>,
    newest_us: i64,
    /// Due time of this group's live entry in the timer queue (`i64::MAX`: none).
    #[serde(skip, default = "never")]
    queued_us: i64,
}

fn never() -> i64 {
    i64::MAX
}

/// Alerts a group's window holds before the rule fires; older ones are dropped first.
pub const MAX_WINDOW: usize = 10_000;

impl Group {
    fn add(&mut self, e: (i64, u64, String, String), pos: usize) {
        // Only value_count rules carry a value; the others allocate nothing here.
        if !e.2.is_empty() {
            *self.values.entry(e.2.clone()).or_insert(0) += 1;
        }
        for (i, c) in self.per_selector.iter_mut().enumerate() {
            *c += (e.1 >> i & 1) as u32;
        }
        self.window.insert(pos, e);
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.window.pop_front() {
            if e.2.is_empty() {
            } else if let Some(c) = self.values.get_mut(&e.2) {
                *c -= 1;
                if *c == 0 {
                    self.values.remove(&e.2);
                }
            }
            for (i, c) in self.per_selector.iter_mut().enumerate() {
                *c -= (e.1 >> i & 1) as u32;
            }
        }
    }

    fn clear_window(&mut self) {
        self.window.clear();
        self.values.clear();
        self.per_selector.iter_mut().for_each(|c| *c = 0);
    }
}

/// Deterministic incident id: 16 hex digits of xxh3 over rule, group key and window start.
pub fn incident_id(rule: &str, group_key: &str, window_start_us: i64) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(rule.as_bytes());
    h.update(&[0]);
    h.update(group_key.as_bytes());
    h.update(&[0]);
    h.update(&window_start_us.to_le_bytes());
    format!("{:016x}", h.digest())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationCounts {
    pub opened: u64,
    pub closed: u64,
    pub groups_evicted: u64,
    /// Late alerts kept out of a rule (policy `drop` or `late_output`), per rule match.
    pub late_skipped: u64,
    /// Late alerts re-evaluated by a rule.
    pub late_reevaluated: u64,
    /// `corrected` changes of closed incidents.
    pub corrected: u64,
}

/// A closed incident, remembered so a re-evaluated late alert can correct it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Closed {
    id: String,
    first_us: i64,
    last_us: i64,
    alert_count: u64,
}

/// How long after its last alert a closed incident can still be corrected (event time).
pub const CORRECTABLE_US: i64 = 86_400_000_000;

/// What a rule set did with one alert.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Offered {
    /// Incidents the alert belongs to, with the index of their rule.
    pub joined: Vec<(usize, String)>,
    /// A late alert that a rule with the `late_output` policy kept out.
    pub late_output: bool,
}

pub struct Correlator {
    rules: Vec<Rule>,
    /// Groups in order of their last alert (least recent evicted first when full).
    groups: LruCache<(usize, String), Group>,
    /// Recently closed incidents by group (at most `max_groups`).
    closed: LruCache<(usize, String), Closed>,
    max_groups: usize,
    /// (due, rule, group key), earliest first: when groups can close, so an advance
    /// touches only those. One live entry per group (its `queued_us`); entries of removed
    /// groups or superseded times are skipped when they come up.
    timers: BinaryHeap<Reverse<(i64, usize, String)>>,
    pub counts: CorrelationCounts,
}

impl Correlator {
    pub fn new(rules: Vec<Rule>, max_groups: usize) -> Self {
        Self {
            rules,
            groups: LruCache::unbounded(),
            closed: LruCache::unbounded(),
            max_groups,
            timers: BinaryHeap::new(),
            counts: CorrelationCounts::default(),
        }
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Takes one on-time alert; incident changes go to `out`. Returns the ids of the
    /// incidents the alert belongs to.
    pub fn offer(&mut self, a: &AlertRecord, out: &mut Vec<IncidentEvent>) -> Vec<String> {
        self.offer_at(a, false, out).joined.into_iter().map(|(_, id)| id).collect()
    }

    /// Takes one alert, `late` when it is older than the watermark: each rule applies its
    /// [`LatePolicy`].
    pub fn offer_at(&mut self, a: &AlertRecord, late: bool, out: &mut Vec<IncidentEvent>) -> Offered {
        let all: Vec<u16> = (0..self.rules.len() as u16).collect();
        self.offer_rules(a, late, &all, out)
    }

    /// [`Correlator::offer_at`] for the rules of index `rules` only (a shard owns the
    /// alert's group under these).
    pub fn offer_rules(&mut self, a: &AlertRecord, late: bool, rules: &[u16], out: &mut Vec<IncidentEvent>) -> Offered {
        let mut res = Offered::default();
        let joined = &mut res.joined;
        for ri in rules.iter().map(|&r| r as usize) {
            let rule = &self.rules[ri];
            let mask: u64 =
                if rule.selectors.is_empty() { 1 } else { rule.selectors.iter().enumerate().filter(|(_, s)| s.matches(a)).fold(0, |m, (i, _)| m | 1 << i) };
            if mask == 0 {
                continue;
            }
            if late {
                match rule.late {
                    LatePolicy::Drop | LatePolicy::LateOutput => {
                        res.late_output |= rule.late == LatePolicy::LateOutput;
                        self.counts.late_skipped += 1;
                        continue;
                    }
                    LatePolicy::Reevaluate => self.counts.late_reevaluated += 1,
                }
            }
            let key = key_of(&rule.group_by, a);
            if late && self.groups.peek(&(ri, key.clone())).is_none_or(|g| g.incident.is_none()) {
                // The incident this alert would have joined may have closed already.
                let span = rule.timespan_us;
                if let Some(c) = self.closed.get_mut(&(ri, key.clone())).filter(|c| a.ts_us >= c.first_us - span && a.ts_us <= c.last_us + span) {
                    c.alert_count += 1;
                    c.first_us = c.first_us.min(a.ts_us);
                    c.last_us = c.last_us.max(a.ts_us);
                    out.push(IncidentEvent {
                        id: c.id.clone(),
                        rule: rule.name.clone(),
                        group_key: key,
                        status: Status::Corrected,
                        first_us: c.first_us,
                        last_us: c.last_us,
                        alert_count: c.alert_count,
                        alert_ids: vec![a.alert_id.clone()],
                    });
                    joined.push((ri, c.id.clone()));
                    self.counts.corrected += 1;
                    continue;
                }
            }
            let value = match rule.condition {
                Condition::ValueCount { field, .. } => key_of(&[field], a),
                _ => String::new(),
            };
            if !self.groups.contains(&(ri, key.clone())) && self.groups.len() >= self.max_groups {
                self.evict_oldest(out);
            }
            let rule = &self.rules[ri];
            let g = self.groups.get_or_insert_mut((ri, key.clone()), || Group {
                per_selector: vec![0; rule.selectors.len()],
                queued_us: i64::MAX,
                ..Default::default()
            });
            g.newest_us = g.newest_us.max(a.ts_us);
            if g.queued_us == i64::MAX {
                // A new group: it can close once the watermark is past newest + timespan
                // (later alerts only move that on; the entry is renewed when it comes up).
                g.queued_us = g.newest_us.saturating_add(rule.timespan_us).saturating_add(1);
                self.timers.push(Reverse((g.queued_us, ri, key.clone())));
            }
            if g.incident.is_none() {
                // Insert in time order (events may arrive out of order within the lateness).
                let pos = g.window.iter().rposition(|e| e.0 <= a.ts_us).map_or(0, |p| p + 1);
                g.add((a.ts_us, mask, value, a.alert_id.clone()), pos);
                let horizon = g.newest_us - rule.timespan_us;
                while g.window.front().is_some_and(|e| e.0 < horizon) || g.window.len() > MAX_WINDOW {
                    g.pop_front();
                }
            }
            match &mut g.incident {
                Some(inc) => {
                    inc.alert_count += 1;
                    inc.last_us = inc.last_us.max(a.ts_us);
                    inc.first_us = inc.first_us.min(a.ts_us);
                    if inc.joined.len() < MAX_MEMBERS {
                        inc.joined.push(a.alert_id.clone());
                    }
                    if a.ts_us - inc.emitted_us >= UPDATE_INTERVAL_US {
                        inc.emitted_us = a.ts_us;
                        out.push(IncidentEvent {
                            id: inc.id.clone(),
                            rule: rule.name.clone(),
                            group_key: key.clone(),
                            status: Status::Updated,
                            first_us: inc.first_us,
                            last_us: inc.last_us,
                            alert_count: inc.alert_count,
                            alert_ids: std::mem::take(&mut inc.joined),
                        });
                    }
                    joined.push((ri, inc.id.clone()));
                }
                None => {
                    if fires(rule, g) {
                        let start = g.window.front().map_or(a.ts_us, |e| e.0);
                        let id = incident_id(&rule.name, &key, start);
                        let inc = Incident {
                            id: id.clone(),
                            first_us: start,
                            last_us: g.newest_us,
                            alert_count: g.window.len() as u64,
                            joined: Vec::new(),
                            emitted_us: a.ts_us,
                        };
                        let members = g.window.iter().take(MAX_MEMBERS).map(|e| e.3.clone()).collect();
                        // The incident counts from here on; the window is no longer needed.
                        g.clear_window();
                        out.push(IncidentEvent {
                            id: id.clone(),
                            rule: rule.name.clone(),
                            group_key: key.clone(),
                            status: Status::Open,
                            first_us: inc.first_us,
                            last_us: inc.last_us,
                            alert_count: inc.alert_count,
                            alert_ids: members,
                        });
                        g.incident = Some(inc);
                        self.counts.opened += 1;
                        joined.push((ri, id));
                    }
                }
            }
        }
        res
    }

    /// Evicts the group whose last alert is the least recent (O(1)).
    fn evict_oldest(&mut self, out: &mut Vec<IncidentEvent>) {
        if let Some((k, g)) = self.groups.pop_lru() {
            self.close(&k, g, out);
            self.counts.groups_evicted += 1;
        }
    }

    fn close(&mut self, k: &(usize, String), g: Group, out: &mut Vec<IncidentEvent>) {
        if let Some(inc) = g.incident {
            if self.closed.len() >= self.max_groups {
                self.closed.pop_lru();
            }
            self.closed.put(k.clone(), Closed { id: inc.id.clone(), first_us: inc.first_us, last_us: inc.last_us, alert_count: inc.alert_count });
            out.push(IncidentEvent {
                id: inc.id,
                rule: self.rules[k.0].name.clone(),
                group_key: k.1.clone(),
                status: Status::Closed,
                first_us: inc.first_us,
                last_us: inc.last_us,
                alert_count: inc.alert_count,
                alert_ids: inc.joined,
            });
            self.counts.closed += 1;
        }
    }

    /// The groups as (rule name, group key, group) for a snapshot.
    pub fn snapshot(&self) -> String {
        super::snapshot_text(|w| self.snapshot_to(w))
    }

    /// [`Correlator::snapshot`] written to `w` as it is serialized.
    pub fn snapshot_to(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        #[derive(serde::Serialize)]
        struct Snap<'a> {
            groups: Vec<(&'a str, &'a str, &'a Group)>,
            closed: Vec<(&'a str, &'a str, &'a Closed)>,
            counts: [u64; 6],
        }
        // Least recent first, so a restore rebuilds the same eviction order.
        let groups = self.groups.iter().rev().map(|((r, k), g)| (self.rules[*r].name.as_str(), k.as_str(), g)).collect();
        let closed = self.closed.iter().rev().map(|((r, k), c)| (self.rules[*r].name.as_str(), k.as_str(), c)).collect();
        let c = &self.counts;
        serde_json::to_writer(w, &Snap { groups, closed, counts: [c.opened, c.closed, c.groups_evicted, c.late_skipped, c.late_reevaluated, c.corrected] })
            .map_err(std::io::Error::other)
    }

    /// Restores groups from [`Correlator::snapshot`]; groups of rules no longer configured
    /// are dropped (their open incidents close without a close record).
    pub fn restore(&mut self, v: &serde_json::Value) -> Result<(), serde_json::Error> {
        let groups: Vec<(String, String, Group)> = serde_json::from_value(v["groups"].clone())?;
        for (rule, key, mut g) in groups {
            if let Some(ri) = self.rules.iter().position(|r| r.name == rule) {
                g.queued_us = g.newest_us.saturating_add(self.rules[ri].timespan_us).saturating_add(1);
                self.timers.push(Reverse((g.queued_us, ri, key.clone())));
                self.groups.put((ri, key), g);
            }
        }
        if !v["closed"].is_null() {
            let closed: Vec<(String, String, Closed)> = serde_json::from_value(v["closed"].clone())?;
            for (rule, key, c) in closed {
                if let Some(ri) = self.rules.iter().position(|r| r.name == rule) {
                    self.closed.put((ri, key), c);
                }
            }
        }
        let n: Vec<u64> = v["counts"].as_array().map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect()).unwrap_or_default();
        let at = |i: usize| n.get(i).copied().unwrap_or(0);
        self.counts = CorrelationCounts { opened: at(0), closed: at(1), groups_evicted: at(2), late_skipped: at(3), late_reevaluated: at(4), corrected: at(5) };
        Ok(())
    }

    /// Moves event time to `watermark`: incidents quiet for their rule's timespan close,
    /// and groups with nothing left in their window are dropped.
    pub fn advance(&mut self, watermark: i64, out: &mut Vec<IncidentEvent>) {
        let mut done: Vec<(usize, String)> = Vec::new();
        while self.timers.peek().is_some_and(|Reverse((due, _, _))| *due <= watermark) {
            let Some(Reverse((due, ri, key))) = self.timers.pop() else { break };
            let k = (ri, key);
            let span = self.rules[ri].timespan_us;
            let Some(g) = self.groups.peek_mut(&k) else { continue };
            if g.queued_us != due {
                continue;
            }
            if g.newest_us + span < watermark {
                g.queued_us = i64::MAX;
                done.push(k);
            } else {
                g.queued_us = g.newest_us.saturating_add(span).saturating_add(1);
                self.timers.push(Reverse((g.queued_us, k.0, k.1)));
            }
        }
        done.sort();
        for k in done {
            let g = self.groups.pop(&k).expect("present");
            self.close(&k, g, out);
        }
        while self.closed.peek_lru().is_some_and(|(_, c)| c.last_us.saturating_add(CORRECTABLE_US) < watermark) {
            self.closed.pop_lru();
        }
    }
}

fn fires(rule: &Rule, g: &Group) -> bool {
    match &rule.condition {
        Condition::EventCount { gte } => g.window.len() >= *gte,
        Condition::ValueCount { gte, .. } => g.values.len() >= *gte,
        Condition::Temporal => !g.per_selector.is_empty() && g.per_selector.iter().all(|&c| c > 0),
        Condition::TemporalOrdered => {
            // Only when every selector is present: then greedily the earliest match of
            // each selector after the previous one.
            if g.per_selector.is_empty() || g.per_selector.contains(&0) {
                return false;
            }
            let mut next = 0;
            for e in &g.window {
                if next < rule.selectors.len() && e.1 & (1 << next) != 0 {
                    next += 1;
                }
            }
            next == rule.selectors.len().max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn a(ts: i64, sid: i64, src: &str, dst: &str, port: i32) -> AlertRecord {
        AlertRecord {
            ts_us: ts * S,
            signature_id: sid,
            severity: 2,
            src_ip: src.into(),
            dest_ip: dst.into(),
            dest_port: Some(port),
            proto: "TCP".into(),
            ..Default::default()
        }
    }

    fn sel(name: &str, sids: &[i64]) -> Selector {
        Selector { name: name.into(), signature_ids: sids.to_vec(), ..Default::default() }
    }

    #[test]
    fn value_count_fires_on_a_scan_and_not_on_a_near_miss() {
        let rule = Rule {
            name: "scan".into(),
            selectors: vec![],
            group_by: vec![KeyField::SrcIp],
            timespan_us: 60 * S,
            condition: Condition::ValueCount { field: KeyField::DestPort, gte: 5 },
            late: Default::default(),
        };
        let mut c = Correlator::new(vec![rule], 1000);
        let mut out = Vec::new();
        // Near miss: 5 ports, but spread over more than 60 s.
        for (i, port) in [22, 23, 80, 443, 8080].iter().enumerate() {
            c.offer(&a(i as i64 * 20, 1, "10.0.0.9", "10.0.0.1", *port), &mut out);
        }
        assert!(out.is_empty());
        // 5 distinct ports within 60 s from another source: fires once; the next alert
        // within the minute joins without an update of its own.
        for (i, port) in [22, 23, 80, 443, 8080, 8081].iter().enumerate() {
            c.offer(&a(1000 + i as i64, 1, "10.0.0.7", "10.0.0.1", *port), &mut out);
        }
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].status, out[0].alert_ids.len()), (Status::Open, 5));
        let id = out[0].id.clone();
        assert_eq!(id, incident_id("scan", "10.0.0.7", 1000 * S));
        // A minute later an alert brings an update with what joined since the open.
        out.clear();
        c.offer(&a(1070, 1, "10.0.0.7", "10.0.0.1", 9999), &mut out);
        assert_eq!((out[0].status, out[0].alert_count, out[0].alert_ids.len()), (Status::Updated, 7, 2));
        out.clear();
        c.advance(1200 * S, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].status, out[0].alert_count, out[0].id.as_str(), out[0].alert_ids.len()), (Status::Closed, 7, id.as_str(), 0));
    }

    #[test]
    fn temporal_ordered_needs_the_order_temporal_does_not() {
        let sels = vec![sel("scan", &[1]), sel("exploit", &[2]), sel("c2", &[3])];
        let ordered = Rule {
            name: "kill-chain".into(),
            selectors: sels.clone(),
            group_by: vec![KeyField::DestIp],
            timespan_us: 600 * S,
            condition: Condition::TemporalOrdered,
            late: Default::default(),
        };
        let any = Rule {
            name: "all-three".into(),
            selectors: sels,
            group_by: vec![KeyField::DestIp],
            timespan_us: 600 * S,
            condition: Condition::Temporal,
            late: Default::default(),
        };
        let mut c = Correlator::new(vec![ordered, any], 1000);
        let mut out = Vec::new();
        // Wrong order on host A: c2, exploit, scan.
        for (t, sid) in [(0, 3), (10, 2), (20, 1)] {
            c.offer(&a(t, sid, "1.1.1.1", "A", 80), &mut out);
        }
        assert_eq!(out.iter().map(|e| e.rule.as_str()).collect::<Vec<_>>(), ["all-three"]);
        out.clear();
        // Right order on host B.
        for (t, sid) in [(0, 1), (10, 2), (20, 3)] {
            c.offer(&a(t, sid, "1.1.1.1", "B", 80), &mut out);
        }
        let mut rules: Vec<_> = out.iter().filter(|e| e.status == Status::Open).map(|e| e.rule.as_str()).collect();
        rules.sort();
        assert_eq!(rules, ["all-three", "kill-chain"]);
    }

    #[test]
    fn event_count_with_out_of_order_alerts_and_group_cap() {
        let rule = Rule {
            name: "burst".into(),
            selectors: vec![sel("s", &[7])],
            group_by: vec![KeyField::SrcIp],
            timespan_us: 10 * S,
            condition: Condition::EventCount { gte: 3 },
            late: Default::default(),
        };
        let mut c = Correlator::new(vec![rule], 2);
        let mut out = Vec::new();
        c.offer(&a(5, 7, "x", "y", 1), &mut out);
        c.offer(&a(3, 7, "x", "y", 1), &mut out);
        c.offer(&a(9, 8, "x", "y", 1), &mut out); // not selected
        assert!(out.is_empty());
        c.offer(&a(4, 7, "x", "y", 1), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].first_us, 3 * S, "window starts at the earliest alert");
        // Two more groups with a cap of 2: the oldest group (with its incident) goes.
        out.clear();
        c.offer(&a(100, 7, "p", "y", 1), &mut out);
        c.offer(&a(101, 7, "q", "y", 1), &mut out);
        assert_eq!(c.groups(), 2);
        assert_eq!(c.counts.groups_evicted, 1);
        assert_eq!(out.iter().filter(|e| e.status == Status::Closed).count(), 1);
    }
}
