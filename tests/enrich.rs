//! Enrichment sources against their reference data, feed formats, reload under load, and
//! alerts enriched end to end.

use crate::common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use alertflow::enrich::geo::{DbKind, GeoDb};
use alertflow::enrich::intel::{Format, IndicatorSet, Kind, LoadOptions, Probe};
use alertflow::enrich::{EnrichConfig, EnrichRuntime, FeedConfig, Outcome, Source, Sources};
use alertflow::event::{EventBatch, EventBatchBuilder};
use alertflow::parse::eve::{EveParser, ParseLimits};
use alertflow::pipeline::alerts::AlertPath;
use alertflow::state::stage::StateConfig;
use arrow::array::{Array, ListArray, StringArray};
use serde_json::Value;

fn data(p: &str) -> PathBuf {
    common::data_dir().join(p)
}

/// The first address of a network (`1.2.3.0/24` → 1.2.3.0).
fn first_address(net: &str) -> IpAddr {
    net.split('/').next().unwrap().parse().unwrap()
}

/// `37` and `37.0` are the same coordinate.
fn numbers_as_f64(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), numbers_as_f64(v))).collect()),
        other => other.clone(),
    }
}

fn check_db(db: &GeoDb, source: &Path) -> (usize, usize) {
    let entries: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(source).unwrap()).unwrap();
    let (mut checked, mut shadowed) = (0, 0);
    for e in &entries {
        for (net, want) in e.as_object().unwrap() {
            let ip = first_address(net);
            let (found_net, got) = db.record_json(ip).unwrap().unwrap_or_else(|| panic!("{net}: no record"));
            // The database merges neighbours with equal records into a wider network
            // (the record must still be this one); a more specific network listed later
            // takes this address and is checked under its own entry.
            let (_, found_len) = alertflow::enrich::prefix::parse_cidr(&found_net).unwrap();
            let (_, len) = alertflow::enrich::prefix::parse_cidr(net).unwrap();
            if found_len > len {
                shadowed += 1;
                continue;
            }
            assert_eq!(numbers_as_f64(&got), numbers_as_f64(want), "{net}: record differs from the source JSON");
            checked += 1;
            // What alertflow extracts equals the source's fields.
            match db.kind {
                DbKind::City => {
                    let p = db.place(ip).unwrap().unwrap();
                    assert_eq!(p.country.as_deref(), want["country"]["iso_code"].as_str(), "{net}");
                    assert_eq!(p.country_name.as_deref(), want["country"]["names"]["en"].as_str(), "{net}");
                    assert_eq!(p.city.as_deref(), want["city"]["names"]["en"].as_str(), "{net}");
                    assert_eq!(p.continent.as_deref(), want["continent"]["code"].as_str(), "{net}");
                    assert_eq!(p.subdivision.as_deref(), want["subdivisions"][0]["iso_code"].as_str(), "{net}");
                    assert_eq!(p.latitude, want["location"]["latitude"].as_f64(), "{net}");
                    assert_eq!(p.longitude, want["location"]["longitude"].as_f64(), "{net}");
                    assert_eq!(p.accuracy_radius.map(u64::from), want["location"]["accuracy_radius"].as_u64(), "{net}");
                    assert_eq!(p.time_zone.as_deref(), want["location"]["time_zone"].as_str(), "{net}");
                    assert_eq!(p.registered_country.as_deref(), want["registered_country"]["iso_code"].as_str(), "{net}");
                }
                DbKind::Asn => {
                    let a = db.asn(ip).unwrap().unwrap();
                    assert_eq!(a.number.map(u64::from), want["autonomous_system_number"].as_u64(), "{net}");
                    assert_eq!(a.organization.as_deref(), want["autonomous_system_organization"].as_str(), "{net}");
                }
            }
        }
    }
    (checked, shadowed)
}

#[test]
fn geoip_city_and_asn_equal_the_maxmind_source_json() {
    let city = GeoDb::load(std::fs::read(data("geoip/GeoIP2-City-Test.mmdb")).unwrap(), DbKind::City).unwrap();
    let (c, cs) = check_db(&city, &data("geoip/GeoIP2-City-Test.source.json"));
    let asn = GeoDb::load(std::fs::read(data("geoip/GeoLite2-ASN-Test.mmdb")).unwrap(), DbKind::Asn).unwrap();
    let (a, as_) = check_db(&asn, &data("geoip/GeoLite2-ASN-Test.source.json"));
    println!("city: {c} networks checked ({cs} shadowed by more specific ones); asn: {a} ({as_})");
    assert!(cs + as_ < 20, "most entries are checked");
    assert!(c >= 240 && a >= 700, "city {c}, asn {a}");
    // The wrong kind of database is refused with a clear message.
    let e = GeoDb::load(std::fs::read(data("geoip/GeoLite2-ASN-Test.mmdb")).unwrap(), DbKind::City).unwrap_err();
    assert!(matches!(&e, alertflow::enrich::LoadError::Database(m) if m.contains("GeoLite2-ASN")), "{e}");
    let e = GeoDb::load(b"not a database".to_vec(), DbKind::City).unwrap_err();
    assert!(matches!(&e, alertflow::enrich::LoadError::Database(m) if m.contains("not a MaxMind DB")), "{e}");
}

fn load(path: &str, format: Format) -> IndicatorSet {
    IndicatorSet::load(&std::fs::read(data(path)).unwrap(), &LoadOptions { format, confidence: 50, ..Default::default() }).unwrap()
}

fn hit(s: &IndicatorSet, p: Probe<'_>) -> Option<(String, Kind, u8)> {
    s.lookup(p).map(|i| {
        let x = s.indicator(i);
        (x.value.to_string(), x.kind, x.confidence)
    })
}

#[test]
fn misp_export_attributes_and_objects() {
    let s = load("intel/misp-event.json", Format::Misp);
    let ip = |x: &str| Probe::Ip(x.parse().unwrap());
    // threat_level_id 1 → confidence 90.
    assert_eq!(hit(&s, ip("198.51.100.23")), Some(("198.51.100.23".into(), Kind::Ip, 90)));
    assert_eq!(hit(&s, Probe::Domain("a.update-check.loader.example")).map(|h| h.0).as_deref(), Some("update-check.loader.example"));
    assert_eq!(hit(&s, Probe::Url(Some("cdn.loader.example"), "/gate/stage2.bin")).map(|h| h.1), Some(Kind::Url));
    assert_eq!(hit(&s, Probe::Hash("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08")).map(|h| h.1), Some(Kind::Sha256));
    // domain|ip gives both halves.
    assert!(hit(&s, Probe::Domain("panel.loader.example")).is_some());
    assert!(hit(&s, ip("203.0.113.77")).is_some());
    assert_eq!(hit(&s, Probe::Ja3("72a589da586844d7f0818ce684948eea")).map(|h| h.1), Some(Kind::Ja3));
    // Object attributes (file object): md5 and sha1 with to_ids; the filename is not.
    assert_eq!(hit(&s, Probe::Hash("d41d8cd98f00b204e9800998ecf8427e")).map(|h| h.1), Some(Kind::Md5));
    assert_eq!(hit(&s, Probe::Hash("da39a3ee5e6b4b0d3255bfef95601890afd80709")).map(|h| h.1), Some(Kind::Sha1));
    // to_ids = false is left out; email is not matched (counted).
    assert!(hit(&s, ip("192.0.2.200")).is_none());
    assert_eq!(s.len(), 9);
    let skipped: u64 = s.skipped.0.iter().map(|(_, n)| n).sum();
    assert_eq!(skipped, 3, "{:?}", s.skipped);
}

#[test]
fn stix_bundle_indicators() {
    let s = load("intel/stix-bundle.json", Format::Stix);
    assert_eq!(hit(&s, Probe::Ip("198.51.100.99".parse().unwrap())), Some(("198.51.100.99".into(), Kind::Ip, 85)));
    assert_eq!(hit(&s, Probe::Url(Some("x4z9arb.cn"), "/4712/")).map(|h| h.1), Some(Kind::Url));
    assert!(hit(&s, Probe::Domain("www.phish.stix.example")).is_some(), "second comparison of an OR pattern");
    assert_eq!(hit(&s, Probe::Hash("ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c")).map(|h| h.2), Some(95));
    assert!(hit(&s, Probe::Ip("2001:db8:c2:1::5".parse().unwrap())).is_some());
    assert!(hit(&s, Probe::Ip("192.0.2.1".parse().unwrap())).is_none(), "revoked");
    assert_eq!(s.len(), 5);
    let reasons: Vec<&str> = s.skipped.0.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons.len(), 3, "AND pattern, revoked, snort pattern: {reasons:?}");
}

#[test]
fn plain_list_and_csv_feeds() {
    let l = load("intel/blocklist.txt", Format::List);
    assert!(hit(&l, Probe::Ip("203.0.113.200".parse().unwrap())).is_some());
    assert!(hit(&l, Probe::Ip("2001:db8:bad:ff::1".parse().unwrap())).is_some());
    assert!(hit(&l, Probe::Sni("x.evil.example")).is_some());
    assert!(hit(&l, Probe::Ja4("t13d1516h2_8daaf6152771_02713d6af862")).is_some());
    let c = load("intel/feed.csv", Format::Csv);
    assert_eq!(hit(&c, Probe::Ip("192.0.2.66".parse().unwrap())).map(|h| h.2), Some(90));
    assert!(hit(&c, Probe::Sni("login.bank.example")).is_some());
    assert!(hit(&c, Probe::Ja3("e7d705a3286e19ea42f587b344ee6865")).is_some());
    assert_eq!(hit(&c, Probe::Domain("cdn.mal.example")).map(|h| h.2), Some(50), "no confidence: the feed's");
}

fn write(p: &Path, text: &[u8]) {
    // A new modification time even within the same second: the length differs or the
    // content hash decides.
    std::fs::write(p, text).unwrap();
}

#[test]
fn broken_feeds_are_rejected_and_the_previous_snapshot_stays() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("feed.csv");
    write(&csv, b"indicator,type,confidence\n198.51.100.1,ip,80\nbad.example,domain,70\n");
    let src = Source::new("intel:t", csv.clone(), |b: Vec<u8>| IndicatorSet::load(&b, &LoadOptions { format: Format::Csv, ..Default::default() }));
    assert!(matches!(src.reload(true), Outcome::Loaded { .. }));
    let v1 = src.get().unwrap().version.label.clone();
    // Truncated in the middle of a row.
    write(&csv, b"indicator,type,confidence\n198.51.100.1,ip,80\nbad.exa");
    match src.reload(false) {
        Outcome::Failed(e) => assert!(e.contains("feed.csv") && e.contains("CSV"), "{e}"),
        o => panic!("truncated CSV loaded: {o:?}"),
    }
    assert_eq!(src.get().unwrap().version.label, v1, "the previous snapshot stays in use");
    assert!(src.get().unwrap().data.lookup(Probe::Domain("bad.example")).is_some());

    let stix = dir.path().join("b.json");
    write(&stix, std::fs::read(data("intel/stix-bundle.json")).unwrap().as_slice());
    let s2 = Source::new("intel:s", stix.clone(), |b: Vec<u8>| IndicatorSet::load(&b, &LoadOptions { format: Format::Stix, ..Default::default() }));
    assert!(matches!(s2.reload(true), Outcome::Loaded { .. }));
    for (bad, want) in [
        (&br#"{"type": "bundle", "objects": [{"type": "indicator", "id": "indicator--1", "pattern": "[ipv4-addr:value = '1.2.3.4'", "pattern_type": "stix"}]}"#[..], "invalid pattern"),
        (br#"{"type": "report", "objects": []}"#, "not a STIX bundle"),
        (br#"{"type": "bundle", "objects": [{"type": "indicator", "id": "indicator--2"}]}"#, "has no `pattern`"),
        (br#"{"type": "bundle", "objects": ["#, "not JSON"),
    ] {
        write(&stix, bad);
        match s2.reload(true) {
            Outcome::Failed(e) => assert!(e.contains(want), "{e} should say {want}"),
            o => panic!("invalid STIX loaded: {o:?}"),
        }
        assert!(s2.get().unwrap().data.lookup(Probe::Ip("198.51.100.99".parse().unwrap())).is_some());
    }
    // A broken mmdb keeps the previous database.
    let mmdb = dir.path().join("city.mmdb");
    std::fs::copy(data("geoip/GeoIP2-City-Test.mmdb"), &mmdb).unwrap();
    let g = Source::new("geoip-city", mmdb.clone(), |b| GeoDb::load(b, DbKind::City));
    assert!(matches!(g.reload(true), Outcome::Loaded { .. }));
    let full = std::fs::read(&mmdb).unwrap();
    write(&mmdb, &full[..full.len() / 2]);
    assert!(matches!(g.reload(false), Outcome::Failed(_)));
    assert!(g.get().unwrap().data.place("81.2.69.142".parse().unwrap()).unwrap().is_some());
}

fn batch(lines: &[String]) -> EventBatch {
    let mut parser = EveParser::new(ParseLimits::default());
    let mut b = EventBatchBuilder::with_capacity(lines.len(), 1 << 16);
    for l in lines {
        parser.parse(l.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "test", l)).unwrap();
    }
    b.finish()
}

fn alert(i: usize, src: &str, dest: &str, sid: i64, severity: i32, flow: i64) -> String {
    let t = jiff::Timestamp::from_second(1_795_000_000 + i as i64).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.6f+0000");
    format!(
        r#"{{"timestamp":"{t}","flow_id":{flow},"event_type":"alert","src_ip":"{src}","src_port":{},"dest_ip":"{dest}","dest_port":443,"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":{sid},"rev":1,"signature":"ET TEST {sid}","category":"A Network Trojan was detected","severity":{severity}}}}}"#,
        1024 + i % 60000
    )
}

fn col<'a, T: 'static>(b: &'a arrow::record_batch::RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name).unwrap_or_else(|| panic!("{name}")).as_any().downcast_ref::<T>().unwrap()
}

#[test]
fn feeds_swapped_100_times_under_load_lose_nothing_and_alerts_record_loaded_versions() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("swap.txt");
    // Every version holds the common indicator and one of its own.
    let version = |k: usize| {
        format!(
            "# version {k}\n198.51.100.7\n203.0.113.{}\n{}\n",
            k % 250,
            (0..2000).map(|j| format!("10.{}.{}.{}", k % 200, j / 250, j % 250)).collect::<Vec<_>>().join("\n")
        )
    };
    write(&feed, version(0).as_bytes());
    let cfg = EnrichConfig {
        intel: vec![FeedConfig { name: "swap".into(), path: feed.clone(), format: Some(Format::List), kind: None, confidence: 70, to_ids_only: true }],
        ..Default::default()
    };
    let (sources, report) = Sources::open(&cfg);
    assert!(report.failed.is_empty(), "{report:?}");
    let loaded = Arc::new(std::sync::Mutex::new(HashSet::new()));
    loaded.lock().unwrap().insert(sources.intel[0].get().unwrap().version.label.to_string());
    // Swap k waits for the k-th processed batch: swaps and lookups interleave for certain.
    let processed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let swapper = {
        let (sources, loaded, feed, processed) = (sources.clone(), loaded.clone(), feed.clone(), processed.clone());
        std::thread::spawn(move || {
            for k in 1..=100 {
                while processed.load(Ordering::Acquire) < k {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                write(&feed, version(k).as_bytes());
                match sources.intel[0].reload(true) {
                    Outcome::Loaded { new, .. } => {
                        loaded.lock().unwrap().insert(new.version.label.to_string());
                    }
                    o => panic!("version {k}: {o:?}"),
                }
            }
        })
    };
    let mut stage = AlertPath::new(&StateConfig::default(), Some(&EnrichRuntime { sources: sources.clone(), config: cfg.clone() }), None);
    let mut sent = 0usize;
    let mut rows = 0usize;
    let mut versions_seen = HashSet::new();
    let mut batches = 0;
    while !swapper.is_finished() || batches < 20 {
        let lines: Vec<String> = (0..200).map(|j| alert(sent + j, "198.51.100.7", "10.1.2.3", 2_000_000 + (j % 7) as i64, 2, (sent + j) as i64)).collect();
        sent += lines.len();
        let out = stage.process(&batch(&lines), 1_795_000_000_000_000);
        let a = out.alerts.unwrap().columns;
        rows += a.num_rows();
        let intel = col::<StringArray>(&a, "intel");
        let versions = col::<ListArray>(&a, "source_versions");
        for i in 0..a.num_rows() {
            // Every lookup saw a whole table: the common indicator is always there.
            let hits: Value = serde_json::from_str(intel.value(i)).unwrap();
            assert!(hits.as_array().unwrap().iter().any(|h| h["indicator"] == "198.51.100.7" && h["field"] == "src_ip"), "row {i}: {hits}");
            let v = versions.value(i);
            let v = v.as_any().downcast_ref::<StringArray>().unwrap();
            assert_eq!(v.len(), 1);
            versions_seen.insert(v.value(0).to_string());
        }
        batches += 1;
        processed.store(batches, Ordering::Release);
    }
    swapper.join().unwrap();
    assert_eq!(rows, sent, "no alert lost");
    let loaded = loaded.lock().unwrap();
    assert_eq!(loaded.len(), 101, "101 distinct loads");
    for v in &versions_seen {
        assert!(loaded.contains(v), "{v} was never loaded");
    }
    println!("{sent} alerts in {batches} batches saw {} of the 101 versions", versions_seen.len());
    assert!(versions_seen.len() >= 10, "lookups ran while the feed was swapped: {} versions seen", versions_seen.len());
}

#[test]
fn replay_enriches_alerts_with_geo_assets_intel_history_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let mut cfg = common::test_config(&root);
    let d = common::data_dir();
    let toml = format!(
        r#"
[enrich]
geoip_city = "{city}"
geoip_asn = "{asn}"
assets = "{assets}"
[[enrich.intel]]
name = "misp"
path = "{misp}"
[[enrich.intel]]
name = "stix"
path = "{stix}"
[[enrich.intel]]
name = "local"
path = "{csv}"
[score]
aggregator = "sum"
[[score.rules]]
name = "intel"
when = "intel.matched"
score = 60
reason = "{{{{intel.indicators}}}} from {{{{intel.feeds}}}}"
[[score.rules]]
name = "critical asset"
when = "dest.asset.criticality_level >= 4"
score = 30
reason = "targets {{{{dest.asset.name}}}}"
[[score.rules]]
name = "foreign"
when = "src.country != '' && src.country != 'SE'"
score = 5
reason = "from {{{{src.country}}}} (AS{{{{src.asn}}}})"
[[score.recommend]]
name = "block"
when = "intel.matched"
actions = ["block {{{{src.ip}}}}"]
evidence = "{{{{intel.fields}}}}"
"#,
        city = d.join("geoip/GeoIP2-City-Test.mmdb").display(),
        asn = d.join("geoip/GeoLite2-ASN-Test.mmdb").display(),
        assets = d.join("assets.csv").display(),
        misp = d.join("intel/misp-event.json").display(),
        stix = d.join("intel/stix-bundle.json").display(),
        csv = d.join("intel/feed.csv").display(),
    );
    let parsed = alertflow::config::Config::parse(&toml).unwrap();
    cfg.enrich = parsed.enrich;
    cfg.scorer = parsed.scorer;
    // 81.2.69.142 is in GB (London) in the City test DB; 1.128.0.0/11 is AS1221.
    let t = |s: i64| jiff::Timestamp::from_second(1_795_000_000 + s).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.6f+0000").to_string();
    let lines = [
        // DNS and TLS on flow 7 before its alert; the TLS client fingerprint is in the MISP event.
        format!(
            r#"{{"timestamp":"{}","flow_id":7,"event_type":"dns","src_ip":"10.20.30.40","src_port":5353,"dest_ip":"10.0.0.53","dest_port":53,"proto":"UDP","dns":{{"type":"query","id":1,"rrname":"www.update-check.loader.example","rrtype":"A"}}}}"#,
            t(0)
        ),
        format!(
            r#"{{"timestamp":"{}","flow_id":7,"event_type":"tls","src_ip":"10.20.30.40","src_port":50000,"dest_ip":"81.2.69.142","dest_port":443,"proto":"TCP","tls":{{"sni":"login.bank.example","version":"TLS 1.2","ja3":{{"hash":"72a589da586844d7f0818ce684948eea","string":"x"}}}}}}"#,
            t(1)
        ),
        format!(
            r#"{{"timestamp":"{}","flow_id":7,"event_type":"alert","src_ip":"81.2.69.142","src_port":443,"dest_ip":"10.20.30.40","dest_port":50000,"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":2000001,"rev":1,"signature":"ET MALWARE loader","category":"A Network Trojan was detected","severity":1}}}}"#,
            t(2)
        ),
        // Flow 8: a download whose sha256 is in the STIX bundle, then its alert.
        format!(
            r#"{{"timestamp":"{}","flow_id":8,"event_type":"fileinfo","src_ip":"1.128.0.1","src_port":80,"dest_ip":"10.1.1.1","dest_port":40000,"proto":"TCP","fileinfo":{{"filename":"x.bin","sha256":"ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c","size":10}}}}"#,
            t(3)
        ),
        format!(
            r#"{{"timestamp":"{}","flow_id":8,"event_type":"alert","src_ip":"1.128.0.1","src_port":80,"dest_ip":"10.1.1.1","dest_port":40000,"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":2000002,"rev":1,"signature":"ET INFO exe download","category":"Misc activity","severity":3}}}}"#,
            t(4)
        ),
        // Nothing known about this one.
        format!(
            r#"{{"timestamp":"{}","flow_id":9,"event_type":"alert","src_ip":"192.0.2.9","src_port":1,"dest_ip":"192.0.2.10","dest_port":2,"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":2000003,"rev":1,"signature":"ET POLICY x","category":"Misc activity","severity":3}}}}"#,
            t(5)
        ),
    ];
    let input = dir.path().join("eve.json");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    common::replay(&mut cfg, &[input]);
    let files = glob::glob(&format!("{}/alerts/**/*.parquet", root.display())).unwrap().flatten().collect::<Vec<_>>();
    let mut rows: Vec<(i64, Value)> = Vec::new();
    for f in files {
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap()).unwrap().build().unwrap();
        for b in r {
            let b = b.unwrap();
            let sid = col::<arrow::array::Int64Array>(&b, "alert_signature_id");
            for i in 0..b.num_rows() {
                let s = |n: &str| {
                    let a = col::<StringArray>(&b, n);
                    if a.is_valid(i) {
                        Value::String(a.value(i).into())
                    } else {
                        Value::Null
                    }
                };
                let j = |n: &str| {
                    let a = col::<StringArray>(&b, n);
                    if a.is_valid(i) {
                        serde_json::from_str(a.value(i)).unwrap()
                    } else {
                        Value::Null
                    }
                };
                let score = col::<arrow::array::Int32Array>(&b, "score");
                let asn = col::<arrow::array::Int64Array>(&b, "src_asn");
                let versions = col::<ListArray>(&b, "source_versions").value(i);
                let versions: Vec<String> = versions.as_any().downcast_ref::<StringArray>().unwrap().iter().flatten().map(str::to_string).collect();
                rows.push((
                    sid.value(i),
                    serde_json::json!({
                        "src_country": s("src_country"), "src_asn": if asn.is_valid(i) { Value::from(asn.value(i)) } else { Value::Null },
                        "src_as_org": s("src_as_org"), "dest_asset": s("dest_asset"), "intel": j("intel"), "enrichment": j("enrichment"),
                        "score": score.value(i), "priority": s("priority"), "reasons": j("reasons"), "recommendations": j("recommendations"), "versions": versions,
                    }),
                ));
            }
        }
    }
    rows.sort_by_key(|r| r.0);
    assert_eq!(rows.len(), 3);
    let (a, b, c) = (&rows[0].1, &rows[1].1, &rows[2].1);
    // Alert 1: GB source, critical asset, DNS name, SNI and JA3 of its flow in three feeds.
    assert_eq!(a["src_country"], "GB");
    assert_eq!(a["dest_asset"], "db-primary");
    assert_eq!(a["enrichment"]["dest"]["asset"]["criticality"], "critical");
    assert_eq!(a["enrichment"]["src"]["geo"]["city"], "London");
    let fields: HashSet<&str> = a["intel"].as_array().unwrap().iter().map(|h| h["field"].as_str().unwrap()).collect();
    assert_eq!(fields, HashSet::from(["dns.rrname", "tls.sni", "tls.ja3"]), "{}", a["intel"]);
    let feeds: HashSet<&str> = a["intel"].as_array().unwrap().iter().map(|h| h["feed"].as_str().unwrap()).collect();
    assert_eq!(feeds, HashSet::from(["intel:misp", "intel:local"]));
    assert_eq!(a["score"], 95);
    assert_eq!(a["priority"], "critical");
    assert_eq!(a["reasons"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap()).collect::<Vec<_>>(), ["intel", "critical asset", "foreign"]);
    assert_eq!(a["reasons"][1]["reason"], "targets db-primary");
    assert_eq!(a["reasons"][2]["reason"], "from GB (AS0)");
    assert_eq!(a["recommendations"][0]["actions"][0], "block 81.2.69.142");
    assert_eq!(a["versions"].as_array().unwrap().len(), 6, "city, asn, three feeds, assets: {}", a["versions"]);
    assert!(a["versions"][0].as_str().unwrap().starts_with("geoip-city@"));
    // Alert 2: AS1221 source (Telstra), the STIX file hash.
    assert_eq!(b["src_asn"], 1221);
    assert_eq!(b["src_as_org"], "Telstra Pty Ltd");
    assert_eq!(b["intel"][0]["field"], "fileinfo.sha256");
    assert_eq!(b["intel"][0]["feed"], "intel:stix");
    assert_eq!(b["intel"][0]["confidence"], 95);
    assert_eq!((b["score"].as_i64(), b["priority"].as_str()), (Some(60), Some("medium")));
    // Alert 3: nothing known.
    assert_eq!((c["intel"].clone(), c["score"].as_i64(), c["priority"].as_str()), (Value::Null, Some(0), Some("info")));
    assert_eq!(c["enrichment"]["history"]["pair"]["first_time"], true);
}

#[test]
fn retro_hunt_scans_the_archive_for_indicators_a_feed_gained() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let mut cfg = common::test_config(&root);
    let input = common::data_dir().join("eve/eve-suricata-verify-8.0.6.ndjson");
    common::replay(&mut cfg, std::slice::from_ref(&input));

    // The feed had one indicator; its new version adds an HTTP host and a file hash.
    let feed = dir.path().join("feed.txt");
    write(&feed, b"google.com\n");
    let sha = "4d1c83f5254186d58ce235d0cecd1cc82ff9a3df9f3ed8361c6c173bc426ddd0";
    cfg.enrich.intel = vec![FeedConfig { name: "hunt".into(), path: feed.clone(), format: None, kind: None, confidence: 80, to_ids_only: true }];
    cfg.enrich.retro_hunt_days = 36_500;
    let (sources, _) = Sources::open(&cfg.enrich);
    write(&feed, format!("google.com\nwww.testmyids.com\n{sha}\n").as_bytes());
    let report = sources.reload(false);
    assert_eq!(report.added.len(), 1);
    let added: Vec<String> = report.added[0].2.iter().map(|i| i.value.to_string()).collect();
    assert_eq!(added, ["www.testmyids.com", sha], "only the new indicators are hunted");

    let hunt = alertflow::pipeline::hunt::RetroHunt::from_config(&cfg).unwrap();
    hunt.start(report).unwrap().join().unwrap();
    let text = std::fs::read_to_string(root.join("_state/retro-hunt.jsonl")).unwrap();
    // What the input holds, read independently.
    let mut want_http = 0;
    let mut want_files = 0;
    for l in std::fs::read_to_string(&input).unwrap().lines() {
        let Ok(e) = serde_json::from_str::<Value>(l) else { continue };
        if e["event_type"] == "http" && e["http"]["hostname"] == "www.testmyids.com" {
            want_http += 1;
        }
        if e["event_type"] == "fileinfo" && e["fileinfo"]["sha256"] == sha {
            want_files += 1;
        }
    }
    let (mut http, mut files) = (0, 0);
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["type"], "intel_alert");
        assert_eq!(v["origin"], "retro-hunt");
        for m in v["matches"].as_array().unwrap() {
            assert_ne!(m["indicator"], "google.com", "an old indicator is not hunted again");
            assert!(m["feed_version"].as_str().unwrap().starts_with("intel:hunt@"));
        }
        // The original event time, from the archived event.
        let ts: jiff::Timestamp = v["timestamp"].as_str().unwrap().parse().unwrap();
        let orig: jiff::Timestamp = v["event"]["timestamp"].as_str().unwrap().replace("+0000", "Z").parse().unwrap();
        assert_eq!(ts, orig);
        match v["matches"][0]["field"].as_str().unwrap() {
            "http.hostname" if v["event_type"] == "http" => http += 1,
            "fileinfo.sha256" => files += 1,
            _ => {}
        }
    }
    assert_eq!((http, files), (want_http, want_files), "every archived event with a new indicator, once");
    assert!(want_http >= 30 && want_files >= 5);
}

#[test]
fn indicators_in_traffic_without_alerts_become_intel_alert_lines_once_an_hour() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.txt");
    write(&feed, b"c2.evil.example\n198.51.100.66\n");
    let cfg = EnrichConfig {
        intel: vec![FeedConfig { name: "f".into(), path: feed, format: None, kind: None, confidence: 90, to_ids_only: true }],
        ..Default::default()
    };
    let (sources, _) = Sources::open(&cfg);
    let mut stage = AlertPath::new(&StateConfig::default(), Some(&EnrichRuntime { sources, config: cfg }), None);
    let t = |s: i64| jiff::Timestamp::from_second(1_795_000_000 + s).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.6f+0000").to_string();
    let dns = |s: i64, host: &str| {
        format!(
            r#"{{"timestamp":"{}","flow_id":{},"event_type":"dns","src_ip":"{host}","src_port":5353,"dest_ip":"10.0.0.53","dest_port":53,"proto":"UDP","dns":{{"type":"query","rrname":"www.c2.evil.example","rrtype":"A"}}}}"#,
            t(s),
            100 + s
        )
    };
    let flow = format!(
        r#"{{"timestamp":"{}","flow_id":7,"event_type":"flow","src_ip":"10.0.0.5","src_port":40000,"dest_ip":"198.51.100.66","dest_port":443,"proto":"TCP","flow":{{"pkts_toserver":3,"pkts_toclient":2,"bytes_toserver":300,"bytes_toclient":200,"state":"closed","reason":"timeout"}}}}"#,
        t(5)
    );
    let lines = [dns(0, "10.0.0.5"), dns(60, "10.0.0.5"), dns(120, "10.0.0.6"), flow, dns(4000, "10.0.0.5")];
    let mut parser = EveParser::new(ParseLimits::default());
    let mut b = EventBatchBuilder::with_capacity(lines.len(), 4096);
    for l in &lines {
        parser.parse(l.as_bytes(), |v| b.append(v, v.timestamp_us.unwrap_or(0), "test", l)).unwrap();
    }
    let out = stage.process(&b.finish(), 1_795_000_000_000_000);
    let sightings: Vec<Value> = out.lines.iter().map(|l| serde_json::from_str::<Value>(l).unwrap()).filter(|v| v["type"] == "intel_alert").collect();
    let got: Vec<(String, String, String)> = sightings
        .iter()
        .map(|v| {
            (
                v["src_ip"].as_str().unwrap().to_string(),
                v["matches"][0]["field"].as_str().unwrap().to_string(),
                v["timestamp"].as_str().unwrap()[11..19].to_string(),
            )
        })
        .collect();
    // The second query of 10.0.0.5 within the hour is a repeat; the one after the hour is new.
    let base = |s: i64| jiff::Timestamp::from_second(1_795_000_000 + s).unwrap().to_string()[11..19].to_string();
    assert_eq!(
        got,
        [
            ("10.0.0.5".to_string(), "dns.rrname".to_string(), base(0)),
            ("10.0.0.6".into(), "dns.rrname".into(), base(120)),
            ("10.0.0.5".into(), "dest_ip".into(), base(5)),
            ("10.0.0.5".into(), "dns.rrname".into(), base(4000)),
        ]
    );
    assert!(sightings.iter().all(|v| v["origin"] == "live" && v["matches"][0]["confidence"] == 90));
    assert_eq!(sightings[0]["matches"][0]["indicator"], "c2.evil.example");
}

#[test]
fn history_survives_a_restart_through_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    // Recent event times: history keeps the last week.
    let now = jiff::Timestamp::now().as_second() - 3600;
    let line = |s: i64, port: i64| {
        let t = jiff::Timestamp::from_second(now + s).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.6f+0000");
        format!(
            r#"{{"timestamp":"{t}","flow_id":{port},"event_type":"alert","src_ip":"192.0.2.1","src_port":{port},"dest_ip":"192.0.2.2","dest_port":80,"proto":"TCP","alert":{{"action":"allowed","gid":1,"signature_id":4242,"rev":1,"signature":"x","category":"Misc","severity":2}}}}"#
        )
    };
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    std::fs::write(&a, format!("{}\n{}\n", line(0, 1000), line(10, 1001))).unwrap();
    std::fs::write(&b, format!("{}\n", line(60, 1002))).unwrap();
    let mut cfg = common::test_config(&root);
    common::replay(&mut cfg, std::slice::from_ref(&a));
    // A new process: the state snapshot carries dedup, the archive carries history.
    let mut cfg = common::test_config(&root);
    common::replay(&mut cfg, std::slice::from_ref(&b));
    let mut found = None;
    for f in glob::glob(&format!("{}/alerts/**/*.parquet", root.display())).unwrap().flatten() {
        for batch in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap()).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let port = col::<arrow::array::Int32Array>(&batch, "src_port");
            let e = col::<StringArray>(&batch, "enrichment");
            for i in 0..batch.num_rows() {
                if port.value(i) == 1002 {
                    found = Some(serde_json::from_str::<Value>(e.value(i)).unwrap());
                }
            }
        }
    }
    let h = &found.expect("the second run's alert")["history"];
    assert_eq!(h["pair"]["first_time"], false, "{h}");
    assert_eq!(h["pair"]["last_24h"], 2, "{h}");
    assert_eq!(h["signature"]["last_7d"], 2, "{h}");
}

/// Archived lines with Suricata's `\xNN` escapes or lone surrogates are not JSON as they
/// are: the retro-hunt's lines carry them repaired, so every line it writes parses.
#[test]
fn retro_hunt_lines_are_json_when_the_archived_event_has_bad_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let mut cfg = common::test_config(&root);
    let input = dir.path().join("eve.json");
    let http = r#"{"timestamp":"2024-05-01T10:00:00.000001+0000","flow_id":9,"event_type":"http","src_ip":"10.0.0.5","src_port":40000,"dest_ip":"198.51.100.7","dest_port":80,"proto":"TCP","http":{"hostname":"evil.example","url":"/a\x01b","http_user_agent":"x\ud800"}}"#;
    write(&input, format!("{http}\n").as_bytes());
    let s = common::replay(&mut cfg, std::slice::from_ref(&input));
    assert_eq!((s.events, s.rejected.values().sum::<u64>()), (1, 0));
    let feed = dir.path().join("feed.txt");
    write(&feed, b"other.example\n");
    cfg.enrich.intel = vec![FeedConfig { name: "hunt".into(), path: feed.clone(), format: None, kind: None, confidence: 80, to_ids_only: true }];
    cfg.enrich.retro_hunt_days = 36_500;
    let (sources, _) = Sources::open(&cfg.enrich);
    write(&feed, b"other.example\nevil.example\n");
    let hunt = alertflow::pipeline::hunt::RetroHunt::from_config(&cfg).unwrap();
    hunt.start(sources.reload(false)).unwrap().join().unwrap();
    let text = std::fs::read_to_string(root.join("_state/retro-hunt.jsonl")).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["event"]["http"]["url"], "/a\u{1}b");
    assert_eq!(lines[0]["event"]["http"]["http_user_agent"], "x\u{FFFD}");
}
