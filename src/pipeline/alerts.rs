//! The alert path: state → enrichment → scoring → rows and lines.
//!
//! In: what the state stage needs of each event batch ([`StateInput`]), in archive order,
//! and the wall clock. Out: the batch's `alerts` and `incidents` rows and its JSON lines
//! ([`AlertOutput`]). The state stage decides (watermark, dedup, correlation, flow
//! context); enrichment and scoring annotate each decided alert; `output` renders rows
//! and lines. An incident's score is kept here from its alerts' and saved with the state
//! in one snapshot, so a restart continues exactly where the newest commit stands.

use std::sync::Arc;

use arrow::array::{Array, AsArray};

use crate::enrich::{EnrichCounts, EnrichRuntime, Enricher, Enrichment, Snapshot};
use crate::event::alert::Rollup;
use crate::event::alert::{Decision, Status};
use crate::event::batch::decode_context;
use crate::event::delta::{write_json, write_list, Deferred, LruChanges, TrackedLru};
use crate::event::members::Members;
use crate::event::scored::{reasons_json, recommendations_json, Priority, Reason};
use crate::event::{ContextKind, EventBatch};
use crate::output::audit::{write_detail, Chain};
use crate::output::lines::{self, IncidentScoreText};
use crate::output::rows::{self, ActionRows, AlertRows, IncidentRows};
use crate::score::incident::IncidentScores;
use crate::score::vars::{AlertVars, Decided as Facts};
use crate::score::Scorer;
use crate::state::stage::{Change, ContextRows, StateConfig, StateInput, StateOutput, StateStage};
use crate::triage::{SideFacts, Triage, TriageConfig};

/// What one batch produced.
#[derive(Debug, Default)]
pub struct AlertOutput {
    pub alerts: Option<EventBatch>,
    pub incidents: Option<EventBatch>,
    /// JSON lines for downstream tools (alerts that go on, roll-ups, incident changes,
    /// flow contexts, indicator sightings).
    pub lines: Vec<String>,
    /// Late alerts kept out by the `late_output` policy.
    pub late_lines: Vec<String>,
    /// Audit records (hash-chained lines, see `output::audit`).
    pub audit: Vec<Arc<str>>,
    /// The same records as `actions` rows.
    pub actions: Option<EventBatch>,
}

/// Scoring since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScoreCounts {
    /// Alerts by priority: info, low, medium, high, critical.
    pub by_priority: [u64; 5],
    /// Rule evaluations that failed (counted, the rule does not match).
    pub rule_errors: u64,
}

pub struct AlertPath {
    state: StateStage,
    enricher: Option<Enricher>,
    scorer: Option<Arc<Scorer>>,
    /// Direction, stage, rarity, entity risk and behaviour; entity incidents.
    triage: Option<Triage>,
    /// Score, reasons and recommendations of each open incident (from its alerts).
    incidents: IncidentScores,
    pub score_counts: ScoreCounts,
    /// The audit trail's head (`None`: no trail).
    audit: Option<Chain>,
    /// Records a restored snapshot of an earlier version held.
    audit_recovered: Vec<String>,
    /// `actions` rows of the records made in this call.
    action_rows: ActionRows,
    /// Where the count of open incidents goes for the stats line.
    run_stats: Option<Arc<crate::event::stats::PipelineStats>>,
    /// Signature text and priority of the alert line each recent dedup key went out with,
    /// for the key's roll-ups (at most [`EMITTED_KEYS`]; an older key's roll-up carries
    /// its signature id and severity only).
    emitted: TrackedLru<String, (Arc<str>, Option<Priority>)>,
    /// What it was built from (an empty path of the same shape restores its snapshots).
    shape: Shape,
    /// Whether its JSON lines are read (an output file or an outbox takes them): when not,
    /// the alert, roll-up, incident and flow lines are not made.
    lines: bool,
}

/// The configuration an alert path's snapshots depend on: an empty path built from it
/// restores and writes them exactly as the path itself (see `snapshots::fold`).
#[derive(Debug, Clone)]
pub struct Shape {
    state: StateConfig,
    triage: Option<TriageConfig>,
}

impl Shape {
    /// An empty path of this shape, without enrichment, scoring or audit trail: it only
    /// holds state.
    pub fn empty(&self) -> AlertPath {
        let p = AlertPath::new(&self.state, None, None);
        match &self.triage {
            Some(t) => p.with_triage(t),
            None => p,
        }
    }
}

/// Dedup keys whose alert line's signature and priority are kept for their roll-ups.
const EMITTED_KEYS: usize = 65_536;

impl AlertPath {
    /// The path of `state`; enrichment when `enrich` is given and enabled, scoring when a
    /// scorer is.
    pub fn new(state: &StateConfig, enrich: Option<&EnrichRuntime>, scorer: Option<Arc<Scorer>>) -> Self {
        Self {
            state: StateStage::new(state),
            enricher: enrich.filter(|r| r.config.enabled).map(|r| Enricher::new(r.sources.clone(), &r.config)),
            scorer,
            triage: None,
            incidents: IncidentScores::default(),
            score_counts: ScoreCounts::default(),
            audit: None,
            audit_recovered: Vec::new(),
            action_rows: ActionRows::default(),
            run_stats: None,
            emitted: TrackedLru::new(std::num::NonZeroUsize::new(EMITTED_KEYS).expect("non-zero")),
            shape: Shape { state: state.clone(), triage: None },
            lines: true,
        }
    }

    /// Makes its JSON lines only when `on` (something reads them: `[state] output`,
    /// `late_output`, the outbox's triggers).
    pub fn with_lines(mut self, on: bool) -> Self {
        self.lines = on;
        self
    }

    /// What an empty path of the same shape is built from.
    pub fn shape(&self) -> Shape {
        self.shape.clone()
    }

    /// The run's counters, where the alert path keeps the number of open incidents.
    pub fn with_stats(mut self, stats: Arc<crate::event::stats::PipelineStats>) -> Self {
        self.run_stats = Some(stats);
        self
    }

    pub fn run_stats(&self) -> Option<&crate::event::stats::PipelineStats> {
        self.run_stats.as_deref()
    }

    /// Keeps the audit trail: every decision becomes a hash-chained record.
    pub fn with_audit(mut self, on: bool) -> Self {
        self.audit = on.then(Chain::default);
        self
    }

    /// The audit trail's head as restored (`None`: no trail).
    pub fn audit_chain(&self) -> Option<&Chain> {
        self.audit.as_ref()
    }

    /// The records a restored snapshot of an earlier version held (for the trail file to
    /// catch up), once.
    pub fn take_recovered_audit(&mut self) -> Vec<String> {
        std::mem::take(&mut self.audit_recovered)
    }

    fn audit(&mut self, out: &mut AlertOutput, ts_us: i64, kind: &str, subject: &str, detail: impl serde::Serialize) {
        self.audit_with(out, ts_us, kind, subject, |body| write_detail(body, &detail));
    }

    /// [`AlertPath::audit`] with the detail object written by `detail` (see
    /// [`Chain::record_with`]).
    fn audit_with(&mut self, out: &mut AlertOutput, ts_us: i64, kind: &str, subject: &str, detail: impl FnOnce(&mut String)) {
        if let Some(c) = self.audit.as_mut() {
            let r = c.record_with(ts_us, kind, subject, detail);
            self.action_rows.push(&r, kind, subject);
            out.audit.push(r.line.into());
        }
    }

    /// Adds triage (when enabled): entity, stage and risk of every alert, entity incidents.
    pub fn with_triage(mut self, cfg: &TriageConfig) -> Self {
        self.triage = cfg.enabled.then(|| Triage::new(cfg));
        self.shape.triage = cfg.enabled.then(|| cfg.clone());
        self
    }

    /// Triage's counts and entities held.
    pub fn triage(&self) -> Option<&Triage> {
        self.triage.as_ref()
    }

    /// Runs the alerts of one event batch; `now_us` is the wall clock (injected).
    pub fn process(&mut self, events: &EventBatch, now_us: i64) -> AlertOutput {
        self.process_input(StateInput::from_batch(events), now_us)
    }

    /// Runs what [`StateInput::from_batch`] took from a batch.
    pub fn process_input(&mut self, input: StateInput, now_us: i64) -> AlertOutput {
        let snap = self.enricher.as_mut().map(Enricher::snapshot);
        let mut out = AlertOutput::default();
        self.sightings(input.context.as_ref(), snap.as_ref(), &mut out);
        let st = self.state.process_input(input, now_us);
        self.finish(st, snap.as_ref(), &mut out, false);
        out
    }

    /// Advances event time by the wall clock alone (idle sources): due roll-ups and
    /// incident closes.
    pub fn advance(&mut self, now_us: i64, out: &mut AlertOutput) {
        let mut st = StateOutput::default();
        self.state.advance(now_us, &mut st);
        self.finish(st, None, out, false);
    }

    /// Everything still open is flushed (end of a replay): pending roll-ups and closes.
    pub fn flush(&mut self, out: &mut AlertOutput) {
        let mut st = StateOutput::default();
        self.state.flush(&mut st);
        self.finish(st, None, out, true);
    }

    /// Indicators in traffic that raised no alert: `intel_alert` lines.
    fn sightings(&mut self, rows: Option<&ContextRows>, snap: Option<&Snapshot>, out: &mut AlertOutput) {
        let (Some(en), Some(snap), Some(c)) = (self.enricher.as_mut(), snap, rows) else { return };
        if !self.state.context_enabled() || !en.watches_traffic(snap) {
            return;
        }
        for r in c.rows() {
            let view = decode_context(r.context).filter(|v| v.kind != ContextKind::Flow && v.kind != ContextKind::Anomaly);
            if let Some(line) = en.sighting(snap, r.ts_us, r.flow_id, r.src_ip, r.dest_ip, view.as_ref()) {
                out.lines.push(line);
            }
        }
    }

    /// Enriches, scores and renders what the state decided.
    fn finish(&mut self, st: StateOutput, snap: Option<&Snapshot>, out: &mut AlertOutput, flush: bool) {
        for end in st.flow_ends.iter().filter(|_| self.lines) {
            out.lines.push(lines::flow_context(end.flow_id, &end.alert_ids, &end.summary));
        }
        if let Some(events) = st.rows {
            let mut rows = AlertRows::new(st.alerts.len());
            let raw = events.columns.column_by_name("raw").and_then(|c| c.as_string_opt::<i32>()).cloned();
            for (i, d) in st.alerts.iter().enumerate() {
                let (count, kind) = match &d.decision {
                    None => (0, "late"),
                    Some(Decision::First { .. }) => (1, "first"),
                    Some(Decision::Escalated { count, .. }) => (*count as i64, "escalated"),
                    Some(Decision::Suppressed { count, .. }) => (*count as i64, "suppressed"),
                };
                let views = if self.enricher.is_some() || self.scorer.is_some() { self.state.flow_views(d.record.flow_id) } else { Vec::new() };
                let enrichment = match (&mut self.enricher, snap) {
                    (Some(en), Some(sn)) => en.enrich(sn, &d.record, &views),
                    _ => Enrichment::default(),
                };
                let line = raw.as_ref().filter(|r| i < r.len() && r.is_valid(i)).map(|r| r.value(i));
                let assessed = self.triage.as_mut().map(|t| {
                    t.assess_raw(&d.record, line, SideFacts { asset: enrichment.src.asset.as_deref() }, SideFacts { asset: enrichment.dest.asset.as_deref() })
                });
                // The entity incident first: it tells the alert's story.
                let joined: std::borrow::Cow<[String]> = match assessed.as_ref().and_then(|a| a.incident.clone()) {
                    Some(id) => std::iter::once(id).chain(d.joined.iter().cloned()).collect::<Vec<_>>().into(),
                    None => d.joined.as_slice().into(),
                };
                let facts = Facts { dedup_count: count, decision: kind, late: d.late, incidents: &joined };
                let scored = self
                    .scorer
                    .as_ref()
                    .map(|sc| sc.score(&AlertVars { alert: &d.record, enrichment: &enrichment, decided: facts, around: &views, triage: assessed.as_ref() }));
                drop(views);
                if let Some(sc) = &scored {
                    self.score_counts.by_priority[sc.priority.unwrap_or(Priority::Info) as usize] += 1;
                    self.score_counts.rule_errors += sc.errors as u64;
                    self.incidents.add(&joined, sc);
                }
                let r = rows.push(
                    &d.record.alert_id,
                    d.decision.as_ref(),
                    d.late,
                    joined.first().map(String::as_str),
                    d.context.as_deref(),
                    self.enricher.is_some(),
                    &enrichment,
                    scored.as_ref(),
                );
                if let (Some(Decision::First { key } | Decision::Escalated { key, .. }), true) = (&d.decision, self.audit.is_some()) {
                    let a = &d.record;
                    let detail = EmittedDetail {
                        decision: kind,
                        dedup_key: key,
                        dest_ip: &a.dest_ip,
                        incident_ids: &joined,
                        priority: scored.as_ref().and_then(|s| s.priority).map(Priority::as_str),
                        score: scored.as_ref().map(|s| s.score),
                        signature: &a.signature,
                        signature_id: a.signature_id,
                        src_ip: &a.src_ip,
                    };
                    self.audit_with(out, a.ts_us, "alert_emitted", &a.alert_id, |body| detail.write(body));
                }
                match &d.decision {
                    _ if !self.lines => {}
                    None if d.late_output => out.late_lines.push(lines::late_alert(&d.record, d.context.as_deref(), &joined, &r)),
                    None | Some(Decision::Suppressed { .. }) => {}
                    Some(Decision::First { key }) => {
                        self.emitted.put(key.to_string(), (d.record.signature.as_str().into(), scored.as_ref().and_then(|s| s.priority)));
                        out.lines.push(lines::alert(&d.record, d.context.as_deref(), key, 1, kind, &joined, &r));
                    }
                    Some(Decision::Escalated { key, count }) => {
                        self.emitted.put(key.to_string(), (d.record.signature.as_str().into(), scored.as_ref().and_then(|s| s.priority)));
                        out.lines.push(lines::alert(&d.record, d.context.as_deref(), key, *count, kind, &joined, &r));
                    }
                }
            }
            out.alerts = Some(rows.finish(events));
        }
        let mut changes = st.changes;
        if let Some(t) = self.triage.as_mut() {
            for c in t.changes(flush) {
                let story = Reason { rule: Arc::from(crate::triage::RULE), score: 0.0, reason: c.story };
                self.incidents.note(&c.event.id, story);
                changes.push(Change { event: c.event, context: c.context });
            }
        }
        self.render(&st.rollups, &changes, out);
        if !self.action_rows.is_empty() {
            out.actions = Some(rows::concat(out.actions.take(), std::mem::take(&mut self.action_rows).finish()));
        }
    }

    fn render(&mut self, rollups: &[Rollup], changes: &[Change], out: &mut AlertOutput) {
        for r in rollups {
            if self.lines {
                let known = if r.reason == "interval" { self.emitted.peek(&r.key).cloned() } else { self.emitted.pop(&r.key) };
                out.lines.push(lines::rollup(r, known.as_ref().map(|k| &*k.0), known.as_ref().and_then(|k| k.1).map(Priority::as_str)));
            }
            if r.suppressed > 0 {
                let detail =
                    serde_json::json!({"count": r.count, "suppressed": r.suppressed, "first_seen": crate::event::time::iso(r.first_us), "reason": r.reason});
                self.audit(out, r.last_us, "alerts_suppressed", &r.key, detail);
            }
        }
        if changes.is_empty() {
            return;
        }
        let th = self.scorer.as_ref().map(|s| s.thresholds);
        let mut rows = IncidentRows::new(changes.len());
        for c in changes {
            let mut text = match (self.incidents.at_change(&c.event.id, c.event.status), th) {
                (Some(x), Some(th)) => IncidentScoreText {
                    score: Some(x.score as i32),
                    priority: Some(th.priority(x.score as f64).as_str()),
                    reasons: Some(reasons_json(&x.reasons)),
                    recommendations: Some(recommendations_json(&x.recommendations)),
                },
                _ => IncidentScoreText::default(),
            };
            // The rule's own level is the least priority of its incidents.
            if let Some(level) = c.event.level.map(crate::event::scored::Priority::from_rank) {
                let scored = text.priority.and_then(|p| (0..5).map(crate::event::scored::Priority::from_rank).find(|q| q.as_str() == p));
                if scored.is_none_or(|p| p < level) {
                    text.priority = Some(level.as_str());
                }
            }
            if self.audit.is_some() {
                let e = &c.event;
                let detail = serde_json::json!({
                    "rule": e.rule,
                    "group_key": e.group_key,
                    "alert_count": e.alert_count,
                    "score": text.score,
                    "priority": text.priority,
                    "first_seen": crate::event::time::iso(e.first_us),
                });
                let kind = match e.status {
                    Status::Open => "incident_opened",
                    Status::Updated => "incident_updated",
                    Status::Closed => "incident_closed",
                    Status::Corrected => "incident_corrected",
                };
                self.audit(out, e.last_us, kind, &e.id, detail);
            }
            rows.push(&c.event, &c.context, &text);
            if self.lines {
                out.lines.push(lines::incident(&c.event, &c.context, &text));
            }
        }
        out.incidents = Some(rows::concat(out.incidents.take(), rows.finish()));
    }

    /// The whole alert path's state as JSON (saved with every commit).
    pub fn snapshot(&mut self) -> String {
        let mut out = Vec::new();
        let _ = self.snapshot_to(&mut out, true, None);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Tracks what changes from now on, so the next snapshot can be a delta of the state
    /// as it is (just saved whole, restored, or empty).
    pub fn track_changes(&mut self) {
        self.state.track_changes();
        self.incidents.track();
        self.emitted.track();
        if let Some(t) = self.triage.as_mut() {
            t.track();
        }
    }

    /// Copies up to `budget` entries of the delta capture under way (a delta's changes are
    /// cut at once and copied out in slices between batches, each entry before it changes:
    /// see `event::delta`); whether it is finished (or none is under way).
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        self.state.capture_step(budget)
            && self.incidents.capture_step(budget)
            && self.emitted.capture_step(budget)
            && self.triage.as_mut().is_none_or(|t| t.capture_step(budget))
    }

    /// Finishes the capture under way at once.
    pub fn finish_capture(&mut self) {
        let mut all = usize::MAX;
        self.capture_step(&mut all);
    }

    /// Whether a snapshot can be a delta (see `event::delta`): changes are tracked and the
    /// state has one shard.
    pub fn writes_changes(&self) -> bool {
        self.state.writes_changes()
    }

    /// The state stage's snapshot with the open incidents' scores in it, and `due` (JSON
    /// text: the output lines of this commit) as member `due`. `whole`: everything, else
    /// what changed since the last snapshot when [`AlertPath::writes_changes`]. Returns
    /// whether it wrote everything.
    pub fn snapshot_to(&mut self, w: &mut dyn std::io::Write, whole: bool, due: Option<&str>) -> std::io::Result<bool> {
        let (parts, whole, mut tail) = self.snapshot_parts(whole)?;
        self.finish_capture();
        let mut head = HeldBack::new(w);
        parts.write(&mut head)?;
        tail.due = due.map(str::to_string);
        tail.append_to(head)?;
        Ok(whole)
    }

    /// [`AlertPath::snapshot_to`] in parts, so that little of the work happens here, where
    /// the state lives: a whole snapshot serialized, or a delta's changes copied out of
    /// the maps (serialized when written: [`Deferred::write`]); whether it is whole; and
    /// the members kept apart (the audit chain's head, the commit's lines), to append with
    /// [`SnapshotTail::append_to`].
    pub fn snapshot_parts(&mut self, whole: bool) -> std::io::Result<(Deferred, bool, SnapshotTail)> {
        self.finish_capture();
        let whole = whole || !self.state.writes_changes();
        let parts = if whole {
            let mut w: Vec<u8> = Vec::with_capacity(1 << 20);
            let (scores, triage, emitted) = (&self.incidents, &self.triage, &self.emitted);
            self.state.snapshot_to(&mut w, |w: &mut dyn std::io::Write| {
                w.write_all(b",\"incident_scores\":")?;
                write_json(w, scores)?;
                // Least recent first, so a restore puts them back in the same order.
                w.write_all(b",\"emitted\":")?;
                write_list(w, emitted.iter().rev(), |w, (k, v)| emitted_entry(w, k, v))?;
                if let Some(t) = triage {
                    w.write_all(b",\"triage\":")?;
                    write_json(w, t)?;
                }
                Ok(())
            })?;
            self.track_changes();
            Deferred::from_text(w)
        } else {
            let scores = self.incidents.take_changes();
            let emitted = self.emitted.take_changes();
            let triage = self.triage.as_mut().map(Triage::take_changes);
            self.state.take_changes(|d| {
                d.text(b",\"incident_scores\":");
                d.part(scores);
                d.text(b",\"emitted\":");
                d.part(Box::new(move |w: &mut dyn std::io::Write| emitted.write(w, |w, k| write_json(w, k), |w, k, v| emitted_entry(w, k, v))));
                if let Some(t) = triage {
                    d.text(b",\"triage\":");
                    d.part(t);
                }
            })?
        };
        // The chain's head at the cut (its records are the commit's `actions` rows).
        let tail = SnapshotTail { audit: self.audit.clone(), due: None };
        Ok((parts, whole, tail))
    }

    /// Restores a snapshot (one written before incident scores were saved restores the
    /// state alone), or applies a delta (member `delta`) to the state restored so far.
    pub fn restore(&mut self, text: &str) -> Result<(), serde_json::Error> {
        self.restore_members(&Members::parse(text)?)
    }

    /// Restores from a snapshot's members, or applies a delta to the state restored so far.
    pub fn restore_members(&mut self, v: &Members) -> Result<(), serde_json::Error> {
        let delta = v.flag("delta");
        self.state.restore_members(v)?;
        if !v.is_null("incident_scores") {
            match delta {
                true => self.incidents.apply_changes(&v.members("incident_scores")?)?,
                false => self.incidents = v.get("incident_scores")?,
            }
        }
        if let (Some(t), false) = (self.triage.as_mut(), v.is_null("triage")) {
            t.restore(&v.members("triage")?)?;
        }
        type Emitted = (String, String, Option<u8>);
        let entry = |(k, sig, p): Emitted| (k, (Arc::<str>::from(sig), p.map(Priority::from_rank)));
        if delta {
            let e = v.members("emitted")?;
            let list = |m: &str| -> Result<Vec<_>, serde_json::Error> { Ok(e.get::<Vec<Emitted>>(m)?.into_iter().map(entry).collect()) };
            let c = LruChanges { clear: e.flag("clear"), del: e.get("del")?, upd: list("upd")?, put: list("put")? };
            self.emitted.apply_changes(c, |_, _| {});
        } else if !v.is_null("emitted") {
            let list: Vec<Emitted> = v.get("emitted")?;
            self.emitted.clear();
            for x in list {
                let (k, val) = entry(x);
                self.emitted.put(k, val);
            }
        }
        if let (Some(c), false) = (self.audit.as_mut(), v.is_null("audit")) {
            (*c, self.audit_recovered) = crate::output::audit::read_snapshot_member(&v.members("audit")?)?;
        }
        Ok(())
    }

    /// The state stage (its counts and sizes).
    pub fn state(&self) -> &StateStage {
        &self.state
    }

    /// Incidents open now: correlation incidents (opened less closed, both kept across
    /// restarts) and entity incidents. O(entities): ask now and then.
    pub fn open_incidents(&self) -> u64 {
        let k = self.state.correlation_counts();
        k.opened.saturating_sub(k.closed) + self.triage.as_ref().map_or(0, |t| t.open_incidents() as u64)
    }

    pub fn enrich_counts(&self) -> Option<EnrichCounts> {
        self.enricher.as_ref().map(|e| e.counts)
    }

    /// Open incidents with a score kept.
    pub fn scored_incidents(&self) -> usize {
        self.incidents.len()
    }
}

/// The detail of an `alert_emitted` audit record (members in name order, as a JSON value
/// would hold them).
struct EmittedDetail<'a> {
    decision: &'a str,
    dedup_key: &'a str,
    dest_ip: &'a str,
    incident_ids: &'a [String],
    priority: Option<&'static str>,
    score: Option<u8>,
    signature: &'a str,
    signature_id: i64,
    src_ip: &'a str,
}

impl EmittedDetail<'_> {
    /// Writes the object straight into the record's line (one per alert emitted: the
    /// hot path of an alert storm).
    fn write(&self, out: &mut String) {
        let mut o = crate::event::json::JsonObject::open(out);
        o.str("decision", self.decision);
        o.str("dedup_key", self.dedup_key);
        o.str("dest_ip", self.dest_ip);
        o.strs("incident_ids", self.incident_ids);
        match self.priority {
            Some(p) => o.str("priority", p),
            None => o.key("priority").push_str("null"),
        }
        o.opt_int("score", self.score.map(i64::from));
        o.str("signature", self.signature);
        o.int("signature_id", self.signature_id);
        o.str("src_ip", self.src_ip);
        o.close();
    }
}

/// One entry of the recent alert lines' signatures in a snapshot: `[key, signature,
/// priority]`.
fn emitted_entry(w: &mut dyn std::io::Write, k: &str, (sig, p): &(Arc<str>, Option<Priority>)) -> std::io::Result<()> {
    write_json(w, &(k, &**sig, p.map(|p| p as u8)))
}

/// The members of a snapshot that are text already, so they need not be serialized where
/// the state lives: the audit trail's head (member `audit`), and the lines of the commit
/// (`due`, JSON).
#[derive(Debug, Default)]
pub struct SnapshotTail {
    pub audit: Option<Chain>,
    pub due: Option<String>,
}

impl SnapshotTail {
    /// Adds the members to the snapshot's JSON object written to `head` so far (its
    /// closing brace held back), and closes it.
    pub fn append_to<W: std::io::Write>(self, head: HeldBack<W>) -> std::io::Result<()> {
        let mut w = head.object_open()?;
        if let Some(chain) = &self.audit {
            w.write_all(b",\"audit\":")?;
            crate::output::audit::write_snapshot_member(&mut w, chain)?;
        }
        if let Some(d) = &self.due {
            w.write_all(b",\"due\":")?;
            w.write_all(d.as_bytes())?;
        }
        w.write_all(b"}")
    }
}

/// A writer that passes everything on but the last byte written so far, and counts the
/// bytes: a JSON object streamed through it can be extended with more members (its
/// closing brace is still held) without being built in memory first.
pub struct HeldBack<W> {
    inner: W,
    last: Option<u8>,
    bytes: u64,
}

impl<W: std::io::Write> HeldBack<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, last: None, bytes: 0 }
    }

    /// Bytes written so far (the held one too).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The writer after a JSON object, with its closing brace dropped: more members go
    /// next, then the brace.
    pub fn object_open(self) -> std::io::Result<W> {
        match self.last {
            Some(b'}') => Ok(self.inner),
            _ => Err(std::io::Error::other("a snapshot is a JSON object")),
        }
    }
}

impl<W: std::io::Write> std::io::Write for HeldBack<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some((&last, head)) = buf.split_last() else { return Ok(0) };
        if let Some(b) = self.last {
            self.inner.write_all(&[b])?;
        }
        self.inner.write_all(head)?;
        self.last = Some(last);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a file durably, streamed by `write` through a buffer: a temporary, fsynced,
/// renamed into place, the folder fsynced. (A snapshot of 100 MB is never held whole in
/// memory on its way to the disk.)
pub fn write_durably_with(path: &std::path::Path, write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    write(&mut f)?;
    f.flush()?;
    f.get_ref().sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes `bytes` to `path` durably (see [`write_durably_with`]).
pub fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durably_with(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `alert_emitted` detail is written as the JSON value it was built as before: the
    /// same text, so the same hashes.
    #[test]
    fn emitted_detail_is_the_json_value_text() {
        let joined = vec!["i1".to_string(), "i\"2\n\u{1}".to_string()];
        for (priority, score) in [(Some("high"), Some(71u8)), (None, None)] {
            let d = EmittedDetail {
                decision: "first",
                dedup_key: "s|1|10.0.0.1|10.0.0.2|TCP",
                dest_ip: "10.0.0.2",
                incident_ids: &joined,
                priority,
                score,
                signature: "ET \"quoted\" \\ sig",
                signature_id: 2_010_935,
                src_ip: "10.0.0.1",
            };
            let v = serde_json::json!({
                "decision": "first",
                "dedup_key": "s|1|10.0.0.1|10.0.0.2|TCP",
                "signature_id": 2_010_935,
                "signature": "ET \"quoted\" \\ sig",
                "src_ip": "10.0.0.1",
                "dest_ip": "10.0.0.2",
                "score": score,
                "priority": priority,
                "incident_ids": &joined,
            });
            let mut text = String::new();
            d.write(&mut text);
            assert_eq!(text, v.to_string());
        }
    }

    /// A snapshot streamed through [`HeldBack`] is the object with the tail's members
    /// added, whatever the chunks it was written in.
    #[test]
    fn held_back_object_takes_the_tail_members() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.json");
        write_durably_with(&path, |w| {
            let mut head = HeldBack::new(w);
            for chunk in [&b"{\"a\":"[..], b"", b"[1,2]", b"}"] {
                head.write_all(chunk).unwrap();
            }
            assert_eq!(head.bytes(), 11);
            SnapshotTail { audit: None, due: Some("[3]".into()) }.append_to(head)
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), r#"{"a":[1,2],"due":[3]}"#);
        assert!(!path.with_extension("json.tmp").exists());
        let mut sink = Vec::new();
        let mut head = HeldBack::new(&mut sink);
        head.write_all(b"[1]").unwrap();
        assert!(SnapshotTail { audit: None, due: None }.append_to(head).is_err(), "not an object");
    }
}
