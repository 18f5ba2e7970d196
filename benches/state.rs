//! State throughput: dedup and correlation per alert (one core), on a storm of repeats
//! (1,000 sources × 20 signatures) and on all-distinct keys; flow context per context event
//! and per alert lookup; the whole stage on a mixed batch with 1 and 2 shards.

use std::hint::black_box;

/// The allocator the binary ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use alertflow::event::{ContextKind, ContextView};
use alertflow::pipeline::alerts::AlertPath;
use alertflow::state::context::{ContextConfig, FlowContext};
use alertflow::state::correlate::{Condition, Correlator, Rule};
use alertflow::state::dedup::{Dedup, DedupConfig};
use alertflow::state::stage::StateConfig;
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
        Rule {
            name: "scan".into(),
            selectors: vec![],
            group_by: vec![KeyField::SrcIp],
            timespan_us: 300_000_000,
            condition: Condition::value_count(KeyField::DestPort, 20),
            ..Default::default()
        },
        Rule {
            name: "burst".into(),
            selectors: vec![],
            group_by: vec![KeyField::SignatureId, KeyField::DestIp],
            timespan_us: 60_000_000,
            condition: Condition::event_count(50),
            ..Default::default()
        },
    ]
}

/// Sigma rules over the storm: a detection, a count chained into an ordered correlation,
/// and a range judged on complete windows.
fn sigma_rules() -> Vec<Rule> {
    const TEXT: &str = "title: probe\nname: probe\ndetection:\n  s:\n    signature_id|lt: 2210010\n  condition: s\n---\n\
title: other\nname: other\ndetection:\n  s:\n    signature_id|gte: 2210010\n  condition: s\n---\n\
title: many probes\nname: many_probes\ncorrelation:\n  type: event_count\n  rules: [probe]\n  group-by: [SourceIp]\n  timespan: 1m\n  condition: {gte: 20}\n---\n\
title: probes then other\ncorrelation:\n  type: temporal_ordered\n  rules: [many_probes, other]\n  group-by: [SourceIp]\n  timespan: 5m\nlevel: high\n---\n\
title: two ports\ncorrelation:\n  type: value_count\n  rules: [probe]\n  group-by: [DestinationIp]\n  timespan: 1m\n  condition: {field: DestinationPort, gt: 1, lte: 2}\n";
    alertflow::state::sigma::load(TEXT, &[]).expect("bench rules load")
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
        g.bench_function(format!("correlate_sigma_{name}"), |b| {
            b.iter_batched(
                || Correlator::new(sigma_rules(), 100_000),
                |mut c| {
                    let mut out = Vec::new();
                    for a in &alerts {
                        black_box(c.offer(a, &mut out));
                    }
                    c.advance(i64::MAX, &mut out);
                    out.len()
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn context_events(n: usize) -> Vec<(i64, i64, String, ContextView<'static>)> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    (0..n)
        .map(|i| {
            let flow = (i / 4) as i64;
            let src = format!("10.1.{}.{}", i >> 8 & 255, i & 255);
            let c = match i % 4 {
                0 => ContextView {
                    kind: ContextKind::Dns,
                    text: [Some(leak(format!("host{}.example.com", i % 5000))), Some("A"), Some("query"), None, None],
                    num: [None; 4],
                },
                1 => ContextView {
                    kind: ContextKind::Http,
                    text: [
                        Some(leak(format!("host{}.example.com", i % 5000))),
                        Some(leak(format!("/path/{i}/index.html"))),
                        Some("GET"),
                        Some("Mozilla/5.0"),
                        None,
                    ],
                    num: [Some(200), Some(5120), None, None],
                },
                2 => ContextView {
                    kind: ContextKind::Tls,
                    text: [Some(leak(format!("sni{}.example.net", i % 3000))), Some("TLS 1.3"), Some("e7d705a3286e19ea42f587b344ee6865"), None, None],
                    num: [None; 4],
                },
                _ => ContextView {
                    kind: ContextKind::Flow,
                    text: [Some("closed"), Some("timeout"), None, None, None],
                    num: [Some(10), Some(8), Some(1200), Some(64000)],
                },
            };
            (1_700_000_000_000_000 + i as i64 * 100, flow, src, c)
        })
        .collect()
}

fn context(c: &mut Criterion) {
    let n = 200_000;
    let events = context_events(n);
    let mut g = c.benchmark_group("context");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("observe", |b| {
        b.iter_batched(
            || FlowContext::new(ContextConfig::default()),
            |mut fc| {
                for (ts, flow, src, c) in &events {
                    black_box(fc.observe(*ts, Some(*flow), Some(src), Some("192.0.2.1"), c));
                }
                fc
            },
            BatchSize::LargeInput,
        )
    });
    let mut fc = FlowContext::new(ContextConfig::default());
    for (ts, flow, src, c) in &events {
        fc.observe(*ts, Some(*flow), Some(src), Some("192.0.2.1"), c);
    }
    g.bench_function("alert_summary", |b| {
        b.iter(|| {
            let mut found = 0;
            for (_, flow, src, _) in &events {
                found += fc.summary(Some(*flow), Some(src), Some("192.0.2.1")).is_some() as usize;
            }
            found
        })
    });
    g.finish();
}

/// A mixed batch like a sensor's: 1 alert in 10, the rest flow/dns/http/tls.
fn mixed_batch(n: usize) -> alertflow::event::EventBatch {
    let mut parser = alertflow::parse::eve::EveParser::new(Default::default());
    let mut b = alertflow::event::EventBatchBuilder::with_capacity(n, n * 400);
    for i in 0..n {
        let ts = format!("2026-11-01T00:{:02}:{:02}.{:06}+0000", i / 60_000 % 60, i / 1000 % 60, i % 1_000_000);
        let (flow, src, dst) = (i / 5, format!("10.1.{}.{}", i >> 8 & 15, i & 255), format!("10.2.0.{}", i % 50));
        let line = match i % 10 {
            0 => format!(
                r#"{{"timestamp":"{ts}","flow_id":{flow},"event_type":"alert","src_ip":"{src}","src_port":40000,"dest_ip":"{dst}","dest_port":{},"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":{},"rev":1,"signature":"ET TEST","category":"Misc","severity":2}}}}"#,
                80 + i % 30,
                2_210_000 + i % 20
            ),
            1 | 2 => format!(
                r#"{{"timestamp":"{ts}","flow_id":{flow},"event_type":"dns","src_ip":"{src}","src_port":5353,"dest_ip":"10.0.0.53","dest_port":53,"proto":"UDP","dns":{{"type":"query","id":1,"rrname":"host{}.example.com","rrtype":"A"}}}}"#,
                i % 5000
            ),
            3 | 4 => format!(
                r#"{{"timestamp":"{ts}","flow_id":{flow},"event_type":"http","src_ip":"{src}","src_port":40000,"dest_ip":"{dst}","dest_port":80,"proto":"TCP","http":{{"hostname":"host{}.example.com","url":"/p/{i}","http_method":"GET","status":200,"length":512}}}}"#,
                i % 5000
            ),
            5 => format!(
                r#"{{"timestamp":"{ts}","flow_id":{flow},"event_type":"tls","src_ip":"{src}","src_port":40000,"dest_ip":"{dst}","dest_port":443,"proto":"TCP","tls":{{"sni":"sni{}.example.net","version":"TLS 1.3","ja3":{{"hash":"e7d705a3286e19ea42f587b344ee6865"}}}}}}"#,
                i % 3000
            ),
            _ => format!(
                r#"{{"timestamp":"{ts}","flow_id":{flow},"event_type":"flow","src_ip":"{src}","src_port":40000,"dest_ip":"{dst}","dest_port":80,"proto":"TCP","flow":{{"pkts_toserver":10,"pkts_toclient":8,"bytes_toserver":1200,"bytes_toclient":64000,"state":"closed","reason":"timeout"}}}}"#
            ),
        };
        parser.parse(line.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "bench", &line)).expect("valid line");
    }
    b.finish()
}

/// The first `n` lines of the EVE file in `ALERTFLOW_BENCH_EVE`, when set (to run the
/// stage bench on your own sensor's output).
fn file_batch(n: usize) -> Option<alertflow::event::EventBatch> {
    let path = std::env::var_os("ALERTFLOW_BENCH_EVE")?;
    let text = std::fs::read_to_string(path).ok()?;
    let mut parser = alertflow::parse::eve::EveParser::new(Default::default());
    let mut b = alertflow::event::EventBatchBuilder::with_capacity(n, n * 700);
    for line in text.lines().take(n) {
        let _ = parser.parse(line.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "bench", line));
    }
    Some(b.finish())
}

fn stage(c: &mut Criterion) {
    let n = 50_000;
    let batch = file_batch(n).unwrap_or_else(|| mixed_batch(n));
    let n = batch.num_rows();
    let mut g = c.benchmark_group("state_stage");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    for shards in [1, 2] {
        let cfg = StateConfig { rules: rules(), shards, ..Default::default() };
        g.bench_function(format!("mixed_shards_{shards}"), |b| {
            // The stage is returned so that dropping it is not timed.
            b.iter_batched(
                || AlertPath::new(&cfg, None, None),
                |mut s| {
                    let out = s.process(&batch, 1_793_491_200_000_000 + 3_600_000_000);
                    (s, out)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// The audit trail: records made (JSON line, SHA-256 link) and a trail verified, per record.
fn audit(c: &mut Criterion) {
    use alertflow::output::audit::{verify, Chain};
    let n = 100_000;
    let detail = serde_json::json!({
        "decision": "first", "dedup_key": "s1|2210001|10.9.0.1|10.0.0.1|TCP", "signature_id": 2_210_001,
        "signature": "SURICATA STREAM ESTABLISHED packet out of window", "src_ip": "10.9.0.1", "dest_ip": "10.0.0.1",
        "score": 12, "priority": "low", "incident_ids": [],
    });
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("record", |b| {
        b.iter(|| {
            let mut chain = Chain::default();
            for i in 0..n {
                black_box(chain.record(1_700_000_000_000_000 + i as i64, "alert_emitted", "a1771c6f36f35b37", &detail));
            }
            chain.seq
        })
    });
    let mut chain = Chain::default();
    let text: String = (0..n).map(|i| chain.append(1_700_000_000_000_000 + i as i64, "alert_emitted", "a1771c6f36f35b37", &detail) + "\n").collect();
    g.bench_function("verify", |b| b.iter(|| verify(std::io::Cursor::new(text.as_bytes())).map(|v| v.records).unwrap_or(0)));
    g.finish();
}

criterion_group!(benches, state, context, stage, audit);
criterion_main!(benches);
