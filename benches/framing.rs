//! Framing throughput: a byte stream cut into chunks of whole lines.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use alertflow::ingest::framing::{lines, Framer};

#[path = "common.rs"]
mod common;

fn framing(c: &mut Criterion) {
    let input = common::eve_input(32 << 20);
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("framer_1MiB_reads", |b| {
        b.iter(|| {
            let mut f = Framer::new(0, 16 << 20, 4096);
            let mut n = 0u64;
            for piece in input.chunks(1 << 20) {
                f.push(piece);
                while let Some(c) = f.take_lines(|_| {}) {
                    n += c.data.len() as u64;
                }
            }
            n
        })
    });
    g.throughput(Throughput::Elements(common::count_lines(&input)));
    g.bench_function("split_lines", |b| b.iter(|| lines(&input).map(|(_, l)| l.len()).sum::<usize>()));
    g.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
