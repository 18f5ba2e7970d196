//! The framer's output does not depend on how the byte stream is split: the same input
//! fed whole and fed in fuzzer-chosen pieces yields the same lines at the same offsets,
//! the same too-long lines (skipped by the framer, or left whole for the parser to
//! reject: either way rejected at the same offset) and the same end offset.
#![no_main]

use alertflow::ingest::framing::frame_pieces;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64;

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
    let whole = frame_pieces(&[&data], MAX);
    assert_eq!(whole.end, data.len() as u64);
    assert_eq!(frame_pieces(&pieces, MAX), whole);
});
