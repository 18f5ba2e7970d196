//! Triage: which side of an alert is ours, what attack stage it is, how rare its signature
//! is, and what it adds to the risk of the internal host it is about (its *entity*).
//!
//! Per alert, in event time:
//! - **direction and entity**: home addresses are `home_nets` plus the asset inventory's;
//!   inbound alerts are about their destination, outbound about their source, internal ones
//!   about the victim (recon, exploit, delivery) or the actor (C2, lateral, exfiltration).
//! - **stage** from the rule's words, family and classtype ([`stage::StageMap`]).
//! - **rarity** from the signature's baseline: how many alerts (decayed with
//!   `baseline_half_life_secs`) and how many hosts. Chronic, site-wide signatures weigh
//!   little (`chronic`, with that reason shown); a signature new to the entity weighs more.
//! - **weight** = severity × stage × rarity × novelty × asset criticality × direction; the
//!   entity's **risk** is the sum of its weights decaying with `half_life_secs`.
//! - **behaviour** ([`behaviour`]): periodic contact from the entity to one peer (interval
//!   regularity), repeated attempts on one service, fan-out to many internal hosts, and
//!   outbound traffic after an inbound exploit.
//! - **entity incidents**: an incident opens when the risk reaches `incident_risk`, the
//!   entity shows attack stages in kill-chain order, or a behaviour is found; it holds the
//!   alerts that contributed (weight ≥ `member_weight`, or part of a behaviour), so chronic
//!   noise on the same host stays out; it closes after `close_idle_secs` of event time
//!   without a contribution.
//!
//! Every map is capped (`max_entities`, `max_signatures`, `max_pairs`); the least recently
//! seen entries go first, counted.

pub mod behaviour;
mod caps;
mod config;
pub mod stage;
mod story;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::event::delta::{write_json, Part, TrackedMap};
use crate::event::members::Members;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::alert::{AlertRecord, IncidentEvent, Status};
use crate::event::enriched::Asset;
use crate::event::triage::{Assessment, Behaviour, Direction, Stage};
use behaviour::{Attempts, Periodic};
pub use config::TriageConfig;
pub use stage::StageMap;
use story::change;

const S: i64 = 1_000_000;

/// What one side of an alert is, as enrichment knows it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SideFacts<'a> {
    pub asset: Option<&'a Asset>,
}

/// A signature's baseline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Signature {
    /// Alerts, decayed.
    n: f64,
    last_us: i64,
    /// Hashes of the entities it fired on (at most [`SIG_HOSTS`]).
    hosts: Vec<u64>,
    /// Hours of the day (UTC) it fired in since it was last quiet (bit per hour).
    #[serde(default)]
    hours: u32,
}

const SIG_HOSTS: usize = 64;
const ENTITY_SIGS: usize = 64;
const PENDING: usize = 64;
/// Open incidents per entity.
const MAX_OPEN: usize = 8;
/// Exploit targets remembered per source.
const SPRAY_KEEP: usize = 16;

/// One internal host's story. In snapshots, empty lists and absent values are left out
/// (most hosts of a storm have one signature and nothing else).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Entity {
    risk: f64,
    last_us: i64,
    /// Signatures seen on it (id, peer hash, alerts), most recent last.
    sigs: Vec<(i64, u64, u32)>,
    /// Alerts that contributed to its story since its last incident closed.
    members: u32,
    /// First time of each attack stage (within the chain window).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stage_first: Vec<(Stage, i64)>,
    /// The last inbound exploit: time and source.
    #[serde(skip_serializing_if = "Option::is_none")]
    exploit_in: Option<(i64, String)>,
    /// Internal destinations of its exploit/delivery/lateral alerts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fan: Vec<(String, i64)>,
    /// Behaviours found: kind, text, when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    behaviours: Vec<(String, String, i64, f64)>,
    /// Contributing alerts not in an incident: id, time, peer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pending: Vec<(String, i64, String)>,
    /// Open incidents: one per attacker of an inbound story; the host's own actions join
    /// the most advanced one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    incidents: Vec<Open>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asset: Option<String>,
}

/// An open entity incident.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Open {
    id: String,
    first_us: i64,
    last_us: i64,
    count: u64,
    /// Members since the last change.
    new_ids: Vec<String>,
    opened: bool,
    /// Signatures: id, name, alerts.
    sigs: Vec<(i64, String, u64)>,
    peers: Vec<String>,
    peak_points: u8,
    /// The latest kill-chain stage among its alerts.
    max_rank: u8,
}

/// Counts since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageCounts {
    pub alerts: u64,
    pub incidents_opened: u64,
    pub evicted_entities: u64,
    pub evicted_signatures: u64,
    pub evicted_pairs: u64,
}

/// An entity incident change with its story.
#[derive(Debug, Clone)]
pub struct TriageChange {
    pub event: IncidentEvent,
    pub context: serde_json::Value,
    /// The story in one line (the incident's first reason).
    pub story: String,
}

pub const RULE: &str = "entity risk";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Triage {
    #[serde(skip)]
    cfg: Arc<TriageConfig>,
    clock_us: i64,
    sigs: TrackedMap<i64, Signature>,
    entities: TrackedMap<String, Box<Entity>>,
    /// By `entity peer`.
    periodic: TrackedMap<String, Periodic>,
    /// By `entity peer port`.
    attempts: TrackedMap<String, Attempts>,
    /// Per external source: the (host, signature) pairs of its inbound exploit alerts.
    sprayers: TrackedMap<String, Vec<u64>>,
    /// Entities with an open incident.
    open: BTreeSet<String>,
    /// Entities whose incident changed in this batch.
    #[serde(skip)]
    touched: BTreeSet<String>,
    pub counts: TriageCounts,
    /// What each rule version seen (by sensor, gid, sid, rev) tells: its metadata, read
    /// from the first alert line of it, and the attack stage it names, worked out once.
    #[serde(skip)]
    rules: std::collections::HashMap<RuleVersion, RuleFacts, foldhash::fast::RandomState>,
    /// Where map keys are written before a lookup (one allocation, not one per alert).
    #[serde(skip)]
    scratch: String,
}

/// What a rule version tells of its alerts: the rule's metadata and the attack stage its
/// tactics, name or category name (with what decided it). A rule version has one
/// signature text, category and metadata, so these are the same for all its alerts.
#[derive(Debug, Clone)]
struct RuleFacts {
    meta: Option<Arc<stage::RuleMeta>>,
    stage: (Stage, &'static str),
}

/// A rule version on a sensor: hash of the sensor, gid, sid, rev.
type RuleVersion = (u64, i64, i64, i64);

/// The metadata in `raw` (the line of `a`, when given) and the stage it gives `a`.
fn read_rule_facts(cfg: &TriageConfig, a: &AlertRecord, raw: Option<&str>) -> RuleFacts {
    let meta = raw.and_then(stage::rule_meta).map(Arc::new);
    let stage = cfg.stages.stage_with(&a.signature, &a.category, meta.as_deref());
    RuleFacts { meta, stage }
}

/// Rule versions whose facts are kept (all are forgotten when more are seen).
const RULE_VERSIONS: usize = 16_384;

fn decay(v: f64, dt_us: i64, half_life_us: i64) -> f64 {
    if dt_us <= 0 || half_life_us <= 0 {
        return v;
    }
    v * (-(dt_us as f64) / half_life_us as f64 * std::f64::consts::LN_2).exp()
}

fn hash(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// 0–100 from a weight (half of the way at `scale`·ln 2).
fn points(x: f64, scale: f64) -> u8 {
    (100.0 * (1.0 - (-x.max(0.0) / scale).exp())).round().clamp(0.0, 100.0) as u8
}

fn secs(us: i64) -> String {
    let s = us / S;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Triage {
    pub fn new(cfg: &TriageConfig) -> Self {
        Self { cfg: Arc::new(cfg.clone()), ..Default::default() }
    }

    /// Restores a snapshot's state (the configuration stays this one's), or applies a
    /// delta of [`Triage::take_changes`] to the restored state.
    pub fn restore(&mut self, v: &Members) -> Result<(), serde_json::Error> {
        if v.flag("delta") {
            self.clock_us = v.get("clock_us")?;
            self.counts = v.get("counts")?;
            self.open = v.get("open")?;
            self.sigs.apply_changes(&v.members("sigs")?)?;
            self.entities.apply_changes(&v.members("entities")?)?;
            self.periodic.apply_changes(&v.members("periodic")?)?;
            self.attempts.apply_changes(&v.members("attempts")?)?;
            return self.sprayers.apply_changes(&v.members("sprayers")?);
        }
        let mut t: Triage = serde_json::from_str(v.text())?;
        t.cfg = std::mem::take(&mut self.cfg);
        *self = t;
        Ok(())
    }

    /// Tracks what changes from now on, for deltas (the whole state was just saved).
    pub fn track(&mut self) {
        self.sigs.track();
        self.entities.track();
        self.periodic.track();
        self.attempts.track();
        self.sprayers.track();
    }

    /// Copies up to `budget` entries of the snapshot capture under way (see
    /// `event::delta`); whether it is finished.
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        self.sigs.capture_step(budget)
            && self.entities.capture_step(budget)
            && self.periodic.capture_step(budget)
            && self.attempts.capture_step(budget)
            && self.sprayers.capture_step(budget)
    }

    /// What changed since the last snapshot (a delta: see `event::delta`; the open set and
    /// the counts whole), cut now, written by the returned part once the capture is
    /// finished ([`Triage::capture_step`]).
    pub fn take_changes(&mut self) -> Part {
        let (clock, counts, open) = (self.clock_us, self.counts, self.open.clone());
        let parts = [
            ("sigs", self.sigs.take_changes()),
            ("entities", self.entities.take_changes()),
            ("periodic", self.periodic.take_changes()),
            ("attempts", self.attempts.take_changes()),
            ("sprayers", self.sprayers.take_changes()),
        ];
        Box::new(move |w: &mut dyn std::io::Write| {
            write!(w, "{{\"delta\":true,\"clock_us\":{clock},\"counts\":")?;
            write_json(w, &counts)?;
            w.write_all(b",\"open\":")?;
            write_json(w, &open)?;
            for (name, part) in parts {
                write!(w, ",\"{name}\":")?;
                part(w)?;
            }
            w.write_all(b"}")
        })
    }

    pub fn entities(&self) -> usize {
        self.entities.len()
    }

    /// Entity incidents open now (announced, not closed). O(entities): ask now and then.
    pub fn open_incidents(&self) -> usize {
        self.entities.values().map(|e| e.incidents.iter().filter(|i| i.opened).count()).sum()
    }

    /// Assesses one alert and adds it to its entity's story.
    pub fn assess(&mut self, a: &AlertRecord, src: SideFacts, dest: SideFacts) -> Assessment {
        self.assess_raw(a, None, src, dest)
    }

    /// As [`Triage::assess`], reading the rule's ET metadata (MITRE tactic, signature
    /// severity, confidence) from the alert's raw EVE line when given.
    pub fn assess_raw(&mut self, a: &AlertRecord, raw: Option<&str>, src: SideFacts, dest: SideFacts) -> Assessment {
        let cfg = self.cfg.clone();
        let facts = match raw {
            Some(raw) => self.rule_facts(&cfg, a, raw),
            None => read_rule_facts(&cfg, a, None),
        };
        self.assess_with(&cfg, a, &facts, src, dest)
    }

    /// The rule facts of `a` with the metadata in `raw`, its line: a rule version (sensor,
    /// gid, sid, rev) carries the same metadata, signature and category on every alert, so
    /// they are read and staged once.
    fn rule_facts(&mut self, cfg: &TriageConfig, a: &AlertRecord, raw: &str) -> RuleFacts {
        let Some(rev) = a.rev else { return read_rule_facts(cfg, a, Some(raw)) };
        let key = (hash(&a.sensor), a.gid.unwrap_or(1), a.signature_id, rev);
        if let Some(f) = self.rules.get(&key) {
            return f.clone();
        }
        if self.rules.len() >= RULE_VERSIONS {
            self.rules.clear();
        }
        let f = read_rule_facts(cfg, a, Some(raw));
        self.rules.insert(key, f.clone());
        f
    }

    fn assess_with(&mut self, cfg: &TriageConfig, a: &AlertRecord, facts: &RuleFacts, src: SideFacts, dest: SideFacts) -> Assessment {
        self.counts.alerts += 1;
        let ts = a.ts_us;
        self.clock_us = self.clock_us.max(ts);
        let src_home = src.asset.is_some() || cfg.is_home(&a.src_ip);
        let dest_home = dest.asset.is_some() || cfg.is_home(&a.dest_ip);
        let (stage, stage_from) = facts.stage;
        let meta_w = facts.meta.as_deref().map_or(1.0, |m| m.severity_factor * m.confidence_factor);
        let direction = match (src_home, dest_home) {
            (false, true) => Direction::Inbound,
            (true, false) => Direction::Outbound,
            (true, true) => Direction::Internal,
            (false, false) => Direction::External,
        };
        // Internal exploitation, delivery, C2, lateral movement and exfiltration are about
        // the host doing it (it is spreading); recon and the rest about the one it hits.
        let actor_side = matches!(direction, Direction::Outbound)
            || (direction == Direction::Internal && matches!(stage, Stage::Exploit | Stage::Delivery | Stage::C2 | Stage::Lateral | Stage::Exfil));
        let (entity, peer, side) = if actor_side { (&a.src_ip, &a.dest_ip, src) } else { (&a.dest_ip, &a.src_ip, dest) };
        let crit = side.asset.map_or(0, Asset::criticality_level);

        // The signature's baseline before this alert.
        let eh = hash(entity);
        let sig = self.sigs.entry_or_default(a.signature_id);
        sig.n = decay(sig.n, ts - sig.last_us, cfg.baseline_half_life_us);
        if sig.n < 0.5 {
            // Quiet long enough to be forgotten: its hours start over.
            sig.hours = 0;
        }
        sig.last_us = sig.last_us.max(ts);
        let hosts = sig.hosts.len().max(1) as f64;
        let host_factor = 1.0 / (1.0 + hosts.ln());
        let volume_factor = 1.0 / (1.0 + (1.0 + sig.n / cfg.baseline_alerts).ln());
        // Around the clock is background: past `baseline_hours` distinct hours of the day
        // the weight falls (×0.5 at three times as many).
        let active_hours = sig.hours.count_ones() as f64;
        let hours_factor = if active_hours > cfg.baseline_hours as f64 { 1.0 / (1.0 + (active_hours / cfg.baseline_hours as f64).ln()) } else { 1.0 };
        let rarity = host_factor * volume_factor * hours_factor;
        sig.hours |= 1 << ((ts.div_euclid(3_600 * S)).rem_euclid(24) as u32);
        let (sig_alerts, sig_hosts, sig_hours) = (sig.n.round() as u64, sig.hosts.len() as u32, active_hours as u32);
        sig.n += 1.0;
        if sig.hosts.len() < SIG_HOSTS && !sig.hosts.contains(&eh) {
            sig.hosts.push(eh);
        }
        let chronic = rarity < 0.2;
        self.cap_signatures(cfg);

        let sev_w = cfg.severity_weights[(a.severity.clamp(1, 4) - 1) as usize];
        let dir_w = match (direction, stage) {
            (Direction::External, _) => 0.3,
            (Direction::Inbound, Stage::Recon) => 0.5,
            _ => 1.0,
        };
        // A source firing exploits at many hosts, or many exploits at one, is spraying: each
        // of its attempts weighs less than one precise shot. (Recon before an exploit does
        // not count against it.)
        let mut spread = 0usize;
        if direction == Direction::Inbound && stage == Stage::Exploit {
            self.scratch.clear();
            let _ = write!(self.scratch, "{entity}\0{}", a.signature_id);
            let shot = hash(&self.scratch);
            let v = self.sprayers.get_or_default(peer.as_str());
            spread = v.iter().filter(|h| **h != shot).count();
            if !v.contains(&shot) && v.len() < SPRAY_KEEP {
                v.push(shot);
            }
        }
        let spray_w = 1.0 / (1.0 + (1.0 + spread as f64).ln());
        let e = self.entities.get_or_default(entity.as_str());
        e.risk = decay(e.risk, ts - e.last_us, cfg.half_life_us);
        e.last_us = e.last_us.max(ts);
        if let Some(asset) = side.asset {
            e.asset.get_or_insert_with(|| format!("{} ({})", asset.name, asset.criticality.as_deref().unwrap_or("criticality unknown")));
        }
        // Repeats of one signature from one peer on one host are one piece of evidence, not
        // many: the k-th adds 1/k of its weight (the sum grows as ln k). The same signature from a new
        // peer is a new attacker: full weight.
        let ph = hash(peer);
        let k = match e.sigs.iter_mut().find(|(id, p, _)| *id == a.signature_id && *p == ph) {
            Some(x) => {
                x.2 = x.2.saturating_add(1);
                x.2
            }
            None => {
                if e.sigs.len() >= ENTITY_SIGS {
                    e.sigs.remove(0);
                }
                e.sigs.push((a.signature_id, ph, 1));
                1
            }
        };
        let new_to_entity = k == 1 && !e.sigs.iter().any(|(id, p, _)| *id == a.signature_id && *p != ph);
        let novelty = if k == 1 { 1.5 } else { 1.0 / k as f64 };

        // Behaviour around this alert (protocol anomalies are not behaviour).
        let mut found: Vec<Behaviour> = Vec::new();
        let mut part_of_behaviour = false;
        // Periodic contact: any alert but protocol anomalies and chronic, site-wide
        // signatures. Repeated attempts: alerts that name access attempts (scans, exploits,
        // policy rules on inbound logins), chronic or not: a burst from one source on one
        // service is what it is however common the rule is elsewhere.
        let behaves = stage != Stage::Noise && !chronic;
        let attempt = matches!(stage, Stage::Recon | Stage::Exploit | Stage::Policy);
        // Periodic contact is judged outbound only: inside the network hosts talk to their
        // servers on timers all day (Kerberos, monitoring, updates).
        if behaves && direction == Direction::Outbound {
            self.scratch.clear();
            let _ = write!(self.scratch, "{entity} {peer}");
            let p = self.periodic.get_or_default(self.scratch.as_str());
            if let Some((mean, cv, n)) = p.push(ts, cfg) {
                part_of_behaviour = true;
                found.push(Behaviour {
                    kind: "periodic",
                    strength: n as f64 / cfg.periodic_min as f64,
                    text: format!("contacts {peer} every ~{}s (dispersion {:.0}%) over {n} alerts", (mean / S as f64).round(), cv * 100.0),
                });
            }
        } else if attempt && !actor_side && direction != Direction::External {
            self.scratch.clear();
            let _ = write!(self.scratch, "{entity} {peer} {}", a.dest_port.unwrap_or(-1));
            let at = self.attempts.get_or_default(self.scratch.as_str());
            if let Some((n, span)) = at.push(ts, cfg) {
                part_of_behaviour = true;
                let port = a.dest_port.map(|p| format!(" on port {p}")).unwrap_or_default();
                found.push(Behaviour {
                    kind: "repeated_attempts",
                    strength: n as f64 / cfg.attempts as f64,
                    text: format!("{n} attempts from {peer}{port} in {}", secs(span)),
                });
            }
        }
        // Repeated attempts on one service are an attempt at initial access, whatever the
        // rules call each one; the alert weighs as that.
        let attempts = found.iter().any(|b| b.kind == "repeated_attempts");
        let story_stage = if attempts && (!stage.is_attack() || stage == Stage::Recon) { Stage::Exploit } else { stage };
        // A stage the inventory says this host is there for (admin hosts administer).
        let expected = side.asset.and_then(|a| {
            a.tags.iter().find(|t| cfg.expected_stages.iter().any(|(tag, st)| tag.eq_ignore_ascii_case(t) && st.contains(&story_stage))).map(|t| t.to_string())
        });
        let expected_w = if expected.is_some() { cfg.expected_factor } else { 1.0 };
        let weight = sev_w * cfg.stage_weights[story_stage as usize] * rarity * novelty * (1.0 + 0.5 * crit as f64) * dir_w * expected_w * spray_w * meta_w;
        let counts = weight >= cfg.member_weight && stage != Stage::Noise;
        let e = self.entities.get_mut(entity).expect("inserted above");
        if direction == Direction::Inbound && stage == Stage::Exploit && counts {
            e.exploit_in = Some((ts, peer.clone()));
        }
        if direction == Direction::Outbound && counts {
            if let Some((t0, from)) = &e.exploit_in {
                // A change after the exploit: a signature the host had not shown, or contact
                // with the exploit's source (a mail server mailing out as always is not).
                if ts >= *t0 && ts - *t0 <= cfg.compromise_window_us && (new_to_entity || from == peer) {
                    let same = if from == peer { " (the exploit's source)" } else { "" };
                    found.push(Behaviour {
                        kind: "exploit_then_outbound",
                        strength: 1.0,
                        text: format!("outbound {} to {peer}{same} {} after an inbound exploit from {from}", stage.as_str(), secs(ts - t0)),
                    });
                }
            }
        }
        if direction == Direction::Internal && counts && matches!(stage, Stage::Exploit | Stage::Delivery | Stage::Lateral) {
            let n = behaviour::fan_out(&mut self.entities, entity, peer, ts, cfg);
            if n >= cfg.fan_out {
                part_of_behaviour = true;
                found.push(Behaviour {
                    kind: "fan_out",
                    strength: n as f64 / cfg.fan_out as f64,
                    text: format!("reached {n} internal hosts with exploit, delivery or lateral alerts"),
                });
            }
        }

        let e = self.entities.get_mut(entity).expect("inserted above");
        let mut bonus = 0.0;
        for b in &found {
            match e.behaviours.iter_mut().find(|(k, _, _, _)| k == b.kind) {
                Some(x) => {
                    x.1 = b.text.clone();
                    x.2 = ts;
                    x.3 = x.3.max(b.strength);
                }
                None => {
                    bonus += cfg.behaviour_risk;
                    e.behaviours.push((b.kind.to_string(), b.text.clone(), ts, b.strength));
                }
            }
        }
        let member = counts || part_of_behaviour;
        e.risk += weight + bonus;
        e.stage_first.retain(|(_, t)| ts - *t <= cfg.chain_window_us);
        if member && story_stage.is_attack() && !e.stage_first.iter().any(|(s, _)| *s == story_stage) {
            e.stage_first.push((story_stage, ts));
            e.stage_first.sort_by_key(|(s, t)| (*t, *s));
        }
        let stages: Vec<Stage> = e.stage_first.iter().map(|(s, _)| *s).collect();
        let in_order = stages.windows(2).all(|w| w[0].rank() <= w[1].rank());
        let progression = stages.iter().filter(|s| **s != Stage::Recon).count();
        let chain = in_order && stages.len() >= 2 && progression >= 2;
        if member {
            e.members = e.members.saturating_add(1);
        }

        // Points: the alert alone, and (for an alert of a story of two or more) its host:
        // risk, stages in kill-chain order, behaviour, on one compressing scale.
        let alert_points = points(weight, 40.0);
        let mut entity_points = 0u8;
        let mut entity_why = String::new();
        if member && (e.members >= 2 || !e.incidents.is_empty()) {
            let mut evidence = e.risk;
            let _ = write!(entity_why, "{entity} risk {:.0}", e.risk);
            if let Some(asset) = &e.asset {
                let _ = write!(entity_why, "; asset {asset}");
            }
            if stages.len() >= 2 {
                if in_order {
                    evidence += 40.0 * (stages.len() - 1) as f64;
                }
                entity_why.push_str("; stages ");
                for (i, s) in stages.iter().enumerate() {
                    entity_why.push_str(if i > 0 { " → " } else { "" });
                    entity_why.push_str(s.as_str());
                }
                entity_why.push_str(if in_order { " in kill-chain order" } else { "" });
            }
            for (k, text, _, strength) in &e.behaviours {
                // Stronger the further past its threshold (×1 at it, ×2 at three times it).
                let base = if matches!(k.as_str(), "exploit_then_outbound" | "periodic") { 80.0 } else { 60.0 };
                evidence += base * (0.5 + 0.5 * (1.0 + strength.max(1.0)).log2());
                entity_why.push_str("; ");
                entity_why.push_str(text);
            }
            entity_points = points(evidence, 100.0);
        }

        // The entity's incident.
        let mut incident = None;
        let mut related = true;
        if member {
            // Which open story is this alert's: the host's own actions belong to its most
            // advanced story; an inbound alert to the story of its source.
            let at = if actor_side {
                (0..e.incidents.len()).max_by_key(|&i| (e.incidents[i].max_rank, e.incidents[i].last_us))
            } else {
                e.incidents.iter().position(|o| o.peers.contains(peer))
            };
            e.pending.retain(|(_, t, _)| ts - *t <= cfg.chain_window_us);
            let story_members = if actor_side { e.members as usize } else { 1 + e.pending.iter().filter(|(_, _, p)| p == peer).count() };
            // A story of two contributions or more, or one alert strong enough on its own
            // (what follows from the same source and the host's own actions then join it
            // instead of standing beside it).
            let opens = at.is_none()
                && e.incidents.len() < MAX_OPEN
                && ((story_members >= 2 && (e.risk >= cfg.incident_risk || chain || !e.behaviours.is_empty())) || weight >= cfg.incident_risk);
            let at = if opens {
                // From what the alert is, not where it was read: a replay of the same
                // events, or the same events followed live, derive the same id.
                let story = if actor_side { "" } else { peer.as_str() };
                let id = format!("{:016x}", hash(&format!("{RULE}\0{entity}\0{story}\0{ts}\0{}\0{}", a.signature_id, a.flow_id.unwrap_or(0))));
                let mine = |p: &String| actor_side || p == peer;
                let mut ids: Vec<String> = e.pending.iter().filter(|(_, _, p)| mine(p)).map(|(i, _, _)| i.clone()).collect();
                e.pending.retain(|(_, _, p)| !mine(p));
                ids.push(a.alert_id.clone());
                // A new inbound story beside the host's open ones is its source's alone: the
                // host's story does not lend it points.
                related = actor_side || e.incidents.is_empty();
                e.incidents.push(Open { id, first_us: ts, last_us: ts, count: 0, new_ids: ids, opened: false, ..Default::default() });
                self.counts.incidents_opened += 1;
                self.open.insert(entity.clone());
                Some(e.incidents.len() - 1)
            } else if let Some(i) = at {
                e.incidents[i].new_ids.push(a.alert_id.clone());
                // The host's story lends its points to its most advanced incident only; an
                // attacker's separate inbound story keeps its own.
                let main = (0..e.incidents.len()).max_by_key(|&j| (e.incidents[j].max_rank, e.incidents[j].last_us));
                related = e.incidents.len() == 1 || main == Some(i);
                Some(i)
            } else {
                if e.pending.len() >= PENDING {
                    e.pending.remove(0);
                }
                e.pending.push((a.alert_id.clone(), ts, peer.clone()));
                // Beside the host's open stories, an alert that is not theirs stands alone.
                related = e.incidents.is_empty();
                None
            };
            if let Some(o) = at.map(|i| &mut e.incidents[i]) {
                o.max_rank = o.max_rank.max(stage.rank());
                o.first_us = o.first_us.min(ts);
                o.last_us = o.last_us.max(ts);
                o.count = if o.opened { o.count + 1 } else { o.new_ids.len() as u64 };
                let full = o.sigs.len() >= 16;
                match o.sigs.iter_mut().find(|(id, _, _)| *id == a.signature_id) {
                    Some(x) => x.2 += 1,
                    None if !full => o.sigs.push((a.signature_id, a.signature.clone(), 1)),
                    None => {}
                }
                if o.peers.len() < 8 && !o.peers.contains(peer) {
                    o.peers.push(peer.clone());
                }
                o.peak_points = o.peak_points.max(entity_points).max(alert_points);
                incident = Some(o.id.clone());
                self.touched.insert(entity.clone());
            }
        }
        if !related || incident.is_none() || chronic {
            // Not in one of the host's stories (or chronic noise): the alert stands alone.
            entity_points = 0;
            entity_why.clear();
        }
        self.cap_entities(cfg);
        self.cap_pairs(cfg);

        let mut alert_why = vec![format!("{} {} (from {})", direction.as_str(), stage.as_str(), stage_from), format!("severity {}", a.severity)];
        if crit > 0 {
            alert_why.push(format!("{entity} criticality {crit}"));
        }
        if chronic {
            alert_why.push(format!("chronic: {sig_alerts} recent alerts on {sig_hosts} hosts in {sig_hours} hours of the day"));
        } else if sig_hosts == 0 {
            alert_why.push("signature new to the site".into());
        } else {
            alert_why.push(format!("rarity {:.0}% ({sig_alerts} recent alerts on {sig_hosts} hosts)", rarity * 100.0));
        }
        if new_to_entity {
            alert_why.push(format!("new to {entity}"));
        }
        if spread > 0 {
            alert_why.push(format!("{peer} fired {spread} other exploit(s) at our hosts"));
        }
        if let Some(tag) = &expected {
            alert_why.push(format!("{} expected of {tag} hosts", stage.as_str()));
        }
        Assessment {
            direction,
            entity: entity.clone(),
            peer: peer.clone(),
            stage,
            stage_from,
            rarity: (rarity * 100.0).round() as u8,
            chronic,
            signature_alerts: sig_alerts,
            signature_hosts: sig_hosts,
            new_to_entity,
            weight,
            risk: self.entities.get(entity).map_or(0.0, |e| e.risk),
            stages,
            behaviours: found,
            alert_points,
            entity_points,
            alert_why: alert_why.join("; "),
            entity_why,
            incident,
        }
    }

    /// Incident changes since the last call: opens and updates of the incidents alerts
    /// joined, closes of those idle for `close_idle_secs` of event time; `flush` closes
    /// every open one (end of a replay).
    pub fn changes(&mut self, flush: bool) -> Vec<TriageChange> {
        let cfg = self.cfg.clone();
        let mut out = Vec::new();
        for entity in std::mem::take(&mut self.touched) {
            let Some(e) = self.entities.get_mut(&entity) else { continue };
            for i in 0..e.incidents.len() {
                let o = &mut e.incidents[i];
                if o.new_ids.is_empty() {
                    continue;
                }
                let status = if o.opened { Status::Updated } else { Status::Open };
                o.opened = true;
                out.push(change(&entity, e, i, status));
            }
        }
        let clock = self.clock_us;
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|en| flush || self.entities.get(*en).is_none_or(|e| e.incidents.iter().any(|o| clock - o.last_us > cfg.close_idle_us)))
            .cloned()
            .collect();
        for entity in due {
            let Some(e) = self.entities.get_mut(&entity) else {
                self.open.remove(&entity);
                continue;
            };
            let mut i = 0;
            let mut main_closed = false;
            while i < e.incidents.len() {
                if flush || clock - e.incidents[i].last_us > cfg.close_idle_us {
                    let main = (0..e.incidents.len()).max_by_key(|&j| (e.incidents[j].max_rank, e.incidents[j].last_us));
                    main_closed |= main == Some(i);
                    out.push(change(&entity, e, i, Status::Closed));
                    e.incidents.remove(i);
                } else {
                    i += 1;
                }
            }
            if e.incidents.is_empty() {
                self.open.remove(&entity);
            }
            if main_closed || e.incidents.is_empty() {
                // The host's story is told: the next one needs new evidence.
                e.behaviours.clear();
                e.stage_first.clear();
                e.exploit_in = None;
                e.pending.clear();
                e.members = 0;
                e.risk = 0.0;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule metadata is read once per rule version and sensor; another rev, or the same
    /// rule from another sensor, is read from its own line.
    #[test]
    fn rule_metadata_read_once_per_rule_version() {
        let cfg = TriageConfig { stages: StageMap::with_tactics(Vec::new(), Vec::new(), Vec::new(), vec![("TA0011".into(), Stage::C2)]), ..Default::default() };
        let mut t = Triage::new(&cfg);
        let line = |tactic: &str| format!(r#"{{"alert":{{"signature":"Local 7","metadata":{{"mitre_tactic_id":["{tactic}"]}}}}}}"#);
        let alert = |sensor: &str, rev: Option<i64>, i: i64| AlertRecord {
            sensor: sensor.into(),
            signature_id: 7,
            signature: "Local 7".into(),
            rev,
            ts_us: 1_700_000_000_000_000 + i,
            src_ip: "203.0.113.9".into(),
            dest_ip: "10.0.0.5".into(),
            ..Default::default()
        };
        let none = || SideFacts { asset: None };
        let stage_of = |t: &mut Triage, a: &AlertRecord, raw: &str| t.assess_raw(a, Some(raw), none(), none()).stage;
        assert_eq!(stage_of(&mut t, &alert("s1", Some(1), 0), &line("TA0011")), Stage::C2);
        assert_eq!(t.rules.len(), 1);
        // The same version again: from the cache (its line's other tactic is not read).
        assert_eq!(stage_of(&mut t, &alert("s1", Some(1), 1), &line("TA9999")), Stage::C2);
        assert_eq!(t.rules.len(), 1);
        // Another rev, another sensor: their own lines.
        assert_eq!(stage_of(&mut t, &alert("s1", Some(2), 2), &line("TA9999")), Stage::Neutral);
        assert_eq!(stage_of(&mut t, &alert("s2", Some(1), 3), &line("TA9999")), Stage::Neutral);
        // No rev: read every time, never kept.
        assert_eq!(stage_of(&mut t, &alert("s3", None, 4), &line("TA0011")), Stage::C2);
        assert_eq!(stage_of(&mut t, &alert("s3", None, 5), &line("TA9999")), Stage::Neutral);
        assert_eq!(t.rules.len(), 3);
    }

    /// An entity's empty lists and absent values are left out of its snapshot text and
    /// come back empty; the text of earlier versions, with every member, still reads.
    #[test]
    fn entity_text_leaves_out_what_is_empty() {
        let bare = Entity { risk: 0.5, last_us: 7, sigs: vec![(2013028, 9, 1)], ..Default::default() };
        let text = serde_json::to_string(&bare).unwrap();
        assert_eq!(text, r#"{"risk":0.5,"last_us":7,"sigs":[[2013028,9,1]],"members":0}"#);
        let back: Entity = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
        let old = r#"{"risk":0.5,"last_us":7,"sigs":[[2013028,9,1]],"members":0,"stage_first":[],"exploit_in":null,"fan":[],"behaviours":[],"pending":[],"incidents":[],"asset":null}"#;
        assert_eq!(serde_json::to_string(&serde_json::from_str::<Entity>(old).unwrap()).unwrap(), text);
        let full = Entity {
            exploit_in: Some((5, "203.0.113.9".into())),
            fan: vec![("10.0.0.6".into(), 6)],
            pending: vec![("a1".into(), 6, "203.0.113.9".into())],
            incidents: vec![Open { id: "i1".into(), opened: true, ..Default::default() }],
            asset: Some("db-1".into()),
            ..bare
        };
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::to_string(&serde_json::from_str::<Entity>(&text).unwrap()).unwrap(), text);
        assert!(text.contains(r#""asset":"db-1""#) && text.contains(r#""incidents":[{"id":"i1""#), "{text}");
    }
}
