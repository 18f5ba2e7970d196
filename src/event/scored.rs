//! What scoring decided for an alert: its score, priority, the rules that matched with
//! their reasons, and the recommended actions; the JSON texts of the `reasons` and
//! `recommendations` columns. Produced by `score`, read by the outputs and the tables.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::json::json_list;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Priority {
    /// By rank: 0 info … 4 critical (a Sigma `level`).
    pub fn from_rank(r: u8) -> Priority {
        [Priority::Info, Priority::Low, Priority::Medium, Priority::High, Priority::Critical][r.min(4) as usize]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Info => "info",
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

/// Lowest score of each priority.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub critical: f64,
    pub high: f64,
    pub medium: f64,
    pub low: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { critical: 90.0, high: 70.0, medium: 40.0, low: 20.0 }
    }
}

impl Thresholds {
    pub fn priority(&self, score: f64) -> Priority {
        if score >= self.critical {
            Priority::Critical
        } else if score >= self.high {
            Priority::High
        } else if score >= self.medium {
            Priority::Medium
        } else if score >= self.low {
            Priority::Low
        } else {
            Priority::Info
        }
    }
}

/// One matched rule of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: Arc<str>,
    pub score: f64,
    pub reason: String,
}

/// One recommendation with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub rule: Arc<str>,
    pub actions: Vec<String>,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scored {
    pub score: u8,
    pub priority: Option<Priority>,
    pub reasons: Vec<Reason>,
    pub recommendations: Vec<Recommendation>,
    /// Rules whose `when` failed for this alert (wrong type, missing function…).
    pub errors: u32,
}

impl Scored {
    pub fn priority_str(&self) -> &'static str {
        self.priority.unwrap_or(Priority::Info).as_str()
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// `[{"rule":…,"score":…,"reason":…}]`
pub fn reasons_json(rs: &[Reason]) -> String {
    json_list(rs, |o, r| {
        o.str("rule", &r.rule);
        o.raw("score", &num(r.score));
        o.str("reason", &r.reason);
    })
}

/// `[{"rule":…,"actions":[…],"evidence":…}]`
pub fn recommendations_json(rs: &[Recommendation]) -> String {
    json_list(rs, |o, r| {
        o.str("rule", &r.rule);
        o.strs("actions", &r.actions);
        o.str("evidence", &r.evidence);
    })
}
