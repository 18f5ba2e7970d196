//! The JSONL files of the alert path: `[state] output` and `[state] late_output`. Lines
//! are held until the commit holding their rows has landed, then appended and flushed,
//! so a downstream tool never hears of an alert the archive could lose.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Bytes in the file after the last write.
    len: u64,
}

impl Sink {
    fn open(p: Option<PathBuf>) -> Result<Option<Sink>, OutputError> {
        let Some(p) = p else { return Ok(None) };
        if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        let f = File::options().create(true).append(true).open(&p).map_err(err(&p))?;
        let len = f.metadata().map_err(err(&p))?.len();
        Ok(Some(Sink { w: BufWriter::new(f), path: p, len }))
    }

    /// Follows log rotation: a file renamed or removed (the path names another file, or
    /// none) is reopened at its path; a file cut short (`copytruncate`) is followed to its
    /// new length. Two `stat`s, once per commit.
    fn follow_rotation(&mut self) -> Result<(), OutputError> {
        use std::os::unix::fs::MetadataExt;
        let ours = self.w.get_ref().metadata().map_err(err(&self.path))?;
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {
                self.len = ours.len();
                Ok(())
            }
            _ => {
                let fresh = Sink::open(Some(self.path.clone()))?.expect("a path was given");
                tracing::info!(path = %self.path.display(), "output file rotated: writing to a new file at its path");
                *self = fresh;
                Ok(())
            }
        }
    }

    fn write(&mut self, lines: &[String]) -> Result<(), OutputError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.follow_rotation()?;
        for l in lines {
            self.w.write_all(l.as_bytes()).and_then(|_| self.w.write_all(b"\n")).map_err(err(&self.path))?;
            self.len += l.len() as u64 + 1;
        }
        self.w.flush().map_err(err(&self.path))
    }

    /// Writes `lines` that were due at `offset` unless the file already holds them: a
    /// file cut inside them (a crash mid-write) is cut back to `offset` first; a file
    /// shorter than `offset` (rotated or truncated by someone else) gets them appended.
    fn catch_up(&mut self, offset: u64, lines: &[String]) -> Result<bool, OutputError> {
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if self.len >= offset + bytes {
            return Ok(false);
        }
        if self.len > offset {
            self.w.get_ref().set_len(offset).map_err(err(&self.path))?;
            self.len = offset;
        }
        self.write(lines)?;
        Ok(true)
    }
}

/// Lines of one file due with a commit: where the file stood and what goes after it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Due {
    offset: u64,
    lines: Vec<String>,
}

/// What a commit is about to append to the output files (saved before its commit point).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct DueLines {
    main: Option<Due>,
    late: Option<Due>,
}

impl DueLines {
    /// The lines saved in a snapshot's `due` member (none when it has none).
    pub fn in_snapshot(text: &str) -> Result<Option<DueLines>, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Member {
            due: Option<DueLines>,
        }
        Ok(serde_json::from_str::<Member>(text)?.due)
    }
}

/// Lines of the three files.
#[derive(Default)]
struct Lines {
    main: Vec<String>,
    late: Vec<String>,
    /// Shared with the snapshot that saves them until the trail has them.
    audit: Vec<Arc<str>>,
}

impl Lines {
    fn len(&self) -> usize {
        self.main.len() + self.late.len() + self.audit.len()
    }
}

/// The output files and the lines waiting for their commit: those of the commit being
/// made (cut) and those of the next one (held).
pub struct Outputs {
    main: Option<Sink>,
    late: Option<Sink>,
    audit: Option<super::audit::Trail>,
    held: Lines,
    cut: Lines,
}

impl Outputs {
    /// Opens (creating folders, appending) the files that are configured.
    pub fn open(main: Option<PathBuf>, late: Option<PathBuf>, audit: Option<PathBuf>) -> Result<Self, OutputError> {
        let audit = match audit {
            Some(p) => Some(super::audit::Trail::open(p.clone()).map_err(err(&p))?),
            None => None,
        };
        Ok(Self { main: Sink::open(main)?, late: Sink::open(late)?, audit, held: Lines::default(), cut: Lines::default() })
    }

    /// Appends the audit records a crash kept from the trail: those `lines` gives for the
    /// number of the trail's last record (see [`super::audit::Trail::recover`]).
    pub fn recover_audit(&mut self, lines: impl FnOnce(u64) -> std::io::Result<Vec<String>>) -> Result<usize, OutputError> {
        match self.audit.as_mut() {
            Some(t) => {
                let p = t.path().to_path_buf();
                t.recover(lines).map_err(err(&p))
            }
            None => Ok(0),
        }
    }

    /// Holds lines for the next commit; late lines go to the main file when the late
    /// output has no file of its own.
    pub fn hold(&mut self, lines: Vec<String>, late_lines: Vec<String>, audit: Vec<Arc<str>>) {
        if self.audit.is_some() {
            self.held.audit.extend(audit);
        }
        self.held.main.extend(lines);
        if self.late.is_some() {
            self.held.late.extend(late_lines);
        } else {
            self.held.main.extend(late_lines);
        }
    }

    /// Lines held for the next commit.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Lines held or cut, not yet written.
    pub fn waiting(&self) -> usize {
        self.held.len() + self.cut.len()
    }

    /// The commit being made takes the lines held so far ([`Outputs::due`],
    /// [`Outputs::emit`]); lines held from now on belong to the next one.
    pub fn cut(&mut self) {
        let held = std::mem::take(&mut self.held);
        if self.cut.len() == 0 {
            self.cut = held;
        } else {
            self.cut.main.extend(held.main);
            self.cut.late.extend(held.late);
            self.cut.audit.extend(held.audit);
        }
    }

    /// The cut lines with the offsets they will be written at: saved with a commit, so a
    /// restart after a crash between the commit point and the writes can finish them
    /// ([`Outputs::catch_up`]) — each line reaches its file exactly once.
    pub fn due(&self) -> Option<DueLines> {
        let due = |s: &Option<Sink>, lines: &Vec<String>| s.as_ref().filter(|_| !lines.is_empty()).map(|s| Due { offset: s.len, lines: lines.clone() });
        let d = DueLines { main: due(&self.main, &self.cut.main), late: due(&self.late, &self.cut.late) };
        (d.main.is_some() || d.late.is_some()).then_some(d)
    }

    /// Writes the lines of `due` the files do not hold yet; returns how many lines went out.
    pub fn catch_up(&mut self, due: &DueLines) -> Result<usize, OutputError> {
        let mut n = 0;
        for (sink, d) in [(self.main.as_mut(), &due.main), (self.late.as_mut(), &due.late)] {
            if let (Some(s), Some(d)) = (sink, d) {
                if s.catch_up(d.offset, &d.lines)? {
                    n += d.lines.len();
                }
            }
        }
        Ok(n)
    }

    /// Appends every cut line to its file (dropping them when no file is configured).
    pub fn emit(&mut self) -> Result<(), OutputError> {
        let Lines { main: lines, late, audit } = std::mem::take(&mut self.cut);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn due_lines_reach_the_file_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        std::fs::write(&p, "{\"a\":0}\n").unwrap();
        let mut o = Outputs::open(Some(p.clone()), None, None).unwrap();
        o.hold(lines(&["{\"a\":1}", "{\"a\":2}"]), Vec::new(), Vec::new());
        o.cut();
        // Held after the cut: the next commit's, neither due nor emitted with this one.
        o.hold(lines(&["{\"a\":9}"]), Vec::new(), Vec::new());
        assert_eq!((o.held(), o.waiting()), (1, 3));
        let due: DueLines = serde_json::from_str(&serde_json::to_string(&o.due().unwrap()).unwrap()).unwrap();
        let want = "{\"a\":0}\n{\"a\":1}\n{\"a\":2}\n";

        // Written before the crash: nothing again.
        o.emit().unwrap();
        assert_eq!((o.held(), o.waiting()), (1, 1));
        drop(o);
        let mut o = Outputs::open(Some(p.clone()), None, None).unwrap();
        assert_eq!(o.catch_up(&due).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), want);

        // Not written at all: written once, and only once.
        std::fs::write(&p, "{\"a\":0}\n").unwrap();
        let mut o = Outputs::open(Some(p.clone()), None, None).unwrap();
        assert_eq!(o.catch_up(&due).unwrap(), 2);
        assert_eq!(o.catch_up(&due).unwrap(), 0);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), want);

        // Cut inside a line: cut back, then written whole.
        std::fs::write(&p, "{\"a\":0}\n{\"a\":1}\n{\"a").unwrap();
        let mut o = Outputs::open(Some(p.clone()), None, None).unwrap();
        assert_eq!(o.catch_up(&due).unwrap(), 2);
        o.hold(lines(&["{\"a\":3}"]), Vec::new(), Vec::new());
        o.cut();
        o.emit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{want}{{\"a\":3}}\n"));

        // Rotated away (shorter than where the lines were due): appended.
        std::fs::write(&p, "").unwrap();
        let mut o = Outputs::open(Some(p.clone()), None, None).unwrap();
        assert_eq!(o.catch_up(&due).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}\n{\"a\":2}\n");
        assert!(DueLines::in_snapshot("{\"version\":1}").unwrap().is_none());
    }

    #[test]
    fn a_rotated_output_file_is_reopened_and_a_truncated_one_followed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        let mut o = Outputs::open(Some(p.clone()), None, None).unwrap();
        o.hold(lines(&["{\"a\":1}"]), Vec::new(), Vec::new());
        o.cut();
        o.emit().unwrap();
        // logrotate's default: rename, then a new file appears at the path (or not yet).
        std::fs::rename(&p, dir.path().join("out.jsonl.1")).unwrap();
        o.hold(lines(&["{\"a\":2}"]), Vec::new(), Vec::new());
        o.cut();
        o.emit().unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl.1")).unwrap(), "{\"a\":1}\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":2}\n");
        // copytruncate: the same file, cut to nothing; the next commit's lines are due at 0.
        std::fs::File::options().write(true).open(&p).unwrap().set_len(0).unwrap();
        o.hold(lines(&["{\"a\":3}"]), Vec::new(), Vec::new());
        o.cut();
        o.emit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":3}\n");
        o.hold(lines(&["{\"a\":4}"]), Vec::new(), Vec::new());
        o.cut();
        let due = o.due().unwrap();
        assert_eq!(due.main.as_ref().unwrap().offset, 8, "offsets follow the file as it is");
        // Removed outright: a new file.
        std::fs::remove_file(&p).unwrap();
        o.emit().unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":4}\n");
    }
}
