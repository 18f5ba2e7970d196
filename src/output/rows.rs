//! The rows of the `alerts` and `incidents` tables: their schemas, and builders that
//! turn decided, enriched and scored alerts and incident changes into Arrow batches.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, BooleanBuilder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::event::alert::{Decision, IncidentEvent};
use crate::event::enriched::Enrichment;
use crate::event::scored::{reasons_json, recommendations_json, Scored};
use crate::event::time::hour_bucket;
use crate::event::{events_schema, EventBatch};

use super::lines::{IncidentScoreText, Rendered};

/// Columns the `alerts` table adds to the event columns.
pub const ALERT_COLUMNS: [&str; 22] = [
    "alert_id",
    "dedup_key",
    "dedup_count",
    "suppressed",
    "late",
    "incident_id",
    "flow_context",
    "src_country",
    "src_asn",
    "src_as_org",
    "src_asset",
    "dest_country",
    "dest_asn",
    "dest_as_org",
    "dest_asset",
    "intel",
    "enrichment",
    "score",
    "priority",
    "reasons",
    "recommendations",
    "source_versions",
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

/// The `actions` table: one row per audit record (see `output::audit`).
pub fn actions_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("seq", DataType::Int64, false),
            Field::new("record_id", DataType::Utf8, false),
            Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("subject", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
            Field::new("prev", DataType::Utf8, false),
            Field::new("hash", DataType::Utf8, false),
        ]))
    })
    .clone()
}

/// Builder of `actions` rows.
#[derive(Default)]
pub struct ActionRows {
    seq: Int64Builder,
    id: StringBuilder,
    ts: Vec<i64>,
    kind: StringBuilder,
    subject: StringBuilder,
    detail: StringBuilder,
    prev: StringBuilder,
    hash: StringBuilder,
}

impl ActionRows {
    /// Appends a record of `kind` about `subject` (as given to the chain).
    pub fn push(&mut self, r: &super::audit::Record, kind: &str, subject: &str) {
        self.seq.append_value(r.seq as i64);
        self.id.append_value(r.id());
        self.ts.push(r.ts_us);
        self.kind.append_value(kind);
        self.subject.append_value(subject);
        self.detail.append_value(r.detail());
        self.prev.append_value(r.prev());
        self.hash.append_value(r.hash());
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn finish(mut self) -> EventBatch {
        let hours = self.ts.iter().map(|&t| hour_bucket(t)).collect();
        let ts = arrow::array::TimestampMicrosecondArray::from(std::mem::take(&mut self.ts)).with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.seq.finish()),
            Arc::new(self.id.finish()),
            Arc::new(ts),
            Arc::new(self.kind.finish()),
            Arc::new(self.subject.finish()),
            Arc::new(self.detail.finish()),
            Arc::new(self.prev.finish()),
            Arc::new(self.hash.finish()),
        ];
        EventBatch { columns: RecordBatch::try_new(actions_schema(), columns).expect("actions schema"), hours, context: None }
    }
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
            // Sized for what an alert's history and geo usually take, so the buffers are
            // not copied while they grow.
            enrichment: StringBuilder::with_capacity(n, n * 320),
            score: Int32Builder::with_capacity(n),
            priority: StringBuilder::with_capacity(n, n * 8),
            reasons: StringBuilder::with_capacity(n, n * 160),
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

/// Builder of one batch of `alerts` rows: the alerts' event columns as they came, then
/// what the state decided and what enrichment and scoring found.
pub struct AlertRows {
    ids: StringBuilder,
    keys: StringBuilder,
    count: Int64Builder,
    suppressed: BooleanBuilder,
    late: BooleanBuilder,
    incident: StringBuilder,
    context: StringBuilder,
    scored: ScoredColumns,
}

impl AlertRows {
    pub fn new(n: usize) -> Self {
        Self {
            ids: StringBuilder::with_capacity(n, n * 16),
            keys: StringBuilder::with_capacity(n, n * 48),
            count: Int64Builder::with_capacity(n),
            suppressed: BooleanBuilder::with_capacity(n),
            late: BooleanBuilder::with_capacity(n),
            incident: StringBuilder::new(),
            context: StringBuilder::new(),
            scored: ScoredColumns::new(n),
        }
    }

    /// Appends one alert's row; returns its enrichment and score as JSON texts for its line.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        alert_id: &str,
        decision: Option<&Decision>,
        late: bool,
        incident: Option<&str>,
        context: Option<&str>,
        enriched: bool,
        e: &Enrichment,
        s: Option<&Scored>,
    ) -> Rendered {
        self.ids.append_value(alert_id);
        self.late.append_value(late);
        self.incident.append_option(incident);
        self.context.append_option(context);
        match decision {
            None => {
                self.keys.append_null();
                self.count.append_null();
                self.suppressed.append_value(false);
            }
            Some(d) => {
                let (key, count, held) = match d {
                    Decision::First { key } => (key, 1, false),
                    Decision::Escalated { key, count } => (key, *count, false),
                    Decision::Suppressed { key, count } => (key, *count, true),
                };
                self.keys.append_value(key);
                self.count.append_value(count as i64);
                self.suppressed.append_value(held);
            }
        }
        self.scored.push(enriched, e, s)
    }

    /// The rows: `events` (the alerts' event columns, one row per pushed alert) with the
    /// added columns.
    pub fn finish(mut self, events: EventBatch) -> EventBatch {
        let mut columns: Vec<ArrayRef> = events.columns.columns().to_vec();
        columns.push(Arc::new(self.ids.finish()));
        columns.push(Arc::new(self.keys.finish()));
        columns.push(Arc::new(self.count.finish()));
        columns.push(Arc::new(self.suppressed.finish()));
        columns.push(Arc::new(self.late.finish()));
        columns.push(Arc::new(self.incident.finish()));
        columns.push(Arc::new(self.context.finish()));
        columns.extend(self.scored.finish());
        EventBatch { columns: RecordBatch::try_new(alerts_schema(), columns).expect("alerts schema"), hours: events.hours, context: None }
    }
}

/// Builder of `incidents` rows: one per incident change.
pub struct IncidentRows {
    id: StringBuilder,
    rule: StringBuilder,
    group: StringBuilder,
    status: StringBuilder,
    first: TimestampMicrosecondBuilder,
    last: TimestampMicrosecondBuilder,
    count: Int64Builder,
    members: ListBuilder<StringBuilder>,
    context: StringBuilder,
    score: Int32Builder,
    priority: StringBuilder,
    reasons: StringBuilder,
    recs: StringBuilder,
    hours: Vec<i64>,
}

impl IncidentRows {
    pub fn new(n: usize) -> Self {
        Self {
            id: StringBuilder::new(),
            rule: StringBuilder::new(),
            group: StringBuilder::new(),
            status: StringBuilder::new(),
            first: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            last: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            count: Int64Builder::with_capacity(n),
            members: ListBuilder::new(StringBuilder::new()),
            context: StringBuilder::new(),
            score: Int32Builder::with_capacity(n),
            priority: StringBuilder::new(),
            reasons: StringBuilder::new(),
            recs: StringBuilder::new(),
            hours: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, c: &IncidentEvent, context: &serde_json::Value, s: &IncidentScoreText) {
        self.score.append_option(s.score);
        self.priority.append_option(s.priority);
        self.reasons.append_option(s.reasons.as_deref());
        self.recs.append_option(s.recommendations.as_deref());
        if context.is_null() {
            self.context.append_null();
        } else {
            self.context.append_value(context.to_string());
        }
        self.id.append_value(&c.id);
        self.rule.append_value(&c.rule);
        self.group.append_value(&c.group_key);
        self.status.append_value(c.status.as_str());
        self.first.append_value(c.first_us);
        self.last.append_value(c.last_us);
        self.count.append_value(c.alert_count as i64);
        for m in &c.alert_ids {
            self.members.values().append_value(m);
        }
        self.members.append(true);
        self.hours.push(hour_bucket(c.last_us));
    }

    pub fn finish(mut self) -> EventBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.rule.finish()),
            Arc::new(self.group.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.first.finish()),
            Arc::new(self.last.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.members.finish()),
            Arc::new(self.context.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.priority.finish()),
            Arc::new(self.reasons.finish()),
            Arc::new(self.recs.finish()),
        ];
        EventBatch { columns: RecordBatch::try_new(incidents_schema(), columns).expect("incidents schema"), hours: self.hours, context: None }
    }
}

/// Two batches of one table as one.
pub fn concat(prev: Option<EventBatch>, next: EventBatch) -> EventBatch {
    match prev {
        None => next,
        Some(prev) => {
            let mut hours = prev.hours;
            hours.extend(next.hours);
            let schema = prev.columns.schema();
            EventBatch { columns: arrow::compute::concat_batches(&schema, [&prev.columns, &next.columns]).expect("same schema"), hours, context: None }
        }
    }
}
