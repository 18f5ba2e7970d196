//! The state stage: event batches in (in archive order), `alerts` and `incidents` table
//! batches and JSONL notifications out.
//!
//! For every `alert` row of a batch: the watermark decides whether it is late; on-time
//! alerts go through dedup and the correlation rules; every alert becomes one row of the
//! `alerts` table (the event columns plus `alert_id`, `dedup_key`, `dedup_count`,
//! `suppressed`, `late`, `incident_id`), every incident change one row of `incidents`.
//! Alerts that go on (first of their key, or escalated), roll-ups and incident changes
//! are also rendered as JSON lines for downstream tools; the archive writes them once
//! the commit holding them has landed.
//!
//! The whole state (watermark, dedup keys, correlation groups) is saved with every commit
//! ([`StateStage::snapshot`]) and restored at start, so a restart continues where the
//! archive stands: nothing re-notified, no incident forgotten.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, BooleanArray, BooleanBuilder, Int32Array, Int32Builder, Int64Array, Int64Builder, ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::json;

use std::collections::HashMap;

use super::context::{ContextConfig, FlowContext, IncidentContext};
use crate::event::json::{json_list, JsonObject};
use super::correlate::{IncidentEvent, Rule, Status};
use super::shard::Shards;
use super::dedup::{Decision, DedupConfig, Rollup};
use super::watermark::Watermark;
use super::{AlertRecord, LatePolicy};
use crate::enrich::{Enricher, Enrichment};
use crate::score::vars::{AlertVars, Decided};
use crate::score::{Scored, Scorer};
use crate::event::time::hour_bucket;
use crate::event::{events_schema, EventBatch};

#[derive(Debug, Clone)]
pub struct StateConfig {
    pub enabled: bool,
    pub allowed_lateness_us: i64,
    pub max_future_us: i64,
    pub idle_us: i64,
    pub dedup: DedupConfig,
    pub rules: Vec<Rule>,
    pub max_groups: usize,
    pub context: ContextConfig,
    /// The policy for late alerts in dedup, and the default of the rules.
    pub late_policy: LatePolicy,
    /// Threads the dedup keys and correlation groups are partitioned over (1: the state
    /// thread alone).
    pub shards: usize,
    /// Enrichment and scoring of every alert; `None`: off.
    pub enrich: Option<crate::enrich::EnrichRuntime>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self { enabled: true, allowed_lateness_us: 60_000_000, max_future_us: 300_000_000, idle_us: 30_000_000, dedup: DedupConfig::default(), rules: Vec::new(), max_groups: 100_000, context: ContextConfig::default(), late_policy: LatePolicy::default(), shards: 1, enrich: None }
    }
}

/// Event time between two walks over the dedup keys and correlation groups: roll-ups
/// and closes are at most this late.
pub const ADVANCE_STEP_US: i64 = 10_000_000;

/// Columns the `alerts` table adds to the event columns.
pub const ALERT_COLUMNS: [&str; 22] = [
    "alert_id", "dedup_key", "dedup_count", "suppressed", "late", "incident_id", "flow_context",
    "src_country", "src_asn", "src_as_org", "src_asset", "dest_country", "dest_asn", "dest_as_org", "dest_asset",
    "intel", "enrichment", "score", "priority", "reasons", "recommendations", "source_versions",
];

fn str_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The `alerts` table: every event column, then [`ALERT_COLUMNS`].
pub fn alerts_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let mut fields: Vec<Field> = events_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("alert_id", DataType::Utf8, false));
        fields.push(Field::new("dedup_key", DataType::Utf8, true));
        fields.push(Field::new("dedup_count", DataType::Int64, true));
        fields.push(Field::new("suppressed", DataType::Boolean, false));
        fields.push(Field::new("late", DataType::Boolean, false));
        fields.push(Field::new("incident_id", DataType::Utf8, true));
        fields.push(Field::new("flow_context", DataType::Utf8, true));
        for side in ["src", "dest"] {
            fields.push(Field::new(format!("{side}_country"), DataType::Utf8, true));
            fields.push(Field::new(format!("{side}_asn"), DataType::Int64, true));
            fields.push(Field::new(format!("{side}_as_org"), DataType::Utf8, true));
            fields.push(Field::new(format!("{side}_asset"), DataType::Utf8, true));
        }
        fields.push(Field::new("intel", DataType::Utf8, true));
        fields.push(Field::new("enrichment", DataType::Utf8, true));
        fields.push(Field::new("score", DataType::Int32, true));
        fields.push(Field::new("priority", DataType::Utf8, true));
        fields.push(Field::new("reasons", DataType::Utf8, true));
        fields.push(Field::new("recommendations", DataType::Utf8, true));
        fields.push(Field::new("source_versions", str_list(), true));
        Arc::new(Schema::new(fields))
    })
    .clone()
}

/// The `incidents` table: one row per incident change.
pub fn incidents_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("incident_id", DataType::Utf8, false),
            Field::new("rule", DataType::Utf8, false),
            Field::new("group_key", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("first_seen", ts(), false),
            Field::new("last_seen", ts(), false),
            Field::new("alert_count", DataType::Int64, false),
            Field::new("alert_ids", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false),
            Field::new("context", DataType::Utf8, true),
            Field::new("score", DataType::Int32, true),
            Field::new("priority", DataType::Utf8, true),
            Field::new("reasons", DataType::Utf8, true),
            Field::new("recommendations", DataType::Utf8, true),
        ]))
    })
    .clone()
}

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

impl StateInput {
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

/// What one batch produced.
#[derive(Debug, Default)]
pub struct StateOutput {
    pub alerts: Option<EventBatch>,
    pub incidents: Option<EventBatch>,
    /// JSON lines for downstream tools (alerts that go on, roll-ups, incident changes).
    pub lines: Vec<String>,
    /// Late alerts kept out by the `late_output` policy.
    pub late_lines: Vec<String>,
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
    incident_ctx: HashMap<String, IncidentContext>,
    enricher: Option<Enricher>,
    scorer: Option<Arc<Scorer>>,
    /// Score, reasons and recommendations of each open incident (from its alerts).
    incident_scores: HashMap<String, IncidentScore>,
    pub counts: StateCounts,
    pub score_counts: ScoreCounts,
}

/// Scoring since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScoreCounts {
    /// Alerts by priority: info, low, medium, high, critical.
    pub by_priority: [u64; 5],
    /// Rule evaluations that failed (counted, the rule does not match).
    pub rule_errors: u64,
}

/// A stable id for an alert: 16 hex digits of xxh3 over its source and raw line.
pub fn alert_id(source: &str, raw: &str) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(source.as_bytes());
    h.update(&[0]);
    h.update(raw.as_bytes());
    format!("{:016x}", h.digest())
}

/// An alert's notification line: `kind`, the alert's fields, what `more` adds, and its
/// flow context.
fn alert_line(kind: &str, a: &AlertRecord, context: Option<&str>, more: impl FnOnce(&mut JsonObject<'_>)) -> String {
    let mut line = String::with_capacity(512);
    let mut o = JsonObject::open(&mut line);
    o.str("type", kind);
    alert_fields(&mut o, a);
    more(&mut o);
    if let Some(c) = context {
        o.raw("flow_context", c);
    }
    o.close();
    line
}

/// The fields every alert line has.
fn alert_fields(o: &mut JsonObject<'_>, a: &AlertRecord) {
    o.str("alert_id", &a.alert_id);
    o.str("timestamp", &iso(a.ts_us));
    o.str("sensor", &a.sensor);
    o.int("signature_id", a.signature_id);
    o.str("signature", &a.signature);
    o.str("category", &a.category);
    o.int("severity", a.severity as i64);
    o.str("src_ip", &a.src_ip);
    o.opt_int("src_port", a.src_port.map(i64::from));
    o.str("dest_ip", &a.dest_ip);
    o.opt_int("dest_port", a.dest_port.map(i64::from));
    o.str("proto", &a.proto);
    o.opt_int("flow_id", a.flow_id);
}

fn iso(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map(|t| t.to_string()).unwrap_or_default()
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).expect("events schema column")
}

impl StateStage {
    pub fn new(cfg: &StateConfig) -> Self {
        Self {
            advanced_to: i64::MIN,
            wm: Watermark::new(cfg.allowed_lateness_us, cfg.max_future_us, cfg.idle_us),
            shards: Shards::new(cfg.shards, &cfg.dedup, &cfg.rules, cfg.max_groups, cfg.late_policy),
            ctx: FlowContext::new(cfg.context.clone()),
            incident_ctx: HashMap::new(),
            enricher: cfg.enrich.as_ref().filter(|r| r.config.enabled).map(|r| Enricher::new(r.sources.clone(), &r.config)),
            scorer: cfg.enrich.as_ref().and_then(|r| r.scorer.clone()),
            incident_scores: HashMap::new(),
            score_counts: ScoreCounts::default(),
            late_policy: cfg.late_policy,
            counts: StateCounts::default(),
        }
    }

    /// Runs the alerts of one event batch; `now_us` is the wall clock (injected).
    pub fn process(&mut self, events: &EventBatch, now_us: i64) -> StateOutput {
        self.process_input(StateInput::from_batch(events), now_us)
    }

    /// Runs what [`StateInput::from_batch`] took from a batch.
    pub fn process_input(&mut self, input: StateInput, now_us: i64) -> StateOutput {
        let mut out = StateOutput::default();
        let Some((b, hours)) = input.alerts.as_ref().map(|a| (&a.columns, &a.hours)) else {
            let snap = self.enricher.as_mut().map(Enricher::snapshot);
            self.observe_context(input.context.as_ref(), snap.as_ref(), &mut out);
            self.advance(now_us, &mut out);
            return out;
        };
        let n = b.num_rows();
        let ts = col::<TimestampMicrosecondArray>(b, "timestamp");
        let s = |name: &str| col::<StringArray>(b, name);
        let (sensor, sig, cat, src, dst, proto, raw, source) = (s("sensor"), s("alert_signature"), s("alert_category"), s("src_ip"), s("dest_ip"), s("proto"), s("raw"), s("source"));
        let sid = col::<Int64Array>(b, "alert_signature_id");
        let sev = col::<Int32Array>(b, "alert_severity");
        let (sp, dp) = (col::<Int32Array>(b, "src_port"), col::<Int32Array>(b, "dest_port"));
        let flow = col::<Int64Array>(b, "flow_id");
        let str_at = |a: &StringArray, i: usize| if a.is_valid(i) { a.value(i).to_string() } else { String::new() };
        let i32_at = |a: &Int32Array, i: usize| a.is_valid(i).then(|| a.value(i));

        // The alerts, their event time through the watermark, and their flow context.
        let mut ids = StringBuilder::with_capacity(n, n * 16);
        let mut context = StringBuilder::new();
        let mut alerts = Vec::with_capacity(n);
        let mut lates = Vec::with_capacity(n);
        let mut summaries = Vec::with_capacity(n);
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
            };
            self.counts.alerts += 1;
            ids.append_value(&a.alert_id);
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
        let snap = self.enricher.as_mut().map(Enricher::snapshot);
        self.observe_context(input.context.as_ref(), snap.as_ref(), &mut out);
        for a in &alerts {
            let summary = self.ctx.summary(a.flow_id, Some(&a.src_ip), Some(&a.dest_ip));
            match &summary {
                Some(v) => {
                    self.ctx.note_found();
                    context.append_value(v);
                }
                None => context.append_null(),
            }
            summaries.push(summary);
        }
        let advance = self.advance_target(now_us);
        let alerts = Arc::new(alerts);
        let lates = Arc::new(lates);
        let merged = self.shards.run(alerts.clone(), lates.clone(), advance);

        let mut keys = StringBuilder::new();
        let mut dcount = Int64Builder::with_capacity(n);
        let mut suppressed = BooleanBuilder::with_capacity(n);
        let mut late = BooleanBuilder::with_capacity(n);
        let mut incident = StringBuilder::new();
        let mut scored_cols = ScoredColumns::new(n);
        for (j, ((a, offered), decision)) in alerts.iter().zip(merged.offered).zip(merged.decisions).enumerate() {
            let (is_late, summary) = (lates[j], &summaries[j]);
            let joined: Vec<String> = offered.joined.into_iter().map(|(_, id)| id).collect();
            // The incident's context: its alerts' flows, from the one that opened it on
            // (the entry goes with its close).
            for id in &joined {
                let c = self.incident_ctx.entry(id.clone()).or_default();
                self.ctx.add_to(c, a.flow_id);
            }
            late.append_value(is_late);
            incident.append_option(joined.first());
            // Enrichment and score, from what dedup decided.
            let (dkey, dcount_v, dkind) = match &decision {
                None => (None, 0, "late"),
                Some(Decision::First { key }) => (Some(key.as_str()), 1, "first"),
                Some(Decision::Escalated { key, count }) => (Some(key.as_str()), *count as i64, "escalated"),
                Some(Decision::Suppressed { key, count }) => (Some(key.as_str()), *count as i64, "suppressed"),
            };
            let _ = dkey;
            let views = if self.enricher.is_some() || self.scorer.is_some() { self.ctx.flow_views(a.flow_id) } else { Vec::new() };
            let enrichment = match (&mut self.enricher, &snap) {
                (Some(en), Some(sn)) => en.enrich(sn, a, &views),
                _ => Enrichment::default(),
            };
            let scored = self.scorer.as_ref().map(|sc| sc.score(&AlertVars { alert: a, enrichment: &enrichment, decided: Decided { dedup_count: dcount_v, decision: dkind, late: is_late, incidents: &joined }, around: &views }));
            drop(views);
            if let Some(sc) = &scored {
                self.score_counts.by_priority[sc.priority.unwrap_or(crate::score::Priority::Info) as usize] += 1;
                self.score_counts.rule_errors += sc.errors as u64;
                for id in &joined {
                    self.incident_scores.entry(id.clone()).or_default().add(sc);
                }
            }
            let rendered = scored_cols.push(self.enricher.is_some(), &enrichment, scored.as_ref());
            let Some(decision) = decision else {
                // Late and kept out of dedup by the policy (and out of the rules with the
                // same policy).
                if self.late_policy == LatePolicy::LateOutput || offered.late_output {
                    self.counts.late_output += 1;
                    out.late_lines.push(alert_line("late_alert", a, summary.as_deref(), |o| {
                        o.strs("incident_ids", &joined);
                        rendered.write(o);
                    }));
                }
                keys.append_null();
                dcount.append_null();
                suppressed.append_value(false);
                continue;
            };
            let (key, count, held, kind) = match &decision {
                Decision::First { key } => (key.as_str(), 1, false, "first"),
                Decision::Escalated { key, count } => (key.as_str(), *count, false, "escalated"),
                Decision::Suppressed { key, count } => (key.as_str(), *count, true, "suppressed"),
            };
            keys.append_value(key);
            dcount.append_value(count as i64);
            suppressed.append_value(held);
            if !held {
                out.lines.push(alert_line("alert", a, summary.as_deref(), |o| {
                    o.str("dedup_key", key);
                    o.int("dedup_count", count as i64);
                    o.str("decision", kind);
                    o.strs("incident_ids", &joined);
                    rendered.write(o);
                }));
            }
        }
        let mut columns: Vec<ArrayRef> = b.columns().to_vec();
        columns.push(Arc::new(ids.finish()));
        columns.push(Arc::new(keys.finish()));
        columns.push(Arc::new(dcount.finish()));
        columns.push(Arc::new(suppressed.finish()));
        columns.push(Arc::new(late.finish()));
        columns.push(Arc::new(incident.finish()));
        columns.push(Arc::new(context.finish()));
        columns.extend(scored_cols.finish());
        let hours = input.alerts.map(|a| a.hours).unwrap_or_default();
        out.alerts = Some(EventBatch { columns: RecordBatch::try_new(alerts_schema(), columns).expect("alerts schema"), hours, context: None });
        self.render(merged.rollups, merged.changes, &mut out);
        out
    }

    /// Advances event time by the wall clock alone (idle sources): due roll-ups and
    /// incident closes.
    pub fn advance(&mut self, now_us: i64, out: &mut StateOutput) {
        if let Some(w) = self.advance_target(now_us) {
            let m = self.shards.run(Arc::new(Vec::new()), Arc::new(Vec::new()), Some(w));
            self.render(m.rollups, m.changes, out);
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
        self.render(m.rollups, m.changes, out);
    }

    fn render(&mut self, rollups: Vec<Rollup>, changes: Vec<IncidentEvent>, out: &mut StateOutput) {
        self.counts.rollups += rollups.len() as u64;
        for r in &rollups {
            out.lines.push(
                json!({
                    "type": "rollup", "dedup_key": r.key, "first_seen": iso(r.first_us), "last_seen": iso(r.last_us),
                    "count": r.count, "suppressed": r.suppressed, "dest_ports": r.dest_ports, "sensors": r.sensors, "reason": r.reason,
                })
                .to_string(),
            );
        }
        if changes.is_empty() {
            return;
        }
        let n = changes.len();
        let mut id = StringBuilder::new();
        let mut rule = StringBuilder::new();
        let mut group = StringBuilder::new();
        let mut status = StringBuilder::new();
        let mut first = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut last = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut count = Int64Builder::with_capacity(n);
        let mut members = ListBuilder::new(StringBuilder::new());
        let mut context = StringBuilder::new();
        let mut score = Int32Builder::with_capacity(n);
        let mut priority = StringBuilder::new();
        let mut reasons = StringBuilder::new();
        let mut recs = StringBuilder::new();
        let mut hours = Vec::with_capacity(n);
        for c in &changes {
            let sc = match c.status {
                Status::Closed | Status::Corrected => self.incident_scores.remove(&c.id),
                _ => self.incident_scores.get(&c.id).cloned(),
            };
            let th = self.scorer.as_ref().map(|s| s.thresholds);
            let (sc_score, sc_prio, sc_reasons, sc_recs) = match (&sc, th) {
                (Some(x), Some(th)) => (Some(x.score as i32), Some(th.priority(x.score as f64).as_str()), Some(reasons_json(&x.reasons)), Some(recommendations_json(&x.recommendations))),
                _ => (None, None, None, None),
            };
            score.append_option(sc_score);
            priority.append_option(sc_prio);
            reasons.append_option(sc_reasons.as_deref());
            recs.append_option(sc_recs.as_deref());
            // An incident's context starts when it opens and is complete when it closes.
            let ctx = match c.status {
                Status::Open => self.incident_ctx.entry(c.id.clone()).or_default().to_json(),
                Status::Updated => self.incident_ctx.get(&c.id).map_or(serde_json::Value::Null, IncidentContext::to_json),
                // A correction carries the late alert's context alone.
                Status::Closed | Status::Corrected => self.incident_ctx.remove(&c.id).map_or(serde_json::Value::Null, |x| x.to_json()),
            };
            if ctx.is_null() {
                context.append_null();
            } else {
                context.append_value(ctx.to_string());
            }
            id.append_value(&c.id);
            rule.append_value(&c.rule);
            group.append_value(&c.group_key);
            status.append_value(c.status.as_str());
            first.append_value(c.first_us);
            last.append_value(c.last_us);
            count.append_value(c.alert_count as i64);
            for m in &c.alert_ids {
                members.values().append_value(m);
            }
            members.append(true);
            hours.push(hour_bucket(c.last_us));
            out.lines.push(
                json!({
                    "type": "incident", "incident_id": c.id, "rule": c.rule, "group_key": c.group_key, "status": c.status.as_str(),
                    "first_seen": iso(c.first_us), "last_seen": iso(c.last_us), "alert_count": c.alert_count, "alert_ids": c.alert_ids, "context": ctx,
                    "score": sc_score, "priority": sc_prio,
                    "reasons": sc_reasons.as_deref().map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap_or_default()),
                    "recommendations": sc_recs.as_deref().map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap_or_default()),
                })
                .to_string(),
            );
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(rule.finish()),
            Arc::new(group.finish()),
            Arc::new(status.finish()),
            Arc::new(first.finish()),
            Arc::new(last.finish()),
            Arc::new(count.finish()),
            Arc::new(members.finish()),
            Arc::new(context.finish()),
            Arc::new(score.finish()),
            Arc::new(priority.finish()),
            Arc::new(reasons.finish()),
            Arc::new(recs.finish()),
        ];
        let batch = EventBatch { columns: RecordBatch::try_new(incidents_schema(), columns).expect("incidents schema"), hours, context: None };
        out.incidents = Some(match out.incidents.take() {
            None => batch,
            Some(prev) => {
                let mut hours = prev.hours;
                hours.extend(batch.hours);
                EventBatch { columns: arrow::compute::concat_batches(&incidents_schema(), [&prev.columns, &batch.columns]).expect("same schema"), hours, context: None }
            }
        });
    }

    /// The whole state as JSON (saved with every commit).
    pub fn snapshot(&mut self) -> String {
        super::snapshot_text(|w| self.snapshot_to(w))
    }

    /// [`StateStage::snapshot`] written to `w` as it is serialized: the parts are large
    /// (every key and group), so they go straight from the maps to the file.
    pub fn snapshot_to(&mut self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let watermark = serde_json::to_string(&self.wm).map_err(std::io::Error::other)?;
        write!(w, "{{\"version\":1,\"watermark\":{watermark},")?;
        self.shards.snapshot_to(w)?;
        // The flow context is a cache of recent traffic, rebuilt by the traffic after a
        // restart: not saved.
        w.write_all(b",\"incident_context\":")?;
        serde_json::to_writer(&mut *w, &self.incident_ctx).map_err(std::io::Error::other)?;
        w.write_all(b"}")
    }

    /// Saves the snapshot to `path` durably (temporary file, fsync, rename, fsync of the
    /// directory).
    pub fn save_snapshot(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let tmp = path.with_extension("json.tmp");
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        self.snapshot_to(&mut w)?;
        w.flush()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    pub fn restore(&mut self, text: &str) -> Result<(), serde_json::Error> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        self.wm = serde_json::from_value(v["watermark"].clone())?;
        self.shards.restore(&v["dedup"], &v["correlation"])?;
        if !v["incident_context"].is_null() {
            self.incident_ctx = serde_json::from_value(v["incident_context"].clone())?;
        }
        Ok(())
    }

    /// Remembers the context events of a batch (before its alerts look for context). A
    /// flow that raised alerts and ends here yields a `flow_context` line.
    fn observe_context(&mut self, rows: Option<&ContextRows>, snap: Option<&crate::enrich::Snapshot>, out: &mut StateOutput) {
        let Some(c) = rows.filter(|_| self.ctx.enabled()) else { return };
        if let (Some(en), Some(snap)) = (self.enricher.as_mut(), snap) {
            // Indicators in traffic that raised no alert.
            let (ts, flow, src, dst, ctx) = (&c.timestamp, &c.flow_id, &c.src_ip, &c.dest_ip, &c.context);
            for i in (0..ctx.len()).filter(|&i| ctx.is_valid(i)) {
                let t = if ts.is_valid(i) { ts.value(i) } else { c.hours[i] * 3_600_000_000 };
                let view = crate::event::batch::decode_context(ctx.value(i));
                let view = view.filter(|v| v.kind != crate::event::ContextKind::Flow && v.kind != crate::event::ContextKind::Anomaly);
                let (s_ip, d_ip) = (src.is_valid(i).then(|| src.value(i)), dst.is_valid(i).then(|| dst.value(i)));
                if let Some(line) = en.sighting(snap, t, flow.is_valid(i).then(|| flow.value(i)), s_ip, d_ip, view.as_ref()) {
                    out.lines.push(line);
                }
            }
        }
        fn opt(a: &StringArray, i: usize) -> Option<&str> {
            a.is_valid(i).then(|| a.value(i))
        }
        let (ts, flow, src, dst, ctx) = (&c.timestamp, &c.flow_id, &c.src_ip, &c.dest_ip, &c.context);
        for i in (0..ctx.len()).filter(|&i| ctx.is_valid(i)) {
            let t = if ts.is_valid(i) { ts.value(i) } else { c.hours[i] * 3_600_000_000 };
            let id = flow.is_valid(i).then(|| flow.value(i));
            if let Some(end) = self.ctx.observe_encoded(t, id, opt(src, i), opt(dst, i), ctx.value(i)) {
                let mut line = String::with_capacity(256 + end.summary.len());
                let mut o = JsonObject::open(&mut line);
                o.str("type", "flow_context");
                o.int("flow_id", end.flow_id);
                o.strs("alert_ids", &end.alert_ids);
                o.raw("flow_context", &end.summary);
                o.close();
                out.lines.push(line);
            }
        }
    }

    pub fn enrich_counts(&self) -> Option<crate::enrich::EnrichCounts> {
        self.enricher.as_ref().map(|e| e.counts)
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

/// What an incident's alerts scored: the highest score, every rule that matched (its
/// highest score and first reason) and every recommendation (first evidence).
#[derive(Debug, Clone, Default)]
struct IncidentScore {
    score: u8,
    reasons: Vec<crate::score::Reason>,
    recommendations: Vec<crate::score::Recommendation>,
}

const MAX_INCIDENT_REASONS: usize = 32;

impl IncidentScore {
    fn add(&mut self, s: &Scored) {
        self.score = self.score.max(s.score);
        for r in &s.reasons {
            let full = self.reasons.len() >= MAX_INCIDENT_REASONS;
            match self.reasons.iter_mut().find(|x| x.rule == r.rule) {
                Some(x) => x.score = x.score.max(r.score),
                None if !full => self.reasons.push(r.clone()),
                None => {}
            }
        }
        for r in &s.recommendations {
            if self.recommendations.len() < MAX_INCIDENT_REASONS && !self.recommendations.iter().any(|x| x.rule == r.rule) {
                self.recommendations.push(r.clone());
            }
        }
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

/// `[{"rule":…,"score":…,"reason":…}]`
pub fn reasons_json(rs: &[crate::score::Reason]) -> String {
    json_list(rs, |o, r| {
        o.str("rule", &r.rule);
        o.raw("score", &num(r.score));
        o.str("reason", &r.reason);
    })
}

/// `[{"rule":…,"actions":[…],"evidence":…}]`
pub fn recommendations_json(rs: &[crate::score::Recommendation]) -> String {
    json_list(rs, |o, r| {
        o.str("rule", &r.rule);
        o.strs("actions", &r.actions);
        o.str("evidence", &r.evidence);
    })
}

/// An alert's enrichment and score as JSON texts (for its line and its row).
#[derive(Debug, Default)]
struct Rendered {
    intel: Option<String>,
    enrichment: Option<String>,
    score: Option<(i32, &'static str)>,
    reasons: Option<String>,
    recommendations: Option<String>,
    versions: Option<Arc<[Arc<str>]>>,
}

impl Rendered {
    fn write(&self, o: &mut JsonObject<'_>) {
        if let Some((s, p)) = self.score {
            o.int("score", s as i64);
            o.str("priority", p);
        }
        for (k, v) in [("reasons", &self.reasons), ("recommendations", &self.recommendations), ("intel", &self.intel), ("enrichment", &self.enrichment)] {
            if let Some(v) = v {
                o.raw(k, v);
            }
        }
        if let Some(v) = &self.versions {
            if !v.is_empty() {
                o.strs("source_versions", v);
            }
        }
    }
}

/// Builders of the enrichment and score columns of `alerts`.
struct ScoredColumns {
    country: [StringBuilder; 2],
    asn: [Int64Builder; 2],
    as_org: [StringBuilder; 2],
    asset: [StringBuilder; 2],
    intel: StringBuilder,
    enrichment: StringBuilder,
    score: Int32Builder,
    priority: StringBuilder,
    reasons: StringBuilder,
    recs: StringBuilder,
    versions: ListBuilder<StringBuilder>,
}

impl ScoredColumns {
    fn new(n: usize) -> Self {
        Self {
            country: [StringBuilder::new(), StringBuilder::new()],
            asn: [Int64Builder::with_capacity(n), Int64Builder::with_capacity(n)],
            as_org: [StringBuilder::new(), StringBuilder::new()],
            asset: [StringBuilder::new(), StringBuilder::new()],
            intel: StringBuilder::new(),
            enrichment: StringBuilder::new(),
            score: Int32Builder::with_capacity(n),
            priority: StringBuilder::new(),
            reasons: StringBuilder::new(),
            recs: StringBuilder::new(),
            versions: ListBuilder::new(StringBuilder::new()),
        }
    }

    fn push(&mut self, enriched: bool, e: &Enrichment, s: Option<&Scored>) -> Rendered {
        for (i, side) in [&e.src, &e.dest].into_iter().enumerate() {
            let place = side.geo.as_ref().and_then(|g| g.place.as_ref());
            let asn = side.geo.as_ref().and_then(|g| g.asn.as_ref());
            self.country[i].append_option(place.and_then(|p| p.country.as_deref()));
            self.asn[i].append_option(asn.and_then(|a| a.number).map(i64::from));
            self.as_org[i].append_option(asn.and_then(|a| a.organization.as_deref()));
            self.asset[i].append_option(side.asset.as_ref().map(|a| &*a.name));
        }
        let r = Rendered {
            intel: e.intel_json(),
            enrichment: e.details_json(),
            score: s.map(|s| (s.score as i32, s.priority_str())),
            reasons: s.map(|s| reasons_json(&s.reasons)),
            recommendations: s.map(|s| recommendations_json(&s.recommendations)),
            versions: enriched.then(|| e.versions.clone()),
        };
        self.intel.append_option(r.intel.as_deref());
        self.enrichment.append_option(r.enrichment.as_deref());
        self.score.append_option(r.score.map(|x| x.0));
        self.priority.append_option(r.score.map(|x| x.1));
        self.reasons.append_option(r.reasons.as_deref());
        self.recs.append_option(r.recommendations.as_deref());
        match &r.versions {
            Some(v) => {
                for x in v.iter() {
                    self.versions.values().append_value(x);
                }
                self.versions.append(true);
            }
            None => self.versions.append(false),
        }
        r
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        let mut out: Vec<ArrayRef> = Vec::new();
        for i in 0..2 {
            out.push(Arc::new(self.country[i].finish()));
            out.push(Arc::new(self.asn[i].finish()));
            out.push(Arc::new(self.as_org[i].finish()));
            out.push(Arc::new(self.asset[i].finish()));
        }
        out.push(Arc::new(self.intel.finish()));
        out.push(Arc::new(self.enrichment.finish()));
        out.push(Arc::new(self.score.finish()));
        out.push(Arc::new(self.priority.finish()));
        out.push(Arc::new(self.reasons.finish()));
        out.push(Arc::new(self.recs.finish()));
        out.push(Arc::new(self.versions.finish()));
        out
    }
}
