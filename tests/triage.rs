//! Triage, mechanism by mechanism, with the embedded default configuration: direction and
//! entity, stages, risk accrual and decay, kill-chain order, fan-out, outbound after an
//! exploit, chronic signatures, incident purity and a restored snapshot. Each mechanism has
//! its near miss: the case one step short of firing, which must not fire.

use crate::common;

use alertflow::config::Config;
use alertflow::event::alert::{AlertRecord, Status};
use alertflow::event::enriched::Asset;
use alertflow::event::triage::{Assessment, Direction, Stage};
use alertflow::triage::{SideFacts, Triage, TriageConfig};

const S: i64 = 1_000_000;
const T0: i64 = 1_700_000_000 * S;

fn cfg() -> TriageConfig {
    Config::embedded_default().triage
}

struct Alert<'a> {
    sig: i64,
    name: &'a str,
    category: &'a str,
    severity: i32,
    src: &'a str,
    dest: &'a str,
    port: i32,
}

const EXPLOIT: Alert = Alert {
    sig: 2034647,
    name: "ET EXPLOIT Apache log4j RCE Attempt (http ldap) (CVE-2021-44228)",
    category: "Attempted Administrator Privilege Gain",
    severity: 1,
    src: "203.0.113.7",
    dest: "10.1.2.3",
    port: 8080,
};

const BEACON: Alert = Alert {
    sig: 2036382,
    name: "ET HUNTING Possible Bot CnC Beacon (GET)",
    category: "Potentially Bad Traffic",
    severity: 2,
    src: "10.1.2.3",
    dest: "198.51.100.9",
    port: 80,
};

const SCAN: Alert = Alert {
    sig: 2001219,
    name: "ET SCAN Potential SSH Scan",
    category: "Attempted Information Leak",
    severity: 2,
    src: "203.0.113.7",
    dest: "10.1.2.3",
    port: 22,
};

const NOISE: Alert = Alert {
    sig: 2210045,
    name: "SURICATA STREAM Packet with invalid timestamp",
    category: "Generic Protocol Command Decode",
    severity: 3,
    src: "10.1.2.3",
    dest: "198.51.100.20",
    port: 443,
};

struct Run {
    t: Triage,
    n: u64,
}

impl Run {
    fn new(cfg: &TriageConfig) -> Self {
        Self { t: Triage::new(cfg), n: 0 }
    }

    fn at(&mut self, a: &Alert, ts: i64) -> Assessment {
        self.with(a, ts, None, None)
    }

    fn with(&mut self, a: &Alert, ts: i64, src: Option<&Asset>, dest: Option<&Asset>) -> Assessment {
        self.n += 1;
        let rec = AlertRecord {
            alert_id: format!("a{:05}", self.n),
            ts_us: ts,
            sensor: "s".into(),
            signature_id: a.sig,
            signature: a.name.into(),
            category: a.category.into(),
            severity: a.severity,
            src_ip: a.src.into(),
            src_port: Some(40000),
            dest_ip: a.dest.into(),
            dest_port: Some(a.port),
            proto: "TCP".into(),
            fields: None,
            flow_id: Some(self.n as i64),
            ..Default::default()
        };
        self.t.assess(&rec, SideFacts { asset: src }, SideFacts { asset: dest })
    }
}

fn asset(name: &str, criticality: &str, tags: &[&str]) -> Asset {
    Asset {
        network: "x".into(),
        name: name.into(),
        owner: None,
        criticality: Some(criticality.into()),
        tags: tags.iter().map(|t| Box::<str>::from(*t)).collect(),
    }
}

#[test]
fn direction_and_entity_from_home_nets_and_the_inventory() {
    let c = cfg();
    let mut r = Run::new(&c);
    let a = r.at(&EXPLOIT, T0);
    assert_eq!((a.direction, a.entity.as_str(), a.peer.as_str()), (Direction::Inbound, "10.1.2.3", "203.0.113.7"), "inbound: about the victim");
    let b = r.at(&BEACON, T0 + S);
    assert_eq!((b.direction, b.entity.as_str()), (Direction::Outbound, "10.1.2.3"), "outbound: about the internal source");
    // Internal: recon is about the host it hits, lateral movement about the host doing it.
    let internal_scan = Alert { src: "192.168.1.5", dest: "172.16.0.9", ..SCAN };
    let x = r.at(&internal_scan, T0 + 2 * S);
    assert_eq!((x.direction, x.entity.as_str()), (Direction::Internal, "172.16.0.9"));
    let lateral = Alert { sig: 9, name: "ET POLICY PsExec service created", category: "", severity: 2, src: "192.168.1.5", dest: "172.16.0.9", port: 445 };
    let y = r.at(&lateral, T0 + 3 * S);
    assert_eq!((y.direction, y.stage, y.entity.as_str()), (Direction::Internal, Stage::Lateral, "192.168.1.5"));
    // Near misses: 172.32.0.0 is outside 172.16.0.0/12 and 100.128.0.1 outside 100.64.0.0/10.
    let outside = Alert { src: "172.32.0.1", dest: "100.128.0.1", ..SCAN };
    let z = r.at(&outside, T0 + 4 * S);
    assert_eq!((z.direction, z.entity.as_str()), (Direction::External, "100.128.0.1"));
    // A public address the inventory knows is ours.
    let dmz = asset("web-1", "high", &["server"]);
    let w = r.with(&Alert { dest: "192.0.2.80", ..EXPLOIT }, T0 + 5 * S, None, Some(&dmz));
    assert_eq!((w.direction, w.entity.as_str()), (Direction::Inbound, "192.0.2.80"));
}

#[test]
fn stages_from_words_family_and_classtype() {
    let c = cfg();
    let mut r = Run::new(&c);
    assert_eq!(r.at(&EXPLOIT, T0).stage, Stage::Exploit);
    assert_eq!(r.at(&BEACON, T0).stage, Stage::C2, "CnC/Beacon in the name of an ET HUNTING rule");
    assert_eq!(r.at(&SCAN, T0).stage, Stage::Recon);
    assert_eq!(r.at(&NOISE, T0).stage, Stage::Noise);
    let trojan = Alert { name: "Local rule 1000001", category: "A Network Trojan was detected", ..BEACON };
    assert_eq!((r.at(&trojan, T0).stage, r.at(&trojan, T0).stage_from), (Stage::C2, "category"));
    let unknown = Alert { name: "Local rule 1000002", category: "", ..BEACON };
    assert_eq!(r.at(&unknown, T0).stage, Stage::Neutral, "nothing known: neutral");
}

#[test]
fn risk_accrues_per_alert_and_halves_each_half_life() {
    let c = cfg();
    let mut r = Run::new(&c);
    let a = r.at(&EXPLOIT, T0);
    assert!((a.risk - a.weight).abs() < 1e-9, "the first alert's weight is the risk");
    let other = Alert { sig: 2049150, name: "ET EXPLOIT SpringShell/Spring4Shell RCE Attempt (CVE-2022-22965)", ..EXPLOIT };
    let b = r.at(&other, T0 + c.half_life_us);
    assert!((b.risk - (a.weight / 2.0 + b.weight)).abs() < 1e-6, "one half-life later: {} vs {} / 2 + {}", b.risk, a.weight, b.weight);
    // The same signature from the same peer again adds 1/k of its weight (k-th time).
    let c2 = r.at(&other, T0 + c.half_life_us);
    assert!(c2.weight < b.weight / 1.5 + 1e-9, "a repeat weighs less: {} vs {}", c2.weight, b.weight);
    // A critical asset weighs more than an unknown host for the same alert.
    let mut r2 = Run::new(&c);
    let crit = asset("db-1", "critical", &["server"]);
    let on_db = r2.with(&EXPLOIT, T0, None, Some(&crit));
    assert!(on_db.weight > a.weight * 2.5, "criticality 4 triples the weight: {} vs {}", on_db.weight, a.weight);
}

#[test]
fn chronic_signatures_decay_new_ones_weigh_fully() {
    let c = cfg();
    let mut r = Run::new(&c);
    let mut last = Assessment::default();
    for i in 0..2000 {
        let host = format!("10.9.{}.{}", i % 40, 1 + i % 7);
        let a = Alert { dest: &host, src: "198.51.100.1", ..NOISE };
        last = r.at(&Alert { severity: 3, ..a }, T0 + i * S);
    }
    assert!(last.chronic && last.rarity < 10, "2,000 alerts on 40 hosts: chronic (rarity {})", last.rarity);
    assert!(last.alert_why.contains("chronic"), "{}", last.alert_why);
    let fresh = r.at(&EXPLOIT, T0 + 2001 * S);
    assert_eq!((fresh.rarity, fresh.chronic), (100, false));
    // Near miss: the same signature on one host only, a dozen times, is not chronic.
    let mut r2 = Run::new(&c);
    for i in 0..12 {
        last = r2.at(&NOISE, T0 + i * S);
    }
    assert!(!last.chronic, "rarity {}", last.rarity);
}

#[test]
fn a_signature_firing_around_the_clock_weighs_less_than_a_burst() {
    let c = cfg();
    // Once an hour for a day vs. the same count within one hour.
    let mut r = Run::new(&c);
    let daily = Alert { sig: 1, ..SCAN };
    let burst = Alert { sig: 2, ..SCAN };
    let mut last_daily = Assessment::default();
    for h in 0..25 {
        last_daily = r.at(&daily, T0 + h * 3600 * S);
    }
    let mut last_burst = Assessment::default();
    for i in 0..25 {
        last_burst = r.at(&burst, T0 + 25 * 3600 * S + i * 60 * S);
    }
    assert!((last_daily.rarity as f64) < last_burst.rarity as f64 * 0.6, "24 hours of the day: background ({} vs {})", last_daily.rarity, last_burst.rarity);
    // Near miss: eight hours of the day (baseline_hours) are not yet background.
    let mut r = Run::new(&c);
    let mut last = Assessment::default();
    for h in 0..9 {
        last = r.at(&daily, T0 + h * 3600 * S);
    }
    assert!(last.rarity >= 90, "rarity {}", last.rarity);
}

#[test]
fn stages_in_kill_chain_order_open_an_incident_reversed_they_do_not() {
    let c = cfg();
    let delivery = Alert {
        sig: 2018959,
        name: "ET POLICY PE EXE or DLL Windows file download HTTP",
        category: "Potential Corporate Privacy Violation",
        severity: 2,
        src: "198.51.100.9",
        dest: "10.1.2.3",
        port: 51000,
    };
    let c2 = Alert { severity: 3, ..BEACON };
    // delivery → C2, each too light alone to reach the risk threshold.
    let mut r = Run::new(&c);
    let d = r.at(&delivery, T0);
    assert!(d.incident.is_none() && d.weight < c.incident_risk);
    let b = r.at(&c2, T0 + 60 * S);
    assert_eq!(b.stages, vec![Stage::Delivery, Stage::C2]);
    assert!(b.incident.is_some(), "delivery then C2 in order: an incident");
    assert!(b.entity_why.contains("kill-chain order"), "{}", b.entity_why);
    let changes = r.t.changes(false);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].event.status, Status::Open);
    assert_eq!(changes[0].event.alert_ids, vec!["a00001".to_string(), "a00002".to_string()], "the incident holds the alerts that built it");
    // Near miss: the same two alerts in reverse order are not a progression.
    let mut r = Run::new(&c);
    let first = r.at(&c2, T0);
    let second = r.at(&delivery, T0 + 60 * S);
    assert_eq!(second.stages, vec![Stage::C2, Stage::Delivery]);
    assert!(first.incident.is_none() && second.incident.is_none(), "C2 before delivery: no chain");
}

#[test]
fn fan_out_to_five_internal_hosts_is_found_four_is_not() {
    let c = cfg();
    let mut r = Run::new(&c);
    let mut last = Assessment::default();
    for i in 0..4 {
        let dest = format!("10.1.9.{i}");
        let a = Alert { sig: 77, name: "ET EXPLOIT SMB remote code execution attempt", category: "", severity: 1, src: "10.1.2.3", dest: &dest, port: 445 };
        last = r.at(&a, T0 + i * 30 * S);
    }
    assert!(!last.behaviours.iter().any(|b| b.kind == "fan_out"), "four hosts: not yet");
    let a = Alert { sig: 77, name: "ET EXPLOIT SMB remote code execution attempt", category: "", severity: 1, src: "10.1.2.3", dest: "10.1.9.4", port: 445 };
    let fifth = r.at(&a, T0 + 150 * S);
    assert_eq!(fifth.entity, "10.1.2.3", "internal exploitation is about the host doing it");
    assert!(fifth.behaviours.iter().any(|b| b.kind == "fan_out"), "{:?}", fifth.behaviours);
}

#[test]
fn exploit_then_new_outbound_is_a_likely_compromise() {
    let c = cfg();
    let mut r = Run::new(&c);
    r.at(&EXPLOIT, T0);
    let out = r.at(&BEACON, T0 + 300 * S);
    let b = out.behaviours.iter().find(|b| b.kind == "exploit_then_outbound").expect("outbound five minutes after the exploit");
    assert!(b.text.contains("5m00s") && b.text.contains("203.0.113.7"), "{}", b.text);
    assert!(out.entity_points > out.alert_points, "the host's story raises the alert: {} vs {}", out.entity_points, out.alert_points);

    // Near misses: too late, or outbound the host always did.
    let mut late = Run::new(&c);
    late.at(&EXPLOIT, T0);
    let o = late.at(&BEACON, T0 + c.compromise_window_us + S);
    assert!(!o.behaviours.iter().any(|b| b.kind == "exploit_then_outbound"));
    let mut usual = Run::new(&c);
    usual.at(&BEACON, T0);
    usual.at(&EXPLOIT, T0 + 60 * S);
    let o = usual.at(&Alert { dest: "198.51.100.33", ..BEACON }, T0 + 120 * S);
    assert!(!o.behaviours.iter().any(|b| b.kind == "exploit_then_outbound"), "a signature the host showed before the exploit: {:?}", o.behaviours);
}

#[test]
fn an_incident_holds_its_story_not_the_hosts_noise() {
    let c = cfg();
    let mut r = Run::new(&c);
    let web = asset("web-1", "high", &["server"]);
    let e = r.with(&EXPLOIT, T0, None, Some(&web));
    let id = e.incident.clone().expect("a severity-1 exploit on a high-criticality server opens a story on its own");
    for i in 0..50 {
        let n = r.at(&NOISE, T0 + (i + 1) * S);
        assert_eq!(n.incident, None, "protocol noise on the same host stays out");
    }
    let b = r.at(&BEACON, T0 + 120 * S);
    assert_eq!(b.incident.as_deref(), Some(id.as_str()), "the host's own outbound joins its story");
    // Another source's unrelated attempt on the same host stands alone.
    let other = r.at(&Alert { src: "192.0.2.200", port: 22, ..SCAN }, T0 + 130 * S);
    assert_ne!(other.incident.as_deref(), Some(id.as_str()));
    let open = r.t.changes(false);
    assert_eq!(open[0].event.alert_ids.len(), 2, "{:?}", open[0].event.alert_ids);
    // Idle past close_idle_secs of event time: closed.
    r.at(&Alert { dest: "10.200.0.1", ..NOISE }, T0 + 130 * S + c.close_idle_us + S);
    let closed = r.t.changes(false);
    assert!(closed.iter().any(|x| x.event.id == id && x.event.status == Status::Closed), "{closed:?}");
}

#[test]
fn a_restored_snapshot_continues_exactly() {
    let c = cfg();
    let script: Vec<(&Alert, i64)> = vec![(&SCAN, 0), (&EXPLOIT, 60), (&NOISE, 61), (&BEACON, 400), (&BEACON, 460), (&BEACON, 520), (&BEACON, 580)];
    let mut whole = Run::new(&c);
    let all: Vec<Assessment> = script.iter().map(|(a, t)| whole.at(a, T0 + t * S)).collect();
    let mut first = Run::new(&c);
    for (a, t) in &script[..3] {
        first.at(a, T0 + t * S);
    }
    let snap = serde_json::to_string(&first.t).unwrap();
    let mut second = Run { t: Triage::new(&c), n: first.n };
    second.t.restore(&alertflow::event::members::Members::parse(&snap).unwrap()).unwrap();
    let rest: Vec<Assessment> = script[3..].iter().map(|(a, t)| second.at(a, T0 + t * S)).collect();
    assert_eq!(&all[3..], &rest[..], "the same assessments after a restore");
}

#[test]
fn default_config_names_no_signature_host_or_domain() {
    // The mapping is by words, families and classtypes; nothing in the default names a
    // signature id, an address or a domain from any data set.
    let text = alertflow::config::DEFAULT_TOML;
    let triage = &text[text.find("[triage]").unwrap()..text.find("# Priority scoring").unwrap()];
    assert!(!triage.contains("signature_id"), "no signature ids in [triage]");
    let digits = regex_lite_free_digits(triage);
    assert!(digits.iter().all(|d| d.len() <= 6), "no long numbers (signature ids) in [triage]: {digits:?}");
}

/// Runs of ASCII digits in `s`.
fn regex_lite_free_digits(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// The bundled demo site: 10,260 real events with five planted attacks.
fn site(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let text = String::from_utf8(zstd::decode_all(alertflow::demo::SITE_EVE_ZST).unwrap()).unwrap();
    let assets = dir.join("assets.csv");
    std::fs::write(&assets, alertflow::demo::SITE_ASSETS).unwrap();
    let cfg = dir.join("site.toml");
    std::fs::write(&cfg, format!("[metrics]\nlisten = \"\"\n[archive]\nidle_seal_ms = 100\n[enrich]\nassets = \"{}\"\n", assets.display())).unwrap();
    (cfg, text.lines().map(str::to_string).collect())
}

/// The process clock of these runs: an hour after the site's last event.
const SITE_CLOCK: &str = "1710075600";

/// Per alert (time, flow, signature): its incident and score; per entity incident: its
/// status, size and score.
type Outcome = (Vec<[String; 5]>, Vec<[String; 4]>);

fn outcome(archive: &std::path::Path) -> Outcome {
    let get = |r: &std::collections::BTreeMap<String, String>, c: &str| r.get(c).cloned().unwrap_or_default();
    let mut alerts: Vec<[String; 5]> = common::read_table(archive, "alerts")
        .iter()
        .map(|r| [get(r, "timestamp"), get(r, "flow_id"), get(r, "alert_signature_id"), get(r, "incident_id"), get(r, "score")])
        .collect();
    alerts.sort();
    let mut incidents: Vec<[String; 4]> = common::read_table(archive, "incidents")
        .iter()
        .filter(|r| get(r, "rule") == alertflow::triage::RULE && get(r, "status") != "closed")
        .map(|r| [get(r, "incident_id"), get(r, "status"), get(r, "alert_count"), get(r, "score")])
        .collect();
    incidents.sort();
    (alerts, incidents)
}

#[test]
fn replaying_twice_and_following_live_give_the_same_incident_ids_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, lines) = site(dir.path());
    let input = dir.path().join("eve.json");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let replay = |name: &str| {
        let archive = dir.path().join(name);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["replay", "--no-progress", "--config"])
            .arg(&cfg)
            .arg("--archive")
            .arg(&archive)
            .arg(&input)
            .env(alertflow::event::time::CLOCK_ENV, SITE_CLOCK)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        outcome(&archive)
    };
    let first = replay("a");
    let entity_incidents = first.1.iter().filter(|r| r[1] == "open").count();
    assert!(entity_incidents >= 4, "the site's attacks open entity incidents: {:?}", first.1);
    assert!(first.0.iter().filter(|r| !r[3].is_empty()).count() > 100, "alerts joined them");
    assert_eq!(first, replay("b"), "a second replay derives the same ids and scores");

    // Live: the file grows in chunks while `alertflow run` follows it.
    let live_input = dir.path().join("live.json");
    std::fs::write(&live_input, "").unwrap();
    let archive = dir.path().join("live");
    let child = common::Running::new(
        std::process::Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--archive")
            .arg(&archive)
            .arg("--input")
            .arg(&live_input)
            .env("ALERTFLOW_LOG", "error")
            .env(alertflow::event::time::CLOCK_ENV, SITE_CLOCK)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    for chunk in lines.chunks(2000) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&live_input).unwrap();
        f.write_all((chunk.join("\n") + "\n").as_bytes()).unwrap();
        drop(f);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while common::read_table(&archive, "alerts").len() < first.0.len() {
        assert!(std::time::Instant::now() < deadline, "live run stuck at {} alerts", common::read_table(&archive, "alerts").len());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.stop();
    let live = outcome(&archive);
    assert_eq!(live.0, first.0, "live and replay: the same incident and score for every alert");
    let opened = |o: &Outcome| o.1.iter().filter(|r| r[1] == "open").map(|r| r[0].clone()).collect::<Vec<_>>();
    assert_eq!(opened(&live), opened(&first), "live and replay open the same incidents");
}
