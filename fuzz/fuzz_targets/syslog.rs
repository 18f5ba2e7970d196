//! The syslog parsers never panic, the lenient reading never loses the message, and the
//! RFC 6587 framer's output does not depend on how the stream is split.
#![no_main]

use alertflow::ingest::octet::frame_pieces;
use alertflow::parse::fast::parse_fast;
use alertflow::parse::syslog::{parse, parse_rfc5424, TimeHint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let hint = TimeHint::utc(1_795_000_000_000_000);
    let _ = parse_rfc5424(data);
    let (m, _) = parse(data, hint);
    // The message is a slice of the input.
    let start = m.message.as_ptr() as usize;
    assert!(m.message.is_empty() || (start >= data.as_ptr() as usize && start + m.message.len() <= data.as_ptr() as usize + data.len()));
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_fast(s, hint);
    }
    let whole = frame_pieces(&[data], 256);
    let cut = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let split = frame_pieces(&[&data[..cut], &data[cut..]], 256);
    assert_eq!(whole.0, split.0);
    assert_eq!(whole.1.len(), split.1.len());
});
