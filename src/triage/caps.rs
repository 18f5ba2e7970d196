//! Every triage map is capped: over its cap, the least recently seen entries go (down to
//! 90 % of the cap, so eviction is amortized), counted.

use std::collections::BTreeSet;

use super::behaviour::{Attempts, Periodic};
use super::{Triage, TriageConfig};
use crate::event::delta::TrackedMap;

impl Triage {
    pub(super) fn cap_entities(&mut self, cfg: &TriageConfig) {
        if self.entities.len() <= cfg.max_entities {
            return;
        }
        // Least recently seen first; entities with an open incident stay.
        let n = self.entities.len() - cfg.max_entities + cfg.max_entities / 10;
        let gone = oldest_except(self.entities.iter().map(|(k, e)| (e.last_us, k)), n, &self.open);
        for k in gone {
            self.entities.remove(&k);
            self.counts.evicted_entities += 1;
        }
    }

    pub(super) fn cap_signatures(&mut self, cfg: &TriageConfig) {
        self.counts.evicted_signatures += evict_oldest(&mut self.sigs, cfg.max_signatures, |s| s.last_us);
    }

    pub(super) fn cap_pairs(&mut self, cfg: &TriageConfig) {
        self.counts.evicted_pairs += evict_oldest(&mut self.periodic, cfg.max_pairs, Periodic::last_us);
        self.counts.evicted_pairs += evict_oldest(&mut self.attempts, cfg.max_pairs, Attempts::last_us);
        if self.sprayers.len() > cfg.max_pairs {
            // No time kept per source: the map is cleared (counted) when full.
            self.counts.evicted_pairs += self.sprayers.len() as u64;
            self.sprayers.clear();
        }
    }
}

/// Over `cap`, the least recently seen entries go (down to 90 % of the cap, so eviction
/// is amortized); returns how many.
fn evict_oldest<K: std::hash::Hash + Ord + Clone, V>(map: &mut TrackedMap<K, V>, cap: usize, last_us: impl Fn(&V) -> i64) -> u64 {
    if map.len() <= cap {
        return 0;
    }
    let n = map.len() - cap + cap / 10;
    let gone = oldest(map.iter().map(|(k, x)| (last_us(x), k)), n);
    for k in &gone {
        map.remove(k);
    }
    gone.len() as u64
}

/// The keys of the (up to) `n` least recently seen of `items` (`(last seen, key)`; ties
/// by key, so the same ones whatever the map's order). A linear selection: only the
/// keys that go are cloned.
fn oldest<'a, K: Ord + Clone + 'a>(items: impl Iterator<Item = (i64, &'a K)>, n: usize) -> Vec<K> {
    oldest_refs(items, n).into_iter().map(|(_, k)| k.clone()).collect()
}

/// [`oldest`] without cloning the keys.
fn oldest_refs<'a, K: Ord + 'a>(items: impl Iterator<Item = (i64, &'a K)>, n: usize) -> Vec<(i64, &'a K)> {
    let mut v: Vec<(i64, &K)> = items.collect();
    if n < v.len() {
        v.select_nth_unstable(n);
        v.truncate(n);
    }
    v
}

/// [`oldest`] of the items `kept` does not hold. Those are among the `n + kept.len()`
/// oldest of all, so only these few are looked up in `kept`, not every item.
fn oldest_except<'a, K: Ord + Clone + 'a>(items: impl Iterator<Item = (i64, &'a K)>, n: usize, kept: &BTreeSet<K>) -> Vec<K> {
    let mut candidates = oldest_refs(items, n.saturating_add(kept.len()));
    candidates.retain(|(_, k)| !kept.contains(*k));
    oldest(candidates.into_iter(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entity cap: the oldest entities without an open incident go, the same ones as
    /// filtering every entity first.
    #[test]
    fn oldest_except_skips_the_kept_and_takes_the_next() {
        let mut next = crate::event::rng::xorshift(0x2545_f491_4f6c_dd1du64);
        for len in [0usize, 1, 5, 40, 300] {
            for _ in 0..20 {
                let items: Vec<(i64, String)> = (0..len).map(|i| (next(50) as i64, format!("k{i}"))).collect();
                let kept: BTreeSet<String> = items.iter().filter(|_| next(3) == 0).map(|(_, k)| k.clone()).chain(["absent".to_string()]).collect();
                let n = next(len as u64 + 3) as usize;
                let mut want: Vec<(i64, String)> = items.iter().filter(|(_, k)| !kept.contains(k)).cloned().collect();
                want.sort();
                let want: BTreeSet<String> = want.into_iter().take(n).map(|(_, k)| k).collect();
                let got: BTreeSet<String> = oldest_except(items.iter().map(|(t, k)| (*t, k)), n, &kept).into_iter().collect();
                assert_eq!(got, want, "len {len}, n {n}");
            }
        }
    }

    #[test]
    fn oldest_are_the_first_of_the_sorted_order() {
        let keys: Vec<String> = (0..200).map(|i| format!("k{:03}", (i * 37) % 200)).collect();
        let items: Vec<(i64, &String)> = keys.iter().enumerate().map(|(i, k)| ((i % 13) as i64, k)).collect();
        let mut sorted = items.clone();
        sorted.sort();
        for n in [0, 1, 13, 150, 199, 200, 500] {
            let mut got = super::oldest(items.iter().copied(), n);
            got.sort_by_key(|k| sorted.iter().position(|(_, s)| *s == k));
            let want: Vec<String> = sorted.iter().take(n).map(|(_, k)| (*k).clone()).collect();
            assert_eq!(got, want, "n = {n}");
        }
    }
}
