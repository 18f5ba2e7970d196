//! Bench input: the real Suricata 8.0.6 EVE sample, repeated to a few MiB.

#![allow(dead_code)]

use std::path::Path;

pub fn eve_input(min_bytes: usize) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/eve/eve-suricata-verify-8.0.6.ndjson");
    let one = std::fs::read(path).expect("tests/data present");
    let mut out = Vec::with_capacity(min_bytes + one.len());
    while out.len() < min_bytes {
        out.extend_from_slice(&one);
    }
    out
}

pub fn count_lines(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64
}
