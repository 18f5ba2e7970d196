//! Fast-alert text, as Suricata's `fast.log` and Snort's `alert_fast` write it and as both
//! send it over syslog:
//!
//! ```text
//! 02/05/2021-07:34:50.000003  [Drop] [**] [1:2019401:3] msg [**] [Classification: c] [Priority: 2] {TCP} 10.0.0.1:1234 -> 10.0.0.2:80
//! 05/30-19:09:10.917356  [**] [1:477:3] ICMP Packet [**] [Priority: 0] {ICMP} 172.25.212.245 -> 172.25.212.153
//! [1:1:0] HTTP with xor [Classification: (null)] [Priority: 3] {TCP} 127.0.0.1:49517 -> 127.0.0.1:8080
//! ```
//!
//! The leading date (with or without a year), the action, the `[**]` markers and the
//! classification are optional. The tail is read from the right, so a message holding
//! brackets does not confuse it. Addresses: IPv4 `a.b.c.d[:port]`, IPv6 as Suricata writes
//! it (eight full groups, the port as a ninth), compressed (`2001:db8::1:80`, the last
//! group is the port when the protocol has ports) or bracketed (`[2001:db8::1]:80`).
//! `(null)` message or classification reads as `""`, as in EVE. Only TCP, UDP and SCTP
//! carry ports: for other protocols (ICMP type/code, the `:0` of GRE) the ports are null.

use crate::event::time::digits;
use crate::parse::syslog::TimeHint;

/// The fields of one fast alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FastAlert<'a> {
    pub timestamp_us: Option<i64>,
    /// `allowed`, or `blocked` for `[Drop]`; `[wDrop]` (would drop) stays `allowed` as in EVE.
    pub action: &'static str,
    pub gid: i64,
    pub signature_id: i64,
    pub rev: i64,
    pub signature: &'a str,
    pub category: Option<&'a str>,
    pub priority: Option<i32>,
    pub proto: &'a str,
    pub src_ip: &'a str,
    pub src_port: Option<i32>,
    pub dest_ip: &'a str,
    pub dest_port: Option<i32>,
}

/// Parses one fast alert. `None` when the text is not one.
pub fn parse_fast<'a>(line: &'a str, hint: TimeHint) -> Option<FastAlert<'a>> {
    let mut s = line.trim_start();
    let mut out = FastAlert { action: "allowed", ..Default::default() };
    if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let (ts, n) = fast_time(s.as_bytes(), hint)?;
        out.timestamp_us = Some(ts);
        s = s[n..].trim_start();
    }
    if let Some(rest) = s.strip_prefix("[Drop]") {
        out.action = "blocked";
        s = rest.trim_start();
    } else if let Some(rest) = s.strip_prefix("[wDrop]") {
        s = rest.trim_start();
    }
    if let Some(rest) = s.strip_prefix("[**]") {
        s = rest.trim_start();
    }
    // [gid:sid:rev]
    let rest = s.strip_prefix('[')?;
    let close = rest.find(']')?;
    let mut ids = rest[..close].split(':');
    out.gid = ids.next()?.parse().ok()?;
    out.signature_id = ids.next()?.parse().ok()?;
    out.rev = ids.next()?.parse().ok()?;
    if ids.next().is_some() {
        return None;
    }
    let body = rest[close + 1..].strip_prefix(' ').unwrap_or(&rest[close + 1..]);

    // From the right: "{PROTO} src -> dst".
    let brace = body.rfind(" {").map(|i| i + 1).or_else(|| body.starts_with('{').then_some(0))?;
    let tail = &body[brace + 1..];
    let pclose = tail.find('}')?;
    out.proto = &tail[..pclose];
    let (src, dst) = tail[pclose + 1..].trim().split_once(" -> ")?;
    // Each part is followed by exactly one space; the message keeps its own spaces.
    let one = |s: &'a str| s.strip_suffix(' ').unwrap_or(s);
    let mut head = one(&body[..brace]);
    if let Some(h) = head.strip_suffix(']') {
        if let Some(p) = h.rfind("[Priority: ") {
            out.priority = Some(h[p + 11..].trim().parse().ok()?);
            head = one(&h[..p]);
        }
    }
    if let Some(h) = head.strip_suffix(']') {
        if let Some(p) = h.rfind("[Classification: ") {
            out.category = Some(null_empty(&h[p + 17..]));
            head = one(&h[..p]);
        }
    }
    if let Some(h) = head.strip_suffix("[**]") {
        head = one(h);
    }
    out.signature = null_empty(head);
    out.proto = proto_name(out.proto);
    let ported = matches!(out.proto.to_ascii_uppercase().as_str(), "TCP" | "UDP" | "SCTP");
    (out.src_ip, out.src_port) = endpoint(src.trim(), ported)?;
    (out.dest_ip, out.dest_port) = endpoint(dst.trim(), ported)?;
    Some(out)
}

/// Protocol numbers fast.log prints for protocols it has no name for, named as EVE names
/// them.
fn proto_name(p: &str) -> &str {
    match p {
        "1" => "ICMP",
        "6" => "TCP",
        "17" => "UDP",
        "44" => "IPv6-Frag",
        "47" => "GRE",
        "58" => "IPv6-ICMP",
        "132" => "SCTP",
        other => other,
    }
}

fn null_empty(s: &str) -> &str {
    if s == "(null)" {
        ""
    } else {
        s
    }
}

/// An address and its port (null when the protocol has no ports).
fn endpoint(s: &str, ported: bool) -> Option<(&str, Option<i32>)> {
    let port = |p: &str| -> Option<Option<i32>> {
        let v: u16 = p.parse().ok()?;
        Some(ported.then_some(v as i32))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        return Some((
            addr,
            match after.strip_prefix(':') {
                Some(p) => port(p)?,
                None => None,
            },
        ));
    }
    let colons = s.bytes().filter(|&b| b == b':').count();
    match colons {
        0 => Some((s, None)),
        1 => {
            let (a, p) = s.split_once(':')?;
            Some((a, port(p)?))
        }
        // Full IPv6 without a port.
        7 if !s.contains("::") => Some((s, None)),
        _ => {
            let full_with_port = colons == 8 && !s.contains("::");
            if full_with_port || (s.contains("::") && ported) {
                let (a, p) = s.rsplit_once(':')?;
                Some((a, port(p)?))
            } else {
                Some((s, None))
            }
        }
    }
}

/// `MM/DD/YYYY-HH:MM:SS.ffffff` (Suricata) or `MM/DD-HH:MM:SS.ffffff` (Snort, no year).
/// The sensor's local time, in the source's `timezone` (UTC by default).
fn fast_time(s: &[u8], hint: TimeHint) -> Option<(i64, usize)> {
    let month = digits(s.get(0..2)?)?;
    if s.get(2) != Some(&b'/') {
        return None;
    }
    let day = digits(s.get(3..5)?)?;
    let (year, mut i) = match s.get(5) {
        Some(b'/') => (Some(digits(s.get(6..10)?)? as i64), 10),
        Some(b'-') => (None, 5),
        _ => return None,
    };
    if s.get(i) != Some(&b'-') {
        return None;
    }
    i += 1;
    let t = s.get(i..i + 8)?;
    if t[2] != b':' || t[5] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(&t[0..2])?, digits(&t[3..5])?, digits(&t[6..8])?);
    i += 8;
    let mut micros = 0i64;
    if s.get(i) == Some(&b'.') {
        let n = s[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let take = n.min(6);
        if take > 0 {
            micros = digits(&s[i + 1..i + 1 + take])? as i64 * 10i64.pow(6 - take as u32);
        }
        i += 1 + n;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let secs_of_day = (h * 3600 + m * 60 + sec.min(59)) as i64;
    let ts = match year {
        Some(y) => hint.to_utc_us(y, month, day, secs_of_day, micros)?,
        None => hint.yearless(month, day, secs_of_day, micros)?,
    };
    Some((ts, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: TimeHint = TimeHint::utc(1_764_300_000_000_000);

    #[test]
    fn suricata_line() {
        let a = parse_fast(
            "02/05/2021-07:34:50.000003  [**] [1:1:0] http raw uri test [**] [Classification: (null)] [Priority: 3] {TCP} 127.0.0.1:80 -> 127.0.0.1:4660",
            HINT,
        )
        .unwrap();
        assert_eq!((a.gid, a.signature_id, a.rev, a.signature, a.category, a.priority), (1, 1, 0, "http raw uri test", Some(""), Some(3)));
        assert_eq!((a.src_ip, a.src_port, a.dest_ip, a.dest_port, a.proto), ("127.0.0.1", Some(80), "127.0.0.1", Some(4660), "TCP"));
        assert_eq!(a.timestamp_us, Some(1_612_510_490_000_003));
    }

    #[test]
    fn ipv6_icmp_snort_and_syslog_forms() {
        let a = parse_fast("08/02/2014-10:50:25.823699  [Drop] [**] [1:6:1] (null) [**] [Classification: (null)] [Priority: 3] {TCP} 0000:0000:0000:0000:0000:0000:0000:0001:3000 -> 2001:0db8:0000:0000:0000:0000:0000:0001:56508", HINT).unwrap();
        assert_eq!(
            (a.src_ip, a.src_port, a.dest_port, a.signature, a.action),
            ("0000:0000:0000:0000:0000:0000:0000:0001", Some(3000), Some(56508), "", "blocked")
        );
        let a = parse_fast("05/30-19:09:10.917356  [**] [1:477:3] ICMP Packet [**] [Priority: 0] {ICMP} 172.25.212.245 -> 172.25.212.153", HINT).unwrap();
        assert_eq!((a.category, a.priority, a.src_port, a.dest_ip), (None, Some(0), None, "172.25.212.153"));
        let a = parse_fast("[1:1:0] HTTP with [xor] [Classification: Misc activity] [Priority: 3] {UDP} [2001:db8::1]:53 -> 10.0.0.1:5353", HINT).unwrap();
        assert_eq!((a.signature, a.category, a.src_ip, a.src_port), ("HTTP with [xor]", Some("Misc activity"), "2001:db8::1", Some(53)));
        assert!(parse_fast("hello [1:2:3] world", HINT).is_none());
        assert!(parse_fast("[1:2] x {TCP} a -> b", HINT).is_none());
    }
}
