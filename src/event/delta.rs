//! Maps that know what changed since the last snapshot, so a snapshot can hold only the
//! changes (a delta) instead of every entry.
//!
//! State is saved with every commit. Written whole, a snapshot costs time in proportion to
//! everything held (a million dedup keys, every entity), on the thread that makes the
//! decisions, while a commit's changes are a small part of it. [`TrackedMap`] and
//! [`TrackedLru`] wrap the maps the state lives in and remember the keys changed since the
//! last snapshot; `write_changes` writes those (their current value, or that they are
//! gone) and starts over. A restore is the last full snapshot with the deltas after it
//! applied in order.
//!
//! Tracking starts with [`TrackedMap::track`] (after a full snapshot): a map that is never
//! snapshotted never holds a key list.
//!
//! Delta of a map: `{"clear":bool,"set":[[key,value],…],"del":[key,…]}`. Delta of an LRU
//! cache: `{"clear":bool,"del":[key,…],"upd":[entry,…],"put":[entry,…]}`: `upd` are
//! entries changed in place (their recency unchanged), `put` the entries moved to the
//! front since the last snapshot, least recent first, so applying them in order rebuilds
//! the exact eviction order. (Every key moved to the front since the last snapshot is more
//! recent than every key that was not, so they are the front of the cache.)

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::io::{self, Write};
use std::num::NonZeroUsize;

use foldhash::fast::RandomState;
use lru::LruCache;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Writes `[a,b,…]`, each item by `one`.
pub fn write_list<T>(w: &mut dyn Write, items: impl IntoIterator<Item = T>, mut one: impl FnMut(&mut dyn Write, T) -> io::Result<()>) -> io::Result<()> {
    w.write_all(b"[")?;
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        one(w, x)?;
    }
    w.write_all(b"]")
}

/// Writes `x` as JSON.
pub fn write_json(w: &mut dyn Write, x: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(w, x).map_err(io::Error::other)
}

/// A part of a snapshot taken out of the state (owned copies of what changed), written
/// later, on another thread: the state goes on deciding meanwhile.
pub type Part = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// A snapshot being assembled: text written now and [`Part`]s written later, in order.
#[derive(Default)]
pub struct Deferred {
    pieces: Vec<Piece>,
}

enum Piece {
    Text(Vec<u8>),
    Part(Part),
}

impl Deferred {
    /// One piece of text (e.g. a whole snapshot serialized at once).
    pub fn from_text(text: Vec<u8>) -> Self {
        Self { pieces: vec![Piece::Text(text)] }
    }

    pub fn text(&mut self, t: &[u8]) {
        match self.pieces.last_mut() {
            Some(Piece::Text(b)) => b.extend_from_slice(t),
            _ => self.pieces.push(Piece::Text(t.to_vec())),
        }
    }

    pub fn part(&mut self, p: Part) {
        self.pieces.push(Piece::Part(p));
    }

    /// Writes every piece in order.
    pub fn write(self, w: &mut dyn Write) -> io::Result<()> {
        for p in self.pieces {
            match p {
                Piece::Text(t) => w.write_all(&t)?,
                Piece::Part(p) => p(w)?,
            }
        }
        Ok(())
    }
}

/// A `HashMap` that remembers the keys changed since the last snapshot.
#[derive(Debug)]
pub struct TrackedMap<K, V> {
    map: HashMap<K, V, RandomState>,
    changed: HashSet<K, RandomState>,
    tracking: Tracking,
}

/// Whether a map tracks its changes, and whether it was emptied since the last snapshot.
#[derive(Debug, Default, Clone, Copy)]
struct Tracking {
    on: bool,
    cleared: bool,
}

impl Tracking {
    /// The map was emptied; returns whether its list of changed keys is to go too.
    fn clear(&mut self) -> bool {
        self.cleared |= self.on;
        self.on
    }

    fn start(&mut self) {
        *self = Tracking { on: true, cleared: false };
    }
}

impl<K, V> Default for TrackedMap<K, V> {
    fn default() -> Self {
        Self { map: HashMap::default(), changed: HashSet::default(), tracking: Tracking::default() }
    }
}

impl<K: Clone, V: Clone> Clone for TrackedMap<K, V> {
    /// The entries (a copy does not track).
    fn clone(&self) -> Self {
        Self { map: self.map.clone(), ..Default::default() }
    }
}

impl<K: Hash + Eq, V: PartialEq> PartialEq for TrackedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

/// Whole, as the map it wraps (the form of a full snapshot).
impl<K: Serialize + Hash + Eq, V: Serialize> Serialize for TrackedMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>> Deserialize<'de> for TrackedMap<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map: HashMap<K, V> = HashMap::deserialize(d)?;
        Ok(Self { map: map.into_iter().collect(), ..Default::default() })
    }
}

impl<K: Hash + Eq + Clone, V> TrackedMap<K, V> {
    fn mark<Q>(&mut self, k: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.tracking.on && !self.changed.contains(k) {
            if let Some((key, _)) = self.map.get_key_value(k) {
                let key = key.clone();
                self.changed.insert(key);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(k)
    }

    pub fn contains_key<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(k)
    }

    pub fn iter(&self) -> std::collections::hash_map::Iter<'_, K, V> {
        self.map.iter()
    }

    pub fn values(&self) -> std::collections::hash_map::Values<'_, K, V> {
        self.map.values()
    }

    /// The value of `k`, changed (so marked).
    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.mark(k);
        self.map.get_mut(k)
    }

    /// The value of `k` (a default one inserted if absent), changed.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        if self.tracking.on && !self.changed.contains(&k) {
            self.changed.insert(k.clone());
        }
        self.map.entry(k).or_default()
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if self.tracking.on && !self.changed.contains(&k) {
            self.changed.insert(k.clone());
        }
        self.map.insert(k, v)
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.mark(k);
        self.map.remove(k)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        if self.tracking.clear() {
            self.changed.clear();
        }
    }

    /// Tracks changes from now on (call once its whole content is saved).
    pub fn track(&mut self) {
        self.tracking.start();
        self.changed.clear();
    }

    /// Writes the changes since the last snapshot (see the module) and starts over.
    pub fn write_changes(&mut self, w: &mut dyn Write) -> io::Result<()>
    where
        K: Serialize + Send + 'static,
        V: Serialize + Clone + Send + 'static,
    {
        self.take_changes()(w)
    }

    /// The changes since the last snapshot, copied out to be written later (see
    /// [`Part`]); starts over.
    pub fn take_changes(&mut self) -> Part
    where
        K: Serialize + Send + 'static,
        V: Serialize + Clone + Send + 'static,
    {
        let changed = std::mem::take(&mut self.changed);
        let clear = std::mem::take(&mut self.tracking.cleared);
        let set: Vec<(K, V)> = changed.iter().filter_map(|k| self.map.get_key_value(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let del: Vec<K> = changed.into_iter().filter(|k| !self.map.contains_key(k)).collect();
        Box::new(move |w: &mut dyn Write| {
            write!(w, "{{\"clear\":{clear},\"set\":")?;
            write_list(w, &set, |w, e| write_json(w, e))?;
            w.write_all(b",\"del\":")?;
            write_list(w, &del, |w, k| write_json(w, k))?;
            w.write_all(b"}")
        })
    }

    /// Applies a delta written by [`TrackedMap::write_changes`].
    pub fn apply_changes(&mut self, v: &serde_json::Value) -> Result<(), serde_json::Error>
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        if v["clear"].as_bool() == Some(true) {
            self.map.clear();
        }
        let del: Vec<K> = serde_json::from_value(v["del"].clone())?;
        for k in del {
            self.map.remove(&k);
        }
        let set: Vec<(K, V)> = serde_json::from_value(v["set"].clone())?;
        self.map.extend(set);
        Ok(())
    }
}

/// An LRU cache that remembers the keys changed since the last snapshot: moved to the
/// front (`true`: put or used), changed in place or removed (`false`).
pub struct TrackedLru<K: Hash + Eq, V> {
    cache: LruCache<K, V, RandomState>,
    changed: HashMap<K, bool, RandomState>,
    tracking: Tracking,
}

/// What a delta of a [`TrackedLru`] holds, parsed.
pub struct LruChanges<K, V> {
    pub clear: bool,
    pub del: Vec<K>,
    pub upd: Vec<(K, V)>,
    pub put: Vec<(K, V)>,
}

impl<K: Hash + Eq + Clone, V> TrackedLru<K, V> {
    pub fn unbounded() -> Self {
        Self { cache: LruCache::unbounded_with_hasher(RandomState::default()), changed: HashMap::default(), tracking: Tracking::default() }
    }

    pub fn new(cap: NonZeroUsize) -> Self {
        Self { cache: LruCache::with_hasher(cap, RandomState::default()), changed: HashMap::default(), tracking: Tracking::default() }
    }

    fn moved(&mut self, k: &K) {
        if self.tracking.on {
            match self.changed.get_mut(k) {
                Some(m) => *m = true,
                None => {
                    self.changed.insert(k.clone(), true);
                }
            }
        }
    }

    fn touched(&mut self, k: &K) {
        if self.tracking.on && !self.changed.contains_key(k) {
            self.changed.insert(k.clone(), false);
        }
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn contains(&self, k: &K) -> bool {
        self.cache.contains(k)
    }

    pub fn peek(&self, k: &K) -> Option<&V> {
        self.cache.peek(k)
    }

    pub fn peek_lru(&self) -> Option<(&K, &V)> {
        self.cache.peek_lru()
    }

    /// Most recent first.
    pub fn iter(&self) -> lru::Iter<'_, K, V> {
        self.cache.iter()
    }

    /// The value of `k`, moved to the front.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        if self.cache.contains(k) {
            self.moved(k);
        }
        self.cache.get_mut(k)
    }

    /// The value of `k` where it is (its recency unchanged).
    pub fn peek_mut(&mut self, k: &K) -> Option<&mut V> {
        if self.cache.contains(k) {
            self.touched(k);
        }
        self.cache.peek_mut(k)
    }

    /// Puts `k` at the front (a bounded cache that is full drops its least recent key).
    pub fn put(&mut self, k: K, v: V) {
        self.moved(&k);
        if let Some((old, _)) = self.cache.push(k, v) {
            if !self.cache.contains(&old) {
                self.touched(&old);
            }
        }
    }

    pub fn pop(&mut self, k: &K) -> Option<V> {
        let v = self.cache.pop(k);
        if v.is_some() {
            self.touched(k);
        }
        v
    }

    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        let x = self.cache.pop_lru();
        if let Some((k, _)) = &x {
            self.touched(k);
        }
        x
    }

    pub fn clear(&mut self) {
        self.cache.clear();
        if self.tracking.clear() {
            self.changed.clear();
        }
    }

    /// Tracks changes from now on (call once its whole content is saved).
    pub fn track(&mut self) {
        self.tracking.start();
        self.changed.clear();
    }

    /// Writes the changes since the last snapshot (see the module) and starts over; `key`
    /// writes a removed key, `entry` an entry.
    pub fn write_changes(
        &mut self,
        w: &mut dyn Write,
        key: impl Fn(&mut dyn Write, &K) -> io::Result<()>,
        entry: impl Fn(&mut dyn Write, &K, &V) -> io::Result<()>,
    ) -> io::Result<()>
    where
        V: Clone,
    {
        self.take_changes().write(w, key, entry)
    }

    /// The changes since the last snapshot, copied out (written with
    /// [`LruChanges::write`]); starts over.
    pub fn take_changes(&mut self) -> LruChanges<K, V>
    where
        V: Clone,
    {
        let changed = std::mem::take(&mut self.changed);
        // The keys moved to the front are the front: walk it until all of them are met.
        let mut left = changed.iter().filter(|(k, moved)| **moved && self.cache.contains(k)).count();
        let mut front = Vec::with_capacity(left);
        for (k, v) in self.cache.iter() {
            if left == 0 {
                break;
            }
            if changed.get(k) == Some(&true) {
                left -= 1;
            }
            front.push((k, v));
        }
        let in_front: HashSet<&K> = front.iter().map(|(k, _)| *k).collect();
        let upd = changed.keys().filter(|k| !in_front.contains(k)).filter_map(|k| self.cache.peek(k).map(|v| (k.clone(), v.clone()))).collect();
        let put = front.into_iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
        let del = changed.into_keys().filter(|k| !self.cache.contains(k)).collect();
        LruChanges { clear: std::mem::take(&mut self.tracking.cleared), del, upd, put }
    }

    /// Applies a parsed delta (see [`TrackedLru::write_changes`]); `then` sees every entry
    /// put or updated (e.g. to schedule its timer).
    pub fn apply_changes(&mut self, c: LruChanges<K, V>, mut then: impl FnMut(&K, &mut V)) {
        if c.clear {
            self.cache.clear();
        }
        for k in c.del {
            self.cache.pop(&k);
        }
        for (k, v) in c.upd {
            match self.cache.peek_mut(&k) {
                Some(slot) => {
                    *slot = v;
                    then(&k, slot);
                }
                None => {
                    self.cache.push(k.clone(), v);
                    if let Some(slot) = self.cache.peek_mut(&k) {
                        then(&k, slot);
                    }
                }
            }
        }
        for (k, v) in c.put {
            self.cache.push(k.clone(), v);
            if let Some(slot) = self.cache.peek_mut(&k) {
                then(&k, slot);
            }
        }
    }

    /// Every entry, mutable, in no particular order (restores; not tracked).
    pub fn iter_mut_untracked(&mut self) -> lru::IterMut<'_, K, V> {
        self.cache.iter_mut()
    }
}

impl<K, V> LruChanges<K, V> {
    /// Writes the delta (see the module): `key` writes a removed key, `entry` an entry.
    pub fn write(
        &self,
        w: &mut dyn Write,
        key: impl Fn(&mut dyn Write, &K) -> io::Result<()>,
        entry: impl Fn(&mut dyn Write, &K, &V) -> io::Result<()>,
    ) -> io::Result<()> {
        write!(w, "{{\"clear\":{},\"del\":", self.clear)?;
        write_list(w, &self.del, |w, k| key(w, k))?;
        w.write_all(b",\"upd\":")?;
        write_list(w, &self.upd, |w, (k, v)| entry(w, k, v))?;
        w.write_all(b",\"put\":")?;
        write_list(w, &self.put, |w, (k, v)| entry(w, k, v))?;
        w.write_all(b"}")
    }
}

impl<K: Hash + Eq + Clone + DeserializeOwned, V: DeserializeOwned> LruChanges<K, V> {
    /// A delta whose keys and entries are plain JSON (`key`, `[key, value]`).
    pub fn parse(v: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Ok(Self {
            clear: v["clear"].as_bool() == Some(true),
            del: serde_json::from_value(v["del"].clone())?,
            upd: serde_json::from_value(v["upd"].clone())?,
            put: serde_json::from_value(v["put"].clone())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta_of<V: Serialize + Clone>(m: &mut TrackedLru<String, V>) -> serde_json::Value {
        let mut out = Vec::new();
        m.write_changes(&mut out, |w, k| write_json(w, k), |w, k, v| write_json(w, &(k, v))).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    fn order(m: &TrackedLru<String, u32>) -> Vec<(String, u32)> {
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Random operations between snapshots: the full state with every delta applied equals
    /// the live cache, entries and order.
    #[test]
    fn lru_deltas_rebuild_entries_and_order() {
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for bounded in [false, true] {
            let mk = || if bounded { TrackedLru::new(NonZeroUsize::new(40).unwrap()) } else { TrackedLru::unbounded() };
            let mut live: TrackedLru<String, u32> = mk();
            for i in 0..30 {
                live.put(format!("k{i}"), i);
            }
            let mut copy: TrackedLru<String, u32> = mk();
            for (k, v) in order(&live).into_iter().rev() {
                copy.put(k, v);
            }
            live.track();
            for _round in 0..50 {
                for _ in 0..next(30) {
                    let k = format!("k{}", next(80));
                    match next(6) {
                        0 | 1 => live.put(k, next(1000) as u32),
                        2 => {
                            if let Some(v) = live.get_mut(&k) {
                                *v += 1;
                            }
                        }
                        3 => {
                            if let Some(v) = live.peek_mut(&k) {
                                *v += 7;
                            }
                        }
                        4 => {
                            live.pop(&k);
                        }
                        _ => {
                            live.pop_lru();
                        }
                    }
                }
                let d = delta_of(&mut live);
                copy.apply_changes(LruChanges::parse(&d).unwrap(), |_, _| {});
                assert_eq!(order(&copy), order(&live), "bounded {bounded}");
            }
        }
    }

    #[test]
    fn map_deltas_rebuild_entries() {
        let mut live: TrackedMap<String, u32> = TrackedMap::default();
        live.insert("a".into(), 1);
        live.insert("b".into(), 2);
        let mut copy: TrackedMap<String, u32> = serde_json::from_str(&serde_json::to_string(&live).unwrap()).unwrap();
        live.track();
        *live.entry_or_default("c".into()) += 3;
        *live.get_mut("a").unwrap() += 10;
        live.remove("b");
        live.remove("zz");
        let mut out = Vec::new();
        live.write_changes(&mut out).unwrap();
        copy.apply_changes(&serde_json::from_slice(&out).unwrap()).unwrap();
        assert_eq!(copy, live);
        // Nothing changed since: an empty delta.
        let mut out = Vec::new();
        live.write_changes(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"clear":false,"set":[],"del":[]}"#);
        live.clear();
        live.insert("x".into(), 9);
        let mut out = Vec::new();
        live.write_changes(&mut out).unwrap();
        copy.apply_changes(&serde_json::from_slice(&out).unwrap()).unwrap();
        assert_eq!(copy, live);
    }
}
