//! Event-time helpers: parsing Suricata timestamps into UTC microseconds and turning
//! microseconds into the archive's `date=`/`hour=` partition.
//!
//! Input: the bytes of an EVE `timestamp` value (`2024-01-02T03:04:05.123456+0100`, with
//! `+HHMM`, `+HH:MM`, `Z` or no offset; any number of fraction digits, truncated to µs).
//! Output: microseconds since the Unix epoch, UTC. No allocation, no clock reads.

/// Microseconds in one hour.
pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Parses an RFC 3339-like timestamp as Suricata writes it. Returns `None` when the text
/// is not a valid timestamp (the caller counts it as `bad_timestamp`).
pub fn parse_timestamp_us(s: &[u8]) -> Option<i64> {
    // YYYY-MM-DDTHH:MM:SS is 19 bytes at least.
    if s.len() < 19 {
        return None;
    }
    let year = digits(&s[0..4])? as i64;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = digits(&s[11..13])?;
    let minute = digits(&s[14..16])?;
    let second = digits(&s[17..19])?;
    if s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros: i64 = 0;
    if i < s.len() && (s[i] == b'.' || s[i] == b',') {
        i += 1;
        let start = i;
        let mut scale = 100_000;
        while i < s.len() && s[i].is_ascii_digit() {
            micros += (s[i] - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_secs: i64 = match s.get(i) {
        None => 0,
        Some(b'Z') | Some(b'z') if i + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &s[i + 1..];
            let (oh, om) = match rest.len() {
                4 => (digits(&rest[0..2])?, digits(&rest[2..4])?),
                5 if rest[2] == b':' => (digits(&rest[0..2])?, digits(&rest[3..5])?),
                2 => (digits(&rest[0..2])?, 0),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh as i64 * 3600) + om as i64 * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + second as i64 - offset_secs;
    Some(secs * 1_000_000 + micros)
}

pub(crate) fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

pub(crate) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Hour bucket (hours since the epoch) of a timestamp in microseconds.
pub fn hour_bucket(ts_us: i64) -> i64 {
    ts_us.div_euclid(MICROS_PER_HOUR)
}

/// The Hive partition path `date=YYYY-MM-DD/hour=HH` of an hour bucket.
pub fn partition_path(hour_bucket: i64) -> String {
    let (y, m, d) = civil_from_days(hour_bucket.div_euclid(24));
    format!("date={y:04}-{m:02}-{d:02}/hour={:02}", hour_bucket.rem_euclid(24))
}

/// Environment variable that sets the process's wall clock: it starts at this instant
/// (RFC 3339 or seconds since the epoch) and runs at the real pace. For tests that must not
/// depend on today's date, and for replaying an old capture as if it were live.
pub const CLOCK_ENV: &str = "ALERTFLOW_CLOCK";

fn system_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Offset of the process clock from the system clock (0 unless [`CLOCK_ENV`] is set).
fn clock_offset_us() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| match std::env::var(CLOCK_ENV) {
        Ok(v) => match parse_clock(&v) {
            Some(start) => start - system_us(),
            None => {
                tracing::warn!(value = %v, "{CLOCK_ENV} is neither RFC 3339 nor epoch seconds; using the system clock");
                0
            }
        },
        Err(_) => 0,
    })
}

/// `2026-11-18T12:00:00Z` or `1795000000` → microseconds since the epoch.
pub fn parse_clock(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return secs.checked_mul(1_000_000);
    }
    v.parse::<jiff::Timestamp>().ok().map(|t| t.as_microsecond())
}

/// Wall-clock time in microseconds; used only where no event time exists.
pub fn wall_clock_us() -> i64 {
    system_us() + clock_offset_us()
}

/// RFC 3339 text of a time in µs since the epoch (UTC); empty when out of range.
pub fn iso(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us).map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_values() {
        assert_eq!(parse_clock("1795000000"), Some(1_795_000_000_000_000));
        assert_eq!(parse_clock("2026-11-18T12:00:00Z"), Some(1_795_003_200_000_000));
        assert_eq!(parse_clock("yesterday"), None);
    }

    #[test]
    fn parses_suricata_offsets() {
        let utc = parse_timestamp_us(b"2017-03-06T06:54:10.839668+0000").unwrap();
        assert_eq!(utc, 1_488_783_250_839_668);
        let plus = parse_timestamp_us(b"2017-03-06T07:54:10.839668+0100").unwrap();
        assert_eq!(plus, utc);
        let minus = parse_timestamp_us(b"2017-03-06T01:54:10.839668-05:00").unwrap();
        assert_eq!(minus, utc);
        assert_eq!(parse_timestamp_us(b"2017-03-06T06:54:10.839668Z").unwrap(), utc);
        // Seven fraction digits (seen from real sensors) truncate to microseconds.
        assert_eq!(parse_timestamp_us(b"2017-03-06T06:54:10.8396681+0000").unwrap(), utc);
        assert_eq!(parse_timestamp_us(b"1969-12-31T23:59:59.000000+0000").unwrap(), -1_000_000);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "ts-error",
            "2017-13-06T06:54:10+0000",
            "2017-02-30T00:00:00Z",
            "2017-03-06T06:54:10.+0000",
            "2017-03-06T06:54:10+01",
            "2017-03-06T06:54:10.1+0100x",
            "",
        ] {
            if bad == "2017-03-06T06:54:10+01" {
                assert!(parse_timestamp_us(bad.as_bytes()).is_some());
                continue;
            }
            assert!(parse_timestamp_us(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn civil_round_trip_and_partitions() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let ts = parse_timestamp_us(b"2024-02-29T23:59:59.999999+0000").unwrap();
        assert_eq!(partition_path(hour_bucket(ts)), "date=2024-02-29/hour=23");
        let early = parse_timestamp_us(b"1969-12-31T23:00:00+0000").unwrap();
        assert_eq!(partition_path(hour_bucket(early)), "date=1969-12-31/hour=23");
    }
}
