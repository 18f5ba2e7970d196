//! Syslog headers: RFC 5424 exactly as the RFC defines it, RFC 3164 the way real devices
//! send it (and the way rsyslog reads it).
//!
//! * [`parse_rfc5424`] is strict: every header field is checked against the RFC's ABNF
//!   (PRI range, version, full-date/full-time with at most six fraction digits and an
//!   offset, PRINTUSASCII field lengths, structured-data syntax, a BOM-marked message that
//!   must be UTF-8). A message that starts like RFC 5424 (`<PRI>1 `) and breaks a rule
//!   returns the rule it broke.
//! * [`parse_rfc3164`] never fails: PRI, date, host and tag are each taken when present
//!   (rsyslog's defaults otherwise: PRI 13, no time, no host), dates with one- or two-digit
//!   days, an optional year, fractions, or an RFC 3339 stamp; `host/with/slashes`,
//!   bracketed IPv6 hosts; a tag of up to 32 characters ending in `:` or `[pid]:`.
//! * [`parse`] picks the right one and falls back from a broken RFC 5424 header to the
//!   lenient reading, reporting why.
//!
//! All fields borrow from the input; nothing is allocated.

use crate::event::time::{days_from_civil, days_in_month, digits};

/// A parsed syslog header and the message after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Syslog<'a> {
    /// The PRI value, or `None` when the message had none (read as user.notice, 13).
    pub pri: Option<u8>,
    /// `Some(1)` for RFC 5424.
    pub version: Option<u16>,
    /// Header time in µs UTC, `None` for NILVALUE or no recognizable date.
    pub timestamp_us: Option<i64>,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    /// RFC 5424 structured data as written (validated), without NILVALUE.
    pub structured_data: Option<&'a str>,
    /// The message, as sent (RFC 5424: including a BOM). For RFC 3164 the spaces after
    /// the tag are not part of it.
    pub message: &'a [u8],
}

impl Syslog<'_> {
    pub fn facility(&self) -> u8 {
        self.pri.unwrap_or(13) >> 3
    }
    pub fn severity(&self) -> u8 {
        self.pri.unwrap_or(13) & 7
    }
}

/// The RFC 5424 rule a message broke. The names are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rfc5424Error {
    Pri,
    Version,
    Timestamp,
    Hostname,
    AppName,
    ProcId,
    MsgId,
    StructuredData,
    Message,
}

impl Rfc5424Error {
    pub fn as_str(self) -> &'static str {
        match self {
            Rfc5424Error::Pri => "pri",
            Rfc5424Error::Version => "version",
            Rfc5424Error::Timestamp => "timestamp",
            Rfc5424Error::Hostname => "hostname",
            Rfc5424Error::AppName => "app_name",
            Rfc5424Error::ProcId => "procid",
            Rfc5424Error::MsgId => "msgid",
            Rfc5424Error::StructuredData => "structured_data",
            Rfc5424Error::Message => "message",
        }
    }
}

/// What a date without year or zone needs (RFC 3164, fast.log).
#[derive(Debug, Clone, Copy)]
pub struct TimeHint {
    /// The time the message is read at (µs UTC). A yearless date is put in this year,
    /// or in the year before when that would put it more than a week in the future.
    pub now_us: i64,
    /// The sender's time zone for dates without an offset; `None` is UTC.
    pub zone: Option<&'static jiff::tz::TimeZone>,
}

impl TimeHint {
    pub const fn utc(now_us: i64) -> Self {
        Self { now_us, zone: None }
    }

    /// A civil date and time in the sender's zone → µs UTC.
    pub fn to_utc_us(&self, y: i64, month: u32, day: u32, secs_of_day: i64, micros: i64) -> Option<i64> {
        if day == 0 || day > days_in_month(y, month) {
            return None;
        }
        match self.zone {
            None => Some((days_from_civil(y, month, day) * 86_400 + secs_of_day) * 1_000_000 + micros),
            Some(tz) => {
                let dt = jiff::civil::DateTime::new(
                    i16::try_from(y).ok()?,
                    month as i8,
                    day as i8,
                    (secs_of_day / 3600) as i8,
                    (secs_of_day / 60 % 60) as i8,
                    (secs_of_day % 60) as i8,
                    0,
                )
                .ok()?;
                // In a DST gap or fold, the earlier reading wins (jiff's "compatible").
                Some(tz.to_timestamp(dt).ok()?.as_microsecond() + micros)
            }
        }
    }

    /// The year of `now_us` in the sender's zone.
    fn now_year(&self) -> i64 {
        crate::event::time::civil_from_days((self.now_us + self.offset_us()).div_euclid(86_400_000_000)).0
    }

    fn offset_us(&self) -> i64 {
        match self.zone {
            None => 0,
            Some(tz) => jiff::Timestamp::from_microsecond(self.now_us).map(|t| tz.to_offset(t).seconds() as i64 * 1_000_000).unwrap_or(0),
        }
    }

    /// A date without a year: this year, or last year when that is more than a week ahead.
    pub fn yearless(&self, month: u32, day: u32, secs_of_day: i64, micros: i64) -> Option<i64> {
        let y = self.now_year();
        let week = 7 * 86_400_000_000;
        match self.to_utc_us(y, month, day, secs_of_day, micros) {
            Some(t) if t <= self.now_us + week => Some(t),
            // In the future: last year's date (Dec 31 read on Jan 1), or Feb 29.
            _ => self.to_utc_us(y - 1, month, day, secs_of_day, micros).or_else(|| self.to_utc_us(y, month, day, secs_of_day, micros)),
        }
    }
}

/// Parses a syslog message of either kind. A message claiming RFC 5424 that broke one of
/// its rules is read leniently; the rule comes back with it.
pub fn parse(line: &[u8], hint: TimeHint) -> (Syslog<'_>, Option<Rfc5424Error>) {
    let start = line.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(line.len());
    let line = &line[start..];
    if looks_like_5424(line) {
        match parse_rfc5424(line) {
            Ok(s) => (s, None),
            Err(e) => (parse_5424_lenient(line, true).unwrap_or_else(|| parse_rfc3164(line, hint)), Some(e)),
        }
    } else if line.starts_with(b"1 ") {
        // RFC 5424 without its PRI (some relays strip it).
        (parse_5424_lenient(line, false).unwrap_or_else(|| parse_rfc3164(line, hint)), None)
    } else {
        (parse_rfc3164(line, hint), None)
    }
}

/// An RFC 5424 header read leniently: six space-separated fields, any timestamp the
/// EVE parser understands, structured data kept only when valid (an invalid element is
/// skipped), the rest is the message.
fn parse_5424_lenient(line: &[u8], with_pri: bool) -> Option<Syslog<'_>> {
    let (pri, mut i) = if with_pri { pri(line).map(|(p, n)| (Some(p), n))? } else { (None, 0) };
    let n = line[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let version = digits(&line[i..i + n])? as u16;
    i += n;
    sp(line, &mut i)?;
    let word = |i: &mut usize| -> Option<Option<&str>> {
        let n = line[*i..].iter().take_while(|&&b| b != b' ').count();
        let w = std::str::from_utf8(&line[*i..*i + n]).ok()?;
        *i += n;
        if line.get(*i) == Some(&b' ') {
            *i += 1;
        } else {
            return None;
        }
        Some((w != "-" && !w.is_empty()).then_some(w))
    };
    let ts = word(&mut i)?;
    let hostname = word(&mut i)?;
    let app_name = word(&mut i)?;
    let procid = word(&mut i)?;
    let msgid = word(&mut i)?;
    let timestamp_us = ts.and_then(|t| crate::event::time::parse_timestamp_us(t.as_bytes()));
    let mut structured_data = None;
    if line.get(i) == Some(&b'-') && matches!(line.get(i + 1), None | Some(b' ')) {
        i += 1;
    } else if line.get(i) == Some(&b'[') {
        match structured_data_end(line, i) {
            Some(end) => {
                structured_data = std::str::from_utf8(&line[i..end]).ok();
                i = end;
            }
            None => {
                // Skip the broken element(s) up to the last `]` followed by a space.
                let rest = &line[i..];
                let end = memchr::memmem::rfind(rest, b"] ").map(|p| p + 1).unwrap_or(rest.len());
                i += end;
            }
        }
    }
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    Some(Syslog { pri, version: Some(version), timestamp_us, hostname, app_name, procid, msgid, structured_data, message: &line[i..] })
}

/// `<PRI>` followed by a version digit and a space: the message claims RFC 5424.
fn looks_like_5424(line: &[u8]) -> bool {
    let Some(close) = line.iter().take(5).position(|&b| b == b'>') else { return false };
    if line.first() != Some(&b'<') {
        return false;
    }
    let rest = &line[close + 1..];
    let n = rest.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    n > 0 && rest.get(n) == Some(&b' ') && rest[0] != b'0'
}

/// Reads `<PRI>`: 1 to 3 digits, no leading zero, at most 191.
fn pri(line: &[u8]) -> Option<(u8, usize)> {
    if line.first() != Some(&b'<') {
        return None;
    }
    let n = line[1..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 3 || line.get(1 + n) != Some(&b'>') || (n > 1 && line[1] == b'0') {
        return None;
    }
    let v = digits(&line[1..1 + n])?;
    (v <= 191).then_some((v as u8, n + 2))
}

/// Parses an RFC 5424 message strictly.
pub fn parse_rfc5424(line: &[u8]) -> Result<Syslog<'_>, Rfc5424Error> {
    use Rfc5424Error as E;
    let (pri, mut i) = pri(line).ok_or(E::Pri)?;
    // VERSION = NONZERO-DIGIT 0*2DIGIT
    let n = line[i..].iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 3 || line[i] == b'0' {
        return Err(E::Version);
    }
    let version = digits(&line[i..i + n]).ok_or(E::Version)? as u16;
    i += n;
    sp(line, &mut i).ok_or(E::Version)?;

    let ts = field(line, &mut i, usize::MAX).ok_or(E::Timestamp)?;
    let timestamp_us = match ts {
        None => None,
        Some(t) => Some(rfc5424_time(t.as_bytes()).ok_or(E::Timestamp)?),
    };
    sp(line, &mut i).ok_or(E::Timestamp)?;
    let hostname = field(line, &mut i, 255).ok_or(E::Hostname)?;
    sp(line, &mut i).ok_or(E::Hostname)?;
    let app_name = field(line, &mut i, 48).ok_or(E::AppName)?;
    sp(line, &mut i).ok_or(E::AppName)?;
    let procid = field(line, &mut i, 128).ok_or(E::ProcId)?;
    sp(line, &mut i).ok_or(E::ProcId)?;
    let msgid = field(line, &mut i, 32).ok_or(E::MsgId)?;
    sp(line, &mut i).ok_or(E::MsgId)?;

    let structured_data = if line.get(i) == Some(&b'-') {
        i += 1;
        None
    } else {
        let start = i;
        let end = structured_data_end(line, start).ok_or(E::StructuredData)?;
        i = end;
        Some(std::str::from_utf8(&line[start..end]).map_err(|_| E::StructuredData)?)
    };
    let message: &[u8] = match line.get(i) {
        None => b"",
        Some(b' ') => {
            let m = &line[i + 1..];
            // MSG-UTF8: a BOM promises UTF-8. The BOM stays part of the message.
            if m.starts_with(b"\xEF\xBB\xBF") && simdutf8::basic::from_utf8(m).is_err() {
                return Err(E::Message);
            }
            m
        }
        Some(_) => return Err(E::StructuredData),
    };
    Ok(Syslog { pri: Some(pri), version: Some(version), timestamp_us, hostname, app_name, procid, msgid, structured_data, message })
}

fn sp(line: &[u8], i: &mut usize) -> Option<()> {
    if line.get(*i) == Some(&b' ') {
        *i += 1;
        Some(())
    } else {
        None
    }
}

/// A header field: NILVALUE (`-` → `Some(None)`) or 1..=max PRINTUSASCII characters.
fn field<'a>(line: &'a [u8], i: &mut usize, max: usize) -> Option<Option<&'a str>> {
    let start = *i;
    let n = line[start..].iter().take_while(|&&b| (33..=126).contains(&b)).count();
    if n == 0 || n > max {
        return None;
    }
    *i += n;
    let s = &line[start..start + n];
    if s == b"-" {
        return Some(None);
    }
    // PRINTUSASCII is ASCII, hence UTF-8.
    Some(Some(std::str::from_utf8(s).ok()?))
}

/// `FULL-DATE "T" FULL-TIME` with at most 6 fraction digits and `Z` or `±hh:mm`.
fn rfc5424_time(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let year = digits(&s[0..4])? as i64;
    let (month, day) = (digits(&s[5..7])?, digits(&s[8..10])?);
    let (hour, minute, second) = (digits(&s[11..13])?, digits(&s[14..16])?, digits(&s[17..19])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if s[i] == b'.' {
        i += 1;
        let n = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 6 {
            return None;
        }
        micros = digits(&s[i..i + n])? as i64 * 10i64.pow(6 - n as u32);
        i += n;
    }
    let offset = match &s[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh as i64 * 3600 + om as i64 * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset;
    Some(secs * 1_000_000 + micros)
}

/// End (exclusive) of one or more SD-ELEMENTs starting at `start`. The same SD-ID may
/// not appear twice (RFC 5424 §6.3.2).
fn structured_data_end(line: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    if line.get(i) != Some(&b'[') {
        return None;
    }
    let mut ids: Vec<&[u8]> = Vec::new();
    while line.get(i) == Some(&b'[') {
        i += 1;
        // SD-ID
        let n = sd_name(&line[i..])?;
        let id = &line[i..i + n];
        if ids.contains(&id) {
            return None;
        }
        ids.push(id);
        i += n;
        loop {
            match line.get(i)? {
                b']' => {
                    i += 1;
                    break;
                }
                b' ' => {
                    i += 1;
                    let n = sd_name(&line[i..])?;
                    i += n;
                    if line.get(i) != Some(&b'=') || line.get(i + 1) != Some(&b'"') {
                        return None;
                    }
                    i += 2;
                    // PARAM-VALUE: UTF-8 with `"`, `\` and `]` escaped by a backslash.
                    let vstart = i;
                    loop {
                        match line.get(i)? {
                            b'\\' => i += 2,
                            b'"' => break,
                            b']' => return None,
                            _ => i += 1,
                        }
                    }
                    simdutf8::basic::from_utf8(line.get(vstart..i)?).ok()?;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
    Some(i)
}

/// SD-NAME: 1..=32 PRINTUSASCII except `=`, SP, `]`, `"`.
fn sd_name(s: &[u8]) -> Option<usize> {
    let n = s.iter().take_while(|&&b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"')).count();
    (1..=32).contains(&n).then_some(n)
}

/// Appends structured data as a JSON object `{"id":{"param":"value",…},…}` (values
/// unescaped; a repeated parameter keeps its last value in readers that take the last).
pub fn structured_data_json(sd: &str, out: &mut String) {
    let b = sd.as_bytes();
    let mut i = 0;
    out.push('{');
    let mut first_el = true;
    while i < b.len() && b[i] == b'[' {
        i += 1;
        let n = sd_name(&b[i..]).unwrap_or(0);
        if !first_el {
            out.push(',');
        }
        first_el = false;
        crate::event::json::json_str(out, &sd[i..i + n]);
        out.push_str(":{");
        i += n;
        let mut first_p = true;
        while i < b.len() && b[i] == b' ' {
            i += 1;
            let n = sd_name(&b[i..]).unwrap_or(0);
            if !first_p {
                out.push(',');
            }
            first_p = false;
            crate::event::json::json_str(out, &sd[i..i + n]);
            out.push(':');
            i += n + 2; // `="`
            let vstart = i;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            let mut value = String::with_capacity(i - vstart);
            let mut chars = sd[vstart..i.min(b.len())].chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some(e @ ('"' | '\\' | ']')) => value.push(e),
                        Some(other) => {
                            value.push('\\');
                            value.push(other);
                        }
                        None => value.push('\\'),
                    }
                } else {
                    value.push(c);
                }
            }
            crate::event::json::json_str(out, &value);
            i += 1; // closing quote
        }
        out.push('}');
        i += 1; // `]`
    }
    out.push('}');
}

const MONTHS: [&[u8; 3]; 12] = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// Parses an RFC 3164 (BSD) message leniently; never fails.
pub fn parse_rfc3164(line: &[u8], hint: TimeHint) -> Syslog<'_> {
    let mut out = Syslog::default();
    let mut i = 0;
    if let Some((p, n)) = pri(line) {
        out.pri = Some(p);
        i = n;
    }
    while line.get(i) == Some(&b' ') {
        i += 1;
    }
    if let Some((ts, n)) = bsd_time(&line[i..], hint).or_else(|| rfc3339_prefix(&line[i..])) {
        out.timestamp_us = Some(ts);
        i += n;
        // Some devices end the date with a colon ("Mar  1 00:00:00:").
        if line.get(i) == Some(&b':') {
            i += 1;
        }
        while line.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    // The host follows the date, unless the word is already the tag.
    let word = token(&line[i..]);
    if out.timestamp_us.is_some() && !word.is_empty() && is_hostname(word) && line.get(i + word.len()) == Some(&b' ') {
        out.hostname = std::str::from_utf8(word).ok();
        i += word.len() + 1;
    }
    // TAG: up to 32 characters.
    let rest = &line[i..];
    let tag_len = rest.iter().take(33).take_while(|&&b| (33..=126).contains(&b) && b != b':' && b != b'[').count();
    if tag_len > 0 && tag_len <= 32 {
        let mut j = tag_len;
        let mut procid = None;
        if rest.get(j) == Some(&b'[') {
            if let Some(close) = rest[j..].iter().take(130).position(|&b| b == b']') {
                let pid = &rest[j + 1..j + close];
                if !pid.is_empty() && pid.iter().all(|b| (33..=126).contains(b)) {
                    procid = std::str::from_utf8(pid).ok();
                    j += close + 1;
                }
            }
        }
        // A tag ends with a colon (`app:`, `app[pid]:`); `app[pid]` before a space also
        // counts. A bare word is message text, as in RFC 3164's own example
        // ("10.0.0.99 Use the BFG!").
        match rest.get(j) {
            Some(b':') => j += 1,
            Some(b' ') | None if procid.is_some() => {}
            _ => j = 0,
        }
        if j > 0 {
            out.app_name = std::str::from_utf8(&rest[..tag_len]).ok();
            out.procid = procid;
            i += j;
        }
    }
    let mut msg = &line[i..];
    while let [b' ', m @ ..] = msg {
        msg = m;
    }
    out.message = msg;
    out
}

/// The next space-delimited word.
fn token(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b != b' ').count();
    &s[..n]
}

/// Host names as devices write them: letters, digits, `.-_`, `/` (rsyslog's
/// permit.slashesinhostname), `:` for IPv6, and `[v6]` brackets. A word ending in `:` or
/// holding `[`…`]:` is a tag instead.
fn is_hostname(w: &[u8]) -> bool {
    if w.len() > 255 || w.ends_with(b":") {
        return false;
    }
    if let [b'[', inner @ .., b']'] = w {
        return inner.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    w.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b':' | b'@'))
}

/// `Mmm dd hh:mm:ss` with a one- or two-digit (possibly space-padded) day, an optional
/// year before or after the time, and an optional fraction.
fn bsd_time(s: &[u8], hint: TimeHint) -> Option<(i64, usize)> {
    if s.len() < 14 {
        return None;
    }
    let month = MONTHS.iter().position(|m| s[..3].eq_ignore_ascii_case(&m[..]))? as u32 + 1;
    let mut i = 3;
    if s[i] != b' ' {
        return None;
    }
    i += 1;
    if s[i] == b' ' {
        i += 1;
    }
    let dn = s[i..].iter().take(3).take_while(|b| b.is_ascii_digit()).count();
    if dn == 0 || dn > 2 {
        return None;
    }
    let day = digits(&s[i..i + dn])?;
    i += dn;
    if s.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    // Cisco: "Mmm dd yyyy hh:mm:ss".
    let mut year: Option<i64> = None;
    if s.len() >= i + 5 && s[i..i + 4].iter().all(u8::is_ascii_digit) && s[i + 4] == b' ' {
        year = Some(digits(&s[i..i + 4])? as i64);
        i += 5;
    }
    if s.len() < i + 8 || s[i + 2] != b':' || s[i + 5] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(&s[i..i + 2])?, digits(&s[i + 3..i + 5])?, digits(&s[i + 6..i + 8])?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    i += 8;
    let mut micros = 0i64;
    if s.get(i) == Some(&b'.') {
        let n = s[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if n > 0 {
            let take = n.min(6);
            micros = digits(&s[i + 1..i + 1 + take])? as i64 * 10i64.pow(6 - take as u32);
            i += 1 + n;
        }
    }
    // "Mmm dd hh:mm:ss yyyy".
    if year.is_none()
        && s.len() >= i + 5
        && s[i] == b' '
        && s[i + 1..i + 5].iter().all(u8::is_ascii_digit)
        && s.get(i + 5).is_none_or(|&b| b == b' ' || b == b':')
    {
        year = Some(digits(&s[i + 1..i + 5])? as i64);
        i += 5;
    }
    let secs_of_day = (hour * 3600 + minute * 60 + second.min(59)) as i64;
    let ts = match year {
        Some(y) => hint.to_utc_us(y, month, day, secs_of_day, micros)?,
        None => hint.yearless(month, day, secs_of_day, micros)?,
    };
    Some((ts, i))
}

/// An RFC 3339 stamp at the start of `s` (rsyslog's RSYSLOG_ForwardFormat).
fn rfc3339_prefix(s: &[u8]) -> Option<(i64, usize)> {
    if s.len() < 20 || !s[..4].iter().all(u8::is_ascii_digit) || s[4] != b'-' {
        return None;
    }
    let n = s.iter().take_while(|&&b| b != b' ').count();
    let ts = crate::event::time::parse_timestamp_us(&s[..n])?;
    Some((ts, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: TimeHint = TimeHint::utc(1_764_300_000_000_000); // 2025-11-28

    #[test]
    fn rfc5424_full() {
        let m = parse_rfc5424(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\"] \xEF\xBB\xBFAn application event").unwrap();
        assert_eq!(m.facility(), 20);
        assert_eq!(m.severity(), 5);
        assert_eq!(m.hostname, Some("mymachine.example.com"));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid, Some("ID47"));
        assert_eq!(m.timestamp_us, Some(1_065_910_455_003_000));
        assert_eq!(m.message, b"\xEF\xBB\xBFAn application event");
        let mut j = String::new();
        structured_data_json(m.structured_data.unwrap(), &mut j);
        assert_eq!(j, r#"{"exampleSDID@32473":{"iut":"3","eventSource":"Application"}}"#);
    }

    #[test]
    fn rfc5424_rejects() {
        assert_eq!(parse_rfc5424(b"<192>1 - - - - - -"), Err(Rfc5424Error::Pri));
        assert_eq!(parse_rfc5424(b"<1>1 2003-10-11T22:14:15.0000003Z - - - - -"), Err(Rfc5424Error::Timestamp));
        assert_eq!(parse_rfc5424(b"<1>1 - - - - - [a b=\"c]"), Err(Rfc5424Error::StructuredData));
        assert_eq!(parse_rfc5424(b"<1>1 - - - - - [a][b][a]"), Err(Rfc5424Error::StructuredData));
        assert_eq!(parse_rfc5424(b"<1>1 - - - - - - \xEF\xBB\xBF\xff"), Err(Rfc5424Error::Message));
    }

    #[test]
    fn rfc3164_forms() {
        let m = parse_rfc3164(b"<174>Nov 28 05:33:51 sensor01 suricata[29741]: [1:1:0] x", HINT);
        assert_eq!((m.pri, m.hostname, m.app_name, m.procid), (Some(174), Some("sensor01"), Some("suricata"), Some("29741")));
        assert_eq!(m.message, b"[1:1:0] x");
        let m = parse_rfc3164(b"Sep  5 16:05:26 dev snort: [1:1000017:0] msg", HINT);
        assert_eq!((m.pri, m.hostname, m.app_name), (None, Some("dev"), Some("snort")));
        assert_eq!(m.facility(), 1);
        let m = parse_rfc3164(b"<38> Mar  7 19:06:53 example tag: testmessage", HINT);
        assert_eq!((m.hostname, m.app_name), (Some("example"), Some("tag")));
        let m = parse_rfc3164(b"<167>Mar  6 16:57:54 hostname1/hostname2 test: msgnum:0", HINT);
        assert_eq!(m.hostname, Some("hostname1/hostname2"));
        let m = parse_rfc3164(b"just text", HINT);
        assert_eq!((m.timestamp_us, m.hostname, m.app_name), (None, None, None));
        assert_eq!(m.message, b"just text");
        // December read on 2025-11-28 is last year's.
        let m = parse_rfc3164(b"<13>Dec 31 23:59:59 h t: x", HINT);
        assert_eq!(m.timestamp_us.map(|t| crate::event::time::civil_from_days(t.div_euclid(86_400_000_000)).0), Some(2024));
    }

    #[test]
    fn dates_in_the_senders_zone() {
        let chicago: &'static jiff::tz::TimeZone = Box::leak(Box::new(jiff::tz::TimeZone::get("America/Chicago").unwrap()));
        let hint = TimeHint { now_us: 1_764_300_000_000_000, zone: Some(chicago) };
        // CDT (-05:00) in September, CST (-06:00) in January.
        let m = parse_rfc3164(b"Sep  5 16:05:26 dev snort: x", hint);
        assert_eq!(m.timestamp_us, Some(1_757_106_326_000_000)); // 2025-09-05T21:05:26Z
        let m = parse_rfc3164(b"Jan  5 16:05:26 dev snort: x", hint);
        assert_eq!(m.timestamp_us, Some(1_736_114_726_000_000)); // 2025-01-05T22:05:26Z
                                                                 // An explicit offset wins over the zone.
        let m = parse_rfc3164(b"<13>2025-01-05T16:05:26+00:00 dev app: x", hint);
        assert_eq!(m.timestamp_us, Some(1_736_093_126_000_000));
    }
}
