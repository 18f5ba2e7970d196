//! Syslog stream framing (RFC 6587): octet counting (`123 <34>1 …`) and non-transparent
//! framing (messages ending in LF), decided per frame as the RFC suggests: a frame that
//! starts with a digit followed by digits and a space is octet-counted, anything else
//! runs to the next LF.
//!
//! The framer is sans-IO: feed it bytes as they arrive, in any split; it appends whole
//! messages to a [`Frames`] buffer. Memory is bounded by `max_frame_bytes`: a counted
//! frame longer than that is skipped as its bytes arrive (never buffered) and a line
//! longer than that is skipped to its LF; both are reported with a sample. The output
//! does not depend on how the stream was split (the fuzz target checks this).

/// Messages framed so far: their bytes back to back and the end offset of each.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Frames {
    pub data: Vec<u8>,
    pub ends: Vec<u32>,
}

impl Frames {
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    pub fn take(&mut self) -> Frames {
        std::mem::take(self)
    }
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&e| {
            let s = start;
            start = e as usize;
            &self.data[s..e as usize]
        })
    }
    fn push(&mut self, msg: &[u8]) {
        self.data.extend_from_slice(msg);
        self.ends.push(self.data.len() as u32);
    }
}

/// A frame the framer had to drop.
#[derive(Debug, Clone, PartialEq)]
pub struct Oversize {
    /// The declared length of a counted frame, or `None` for an unterminated line.
    pub declared: Option<u64>,
    /// The first bytes of the frame.
    pub sample: Vec<u8>,
    /// The frame was cut off (end of stream, timeout) rather than too long.
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// At a frame boundary.
    Start,
    /// Discarding the rest of an oversize counted frame.
    Skip(u64),
    /// Discarding an overlong line up to its LF.
    SkipLine,
}

/// Longest octet count accepted as a count (RFC 6587 allows any; 10 digits cover u32).
const MAX_COUNT_DIGITS: usize = 10;

#[derive(Debug)]
pub struct OctetFramer {
    buf: Vec<u8>,
    state: State,
    max_frame: usize,
    sample_bytes: usize,
}

impl OctetFramer {
    pub fn new(max_frame: usize, sample_bytes: usize) -> Self {
        Self { buf: Vec::new(), state: State::Start, max_frame, sample_bytes }
    }

    /// Bytes buffered for a frame that is not complete yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Whether a frame has started and is not complete (used for the frame timeout).
    pub fn mid_frame(&self) -> bool {
        !self.buf.is_empty() || self.state != State::Start
    }

    /// Feeds bytes; complete messages go to `out`, dropped frames to `dropped`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Frames, dropped: &mut impl FnMut(Oversize)) {
        while !data.is_empty() {
            match self.state {
                State::Skip(n) => {
                    let k = (n as usize).min(data.len());
                    data = &data[k..];
                    let left = n - k as u64;
                    self.state = if left == 0 { State::Start } else { State::Skip(left) };
                }
                State::SkipLine => match memchr::memchr(b'\n', data) {
                    Some(i) => {
                        data = &data[i + 1..];
                        self.state = State::Start;
                    }
                    None => data = &[],
                },
                State::Start => {
                    // Take what the current frame needs (bounded), then frame from `buf`.
                    let room = (self.max_frame + MAX_COUNT_DIGITS + 2).saturating_sub(self.buf.len());
                    let k = room.min(data.len()).max(1);
                    self.buf.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    self.drain(out, dropped);
                }
            }
        }
    }

    /// Frames what is buffered.
    fn drain(&mut self, out: &mut Frames, dropped: &mut impl FnMut(Oversize)) {
        let mut pos = 0;
        loop {
            let b = &self.buf[pos..];
            // Separators between frames (a LF after a counted frame, NULs some senders use).
            let skip = b.iter().take_while(|&&c| matches!(c, b'\n' | b'\r' | b'\0')).count();
            pos += skip;
            let b = &self.buf[pos..];
            if b.is_empty() {
                break;
            }
            let digits = b.iter().take(MAX_COUNT_DIGITS + 1).take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && digits <= MAX_COUNT_DIGITS && b[0] != b'0' && digits < b.len() && b[digits] == b' ' {
                let len: u64 = std::str::from_utf8(&b[..digits]).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
                let body = &b[digits + 1..];
                if len > self.max_frame as u64 {
                    let sample = body[..body.len().min(self.sample_bytes)].to_vec();
                    dropped(Oversize { declared: Some(len), sample, truncated: false });
                    let have = body.len() as u64;
                    if have >= len {
                        pos += digits + 1 + len as usize;
                        continue;
                    }
                    self.state = State::Skip(len - have);
                    pos = self.buf.len();
                    break;
                }
                if (body.len() as u64) < len {
                    break; // wait for the rest
                }
                out.push(&body[..len as usize]);
                pos += digits + 1 + len as usize;
                continue;
            }
            if digits == b.len() && digits <= MAX_COUNT_DIGITS {
                break; // could still become a count
            }
            match memchr::memchr(b'\n', b) {
                Some(i) if i <= self.max_frame => {
                    out.push(&b[..i]);
                    pos += i + 1;
                }
                Some(i) => {
                    dropped(Oversize { declared: None, sample: b[..self.sample_bytes.min(i)].to_vec(), truncated: false });
                    pos += i + 1;
                }
                None if b.len() > self.max_frame => {
                    dropped(Oversize { declared: None, sample: b[..self.sample_bytes.min(b.len())].to_vec(), truncated: false });
                    self.state = State::SkipLine;
                    pos = self.buf.len();
                    break;
                }
                None => break,
            }
        }
        self.buf.drain(..pos);
    }

    /// A connection cut off mid-frame (timeout): what is buffered is reported as truncated.
    pub fn abandon(&mut self, dropped: &mut impl FnMut(Oversize)) {
        let b = std::mem::take(&mut self.buf);
        let start = b.iter().take_while(|&&c| matches!(c, b'\n' | b'\r' | b'\0')).count();
        if b.len() > start || self.state != State::Start {
            dropped(Oversize { declared: None, sample: b[start..].iter().take(self.sample_bytes).copied().collect(), truncated: true });
        }
        self.state = State::Start;
    }

    /// End of stream: an unterminated last line is still a message; a partial counted
    /// frame is reported as truncated.
    pub fn finish(&mut self, out: &mut Frames, dropped: &mut impl FnMut(Oversize)) {
        if self.state == State::Start {
            let b = std::mem::take(&mut self.buf);
            let start = b.iter().take_while(|&&c| matches!(c, b'\n' | b'\r' | b'\0')).count();
            let b = &b[start..];
            if !b.is_empty() {
                let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
                if digits > 0 && digits < b.len() && b[digits] == b' ' && b[0] != b'0' {
                    dropped(Oversize {
                        declared: std::str::from_utf8(&b[..digits]).ok().and_then(|s| s.parse().ok()),
                        sample: b[..b.len().min(self.sample_bytes)].to_vec(),
                        truncated: true,
                    });
                } else {
                    out.push(b);
                }
            }
        }
        self.buf.clear();
        self.state = State::Start;
    }
}

/// Frames a whole stream fed in the given pieces (reference driver for tests and fuzzing).
pub fn frame_pieces(pieces: &[&[u8]], max_frame: usize) -> (Vec<Vec<u8>>, Vec<Oversize>) {
    let mut f = OctetFramer::new(max_frame, 64);
    let mut out = Frames::default();
    let mut dropped = Vec::new();
    for p in pieces {
        f.push(p, &mut out, &mut |o| dropped.push(o));
    }
    f.finish(&mut out, &mut |o| dropped.push(o));
    (out.iter().map(<[u8]>::to_vec).collect(), dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_and_lf_frames_mixed() {
        let s = b"11 <1>1 - - -x\n<2>plain line\n4 a\nbc";
        let (msgs, dropped) = frame_pieces(&[s], 1024);
        assert_eq!(msgs, vec![b"<1>1 - - -x".to_vec(), b"<2>plain line".to_vec(), b"a\nbc".to_vec()]);
        assert!(dropped.is_empty());
        for cut in 0..s.len() {
            assert_eq!(frame_pieces(&[&s[..cut], &s[cut..]], 1024).0, msgs, "cut at {cut}");
        }
    }

    #[test]
    fn oversize_counted_frame_is_skipped_without_buffering() {
        let mut f = OctetFramer::new(16, 8);
        let mut out = Frames::default();
        let mut dropped = Vec::new();
        f.push(b"4294967295 ", &mut out, &mut |o| dropped.push(o));
        for _ in 0..1000 {
            f.push(&[b'x'; 100], &mut out, &mut |o| dropped.push(o));
        }
        assert!(f.pending() < 64);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].declared, Some(4_294_967_295));
        assert!(out.is_empty());
    }

    #[test]
    fn overlong_line_is_skipped_to_its_end() {
        let (msgs, dropped) = frame_pieces(&[b"<1>", &[b'a'; 100], b"\n<2>ok\n"], 32);
        assert_eq!(msgs, vec![b"<2>ok".to_vec()]);
        assert_eq!(dropped.len(), 1);
    }
}
