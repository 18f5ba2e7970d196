//! `[triage]`: home networks, the stage tables, weights, windows and caps.

use super::reader::{Cx, Tbl};
use crate::event::triage::Stage;
use crate::triage::{StageMap, TriageConfig};

const S: i64 = 1_000_000;

pub(super) fn read_triage(cx: &mut Cx, root: &Tbl) -> TriageConfig {
    let d = TriageConfig::default();
    let t = cx.section(root, "triage");
    cx.unknown_keys(
        &t,
        &[
            "enabled",
            "home_nets",
            "half_life_secs",
            "baseline_half_life_secs",
            "baseline_alerts",
            "baseline_hours",
            "incident_risk",
            "member_weight",
            "behaviour_risk",
            "close_idle_secs",
            "chain_window_secs",
            "periodic_min",
            "periodic_max_cv",
            "periodic_min_interval_secs",
            "attempts",
            "attempts_window_secs",
            "fan_out",
            "fan_out_window_secs",
            "compromise_window_secs",
            "max_entities",
            "max_signatures",
            "max_pairs",
            "severity_weights",
            "stage_weights",
            "stage_words",
            "stage_families",
            "stage_categories",
            "stage_tactics",
            "expected_stages",
            "expected_factor",
        ],
    );
    let secs = |cx: &mut Cx, key: &str, default: i64| cx.uint(&t, key, (default / S) as u64, 1, 86_400 * 30) as i64 * S;
    let mut home_nets = Vec::new();
    if t.has("home_nets") {
        for n in cx.string_list(&t, "home_nets").unwrap_or_default() {
            match crate::event::prefix::parse_cidr(&n) {
                Some(p) => home_nets.push(p),
                None => cx.error_at(&t, "home_nets", format!("`{n}` is not an address or network (10.0.0.0/8, fd00::/8)")),
            }
        }
    } else {
        home_nets = d.home_nets.clone();
    }
    let stage_list = Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let table = |cx: &mut Cx, key: &str| -> Vec<(String, Stage)> {
        let mut out = Vec::new();
        for (k, v, span) in cx.string_map(&t, key) {
            match Stage::from_name(&v) {
                Some(s) => out.push((k, s)),
                None => cx.error_span(format!("triage.{key}.{k}"), span, format!("`{v}` is not a stage; expected one of: {stage_list}")),
            }
        }
        out
    };
    let words = table(cx, "stage_words");
    let families = table(cx, "stage_families");
    let categories = table(cx, "stage_categories");
    let tactics = table(cx, "stage_tactics");

    let mut stage_weights = d.stage_weights;
    let sw = cx.section(&t, "stage_weights");
    for s in Stage::ALL {
        stage_weights[s as usize] = cx.number(&sw, s.as_str(), d.stage_weights[s as usize], 0.0, 1000.0);
    }
    cx.unknown_keys(&sw, &Stage::ALL.map(|s| s.as_str()));
    let mut severity_weights = d.severity_weights;
    let sv = cx.section(&t, "severity_weights");
    for (i, k) in ["1", "2", "3", "4"].iter().enumerate() {
        severity_weights[i] = cx.number(&sv, k, d.severity_weights[i], 0.0, 1000.0);
    }
    cx.unknown_keys(&sv, &["1", "2", "3", "4"]);

    let mut expected_stages = Vec::new();
    if t.has("expected_stages") {
        for (tag, stages, span) in cx.string_map(&t, "expected_stages") {
            let mut v = Vec::new();
            for name in stages.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                match Stage::from_name(name) {
                    Some(s) => v.push(s),
                    None => {
                        cx.error_span(format!("triage.expected_stages.{tag}"), span.clone(), format!("`{name}` is not a stage; expected one of: {stage_list}"))
                    }
                }
            }
            expected_stages.push((tag, v));
        }
    } else {
        expected_stages = d.expected_stages.clone();
    }

    TriageConfig {
        enabled: cx.boolean(&t, "enabled", d.enabled),
        home_nets,
        stages: StageMap::with_tactics(words, families, categories, tactics),
        stage_weights,
        severity_weights,
        half_life_us: secs(cx, "half_life_secs", d.half_life_us),
        baseline_half_life_us: secs(cx, "baseline_half_life_secs", d.baseline_half_life_us),
        baseline_alerts: cx.number(&t, "baseline_alerts", d.baseline_alerts, 1.0, 1e9),
        baseline_hours: cx.uint(&t, "baseline_hours", d.baseline_hours as u64, 1, 23) as u32,
        incident_risk: cx.number(&t, "incident_risk", d.incident_risk, 0.1, 1e9),
        member_weight: cx.number(&t, "member_weight", d.member_weight, 0.0, 1e9),
        behaviour_risk: cx.number(&t, "behaviour_risk", d.behaviour_risk, 0.0, 1e9),
        close_idle_us: secs(cx, "close_idle_secs", d.close_idle_us),
        chain_window_us: secs(cx, "chain_window_secs", d.chain_window_us),
        periodic_min: cx.uint(&t, "periodic_min", d.periodic_min as u64, 3, 16) as usize,
        periodic_max_cv: cx.number(&t, "periodic_max_cv", d.periodic_max_cv, 0.0, 1.0),
        periodic_min_interval_us: secs(cx, "periodic_min_interval_secs", d.periodic_min_interval_us),
        attempts: cx.uint(&t, "attempts", d.attempts as u64, 2, 100_000) as usize,
        attempts_window_us: secs(cx, "attempts_window_secs", d.attempts_window_us),
        fan_out: cx.uint(&t, "fan_out", d.fan_out as u64, 2, 64) as usize,
        fan_out_window_us: secs(cx, "fan_out_window_secs", d.fan_out_window_us),
        compromise_window_us: secs(cx, "compromise_window_secs", d.compromise_window_us),
        max_entities: cx.uint(&t, "max_entities", d.max_entities as u64, 10, 1 << 32) as usize,
        max_signatures: cx.uint(&t, "max_signatures", d.max_signatures as u64, 10, 1 << 32) as usize,
        max_pairs: cx.uint(&t, "max_pairs", d.max_pairs as u64, 10, 1 << 32) as usize,
        expected_stages,
        expected_factor: cx.number(&t, "expected_factor", d.expected_factor, 0.0, 1.0),
    }
}
