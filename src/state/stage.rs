//! The state stage: the alert rows of event batches in (in archive order), decided alerts,
//! roll-ups and incident changes out.
//!
//! For every `alert` row of a batch: the watermark decides whether it is late; on-time
//! alerts go through dedup and the correlation rules; each alert comes out as a
//! [`Decided`] (its record, whether it is late, what dedup decided, the incidents it
//! joined, its flow context). The batch's context events (flow, dns, http, tls, fileinfo,
//! anomaly) feed the flow context first. Enrichment, scoring and rendering are the next
//! steps of the alert path, wired by `pipeline::alerts`.
//!
//! The whole state (watermark, dedup keys, correlation groups, incident contexts) is saved
//! with every commit ([`StateStage::snapshot_to`]) and restored at start, so a restart
//! continues where the archive stands: nothing re-notified, no incident forgotten.

use crate::event::delta::{Deferred, TrackedMap};
use crate::event::members::Members;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;

use super::context::{ContextConfig, FlowContext, FlowEnded, IncidentContext};
use super::correlate::{IncidentEvent, Rule, Status};
use super::dedup::{Decision, DedupConfig, Rollup};
use super::shard::Shards;
use super::watermark::Watermark;
use super::{AlertRecord, LatePolicy};
pub use crate::event::alert::alert_id;
use crate::event::alert::AlertFields;

/// (slot of a context event, alert field it fills).
type Slots = &'static [(usize, &'static str)];
use crate::event::{ContextView, EventBatch};

#[derive(Debug, Clone)]
pub struct StateConfig {
    pub enabled: bool,
    pub allowed_lateness_us: i64,
    pub max_future_us: i64,
    pub idle_us: i64,
    /// Events that must reach an event time before the watermark follows it.
    pub watermark_quorum: usize,
    pub dedup: DedupConfig,
    pub rules: Vec<Rule>,
    pub max_groups: usize,
    pub context: ContextConfig,
    /// The policy for late alerts in dedup, and the default of the rules.
    pub late_policy: LatePolicy,
    /// Threads the dedup keys and correlation groups are partitioned over (1: the state
    /// thread alone).
    pub shards: usize,
    /// Home networks (address, prefix length): which side of an alert is the monitored
    /// host (`host` in rules). The pipeline sets them from `[triage] home_nets`.
    pub home_nets: Vec<(std::net::IpAddr, u8)>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_lateness_us: 60_000_000,
            max_future_us: 300_000_000,
            idle_us: 30_000_000,
            watermark_quorum: 3,
            dedup: DedupConfig::default(),
            rules: Vec::new(),
            max_groups: 100_000,
            context: ContextConfig::default(),
            late_policy: LatePolicy::default(),
            shards: 1,
            home_nets: Vec::new(),
        }
    }
}

/// Event time between two walks over the dedup keys and correlation groups: roll-ups
/// and closes are at most this late.
pub const ADVANCE_STEP_US: i64 = 10_000_000;

/// What the state stage needs of a batch: its alert rows (every column: they become
/// `alerts` rows) and the few columns of its context events. Taken on the archive's
/// thread, so the state thread does not hold the batch (its raw lines) while it works.
#[derive(Debug, Default)]
pub struct StateInput {
    pub alerts: Option<EventBatch>,
    pub context: Option<ContextRows>,
}

/// Columns of a batch's context events (shared with the batch, not copied).
#[derive(Debug)]
pub struct ContextRows {
    timestamp: TimestampMicrosecondArray,
    flow_id: Int64Array,
    src_ip: StringArray,
    dest_ip: StringArray,
    context: StringArray,
    hours: Vec<i64>,
}

/// One context event: its time, flow, addresses and encoded context.
pub struct ContextRow<'a> {
    pub ts_us: i64,
    pub flow_id: Option<i64>,
    pub src_ip: Option<&'a str>,
    pub dest_ip: Option<&'a str>,
    pub context: &'a str,
}

impl ContextRows {
    /// The rows that carry context, in batch order.
    pub fn rows(&self) -> impl Iterator<Item = ContextRow<'_>> {
        fn opt(a: &StringArray, i: usize) -> Option<&str> {
            a.is_valid(i).then(|| a.value(i))
        }
        let (ts, flow, ctx) = (&self.timestamp, &self.flow_id, &self.context);
        (0..ctx.len()).filter(|&i| ctx.is_valid(i)).map(move |i| ContextRow {
            ts_us: if ts.is_valid(i) { ts.value(i) } else { self.hours[i] * 3_600_000_000 },
            flow_id: flow.is_valid(i).then(|| flow.value(i)),
            src_ip: opt(&self.src_ip, i),
            dest_ip: opt(&self.dest_ip, i),
            context: ctx.value(i),
        })
    }
}

impl StateInput {
    /// Leaves out the alerts of severity above `max_severity` (a larger number is less
    /// severe; no severity counts as the least); returns how many of each severity 2–4
    /// (index 0–2; 4 and none as 4) left.
    pub fn shed_above(&mut self, max_severity: i32) -> [u64; 3] {
        let mut shed = [0u64; 3];
        let Some(a) = self.alerts.as_mut() else { return shed };
        let sev = col::<Int32Array>(&a.columns, "alert_severity");
        let level = |i: usize| if sev.is_valid(i) { sev.value(i).clamp(1, 4) } else { 4 };
        let keep: BooleanArray = (0..a.columns.num_rows())
            .map(|i| {
                let l = level(i);
                if l > max_severity {
                    shed[(l.max(2) - 2) as usize] += 1;
                }
                Some(l <= max_severity)
            })
            .collect();
        if shed.iter().sum::<u64>() == 0 {
            return shed;
        }
        let rows = filter_record_batch(&a.columns, &keep).expect("mask matches the batch");
        let hours = (0..keep.len()).filter(|&i| keep.value(i)).map(|i| a.hours[i]).collect();
        self.alerts = (rows.num_rows() > 0).then(|| EventBatch { columns: rows, hours, context: None });
        shed
    }

    pub fn from_batch(events: &EventBatch) -> Self {
        let b = &events.columns;
        let et = col::<StringArray>(b, "event_type");
        let mask: BooleanArray = (0..b.num_rows()).map(|i| Some(et.is_valid(i) && et.value(i) == "alert")).collect();
        let n = mask.true_count();
        let alerts = if n == b.num_rows() && n > 0 {
            // All alerts (a storm, an alert-only sensor): shared, not copied.
            Some(EventBatch { columns: b.clone(), hours: events.hours.clone(), context: None })
        } else {
            (n > 0).then(|| {
                let rows = filter_record_batch(b, &mask).expect("mask matches the batch");
                let hours = (0..b.num_rows()).filter(|&i| mask.value(i)).map(|i| events.hours[i]).collect();
                EventBatch { columns: rows, hours, context: None }
            })
        };
        let context = events.context.as_ref().map(|c| ContextRows {
            timestamp: col::<TimestampMicrosecondArray>(b, "timestamp").clone(),
            flow_id: col::<Int64Array>(b, "flow_id").clone(),
            src_ip: col::<StringArray>(b, "src_ip").clone(),
            dest_ip: col::<StringArray>(b, "dest_ip").clone(),
            context: c.clone(),
            hours: events.hours.clone(),
        });
        Self { alerts, context }
    }
}

/// One alert as the state decided it.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The alert (its time clamped by the watermark when it was in the future).
    pub record: AlertRecord,
    pub late: bool,
    /// What dedup decided; `None`: late and kept out by the late policy.
    pub decision: Option<Decision>,
    /// Incidents the alert joined (opened or updated).
    pub joined: Vec<String>,
    /// The alert's flow context as JSON text, when known.
    pub context: Option<String>,
    /// Kept out of dedup and written to the late output (`late_output` policy).
    pub late_output: bool,
}

/// An incident change with its context as it stands (JSON; `null` when unknown).
#[derive(Debug, Clone)]
pub struct Change {
    pub event: IncidentEvent,
    pub context: serde_json::Value,
}

/// What one batch (or an advance of time) produced.
#[derive(Debug, Default)]
pub struct StateOutput {
    /// The batch's alert rows as they came (event columns), one per [`Decided`].
    pub rows: Option<EventBatch>,
    pub alerts: Vec<Decided>,
    /// Flows that raised alerts and ended with this batch, with their final context.
    pub flow_ends: Vec<FlowEnded>,
    pub rollups: Vec<Rollup>,
    pub changes: Vec<Change>,
}

/// Counts since start (published as metrics by the caller).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StateCounts {
    pub alerts: u64,
    pub late: u64,
    pub clamped: u64,
    pub rollups: u64,
    /// Late alerts written to the late output.
    pub late_output: u64,
}

pub struct StateStage {
    /// The watermark of the last advance (an advance walks every key and group: at most
    /// once per [`ADVANCE_STEP_US`] of event time).
    advanced_to: i64,
    wm: Watermark,
    shards: Shards,
    ctx: FlowContext,
    /// What a late alert does to dedup (each rule has its own).
    late_policy: LatePolicy,
    /// What the alerts of each open incident had around them.
    incident_ctx: TrackedMap<String, IncidentContext>,
    /// Whether a rule or the dedup key reads [`AlertRecord::fields`].
    needs_fields: bool,
    home_nets: Vec<(std::net::IpAddr, u8)>,
    pub counts: StateCounts,
    /// Whether changes are tracked (a whole snapshot was taken).
    tracking: bool,
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).expect("events schema column")
}

impl StateStage {
    pub fn new(cfg: &StateConfig) -> Self {
        Self {
            advanced_to: i64::MIN,
            wm: Watermark::with_quorum(cfg.allowed_lateness_us, cfg.max_future_us, cfg.idle_us, cfg.watermark_quorum),
            shards: Shards::new(cfg.shards, &cfg.dedup, &cfg.rules, cfg.max_groups, cfg.late_policy),
            ctx: FlowContext::new(cfg.context.clone()),
            incident_ctx: TrackedMap::default(),
            late_policy: cfg.late_policy,
            needs_fields: cfg.rules.iter().any(Rule::needs_fields) || cfg.dedup.key.iter().any(|f| f.needs_fields()),
            home_nets: cfg.home_nets.clone(),
            counts: StateCounts::default(),
            tracking: false,
        }
    }

    /// The monitored host of an alert and what its flow's context events carried.
    fn alert_fields(&self, a: &AlertRecord) -> AlertFields {
        use crate::event::ContextKind;
        let home = |ip: &str| {
            ip.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                let ip = crate::event::prefix::canonical(ip);
                self.home_nets.iter().any(|(n, l)| crate::event::prefix::net_contains(*n, *l, ip))
            })
        };
        let host = if home(&a.src_ip) && !home(&a.dest_ip) { a.src_ip.clone() } else { a.dest_ip.clone() };
        let mut values: Vec<(&'static str, Box<str>)> = Vec::new();
        for v in self.ctx.flow_views_with_end(a.flow_id) {
            // (slot, field) of the text slots, then of the number slots.
            let (texts, nums): (Slots, Slots) = match v.kind {
                ContextKind::Dns => (&[(0, "dns_query")], &[]),
                ContextKind::Http => (&[(0, "http_hostname"), (1, "http_url"), (3, "http_user_agent")], &[(0, "http_status")]),
                ContextKind::Tls => (&[(0, "tls_sni"), (2, "tls_ja3")], &[]),
                ContextKind::FileInfo => (&[(0, "file_name"), (1, "file_sha256"), (2, "file_md5"), (4, "file_sha1")], &[]),
                ContextKind::Flow => (&[], &[(0, "flow_pkts_toserver"), (1, "flow_pkts_toclient"), (2, "flow_bytes_toserver"), (3, "flow_bytes_toclient")]),
                ContextKind::Anomaly => (&[], &[]),
            };
            for &(slot, name) in texts {
                if let Some(t) = v.text[slot] {
                    if !values.iter().any(|(f, x)| *f == name && &**x == t) {
                        values.push((name, t.into()));
                    }
                }
            }
            for &(slot, name) in nums {
                if let Some(n) = v.num[slot] {
                    values.push((name, n.to_string().into()));
                }
            }
        }
        AlertFields { host, values }
    }

    /// Runs the alerts of one event batch; `now_us` is the wall clock (injected).
    pub fn process(&mut self, events: &EventBatch, now_us: i64) -> StateOutput {
        self.process_input(StateInput::from_batch(events), now_us)
    }

    /// Runs what [`StateInput::from_batch`] took from a batch.
    pub fn process_input(&mut self, input: StateInput, now_us: i64) -> StateOutput {
        let mut out = StateOutput::default();
        let Some((b, hours)) = input.alerts.as_ref().map(|a| (&a.columns, &a.hours)) else {
            self.observe_context(input.context.as_ref(), &mut out);
            self.advance(now_us, &mut out);
            return out;
        };
        let n = b.num_rows();
        let ts = col::<TimestampMicrosecondArray>(b, "timestamp");
        let s = |name: &str| col::<StringArray>(b, name);
        let (sensor, sig, cat, src, dst, proto, raw, source) =
            (s("sensor"), s("alert_signature"), s("alert_category"), s("src_ip"), s("dest_ip"), s("proto"), s("raw"), s("source"));
        let sid = col::<Int64Array>(b, "alert_signature_id");
        let sev = col::<Int32Array>(b, "alert_severity");
        let (sp, dp) = (col::<Int32Array>(b, "src_port"), col::<Int32Array>(b, "dest_port"));
        let flow = col::<Int64Array>(b, "flow_id");
        let (cid, app, action) = (s("community_id"), s("app_proto"), s("alert_action"));
        let (gid, rev) = (col::<Int64Array>(b, "alert_gid"), col::<Int64Array>(b, "alert_rev"));
        let str_at = |a: &StringArray, i: usize| if a.is_valid(i) { a.value(i).to_string() } else { String::new() };
        let i32_at = |a: &Int32Array, i: usize| a.is_valid(i).then(|| a.value(i));

        // The alerts, their event time through the watermark, and their flow context.
        let mut alerts = Vec::with_capacity(n);
        let mut lates = Vec::with_capacity(n);
        for (i, &hour) in hours.iter().enumerate().take(n) {
            let event_ts = if ts.is_valid(i) { ts.value(i) } else { hour * 3_600_000_000 };
            let mut a = AlertRecord {
                alert_id: alert_id(source.value(i), raw.value(i)),
                ts_us: event_ts,
                sensor: str_at(sensor, i),
                signature_id: if sid.is_valid(i) { sid.value(i) } else { 0 },
                signature: str_at(sig, i),
                category: str_at(cat, i),
                severity: i32_at(sev, i).unwrap_or(3),
                src_ip: str_at(src, i),
                src_port: i32_at(sp, i),
                dest_ip: str_at(dst, i),
                dest_port: i32_at(dp, i),
                proto: str_at(proto, i),
                flow_id: flow.is_valid(i).then(|| flow.value(i)),
                community_id: str_at(cid, i),
                app_proto: str_at(app, i),
                action: str_at(action, i),
                gid: gid.is_valid(i).then(|| gid.value(i)),
                rev: rev.is_valid(i).then(|| rev.value(i)),
                fields: None,
            };
            self.counts.alerts += 1;
            // Known before the batch's context events: a flow that ends in this batch
            // keeps its context for these alerts.
            self.ctx.note_alert(a.ts_us, a.flow_id, &a.alert_id);
            let o = self.wm.observe(a.ts_us, now_us);
            self.counts.clamped += o.clamped as u64;
            self.counts.late += o.late as u64;
            a.ts_us = o.ts_us;
            alerts.push(a);
            lates.push(o.late);
        }
        // The batch's context events, before and after the alerts, count for them.
        self.observe_context(input.context.as_ref(), &mut out);
        if self.needs_fields {
            for a in &mut alerts {
                a.fields = Some(Box::new(self.alert_fields(a)));
            }
        }
        let mut summaries = Vec::with_capacity(n);
        for a in &alerts {
            let summary = self.ctx.summary(a.flow_id, Some(&a.src_ip), Some(&a.dest_ip));
            if summary.is_some() {
                self.ctx.note_found();
            }
            summaries.push(summary);
        }
        let advance = self.advance_target(now_us);
        let alerts = Arc::new(alerts);
        let lates = Arc::new(lates);
        let merged = self.shards.run(alerts.clone(), lates.clone(), advance);

        out.alerts.reserve(n);
        // The shards are done with the alerts: take them back rather than copy each one
        // (a copy only if a shard thread still holds its reference).
        let alerts = Arc::try_unwrap(alerts).unwrap_or_else(|shared| (*shared).clone());
        for (j, ((a, offered), decision)) in alerts.into_iter().zip(merged.offered).zip(merged.decisions).enumerate() {
            let joined: Vec<String> = offered.joined.into_iter().map(|(_, id)| id).collect();
            // The incident's context: its alerts' flows, from the one that opened it on
            // (the entry goes with its close).
            for id in &joined {
                let c = self.incident_ctx.entry_or_default(id.clone());
                self.ctx.add_to(c, a.flow_id);
            }
            let late_output = decision.is_none() && (self.late_policy == LatePolicy::LateOutput || offered.late_output);
            self.counts.late_output += late_output as u64;
            out.alerts.push(Decided { record: a, late: lates[j], decision, joined, context: summaries[j].take(), late_output });
        }
        out.rows = input.alerts;
        self.settle(merged.rollups, merged.changes, &mut out);
        out
    }

    /// What the flow context knows of a flow's events (for enrichment and scoring).
    pub fn flow_views(&self, flow_id: Option<i64>) -> Vec<ContextView<'_>> {
        self.ctx.flow_views(flow_id)
    }

    /// Whether the batch's context events are looked at.
    pub fn context_enabled(&self) -> bool {
        self.ctx.enabled()
    }

    /// Advances event time by the wall clock alone (idle sources): due roll-ups and
    /// incident closes.
    pub fn advance(&mut self, now_us: i64, out: &mut StateOutput) {
        if let Some(w) = self.advance_target(now_us) {
            let m = self.shards.run(Arc::new(Vec::new()), Arc::new(Vec::new()), Some(w));
            self.settle(m.rollups, m.changes, out);
        }
    }

    /// The watermark to move the shards to, when it moved a step since the last time.
    fn advance_target(&mut self, now_us: i64) -> Option<i64> {
        let w = self.wm.current(now_us)?;
        if w < self.advanced_to.saturating_add(ADVANCE_STEP_US) {
            return None;
        }
        self.advanced_to = w;
        self.ctx.advance(w);
        Some(w)
    }

    /// Everything still open is flushed (end of a replay): pending roll-ups and closes.
    pub fn flush(&mut self, out: &mut StateOutput) {
        let m = self.shards.run(Arc::new(Vec::new()), Arc::new(Vec::new()), Some(i64::MAX));
        self.settle(m.rollups, m.changes, out);
    }

    /// Roll-ups and incident changes with each incident's context as it stands.
    fn settle(&mut self, rollups: Vec<Rollup>, changes: Vec<IncidentEvent>, out: &mut StateOutput) {
        self.counts.rollups += rollups.len() as u64;
        out.rollups.extend(rollups);
        for c in changes {
            // An incident's context starts when it opens and is complete when it closes.
            let context = match c.status {
                Status::Open => self.incident_ctx.entry_or_default(c.id.clone()).to_json(),
                Status::Updated => self.incident_ctx.get(&c.id).map_or(serde_json::Value::Null, IncidentContext::to_json),
                // A correction carries the late alert's context alone.
                Status::Closed | Status::Corrected => self.incident_ctx.remove(&c.id).map_or(serde_json::Value::Null, |x| x.to_json()),
            };
            out.changes.push(Change { event: c, context });
        }
    }

    /// The whole state as JSON (saved with every commit).
    pub fn snapshot(&mut self) -> String {
        super::snapshot_text(|w| self.snapshot_to(w, |_| Ok(())))
    }

    /// Whether a snapshot can be a delta (see `event::delta`): changes are tracked and the
    /// state has one shard.
    pub fn writes_changes(&self) -> bool {
        self.tracking && self.shards.writes_changes()
    }

    /// The whole snapshot written to `w` as it is serialized: the parts are large (every
    /// key and group), so they go straight from the maps to the file; changes are tracked
    /// from here. `more` writes further members of the object (each starting with a
    /// comma): the rest of the alert path saves its part in the same file.
    pub fn snapshot_to(&mut self, w: &mut dyn std::io::Write, more: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> std::io::Result<()> {
        let watermark = serde_json::to_string(&self.wm).map_err(std::io::Error::other)?;
        write!(w, "{{\"version\":1,\"watermark\":{watermark},")?;
        self.shards.snapshot_to(w)?;
        // The flow context is a cache of recent traffic, rebuilt by the traffic after a
        // restart: not saved.
        w.write_all(b",\"incident_context\":")?;
        serde_json::to_writer(&mut *w, &self.incident_ctx).map_err(std::io::Error::other)?;
        more(w)?;
        w.write_all(b"}")?;
        self.track_changes();
        Ok(())
    }

    /// What changed since the last snapshot (a delta, member `delta`; see
    /// [`StateStage::writes_changes`]), copied out of the maps to be written later, on
    /// another thread. `more` adds further members (each starting with a comma).
    pub fn take_changes(&mut self, more: impl FnOnce(&mut Deferred)) -> std::io::Result<Deferred> {
        let watermark = serde_json::to_string(&self.wm).map_err(std::io::Error::other)?;
        let mut d = Deferred::default();
        d.text(format!("{{\"version\":1,\"delta\":true,\"watermark\":{watermark},").as_bytes());
        d.part(self.shards.take_changes()?);
        d.text(b",\"incident_context\":");
        d.part(self.incident_ctx.take_changes());
        more(&mut d);
        d.text(b"}");
        Ok(d)
    }

    /// Copies up to `budget` entries of the snapshot capture under way (see
    /// `event::delta`); whether it is finished.
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        self.shards.capture_step(budget) && self.incident_ctx.capture_step(budget)
    }

    /// Tracks what changes from now on (the state as it is was saved, restored, or is empty).
    pub fn track_changes(&mut self) {
        self.shards.track();
        self.incident_ctx.track();
        self.tracking = true;
    }

    pub fn restore(&mut self, text: &str) -> Result<(), serde_json::Error> {
        self.restore_members(&Members::parse(text)?)
    }

    /// Restores from a snapshot's members (those other than the state's are ignored), or
    /// applies a delta to the state restored so far.
    pub fn restore_members(&mut self, v: &Members) -> Result<(), serde_json::Error> {
        self.wm = self.wm.restored(v.get("watermark")?);
        if v.flag("delta") {
            self.shards.apply_changes(&v.members("dedup")?, &v.members("correlation")?)?;
            return self.incident_ctx.apply_changes(&v.members("incident_context")?);
        }
        self.shards.restore(&v.members("dedup")?, &v.members("correlation")?)?;
        if !v.is_null("incident_context") {
            self.incident_ctx = v.get("incident_context")?;
        }
        Ok(())
    }

    /// Remembers the context events of a batch (before its alerts look for context). A
    /// flow that raised alerts and ends here is reported with its final context.
    fn observe_context(&mut self, rows: Option<&ContextRows>, out: &mut StateOutput) {
        let Some(c) = rows.filter(|_| self.ctx.enabled()) else { return };
        for r in c.rows() {
            if let Some(end) = self.ctx.observe_encoded(r.ts_us, r.flow_id, r.src_ip, r.dest_ip, r.context) {
                out.flow_ends.push(end);
            }
        }
    }

    pub fn context_counts(&self) -> super::context::ContextCounts {
        self.ctx.counts
    }

    pub fn context_bytes(&self) -> usize {
        self.ctx.bytes()
    }

    pub fn dedup_counts(&self) -> super::dedup::DedupCounts {
        self.shards.dedup_counts()
    }

    pub fn correlation_counts(&self) -> super::correlate::CorrelationCounts {
        self.shards.correlation_counts()
    }

    /// Threads the keys and groups are partitioned over.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}
