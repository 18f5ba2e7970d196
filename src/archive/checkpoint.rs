//! Source positions recorded in sealed segments' footers.
//!
//! Key-value metadata written into the segments of a commit (segment 0, renamed first,
//! always has both keys; segments a lane closed early have only the epoch):
//! * `alertflow.epoch` — the commit number (monotonic across restarts; the segment's
//!   file name also carries it, with the number of segments the commit sealed);
//! * `alertflow.checkpoint` — JSON of [`Checkpoint`]: for every source, the resume
//!   position of every file it has read (fingerprint → offset after the last archived
//!   line). A commit's positions cover exactly the rows sealed by it and all commits before.

pub const KEY_EPOCH: &str = "alertflow.epoch";
pub const KEY_CHECKPOINT: &str = "alertflow.checkpoint";

pub use crate::event::position::{Checkpoint, FilePosition, Sealed, SourceCheckpoint, MAX_FILES_PER_SOURCE};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_and_read_back() {
        let mut c = Checkpoint::default();
        c.advance("eve", 0xabc, 10, "/a");
        c.advance("eve", 0xdef, 5, "/b");
        c.advance("eve", 0xabc, 20, "/a.1");
        let offs = c.file_offsets("eve");
        assert_eq!(offs.get(&0xabc), Some(&20));
        assert_eq!(offs.get(&0xdef), Some(&5));
        assert_eq!(c.sources["eve"].files.last().unwrap().path, "/a.1");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), c);
    }
}
