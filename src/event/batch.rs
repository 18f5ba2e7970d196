//! Columnar event batches in the public `events` schema.
//!
//! The builder appends one [`EventView`](super::EventView) at a time into Arrow builders
//! (strings are copied once, into the builders' contiguous buffers) and finishes into a
//! `RecordBatch`. The column names and types here are the archive's public schema.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, Int32Builder, Int64Builder, StringArray, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::time::hour_bucket;

use super::{ContextKind, ContextView, EventView, StrOrInt};

/// Column names of the `events` table, in order.
pub const EVENT_COLUMNS: [&str; 29] = [
    "timestamp",
    "event_type",
    "sensor",
    "in_iface",
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "app_proto",
    "flow_id",
    "community_id",
    "alert_gid",
    "alert_signature_id",
    "alert_rev",
    "alert_signature",
    "alert_category",
    "alert_severity",
    "alert_action",
    "syslog_facility",
    "syslog_severity",
    "syslog_hostname",
    "syslog_app_name",
    "syslog_procid",
    "syslog_msgid",
    "syslog_structured_data",
    "syslog_message",
    "source",
    "raw",
];

/// The Arrow schema of the `events` table.
pub fn events_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let utf8 = |name: &str| ArrowField::new(name, DataType::Utf8, true);
            let i32f = |name: &str| ArrowField::new(name, DataType::Int32, true);
            let i64f = |name: &str| ArrowField::new(name, DataType::Int64, true);
            Arc::new(Schema::new(vec![
                ArrowField::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                utf8("event_type"),
                utf8("sensor"),
                utf8("in_iface"),
                utf8("src_ip"),
                i32f("src_port"),
                utf8("dest_ip"),
                i32f("dest_port"),
                utf8("proto"),
                utf8("app_proto"),
                i64f("flow_id"),
                utf8("community_id"),
                i64f("alert_gid"),
                i64f("alert_signature_id"),
                i64f("alert_rev"),
                utf8("alert_signature"),
                utf8("alert_category"),
                i32f("alert_severity"),
                utf8("alert_action"),
                i32f("syslog_facility"),
                i32f("syslog_severity"),
                utf8("syslog_hostname"),
                utf8("syslog_app_name"),
                utf8("syslog_procid"),
                utf8("syslog_msgid"),
                utf8("syslog_structured_data"),
                utf8("syslog_message"),
                ArrowField::new("source", DataType::Utf8, false),
                ArrowField::new("raw", DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// A batch of events: the columns plus the event-time hour bucket of every row (the
/// archive partitions by it).
#[derive(Debug, Clone)]
pub struct EventBatch {
    pub columns: RecordBatch,
    pub hours: Vec<i64>,
    /// Per row, the encoded [`ContextView`](super::ContextView) of a context event (see
    /// [`decode_context`]); not archived. `None` for batches that carry none.
    pub context: Option<StringArray>,
}

/// Separates the fields of an encoded context (never inside a value: replaced by a space).
const SEP: char = '\u{1f}';

fn kind_letter(k: ContextKind) -> char {
    match k {
        ContextKind::Dns => 'd',
        ContextKind::Http => 'h',
        ContextKind::Tls => 't',
        ContextKind::FileInfo => 'f',
        ContextKind::Flow => 'l',
        ContextKind::Anomaly => 'a',
    }
}

/// The kind of an encoded context, from its first byte (no decoding).
pub fn context_kind(enc: &str) -> Option<ContextKind> {
    let first = *enc.as_bytes().first()?;
    ContextKind::ALL.into_iter().find(|&k| kind_letter(k) as u8 == first)
}

/// Writes a context as one string: kind letter, four texts, four numbers.
pub fn encode_context(c: &ContextView<'_>, out: &mut impl std::fmt::Write) {
    let _ = out.write_char(kind_letter(c.kind));
    for t in c.text {
        let _ = out.write_char(SEP);
        if let Some(t) = t {
            if t.bytes().any(|b| b == SEP as u8) {
                let _ = out.write_str(&t.replace(SEP, " "));
            } else {
                let _ = out.write_str(t);
            }
        }
    }
    for n in c.num {
        let _ = out.write_char(SEP);
        if let Some(n) = n {
            let mut buf = itoa_buf::Buf::default();
            let _ = out.write_str(buf.format(n));
        }
    }
}

/// Reads back what [`encode_context`] wrote (empty slots are `None`).
pub fn decode_context(s: &str) -> Option<ContextView<'_>> {
    // Split on the separator byte (ASCII, so every piece is on a char boundary).
    let mut parts = s.as_bytes().split(|&b| b == SEP as u8).scan(0usize, |at, piece| {
        let start = *at;
        *at += piece.len() + 1;
        Some(&s[start..start + piece.len()])
    });
    let kind = context_kind(s)?;
    if parts.next()?.len() != 1 {
        return None;
    }
    let mut c = ContextView { kind, text: [None; 5], num: [None; 4] };
    for t in c.text.iter_mut() {
        *t = parts.next().filter(|p| !p.is_empty());
    }
    for n in c.num.iter_mut() {
        *n = parts.next().and_then(|p| p.parse().ok());
    }
    Some(c)
}

impl EventBatch {
    pub fn num_rows(&self) -> usize {
        self.columns.num_rows()
    }
}

/// Appends events column by column.
pub struct EventBatchBuilder {
    timestamp: TimestampMicrosecondBuilder,
    event_type: StringBuilder,
    sensor: StringBuilder,
    in_iface: StringBuilder,
    src_ip: StringBuilder,
    src_port: Int32Builder,
    dest_ip: StringBuilder,
    dest_port: Int32Builder,
    proto: StringBuilder,
    app_proto: StringBuilder,
    flow_id: Int64Builder,
    community_id: StringBuilder,
    alert_gid: Int64Builder,
    alert_signature_id: Int64Builder,
    alert_rev: Int64Builder,
    alert_signature: StringBuilder,
    alert_category: StringBuilder,
    alert_severity: Int32Builder,
    alert_action: StringBuilder,
    syslog_facility: Int32Builder,
    syslog_severity: Int32Builder,
    syslog_hostname: StringBuilder,
    syslog_app_name: StringBuilder,
    syslog_procid: StringBuilder,
    syslog_msgid: StringBuilder,
    syslog_structured_data: StringBuilder,
    syslog_message: StringBuilder,
    source: StringBuilder,
    raw: StringBuilder,
    context: StringBuilder,
    hours: Vec<i64>,
    itoa: itoa_buf::Buf,
}

mod itoa_buf {
    /// Formats an integer without allocating.
    #[derive(Default)]
    pub struct Buf([u8; 24]);
    impl Buf {
        pub fn format(&mut self, mut v: i64) -> &str {
            let neg = v < 0;
            let mut i = self.0.len();
            loop {
                i -= 1;
                self.0[i] = b'0' + (v % 10).unsigned_abs() as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            if neg {
                i -= 1;
                self.0[i] = b'-';
            }
            std::str::from_utf8(&self.0[i..]).unwrap_or("")
        }
    }
}

impl EventBatchBuilder {
    /// A builder sized for `rows` events of about `raw_bytes` bytes of raw text in total.
    pub fn with_capacity(rows: usize, raw_bytes: usize) -> Self {
        let s = |bytes: usize| StringBuilder::with_capacity(rows, bytes);
        Self {
            timestamp: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            event_type: s(rows * 8),
            sensor: s(rows * 8),
            in_iface: s(rows * 4),
            src_ip: s(rows * 16),
            src_port: Int32Builder::with_capacity(rows),
            dest_ip: s(rows * 16),
            dest_port: Int32Builder::with_capacity(rows),
            proto: s(rows * 4),
            app_proto: s(rows * 4),
            flow_id: Int64Builder::with_capacity(rows),
            community_id: s(rows * 8),
            alert_gid: Int64Builder::with_capacity(rows),
            alert_signature_id: Int64Builder::with_capacity(rows),
            alert_rev: Int64Builder::with_capacity(rows),
            alert_signature: s(64),
            alert_category: s(64),
            alert_severity: Int32Builder::with_capacity(rows),
            alert_action: s(64),
            syslog_facility: Int32Builder::new(),
            syslog_severity: Int32Builder::new(),
            syslog_hostname: s(0),
            syslog_app_name: s(0),
            syslog_procid: s(0),
            syslog_msgid: s(0),
            syslog_structured_data: s(0),
            syslog_message: s(0),
            source: s(rows * 8),
            raw: s(raw_bytes),
            context: StringBuilder::new(),
            hours: Vec::with_capacity(rows),
            itoa: Default::default(),
        }
    }

    /// Appends one event. `partition_us` is the time that decides the partition (the event
    /// time, or a stand-in when the sensor could not stamp the event).
    pub fn append(&mut self, ev: &EventView<'_>, partition_us: i64, source: &str, raw: &str) {
        self.timestamp.append_option(ev.timestamp_us);
        self.event_type.append_option(ev.event_type);
        let syslog_host = ev.syslog.as_ref().and_then(|s| s.hostname);
        self.sensor.append_value(ev.host.or(syslog_host).unwrap_or(source));
        self.in_iface.append_option(ev.in_iface);
        self.src_ip.append_option(ev.src_ip);
        self.src_port.append_option(ev.src_port);
        self.dest_ip.append_option(ev.dest_ip);
        self.dest_port.append_option(ev.dest_port);
        match ev.proto {
            StrOrInt::Absent => self.proto.append_null(),
            StrOrInt::Str(s) => self.proto.append_value(s),
            StrOrInt::Int(n) => self.proto.append_value(self.itoa.format(n)),
        }
        self.app_proto.append_option(ev.app_proto);
        self.flow_id.append_option(ev.flow_id);
        self.community_id.append_option(ev.community_id);
        match &ev.alert {
            Some(a) => {
                self.alert_gid.append_option(a.gid);
                self.alert_signature_id.append_option(a.signature_id);
                self.alert_rev.append_option(a.rev);
                self.alert_signature.append_option(a.signature);
                self.alert_category.append_option(a.category);
                self.alert_severity.append_option(a.severity);
                self.alert_action.append_option(a.action);
            }
            None => {
                self.alert_gid.append_null();
                self.alert_signature_id.append_null();
                self.alert_rev.append_null();
                self.alert_signature.append_null();
                self.alert_category.append_null();
                self.alert_severity.append_null();
                self.alert_action.append_null();
            }
        }
        match &ev.syslog {
            Some(s) => {
                self.syslog_facility.append_value(s.facility as i32);
                self.syslog_severity.append_value(s.severity as i32);
                self.syslog_hostname.append_option(s.hostname);
                self.syslog_app_name.append_option(s.app_name);
                self.syslog_procid.append_option(s.procid);
                self.syslog_msgid.append_option(s.msgid);
                self.syslog_structured_data.append_option(s.structured_data);
                self.syslog_message.append_option(s.message);
            }
            None => {
                self.syslog_facility.append_null();
                self.syslog_severity.append_null();
                self.syslog_hostname.append_null();
                self.syslog_app_name.append_null();
                self.syslog_procid.append_null();
                self.syslog_msgid.append_null();
                self.syslog_structured_data.append_null();
                self.syslog_message.append_null();
            }
        }
        self.source.append_value(source);
        self.raw.append_value(raw);
        match &ev.context {
            Some(c) => {
                encode_context(c, &mut self.context);
                self.context.append_value("");
            }
            None => self.context.append_null(),
        }
        self.hours.push(hour_bucket(partition_us));
    }

    /// Finishes the batch; the builder is empty and reusable afterwards.
    pub fn finish(&mut self) -> EventBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.timestamp.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.sensor.finish()),
            Arc::new(self.in_iface.finish()),
            Arc::new(self.src_ip.finish()),
            Arc::new(self.src_port.finish()),
            Arc::new(self.dest_ip.finish()),
            Arc::new(self.dest_port.finish()),
            Arc::new(self.proto.finish()),
            Arc::new(self.app_proto.finish()),
            Arc::new(self.flow_id.finish()),
            Arc::new(self.community_id.finish()),
            Arc::new(self.alert_gid.finish()),
            Arc::new(self.alert_signature_id.finish()),
            Arc::new(self.alert_rev.finish()),
            Arc::new(self.alert_signature.finish()),
            Arc::new(self.alert_category.finish()),
            Arc::new(self.alert_severity.finish()),
            Arc::new(self.alert_action.finish()),
            Arc::new(self.syslog_facility.finish()),
            Arc::new(self.syslog_severity.finish()),
            Arc::new(self.syslog_hostname.finish()),
            Arc::new(self.syslog_app_name.finish()),
            Arc::new(self.syslog_procid.finish()),
            Arc::new(self.syslog_msgid.finish()),
            Arc::new(self.syslog_structured_data.finish()),
            Arc::new(self.syslog_message.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.raw.finish()),
        ];
        let columns = RecordBatch::try_new(events_schema(), columns).expect("builder columns match the events schema");
        let context = self.context.finish();
        let context = (context.null_count() < context.len()).then_some(context);
        EventBatch { columns, hours: std::mem::take(&mut self.hours), context }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_match_public_list() {
        let schema = events_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, EVENT_COLUMNS);
    }

    #[test]
    fn builder_formats_numeric_proto_and_uses_source_as_sensor() {
        let mut b = EventBatchBuilder::with_capacity(2, 16);
        let ev = EventView { proto: StrOrInt::Int(-254), timestamp_us: Some(7_200_000_000), ..Default::default() };
        b.append(&ev, 7_200_000_000, "eve", "{}");
        let batch = b.finish();
        assert_eq!(batch.hours, vec![2]);
        let proto = batch.columns.column(8).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!(proto.value(0), "-254");
        let sensor = batch.columns.column(2).as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!(sensor.value(0), "eve");
    }
}
