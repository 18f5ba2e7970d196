//! Configured limits and start positions do what the configuration reference says:
//! `dead_letter.max_bytes`, `archive.max_open_partitions`, a file source's
//! `start_at = "end"`.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn flow(i: u64, hour: u64) -> String {
    format!(
        r#"{{"timestamp":"2024-05-01T{hour:02}:{:02}:{:02}.000000+0000","flow_id":{i},"event_type":"flow","src_ip":"10.0.0.1","src_port":{},"dest_ip":"10.0.0.2","dest_port":443,"proto":"TCP"}}"#,
        i % 60,
        i / 60 % 60,
        1024 + i % 60000
    )
}

/// The `alertflow_source_open_files` gauge (0 while the listener is not up).
fn open_files(port: u16) -> f64 {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return 0.0 };
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines().filter(|l| l.starts_with("alertflow_source_open_files")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn replay_file(cfg: &mut alertflow::config::Config, path: &Path) -> alertflow::pipeline::Summary {
    replay(cfg, &[path.to_path_buf()])
}

/// 1,000 malformed lines with a 2,000-byte dead-letter cap: the file stops growing at the
/// cap, every line is still counted as rejected, and the good lines between them flow.
#[test]
fn dead_letter_file_stops_at_max_bytes_and_every_rejection_is_still_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let mut text = String::new();
    for i in 0..1000u64 {
        text.push_str(&format!("{{\"broken\": {i}\n"));
        text.push_str(&flow(i, 10));
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let root = dir.path().join("archive");
    let mut cfg = test_config(&root);
    cfg.dead_letter.max_bytes = 2000;
    let s = replay_file(&mut cfg, &input);
    assert_eq!(s.rejected.values().sum::<u64>(), 1000, "{s:?}");
    assert_eq!(read_archive(&root).len(), 1000, "the good lines flow");
    let dl = cfg.dead_letter.path.clone().unwrap();
    let size = std::fs::metadata(&dl).unwrap().len();
    assert!(size > 0 && size <= 2000, "dead-letter file {size} bytes, cap 2000");
    let records = dead_letters(&root).len();
    assert!(records > 0 && records < 1000, "{records} records sampled under the cap");
}

/// Ten hours of events in order, `max_open_partitions = 2`: no commit spans more hours
/// than the bound plus the hours of the one batch that crossed it; with a large bound the
/// same input is one commit.
#[test]
fn max_open_partitions_seals_before_too_many_hours_are_open() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let mut text = String::new();
    for h in 0..10u64 {
        for i in 0..1000u64 {
            text.push_str(&flow(h * 1000 + i, h));
            text.push('\n');
        }
    }
    std::fs::write(&input, text).unwrap();
    let hours_per_commit = |max_open: usize| -> BTreeMap<u64, BTreeSet<String>> {
        let root = dir.path().join(format!("archive-{max_open}"));
        let mut cfg = test_config(&root);
        cfg.archive.max_open_partitions = max_open;
        cfg.archive.segment_max_bytes = 1 << 30;
        cfg.archive.max_segment_age = Duration::from_secs(3600);
        cfg.pipeline.read_bytes = 64 * 1024;
        replay_file(&mut cfg, &input);
        assert_eq!(read_archive(&root).len(), 10_000);
        let mut by_epoch: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        for seg in segments(&root) {
            let name = seg.file_name().unwrap().to_string_lossy().into_owned();
            let epoch: u64 = name.strip_prefix("part-").unwrap().split('-').next().unwrap().parse().unwrap();
            let part = seg.parent().unwrap().strip_prefix(&root).unwrap().display().to_string();
            by_epoch.entry(epoch).or_default().insert(part);
        }
        by_epoch
    };
    let bounded = hours_per_commit(2);
    // A 64 KiB batch holds ~330 lines: it touches at most two hours of this input.
    assert!(bounded.values().all(|hours| hours.len() <= 2 + 2), "{bounded:#?}");
    assert!(bounded.len() >= 3, "the bound split the replay into commits: {bounded:#?}");
    let unbounded = hours_per_commit(1000);
    assert_eq!(unbounded.len(), 1, "without the bound, one commit: {unbounded:#?}");
    assert_eq!(unbounded.values().next().unwrap().len(), 10);
}

/// `start_at = "end"`: lines already in the file when alertflow starts are skipped; lines
/// appended afterwards are archived, each once.
#[test]
fn start_at_end_skips_what_the_file_held_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let old: String = (0..100).map(|i| flow(i, 10) + "\n").collect();
    std::fs::write(&input, old).unwrap();
    let root = dir.path().join("archive");
    let cfg = dir.path().join("c.toml");
    let mport = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{}\"\nstart_at = \"end\"\npoll_interval_ms = 50\n",
            root.display(),
            input.display()
        ),
    )
    .unwrap();
    let child = Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&cfg).env("ALERTFLOW_LOG", "warn").stdout(Stdio::null()).spawn().unwrap(),
    );
    // Append only once the source has the file open (its end is taken at open).
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_files(mport) < 1.0 {
        assert!(Instant::now() < deadline, "the file source never opened the file");
        std::thread::sleep(Duration::from_millis(50));
    }
    let new: String = (100..150).map(|i| flow(i, 11) + "\n").collect();
    std::fs::OpenOptions::new().append(true).open(&input).unwrap().write_all(new.as_bytes()).unwrap();
    while read_archive(&root).len() < 50 {
        assert!(Instant::now() < deadline, "appended lines not archived: {}", read_archive(&root).len());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.stop();
    let mut ids: Vec<i64> = read_archive(&root).iter().map(|r| r.flow_id.unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (100..150).collect::<Vec<i64>>());
}

/// One read batch whose 2,000 events each fall in another hour: every row lands in its own
/// hour's partition, while a writer lane holds at most `max_open_partitions` encoders
/// open (the others are closed early and wait for the commit), so memory stays bounded.
#[test]
fn one_batch_spanning_2000_hours_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let base = 1_704_067_200i64; // 2024-01-01T00:00:00Z
    let text: String = (0..2000i64)
        .map(|h| {
            let t = jiff::Timestamp::from_second(base + h * 3600).unwrap().strftime("%Y-%m-%dT%H:%M:%S.000000+0000");
            format!("{{\"timestamp\":\"{t}\",\"flow_id\":{h},\"event_type\":\"flow\",\"src_ip\":\"10.0.0.1\",\"src_port\":1,\"dest_ip\":\"10.0.0.2\",\"dest_port\":2,\"proto\":\"TCP\"}}\n")
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let archive = dir.path().join("archive");
    let child = Command::new(env!("CARGO_BIN_EXE_alertflow"))
        .args(["replay", "--json", "--archive"])
        .arg(&archive)
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, peak) = output_with_peak(child);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rows_archived"], 2000);
    let rows = read_archive(&archive);
    assert_eq!(rows.len(), 2000);
    let parts: BTreeSet<&str> = rows.iter().map(|r| r.partition.as_str()).collect();
    assert_eq!(parts.len(), 2000, "each event in its own hour");
    println!("peak RSS of the replay: {peak} MiB");
    assert!(peak < 600, "peak RSS {peak} MiB for 2,000 hours in one batch");
}

/// Times no sensor writes — before 1970, after 2199, more than `plausible_future_hours`
/// ahead of the clock, more than `plausible_past_days` behind it — are archived under the
/// hour they arrived, `timestamp` kept, and counted; plausible ones keep their hour.
#[test]
fn implausible_event_times_are_filed_under_their_arrival_hour() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("eve.json");
    let at = |ts: &str, i: u64| {
        format!("{{\"timestamp\":\"{ts}\",\"flow_id\":{i},\"event_type\":\"flow\",\"src_ip\":\"10.0.0.1\",\"src_port\":1,\"dest_ip\":\"10.0.0.2\",\"dest_port\":2,\"proto\":\"TCP\"}}\n")
    };
    let implausible = [
        "1969-12-31T23:00:00.000000+0000",
        "2300-01-01T00:00:00.000000+0000",
        "9999-12-31T23:59:59.000000+0000",
        "2026-11-20T12:00:00.000000+0000",
        "2026-11-01T08:00:00.000000+0000",
    ];
    let plausible = ["2026-11-18T09:00:00.000000+0000", "2026-11-15T03:00:00.000000+0000", "2026-11-18T12:00:00.000000+0000"];
    let mut text = String::new();
    for (i, ts) in implausible.iter().chain(&plausible).enumerate() {
        text.push_str(&at(ts, i as u64));
    }
    std::fs::write(&input, text).unwrap();
    let cfg = dir.path().join("c.toml");
    let archive = dir.path().join("archive");
    std::fs::write(
        &cfg,
        format!(
            "[pipeline]\nplausible_past_days = 7\nplausible_future_hours = 24\n\n[archive]\nroot = \"{}\"\n\n[metrics]\nlisten = \"\"\n",
            archive.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow"))
        .args(["replay", "--json", "--config"])
        .arg(&cfg)
        .arg(&input)
        .env(alertflow::event::time::CLOCK_ENV, "2026-11-18T10:05:00Z")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["implausible_times"], 5, "{summary}");
    let rows = read_archive(&archive);
    assert_eq!(rows.len(), 8);
    for r in &rows {
        let id = r.flow_id.unwrap() as usize;
        let ts = alertflow::event::time::parse_timestamp_us(implausible.iter().chain(&plausible).nth(id).unwrap().as_bytes());
        assert_eq!(r.timestamp, ts, "the timestamp column keeps the event's own time");
        let want = match id {
            0..=4 => "date=2026-11-18/hour=10",
            5 => "date=2026-11-18/hour=09",
            6 => "date=2026-11-15/hour=03",
            _ => "date=2026-11-18/hour=12",
        };
        assert!(r.partition.ends_with(want), "event {id} in {}", r.partition);
    }
}
