//! Any bytes through line preparation and the EVE parser. Invariants beyond "no panic":
//! `raw` is a sub-slice of the line; a line either yields an event or one reason; the
//! result is deterministic; an accepted event's time, if any, maps to a valid partition.
#![no_main]

use alertflow::event::time::{hour_bucket, partition_path};
use alertflow::parse::eve::prepare_line;
use alertflow::parse::{EveParser, ParseLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(line) = prepare_line(data) else { return };
    let start = line.as_ptr() as usize - data.as_ptr() as usize;
    assert!(start + line.len() <= data.len());
    let limits = ParseLimits { max_line_bytes: 1 << 20, max_depth: 64, ..Default::default() };
    let mut p = EveParser::new(limits);
    let first = p.parse(line, |ev| (ev.timestamp_us, ev.event_type.map(str::to_owned), ev.flow_id, ev.src_port));
    let again = p.parse(line, |ev| (ev.timestamp_us, ev.event_type.map(str::to_owned), ev.flow_id, ev.src_port));
    assert_eq!(first, again);
    if let Ok((Some(ts), _, _, port)) = first {
        let path = partition_path(hour_bucket(ts));
        assert!(path.starts_with("date=") && path.contains("/hour="));
        assert!(port.is_none_or(|p| (0..=65535).contains(&p)));
    }
});
