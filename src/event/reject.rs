//! Why an input line was refused: the reasons every stage counts and samples under one name.

/// Why a line was rejected. The names are the `reason` label of the
/// `alertflow_rejected_lines_total` metric and the dead-letter `reason` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Not valid JSON (torn line, garbage, NUL bytes, numbers JSON cannot hold).
    InvalidJson,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// Longer than `pipeline.max_line_bytes`.
    TooLong,
    /// Nested deeper than `pipeline.max_json_depth`.
    TooDeep,
    /// A JSON value that is not an object.
    NotObject,
    /// `timestamp` present but not a timestamp (and not Suricata's `"ts-error"`).
    BadTimestamp,
    /// No `timestamp` key.
    MissingTimestamp,
    /// A line of a `fast` source that is not a fast alert.
    InvalidFastAlert,
    /// A frame cut off by the end of its connection or by a timeout.
    Truncated,
}

impl RejectReason {
    pub const COUNT: usize = 9;
    pub const ALL: [RejectReason; RejectReason::COUNT] = [
        RejectReason::InvalidJson,
        RejectReason::NotUtf8,
        RejectReason::TooLong,
        RejectReason::TooDeep,
        RejectReason::NotObject,
        RejectReason::BadTimestamp,
        RejectReason::MissingTimestamp,
        RejectReason::InvalidFastAlert,
        RejectReason::Truncated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::TooLong => "too_long",
            RejectReason::TooDeep => "too_deep",
            RejectReason::NotObject => "not_object",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::InvalidFastAlert => "invalid_fast_alert",
            RejectReason::Truncated => "truncated",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
