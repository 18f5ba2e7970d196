//! An incident's score from its alerts': the highest score, every rule that matched (its
//! highest score and first reason) and every recommendation (first evidence). Kept per
//! open incident and saved with the state snapshot, so an incident still open across a
//! restart keeps what its earlier alerts scored.

use serde::{Deserialize, Serialize};

use crate::event::alert::Status;
use crate::event::delta::TrackedMap;
use crate::event::scored::{Reason, Recommendation, Scored};

/// Reasons and recommendations kept per incident.
const MAX_INCIDENT_REASONS: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IncidentScore {
    pub score: u8,
    pub reasons: Vec<Reason>,
    pub recommendations: Vec<Recommendation>,
}

impl IncidentScore {
    pub fn add(&mut self, s: &Scored) {
        self.score = self.score.max(s.score);
        for r in &s.reasons {
            let full = self.reasons.len() >= MAX_INCIDENT_REASONS;
            match self.reasons.iter_mut().find(|x| x.rule == r.rule) {
                Some(x) => x.score = x.score.max(r.score),
                None if !full => self.reasons.push(r.clone()),
                None => {}
            }
        }
        for r in &s.recommendations {
            if self.recommendations.len() < MAX_INCIDENT_REASONS && !self.recommendations.iter().any(|x| x.rule == r.rule) {
                self.recommendations.push(r.clone());
            }
        }
    }
}

/// The scores of the open incidents, by incident id.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IncidentScores(TrackedMap<String, IncidentScore>);

impl IncidentScores {
    /// An alert that joined `incidents` scored `s`.
    pub fn add(&mut self, incidents: &[String], s: &Scored) {
        for id in incidents {
            self.0.entry_or_default(id.clone()).add(s);
        }
    }

    /// Puts `reason` first among the incident's reasons (replacing one of the same rule):
    /// the story of an entity incident.
    pub fn note(&mut self, id: &str, reason: Reason) {
        let x = self.0.entry_or_default(id.to_string());
        x.reasons.retain(|r| r.rule != reason.rule);
        x.reasons.insert(0, reason);
        x.reasons.truncate(MAX_INCIDENT_REASONS);
    }

    /// The incident's score at a change; a closed (or corrected) incident is forgotten.
    pub fn at_change(&mut self, id: &str, status: Status) -> Option<IncidentScore> {
        match status {
            Status::Closed | Status::Corrected => self.0.remove(id),
            Status::Open | Status::Updated => self.0.get(id).cloned(),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tracks what changes from now on, for deltas (see `event::delta`).
    pub fn track(&mut self) {
        self.0.track();
    }

    /// The scores changed since the last snapshot, copied out to be written later.
    pub fn take_changes(&mut self) -> crate::event::delta::Part {
        self.0.take_changes()
    }

    /// Copies up to `budget` entries of the snapshot capture under way (see
    /// `event::delta`); whether it is finished.
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        self.0.capture_step(budget)
    }

    pub fn apply_changes(&mut self, v: &crate::event::members::Members) -> Result<(), serde_json::Error> {
        self.0.apply_changes(v)
    }
}
