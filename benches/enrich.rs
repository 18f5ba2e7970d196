//! Enrichment and scoring throughput, one core: indicator lookups on a 1 M-indicator set,
//! GeoIP/ASN lookups with and without the per-thread memo, rule evaluation (the default
//! configuration's rules) and the whole enrich + score step per alert.
//!
//! `ALERTFLOW_BENCH_MMDB=/path/GeoLite2-City.mmdb` benches a real City database (the
//! default is MaxMind's small test database).

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use alertflow::enrich::geo::{DbKind, GeoDb};
use alertflow::enrich::intel::{IndicatorSet, Kind, Probe};
use alertflow::enrich::{EnrichConfig, Enricher, Enrichment, Sources};
use alertflow::score::vars::{AlertVars, Decided};
use alertflow::state::AlertRecord;

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(p)
}

/// xorshift: the same stream every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn intel(c: &mut Criterion) {
    // 1 M indicators: 400 k IPv4 hosts, 50 k CIDRs (/16–/28), 50 k IPv6 /48, 300 k
    // domains, 200 k sha256.
    let mut set = IndicatorSet::default();
    let mut r = Rng(42);
    let mut hosts = Vec::new();
    let mut domains = Vec::new();
    let mut hashes = Vec::new();
    for i in 0..400_000u32 {
        let ip = IpAddr::from((0x0b00_0000u32 + (r.next() as u32 % 0x3000_0000)).to_be_bytes());
        if i % 4 == 0 {
            hosts.push(ip);
        }
        set.add(Kind::Ip, &ip.to_string(), 70, None).unwrap();
    }
    for _ in 0..50_000 {
        let len = 16 + (r.next() % 13) as u8;
        let ip = IpAddr::from((0x5000_0000u32 + (r.next() as u32 % 0x1000_0000)).to_be_bytes());
        set.add(Kind::Ip, &format!("{ip}/{len}"), 70, None).unwrap();
    }
    for i in 0..50_000u32 {
        set.add(Kind::Ip, &format!("2001:db8:{:x}::/48", i), 70, None).unwrap();
    }
    for i in 0..300_000u32 {
        let d = format!("h{:x}.bad{}.example", r.next() % 0xffff_ffff, i);
        if i % 4 == 0 {
            domains.push(format!("www.{d}"));
        }
        set.add(Kind::Domain, &d, 70, None).unwrap();
    }
    for _ in 0..200_000 {
        let h = format!("{:016x}{:016x}{:016x}{:016x}", r.next(), r.next(), r.next(), r.next());
        hashes.push(h.clone());
        set.add(Kind::Sha256, &h, 70, None).unwrap();
    }
    assert!(set.len() >= 990_000, "{}", set.len());
    // Probes: half hits, half misses, of every kind, as an alert's flow offers them.
    let n = 100_000;
    let mut probes_ip: Vec<IpAddr> = Vec::with_capacity(n);
    for i in 0..n {
        probes_ip.push(if i % 2 == 0 { hosts[i % hosts.len()] } else { IpAddr::from(((r.next() as u32) | 0xe000_0000).to_be_bytes()) });
    }
    let misses: Vec<String> = (0..n).map(|i| format!("miss{i}.benign.example")).collect();
    let mut g = c.benchmark_group("intel_1m");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("ip_lookups", |b| b.iter(|| probes_ip.iter().filter(|ip| set.lookup(Probe::Ip(**ip)).is_some()).count()));
    g.bench_function("domain_lookups_with_parents", |b| {
        b.iter(|| (0..n).filter(|&i| set.lookup(Probe::Domain(if i % 2 == 0 { &domains[i % domains.len()] } else { &misses[i] })).is_some()).count())
    });
    g.bench_function("sha256_lookups", |b| {
        b.iter(|| (0..n).filter(|&i| set.lookup(Probe::Hash(if i % 2 == 0 { &hashes[i % hashes.len()] } else { &misses[i] })).is_some()).count())
    });
    g.finish();
}

fn geo(c: &mut Criterion) {
    let path = std::env::var_os("ALERTFLOW_BENCH_MMDB").map(PathBuf::from).unwrap_or_else(|| data("geoip/GeoIP2-City-Test.mmdb"));
    let db = GeoDb::load(std::fs::read(&path).unwrap(), DbKind::City).unwrap();
    let mut r = Rng(7);
    // Alerts come from a working set of addresses: 20 k distinct in the stream.
    let pool: Vec<IpAddr> = (0..20_000).map(|_| IpAddr::from((r.next() as u32).to_be_bytes())).collect();
    let n = 100_000;
    let stream: Vec<IpAddr> = (0..n).map(|_| pool[(r.next() % pool.len() as u64) as usize]).collect();
    let mut g = c.benchmark_group("geoip");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("city_lookup_no_memo", |b| b.iter(|| stream.iter().filter(|ip| db.place(**ip).ok().flatten().is_some()).count()));
    // Through the enricher: memo in front, src and dest per alert.
    let cfg = EnrichConfig { geoip_city: Some(path.clone()), geoip_asn: Some(data("geoip/GeoLite2-ASN-Test.mmdb")), history: false, ..Default::default() };
    let (sources, _) = Sources::open(&cfg);
    let mut en = Enricher::new(sources, &cfg);
    let alerts: Vec<AlertRecord> =
        stream.chunks(2).map(|p| AlertRecord { src_ip: p[0].to_string(), dest_ip: p[1].to_string(), ..Default::default() }).collect();
    let snap = en.snapshot();
    for a in &alerts {
        en.enrich(&snap, a, &[]);
    }
    g.bench_function("city_and_asn_lookups_with_memo", |b| {
        b.iter(|| {
            for a in &alerts {
                black_box(en.enrich(&snap, a, &[]));
            }
        })
    });
    g.finish();
}

fn score(c: &mut Criterion) {
    let cfg = alertflow::config::Config::embedded_default();
    let sc = cfg.scorer.clone().expect("the default config scores");
    let alerts: Vec<AlertRecord> = (0..10_000)
        .map(|i| AlertRecord {
            signature_id: 2_000_000 + i % 50,
            signature: format!("ET TEST {i}"),
            category: if i % 3 == 0 { "A Network Trojan was detected".into() } else { "Misc activity".into() },
            severity: 1 + (i % 3) as i32,
            src_ip: format!("10.0.{}.{}", i / 250 % 250, i % 250),
            dest_ip: "192.0.2.1".into(),
            ..Default::default()
        })
        .collect();
    let e = Enrichment::default();
    let d = Decided { dedup_count: 1, decision: "first", late: false, incidents: &[] };
    let rules = sc.rules() as u64 + 3;
    let mut g = c.benchmark_group("score");
    g.throughput(Throughput::Elements(alerts.len() as u64 * rules));
    g.bench_function("default_rules_alert_rules", |b| {
        b.iter(|| alerts.iter().map(|a| sc.score(&AlertVars { alert: a, enrichment: &e, decided: d, around: &[], triage: None }).score as u64).sum::<u64>())
    });
    g.finish();
}

criterion_group!(benches, intel, geo, score);
criterion_main!(benches);
