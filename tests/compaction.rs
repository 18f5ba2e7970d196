//! Compaction end to end with the real binary: a trickle of events makes many small
//! segments in one hour; once the hour is quiet they become one file, every row exactly
//! once, the newest commit's positions carried in its footer (a restart resumes from
//! them). A kill just before or just after the exchange of the folders loses and
//! duplicates nothing.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const PARTITION: &str = "date=2024-05-01/hour=10";

fn line(i: u64) -> String {
    format!(
        r#"{{"timestamp":"2024-05-01T10:{:02}:{:02}.{:06}+0000","flow_id":{i},"event_type":"flow","src_ip":"10.1.0.{}","src_port":{},"dest_ip":"192.0.2.7","dest_port":443,"proto":"TCP","flow":{{"pkts_toserver":3,"bytes_toserver":{}}}}}"#,
        i / 60 % 60,
        i % 60,
        i % 1_000_000,
        i % 200,
        1024 + i % 60000,
        i * 13 % 100_000
    )
}

fn append(path: &Path, range: std::ops::Range<u64>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let text: String = range.map(|i| line(i) + "\n").collect();
    f.write_all(text.as_bytes()).unwrap();
}

fn write_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("alertflow.toml");
    let text = format!(
        "[archive]\nroot = \"{}\"\nidle_seal_ms = 50\nmax_segment_age_secs = 1\n\n[archive.compaction]\nquiet_secs = 2\nmin_files = 4\n\n[metrics]\nlisten = \"\"\n",
        dir.join("archive").display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn start(cfg: &Path, input: &Path, env: &[(&str, &str)]) -> Running {
    run_following(cfg, input, env)
}

/// File names in the hour's folder of the events table.
fn files(archive: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(archive.join("events").join(PARTITION))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Appends `range` a few lines at a time, each bit its own commit (a trickle).
fn trickle(input: &Path, archive: &Path, range: std::ops::Range<u64>) {
    let start = range.start;
    for chunk in range.clone().step_by(40) {
        append(input, chunk..(chunk + 40).min(range.end));
        let want = (chunk + 40).min(range.end) - start;
        wait_for("the chunk to be committed", || read_rows_settled(archive) >= want as usize + start as usize);
    }
}

/// Rows of the events table, read again if a file was swapped away while reading.
fn read_rows_settled(archive: &Path) -> usize {
    for _ in 0..20 {
        if let Ok(n) = std::panic::catch_unwind(|| read_archive(archive).len()) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the archive could not be read");
}

fn assert_exactly(archive: &Path, n: u64) {
    let mut ids: Vec<i64> = read_archive(archive).iter().map(|r| r.flow_id.unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids.len() as u64, n, "rows");
    ids.dedup();
    assert_eq!(ids.len() as u64, n, "every row once");
}

fn compacted_from(path: &Path) -> Vec<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = r.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    let v = kv.iter().find(|k| k.key == alertflow::archive::compact::KEY_COMPACTED_FROM).and_then(|k| k.value.clone()).unwrap();
    v.split(',').map(String::from).collect()
}

#[test]
fn a_quiet_hour_of_small_segments_becomes_one_file_and_a_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    std::fs::write(&input, "").unwrap();
    let child = start(&cfg, &input, &[]);
    trickle(&input, &archive, 0..400);
    let before = files(&archive);
    assert!(before.len() >= 6, "a trickle makes many small segments: {before:?}");
    // Quiet for 2 s: the hour is compacted, the newest commit's segments too.
    wait_for("the hour to be compacted", || files(&archive).iter().any(|f| f.starts_with("compact-")));
    wait_for("the replaced segments to be removed", || !archive.join("_compact").join("events").join(PARTITION).exists());
    let after = files(&archive);
    assert!(after.len() == 1 && after[0].starts_with("compact-"), "one file for the hour: {after:?}");
    let mut from = compacted_from(&archive.join("events").join(PARTITION).join(&after[0]));
    from.sort();
    assert_eq!(from, before, "the footer lists the segments it replaced");
    assert_exactly(&archive, 400);
    child.stop();

    // A restart resumes from the newest commit's positions, now in the compacted file's
    // footer: nothing read twice, and the next commit numbers on from it.
    append(&input, 400..500);
    let child = start(&cfg, &input, &[]);
    wait_for("500 rows", || read_rows_settled(&archive) >= 500);
    child.stop();
    assert_exactly(&archive, 500);
}

fn kill_in_compaction(at: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    std::fs::write(&input, "").unwrap();
    let child = start(&cfg, &input, &[(alertflow::archive::compact::FAULT_KILL_IN_COMPACTION, at)]);
    trickle(&input, &archive, 0..400);
    let before = files(&archive);
    let status = child.wait_exit(60);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the fault point killed the process: {status:?}");
    let staging = archive.join("_compact").join("events").join(PARTITION);
    let staged: Vec<String> = std::fs::read_dir(&staging).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let now = files(&archive);
    if at == "before_exchange" {
        assert_eq!(now, before, "before the exchange the hour is untouched");
        assert!(staged.iter().any(|f| f.starts_with("compact-")), "{staged:?}");
    } else {
        assert!(now.iter().any(|f| f.starts_with("compact-")), "after the exchange the hour holds the compacted file: {now:?}");
        assert!(staged.iter().filter(|f| f.starts_with("part-")).count() >= 4, "and the staging folder the replaced segments: {staged:?}");
    }
    // Whatever side of the exchange: readers see every row once.
    assert_exactly(&archive, 400);
    // The restart removes the staging folder, compacts (again, or for the first time), and
    // goes on.
    append(&input, 400..450);
    let child = start(&cfg, &input, &[]);
    wait_for("450 rows", || read_rows_settled(&archive) >= 450);
    wait_for("a compacted hour and no staging folder", || {
        files(&archive).iter().any(|f| f.starts_with("compact-")) && !archive.join("_compact").join("events").join(PARTITION).exists()
    });
    child.stop();
    assert_exactly(&archive, 450);
}

#[test]
fn a_kill_before_the_exchange_leaves_the_hour_as_it_was() {
    kill_in_compaction("before_exchange");
}

#[test]
fn a_kill_after_the_exchange_leaves_the_compacted_hour() {
    kill_in_compaction("after_exchange");
}

/// Replays `range` into `archive` as one run (one commit, one segment per table and hour).
fn replay_run(dir: &Path, archive: &Path, range: std::ops::Range<u64>) {
    let input = dir.join(format!("run-{}.json", range.start));
    append(&input, range);
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["replay", "--archive"]).arg(archive).arg(&input).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `alertflow compact` of `archive`, merging any partition of two segments or more.
fn compact_by_hand(archive: &Path) -> Command {
    let cfg = archive.with_extension("compact.toml");
    std::fs::write(&cfg, "[archive.compaction]\nmin_files = 2\n\n[metrics]\nlisten = \"\"\n").unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_alertflow"));
    c.args(["compact", "--config"]).arg(&cfg).arg("--archive").arg(archive).env("ALERTFLOW_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

/// `alertflow compact` killed with SIGKILL at 20 random moments (more segments added
/// whenever a run got to finish): after every kill each row is in the archive exactly once;
/// the last run compacts the hour.
#[test]
fn compact_killed_at_random_moments_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut next = 0u64;
    let add_runs = |n: usize, next: &mut u64| {
        for _ in 0..n {
            replay_run(dir.path(), &archive, *next..*next + 30);
            *next += 30;
        }
    };
    add_runs(10, &mut next);
    // How long a whole compaction takes here, to spread the kills over it.
    let t = std::time::Instant::now();
    let out = compact_by_hand(&archive).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let full = t.elapsed();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("merged events/date=2024-05-01/hour=10: 10 segments into 1 files"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_exactly(&archive, next);
    let mut rng = Rng(seed("compaction kills"));
    let mut killed = 0;
    while killed < 20 {
        add_runs(3, &mut next);
        let mut child = compact_by_hand(&archive).spawn().unwrap();
        std::thread::sleep(full.mul_f64(rng.below(1000) as f64 / 1000.0));
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            killed += 1;
        }
        child.wait().unwrap();
        assert_exactly(&archive, next);
    }
    // A run to the end removes what the kills left and leaves the hour compacted.
    let out = compact_by_hand(&archive).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!archive.join("_compact").exists());
    let names = files(&archive);
    assert!(names.len() == 1 && names[0].starts_with("compact-"), "{names:?}");
    assert_exactly(&archive, next);
    // A second pass finds nothing to merge.
    let out = compact_by_hand(&archive).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("merged 0 partitions"), "{}", String::from_utf8_lossy(&out.stdout));
}
