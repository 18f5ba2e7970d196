//! The bad-input catalogue: every malformed line is counted by reason, dead-lettered with
//! its position, and the next line still flows.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

const GOOD: &str =
    r#"{"timestamp":"2024-05-01T10:00:00.000001+0000","event_type":"flow","src_ip":"10.0.0.1","src_port":1,"dest_ip":"10.0.0.2","dest_port":2,"proto":"TCP"}"#;

fn good(n: u32) -> String {
    GOOD.replace("\"src_port\":1", &format!("\"src_port\":{n}"))
}

#[test]
fn catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.json");
    let mut f = std::fs::File::create(&input).unwrap();
    let mut expect_rows = Vec::new();
    let line = |f: &mut std::fs::File, bytes: &[u8]| {
        f.write_all(bytes).unwrap();
        f.write_all(b"\n").unwrap();
    };
    // A UTF-8 byte-order mark on the first line is dropped.
    line(&mut f, format!("\u{feff}{}", good(1)).as_bytes());
    expect_rows.push(good(1));
    // Empty and blank lines are skipped, not rejected.
    line(&mut f, b"");
    line(&mut f, b"   \t");
    // CRLF: the \r is not part of raw.
    line(&mut f, format!("{}\r", good(2)).as_bytes());
    expect_rows.push(good(2));
    // A torn line (the writer died mid-line), then a good one.
    line(&mut f, &good(3).as_bytes()[..40]);
    line(&mut f, good(4).as_bytes());
    expect_rows.push(good(4));
    // NUL bytes (a preallocated or crashed file).
    line(&mut f, b"\0\0\0\0\0\0");
    line(&mut f, format!("{}\0", good(5)).as_bytes());
    // Invalid UTF-8 inside a string.
    line(&mut f, b"{\"timestamp\":\"2024-05-01T10:00:00Z\",\"event_type\":\"\xff\xfe\"}");
    // 100,000-deep nesting, alone and inside an event.
    line(&mut f, format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes());
    line(&mut f, format!("{{\"timestamp\":\"2024-05-01T10:00:00Z\",\"x\":{}1{}}}", "{\"a\":".repeat(100_000), "}".repeat(100_000)).as_bytes());
    // Numbers JSON cannot hold are invalid JSON; numbers out of a column's range become null.
    line(&mut f, br#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"flow","flow_id":1e400}"#);
    let out_of_range = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"flow","flow_id":18446744073709551615,"src_port":70000,"dest_port":-1,"alert":{"severity":9999999999}}"#;
    line(&mut f, out_of_range.as_bytes());
    expect_rows.push(out_of_range.to_string());
    // Duplicate keys: the last one wins.
    let dup = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"dns","event_type":"alert","src_port":1,"src_port":2}"#;
    line(&mut f, dup.as_bytes());
    expect_rows.push(dup.to_string());
    // Timestamps: bad, missing, Suricata's ts-error, +0100 without colon.
    line(&mut f, br#"{"timestamp":"2024-13-01T10:00:00Z","event_type":"flow"}"#);
    line(&mut f, br#"{"event_type":"flow"}"#);
    let ts_error = r#"{"timestamp":"ts-error","event_type":"stats"}"#;
    line(&mut f, ts_error.as_bytes());
    expect_rows.push(ts_error.to_string());
    let plus = r#"{"timestamp":"2024-05-01T11:00:00.5+0100","event_type":"flow"}"#;
    line(&mut f, plus.as_bytes());
    expect_rows.push(plus.to_string());
    // Not an object.
    line(&mut f, b"[1,2,3]");
    line(&mut f, b"\"just a string\"");
    // @cee: prefix (rsyslog's CEE cookie).
    line(&mut f, format!("@cee: {}", good(6)).as_bytes());
    expect_rows.push(good(6));
    // Suricata's \xNN escapes.
    let hex = r#"{"timestamp":"2024-05-01T10:00:00Z","event_type":"http","http":{"url":"/\x41\x42"}}"#;
    line(&mut f, hex.as_bytes());
    expect_rows.push(hex.to_string());
    // A 10 MiB line is accepted by default (Suricata writes up to 10 MiB).
    let big = format!(r#"{{"timestamp":"2024-05-01T10:00:00Z","event_type":"fileinfo","pad":"{}"}}"#, "a".repeat(10 << 20));
    line(&mut f, big.as_bytes());
    expect_rows.push(big.clone());
    // A 17 MiB line is too long; the next line flows.
    let huge = format!(r#"{{"timestamp":"2024-05-01T10:00:00Z","pad":"{}"}}"#, "b".repeat(17 << 20));
    line(&mut f, huge.as_bytes());
    line(&mut f, good(7).as_bytes());
    expect_rows.push(good(7));
    // The last line has no newline at all.
    f.write_all(good(8).as_bytes()).unwrap();
    expect_rows.push(good(8));
    drop(f);

    let mut cfg = test_config(dir.path());
    let summary = replay(&mut cfg, std::slice::from_ref(&input));
    let rows = read_archive(dir.path());
    let mut got: Vec<&str> = rows.iter().map(|r| r.raw.as_str()).collect();
    let mut want: Vec<&str> = expect_rows.iter().map(String::as_str).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "archived rows differ from the expected good lines");

    let expected_reasons: [(&str, u64); 7] =
        [("invalid_json", 4), ("not_utf8", 1), ("too_deep", 2), ("bad_timestamp", 1), ("missing_timestamp", 1), ("not_object", 2), ("too_long", 1)];
    for (reason, n) in expected_reasons {
        assert_eq!(summary.rejected.get(reason).copied().unwrap_or(0), n, "{reason}: {:?}", summary.rejected);
    }
    assert_eq!(summary.blank_lines, 2);
    assert_eq!(summary.timestamp_errors, 1);
    // flow_id, src_port, dest_port and alert.severity of the out-of-range line.
    assert_eq!(summary.invalid_fields, 4);

    let dl = dead_letters(dir.path());
    assert_eq!(dl.len() as u64, expected_reasons.iter().map(|r| r.1).sum::<u64>());
    for rec in &dl {
        assert!(rec["sample"].as_str().unwrap().len() <= 4096 + 3 * 4096, "samples are capped");
        assert!(rec["offset"].as_u64().is_some());
    }
    let too_long = dl.iter().find(|r| r["reason"] == "too_long").unwrap();
    assert_eq!(too_long["sample_truncated"], true);
    assert!(too_long["sample"].as_str().unwrap().starts_with(r#"{"timestamp""#));
    // The offset of the too-long line points at its first byte in the file.
    let text = std::fs::read(&input).unwrap();
    let off = too_long["offset"].as_u64().unwrap() as usize;
    assert!(text[off..].starts_with(br#"{"timestamp":"2024-05-01T10:00:00Z","pad":"bbb"#));

    // Typed columns of the special rows.
    let by_raw = |raw: &str| rows.iter().find(|r| r.raw == raw).unwrap().clone();
    let r = by_raw(out_of_range);
    assert_eq!((r.flow_id, r.src_port, r.dest_port, r.alert_severity), (None, None, None, None));
    let r = by_raw(dup);
    assert_eq!((r.event_type.as_deref(), r.src_port), (Some("alert"), Some(2)));
    let r = by_raw(ts_error);
    assert_eq!(r.timestamp, None);
    let r = by_raw(plus);
    assert_eq!(r.timestamp, Some(chrono::DateTime::parse_from_rfc3339("2024-05-01T10:00:00.5Z").unwrap().timestamp_micros()));
    assert_eq!(r.partition, "date=2024-05-01/hour=10");
}

/// A 1 GiB line with no newline, streamed into `alertflow replay -`: rejected as too long
/// while memory stays bounded, and the line after it is archived.
#[test]
fn one_gib_line_without_newline_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_alertflow"))
        .args(["replay", "--json", "--archive"])
        .arg(dir.path())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..1024 {
        stdin.write_all(&chunk).unwrap();
    }
    stdin.write_all(b"\n").unwrap();
    stdin.write_all(good(9).as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    // Peak memory of the child: far below the 1 GiB line.
    let (out, peak_mib) = output_with_peak(child);
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rejected"]["too_long"], 1);
    assert_eq!(summary["rows_archived"], 1);
    assert!(peak_mib < 256, "peak RSS {peak_mib} MiB");
    let rows = read_archive(dir.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].source.as_deref(), Some("stdin"));
}

/// An attacker who controls a string in an event (a URL, a user agent) cannot remove the
/// event or its alert with an escape JSON does not allow: a lone UTF-16 surrogate becomes
/// U+FFFD in the typed columns, `raw` keeps the line byte for byte, the alert is decided.
#[test]
fn a_lone_surrogate_in_an_alert_does_not_remove_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let alert = r#"{"timestamp":"2024-05-01T10:00:00.000001+0000","flow_id":7,"event_type":"alert","src_ip":"203.0.113.9","src_port":4444,"dest_ip":"10.0.0.2","dest_port":80,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":2000001,"rev":1,"signature":"ET WEB_SERVER probe \ud800","category":"Web Application Attack","severity":1},"http":{"hostname":"victim","url":"/a?\udfff=\ud800x","http_user_agent":"\ud83d"}}"#;
    std::fs::write(&input, format!("{alert}\n{}\n", good(1))).unwrap();
    let mut cfg = test_config(&dir.path().join("a"));
    let s = replay(&mut cfg, &[input]);
    assert_eq!((s.events, s.rejected.values().sum::<u64>(), s.alert_rows), (2, 0, 1), "{s:?}");
    let rows = read_archive(&dir.path().join("a"));
    let r = rows.iter().find(|r| r.event_type.as_deref() == Some("alert")).expect("the alert is archived");
    assert_eq!(r.raw, alert, "raw keeps the line as it came");
    assert_eq!(r.alert_signature.as_deref(), Some("ET WEB_SERVER probe \u{FFFD}"));
    assert_eq!(r.alert_signature_id, Some(2_000_001));
}
