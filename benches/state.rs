//! State throughput: dedup and correlation per alert (one core), on a storm of repeats
//! (1,000 sources × 20 signatures) and on all-distinct keys.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use alertflow::state::correlate::{Condition, Correlator, Rule};
use alertflow::state::dedup::{Dedup, DedupConfig};
use alertflow::state::{AlertRecord, KeyField};

fn storm(n: usize, distinct: bool) -> Vec<AlertRecord> {
    (0..n)
        .map(|i| AlertRecord {
            alert_id: format!("{i:016x}"),
            ts_us: 1_700_000_000_000_000 + i as i64 * 10,
            sensor: "s1".into(),
            signature_id: 2_210_000 + (i % 20) as i64,
            severity: 2,
            src_ip: if distinct { format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255) } else { format!("10.9.{}.{}", i % 1000 / 250, i % 250) },
            dest_ip: format!("10.0.0.{}", i % 8),
            dest_port: Some(80 + (i % 3) as i32),
            proto: "TCP".into(),
            ..Default::default()
        })
        .collect()
}

fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "scan".into(), selectors: vec![], group_by: vec![KeyField::SrcIp], timespan_us: 300_000_000, condition: Condition::ValueCount { field: KeyField::DestPort, gte: 20 }, late: Default::default() },
        Rule { name: "burst".into(), selectors: vec![], group_by: vec![KeyField::SignatureId, KeyField::DestIp], timespan_us: 60_000_000, condition: Condition::EventCount { gte: 50 }, late: Default::default() },
    ]
}

fn state(c: &mut Criterion) {
    let n = 100_000;
    let mut g = c.benchmark_group("state");
    g.throughput(Throughput::Elements(n as u64));
    for (name, distinct) in [("repeats", false), ("distinct", true)] {
        let alerts = storm(n, distinct);
        g.bench_function(format!("dedup_{name}"), |b| {
            b.iter_batched(
                || Dedup::new(DedupConfig::default()),
                |mut d| {
                    let mut out = Vec::new();
                    for a in &alerts {
                        black_box(d.offer(a, &mut out));
                    }
                    d.len()
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(format!("correlate_{name}"), |b| {
            b.iter_batched(
                || Correlator::new(rules(), 100_000),
                |mut c| {
                    let mut out = Vec::new();
                    for a in &alerts {
                        black_box(c.offer(a, &mut out));
                    }
                    out.len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, state);
criterion_main!(benches);
