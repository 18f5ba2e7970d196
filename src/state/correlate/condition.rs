//! When a correlation rule matches: what it measures over a group's window and the range
//! that measure must fall in (the Sigma `condition`: `gt`, `gte`, `lt`, `lte`, `eq`, `neq`,
//! combined with AND).

use super::super::KeyField;

/// A range of numbers: every bound given must hold.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// Lower bound and whether it is inclusive (`gte`).
    pub lo: Option<(f64, bool)>,
    /// Upper bound and whether it is inclusive (`lte`).
    pub hi: Option<(f64, bool)>,
    pub eq: Option<f64>,
    pub neq: Option<f64>,
}

impl Range {
    /// `>= n`.
    pub fn at_least(n: f64) -> Self {
        Range { lo: Some((n, true)), ..Default::default() }
    }

    pub fn contains(&self, x: f64) -> bool {
        self.lo.is_none_or(|(b, inc)| if inc { x >= b } else { x > b })
            && self.hi.is_none_or(|(b, inc)| if inc { x <= b } else { x < b })
            && self.eq.is_none_or(|b| x == b)
            && self.neq.is_none_or(|b| x != b)
    }

    /// Whether more events can take a growing measure out of the range again (an upper
    /// bound, `eq` or `neq`): such a rule can only be judged when its window is complete.
    pub fn bounded_above(&self) -> bool {
        self.hi.is_some() || self.eq.is_some() || self.neq.is_some()
    }

    /// Whether no number satisfies it (`gt: 10` with `lt: 5`).
    pub fn is_empty(&self) -> bool {
        let (lo, hi) = (self.lo.unwrap_or((f64::NEG_INFINITY, true)), self.hi.unwrap_or((f64::INFINITY, true)));
        lo.0 > hi.0 || (lo.0 == hi.0 && !(lo.1 && hi.1)) || self.eq.is_some_and(|e| !self.contains(e))
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some((b, inc)) = self.lo {
            parts.push(format!("{} {b}", if inc { ">=" } else { ">" }));
        }
        if let Some((b, inc)) = self.hi {
            parts.push(format!("{} {b}", if inc { "<=" } else { "<" }));
        }
        if let Some(b) = self.eq {
            parts.push(format!("= {b}"));
        }
        if let Some(b) = self.neq {
            parts.push(format!("!= {b}"));
        }
        write!(f, "{}", parts.join(" and "))
    }
}

/// What a rule measures over the alerts of a group's window.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// How many alerts (`event_count`).
    Events,
    /// How many distinct values of the fields together (`value_count`).
    Distinct(Vec<KeyField>),
    /// How many of the rule's selectors matched (`temporal`).
    Rules,
    /// How many of the rule's selectors matched in their order (`temporal_ordered`).
    OrderedRules,
    /// The sum of a numeric field (`value_sum`); alerts without it add nothing.
    Sum(KeyField),
    /// The mean of a numeric field over the alerts that have it (`value_avg`).
    Avg(KeyField),
    /// The share, in percent, of the window's alerts carrying the arriving alert's value
    /// of the field (`value_percentile`: `lte: 1` = a value seen in at most 1 % of them).
    Percentile(KeyField),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub measure: Measure,
    /// `None`: every selector (temporal rules without a condition), else at least one.
    pub range: Option<Range>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::event_count(1)
    }
}

impl Condition {
    /// The Sigma type name of the measure.
    pub fn type_name(&self) -> &'static str {
        match self.measure {
            Measure::Events => "event_count",
            Measure::Distinct(_) => "value_count",
            Measure::Rules => "temporal",
            Measure::OrderedRules => "temporal_ordered",
            Measure::Sum(_) => "value_sum",
            Measure::Avg(_) => "value_avg",
            Measure::Percentile(_) => "value_percentile",
        }
    }

    pub fn event_count(gte: usize) -> Self {
        Condition { measure: Measure::Events, range: Some(Range::at_least(gte as f64)) }
    }

    pub fn value_count(field: KeyField, gte: usize) -> Self {
        Condition { measure: Measure::Distinct(vec![field]), range: Some(Range::at_least(gte as f64)) }
    }

    /// Every selector, in any order.
    pub fn temporal() -> Self {
        Condition { measure: Measure::Rules, range: None }
    }

    /// Every selector, in their order.
    pub fn temporal_ordered() -> Self {
        Condition { measure: Measure::OrderedRules, range: None }
    }

    /// The range, with "every selector" spelt out for `selectors`.
    pub fn range_for(&self, selectors: usize) -> Range {
        self.range.unwrap_or(Range::at_least(selectors.max(1) as f64))
    }

    /// Whether the rule is judged once its window is complete rather than the moment an
    /// alert brings the measure into range: an average, and any range with an upper bound
    /// on a measure that grows with every alert.
    pub fn at_window_end(&self) -> bool {
        match self.measure {
            Measure::Avg(_) => true,
            Measure::Percentile(_) => false,
            _ => self.range.is_some_and(|r| r.bounded_above()),
        }
    }

    /// The field value an alert contributes (empty: none).
    pub fn value_of(&self, a: &super::AlertRecord) -> String {
        match &self.measure {
            Measure::Distinct(fields) => {
                let k = super::super::key_of(fields, a);
                // An alert without any of the fields has no value to count.
                if k.chars().all(|c| c == '|') {
                    String::new()
                } else {
                    k
                }
            }
            Measure::Sum(f) | Measure::Avg(f) => f.number(a).map(|x| x.to_string()).unwrap_or_default(),
            Measure::Percentile(f) => super::super::key_of(&[*f], a),
            _ => String::new(),
        }
    }
}

/// The most selectors matched in their order by `masks` (alerts in time order, bit `i`:
/// selector `i`): the longest chain of alerts with rising selector index.
pub fn longest_chain<'a>(masks: impl Iterator<Item = &'a u64>, selectors: usize) -> usize {
    let k = selectors.min(64);
    // best[r]: the longest chain ending with selector r so far.
    let mut best = [0usize; 64];
    for &m in masks {
        let before = best;
        let mut run = 0usize;
        for r in 0..k {
            if m >> r & 1 == 1 {
                best[r] = best[r].max(run + 1);
            }
            run = run.max(before[r]);
        }
    }
    best[..k].iter().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_every_bound() {
        let r = Range { lo: Some((100.0, false)), hi: Some((200.0, true)), ..Default::default() };
        assert!(!r.contains(100.0) && r.contains(101.0) && r.contains(200.0) && !r.contains(250.0));
        assert!(r.bounded_above() && !Range::at_least(3.0).bounded_above());
        assert!(Range { lo: Some((10.0, false)), hi: Some((5.0, false)), ..Default::default() }.is_empty());
        assert!(Range { lo: Some((5.0, false)), hi: Some((5.0, true)), ..Default::default() }.is_empty());
        assert!(!Range { neq: Some(3.0), ..Default::default() }.is_empty());
        assert_eq!(r.to_string(), "> 100 and <= 200");
    }

    #[test]
    fn longest_chain_counts_selectors_in_order() {
        // c, a, b → a then b: 2 of 3 in order.
        assert_eq!(longest_chain([0b100, 0b001, 0b010].iter(), 3), 2);
        assert_eq!(longest_chain([0b001, 0b010, 0b100].iter(), 3), 3);
        // One alert matching a and b counts once.
        assert_eq!(longest_chain([0b011].iter(), 2), 1);
        assert_eq!(longest_chain([].iter(), 2), 0);
    }
}
