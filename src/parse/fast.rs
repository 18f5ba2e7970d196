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
//! An alert on a packet without a decoded IP header carries `[Raw pkt: <hex> ]` instead
//! of protocol and addresses: it is an alert without them.

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
    /// The packet's first bytes in hex when it had no IP header (then protocol and
    /// addresses are empty).
    pub raw_packet: Option<&'a str>,
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

    // From the right: "{PROTO} src -> dst", or the raw packet of one without an IP header.
    let mut head;
    let mut ends = None;
    if let Some((h, hex)) = raw_packet(body) {
        head = h;
        out.raw_packet = Some(hex);
    } else {
        let brace = body.rfind(" {").map(|i| i + 1).or_else(|| body.starts_with('{').then_some(0))?;
        let tail = &body[brace + 1..];
        let pclose = tail.find('}')?;
        out.proto = &tail[..pclose];
        ends = Some(tail[pclose + 1..].trim().split_once(" -> ")?);
        head = &body[..brace];
    }
    // Each part is followed by exactly one space; the message keeps its own spaces.
    let one = |s: &'a str| s.strip_suffix(' ').unwrap_or(s);
    head = one(head);
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
    if let Some((src, dst)) = ends {
        out.proto = proto_name(out.proto);
        let ported = matches!(out.proto.to_ascii_uppercase().as_str(), "TCP" | "UDP" | "SCTP");
        (out.src_ip, out.src_port) = endpoint(src.trim(), ported)?;
        (out.dest_ip, out.dest_port) = endpoint(dst.trim(), ported)?;
    }
    Some(out)
}

/// Suricata writes an alert on a packet without a decoded IP header with (up to 32 bytes
/// of) the packet in hex instead of protocol and addresses:
/// `… [Priority: 3] [**] [Raw pkt: 00 1B 21 … ] [pcap file packet: 7]` (the last part only
/// when reading a pcap). Returns the text before the marker and the hex bytes.
fn raw_packet(body: &str) -> Option<(&str, &str)> {
    const MARK: &str = "[**] [Raw pkt:";
    let i = body.rfind(MARK)?;
    let after = &body[i + MARK.len()..];
    let close = after.find(']')?;
    let hex = after[..close].trim();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit() || b == b' ') {
        return None;
    }
    let rest = after[close + 1..].trim();
    let pcap_ok = rest.strip_prefix("[pcap file packet: ").and_then(|r| r.strip_suffix(']')).is_some_and(|n| n.trim().parse::<u64>().is_ok());
    (rest.is_empty() || pcap_ok).then_some((&body[..i], hex))
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

    #[test]
    fn raw_packet_without_ip_header_is_an_alert_without_addresses() {
        // As Suricata's alert-fastlog writes it: up to 32 bytes in hex, then the pcap packet.
        let line = "10/12/2023-14:02:11.123456  [**] [1:2200003:2] SURICATA IPv4 truncated packet [**] [Classification: Generic Protocol Command Decode] [Priority: 3] [**] [Raw pkt: 00 1B 21 3A 4C 5D 00 1C 7E 0A 44 20 08 00 45 00 00 3C ] [pcap file packet: 7]";
        let a = parse_fast(line, HINT).unwrap();
        assert_eq!((a.gid, a.signature_id, a.rev), (1, 2_200_003, 2));
        assert_eq!((a.signature, a.category, a.priority), ("SURICATA IPv4 truncated packet", Some("Generic Protocol Command Decode"), Some(3)));
        assert_eq!((a.src_ip, a.dest_ip, a.proto, a.src_port, a.dest_port), ("", "", "", None, None));
        assert_eq!(a.raw_packet, Some("00 1B 21 3A 4C 5D 00 1C 7E 0A 44 20 08 00 45 00 00 3C"));
        // Live capture: no pcap part; an action in front.
        let a = parse_fast("10/12/2023-14:02:11.123456  [Drop] [**] [1:9:1] m [**] [Classification: c] [Priority: 1] [**] [Raw pkt: FF ]", HINT).unwrap();
        assert_eq!((a.signature, a.action, a.raw_packet), ("m", "blocked", Some("FF")));
        // Near misses: not hex, something after the packet, no marker at all.
        assert!(parse_fast("[1:9:1] m [Priority: 1] [**] [Raw pkt: ZZ ]", HINT).is_none());
        assert!(parse_fast("[1:9:1] m [Priority: 1] [**] [Raw pkt: FF ] trailing", HINT).is_none());
        assert!(parse_fast("[1:9:1] m [Priority: 1] [**]", HINT).is_none());
    }
}
