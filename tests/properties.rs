//! Property checks run on every test run (the fuzz targets in `fuzz/` explore further):
//! framing does not depend on how the stream is split; the parser never panics and gives
//! one deterministic answer for mutated real lines; parsing conserves lines
//! (lines = events + rejected + blank); the same for RFC 6587 syslog framing and the
//! syslog and fast-alert parsers.

use crate::common;

use common::Rng;

use alertflow::ingest::framing::frame_pieces;
use alertflow::parse::eve::prepare_line;
use alertflow::parse::{EveParser, ParseLimits};

const MAX: usize = 300;

#[test]
fn framing_does_not_depend_on_the_split() {
    let corpus = std::fs::read(common::data_dir().join("eve/eve-fever-testdata.ndjson")).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..300 {
        // Real lines, some made too long, some blank, a last line maybe without newline.
        let mut data = Vec::new();
        for _ in 0..rng.below(20) {
            match rng.below(6) {
                0 => data.extend_from_slice(b"\n"),
                1 => data.extend(std::iter::repeat_n(b'x', MAX + rng.below(2 * MAX))),
                _ => {
                    let l: Vec<&[u8]> = corpus.split(|&b| b == b'\n').collect();
                    let line = l[rng.below(l.len())];
                    data.extend_from_slice(&line[..line.len().min(rng.below(MAX + 50))]);
                }
            }
            if rng.below(8) != 0 {
                data.push(b'\n');
            }
        }
        let whole = frame_pieces(&[&data], MAX);
        let mut pieces = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = rng.below(rest.len().min(400)) + 1;
            let (a, b) = rest.split_at(n);
            pieces.push(a);
            rest = b;
        }
        assert_eq!(frame_pieces(&pieces, MAX), whole, "round {round}");
        assert_eq!(whole.end, data.len() as u64);
    }
}

#[test]
fn parser_is_total_stateless_and_agrees_with_serde_json_on_mutated_real_lines() {
    let text = std::fs::read(common::data_dir().join("eve/eve-suricata-verify-8.0.6.ndjson")).unwrap();
    let real: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).take(2000).collect();
    let mut rng = Rng(42);
    let mut p = EveParser::new(ParseLimits::default());
    let (mut ok, mut rejected, mut agreed) = (0, 0, 0);
    for i in 0..20_000 {
        let mut line = real[i % real.len()].to_vec();
        const NASTY: &[u8] = b"{[\"\\:,0\xff\x00";
        for _ in 0..rng.below(4) {
            if line.is_empty() {
                break;
            }
            let at = rng.below(line.len());
            match rng.below(4) {
                0 => line[at] = rng.next() as u8,
                1 => line.truncate(at),
                2 => line.insert(at, NASTY[rng.below(NASTY.len())]),
                _ => line.splice(at..at, b"\\x4".iter().copied()).for_each(drop),
            }
        }
        let Some(prepared) = prepare_line(&line) else { continue };
        let a = p.parse(prepared, |e| (e.timestamp_us, e.event_type.map(str::to_owned), e.flow_id));
        // A parser that has seen thousands of other lines answers as a fresh one does
        // (no state leaks between lines through its reused buffers).
        let b = EveParser::new(ParseLimits::default()).parse(prepared, |e| (e.timestamp_us, e.event_type.map(str::to_owned), e.flow_id));
        assert_eq!(a, b, "{}", String::from_utf8_lossy(&line));
        match &a {
            Ok((_, event_type, flow_id)) => {
                ok += 1;
                // Where serde_json reads the line too, it reads the same type and flow.
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(prepared) {
                    agreed += 1;
                    assert_eq!((event_type.as_deref(), *flow_id), (v["event_type"].as_str(), v["flow_id"].as_i64()), "{}", String::from_utf8_lossy(&line));
                }
            }
            Err(_) => rejected += 1,
        }
    }
    assert!(ok > 1000 && rejected > 1000 && agreed > 1000, "ok {ok}, rejected {rejected}, checked against serde_json {agreed}");
}

#[test]
fn lines_are_conserved() {
    for name in ["eve-suricata-verify-7.0.4.ndjson", "eve-edgecase-fever-broken-line.ndjson", "eve-edgecase-fever-nulls.ndjson"] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = common::test_config(dir.path());
        let s = common::replay(&mut cfg, &[common::data_dir().join("eve").join(name)]);
        let rejected: u64 = s.rejected.values().sum();
        assert_eq!(s.lines, s.events + rejected + s.blank_lines, "{name}");
        assert_eq!(s.rows_archived, s.events, "{name}");
    }
}

/// RFC 6587 framing: real syslog messages, octet-counted or LF-terminated, some oversize,
/// a counted frame cut short at the end; any split gives the same messages and drops.
#[test]
fn syslog_framing_does_not_depend_on_the_split() {
    use alertflow::ingest::octet::frame_pieces;
    let corpus = std::fs::read(common::data_dir().join("syslog/syslog-suricata-eve-rfc5424.log")).unwrap();
    let lines: Vec<&[u8]> = corpus.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let max = 1024;
    for round in 0..300 {
        let mut data = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..rng.below(12) {
            let line = lines[rng.below(lines.len())];
            let line = &line[..line.len().min(rng.below(2 * max) + 1)];
            if rng.below(2) == 0 {
                data.extend_from_slice(format!("{} ", line.len()).as_bytes());
                data.extend_from_slice(line);
                if rng.below(4) == 0 {
                    data.push(b'\n');
                }
            } else {
                data.extend_from_slice(line);
                data.push(b'\n');
            }
            if line.len() <= max {
                sent.push(line.to_vec());
            }
        }
        if rng.below(5) == 0 {
            data.extend_from_slice(b"500 <13>1 cut short");
        }
        let (whole, dropped) = frame_pieces(&[&data], max);
        if !data.ends_with(b"cut short") {
            assert_eq!(whole, sent, "round {round}");
        }
        for _ in 0..8 {
            let mut cuts: Vec<usize> = (0..rng.below(5)).map(|_| rng.below(data.len() + 1)).collect();
            cuts.sort();
            let mut pieces = Vec::new();
            let mut last = 0;
            for c in cuts {
                pieces.push(&data[last..c]);
                last = c;
            }
            pieces.push(&data[last..]);
            let (split, split_dropped) = frame_pieces(&pieces, max);
            assert_eq!(split, whole, "round {round}");
            assert_eq!(split_dropped.len(), dropped.len(), "round {round}");
        }
    }
}

/// The syslog and fast-alert parsers never panic on mutated real messages, and the
/// lenient reading always returns a message that is part of the input.
#[test]
fn syslog_parsers_survive_mutations() {
    use alertflow::parse::fast::parse_fast;
    use alertflow::parse::syslog::{parse, parse_rfc5424, TimeHint};
    let mut corpus = Vec::new();
    for f in ["syslog-suricata-alert-rfc5424.log", "syslog-suricata-alert-rfc3164.log", "syslog-rfc5424-metron.log"] {
        corpus.extend(
            std::fs::read(common::data_dir().join("syslog").join(f)).unwrap().split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).take(200),
        );
    }
    let hint = TimeHint::utc(1_795_000_000_000_000);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..20_000 {
        let mut l = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(4) {
            let i = rng.below(l.len());
            match rng.below(4) {
                0 => l[i] = rng.next() as u8,
                1 => {
                    l.remove(i);
                }
                2 => {
                    const SPECIAL: &[u8] = b"<>[]\"\\ :-0123456789\xff";
                    l.insert(i, SPECIAL[rng.below(SPECIAL.len())]);
                }
                _ => l.truncate(i),
            }
            if l.is_empty() {
                break;
            }
        }
        let _ = parse_rfc5424(&l);
        let (m, _) = parse(&l, hint);
        let (start, end) = (l.as_ptr() as usize, l.as_ptr() as usize + l.len());
        let p = m.message.as_ptr() as usize;
        assert!(m.message.is_empty() || (p >= start && p + m.message.len() <= end));
        if let Ok(s) = std::str::from_utf8(&l) {
            let _ = parse_fast(s, hint);
        }
    }
}
