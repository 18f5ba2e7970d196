//! The JSONL files of the alert path: `[state] output` and `[state] late_output`. Lines
//! are held until the commit holding their rows has landed, then appended and flushed,
//! so a downstream tool never hears of an alert the archive could lose.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::metrics as m;

/// Lines held for the next commit before the caller should force one.
pub const MAX_PENDING_LINES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
#[error("output file {path}: {source}")]
pub struct OutputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError { path: path.to_path_buf(), source }
}

/// An append-only JSONL file.
struct Sink {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Sink {
    fn open(p: Option<PathBuf>) -> Result<Option<Sink>, OutputError> {
        let Some(p) = p else { return Ok(None) };
        if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        let f = File::options().create(true).append(true).open(&p).map_err(err(&p))?;
        Ok(Some(Sink { w: BufWriter::new(f), path: p }))
    }

    fn write(&mut self, lines: &[String]) -> Result<(), OutputError> {
        for l in lines {
            self.w.write_all(l.as_bytes()).and_then(|_| self.w.write_all(b"\n")).map_err(err(&self.path))?;
        }
        self.w.flush().map_err(err(&self.path))
    }
}

/// The output files and the lines waiting for their commit.
pub struct Outputs {
    main: Option<Sink>,
    late: Option<Sink>,
    audit: Option<super::audit::Trail>,
    pending: Vec<String>,
    pending_late: Vec<String>,
    pending_audit: Vec<String>,
}

impl Outputs {
    /// Opens (creating folders, appending) the files that are configured.
    pub fn open(main: Option<PathBuf>, late: Option<PathBuf>, audit: Option<PathBuf>) -> Result<Self, OutputError> {
        let audit = match audit {
            Some(p) => Some(super::audit::Trail::open(p.clone()).map_err(err(&p))?),
            None => None,
        };
        Ok(Self { main: Sink::open(main)?, late: Sink::open(late)?, audit, pending: Vec::new(), pending_late: Vec::new(), pending_audit: Vec::new() })
    }

    /// Appends the audit records a crash kept from the trail (those after its last).
    pub fn recover_audit(&mut self, lines: &[String]) -> Result<usize, OutputError> {
        match self.audit.as_mut() {
            Some(t) => {
                let p = t.path().to_path_buf();
                t.recover(lines).map_err(err(&p))
            }
            None => Ok(0),
        }
    }

    /// Holds lines until [`Outputs::emit`]; late lines go to the main file when the late
    /// output has no file of its own.
    pub fn hold(&mut self, lines: Vec<String>, late_lines: Vec<String>, audit: Vec<String>) {
        if self.audit.is_some() {
            self.pending_audit.extend(audit);
        }
        self.pending.extend(lines);
        if self.late.is_some() {
            self.pending_late.extend(late_lines);
        } else {
            self.pending.extend(late_lines);
        }
    }

    /// Lines held.
    pub fn held(&self) -> usize {
        self.pending.len() + self.pending_late.len() + self.pending_audit.len()
    }

    /// Appends every held line to its file (dropping them when no file is configured).
    pub fn emit(&mut self) -> Result<(), OutputError> {
        let lines = std::mem::take(&mut self.pending);
        let late = std::mem::take(&mut self.pending_late);
        let audit = std::mem::take(&mut self.pending_audit);
        if let Some(t) = self.audit.as_mut() {
            let p = t.path().to_path_buf();
            t.append(&audit).map_err(err(&p))?;
        }
        metrics::counter!(m::STATE_NOTIFICATIONS).increment(lines.len() as u64);
        for (sink, lines) in [(self.main.as_mut(), lines), (self.late.as_mut(), late)] {
            if let Some(s) = sink {
                s.write(&lines)?;
            }
        }
        Ok(())
    }
}
