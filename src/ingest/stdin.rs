//! The stdin source: reads standard input to its end. No positions (a pipe cannot be
//! re-read), blocking backpressure.

use std::io::Read;

use super::framing::Framer;
use super::{Position, RawBatch, SourceCtx};

/// Reads `input` (standard input, or any reader in tests) to EOF.
pub fn run(ctx: SourceCtx, mut input: impl Read) -> std::io::Result<()> {
    let mut framer = Framer::new(0, ctx.max_line_bytes, ctx.dead_letter.sample_bytes());
    let mut seq = 0u64;
    let path: std::sync::Arc<str> = "-".into();
    loop {
        if ctx.stopping() {
            return Ok(());
        }
        let n = match framer.read_from(&mut input, ctx.read_bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = if n == 0 { framer.take_rest(|o| ctx.overlong(Some("-"), &o, true)) } else { framer.take_lines(|o| ctx.overlong(Some("-"), &o, true)) };
        if let Some(c) = chunk {
            let batch = RawBatch {
                source: ctx.info.clone(),
                seq,
                stream: 0,
                data: c.data,
                base_offset: Some(c.start),
                path: Some(path.clone()),
                origins: Vec::new(),
                position: Position::None,
                format: ctx.format,
                frames: Vec::new(),
            };
            seq += 1;
            if !ctx.send(batch) {
                return Ok(());
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}
