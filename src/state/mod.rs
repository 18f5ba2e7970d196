//! Windowed state on alerts: event-time watermarks, deduplication with roll-ups, and
//! correlation rules that open incidents with deterministic ids.
//!
//! Everything here is single-threaded logic over [`AlertRecord`]s with time taken from
//! the events and from a `now_us` the caller passes in: a shard owns one of each and is
//! driven by its thread; tests drive it directly.

pub mod context;
pub mod correlate;
pub mod dedup;
pub mod shard;
pub mod sigma;
pub mod stage;
pub mod watermark;

use std::fmt::Write as _;

/// What happens to an alert older than the watermark (its window may have closed). It is
/// archived (flagged `late`) whatever the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Counted, kept out of dedup and correlation.
    Drop,
    /// Counted, kept out, and written to the late output for a person or tool to judge.
    LateOutput,
    /// Evaluated like an on-time alert; an incident that already closed gets a
    /// `corrected` change with the new count.
    #[default]
    Reevaluate,
}

impl LatePolicy {
    pub const NAMES: [&'static str; 3] = ["drop", "late_output", "reevaluate"];

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "drop" => LatePolicy::Drop,
            "late_output" => LatePolicy::LateOutput,
            "reevaluate" => LatePolicy::Reevaluate,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

pub use crate::event::alert::AlertRecord;

/// A field a key or a `value_count` rule can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    Sensor,
    SignatureId,
    Category,
    Severity,
    SrcIp,
    SrcPort,
    DestIp,
    DestPort,
    Proto,
}

impl KeyField {
    pub const NAMES: [&'static str; 9] = ["sensor", "signature_id", "category", "severity", "src_ip", "src_port", "dest_ip", "dest_port", "proto"];

    pub fn from_name(s: &str) -> Option<KeyField> {
        Some(match s {
            "sensor" => KeyField::Sensor,
            "signature_id" => KeyField::SignatureId,
            "category" => KeyField::Category,
            "severity" => KeyField::Severity,
            "src_ip" => KeyField::SrcIp,
            "src_port" => KeyField::SrcPort,
            "dest_ip" => KeyField::DestIp,
            "dest_port" => KeyField::DestPort,
            "proto" => KeyField::Proto,
            _ => return None,
        })
    }

    /// Appends the field's value as text (empty when absent).
    pub fn write(self, a: &AlertRecord, out: &mut String) {
        let _ = match self {
            KeyField::Sensor => write!(out, "{}", a.sensor),
            KeyField::SignatureId => write!(out, "{}", a.signature_id),
            KeyField::Category => write!(out, "{}", a.category),
            KeyField::Severity => write!(out, "{}", a.severity),
            KeyField::SrcIp => write!(out, "{}", a.src_ip),
            KeyField::SrcPort => a.src_port.map_or(Ok(()), |p| write!(out, "{p}")),
            KeyField::DestIp => write!(out, "{}", a.dest_ip),
            KeyField::DestPort => a.dest_port.map_or(Ok(()), |p| write!(out, "{p}")),
            KeyField::Proto => write!(out, "{}", a.proto),
        };
    }
}

/// A snapshot that a `snapshot_to` writes, as text (tests and small states).
pub(crate) fn snapshot_text(write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    let _ = write(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The key of an alert over `fields`: values joined by `|` (readable in outputs).
pub fn key_of(fields: &[KeyField], a: &AlertRecord) -> String {
    let mut k = String::with_capacity(64);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            k.push('|');
        }
        f.write(a, &mut k);
    }
    k
}
