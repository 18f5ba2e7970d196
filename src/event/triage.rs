//! What triage found about one alert: its direction, the internal host it is about, its
//! attack stage, how rare its signature is, what it added to its host's risk, and the
//! behaviour seen around it. Produced by the triage stage, read by scoring and the outputs.

use serde::{Deserialize, Serialize};

/// Which side of an alert is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From outside to a home address.
    Inbound,
    /// From a home address to outside.
    Outbound,
    /// Both sides home.
    Internal,
    /// Neither side home.
    #[default]
    External,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
            Direction::External => "external",
        }
    }
}

/// Attack stages in kill-chain order, then the stages that are not part of an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Recon,
    /// Initial access: exploitation, brute force.
    Exploit,
    /// Execution and delivery: a payload fetched or run.
    Delivery,
    /// Command and control.
    C2,
    /// Lateral movement.
    Lateral,
    /// Exfiltration.
    Exfil,
    /// Policy and hygiene: allowed but noteworthy use.
    Policy,
    /// Nothing known.
    #[default]
    Neutral,
    /// Protocol anomalies and decoder events.
    Noise,
}

impl Stage {
    pub const ALL: [Stage; 9] =
        [Stage::Recon, Stage::Exploit, Stage::Delivery, Stage::C2, Stage::Lateral, Stage::Exfil, Stage::Policy, Stage::Neutral, Stage::Noise];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Recon => "recon",
            Stage::Exploit => "exploit",
            Stage::Delivery => "delivery",
            Stage::C2 => "c2",
            Stage::Lateral => "lateral",
            Stage::Exfil => "exfil",
            Stage::Policy => "policy",
            Stage::Neutral => "neutral",
            Stage::Noise => "noise",
        }
    }

    pub fn from_name(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Part of an attack (recon to exfiltration).
    pub fn is_attack(self) -> bool {
        self <= Stage::Exfil
    }

    /// Kill-chain position (0 for stages outside it).
    pub fn rank(self) -> u8 {
        if self.is_attack() {
            self as u8 + 1
        } else {
            0
        }
    }
}

/// One behaviour found over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// `periodic`, `repeated_attempts`, `fan_out`, `exploit_then_outbound`.
    pub kind: &'static str,
    pub text: String,
    /// How far past its threshold (1: just found; 4: four times the attempts needed).
    pub strength: f64,
}

/// Triage's view of one alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub direction: Direction,
    /// The internal host the alert is about (the address when neither side is home).
    pub entity: String,
    /// The other side.
    pub peer: String,
    pub stage: Stage,
    /// What decided the stage: `metadata`, `words`, `name`, `category`, `default`.
    pub stage_from: &'static str,
    /// 0 (chronic, site-wide) … 100 (never seen).
    pub rarity: u8,
    pub chronic: bool,
    /// The signature's alerts (decayed) and hosts seen.
    pub signature_alerts: u64,
    pub signature_hosts: u32,
    pub new_to_entity: bool,
    /// What the alert adds to its entity's risk.
    pub weight: f64,
    /// The entity's risk after this alert.
    pub risk: f64,
    /// The entity's attack stages in the order first seen.
    pub stages: Vec<Stage>,
    pub behaviours: Vec<Behaviour>,
    /// 0–100 from this alert alone.
    pub alert_points: u8,
    /// 0–100 from its entity's story (risk, stages in order, behaviour); 0 when the alert
    /// is not part of that story.
    pub entity_points: u8,
    /// Why, in words.
    pub alert_why: String,
    pub entity_why: String,
    /// The entity incident the alert joined.
    pub incident: Option<String>,
}
