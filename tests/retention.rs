//! Retention removes whole expired date partitions: `alertflow prune` (a dry run changes
//! nothing), the hourly pass inside `run`, and a kill in the middle of deleting, after
//! which no half-removed partition is read as data.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::read_archive;

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `n` flow events on the day `days_ago` days back (noon UTC).
fn events(days_ago: i64, first_id: i64, n: i64) -> String {
    let t = (now() / DAY - days_ago) * DAY + 12 * 3600;
    let ts = jiff::Timestamp::from_second(t).unwrap().strftime("%Y-%m-%dT%H:%M:%S.000000+0000").to_string();
    (first_id..first_id + n)
        .map(|i| format!("{{\"timestamp\":\"{ts}\",\"flow_id\":{i},\"event_type\":\"flow\",\"src_ip\":\"10.0.0.1\",\"src_port\":1,\"dest_ip\":\"10.0.0.2\",\"dest_port\":2,\"proto\":\"TCP\"}}\n"))
        .collect()
}

fn date(days_ago: i64) -> String {
    jiff::Timestamp::from_second((now() / DAY - days_ago) * DAY).unwrap().strftime("%Y-%m-%d").to_string()
}

fn replay(archive: &Path, text: &str, name: &str) {
    let input = archive.parent().unwrap().join(name);
    std::fs::write(&input, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["replay", "--archive"]).arg(archive).arg(&input).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn prune(archive: &Path, extra: &[&str], fault: bool) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alertflow"));
    c.args(["prune", "--days", "30", "--archive"]).arg(archive).args(extra);
    if fault {
        c.env(alertflow::archive::retention::FAULT_KILL_IN_RETENTION, "after_move");
    }
    c.output().unwrap()
}

fn ids_by_date(archive: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in read_archive(archive) {
        let d = r.partition.split('/').next().unwrap().trim_start_matches("date=").to_string();
        *m.entry(d).or_insert(0) += 1;
    }
    m
}

#[test]
fn prune_removes_whole_expired_partitions_and_a_kill_while_deleting_leaves_none_half_read() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    // Two old days and one inside the 30 days, then a recent commit (the newest).
    replay(&archive, &(events(45, 0, 30) + &events(40, 100, 20) + &events(10, 200, 10)), "old.json");
    replay(&archive, &events(0, 300, 5), "new.json");
    let before = ids_by_date(&archive);
    assert_eq!(before.len(), 4, "{before:?}");

    // A dry run lists what would go and changes nothing.
    let out = prune(&archive, &["--dry-run"], false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("would remove events/date={}", date(45))), "{text}");
    assert!(text.contains(&format!("would remove events/date={}", date(40))), "{text}");
    assert!(!text.contains(&date(10)), "inside the retention: {text}");
    assert_eq!(ids_by_date(&archive), before);

    // Killed (SIGKILL) while deleting the first partition: it is wholly out of the table.
    let out = prune(&archive, &[], true);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&out.status), Some(libc::SIGKILL), "{}", String::from_utf8_lossy(&out.stderr));
    let after_kill = ids_by_date(&archive);
    assert!(!after_kill.contains_key(&date(45)), "the half-deleted partition is not read: {after_kill:?}");
    assert_eq!(after_kill.get(&date(40)), Some(&20), "the next one is whole");
    assert_eq!(after_kill.get(&date(10)), Some(&10));
    assert!(archive.join("_trash").is_dir(), "the rest waits in the trash");

    // The next pass removes the rest and empties the trash.
    let out = prune(&archive, &[], false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 1 partitions"), "{}", String::from_utf8_lossy(&out.stdout));
    let after = ids_by_date(&archive);
    assert_eq!(after.keys().cloned().collect::<Vec<_>>(), vec![date(10), date(0)]);
    assert_eq!((after[&date(10)], after[&date(0)]), (10, 5));
    assert!(!archive.join("_trash").exists());
}

#[test]
fn run_removes_expired_partitions_by_itself_and_a_running_archive_refuses_prune() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    replay(&archive, &events(60, 0, 10), "old.json");
    replay(&archive, &events(1, 100, 10), "recent.json");
    let input = dir.path().join("live.json");
    std::fs::write(&input, events(0, 200, 3)).unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\nroot = \"{}\"\nidle_seal_ms = 100\nretention_days = 30\n\n[metrics]\nlisten = \"\"\n\n[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{}\"\n",
            archive.display(),
            input.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("alertflow.log");
    let child = common::run_logged(&cfg, &log, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = ids_by_date(&archive);
        if !d.contains_key(&date(60)) && d.get(&date(0)) == Some(&3) {
            assert_eq!(d.get(&date(1)), Some(&10), "{d:?}");
            break;
        }
        assert!(Instant::now() < deadline, "expired partition still there: {d:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("retention: partition removed"), "{text}");
    let out = prune(&archive, &[], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a running alertflow holds this archive"), "{}", String::from_utf8_lossy(&out.stderr));
    child.stop();
}
