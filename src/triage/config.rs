//! What triage weighs and how long it remembers: `[triage]` of the configuration.

use std::net::IpAddr;

use super::stage::StageMap;
use crate::event::prefix::net_contains;
use crate::event::triage::Stage;

const S: i64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct TriageConfig {
    pub enabled: bool,
    /// Home networks (address, prefix length).
    pub home_nets: Vec<(IpAddr, u8)>,
    pub stages: StageMap,
    /// Weight of each stage, indexed by `Stage as usize`.
    pub stage_weights: [f64; 9],
    /// Weight of severity 1, 2, 3 and 4+.
    pub severity_weights: [f64; 4],
    pub half_life_us: i64,
    pub baseline_half_life_us: i64,
    /// Alerts of one signature at which its volume halves its weight.
    pub baseline_alerts: f64,
    /// Distinct hours of the day a signature may fire in before it counts as background.
    pub baseline_hours: u32,
    pub incident_risk: f64,
    pub member_weight: f64,
    /// Risk a behaviour adds when first found on an entity.
    pub behaviour_risk: f64,
    pub close_idle_us: i64,
    /// Attack stages count towards a progression within this window.
    pub chain_window_us: i64,
    pub periodic_min: usize,
    pub periodic_max_cv: f64,
    pub periodic_min_interval_us: i64,
    pub attempts: usize,
    pub attempts_window_us: i64,
    pub fan_out: usize,
    pub fan_out_window_us: i64,
    pub compromise_window_us: i64,
    pub max_entities: usize,
    pub max_signatures: usize,
    pub max_pairs: usize,
    /// Inventory tags whose hosts are expected to show these stages (`admin`: lateral).
    pub expected_stages: Vec<(String, Vec<Stage>)>,
    /// Weight of an expected stage.
    pub expected_factor: f64,
}

impl Default for TriageConfig {
    fn default() -> Self {
        let nets = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"];
        Self {
            enabled: true,
            home_nets: nets.iter().filter_map(|n| crate::event::prefix::parse_cidr(n)).collect(),
            stages: StageMap::default(),
            stage_weights: [1.0, 6.0, 4.0, 6.0, 5.0, 6.0, 0.5, 1.0, 0.1],
            severity_weights: [3.0, 2.0, 1.0, 0.5],
            half_life_us: 1800 * S,
            baseline_half_life_us: 6 * 3600 * S,
            baseline_alerts: 200.0,
            baseline_hours: 8,
            incident_risk: 50.0,
            member_weight: 4.0,
            behaviour_risk: 30.0,
            close_idle_us: 1800 * S,
            chain_window_us: 3 * 3600 * S,
            periodic_min: 6,
            periodic_max_cv: 0.25,
            periodic_min_interval_us: 5 * S,
            attempts: 20,
            attempts_window_us: 600 * S,
            fan_out: 5,
            fan_out_window_us: 1800 * S,
            compromise_window_us: 1800 * S,
            max_entities: 100_000,
            max_signatures: 50_000,
            max_pairs: 200_000,
            expected_stages: vec![("admin".into(), vec![Stage::Lateral])],
            expected_factor: 0.25,
        }
    }
}

impl TriageConfig {
    pub fn is_home(&self, ip: &str) -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else { return false };
        let ip = crate::event::prefix::canonical(ip);
        self.home_nets.iter().any(|(n, l)| net_contains(*n, *l, ip))
    }
}
