//! Correlation rules over alerts, in sliding event-time windows, opening incidents.
//!
//! A rule looks at the alerts its selectors match (all alerts when it names none), grouped
//! by `group_by` (per selector, when aliases name different fields), within `timespan` of
//! each other, and measures them ([`Measure`]): how many alerts, distinct values, selectors
//! (in any order or in theirs), or the sum, mean or share of a field. The rule matches when
//! the measure is in its [`Range`]:
//! * a range without an upper bound on a measure that only grows is judged as each alert
//!   arrives: the rule fires the moment the sliding window reaches it;
//! * a range with an upper bound (`lt`, `lte`, `eq`, `neq`, ranges) and any average are
//!   judged once a window is complete: windows start at a group's first alert and last
//!   `timespan`; the next starts at the first alert after it. Such an incident opens and
//!   closes at once, listing the window's alerts.
//!
//! A selector may name another rule instead of matching alerts: each time that rule
//! matches, its match is an event of this one (with the alert that completed it as its
//! fields and the inner window's alerts as its members), so correlations chain. A rule
//! that only feeds others (`emit = false`) opens no incidents of its own: after it
//! matches, its window starts afresh.
//!
//! When a rule fires for a group, an incident opens with an id derived from the rule, the
//! group key and the window's first alert time (a replay or restart derives the same id);
//! later alerts of the group join it (an `updated` change at most once a minute of event
//! time); it closes once the watermark passes its last alert + `timespan`. Groups are
//! capped (`max_groups`, oldest evicted and counted).

mod condition;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use crate::event::delta::{write_json, LruChanges, Part, TrackedLru};
use crate::event::members::Members;

pub use condition::{longest_chain, Condition, Measure, Range};

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
    /// A Sigma detection the alert must satisfy.
    pub detection: Option<Arc<super::sigma::Detection>>,
    /// The matches of this correlation rule, instead of alerts.
    pub rule: Option<String>,
}

impl Selector {
    pub fn matches(&self, a: &AlertRecord) -> bool {
        self.rule.is_none()
            && (self.signature_ids.is_empty() || self.signature_ids.contains(&a.signature_id))
            && (self.categories.is_empty() || self.categories.iter().any(|c| c == &a.category))
            && self.max_severity.is_none_or(|m| a.severity <= m)
            && (self.dest_ports.is_empty() || a.dest_port.is_some_and(|p| self.dest_ports.contains(&p)))
            && self.detection.as_ref().is_none_or(|d| d.matches(a))
    }

    /// The fields the selector reads from [`AlertRecord::fields`].
    pub fn needs_fields(&self) -> bool {
        self.detection.as_ref().is_some_and(|d| d.needs_fields())
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub selectors: Vec<Selector>,
    pub group_by: Vec<KeyField>,
    /// Group fields per selector (Sigma `aliases` naming different fields per rule);
    /// empty: `group_by` for all.
    pub group_by_per_selector: Vec<Vec<KeyField>>,
    pub timespan_us: i64,
    pub condition: Condition,
    /// What a late alert does to this rule.
    pub late: LatePolicy,
    /// Whether its matches open incidents (a rule that only feeds other rules does not).
    pub emit: bool,
    /// Its incidents' priority is at least this (0 informational … 4 critical).
    pub level: Option<u8>,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            name: String::new(),
            selectors: Vec::new(),
            group_by: Vec::new(),
            group_by_per_selector: Vec::new(),
            timespan_us: 300_000_000,
            condition: Condition::default(),
            late: LatePolicy::default(),
            emit: true,
            level: None,
        }
    }
}

impl Rule {
    /// Whether the rule reads [`AlertRecord::fields`].
    pub fn needs_fields(&self) -> bool {
        let measure_fields: &[KeyField] = match &self.condition.measure {
            Measure::Distinct(f) => f,
            Measure::Sum(f) | Measure::Avg(f) | Measure::Percentile(f) => std::slice::from_ref(f),
            _ => &[],
        };
        self.group_by.iter().chain(self.group_by_per_selector.iter().flatten()).chain(measure_fields).any(|f| f.needs_fields())
            || self.selectors.iter().any(Selector::needs_fields)
    }

    /// Whether its groups cannot be placed by one key (per-selector fields, or matches of
    /// other rules as input): such rules run on one shard.
    pub fn chained(&self) -> bool {
        !self.group_by_per_selector.is_empty() || self.selectors.iter().any(|s| s.rule.is_some())
    }
}

pub use crate::event::alert::{IncidentEvent, Status, MAX_MEMBERS};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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

/// One alert (or match of an inner rule) in a window: time, selector bit mask, the value it
/// contributes (see [`Condition::value_of`]), its alert ids (comma-separated for a match).
type Entry = (i64, u64, String, String);

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Group {
    /// The window's entries, by time. Kept only until the rule fires (then the incident
    /// counts), at most [`MAX_WINDOW`].
    window: VecDeque<Entry>,
    /// Entries per distinct value in the window.
    values: std::collections::HashMap<String, u32>,
    /// Entries per selector in the window.
    per_selector: Vec<u32>,
    /// Sum of the numeric values in the window, and how many there are.
    #[serde(default)]
    sum: f64,
    #[serde(default)]
    nums: u32,
    /// The earliest alert behind the inner-rule matches in the window (their entries are
    /// at the time they matched).
    #[serde(default)]
    inner_first_us: Option<i64>,
    incident: Option<Incident>,
    newest_us: i64,
    /// Due time of this group's live entry in the timer queue (`i64::MAX`: none).
    #[serde(skip, default = "never")]
    queued_us: i64,
    /// The latest alert of the group, for rules whose matches feed others.
    #[serde(default, with = "saved")]
    last: Option<Box<AlertRecord>>,
}

/// A group's latest alert in a snapshot: the fields rules read.
mod saved {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::AlertRecord;
    use crate::event::alert::AlertFields;

    #[derive(Serialize, Deserialize)]
    struct Saved {
        id: String,
        ts: i64,
        sensor: String,
        sid: i64,
        sig: String,
        cat: String,
        sev: i32,
        src: String,
        sport: Option<i32>,
        dst: String,
        dport: Option<i32>,
        proto: String,
        flow: Option<i64>,
        host: Option<String>,
        values: Vec<(String, String)>,
        #[serde(default)]
        community_id: String,
        #[serde(default)]
        app_proto: String,
        #[serde(default)]
        action: String,
        #[serde(default)]
        gid: Option<i64>,
        #[serde(default)]
        rev: Option<i64>,
    }

    pub fn serialize<S: Serializer>(a: &Option<Box<AlertRecord>>, s: S) -> Result<S::Ok, S::Error> {
        a.as_ref()
            .map(|a| Saved {
                id: a.alert_id.clone(),
                ts: a.ts_us,
                sensor: a.sensor.clone(),
                sid: a.signature_id,
                sig: a.signature.clone(),
                cat: a.category.clone(),
                sev: a.severity,
                src: a.src_ip.clone(),
                sport: a.src_port,
                dst: a.dest_ip.clone(),
                dport: a.dest_port,
                proto: a.proto.clone(),
                flow: a.flow_id,
                host: a.fields.as_ref().map(|f| f.host.clone()),
                values: a.fields.as_ref().map(|f| f.values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap_or_default(),
                community_id: a.community_id.clone(),
                app_proto: a.app_proto.clone(),
                action: a.action.clone(),
                gid: a.gid,
                rev: a.rev,
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<AlertRecord>>, D::Error> {
        let Some(x) = Option::<Saved>::deserialize(d)? else { return Ok(None) };
        let values = x.values.into_iter().filter_map(|(k, v)| super::KeyField::from_name(&k).map(|f| (f.name(), v.into_boxed_str()))).collect();
        Ok(Some(Box::new(AlertRecord {
            alert_id: x.id,
            ts_us: x.ts,
            sensor: x.sensor,
            signature_id: x.sid,
            signature: x.sig,
            category: x.cat,
            severity: x.sev,
            src_ip: x.src,
            src_port: x.sport,
            dest_ip: x.dst,
            dest_port: x.dport,
            proto: x.proto,
            flow_id: x.flow,
            community_id: x.community_id,
            app_proto: x.app_proto,
            action: x.action,
            gid: x.gid,
            rev: x.rev,
            fields: x.host.map(|host| Box::new(AlertFields { host, values })),
        })))
    }
}

fn never() -> i64 {
    i64::MAX
}

/// Alerts a group's window holds before the rule fires; older ones are dropped first.
pub const MAX_WINDOW: usize = 10_000;

impl Group {
    fn add(&mut self, e: Entry, pos: usize, numeric: bool) {
        if !e.2.is_empty() {
            *self.values.entry(e.2.clone()).or_insert(0) += 1;
            if let (true, Ok(x)) = (numeric, e.2.parse::<f64>()) {
                self.sum += x;
            }
            self.nums += 1;
        }
        for (i, c) in self.per_selector.iter_mut().enumerate() {
            *c += (e.1 >> i & 1) as u32;
        }
        self.window.insert(pos, e);
    }

    fn pop_front(&mut self, numeric: bool) {
        if let Some(e) = self.window.pop_front() {
            if !e.2.is_empty() {
                if let Some(c) = self.values.get_mut(&e.2) {
                    *c -= 1;
                    if *c == 0 {
                        self.values.remove(&e.2);
                    }
                }
                if let (true, Ok(x)) = (numeric, e.2.parse::<f64>()) {
                    self.sum -= x;
                }
                self.nums -= 1;
            }
            for (i, c) in self.per_selector.iter_mut().enumerate() {
                *c -= (e.1 >> i & 1) as u32;
            }
        }
        if self.window.is_empty() {
            // No drift from adding and taking away floats.
            self.sum = 0.0;
            self.inner_first_us = None;
        }
    }

    fn clear_window(&mut self) {
        self.window.clear();
        self.values.clear();
        self.per_selector.iter_mut().for_each(|c| *c = 0);
        self.sum = 0.0;
        self.nums = 0;
        self.inner_first_us = None;
    }
}

fn numeric(c: &Condition) -> bool {
    matches!(c.measure, Measure::Sum(_) | Measure::Avg(_))
}

/// The alert ids of window entries (a match entry lists several), at most [`MAX_MEMBERS`].
fn members<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<String> {
    entries.flat_map(|e| e.3.split(',')).take(MAX_MEMBERS).map(str::to_owned).collect()
}

/// Alerts behind window entries.
fn alert_count<'a>(entries: impl Iterator<Item = &'a Entry>) -> u64 {
    entries.map(|e| e.3.split(',').count() as u64).sum()
}

/// The measure of the arriving entry's group, judged as it arrives.
fn measure_now(rule: &Rule, g: &Group, value: &str) -> Option<f64> {
    Some(match &rule.condition.measure {
        Measure::Events => g.window.len() as f64,
        Measure::Distinct(_) => g.values.len() as f64,
        Measure::Rules => g.per_selector.iter().filter(|&&c| c > 0).count() as f64,
        Measure::OrderedRules => longest_chain(g.window.iter().map(|e| &e.1), rule.selectors.len()) as f64,
        Measure::Sum(_) => g.sum,
        Measure::Avg(_) => (g.nums > 0).then(|| g.sum / g.nums as f64)?,
        Measure::Percentile(_) => {
            if value.is_empty() || g.nums == 0 {
                return None;
            }
            *g.values.get(value)? as f64 * 100.0 / g.nums as f64
        }
    })
}

/// The measure over a complete window's entries.
fn measure_of(rule: &Rule, entries: &[&Entry]) -> Option<f64> {
    let vals = || entries.iter().map(|e| e.2.as_str()).filter(|v| !v.is_empty());
    let nums = || vals().filter_map(|v| v.parse::<f64>().ok());
    Some(match &rule.condition.measure {
        Measure::Events => entries.len() as f64,
        Measure::Distinct(_) => vals().collect::<std::collections::HashSet<_>>().len() as f64,
        Measure::Rules => (0..rule.selectors.len()).filter(|i| entries.iter().any(|e| e.1 >> i & 1 == 1)).count() as f64,
        Measure::OrderedRules => longest_chain(entries.iter().map(|e| &e.1), rule.selectors.len()) as f64,
        Measure::Sum(_) => nums().sum(),
        Measure::Avg(_) => {
            let n = nums().count();
            (n > 0).then(|| nums().sum::<f64>() / n as f64)?
        }
        // The last alert's value among the window's.
        Measure::Percentile(_) => {
            let last = vals().next_back()?;
            vals().filter(|v| *v == last).count() as f64 * 100.0 / vals().count() as f64
        }
    })
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

/// A group's or closed incident's entry by (rule, group key).
type GroupEntry<T> = ((usize, String), T);

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

/// A rule matched: an event for the rules that name it.
struct Firing {
    rule: usize,
    /// The alert that completed the match, at the match's time.
    alert: AlertRecord,
    /// The alert ids of the match, comma-separated.
    ids: String,
    /// The earliest alert of the match.
    first_us: i64,
}

pub struct Correlator {
    rules: Vec<Rule>,
    /// Per rule: the rules that take its matches, with the selector bits they come in as.
    parents: Vec<Vec<(usize, u64)>>,
    /// Groups in order of their last alert (least recent evicted first when full).
    groups: TrackedLru<(usize, String), Group>,
    /// Recently closed incidents by group (at most `max_groups`).
    closed: TrackedLru<(usize, String), Closed>,
    max_groups: usize,
    /// (due, rule, group key), earliest first: when groups can close, so an advance
    /// touches only those. One live entry per group (its `queued_us`); entries of removed
    /// groups or superseded times are skipped when they come up.
    timers: BinaryHeap<Reverse<(i64, usize, String)>>,
    pub counts: CorrelationCounts,
}

impl Correlator {
    pub fn new(rules: Vec<Rule>, max_groups: usize) -> Self {
        let parents = (0..rules.len())
            .map(|inner| {
                let name = &rules[inner].name;
                rules
                    .iter()
                    .enumerate()
                    .filter_map(|(p, r)| {
                        let bits = r.selectors.iter().enumerate().filter(|(_, s)| s.rule.as_ref() == Some(name)).fold(0u64, |m, (i, _)| m | 1 << i);
                        (bits != 0).then_some((p, bits))
                    })
                    .collect()
            })
            .collect();
        Self {
            rules,
            parents,
            groups: TrackedLru::unbounded(),
            closed: TrackedLru::unbounded(),
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

    /// The group keys of an alert under a rule, each with the selector bits it holds
    /// (one key unless aliases give the selectors different fields).
    fn keys(&self, ri: usize, a: &AlertRecord, mask: u64) -> Vec<(String, u64)> {
        let rule = &self.rules[ri];
        if rule.group_by_per_selector.is_empty() {
            return vec![(key_of(&rule.group_by, a), mask)];
        }
        let mut keys: Vec<(String, u64)> = Vec::new();
        for (i, fields) in rule.group_by_per_selector.iter().enumerate() {
            if mask >> i & 1 == 0 {
                continue;
            }
            let k = key_of(fields, a);
            match keys.iter_mut().find(|(x, _)| *x == k) {
                Some((_, m)) => *m |= 1 << i,
                None => keys.push((k, 1 << i)),
            }
        }
        keys
    }

    /// [`Correlator::offer_at`] for the rules of index `rules` only (a shard owns the
    /// alert's group under these).
    pub fn offer_rules(&mut self, a: &AlertRecord, late: bool, rules: &[u16], out: &mut Vec<IncidentEvent>) -> Offered {
        let mut res = Offered::default();
        let mut firings = Vec::new();
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
            if rule.group_by_per_selector.is_empty() {
                // One key (no allocation for a list of them).
                let key = key_of(&rule.group_by, a);
                if !(late && self.correct_closed(ri, &key, a, out, &mut res.joined)) {
                    self.feed(ri, key, a, mask, (&a.alert_id, a.ts_us), out, &mut res.joined, &mut firings);
                }
                continue;
            }
            for (key, mask) in self.keys(ri, a, mask) {
                if late && self.correct_closed(ri, &key, a, out, &mut res.joined) {
                    continue;
                }
                self.feed(ri, key, a, mask, (&a.alert_id, a.ts_us), out, &mut res.joined, &mut firings);
            }
        }
        self.cascade(firings, out, &mut res.joined);
        res
    }

    /// A late alert whose incident may have closed already: a `corrected` change.
    fn correct_closed(&mut self, ri: usize, key: &str, a: &AlertRecord, out: &mut Vec<IncidentEvent>, joined: &mut Vec<(usize, String)>) -> bool {
        let k = (ri, key.to_string());
        if self.groups.peek(&k).is_some_and(|g| g.incident.is_some()) {
            return false;
        }
        let rule = &self.rules[ri];
        let span = rule.timespan_us;
        let Some(c) = self.closed.get_mut(&k).filter(|c| a.ts_us >= c.first_us - span && a.ts_us <= c.last_us + span) else { return false };
        c.alert_count += 1;
        c.first_us = c.first_us.min(a.ts_us);
        c.last_us = c.last_us.max(a.ts_us);
        out.push(IncidentEvent {
            id: c.id.clone(),
            rule: rule.name.clone(),
            group_key: k.1,
            status: Status::Corrected,
            first_us: c.first_us,
            last_us: c.last_us,
            alert_count: c.alert_count,
            alert_ids: vec![a.alert_id.clone()],
            level: rule.level,
        });
        joined.push((ri, c.id.clone()));
        self.counts.corrected += 1;
        true
    }

    /// Matches of inner rules, fed to the rules that name them (which may match in turn).
    fn cascade(&mut self, firings: Vec<Firing>, out: &mut Vec<IncidentEvent>, joined: &mut Vec<(usize, String)>) {
        let mut queue: VecDeque<Firing> = firings.into();
        while let Some(f) = queue.pop_front() {
            let mut more = Vec::new();
            for (p, bits) in self.parents[f.rule].clone() {
                for (key, mask) in self.keys(p, &f.alert, bits) {
                    self.feed(p, key, &f.alert, mask, (&f.ids, f.first_us), out, joined, &mut more);
                }
            }
            queue.extend(more);
        }
    }

    /// One entry (an alert, or a match of an inner rule with its alert ids and earliest
    /// alert time) into the group `key` of rule `ri`.
    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        ri: usize,
        key: String,
        a: &AlertRecord,
        mask: u64,
        (ids, first_us): (&str, i64),
        out: &mut Vec<IncidentEvent>,
        joined: &mut Vec<(usize, String)>,
        firings: &mut Vec<Firing>,
    ) {
        let value = self.rules[ri].condition.value_of(a);
        let k = (ri, key);
        if !self.groups.contains(&k) {
            if self.groups.len() >= self.max_groups {
                self.evict_oldest(out);
            }
            let g = Group { per_selector: vec![0; self.rules[ri].selectors.len()], queued_us: i64::MAX, ..Default::default() };
            self.groups.put(k.clone(), g);
        }
        let rule = &self.rules[ri];
        let feeds_others = !self.parents[ri].is_empty();
        let span = rule.timespan_us;
        let at_end = rule.condition.at_window_end();
        let num = numeric(&rule.condition);
        let Some(g) = self.groups.get_mut(&k) else { return };
        g.newest_us = g.newest_us.max(a.ts_us);
        if first_us < a.ts_us {
            g.inner_first_us = Some(g.inner_first_us.map_or(first_us, |f| f.min(first_us)));
        }
        if feeds_others {
            g.last = Some(Box::new(a.clone()));
        }
        if at_end {
            // Windows anchored at their first alert: one this alert is past is complete.
            while g.window.front().is_some_and(|e| a.ts_us > e.0.saturating_add(span)) {
                if let Some(f) = settle(rule, ri, &k.1, g, out, &mut self.counts) {
                    firings.push(f);
                }
            }
            let pos = g.window.iter().rposition(|e| e.0 <= a.ts_us).map_or(0, |p| p + 1);
            g.add((a.ts_us, mask, value, ids.to_string()), pos, num);
            while g.window.len() > MAX_WINDOW {
                g.pop_front(num);
            }
            let due = g.window.front().map_or(a.ts_us, |e| e.0).saturating_add(span).saturating_add(1);
            if g.queued_us != due {
                g.queued_us = due;
                self.timers.push(Reverse((due, ri, k.1)));
            }
            return;
        }
        if g.queued_us == i64::MAX {
            // A new group: it can close once the watermark is past newest + timespan
            // (later alerts only move that on; the entry is renewed when it comes up).
            g.queued_us = g.newest_us.saturating_add(span).saturating_add(1);
            self.timers.push(Reverse((g.queued_us, ri, k.1.clone())));
        }
        if g.incident.is_none() {
            // Insert in time order (events may arrive out of order within the lateness).
            let pos = g.window.iter().rposition(|e| e.0 <= a.ts_us).map_or(0, |p| p + 1);
            g.add((a.ts_us, mask, value.clone(), ids.to_string()), pos, num);
            let horizon = g.newest_us - span;
            while g.window.front().is_some_and(|e| e.0 < horizon) || g.window.len() > MAX_WINDOW {
                g.pop_front(num);
            }
        }
        let key = &k.1;
        match &mut g.incident {
            Some(inc) => {
                inc.alert_count += ids.split(',').count() as u64;
                inc.last_us = inc.last_us.max(a.ts_us);
                inc.first_us = inc.first_us.min(a.ts_us);
                for id in ids.split(',') {
                    if inc.joined.len() < MAX_MEMBERS {
                        inc.joined.push(id.to_string());
                    }
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
                        level: rule.level,
                    });
                }
                joined.push((ri, inc.id.clone()));
            }
            None => {
                let range = rule.condition.range_for(rule.selectors.len());
                if !measure_now(rule, g, &value).is_some_and(|m| range.contains(m)) {
                    return;
                }
                let start = g.window.front().map_or(a.ts_us, |e| e.0);
                let first = g.inner_first_us.map_or(start, |f| f.min(start));
                let member_ids = members(g.window.iter());
                if feeds_others {
                    firings.push(Firing { rule: ri, alert: AlertRecord { ts_us: a.ts_us, ..a.clone() }, ids: member_ids.join(","), first_us: first });
                }
                if !rule.emit {
                    // A rule that only feeds others starts counting afresh.
                    g.clear_window();
                    return;
                }
                let id = incident_id(&rule.name, key, start);
                let inc = Incident {
                    id: id.clone(),
                    first_us: first,
                    last_us: g.newest_us,
                    alert_count: alert_count(g.window.iter()),
                    joined: Vec::new(),
                    emitted_us: a.ts_us,
                };
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
                    alert_ids: member_ids,
                    level: rule.level,
                });
                g.incident = Some(inc);
                self.counts.opened += 1;
                joined.push((ri, id));
            }
        }
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
                level: self.rules[k.0].level,
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
    pub fn restore(&mut self, v: &Members) -> Result<(), serde_json::Error> {
        let groups: Vec<(String, String, Group)> = v.get("groups")?;
        // What was held before goes (a restore replaces).
        self.groups = TrackedLru::unbounded();
        self.closed = TrackedLru::unbounded();
        self.timers.clear();
        for (rule, key, mut g) in groups {
            if let Some(ri) = self.rules.iter().position(|r| r.name == rule) {
                g.queued_us = g.newest_us.saturating_add(self.rules[ri].timespan_us).saturating_add(1);
                self.timers.push(Reverse((g.queued_us, ri, key.clone())));
                self.groups.put((ri, key), g);
            }
        }
        if !v.is_null("closed") {
            let closed: Vec<(String, String, Closed)> = v.get("closed")?;
            for (rule, key, c) in closed {
                if let Some(ri) = self.rules.iter().position(|r| r.name == rule) {
                    self.closed.put((ri, key), c);
                }
            }
        }
        self.counts = counts_of(v)?;
        Ok(())
    }

    /// A correlator with the same rules and bounds, and nothing in it.
    pub fn empty_like(&self) -> Self {
        Self::new(self.rules.clone(), self.max_groups)
    }

    /// Tracks the groups changed from now on (the whole state was just saved).
    pub fn track(&mut self) {
        self.groups.track();
        self.closed.track();
    }

    /// Copies up to `budget` entries of the snapshot capture under way (see
    /// `event::delta`); whether it is finished.
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        self.groups.capture_step(budget) && self.closed.capture_step(budget)
    }

    /// The groups and closed incidents changed since the last snapshot, and the counts (a
    /// delta: see `event::delta`; entries as in [`Correlator::snapshot`]), cut now, written
    /// by the returned part once the capture is finished ([`Correlator::capture_step`]).
    pub fn take_changes(&mut self) -> Part {
        let names: Vec<String> = self.rules.iter().map(|r| r.name.clone()).collect();
        let (groups, closed) = (self.groups.take_changes(), self.closed.take_changes());
        let c = &self.counts;
        let counts = [c.opened, c.closed, c.groups_evicted, c.late_skipped, c.late_reevaluated, c.corrected];
        Box::new(move |w: &mut dyn std::io::Write| {
            let key = |w: &mut dyn std::io::Write, (r, k): &(usize, String)| write_json(w, &(names[*r].as_str(), k.as_str()));
            w.write_all(b"{\"groups\":")?;
            groups.write(w, key, |w, (r, k), g| write_json(w, &(names[*r].as_str(), k.as_str(), g)))?;
            w.write_all(b",\"closed\":")?;
            closed.write(w, key, |w, (r, k), c| write_json(w, &(names[*r].as_str(), k.as_str(), c)))?;
            w.write_all(b",\"counts\":")?;
            write_json(w, &counts)?;
            w.write_all(b"}")
        })
    }

    /// Applies a delta of [`Correlator::take_changes`] to the restored state (groups of
    /// rules no longer configured are dropped, as in a restore).
    pub fn apply_changes(&mut self, v: &Members) -> Result<(), serde_json::Error> {
        let rule_of = |name: &str| self.rules.iter().position(|r| r.name == name);
        fn parse<T: serde::de::DeserializeOwned>(
            v: &Members,
            rule_of: &dyn Fn(&str) -> Option<usize>,
        ) -> Result<LruChanges<(usize, String), T>, serde_json::Error> {
            let del: Vec<(String, String)> = v.get("del")?;
            let entries = |m: &str| -> Result<Vec<GroupEntry<T>>, serde_json::Error> {
                let list: Vec<(String, String, T)> = v.get(m)?;
                Ok(list.into_iter().filter_map(|(r, k, x)| rule_of(&r).map(|ri| ((ri, k), x))).collect())
            };
            Ok(LruChanges {
                clear: v.flag("clear"),
                del: del.into_iter().filter_map(|(r, k)| rule_of(&r).map(|ri| (ri, k))).collect(),
                upd: entries("upd")?,
                put: entries("put")?,
            })
        }
        let groups: LruChanges<(usize, String), Group> = parse(&v.members("groups")?, &rule_of)?;
        let closed: LruChanges<(usize, String), Closed> = parse(&v.members("closed")?, &rule_of)?;
        let (rules, timers) = (&self.rules, &mut self.timers);
        self.groups.apply_changes(groups, |(ri, key), g| {
            g.queued_us = g.newest_us.saturating_add(rules[*ri].timespan_us).saturating_add(1);
            timers.push(Reverse((g.queued_us, *ri, key.clone())));
        });
        self.closed.apply_changes(closed, |_, _| {});
        self.counts = counts_of(v)?;
        Ok(())
    }

    /// Moves event time to `watermark`: incidents quiet for their rule's timespan close,
    /// complete windows of window-end rules are judged, and groups with nothing left in
    /// their window are dropped.
    pub fn advance(&mut self, watermark: i64, out: &mut Vec<IncidentEvent>) {
        let mut done: Vec<(usize, String)> = Vec::new();
        let mut firings = Vec::new();
        while self.timers.peek().is_some_and(|Reverse((due, _, _))| *due <= watermark) {
            let Some(Reverse((due, ri, key))) = self.timers.pop() else { break };
            let k = (ri, key);
            let rule = &self.rules[ri];
            let span = rule.timespan_us;
            if self.groups.peek(&k).is_none_or(|g| g.queued_us != due) {
                continue;
            }
            let Some(g) = self.groups.peek_mut(&k) else { continue };
            if rule.condition.at_window_end() {
                while g.window.front().is_some_and(|e| e.0.saturating_add(span) < watermark) {
                    if let Some(f) = settle(rule, ri, &k.1, g, out, &mut self.counts) {
                        firings.push(f);
                    }
                }
                match g.window.front() {
                    None => {
                        g.queued_us = i64::MAX;
                        done.push(k);
                    }
                    Some(e) => {
                        g.queued_us = e.0.saturating_add(span).saturating_add(1);
                        self.timers.push(Reverse((g.queued_us, k.0, k.1)));
                    }
                }
            } else if g.newest_us + span < watermark {
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
        if !firings.is_empty() {
            // Matches of inner rules judged at their window's end feed their outer rules.
            let mut joined = Vec::new();
            self.cascade(firings, out, &mut joined);
        }
    }
}

/// Judges the first complete window of a window-end rule's group: when the measure is in
/// range, an incident that opens and closes at once (when the rule emits) and a match for
/// the rules that name it. The window's entries leave the group.
fn settle(rule: &Rule, ri: usize, key: &str, g: &mut Group, out: &mut Vec<IncidentEvent>, counts: &mut CorrelationCounts) -> Option<Firing> {
    let start = g.window.front()?.0;
    let end = start.saturating_add(rule.timespan_us);
    let n = g.window.iter().take_while(|e| e.0 <= end).count();
    let entries: Vec<&Entry> = g.window.iter().take(n).collect();
    let last_us = entries.last().map_or(start, |e| e.0);
    let first = g.inner_first_us.map_or(start, |f| f.min(start));
    let range = rule.condition.range_for(rule.selectors.len());
    let matched = measure_of(rule, &entries).is_some_and(|m| range.contains(m));
    let mut firing = None;
    if matched {
        let ids = members(entries.iter().copied());
        if rule.emit {
            let id = incident_id(&rule.name, key, start);
            let count = alert_count(entries.iter().copied());
            for status in [Status::Open, Status::Closed] {
                out.push(IncidentEvent {
                    id: id.clone(),
                    rule: rule.name.clone(),
                    group_key: key.to_string(),
                    status,
                    first_us: first,
                    last_us,
                    alert_count: count,
                    alert_ids: if status == Status::Open { ids.clone() } else { Vec::new() },
                    level: rule.level,
                });
            }
            counts.opened += 1;
            counts.closed += 1;
        }
        let alert = g.last.as_deref().cloned().unwrap_or_default();
        firing = Some(Firing { rule: ri, alert: AlertRecord { ts_us: last_us, ..alert }, ids: ids.join(","), first_us: first });
    }
    let num = numeric(&rule.condition);
    for _ in 0..n {
        g.pop_front(num);
    }
    firing
}

/// The counts of a snapshot or delta (`[opened, closed, groups_evicted, late_skipped,
/// late_reevaluated, corrected]`; missing ones are 0).
fn counts_of(v: &Members) -> Result<CorrelationCounts, serde_json::Error> {
    let n: Vec<u64> = v.get::<Option<Vec<u64>>>("counts")?.unwrap_or_default();
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    Ok(CorrelationCounts { opened: at(0), closed: at(1), groups_evicted: at(2), late_skipped: at(3), late_reevaluated: at(4), corrected: at(5) })
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
            condition: Condition::value_count(KeyField::DestPort, 5),
            ..Default::default()
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
            condition: Condition::temporal_ordered(),
            ..Default::default()
        };
        let any = Rule {
            name: "all-three".into(),
            selectors: sels,
            group_by: vec![KeyField::DestIp],
            timespan_us: 600 * S,
            condition: Condition::temporal(),
            ..Default::default()
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
            condition: Condition::event_count(3),
            ..Default::default()
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

    #[test]
    fn a_window_end_inner_rule_feeds_its_outer_rule_across_a_restore() {
        let inner = Rule {
            name: "few".into(),
            selectors: vec![sel("s", &[1])],
            group_by: vec![KeyField::SrcIp],
            timespan_us: 60 * S,
            condition: Condition { measure: Measure::Events, range: Some(Range { hi: Some((3.0, true)), ..Default::default() }) },
            emit: false,
            ..Default::default()
        };
        let outer = Rule {
            name: "few then t".into(),
            selectors: vec![Selector { name: "few".into(), rule: Some("few".into()), ..Default::default() }, sel("t", &[2])],
            group_by: vec![KeyField::SrcIp],
            timespan_us: 3600 * S,
            condition: Condition::temporal_ordered(),
            ..Default::default()
        };
        let mut c = Correlator::new(vec![inner.clone(), outer.clone()], 1000);
        let mut out = Vec::new();
        c.offer(&a(0, 1, "10.9.9.9", "A", 80), &mut out);
        c.offer(&a(10, 1, "10.9.9.9", "A", 80), &mut out);
        let snap = c.snapshot();
        let mut c = Correlator::new(vec![inner, outer], 1000);
        c.restore(&Members::parse(&snap).unwrap()).unwrap();
        c.advance(100 * S, &mut out);
        assert!(out.is_empty(), "the inner rule opens nothing: {out:?}");
        c.offer(&a(120, 2, "10.9.9.9", "A", 80), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].rule.as_str(), out[0].group_key.as_str(), out[0].alert_count, out[0].first_us), ("few then t", "10.9.9.9", 3, 0));
    }
}
