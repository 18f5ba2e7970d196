//! The file source: follows EVE files the way Suricata writes and rotates them.
//!
//! * `paths` are file names or globs, re-scanned every `poll_interval`.
//! * A file is known by the fingerprint of its first line (xxh3 of the bytes up to and
//!   including the first `\n`, at most 4 KiB), not by inode: a renamed file keeps its
//!   identity, a re-created or truncated file gets a new one, a copy made by
//!   `copytruncate` is recognised as the file already read and continued where reading
//!   stopped (include the rotated name in the glob, e.g. `eve.json*`, to lose nothing).
//! * Files are read in large chunks; only whole lines are sent. A file that was renamed
//!   away keeps being read to its end, then closed after `rotate_wait`.
//! * Resume: positions come from the archive's newest sealed segments (fingerprint →
//!   offset); a file seen for the first time starts at its beginning (or, with
//!   `start_at = "end"`, files present at start start at their end).
//! * `follow = false` (replay): read every matching file once to its end, including a
//!   last line without a newline, then stop.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framing::Framer;
use super::{Position, RawBatch, SourceCtx};
use crate::metrics as m;

/// Bytes hashed at most for a fingerprint.
pub const FINGERPRINT_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    pub paths: Vec<String>,
    pub follow: bool,
    pub start_at: StartAt,
    pub poll_interval: Duration,
    pub rotate_wait: Duration,
    pub max_open_files: usize,
}

/// [`fingerprint`] without moving the file cursor.
fn fingerprint_at(file: &File) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < head.len() {
        let r = file.read_at(&mut head[n..], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(hash_head(&head[..n], false))
}

fn hash_head(head: &[u8], partial_ok: bool) -> Option<u64> {
    let fp = match memchr::memchr(b'\n', head) {
        Some(i) => Some(&head[..=i]),
        None if head.len() == FINGERPRINT_BYTES || (partial_ok && !head.is_empty()) => Some(head),
        None => None,
    };
    fp.map(xxhash_rust::xxh3::xxh3_64)
}

/// Fingerprint of a file: xxh3 of its first line (with `\n`), or of its first 4 KiB when
/// the first line is longer. `None` while the file has no complete first line yet, unless
/// `partial_ok` (a file read once to its end).
pub fn fingerprint(file: &mut File, partial_ok: bool) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    file.seek(SeekFrom::Start(0))?;
    while n < head.len() {
        let r = file.read(&mut head[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(hash_head(&head[..n], partial_ok))
}

struct Tracked {
    fp: u64,
    path: PathBuf,
    path_str: Arc<str>,
    file: File,
    dev_ino: (u64, u64),
    framer: Framer,
    seq: u64,
    /// Still matched by a glob at the last scan.
    matched: bool,
    at_eof_since: Option<Instant>,
    stream: u64,
    done: bool,
}

pub struct FileSource {
    cfg: FileSourceConfig,
    ctx: SourceCtx,
    /// Resume offsets by fingerprint (from the archive, then updated as files are read).
    offsets: HashMap<u64, u64>,
    offsets_order: VecDeque<u64>,
    open: Vec<Tracked>,
    next_stream: u64,
    first_scan: bool,
    /// Per configured path or glob: whether it matched a file at the last scan (`None`:
    /// not scanned yet), so an operator hears once when it matches nothing and once when
    /// it starts matching.
    matching: Vec<Option<bool>>,
}

const MAX_REMEMBERED: usize = 16_384;

impl FileSource {
    pub fn new(cfg: FileSourceConfig, ctx: SourceCtx, resume: HashMap<u64, u64>) -> Self {
        let offsets_order = resume.keys().copied().collect();
        let matching = vec![None; cfg.paths.len()];
        Self { cfg, ctx, offsets: resume, offsets_order, open: Vec::new(), next_stream: 0, first_scan: true, matching }
    }

    /// Total size of the files that match now (for a progress bar).
    pub fn total_bytes(paths: &[String]) -> u64 {
        expand(paths).iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    pub fn run(mut self) -> std::io::Result<()> {
        let mut last_scan: Option<Instant> = None;
        let mut wake = super::wake::Wake::new();
        loop {
            if self.ctx.stopping() {
                return Ok(());
            }
            if last_scan.is_none_or(|t| t.elapsed() >= self.cfg.poll_interval) {
                self.scan();
                last_scan = Some(Instant::now());
                if !self.cfg.follow && self.open.is_empty() {
                    return Ok(());
                }
            }
            let mut progressed = false;
            for i in 0..self.open.len() {
                match self.read_one(i) {
                    Ok(p) => progressed |= p,
                    Err(ReadStop::PipelineGone) => return Ok(()),
                    Err(ReadStop::Io(e)) => {
                        tracing::warn!(source = %self.ctx.info.name, path = %self.open[i].path.display(), error = %e, "read failed; closing the file");
                        self.open[i].done = true;
                    }
                }
            }
            self.close_finished();
            if !self.cfg.follow && self.open.is_empty() {
                return Ok(());
            }
            if !progressed {
                // Idle: wait for a followed file to change (at most the poll interval).
                wake.watch(self.open.iter().filter(|t| !t.done).map(|t| t.path.as_path()));
                wake.wait(self.cfg.poll_interval.min(Duration::from_millis(100)));
            }
        }
    }

    fn remember(&mut self, fp: u64, offset: u64) {
        if self.offsets.insert(fp, offset).is_none() {
            self.offsets_order.push_back(fp);
            while self.offsets_order.len() > MAX_REMEMBERED {
                if let Some(old) = self.offsets_order.pop_front() {
                    if !self.open.iter().any(|t| t.fp == old) {
                        self.offsets.remove(&old);
                    } else {
                        self.offsets_order.push_back(old);
                        break;
                    }
                }
            }
        }
    }

    fn scan(&mut self) {
        for t in &mut self.open {
            t.matched = false;
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..self.cfg.paths.len() {
            let found: Vec<PathBuf> = expand(std::slice::from_ref(&self.cfg.paths[i])).into_iter().filter(|p| p.is_file()).collect();
            self.note_matches(i, found.len());
            for path in found {
                if !seen.insert(path.clone()) {
                    continue;
                }
                if let Err(e) = self.consider(&path) {
                    tracing::debug!(path = %path.display(), error = %e, "cannot open file yet");
                }
            }
        }
        self.first_scan = false;
        metrics::gauge!(m::SOURCE_OPEN_FILES, "source" => self.ctx.info.name.to_string()).set(self.open.len() as f64);
        // What the followed files hold beyond what is read (one fstat per open file).
        let behind: u64 =
            self.open.iter().filter(|t| !t.done).filter_map(|t| t.file.metadata().ok().map(|m| m.len().saturating_sub(t.framer.read_offset()))).sum();
        self.ctx.health.behind_bytes.store(behind, std::sync::atomic::Ordering::Relaxed);
        self.ctx.health.open.store(self.open.len() as i64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Says when path or glob `i` matches no file (once), and when it starts matching.
    fn note_matches(&mut self, i: usize, n: usize) {
        let pattern = &self.cfg.paths[i];
        let now = n > 0;
        match (self.matching[i], now) {
            (None | Some(true), false) => {
                // The deepest folder of the pattern without wildcards: missing is the likely cause.
                let fixed: PathBuf = Path::new(pattern).components().take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '['])).collect();
                let dir = if fixed.as_os_str() == pattern.as_str() { fixed.parent().map(Path::to_path_buf).unwrap_or_default() } else { fixed };
                if !dir.as_os_str().is_empty() && !dir.is_dir() {
                    tracing::warn!(source = %self.ctx.info.name, input = %pattern, missing = %dir.display(), "input matches no file: its folder does not exist; waiting for it");
                } else {
                    tracing::warn!(source = %self.ctx.info.name, input = %pattern, "input matches no file; waiting for one to appear");
                }
            }
            (Some(false), true) => tracing::info!(source = %self.ctx.info.name, input = %pattern, files = n, "input matches files now"),
            _ => {}
        }
        self.matching[i] = Some(now);
    }

    fn consider(&mut self, path: &Path) -> std::io::Result<()> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Ok(());
        }
        let dev_ino = (meta.dev(), meta.ino());
        // Same inode as a file we follow: a rename keeps identity; a truncation is handled
        // by the reader.
        // (A file rewritten in place is noticed by the reader, which checks the first line
        // around every read.)
        if let Some(t) = self.open.iter_mut().find(|t| t.dev_ino == dev_ino && !t.done) {
            t.matched = true;
            if t.path != path {
                metrics::counter!(m::SOURCE_ROTATIONS, "source" => self.ctx.info.name.to_string()).increment(1);
                tracing::info!(source = %self.ctx.info.name, from = %t.path.display(), to = %path.display(), "file renamed");
                t.path = path.to_path_buf();
                t.path_str = path.to_string_lossy().into();
            }
            return Ok(());
        }
        let mut file = File::open(path)?;
        let Some(fp) = fingerprint(&mut file, !self.cfg.follow)? else {
            return Ok(());
        };
        if self.open.iter().any(|t| t.fp == fp) {
            // A copy of a file we are reading (copytruncate before the truncation).
            return Ok(());
        }
        let size = meta.len();
        let start = match self.offsets.get(&fp) {
            Some(&off) if off <= size => off,
            // The copy being made by copytruncate is not complete yet: wait for it.
            Some(_) => return Ok(()),
            None if self.first_scan && self.cfg.start_at == StartAt::End => size,
            None => 0,
        };
        if self.open.len() >= self.cfg.max_open_files {
            tracing::warn!(source = %self.ctx.info.name, path = %path.display(), limit = self.cfg.max_open_files, "too many open files; will retry");
            return Ok(());
        }
        file.seek(SeekFrom::Start(start))?;
        tracing::info!(source = %self.ctx.info.name, path = %path.display(), fingerprint = format!("{fp:016x}"), offset = start, "following file");
        self.remember(fp, start);
        self.open.push(Tracked {
            fp,
            path: path.to_path_buf(),
            path_str: path.to_string_lossy().into(),
            file,
            dev_ino,
            framer: Framer::new(start, self.ctx.max_line_bytes, self.ctx.dead_letter.sample_bytes()),
            seq: 0,
            matched: true,
            at_eof_since: None,
            stream: self.next_stream,
            done: false,
        });
        self.next_stream += 1;
        Ok(())
    }

    /// Reads one chunk from file `i`. Returns whether anything was read.
    fn read_one(&mut self, i: usize) -> Result<bool, ReadStop> {
        let ctx = &self.ctx;
        let t = &mut self.open[i];
        if t.done {
            return Ok(false);
        }
        // copytruncate and re-used files: the content at our offset may belong to a new
        // file. Check the first line before and after each read; a read that may have
        // seen new content is dropped (the copy, or the new file, supplies those bytes).
        if self.cfg.follow && rewritten(t)? {
            note_rewritten(ctx, t);
            return Ok(true);
        }
        let n = t.framer.read_fd(&t.file, ctx.read_bytes).map_err(ReadStop::Io)?;
        if self.cfg.follow && n > 0 && rewritten(t)? {
            note_rewritten(ctx, t);
            return Ok(true);
        }
        let path_str = t.path_str.clone();
        let chunk = if n == 0 {
            if !self.cfg.follow {
                t.done = true;
                t.framer.take_rest(|o| ctx.overlong(Some(&path_str), &o, true))
            } else {
                // At the end: check for truncation (copytruncate, or a re-used file).
                let len = t.file.metadata().map_err(ReadStop::Io)?.len();
                if len < t.framer.read_offset() {
                    note_rewritten(ctx, t);
                    return Ok(true);
                }
                t.at_eof_since.get_or_insert_with(Instant::now);
                None
            }
        } else {
            t.at_eof_since = None;
            t.framer.take_lines(|o| ctx.overlong(Some(&path_str), &o, true))
        };
        let Some(c) = chunk else {
            return Ok(n > 0);
        };
        let batch = RawBatch {
            source: ctx.info.clone(),
            seq: t.seq,
            stream: t.stream,
            data: c.data,
            base_offset: Some(c.start),
            path: Some(path_str.clone()),
            origins: Vec::new(),
            position: Position::File { fingerprint: t.fp, offset: c.end, path: path_str },
            format: ctx.format,
            frames: Vec::new(),
        };
        t.seq += 1;
        let fp = t.fp;
        if !ctx.send(batch) {
            return Err(ReadStop::PipelineGone);
        }
        if let Some(o) = self.offsets.get_mut(&fp) {
            *o = c.end;
        }
        Ok(true)
    }

    fn close_finished(&mut self) {
        let wait = self.cfg.rotate_wait;
        let follow = self.cfg.follow;
        self.open.retain(|t| {
            let idle_gone = follow && !t.matched && t.at_eof_since.is_some_and(|s| s.elapsed() >= wait) && t.framer.pending() == 0;
            let keep = !t.done && !idle_gone;
            if !keep {
                tracing::debug!(path = %t.path.display(), "closing file");
            }
            keep
        });
    }
}

/// Whether the file no longer starts with the line that identified it (truncated, or
/// truncated and refilled). A file that lost its complete first line counts as rewritten.
fn rewritten(t: &Tracked) -> Result<bool, ReadStop> {
    Ok(fingerprint_at(&t.file).map_err(ReadStop::Io)? != Some(t.fp))
}

fn note_rewritten(ctx: &SourceCtx, t: &mut Tracked) {
    metrics::counter!(m::SOURCE_ROTATIONS, "source" => ctx.info.name.to_string()).increment(1);
    tracing::info!(source = %ctx.info.name, path = %t.path.display(), "file truncated or rewritten in place; re-identifying it");
    t.done = true;
}

enum ReadStop {
    PipelineGone,
    Io(std::io::Error),
}

/// Expands globs; plain paths are kept as they are (they may not exist yet).
pub fn expand(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in patterns {
        if p.contains(['*', '?', '[']) {
            match glob::glob(p) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                    found.sort();
                    out.extend(found);
                }
                Err(e) => tracing::warn!(pattern = %p, error = %e, "bad glob"),
            }
        } else {
            out.push(PathBuf::from(p));
        }
    }
    out.dedup();
    out
}
