//! Syslog parse throughput: header parsers alone (messages/s per core) and the whole
//! parse stage on syslog batches (messages → columns).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use alertflow::deadletter::DeadLetter;
use alertflow::ingest::{Format, Position, RawBatch, SourceInfo};
use alertflow::parse::fast::parse_fast;
use alertflow::parse::syslog::{parse_rfc3164, parse_rfc5424, TimeHint};
use alertflow::parse::{EveParser, ParseLimits, ParseStage};

const HINT: TimeHint = TimeHint::utc(1_795_000_000_000_000);

fn lines(file: &str) -> Vec<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/syslog").join(file);
    std::fs::read(p).expect("syslog test data").split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn headers(c: &mut Criterion) {
    let rfc5424 = lines("syslog-suricata-alert-rfc5424.log");
    let rfc3164 = lines("syslog-suricata-alert-rfc3164.log");
    let mut g = c.benchmark_group("syslog");
    g.throughput(Throughput::Elements(rfc5424.len() as u64));
    g.bench_function("rfc5424_header", |b| b.iter(|| rfc5424.iter().filter(|l| parse_rfc5424(black_box(l)).is_ok()).count()));
    g.throughput(Throughput::Elements(rfc3164.len() as u64));
    g.bench_function("rfc3164_header", |b| b.iter(|| rfc3164.iter().filter(|l| parse_rfc3164(black_box(l), HINT).app_name.is_some()).count()));
    let msgs: Vec<String> = rfc3164.iter().map(|l| String::from_utf8_lossy(parse_rfc3164(l, HINT).message).into_owned()).collect();
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("fast_alert_text", |b| b.iter(|| msgs.iter().filter(|m| parse_fast(black_box(m), HINT).is_some()).count()));
    g.finish();
}

fn stage(c: &mut Criterion) {
    let source = Arc::new(SourceInfo { id: 0, name: "bench".into(), zone: None });
    let mut g = c.benchmark_group("syslog_stage");
    for file in ["syslog-suricata-alert-rfc5424.log", "syslog-suricata-eve-rfc5424.log"] {
        let data = Bytes::from(std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/syslog").join(file)).unwrap());
        let n = data.iter().filter(|&&b| b == b'\n').count() as u64;
        g.throughput(Throughput::Elements(n));
        g.bench_function(file.trim_end_matches(".log"), |b| {
            let mut st = ParseStage::new(EveParser::new(ParseLimits::default()), Arc::new(DeadLetter::disabled()));
            b.iter(|| {
                let raw = RawBatch {
                    source: source.clone(),
                    seq: 0,
                    stream: 0,
                    data: data.clone(),
                    base_offset: None,
                    path: None,
                    origins: Vec::new(),
                    position: Position::None,
                    format: Format::Syslog,
                    frames: Vec::new(),
                };
                st.process(raw).events.num_rows()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, headers, stage);
criterion_main!(benches);
