//! The framer's output does not depend on how the byte stream is split: the same input
//! fed whole and fed in fuzzer-chosen pieces yields the same lines at the same offsets,
//! the same too-long lines (skipped by the framer, or left whole for the parser to
//! reject: either way rejected at the same offset) and the same end offset.
#![no_main]

use alertflow::ingest::framing::{lines, Framer};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64;

fn run(pieces: &[&[u8]]) -> (Vec<(u64, Vec<u8>)>, Vec<u64>, u64) {
    let mut f = Framer::new(7, MAX, 16);
    let mut good = Vec::new();
    let mut too_long = Vec::new();
    let take = |c: alertflow::ingest::framing::Chunk, good: &mut Vec<(u64, Vec<u8>)>, too_long: &mut Vec<u64>| {
        assert_eq!(c.end - c.start, c.data.len() as u64);
        for (off, l) in lines(&c.data) {
            if l.len() > MAX {
                too_long.push(c.start + off as u64);
            } else {
                good.push((c.start + off as u64, l.to_vec()));
            }
        }
    };
    for p in pieces {
        f.push(p);
        loop {
            let mut bad = Vec::new();
            let c = f.take_lines(|o| bad.push(o.offset));
            too_long.extend(bad);
            match c {
                Some(c) => take(c, &mut good, &mut too_long),
                None => break,
            }
        }
    }
    let mut bad = Vec::new();
    let rest = f.take_rest(|o| bad.push(o.offset));
    too_long.extend(bad);
    if let Some(c) = rest {
        take(c, &mut good, &mut too_long);
    }
    too_long.sort_unstable();
    (good, too_long, f.read_offset())
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cuts) = input;
    let mut pieces = Vec::new();
    let mut rest = &data[..];
    for c in cuts {
        let n = (c as usize).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    pieces.push(rest);
    assert_eq!(run(&[&data]), run(&pieces));
});
