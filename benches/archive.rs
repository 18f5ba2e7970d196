//! Archive throughput: parsed batches → sealed zstd Parquet segments (one writer lane,
//! i.e. per core, and two), including the commit (close, fsync, rename). The sample's
//! events come from pcaps of many dates; they are filed into one hour here, as a live
//! sensor's are, so the bench measures encoding rather than hundreds of tiny files.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use alertflow::archive::{ArchiveConfig, ParquetSettings};
use alertflow::deadletter::DeadLetter;
use alertflow::ingest::{Format, Position, RawBatch, SourceInfo};
use alertflow::parse::{EveParser, ParseLimits, ParseStage, ParsedBatch};
use alertflow::pipeline::commit::Committer;

#[path = "common.rs"]
mod common;

fn parsed_batches(input: &[u8]) -> Vec<ParsedBatch> {
    let source = Arc::new(SourceInfo { id: 0, name: "bench".into(), zone: None });
    let mut stage = ParseStage::new(EveParser::new(ParseLimits::default()), Arc::new(DeadLetter::disabled()));
    let mut out = Vec::new();
    let mut start = 0;
    while start < input.len() {
        let end = (start + (1 << 20)).min(input.len());
        let end = memchr::memrchr(b'\n', &input[start..end]).map(|i| start + i + 1).unwrap_or(input.len());
        let raw = RawBatch {
            source: source.clone(),
            seq: out.len() as u64,
            stream: 0,
            data: Bytes::copy_from_slice(&input[start..end]),
            base_offset: None,
            path: None,
            origins: Vec::new(),
            position: Position::None,
            format: Format::Eve,
            frames: Vec::new(),
        };
        let mut parsed = stage.process(raw);
        let one_hour = parsed.events.hours[0];
        parsed.events.hours.fill(one_hour);
        out.push(parsed);
        start = end;
    }
    out
}

fn archive(c: &mut Criterion) {
    let input = common::eve_input(64 << 20);
    let batches = parsed_batches(&input);
    let rows: usize = batches.iter().map(|b| b.events.num_rows()).sum();
    let mut g = c.benchmark_group("archive");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows as u64));
    for lanes in [1usize, 2] {
        g.bench_function(format!("write_and_seal_{lanes}_lane"), |b| {
            b.iter_batched(
                || {
                    (
                        tempfile::tempdir().unwrap(),
                        batches
                            .iter()
                            .map(|p| ParsedBatch {
                                source: p.source.clone(),
                                stream: p.stream,
                                seq: p.seq,
                                position: Position::None,
                                events: p.events.clone(),
                                stats: Default::default(),
                            })
                            .collect::<Vec<_>>(),
                    )
                },
                |(dir, batches)| {
                    let cfg = ArchiveConfig {
                        root: dir.path().to_path_buf(),
                        parquet: ParquetSettings::default(),
                        writer_threads: lanes,
                        segment_max_bytes: 1 << 40,
                        max_open_partitions: 4096,
                        lane_queue_batches: 16,
                        idle_seal: Duration::from_secs(3600),
                        max_segment_age: Duration::from_secs(3600),
                        retention: Default::default(),
                        compaction: Default::default(),
                    };
                    let (mut w, _) = Committer::open(cfg).unwrap();
                    for b in batches {
                        w.accept(b).unwrap();
                    }
                    w.finish().unwrap();
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, archive);
criterion_main!(benches);
