//! Triggers: which alert and incident lines call for which actions.
//!
//! An alert line (`type` `alert`) is event `alert`; an incident line is `incident_opened`,
//! `incident_updated` or `incident_closed` by its status, and also `incident_escalated`
//! when an update brings a priority the incident never had. A trigger fires on its events
//! when the priority is at least `min_priority`, the incident's rule is one of `rules`, and
//! `when` (CEL over `event`, the line) holds; the cool-down counts in event time, so a
//! replay decides as the live run did.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::{priority_rank, template, On, TriggerConfig};

/// One trigger, its condition compiled.
pub struct Trigger {
    pub cfg: TriggerConfig,
    when: Option<cel::Program>,
    /// Destination indexes.
    pub actions: Vec<usize>,
}

/// Compiles a `when` condition (for config checks too).
pub fn compile_when(text: &str) -> Result<cel::Program, String> {
    cel::Program::compile(text).map_err(|e| e.to_string())
}

/// A trigger's pick: one action for one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub trigger: usize,
    pub action: usize,
    pub on: On,
    /// Subject/event/trigger/action: the idempotency key.
    pub key: String,
    /// Event time of the line (µs).
    pub ts_us: i64,
    /// The trigger's cool-down slot (`None`: no cool-down).
    pub cooldown: Option<String>,
}

/// Incidents' highest priority seen (for escalation), bounded.
#[derive(Default)]
struct Seen {
    rank: HashMap<String, u8>,
    order: VecDeque<String>,
}

const SEEN_MAX: usize = 100_000;

impl Seen {
    /// Whether `rank` is above what `id` had; remembers it.
    fn raise(&mut self, id: &str, rank: u8) -> bool {
        match self.rank.get_mut(id) {
            Some(r) if *r >= rank => false,
            Some(r) => {
                *r = rank;
                true
            }
            None => {
                if self.order.len() >= SEEN_MAX {
                    if let Some(old) = self.order.pop_front() {
                        self.rank.remove(&old);
                    }
                }
                self.order.push_back(id.to_string());
                self.rank.insert(id.to_string(), rank);
                false
            }
        }
    }
}

pub struct Triggers {
    list: Vec<Trigger>,
    env: Arc<cel::Env>,
    seen: Seen,
    names: Vec<String>,
    /// Last firing (event time) per cool-down slot.
    last: HashMap<String, i64>,
    max_cooldown: i64,
    /// `when` evaluations that failed (they do not fire).
    pub errors: u64,
    pub cooled: u64,
}

fn event_time(v: &Value) -> i64 {
    v.get("last_seen")
        .or_else(|| v.get("timestamp"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_microsecond())
        .unwrap_or(0)
}

impl Triggers {
    /// `names`: the destinations, in order.
    pub fn new(cfgs: &[TriggerConfig], names: &[String]) -> Result<Triggers, String> {
        let mut list = Vec::new();
        for c in cfgs {
            let when = c.when.as_deref().map(compile_when).transpose().map_err(|e| format!("trigger {}: when: {e}", c.name))?;
            let actions = c
                .actions
                .iter()
                .map(|a| names.iter().position(|n| n == a).ok_or_else(|| format!("trigger {}: no destination `{a}`", c.name)))
                .collect::<Result<_, _>>()?;
            list.push(Trigger { cfg: c.clone(), when, actions });
        }
        let max_cooldown = cfgs.iter().map(|c| c.cooldown.as_micros() as i64).max().unwrap_or(0);
        Ok(Triggers {
            list,
            names: names.to_vec(),
            env: Arc::new(cel::Env::stdlib()),
            seen: Seen::default(),
            last: HashMap::new(),
            max_cooldown,
            errors: 0,
            cooled: 0,
        })
    }

    pub fn get(&self, i: usize) -> &Trigger {
        &self.list[i]
    }

    /// Remembers a firing read back from the journal (cool-downs survive a restart).
    pub fn fired(&mut self, slot: &str, ts_us: i64) {
        let e = self.last.entry(slot.to_string()).or_insert(ts_us);
        *e = (*e).max(ts_us);
    }

    /// The events a line is.
    fn events(&mut self, v: &Value) -> Vec<(On, String)> {
        match v.get("type").and_then(Value::as_str) {
            Some("alert") => v.get("alert_id").and_then(Value::as_str).map(|id| vec![(On::Alert, id.to_string())]).unwrap_or_default(),
            Some("incident") => {
                let Some(id) = v.get("incident_id").and_then(Value::as_str) else { return Vec::new() };
                let rank = v.get("priority").and_then(Value::as_str).and_then(priority_rank).unwrap_or(0);
                let status = v.get("status").and_then(Value::as_str).unwrap_or_default();
                let raised = self.seen.raise(id, rank);
                let mut out = Vec::new();
                match status {
                    "open" => out.push((On::IncidentOpened, id.to_string())),
                    "updated" | "corrected" => {
                        let n = v.get("alert_count").and_then(Value::as_u64).unwrap_or(0);
                        out.push((On::IncidentUpdated, format!("{id}@{n}")));
                        if raised {
                            out.push((On::IncidentEscalated, format!("{id}^{}", super::PRIORITIES[rank as usize])));
                        }
                    }
                    "closed" => {
                        out.push((On::IncidentClosed, id.to_string()));
                        self.seen.rank.remove(id);
                    }
                    _ => {}
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// What one line fires.
    pub fn pick(&mut self, v: &Value) -> Vec<Pick> {
        let events = self.events(v);
        if events.is_empty() {
            return Vec::new();
        }
        let rank = v.get("priority").and_then(Value::as_str).and_then(priority_rank).unwrap_or(0);
        let ts_us = event_time(v);
        let mut out = Vec::new();
        for (ti, t) in self.list.iter().enumerate() {
            for (on, subject) in &events {
                if !t.cfg.on.contains(on) || t.cfg.min_priority.is_some_and(|m| rank < m) {
                    continue;
                }
                if !t.cfg.rules.is_empty() && !v.get("rule").and_then(Value::as_str).is_some_and(|r| t.cfg.rules.iter().any(|x| x == r)) {
                    continue;
                }
                if let Some(p) = &t.when {
                    let mut ctx = cel::Context::with_env(self.env.clone());
                    if ctx.add_variable("event", v).is_err() {
                        self.errors += 1;
                        continue;
                    }
                    match p.execute(&ctx) {
                        Ok(cel::Value::Bool(true)) => {}
                        Ok(cel::Value::Bool(false)) => continue,
                        _ => {
                            self.errors += 1;
                            continue;
                        }
                    }
                }
                let cooldown = (!t.cfg.cooldown.is_zero()).then(|| {
                    let k = t
                        .cfg
                        .cooldown_key
                        .as_deref()
                        .map(|k| template::render(k, v))
                        .unwrap_or_else(|| subject.split(['@', '^']).next().unwrap_or_default().to_string());
                    format!("{}|{k}", t.cfg.name)
                });
                if let Some(slot) = &cooldown {
                    let within = self.last.get(slot).is_some_and(|&last| ts_us >= last && ts_us - last < t.cfg.cooldown.as_micros() as i64);
                    if within {
                        self.cooled += 1;
                        continue;
                    }
                    if self.last.len() >= SEEN_MAX {
                        // Slots whose cool-down has passed are no longer needed.
                        let horizon = ts_us - self.max_cooldown;
                        self.last.retain(|_, t| *t >= horizon);
                    }
                    self.last.insert(slot.clone(), ts_us);
                }
                for &a in &t.actions {
                    out.push(Pick {
                        trigger: ti,
                        action: a,
                        on: *on,
                        key: format!("{subject}/{}/{}/{}", on.as_str(), t.cfg.name, self.names[a]),
                        ts_us,
                        cooldown: cooldown.clone(),
                    });
                }
            }
        }
        out
    }
}
