//! Framing: a byte stream in, chunks of complete lines out.
//!
//! A [`Framer`] owns the bytes read but not yet handed on. After each read it splits off
//! everything up to the last `\n` as one `Bytes` chunk (zero-copy: the chunk shares the
//! read buffer), so downstream stages get whole lines in large batches. A line that grows
//! past `max_line_bytes` without a newline is reported once (with its first bytes) and
//! skipped up to its newline, so memory stays bounded by `max_line_bytes + read size`.
//! Offsets are stream offsets: the first byte the framer ever saw is `start_offset`.

use bytes::{Bytes, BytesMut};

/// A chunk of whole lines and the stream range `[start, end)` it covers.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub data: Bytes,
    pub start: u64,
    pub end: u64,
}

/// An over-long line that was skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlong {
    /// Stream offset of the line's first byte.
    pub offset: u64,
    /// The line's first bytes (at most the sample size).
    pub sample: Vec<u8>,
}

pub struct Framer {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    buf_start: u64,
    max_line: usize,
    sample_bytes: usize,
    /// While skipping an over-long line: its report is already made.
    skipping: bool,
    /// Length of `buf` already known to hold no newline.
    scanned: usize,
    /// Reused read buffer: reads land here and only the bytes read are appended, so a
    /// trickle of small reads does not clear a whole read-size buffer each time.
    scratch: Vec<u8>,
}

impl Framer {
    pub fn new(start_offset: u64, max_line_bytes: usize, sample_bytes: usize) -> Self {
        Self { buf: BytesMut::new(), buf_start: start_offset, max_line: max_line_bytes.max(1), sample_bytes, skipping: false, scanned: 0, scratch: Vec::new() }
    }

    /// Offset just past the last byte pushed.
    pub fn read_offset(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// Bytes held back (a partial line).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Reads once from `read` into the buffer (up to `max` bytes). Returns the count read.
    pub fn read_from(&mut self, read: &mut impl std::io::Read, max: usize) -> std::io::Result<usize> {
        if self.scratch.len() != max {
            self.scratch = vec![0; max];
        }
        let n = read.read(&mut self.scratch)?;
        self.buf.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// [`Framer::read_from`] for a file or socket: the kernel writes straight into the
    /// buffer's spare room (no zeroing, no second copy). A trickle of small reads fills
    /// the same allocation until `max` no longer fits after the bytes held.
    pub fn read_fd(&mut self, fd: &impl std::os::fd::AsFd, max: usize) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        self.buf.reserve(max);
        let spare = self.buf.spare_capacity_mut();
        let want = spare.len().min(max);
        // SAFETY: read(2) writes at most `want` bytes into the spare capacity, which is at
        // least that long, and returns how many it wrote; only those are marked as set.
        let n = unsafe { libc::read(fd.as_fd().as_raw_fd(), spare.as_mut_ptr().cast(), want) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        // SAFETY: the `n` bytes after the current length were just written by read(2).
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Ok(n)
    }

    /// Appends bytes received from elsewhere (a datagram, a socket read).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Splits off all complete lines. Over-long lines are passed to `overlong` and dropped.
    pub fn take_lines(&mut self, mut overlong: impl FnMut(Overlong)) -> Option<Chunk> {
        loop {
            if self.skipping {
                match memchr::memchr(b'\n', &self.buf) {
                    Some(i) => {
                        let _ = self.buf.split_to(i + 1);
                        self.buf_start += i as u64 + 1;
                        self.skipping = false;
                        self.scanned = 0;
                    }
                    None => {
                        self.buf_start += self.buf.len() as u64;
                        self.buf.clear();
                        self.scanned = 0;
                        return None;
                    }
                }
            }
            let from = self.scanned.min(self.buf.len());
            match memchr::memrchr(b'\n', &self.buf[from..]) {
                Some(i) => {
                    let cut = from + i + 1;
                    // Any complete line in the chunk longer than the limit is left for the
                    // parser to reject; only a line without an end can grow the buffer.
                    let data = self.buf.split_to(cut).freeze();
                    let start = self.buf_start;
                    self.buf_start += cut as u64;
                    let end = self.buf_start;
                    self.scanned = 0;
                    self.check_overlong(&mut overlong);
                    return Some(Chunk { data, start, end });
                }
                None => {
                    self.scanned = self.buf.len();
                    if self.check_overlong(&mut overlong) {
                        continue;
                    }
                    return None;
                }
            }
        }
    }

    fn check_overlong(&mut self, overlong: &mut impl FnMut(Overlong)) -> bool {
        if self.buf.len() > self.max_line && memchr::memchr(b'\n', &self.buf).is_none() {
            let n = self.sample_bytes.min(self.buf.len());
            overlong(Overlong { offset: self.buf_start, sample: self.buf[..n].to_vec() });
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
            self.skipping = true;
            self.scanned = 0;
            return true;
        }
        false
    }

    /// At end of input: everything left, including a last line without a newline.
    pub fn take_rest(&mut self, overlong: impl FnMut(Overlong)) -> Option<Chunk> {
        if let Some(c) = self.take_lines(overlong) {
            // Put back nothing: the remainder is handled by the next call.
            return Some(c);
        }
        if self.skipping || self.buf.is_empty() {
            self.skipping = false;
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
            return None;
        }
        let data = self.buf.split().freeze();
        let start = self.buf_start;
        self.buf_start += data.len() as u64;
        self.scanned = 0;
        Some(Chunk { data, start, end: self.buf_start })
    }

    /// Forgets pending bytes and restarts at `offset` (after truncation).
    pub fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.buf_start = offset;
        self.skipping = false;
        self.scanned = 0;
    }
}

pub use crate::event::handoff::lines;

/// What a whole stream frames into, independent of how it arrived: every line within the
/// limit with its stream offset, the offsets of the lines over the limit (whether the
/// framer skipped them or left them whole for the parser to reject), and the end offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedStream {
    pub lines: Vec<(u64, Vec<u8>)>,
    pub too_long: Vec<u64>,
    pub end: u64,
}

/// Feeds `pieces` through a [`Framer`] as a source would and collects the result. The
/// reference for "framing does not depend on how the stream is split" (tests, fuzzing).
pub fn frame_pieces(pieces: &[&[u8]], max_line_bytes: usize) -> FramedStream {
    let mut f = Framer::new(0, max_line_bytes, 16);
    let mut out = FramedStream { lines: Vec::new(), too_long: Vec::new(), end: 0 };
    let take = |c: Chunk, out: &mut FramedStream| {
        assert_eq!(c.end - c.start, c.data.len() as u64, "a chunk covers exactly its bytes");
        for (off, l) in lines(&c.data) {
            if l.len() > max_line_bytes {
                out.too_long.push(c.start + off as u64);
            } else {
                out.lines.push((c.start + off as u64, l.to_vec()));
            }
        }
    };
    let mut skipped = Vec::new();
    for p in pieces {
        f.push(p);
        while let Some(c) = f.take_lines(|o| skipped.push(o.offset)) {
            take(c, &mut out);
        }
    }
    if let Some(c) = f.take_rest(|o| skipped.push(o.offset)) {
        take(c, &mut out);
    }
    out.too_long.extend(skipped);
    out.too_long.sort_unstable();
    out.end = f.read_offset();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut Framer, input: &[u8], step: usize) -> (Vec<u8>, Vec<Overlong>) {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for piece in input.chunks(step.max(1)) {
            framer.push(piece);
            while let Some(c) = framer.take_lines(|o| bad.push(o)) {
                assert_eq!(c.end - c.start, c.data.len() as u64);
                out.extend_from_slice(&c.data);
            }
        }
        if let Some(c) = framer.take_rest(|o| bad.push(o)) {
            out.extend_from_slice(&c.data);
        }
        (out, bad)
    }

    #[test]
    fn reads_from_a_socket_land_whole_and_in_order() {
        use std::io::Write;
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        let input: Vec<u8> = (0..2000).flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes()).collect();
        let writer = {
            let input = input.clone();
            std::thread::spawn(move || {
                for piece in input.chunks(777) {
                    tx.write_all(piece).unwrap();
                }
            })
        };
        let mut framer = Framer::new(5, 1024, 16);
        let (mut out, mut at) = (Vec::new(), 5);
        loop {
            // Reads smaller than the data and than a line: many partial lines held back.
            let n = framer.read_fd(&rx, 100).unwrap();
            let c = if n == 0 { framer.take_rest(|_| panic!("no line is over-long")) } else { framer.take_lines(|_| panic!("no line is over-long")) };
            if let Some(c) = c {
                assert_eq!((c.start, c.end), (at, at + c.data.len() as u64));
                at = c.end;
                out.extend_from_slice(&c.data);
            }
            if n == 0 {
                break;
            }
        }
        writer.join().unwrap();
        assert_eq!(out, input);
        assert_eq!(framer.read_offset(), 5 + input.len() as u64);
    }

    #[test]
    fn output_does_not_depend_on_split() {
        let input = b"{\"a\":1}\n{\"b\":2}\r\n\n{\"c\":3}";
        for step in 1..input.len() {
            let (out, bad) = feed(&mut Framer::new(0, 1024, 16), input, step);
            assert_eq!(out, input, "step {step}");
            assert!(bad.is_empty());
        }
    }

    #[test]
    fn overlong_line_is_skipped_with_bounded_memory() {
        let mut input = b"ok1\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\nok2\n");
        let mut f = Framer::new(100, 64, 8);
        let (out, bad) = feed(&mut f, &input, 97);
        assert_eq!(out, b"ok1\nok2\n");
        assert_eq!(bad, vec![Overlong { offset: 104, sample: b"xxxxxxxx".to_vec() }]);
        assert_eq!(f.read_offset(), 100 + input.len() as u64);
    }

    #[test]
    fn lines_iterates_with_offsets() {
        let got: Vec<_> = lines(b"a\nbc\n\nd").collect();
        assert_eq!(got, vec![(0, &b"a"[..]), (2, &b"bc"[..]), (5, &b""[..]), (6, &b"d"[..])]);
    }
}
