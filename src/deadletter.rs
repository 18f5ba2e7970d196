//! The dead-letter file: one JSON line per rejected input line, so an operator can see
//! exactly what was refused and why.
//!
//! Record: `{"time":"…","source":"…","path":"…","offset":N,"reason":"…","line_bytes":N,
//! "sample":"…","sample_truncated":bool}` where `sample` is the first `sample_bytes` of the
//! line (lossy UTF-8). The file is capped at `max_bytes`; past that, records are counted
//! (`alertflow_deadletter_dropped_total`) but not written. Writes are buffered and flushed
//! when the archive seals a segment and at shutdown.
//!
//! Each reason is also logged, rate-limited: its first rejection at once (a warning with
//! the source, path, offset and a short sample), then at most one line per
//! [`LOG_EVERY`] saying how many more there were since.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::event::reject::RejectReason;
use crate::metrics as m;

/// Where a rejected line came from.
#[derive(Debug, Clone, Copy)]
pub struct LineOrigin<'a> {
    pub source: &'a str,
    /// File path (file sources) or socket path.
    pub path: Option<&'a str>,
    /// Byte offset of the line's first byte in its file, where known.
    pub offset: Option<u64>,
}

pub struct DeadLetter {
    path: Option<PathBuf>,
    sample_bytes: usize,
    max_bytes: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    out: Option<BufWriter<File>>,
    written: u64,
    records: u64,
    /// Per reason: when it was last logged, and rejections since that were not.
    logged: [(Option<std::time::Instant>, u64); RejectReason::COUNT],
}

/// At most one log line per reason in this time.
pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Bytes of a rejected line shown in its log line.
const LOG_SAMPLE_BYTES: usize = 120;

impl DeadLetter {
    /// Opens (appends to) the dead-letter file. `None` disables writing (records are
    /// still counted).
    pub fn open(path: Option<&Path>, sample_bytes: usize, max_bytes: u64) -> std::io::Result<Self> {
        let (out, written) = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let f = OpenOptions::new().create(true).append(true).open(p)?;
                let len = f.metadata()?.len();
                (Some(BufWriter::with_capacity(64 << 10, f)), len)
            }
            None => (None, 0),
        };
        Ok(Self {
            path: path.map(Path::to_path_buf),
            sample_bytes,
            max_bytes,
            inner: Mutex::new(Inner { out, written, records: 0, logged: Default::default() }),
        })
    }

    pub fn disabled() -> Self {
        Self { path: None, sample_bytes: 0, max_bytes: 0, inner: Mutex::new(Inner { out: None, written: 0, records: 0, logged: Default::default() }) }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn sample_bytes(&self) -> usize {
        self.sample_bytes
    }

    /// Records one rejected line. `line` may be a prefix of the line when the whole line
    /// was not kept (`line_bytes` is then its real length).
    pub fn record(&self, origin: LineOrigin<'_>, reason: RejectReason, line: &[u8], line_bytes: u64) {
        let n = self.sample_bytes.min(line.len());
        let rec = serde_json::json!({
            "time": now_rfc3339(),
            "source": origin.source,
            "path": origin.path,
            "offset": origin.offset,
            "reason": reason.as_str(),
            "line_bytes": line_bytes,
            "sample": String::from_utf8_lossy(&line[..n]),
            "sample_truncated": (n as u64) < line_bytes,
        });
        let mut text = rec.to_string();
        text.push('\n');
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.records += 1;
        let fits = inner.written + text.len() as u64 <= self.max_bytes;
        match inner.out.as_mut() {
            Some(out) if fits => {
                if out.write_all(text.as_bytes()).is_ok() {
                    inner.written += text.len() as u64;
                } else {
                    metrics::counter!(m::DEADLETTER_DROPPED).increment(1);
                }
            }
            Some(_) => metrics::counter!(m::DEADLETTER_DROPPED).increment(1),
            None => {}
        }
        let (last, held) = &mut inner.logged[reason.index()];
        if last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            *held += 1;
            return;
        }
        *last = Some(std::time::Instant::now());
        let more = std::mem::take(held);
        drop(inner);
        let n = LOG_SAMPLE_BYTES.min(line.len());
        let sample = String::from_utf8_lossy(&line[..n]);
        tracing::warn!(
            reason = reason.as_str(),
            source = origin.source,
            path = origin.path.unwrap_or(""),
            offset = origin.offset.map_or(-1, |o| o as i64),
            line_bytes,
            more_since_last_log = more,
            sample = ?sample,
            "rejected line (one per reason every {}s; all in the dead-letter file)",
            LOG_EVERY.as_secs()
        );
    }

    /// Number of records seen since start.
    pub fn records(&self) -> u64 {
        self.inner.lock().map(|i| i.records).unwrap_or(0)
    }

    pub fn flush(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(out) = inner.out.as_mut() {
            let _ = out.flush();
        }
    }
}

fn now_rfc3339() -> String {
    let us = crate::event::time::wall_clock_us();
    let secs = us.div_euclid(1_000_000);
    let (y, mo, d) = crate::event::time::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z", sod / 3600, sod / 60 % 60, sod % 60, us.rem_euclid(1_000_000))
}
