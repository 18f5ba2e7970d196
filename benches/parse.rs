//! Parse throughput: raw line batches → typed columnar event batches, one worker.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use alertflow::deadletter::DeadLetter;
use alertflow::ingest::{Format, Position, RawBatch, SourceInfo};
use alertflow::parse::{EveParser, ParseLimits, ParseStage};

#[path = "common.rs"]
mod common;

fn parse(c: &mut Criterion) {
    let input = common::eve_input(16 << 20);
    // Cut into ~1 MiB batches at line ends, as the sources do.
    let mut batches = Vec::new();
    let mut start = 0;
    while start < input.len() {
        let end = (start + (1 << 20)).min(input.len());
        let end = memchr::memrchr(b'\n', &input[start..end]).map(|i| start + i + 1).unwrap_or(input.len());
        batches.push(Bytes::copy_from_slice(&input[start..end]));
        start = end;
    }
    let source = Arc::new(SourceInfo { id: 0, name: "bench".into(), zone: None });
    let lines = common::count_lines(&input);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(lines));
    g.bench_function("eve_to_columns", |b| {
        let mut stage = ParseStage::new(EveParser::new(ParseLimits::default()), Arc::new(DeadLetter::disabled()));
        b.iter(|| {
            let mut rows = 0;
            for (i, data) in batches.iter().enumerate() {
                let raw = RawBatch {
                    source: source.clone(),
                    seq: i as u64,
                    stream: 0,
                    data: data.clone(),
                    base_offset: None,
                    path: None,
                    origins: Vec::new(),
                    position: Position::None,
                    format: Format::Eve,
                    frames: Vec::new(),
                };
                rows += stage.process(raw).events.num_rows();
            }
            rows
        })
    });
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("eve_to_columns_bytes", |b| {
        let mut stage = ParseStage::new(EveParser::new(ParseLimits::default()), Arc::new(DeadLetter::disabled()));
        b.iter(|| {
            for (i, data) in batches.iter().enumerate() {
                let raw = RawBatch {
                    source: source.clone(),
                    seq: i as u64,
                    stream: 0,
                    data: data.clone(),
                    base_offset: None,
                    path: None,
                    origins: Vec::new(),
                    position: Position::None,
                    format: Format::Eve,
                    frames: Vec::new(),
                };
                stage.process(raw);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
