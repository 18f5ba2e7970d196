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
mod slab_lru;
pub mod stage;
pub mod watermark;

use crate::event::json::push_int;

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

/// A field a key, a correlation rule or a Sigma detection can use: the alert's own fields,
/// the monitored host, and values from the alert's flow context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The side of the alert inside the home networks (the destination when both or
    /// neither are): the host an alert is about, not the sensor that saw it.
    Host,
    Signature,
    /// A value from the flow context: `CONTEXT_NAMES[i]`.
    Context(u8),
}

/// Names of the flow-context fields, in [`KeyField::Context`] order.
pub const CONTEXT_NAMES: [&str; 15] = [
    "dns_query",
    "http_hostname",
    "http_url",
    "http_user_agent",
    "http_status",
    "tls_sni",
    "tls_ja3",
    "file_name",
    "file_sha256",
    "file_md5",
    "file_sha1",
    "flow_pkts_toserver",
    "flow_pkts_toclient",
    "flow_bytes_toserver",
    "flow_bytes_toclient",
];

impl KeyField {
    /// Every field's name: the alert's own, then the flow context's.
    pub const NAMES: [&'static str; 26] = {
        const CORE_NAMES: [&str; 11] =
            ["sensor", "signature_id", "category", "severity", "src_ip", "src_port", "dest_ip", "dest_port", "proto", "host", "signature"];
        let mut out = [""; 26];
        let mut i = 0;
        while i < out.len() {
            out[i] = if i < CORE_NAMES.len() { CORE_NAMES[i] } else { CONTEXT_NAMES[i - CORE_NAMES.len()] };
            i += 1;
        }
        out
    };

    const CORE: [KeyField; 11] = [
        KeyField::Sensor,
        KeyField::SignatureId,
        KeyField::Category,
        KeyField::Severity,
        KeyField::SrcIp,
        KeyField::SrcPort,
        KeyField::DestIp,
        KeyField::DestPort,
        KeyField::Proto,
        KeyField::Host,
        KeyField::Signature,
    ];

    pub fn from_name(s: &str) -> Option<KeyField> {
        let i = Self::NAMES.iter().position(|n| *n == s)?;
        Some(Self::CORE.get(i).copied().unwrap_or_else(|| KeyField::Context((i - Self::CORE.len()) as u8)))
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyField::Context(i) => CONTEXT_NAMES[i as usize],
            f => Self::NAMES[Self::CORE.iter().position(|c| *c == f).unwrap_or(0)],
        }
    }

    /// Whether the value comes from [`AlertRecord::fields`] (the state stage fills those
    /// only when some rule reads them).
    pub fn needs_fields(self) -> bool {
        matches!(self, KeyField::Host | KeyField::Context(_))
    }

    /// Appends the field's value as text (empty when absent; the first of several).
    /// Runs for every alert and key: text is copied, never formatted.
    #[inline]
    pub fn write(self, a: &AlertRecord, out: &mut String) {
        let text = match self {
            KeyField::Sensor => &a.sensor,
            KeyField::Category => &a.category,
            KeyField::SrcIp => &a.src_ip,
            KeyField::DestIp => &a.dest_ip,
            KeyField::Proto => &a.proto,
            KeyField::Signature => &a.signature,
            KeyField::SignatureId => return push_int(out, a.signature_id),
            KeyField::Severity => return push_int(out, a.severity.into()),
            KeyField::SrcPort => return a.src_port.into_iter().for_each(|p| push_int(out, p.into())),
            KeyField::DestPort => return a.dest_port.into_iter().for_each(|p| push_int(out, p.into())),
            KeyField::Host => a.fields.as_ref().map_or(a.dest_ip.as_str(), |f| f.host.as_str()),
            KeyField::Context(i) => a.fields.as_ref().and_then(|f| f.first(CONTEXT_NAMES[i as usize])).unwrap_or(""),
        };
        out.push_str(text);
    }

    /// Calls `f` with every value of the field (none when absent) until it returns true;
    /// whether one did.
    pub fn any(self, a: &AlertRecord, f: &mut dyn FnMut(&str) -> bool) -> bool {
        match self {
            KeyField::Context(i) => a.fields.as_ref().is_some_and(|x| x.all(CONTEXT_NAMES[i as usize]).any(f)),
            KeyField::SrcPort if a.src_port.is_none() => false,
            KeyField::DestPort if a.dest_port.is_none() => false,
            _ => {
                let mut s = String::new();
                self.write(a, &mut s);
                !s.is_empty() && f(&s)
            }
        }
    }

    /// The field as a number, when it is one.
    pub fn number(self, a: &AlertRecord) -> Option<f64> {
        match self {
            KeyField::SignatureId => Some(a.signature_id as f64),
            KeyField::Severity => Some(a.severity as f64),
            KeyField::SrcPort => a.src_port.map(f64::from),
            KeyField::DestPort => a.dest_port.map(f64::from),
            _ => {
                let mut s = String::new();
                self.write(a, &mut s);
                s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
            }
        }
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
    write_key(fields, a, &mut k);
    k
}

/// Appends [`key_of`]'s text to `out` (e.g. a reused buffer).
pub fn write_key(fields: &[KeyField], a: &AlertRecord, out: &mut String) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        f.write(a, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_write_numbers_and_text_as_formatting_would() {
        let a = AlertRecord { sensor: "s1".into(), signature_id: -2_210_001, severity: 0, src_port: Some(65535), dest_port: None, ..Default::default() };
        assert_eq!(key_of(&[KeyField::Sensor, KeyField::SignatureId, KeyField::Severity, KeyField::SrcPort, KeyField::DestPort], &a), "s1|-2210001|0|65535|");
        let mut s = String::new();
        push_int(&mut s, i64::MIN);
        assert_eq!(s, i64::MIN.to_string());
    }
}
