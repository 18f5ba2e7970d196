//! Behaviour over time: periodic contact (beaconing, slow exfiltration), repeated attempts
//! on one service (brute force) and fan-out to many internal hosts.

use std::collections::VecDeque;

use crate::event::delta::TrackedMap;

use serde::{Deserialize, Serialize};

use super::{Entity, TriageConfig};

/// Contacts closer than this are one contact (several alerts of one request).
const SAME_CONTACT_US: i64 = 1_000_000;
/// Contact times kept per pair.
const PERIODIC_KEEP: usize = 16;

/// Times one entity contacted one peer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Periodic {
    ts: Vec<i64>,
}

impl Periodic {
    pub fn last_us(&self) -> i64 {
        self.ts.last().copied().unwrap_or(0)
    }

    /// Adds a contact; `Some((median interval µs, dispersion, contacts))` when the last
    /// contacts are regular (see [`regularity`]): at least `periodic_min` of them, a median
    /// interval of at least `periodic_min_interval_secs` and a dispersion of at most
    /// `periodic_max_cv`. Count alone never makes a pair periodic.
    pub fn push(&mut self, ts: i64, cfg: &TriageConfig) -> Option<(f64, f64, usize)> {
        if self.ts.iter().any(|t| (t - ts).abs() < SAME_CONTACT_US) {
            return None;
        }
        let at = self.ts.partition_point(|t| *t < ts);
        // Most pairs are seen once: a list of one place, not a vector's first growth to four.
        self.ts.reserve_exact(usize::from(self.ts.is_empty()));
        self.ts.insert(at, ts);
        if self.ts.len() > PERIODIC_KEEP {
            self.ts.remove(0);
        }
        regularity(&self.ts, cfg)
    }
}

/// Typical interval, its dispersion and the count of sorted times, when regular.
///
/// The typical interval is the median and the dispersion the median absolute deviation
/// over the median: one missed or doubled contact (a beacon retried, a sleep skipped) does
/// not hide a beacon, and random intervals (a Poisson process has a dispersion near 0.6)
/// never look regular however many there are.
pub fn regularity(ts: &[i64], cfg: &TriageConfig) -> Option<(f64, f64, usize)> {
    if ts.len() < cfg.periodic_min.max(3) {
        return None;
    }
    let mut iv: Vec<f64> = ts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    iv.sort_by(f64::total_cmp);
    let median = iv[iv.len() / 2];
    if median < cfg.periodic_min_interval_us as f64 {
        return None;
    }
    let mut dev: Vec<f64> = iv.iter().map(|x| (x - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let dispersion = dev[dev.len() / 2] / median;
    (dispersion <= cfg.periodic_max_cv).then_some((median, dispersion, ts.len()))
}

/// Attempts from one peer on one service of an entity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Attempts {
    ts: VecDeque<i64>,
}

impl Attempts {
    pub fn last_us(&self) -> i64 {
        self.ts.back().copied().unwrap_or(0)
    }

    /// Adds an attempt; `Some((attempts, span µs))` when at least `attempts` fall inside
    /// `attempts_window_secs`.
    pub fn push(&mut self, ts: i64, cfg: &TriageConfig) -> Option<(usize, i64)> {
        let newest = self.last_us().max(ts);
        while self.ts.front().is_some_and(|t| newest - *t > cfg.attempts_window_us) {
            self.ts.pop_front();
        }
        if newest - ts <= cfg.attempts_window_us {
            self.ts.reserve_exact(usize::from(self.ts.is_empty()));
            self.ts.push_back(ts);
        }
        if self.ts.len() > cfg.attempts.max(1) * 8 {
            self.ts.pop_front();
        }
        let first = self.ts.iter().min().copied().unwrap_or(ts);
        (self.ts.len() >= cfg.attempts.max(1)).then(|| (self.ts.len(), newest - first))
    }
}

/// Records that `src` reached internal host `dest` with an exploit, delivery or lateral
/// alert; returns how many distinct hosts it reached inside `fan_out_window_secs`.
pub(super) fn fan_out(entities: &mut TrackedMap<String, Box<Entity>>, src: &str, dest: &str, ts: i64, cfg: &TriageConfig) -> usize {
    let Some(e) = entities.get_mut(src) else { return 0 };
    e.fan.retain(|(_, t)| ts - *t <= cfg.fan_out_window_us);
    let full = e.fan.len() >= 64;
    match e.fan.iter_mut().find(|(d, _)| d == dest) {
        Some(x) => x.1 = x.1.max(ts),
        None if !full => e.fan.push((dest.to_string(), ts)),
        None => {}
    }
    e.fan.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    /// A deterministic pseudo-random sequence in [0, 1).
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn run(times: &[i64]) -> Option<(f64, f64, usize)> {
        let cfg = TriageConfig::default();
        let mut p = Periodic::default();
        let mut last = None;
        for t in times {
            last = p.push(*t, &cfg);
        }
        last
    }

    #[test]
    fn regular_and_jittered_intervals_are_periodic_random_ones_are_not() {
        let regular: Vec<i64> = (0..10).map(|i| i * 60 * S).collect();
        let (mean, cv, n) = run(&regular).expect("regular");
        assert_eq!((mean / S as f64).round(), 60.0);
        assert!(cv < 0.01 && n == 10);

        let mut seed = 7;
        let mut t = 0;
        let jittered: Vec<i64> = (0..12)
            .map(|_| {
                t += (78.0 * (0.8 + 0.4 * lcg(&mut seed)) * S as f64) as i64;
                t
            })
            .collect();
        let (_, cv, _) = run(&jittered).expect("±20 % jitter is still a beacon");
        assert!(cv > 0.03, "the jitter shows: {cv}");

        // Exponential intervals (a Poisson process): same count, same mean, not periodic.
        let mut t = 0;
        let random: Vec<i64> = (0..16)
            .map(|_| {
                t += (-(1.0 - lcg(&mut seed)).ln() * 78.0 * S as f64) as i64 + 2 * S;
                t
            })
            .collect();
        assert_eq!(run(&random), None);
    }

    #[test]
    fn near_misses_too_few_too_fast_or_one_contact() {
        // Five regular contacts: below periodic_min (6).
        assert_eq!(run(&(0..5).map(|i| i * 60 * S).collect::<Vec<_>>()), None);
        // Regular but every 2 s: a busy session, not a beacon.
        assert_eq!(run(&(0..20).map(|i| i * 2 * S).collect::<Vec<_>>()), None);
        // Several alerts of one request count once.
        let dup: Vec<i64> = (0..5).flat_map(|i| [i * 60 * S, i * 60 * S + 200_000]).collect();
        assert_eq!(run(&dup), None);
        // One doubled contact (23 s after another) in a regular series keeps it regular.
        let mut doubled: Vec<i64> = (0..12).map(|i| i * 100 * S).collect();
        doubled.push(5 * 100 * S + 23 * S);
        doubled.sort();
        assert!(run(&doubled).is_some(), "one outlier does not hide a beacon");
        // Out-of-order arrival is sorted before measuring.
        let mut shuffled: Vec<i64> = (0..8).map(|i| i * 30 * S).collect();
        shuffled.swap(2, 3);
        assert!(run(&shuffled).is_some());
    }

    #[test]
    fn attempts_need_the_count_inside_the_window() {
        let cfg = TriageConfig::default();
        let mut a = Attempts::default();
        let mut hit = None;
        for i in 0..19 {
            hit = a.push(i * 5 * S, &cfg);
        }
        assert_eq!(hit, None, "19 attempts: one short");
        assert_eq!(a.push(19 * 5 * S, &cfg), Some((20, 95 * S)));
        // The same twenty spread over an hour are not a burst.
        let mut slow = Attempts::default();
        let r: Vec<_> = (0..20).map(|i| slow.push(i * 180 * S, &cfg)).collect();
        assert!(r.iter().all(Option::is_none));
    }
}
