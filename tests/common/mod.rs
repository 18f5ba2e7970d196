//! Shared test helpers: run the pipeline, read an archive back with the `parquet` crate,
//! and an independent reference parse of EVE lines with serde_json and chrono.

#![allow(dead_code)]

pub mod hook;
pub mod redis;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use alertflow::config::{Config, SourceConfig, SourceKind};
use alertflow::ingest::Overflow;
use alertflow::pipeline::{self, Mode, Summary};

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A config for tests: archive under `root`, small batches, no metrics listener.
pub fn test_config(root: &Path) -> Config {
    let mut cfg = Config::embedded_default();
    cfg.archive.root = root.to_path_buf();
    cfg.dead_letter.path = Some(alertflow::config::default_dead_letter_path(root));
    cfg.metrics.listen = None;
    cfg.pipeline.read_bytes = 64 * 1024;
    cfg
}

/// Replays files through the library pipeline (what `alertflow replay` does).
pub fn replay(cfg: &mut Config, files: &[PathBuf]) -> Summary {
    replay_as(cfg, files, alertflow::ingest::Format::Eve)
}

/// [`replay`] with the files read as `format`.
pub fn replay_as(cfg: &mut Config, files: &[PathBuf], format: alertflow::ingest::Format) -> Summary {
    let paths = files.iter().map(|p| p.display().to_string()).collect();
    cfg.sources = vec![SourceConfig {
        name: "replay".into(),
        kind: SourceKind::File(alertflow::demo::replay_file_config(paths)),
        overflow: Overflow::Block,
        format,
        timezone: None,
    }];
    pipeline::run(cfg, Mode::ReadToEnd, Arc::new(AtomicBool::new(false)), None, None).expect("pipeline runs")
}

/// One archived row, as read back by the parquet crate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub timestamp: Option<i64>,
    pub event_type: Option<String>,
    pub sensor: Option<String>,
    pub in_iface: Option<String>,
    pub src_ip: Option<String>,
    pub src_port: Option<i32>,
    pub dest_ip: Option<String>,
    pub dest_port: Option<i32>,
    pub proto: Option<String>,
    pub app_proto: Option<String>,
    pub flow_id: Option<i64>,
    pub community_id: Option<String>,
    pub alert_gid: Option<i64>,
    pub alert_signature_id: Option<i64>,
    pub alert_rev: Option<i64>,
    pub alert_signature: Option<String>,
    pub alert_category: Option<String>,
    pub alert_severity: Option<i32>,
    pub alert_action: Option<String>,
    pub syslog_facility: Option<i32>,
    pub syslog_severity: Option<i32>,
    pub syslog_hostname: Option<String>,
    pub syslog_app_name: Option<String>,
    pub syslog_procid: Option<String>,
    pub syslog_msgid: Option<String>,
    pub syslog_structured_data: Option<String>,
    pub syslog_message: Option<String>,
    pub source: Option<String>,
    pub raw: String,
    /// `date=…/hour=…` of the segment the row is in.
    pub partition: String,
}

/// Sealed segments under `<root>/events`.
pub fn segments(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("events")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                stack.push(p);
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every row of every sealed segment. A file listed and gone before it was opened was
/// replaced by a compaction of a running `alertflow` (it swaps an hour's folder at once):
/// the archive is read again, as any reader does.
pub fn read_archive(root: &Path) -> Vec<Row> {
    for _ in 0..50 {
        if let Some(rows) = try_read_archive(root) {
            return rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the archive under {} kept changing while it was read", root.display());
}

fn try_read_archive(root: &Path) -> Option<Vec<Row>> {
    let mut rows = Vec::new();
    for seg in segments(root) {
        let partition = seg.parent().unwrap().strip_prefix(root.join("events")).unwrap().display().to_string();
        let file = match std::fs::File::open(&seg) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("{}: {e}", seg.display()),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let s = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
            let i32c = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int32Type>().clone();
            let i64c = |name: &str| b.column_by_name(name).unwrap().as_primitive::<Int64Type>().clone();
            let ts = b.column_by_name("timestamp").unwrap().as_primitive::<TimestampMicrosecondType>().clone();
            let (et, se, ii, si, di, pr, ap, ci, asg, ac, aa, so, raw) = (
                s("event_type"),
                s("sensor"),
                s("in_iface"),
                s("src_ip"),
                s("dest_ip"),
                s("proto"),
                s("app_proto"),
                s("community_id"),
                s("alert_signature"),
                s("alert_category"),
                s("alert_action"),
                s("source"),
                s("raw"),
            );
            let (sp, dp, sev) = (i32c("src_port"), i32c("dest_port"), i32c("alert_severity"));
            let (fid, gid, sid, rev) = (i64c("flow_id"), i64c("alert_gid"), i64c("alert_signature_id"), i64c("alert_rev"));
            let os = |a: &arrow::array::StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
            let (sf, sv) = (i32c("syslog_facility"), i32c("syslog_severity"));
            let (sh, sa, sp2, sm, sd, smsg) =
                (s("syslog_hostname"), s("syslog_app_name"), s("syslog_procid"), s("syslog_msgid"), s("syslog_structured_data"), s("syslog_message"));
            for i in 0..b.num_rows() {
                rows.push(Row {
                    timestamp: ts.is_valid(i).then(|| ts.value(i)),
                    event_type: os(&et, i),
                    sensor: os(&se, i),
                    in_iface: os(&ii, i),
                    src_ip: os(&si, i),
                    src_port: sp.is_valid(i).then(|| sp.value(i)),
                    dest_ip: os(&di, i),
                    dest_port: dp.is_valid(i).then(|| dp.value(i)),
                    proto: os(&pr, i),
                    app_proto: os(&ap, i),
                    flow_id: fid.is_valid(i).then(|| fid.value(i)),
                    community_id: os(&ci, i),
                    alert_gid: gid.is_valid(i).then(|| gid.value(i)),
                    alert_signature_id: sid.is_valid(i).then(|| sid.value(i)),
                    alert_rev: rev.is_valid(i).then(|| rev.value(i)),
                    alert_signature: os(&asg, i),
                    alert_category: os(&ac, i),
                    alert_severity: sev.is_valid(i).then(|| sev.value(i)),
                    alert_action: os(&aa, i),
                    syslog_facility: sf.is_valid(i).then(|| sf.value(i)),
                    syslog_severity: sv.is_valid(i).then(|| sv.value(i)),
                    syslog_hostname: os(&sh, i),
                    syslog_app_name: os(&sa, i),
                    syslog_procid: os(&sp2, i),
                    syslog_msgid: os(&sm, i),
                    syslog_structured_data: os(&sd, i),
                    syslog_message: os(&smsg, i),
                    source: os(&so, i),
                    raw: raw.value(i).to_string(),
                    partition: partition.clone(),
                });
            }
        }
    }
    Some(rows)
}

/// The `raw` text alertflow keeps for a line: no terminator, BOM or `@cee:` prefix.
pub fn reference_raw(line: &[u8]) -> Option<String> {
    let mut l = line.strip_suffix(b"\n").unwrap_or(line);
    l = l.strip_suffix(b"\r").unwrap_or(l);
    l = l.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(l);
    if let Some(r) = l.strip_prefix(b"@cee:") {
        l = r.strip_prefix(b" ").unwrap_or(r);
    }
    if l.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    String::from_utf8(l.to_vec()).ok()
}

/// Suricata's `\xNN` escapes as JSON `\u00NN` (an escaped backslash is left alone).
fn fix_hex_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1] == b'x' && i + 3 < b.len() && b[i + 2].is_ascii_hexdigit() && b[i + 3].is_ascii_hexdigit() {
                out.push_str("\\u00");
                out.push(b[i + 2] as char);
                out.push(b[i + 3] as char);
                i += 4;
                continue;
            }
            out.push_str(&s[i..i + 2]);
            i += 2;
            continue;
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The expected row of a line by an independent parse, or `None` if the line must be
/// rejected.
pub fn reference_row(raw: &str, source: &str) -> Option<Row> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(raw).or_else(|_| serde_json::from_str(&fix_hex_escapes(raw))).ok()?;
    let o = v.as_object()?;
    let ts = match o.get("timestamp")? {
        Value::String(s) if s == "ts-error" => None,
        Value::String(s) => Some(chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").ok()?.timestamp_micros()),
        _ => return None,
    };
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let port = |k: &str| o.get(k).and_then(Value::as_i64).filter(|p| (0..=65535).contains(p)).map(|p| p as i32);
    let alert = o.get("alert").and_then(Value::as_object);
    let a_s = |k: &str| alert.and_then(|a| a.get(k)).and_then(Value::as_str).map(str::to_string);
    let a_i = |k: &str| alert.and_then(|a| a.get(k)).and_then(Value::as_i64);
    Some(Row {
        timestamp: ts,
        event_type: s("event_type"),
        sensor: Some(s("host").unwrap_or_else(|| source.to_string())),
        in_iface: s("in_iface"),
        src_ip: s("src_ip"),
        src_port: port("src_port"),
        dest_ip: s("dest_ip"),
        dest_port: port("dest_port"),
        proto: match o.get("proto") {
            Some(Value::String(p)) => Some(p.clone()),
            Some(Value::Number(n)) if n.is_i64() => Some(n.to_string()),
            _ => None,
        },
        app_proto: s("app_proto"),
        flow_id: o.get("flow_id").and_then(Value::as_i64),
        community_id: s("community_id"),
        alert_gid: a_i("gid"),
        alert_signature_id: a_i("signature_id"),
        alert_rev: a_i("rev"),
        alert_signature: a_s("signature"),
        alert_category: a_s("category"),
        alert_severity: a_i("severity").and_then(|x| i32::try_from(x).ok()),
        alert_action: a_s("action"),
        source: Some(source.to_string()),
        raw: raw.to_string(),
        ..Default::default()
    })
}

/// Dead-letter records by reason.
pub fn dead_letters(root: &Path) -> Vec<serde_json::Value> {
    let p = alertflow::config::default_dead_letter_path(root);
    std::fs::read_to_string(p).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub fn count_by<T: std::hash::Hash + Eq>(items: impl IntoIterator<Item = T>) -> HashMap<T, usize> {
    let mut m = HashMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

/// A running `alertflow` process, killed if the test fails before stopping it, so no
/// process outlives its test.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.0.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL, as a crash.
    pub fn kill9(mut self) {
        let mut c = self.0.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Waits for the process to end on its own (at most `secs`), and returns how.
    pub fn wait_exit(mut self, secs: u64) -> std::process::ExitStatus {
        let mut c = self.0.take().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = c.kill();
                panic!("the process did not end within {secs} s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGTERM; the process must drain, seal and exit 0.
    pub fn stop(mut self) {
        let mut c = self.0.take().unwrap();
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(c.id() as i32, libc::SIGTERM) }, 0);
        let status = c.wait().unwrap();
        assert!(status.success(), "clean shutdown exits 0: {status:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A small deterministic generator (xorshift) for property tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A seed for a randomized test: `ALERTFLOW_TEST_SEED` or the clock; printed so a failure
/// can be repeated.
pub fn seed(what: &str) -> u64 {
    let seed = std::env::var("ALERTFLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("{what} seed: {seed} (set ALERTFLOW_TEST_SEED to repeat)");
    seed
}

/// Every row of `<root>/<table>` (sealed segments only) as column name → text.
pub fn read_table(root: &Path, table: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut files = Vec::new();
    let mut stack = vec![root.join(table)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") && !e.file_name().to_string_lossy().starts_with('.') {
                files.push(p);
            }
        }
    }
    let mut rows = Vec::new();
    for f in files {
        for batch in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&f).unwrap()).unwrap().build().unwrap() {
            let b = batch.unwrap();
            for i in 0..b.num_rows() {
                let mut row = std::collections::BTreeMap::new();
                for (fi, field) in b.schema().fields().iter().enumerate() {
                    let c = b.column(fi);
                    if c.is_null(i) {
                        continue;
                    }
                    let v = match field.data_type() {
                        arrow::datatypes::DataType::Utf8 => c.as_string::<i32>().value(i).to_string(),
                        arrow::datatypes::DataType::Boolean => c.as_boolean().value(i).to_string(),
                        arrow::datatypes::DataType::Int64 => c.as_primitive::<arrow::datatypes::Int64Type>().value(i).to_string(),
                        arrow::datatypes::DataType::Int32 => c.as_primitive::<arrow::datatypes::Int32Type>().value(i).to_string(),
                        arrow::datatypes::DataType::List(_) => {
                            let l = c.as_list::<i32>().value(i);
                            let s = l.as_string::<i32>();
                            (0..s.len()).map(|j| s.value(j)).collect::<Vec<_>>().join(",")
                        }
                        arrow::datatypes::DataType::Timestamp(..) => c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(i).to_string(),
                        other => panic!("unexpected column type {other}"),
                    };
                    row.insert(field.name().clone(), v);
                }
                rows.push(row);
            }
        }
    }
    rows
}

/// Waits for `child` (its piped stdout and stderr read to the end) and returns its output
/// with its own peak RSS in MiB: the high-water mark of its memory (`VmHWM`), read every
/// 2 ms until it exits (the mark only rises, so the last reading holds). Neither
/// `getrusage(CHILDREN)` (the largest child any test of this binary has waited for) nor
/// `wait4`'s `ru_maxrss` will do: a child spawned with `CLONE_VM` (posix_spawn) carries the
/// spawning process's peak into its own at `exec`, and this test binary can be large.
pub fn output_with_peak(mut child: Child) -> (std::process::Output, i64) {
    use std::io::Read;
    let pid = child.id();
    let sampler = std::thread::spawn(move || {
        let mut peak_kib = 0i64;
        // A zombie has no memory and no VmHWM line: the child has exited.
        while let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())))
        {
            peak_kib = peak_kib.max(kib);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        peak_kib
    });
    let mut out_pipe = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            p.read_to_end(&mut buf).unwrap();
        }
        buf
    });
    let mut stderr = Vec::new();
    if let Some(mut p) = child.stderr.take() {
        p.read_to_end(&mut stderr).unwrap();
    }
    let stdout = reader.join().unwrap();
    // The child is reaped only after the sampler saw it exit (its pid stays its own).
    let peak_kib = sampler.join().unwrap();
    let status = child.wait().unwrap();
    assert!(peak_kib > 0, "no memory reading of the child");
    (std::process::Output { status, stdout, stderr }, peak_kib / 1024)
}

/// `alertflow run --config cfg --input input` with `env` (warnings on stderr).
pub fn run_following(cfg: &Path, input: impl AsRef<std::ffi::OsStr>, env: &[(&str, &str)]) -> Running {
    Running::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["run", "--config"])
            .arg(cfg)
            .arg("--input")
            .arg(input)
            .envs(env.iter().copied())
            .env("ALERTFLOW_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Polls `f` every 50 ms until it holds; fails naming `what` after 60 s.
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on a loopback port: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (status, body)
}

/// `alertflow run --config cfg` with its log (at `level`, an `ALERTFLOW_LOG` filter) in the
/// file `log`.
pub fn run_logged(cfg: &Path, log: &Path, level: &str) -> Running {
    Running::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["run", "--config"])
            .arg(cfg)
            .env("ALERTFLOW_LOG", level)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}
