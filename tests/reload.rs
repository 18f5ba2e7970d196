//! Enrichment reloads against the running binary: SIGHUP reloads every source at once
//! (threat-intel feed, asset inventory, GeoIP database, whose per-thread memo must be
//! cleared), nothing reloads without SIGHUP when polling is off, and polling picks up a
//! changed file by itself.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, read_table, wait_for, Running};

/// Sum of the samples of `name` whose labels contain `label`.
fn metric(port: u16, name: &str, label: &str) -> f64 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return -1.0 };
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(['{', ' '])) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn alert(i: usize, src: &str, dest: &str) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-18T10:00:{:02}.000000+0000\",\"flow_id\":{},\"event_type\":\"alert\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"{dest}\",\"dest_port\":443,\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\"signature_id\":{},\"rev\":1,\"signature\":\"test\",\"category\":\"Misc\",\"severity\":2}}}}\n",
        i,
        1000 + i,
        100 + i
    )
}

/// Appends alert `i` and returns its `alerts` row once it is sealed.
fn send(input: &Path, archive: &Path, i: usize, src: &str) -> std::collections::BTreeMap<String, String> {
    std::fs::OpenOptions::new().append(true).open(input).unwrap().write_all(alert(i, src, "10.0.0.5").as_bytes()).unwrap();
    let sid = (100 + i).to_string();
    let mut row = None;
    wait_for(&format!("alert {i} sealed"), || {
        row = read_table(archive, "alerts").into_iter().find(|r| r.get("alert_signature_id") == Some(&sid));
        row.is_some()
    });
    row.unwrap()
}

/// A column of a row read back ("" when null).
fn v<'a>(row: &'a std::collections::BTreeMap<String, String>, column: &str) -> &'a str {
    row.get(column).map(String::as_str).unwrap_or("")
}

/// A copy of the City test database with one country code changed in its data section
/// (strings are stored once and pointed at, so every network of that country changes).
fn patched_city(from: &str, to: &str) -> Vec<u8> {
    let mut db = std::fs::read(common::data_dir().join("geoip/GeoIP2-City-Test.mmdb")).unwrap();
    let needle = [&[0x42u8][..], from.as_bytes()].concat();
    let at: Vec<usize> = db.windows(3).enumerate().filter(|(_, w)| *w == needle.as_slice()).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "the code is stored once");
    db[at[0] + 1..at[0] + 3].copy_from_slice(to.as_bytes());
    db
}

/// Writes `bytes` to `path` by rename, as configuration management does.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Writes the test's configuration: a followed file, the three kinds of enrichment source.
fn write_config(dir: &Path, poll_secs: u64, mport: u16, hunt_days: u32) -> std::path::PathBuf {
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nroot = \"{root}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"127.0.0.1:{mport}\"\n\n[enrich]\ngeoip_city = \"{city}\"\nassets = \"{assets}\"\nreload_poll_secs = {poll_secs}\nretro_hunt_days = {hunt_days}\n\n[[enrich.intel]]\nname = \"feed\"\npath = \"{feed}\"\n\n[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{input}\"\npoll_interval_ms = 50\n",
            root = dir.join("archive").display(),
            city = dir.join("city.mmdb").display(),
            assets = dir.join("assets.csv").display(),
            feed = dir.join("feed.txt").display(),
            input = dir.join("eve.json").display(),
        ),
    )
    .unwrap();
    cfg
}

/// `alertflow run` with the process clock at 2026-11-18T10:05:00Z.
fn spawn(cfg: &Path) -> Running {
    Running::new(
        Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["run", "--config"])
            .arg(cfg)
            .env("ALERTFLOW_LOG", "warn")
            .env(alertflow::event::time::CLOCK_ENV, "2026-11-18T10:05:00Z")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn start(dir: &Path, poll_secs: u64, mport: u16) -> Running {
    spawn(&write_config(dir, poll_secs, mport, 0))
}

/// The sources of a test directory: an empty followed file, the City test database, an
/// inventory with 10.0.0.0/24 as `web-1`, and the feed `feed`.
fn fixture(d: &Path, feed: &str) {
    std::fs::write(d.join("eve.json"), "").unwrap();
    std::fs::copy(common::data_dir().join("geoip/GeoIP2-City-Test.mmdb"), d.join("city.mmdb")).unwrap();
    std::fs::write(d.join("assets.csv"), "cidr,name,owner,criticality,tags\n10.0.0.0/24,web-1,ops,high,\n").unwrap();
    std::fs::write(d.join("feed.txt"), feed).unwrap();
}

fn reloads(mport: u16, source: &str) -> f64 {
    metric(mport, "alertflow_enrich_reloads_total", &format!("source=\"{source}\",result=\"ok\"")).max(metric(
        mport,
        "alertflow_enrich_reloads_total",
        &format!("result=\"ok\",source=\"{source}\""),
    ))
}

#[test]
fn sighup_reloads_feed_assets_and_geoip_and_clears_the_geoip_memo() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let archive = d.join("archive");
    fixture(d, "203.0.113.250\n");
    let mport = free_port();
    let child = start(d, 0, mport);
    // 67.43.156.0/24 is Bhutan in the test database.
    let bt = "67.43.156.7";
    let r = send(&d.join("eve.json"), &archive, 1, bt);
    assert_eq!((v(&r, "src_country"), v(&r, "dest_asset")), ("BT", "web-1"));
    assert!(!v(&r, "intel").contains(bt), "{}", v(&r, "intel"));
    let hups = |s: &str| reloads(mport, s);
    let before = (hups("intel:feed"), hups("assets"), hups("geoip-city"));
    // Every file changes; with polling off nothing is reloaded until SIGHUP.
    replace(&d.join("feed.txt"), format!("203.0.113.250\n{bt}\n").as_bytes());
    replace(&d.join("assets.csv"), b"cidr,name,owner,criticality,tags\n10.0.0.0/24,db-1,dba,critical,\n");
    replace(&d.join("city.mmdb"), &patched_city("BT", "ZZ"));
    let r = send(&d.join("eve.json"), &archive, 2, bt);
    assert_eq!((v(&r, "src_country"), v(&r, "dest_asset")), ("BT", "web-1"), "no reload without SIGHUP when polling is off");
    assert!(!v(&r, "intel").contains(bt));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.pid() as i32, libc::SIGHUP) }, 0);
    wait_for("three reloads", || hups("intel:feed") > before.0 && hups("assets") > before.1 && hups("geoip-city") > before.2);
    let r = send(&d.join("eve.json"), &archive, 3, bt);
    // The address was looked up (and memoized) before the swap: the memo was cleared.
    assert_eq!(v(&r, "src_country"), "ZZ", "the new GeoIP database answers, not the memo of the old");
    assert_eq!(v(&r, "dest_asset"), "db-1");
    assert!(v(&r, "intel").contains(bt), "the feed's new indicator matches: {}", v(&r, "intel"));
    assert!(v(&r, "source_versions").contains("intel:feed@"), "{}", v(&r, "source_versions"));
    child.stop();
}

#[test]
fn polling_picks_up_a_changed_feed_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let archive = d.join("archive");
    fixture(d, "198.51.100.9\n");
    let mport = free_port();
    let child = start(d, 1, mport);
    let r = send(&d.join("eve.json"), &archive, 1, "198.51.100.9");
    assert!(v(&r, "intel").contains("198.51.100.9"), "{}", v(&r, "intel"));
    let before = reloads(mport, "intel:feed");
    // The indicator is withdrawn; the next poll (every second) swaps the feed.
    replace(&d.join("feed.txt"), b"203.0.113.250\n");
    wait_for("the poll's reload", || reloads(mport, "intel:feed") > before);
    let r = send(&d.join("eve.json"), &archive, 2, "198.51.100.9");
    assert!(!v(&r, "intel").contains("198.51.100.9"), "the withdrawn indicator no longer matches: {}", v(&r, "intel"));
    child.stop();
}

fn flow_to(day: u32, i: usize, dest: &str) -> String {
    format!(
        "{{\"timestamp\":\"2026-11-{day:02}T09:00:{:02}.000000+0000\",\"flow_id\":{},\"event_type\":\"flow\",\"src_ip\":\"10.0.0.9\",\"src_port\":{},\"dest_ip\":\"{dest}\",\"dest_port\":443,\"proto\":\"TCP\"}}\n",
        i % 60,
        5000 + i,
        30000 + i
    )
}

/// A feed that gains an indicator on SIGHUP starts a retro-hunt inside the running
/// pipeline over the last `retro_hunt_days` of archived events (by date partition, with
/// the process clock), while the pipeline goes on archiving; `alertflow hunt` finds the
/// same events from the command line, and more with a wider `--days`.
#[test]
fn a_feed_gaining_an_indicator_hunts_the_archive_inside_the_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let archive = d.join("archive");
    let bad = "198.51.100.77";
    // 2026-11-17 is inside two days of the clock (2026-11-18); 2026-11-10 is not.
    let mut text = String::new();
    for i in 0..6 {
        text.push_str(&flow_to(17, i, bad));
        text.push_str(&flow_to(10, 100 + i, bad));
        text.push_str(&flow_to(17, 200 + i, "192.0.2.1"));
    }
    fixture(d, "203.0.113.250\n");
    std::fs::write(d.join("eve.json"), &text).unwrap();
    let mport = free_port();
    let child = spawn(&write_config(d, 0, mport, 2));
    wait_for("18 events archived", || common::read_archive(&archive).len() == 18);
    replace(&d.join("feed.txt"), format!("203.0.113.250\n{bad}\n").as_bytes());
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.pid() as i32, libc::SIGHUP) }, 0);
    // The pipeline keeps archiving while the hunt runs.
    let more: String = (0..6).map(|i| flow_to(18, 300 + i, "192.0.2.2")).collect();
    std::fs::OpenOptions::new().append(true).open(d.join("eve.json")).unwrap().write_all(more.as_bytes()).unwrap();
    let out = archive.join("_state/retro-hunt.jsonl");
    let lines = || -> Vec<serde_json::Value> { std::fs::read_to_string(&out).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    wait_for("the retro-hunt's matches", || lines().len() >= 6);
    wait_for("24 events archived", || common::read_archive(&archive).len() == 24);
    std::thread::sleep(Duration::from_millis(300));
    child.stop();
    let found = lines();
    assert_eq!(found.len(), 6, "the six matching events of 2026-11-17, none of 2026-11-10: {found:#?}");
    for v in &found {
        assert_eq!((v["type"].as_str(), v["origin"].as_str()), (Some("intel_alert"), Some("retro-hunt")));
        assert!(v["timestamp"].as_str().unwrap().starts_with("2026-11-17T09:00:0"), "the original event time: {v}");
        assert_eq!(v["event"]["dest_ip"], bad);
    }
    // The same hunt from the command line, over two days and over thirty.
    let cli = |days: &str| -> Vec<serde_json::Value> {
        let o = Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["hunt", "--archive"])
            .arg(&archive)
            .arg("--feed")
            .arg(d.join("feed.txt"))
            .args(["--days", days])
            .env(alertflow::event::time::CLOCK_ENV, "2026-11-18T10:05:00Z")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let two = cli("2");
    assert_eq!(two.len(), 6);
    let mut ids: Vec<i64> = two.iter().map(|v| v["event"]["flow_id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (5000..5006).collect::<Vec<i64>>());
    let thirty = cli("30");
    assert_eq!(thirty.len(), 12, "with 30 days the events of 2026-11-10 match too");
}
