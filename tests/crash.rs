//! Crash safety and rotation, end to end with the real binary: `alertflow run` is killed
//! with SIGKILL at random moments while a sensor file grows; after a restart the archive
//! holds every line exactly once. Rotation by rename+create and by copytruncate under load
//! loses nothing either.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// One EVE line with a unique flow id, spread over three hours.
fn line(i: u64) -> String {
    let secs = (i * 37) % (3 * 3600);
    format!(
        r#"{{"timestamp":"2024-05-01T{:02}:{:02}:{:02}.{:06}+0000","flow_id":{i},"event_type":"flow","src_ip":"10.1.{}.{}","src_port":{},"dest_ip":"192.0.2.{}","dest_port":443,"proto":"TCP","flow":{{"pkts_toserver":{},"bytes_toserver":{}}}}}"#,
        10 + secs / 3600,
        secs / 60 % 60,
        secs % 60,
        i % 1_000_000,
        i % 250,
        i % 200,
        1024 + i % 60000,
        i % 254,
        i % 977,
        i * 13 % 100_000
    )
}

fn append(path: &Path, range: std::ops::Range<u64>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let mut buf = String::new();
    for i in range {
        buf.push_str(&line(i));
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

fn write_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("alertflow.toml");
    std::fs::write(
        &cfg,
        format!(
            "[pipeline]\nread_bytes = 65536\n\n[archive]\nroot = \"{}\"\nsegment_max_bytes = 1048576\nidle_seal_ms = 200\nmax_segment_age_secs = 1\n\n[metrics]\nlisten = \"\"\n",
            dir.join("archive").display()
        ),
    )
    .unwrap();
    cfg
}

fn start(cfg: &Path, input: &str) -> Running {
    start_with(cfg, input, &[])
}

fn start_with(cfg: &Path, input: &str, env: &[(&str, &str)]) -> Running {
    run_following(cfg, input, env)
}

/// Small deterministic generator for the kill moments (seed printed for reproduction).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn seed() -> u64 {
    std::env::var("ALERTFLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64)
}

/// Waits until the archive holds `n` rows, then stops the process with SIGTERM.
fn drain_and_stop(child: Running, archive: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = read_archive(archive);
        let have = rows.len();
        if have >= n {
            break;
        }
        if Instant::now() >= deadline {
            let mut seen = vec![0u32; n];
            for r in &rows {
                seen[r.flow_id.unwrap() as usize] += 1;
            }
            let missing: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).take(20).collect();
            let dead = dead_letters(archive);
            panic!("archive stuck at {have} of {n} rows; missing ids {missing:?}; dead letters {dead:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.stop();
}

fn assert_exactly(rows: &[Row], n: u64) {
    let mut ids: Vec<i64> = rows.iter().map(|r| r.flow_id.unwrap()).collect();
    ids.sort_unstable();
    let dups = ids.windows(2).filter(|w| w[0] == w[1]).count();
    ids.dedup();
    assert_eq!(dups, 0, "duplicated rows");
    assert_eq!(ids.len() as u64, n, "lost rows");
    assert_eq!(ids.first(), Some(&0));
    assert_eq!(ids.last(), Some(&(n as i64 - 1)));
    for r in rows {
        assert_eq!(r.raw, line(r.flow_id.unwrap() as u64), "raw is the line byte for byte");
    }
}

fn no_temporaries(archive: &Path) {
    let mut stack = vec![archive.join("events")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                assert!(!e.file_name().to_string_lossy().ends_with(".tmp"), "temporary left: {}", e.path().display());
            }
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let seed = seed();
    eprintln!("crash test seed: {seed} (set ALERTFLOW_TEST_SEED to repeat)");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    let mut written = 0u64;
    append(&input, 0..60_000);
    written += 60_000;
    for round in 0..10 {
        let child = start(&cfg, input.to_str().unwrap());
        let wait = 30 + rng.next(700);
        // The sensor keeps writing while alertflow runs.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(wait) {
            append(&input, written..written + 1_000);
            written += 1_000;
            std::thread::sleep(Duration::from_millis(15));
        }
        child.kill9();
        eprintln!("round {round}: killed after {wait} ms with {} rows sealed", read_archive(&archive).len());
    }
    let child = start(&cfg, input.to_str().unwrap());
    drain_and_stop(child, &archive, written as usize);
    let rows = read_archive(&archive);
    assert_exactly(&rows, written);
    no_temporaries(&archive);
    assert_eq!(dead_letters(&archive), Vec::<serde_json::Value>::new());
    // Three hours of event time, three partitions.
    let parts: std::collections::BTreeSet<_> = rows.iter().map(|r| r.partition.clone()).collect();
    assert_eq!(parts.len(), 3, "{parts:?}");
}

/// Sealed segments (`epoch, index, count`) and temporaries (`epoch`) under `events/`.
fn layout(archive: &Path) -> (Vec<(u64, usize, usize)>, Vec<u64>) {
    let (mut finals, mut temps) = (Vec::new(), Vec::new());
    let mut stack = vec![archive.join("events")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                stack.push(e.path());
            } else if let Some(core) = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")) {
                let f: Vec<u64> = core.split('-').map(|x| x.parse().unwrap()).collect();
                finals.push((f[0], f[1] as usize, f[2] as usize));
            } else if let Some(core) = name.strip_prefix(".part-").and_then(|n| n.strip_suffix(".parquet.tmp")) {
                temps.push(core.split('-').next().unwrap().parse().unwrap());
            }
        }
    }
    (finals, temps)
}

/// The deterministic crash inside a commit: the fault point kills the process (SIGKILL) after the
/// first rename of a commit of several segments (three hours of events: one segment per
/// hour at least). The archive on disk is then half renamed; the next start must roll the
/// commit forward (its temporaries were complete and fsynced before the first rename), and
/// every line must be archived exactly once.
#[test]
fn a_kill_between_two_renames_of_one_commit_is_rolled_forward() {
    kill_between_two_renames(false);
}

/// The same with one open segment per writer lane (`max_open_partitions = 1`): a commit's
/// other hours were closed early, their footers without the checkpoint; recovery finds it.
#[test]
fn a_kill_between_two_renames_with_segments_closed_early_is_rolled_forward() {
    kill_between_two_renames(true);
}

fn kill_between_two_renames(one_open_segment: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    if one_open_segment {
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("max_segment_age_secs = 1\n", "max_segment_age_secs = 1\nmax_open_partitions = 1\nwriter_threads = 1\n");
        std::fs::write(&cfg, text).unwrap();
    }
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    append(&input, 0..30_000);
    let child = start_with(&cfg, input.to_str().unwrap(), &[(alertflow::archive::FAULT_KILL_AFTER_RENAMES, "1")]);
    let status = child.wait_exit(120);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "the fault point killed the process: {status:?}");
    // Half renamed: the newest epoch has one sealed segment of several, the rest are temporaries.
    let (finals, temps) = layout(&archive);
    let newest = finals.iter().map(|f| f.0).max().expect("one segment was renamed");
    let sealed: Vec<_> = finals.iter().filter(|f| f.0 == newest).collect();
    assert_eq!(sealed.len(), 1, "{finals:?}");
    let count = sealed[0].2;
    assert!(count >= 3, "a commit of one segment per hour at least: {finals:?}");
    assert_eq!(temps.iter().filter(|&&e| e == newest).count(), count - 1, "the commit's other segments wait as temporaries: {temps:?}");
    // The next commit's segments may already be open (a commit is sealed while new rows go
    // on): they are temporaries of a later epoch, discarded at the restart.
    let later = temps.iter().filter(|&&e| e > newest).count();
    println!("temporaries of later commits at the kill: {later}");
    let rows_before = read_archive(&archive).len();
    assert!(rows_before > 0 && rows_before < 30_000, "{rows_before}");
    // Restart without the fault: the commit is finished, then the rest is read once.
    append(&input, 30_000..40_000);
    let child = start(&cfg, input.to_str().unwrap());
    drain_and_stop(child, &archive, 40_000);
    let (finals, _) = layout(&archive);
    assert_eq!(finals.iter().filter(|f| f.0 == newest).count(), count, "every segment of the interrupted commit is in place: {finals:?}");
    assert_exactly(&read_archive(&archive), 40_000);
    no_temporaries(&archive);
}

#[test]
fn rotation_by_rename_and_by_copytruncate_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    append(&input, 0..2_000);
    let glob = format!("{}*", input.display());
    let child = start(&cfg, &glob);
    let mut next = 2_000u64;
    let step = 1_000;
    for round in 0..12u64 {
        // Keep writing in small bursts, as a sensor does.
        for _ in 0..5 {
            append(&input, next..next + step);
            next += step;
            std::thread::sleep(Duration::from_millis(20));
        }
        if round % 2 == 0 {
            // logrotate's default: rename, then the sensor re-opens a new file.
            let rotated = dir.path().join(format!("eve.json.{round}"));
            std::fs::rename(&input, &rotated).unwrap();
            append(&input, next..next + step);
            next += step;
        } else {
            // copytruncate: copy, then truncate in place; the sensor keeps its descriptor.
            let copy = dir.path().join(format!("eve.json.{round}"));
            std::fs::copy(&input, &copy).unwrap();
            std::fs::OpenOptions::new().write(true).open(&input).unwrap().set_len(0).unwrap();
            append(&input, next..next + step);
            next += step;
        }
    }
    drain_and_stop(child, &archive, next as usize);
    assert_exactly(&read_archive(&archive), next);
    // No line was ever read torn (a late-noticed truncation would show up here first).
    assert_eq!(dead_letters(&archive), Vec::<serde_json::Value>::new());
}

#[test]
fn restart_after_a_clean_stop_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    append(&input, 0..1_000);
    drain_and_stop(start(&cfg, input.to_str().unwrap()), &archive, 1_000);
    append(&input, 1_000..1_500);
    drain_and_stop(start(&cfg, input.to_str().unwrap()), &archive, 1_500);
    assert_exactly(&read_archive(&archive), 1_500);
}

/// copytruncate while the reader is busy, with the file refilled past the reader's old
/// offset at once: the old offset must never be read in the new content (that gives a
/// torn line and a lost row); the copy supplies the rest of the old file.
#[test]
fn copytruncate_refilled_past_the_offset_while_reading_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let input = dir.path().join("eve.json");
    let archive = dir.path().join("archive");
    append(&input, 0..50_000);
    let child = start(&cfg, &format!("{}*", input.display()));
    // Let the reader get going, then rotate under it: copy, truncate, and at once write
    // more than the file held, so the old offset lands inside a new line.
    std::thread::sleep(Duration::from_millis(150));
    std::fs::copy(&input, dir.path().join("eve.json.1")).unwrap();
    let mut new = String::new();
    for i in 50_000..110_000 {
        new.push_str(&line(i));
        new.push('\n');
    }
    let mut f = std::fs::OpenOptions::new().write(true).open(&input).unwrap();
    f.set_len(0).unwrap();
    f.write_all(new.as_bytes()).unwrap();
    drop(f);
    drain_and_stop(child, &archive, 110_000);
    assert_exactly(&read_archive(&archive), 110_000);
    assert_eq!(dead_letters(&archive), Vec::<serde_json::Value>::new());
}
