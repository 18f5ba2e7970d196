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
//! Capture: `take_changes` cuts a delta at once — the changed keys become the capture's,
//! the map starts a new list — and the entries are copied out later, by `capture_step` in
//! slices between batches, or right before a change: every mutation of a key the capture
//! still holds copies it first (copy on write). So the delta is the map at the cut while
//! the thread that owns the map goes on deciding; its writer fails rather than write a
//! capture that is not finished. LRU caches number each move to the front: the keys moved
//! since the last snapshot, sorted by their last move, are the front's order at the cut.
//!
//! Delta of a map: `{"clear":bool,"set":[[key,value],…],"del":[key,…]}`. Delta of an LRU
//! cache: `{"clear":bool,"del":[key,…],"upd":[entry,…],"put":[entry,…]}`: `upd` are
//! entries changed in place (their recency unchanged), `put` the entries moved to the
//! front since the last snapshot, least recent first, so applying them in order rebuilds
//! the exact eviction order. (Every key moved to the front since the last snapshot is more
//! recent than every key that was not, so they are the front of the cache.)

use std::borrow::Borrow;
use std::hash::Hash;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use foldhash::fast::RandomState;
use lru::LruCache;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::members::Members;

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

/// The hash map and set a [`TrackedMap`] keeps its entries and changed keys in (hashbrown's:
/// a key is looked up and inserted, or a removed key kept, in one probe).
type Map<K, V> = hashbrown::HashMap<K, V, RandomState>;
type Set<K> = hashbrown::HashSet<K, RandomState>;

/// A `HashMap` that remembers the keys changed since the last snapshot.
#[derive(Debug)]
pub struct TrackedMap<K, V> {
    map: Map<K, V>,
    changed: Set<K>,
    tracking: Tracking,
    capture: Option<MapCapture<K, V>>,
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

/// Where a finished capture is handed to the [`Part`] that writes it.
type Slot<T> = Arc<Mutex<Option<T>>>;

fn take_slot<T>(slot: &Slot<T>) -> io::Result<T> {
    slot.lock()
        .map_err(|_| io::Error::other("snapshot capture poisoned"))?
        .take()
        .ok_or_else(|| io::Error::other("a snapshot part was written before its capture finished"))
}

/// A delta being copied out of a [`TrackedMap`]: the keys changed before the cut that are
/// not copied yet, and the copies so far.
#[derive(Debug)]
struct MapCapture<K, V> {
    pending: Set<K>,
    out: MapChanges<K, V>,
    slot: Slot<MapChanges<K, V>>,
    copy: fn(&V) -> V,
}

#[derive(Debug)]
struct MapChanges<K, V> {
    clear: bool,
    set: Vec<(K, V)>,
    del: Vec<K>,
}

impl<K: Hash + Eq, V> MapCapture<K, V> {
    /// Copies `key` as it is in `map` (its value, or that it is gone).
    fn copy_out(&mut self, map: &Map<K, V>, key: K) {
        match map.get(&key) {
            Some(v) => {
                let v = (self.copy)(v);
                self.out.set.push((key, v));
            }
            None => self.out.del.push(key),
        }
    }

    /// Copies `k` if it is still to be copied (before it changes).
    fn before_change<Q>(&mut self, map: &Map<K, V>, k: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(key) = self.pending.take(k) {
            self.copy_out(map, key);
        }
    }

    /// Copies up to `budget` keys; whether all are copied.
    fn step(&mut self, map: &Map<K, V>, budget: &mut usize) -> bool {
        while *budget > 0 {
            let n = (*budget).min(self.pending.len());
            if n == 0 {
                break;
            }
            let keys: Vec<K> = self.pending.extract_if(|_| true).take(n).collect();
            *budget -= keys.len();
            for k in keys {
                self.copy_out(map, k);
            }
        }
        self.pending.is_empty()
    }
}

impl<K, V> Default for TrackedMap<K, V> {
    fn default() -> Self {
        Self { map: Map::default(), changed: Set::default(), tracking: Tracking::default(), capture: None }
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
        s.collect_map(&self.map)
    }
}

impl<'de, K: Deserialize<'de> + Hash + Eq, V: Deserialize<'de>> Deserialize<'de> for TrackedMap<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map: std::collections::HashMap<K, V> = std::collections::HashMap::deserialize(d)?;
        Ok(Self { map: map.into_iter().collect(), ..Default::default() })
    }
}

impl<K: Hash + Eq + Clone, V> TrackedMap<K, V> {
    /// Before `k` changes: copies it first if a capture still needs it.
    fn before_change<Q>(&mut self, k: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(c) = self.capture.as_mut() {
            c.before_change(&self.map, k);
        }
    }

    /// Marks `k`, present or about to be inserted, as changed (one lookup; the key is
    /// copied the first time only).
    fn mark_with<Q>(&mut self, k: &Q, owned: impl FnOnce(&Q) -> K)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.tracking.on {
            self.changed.get_or_insert_with(k, owned);
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

    pub fn iter(&self) -> hashbrown::hash_map::Iter<'_, K, V> {
        self.map.iter()
    }

    pub fn values(&self) -> hashbrown::hash_map::Values<'_, K, V> {
        self.map.values()
    }

    /// The value of `k`, changed (so marked).
    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.before_change(k);
        let (key, v) = self.map.get_key_value_mut(k)?;
        if self.tracking.on {
            self.changed.get_or_insert_with(k, |_| key.clone());
        }
        Some(v)
    }

    /// As [`TrackedMap::entry_or_default`], the key made only when it is absent.
    pub fn get_or_default<'q, Q>(&mut self, k: &'q Q) -> &mut V
    where
        K: Borrow<Q> + From<&'q Q>,
        Q: Hash + Eq + ?Sized,
        V: Default,
    {
        self.before_change(k);
        self.mark_with(k, |_| K::from(k));
        self.map.entry_ref(k).or_default()
    }

    /// The value of `k` (a default one inserted if absent), changed.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        self.before_change(&k);
        self.mark_with(&k, K::clone);
        self.map.entry(k).or_default()
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.before_change(&k);
        self.mark_with(&k, K::clone);
        self.map.insert(k, v)
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.before_change(k);
        let (key, v) = self.map.remove_entry(k)?;
        if self.tracking.on {
            // The removed key itself is kept (no copy); a key marked already stays as is.
            self.changed.insert(key);
        }
        Some(v)
    }

    pub fn clear(&mut self) {
        self.finish_capture();
        self.map.clear();
        if self.tracking.clear() {
            self.changed.clear();
        }
    }

    /// Tracks changes from now on (call once its whole content is saved).
    pub fn track(&mut self) {
        self.finish_capture();
        self.tracking.start();
        self.changed.clear();
    }

    /// Writes the changes since the last snapshot (see the module) and starts over.
    pub fn write_changes(&mut self, w: &mut dyn Write) -> io::Result<()>
    where
        K: Serialize + Send + 'static,
        V: Serialize + Clone + Send + 'static,
    {
        let part = self.take_changes();
        self.finish_capture();
        part(w)
    }

    /// Cuts the changes since the last snapshot and starts over. They are copied out by
    /// [`TrackedMap::capture_step`] in slices, and each before it changes; the returned
    /// [`Part`] writes them once the capture is finished (see the module).
    pub fn take_changes(&mut self) -> Part
    where
        K: Serialize + Send + 'static,
        V: Serialize + Clone + Send + 'static,
    {
        self.finish_capture();
        // The next epoch's set starts at this one's size: a storm of new keys does not
        // grow it again from nothing, rehashing at every doubling.
        let next = Set::with_capacity_and_hasher(self.changed.len(), RandomState::default());
        let pending = std::mem::replace(&mut self.changed, next);
        let clear = std::mem::take(&mut self.tracking.cleared);
        let slot: Slot<MapChanges<K, V>> = Arc::default();
        let out = MapChanges { clear, set: Vec::with_capacity(pending.len()), del: Vec::new() };
        self.capture = Some(MapCapture { pending, out, slot: slot.clone(), copy: V::clone });
        Box::new(move |w: &mut dyn Write| {
            let c = take_slot(&slot)?;
            write!(w, "{{\"clear\":{},\"set\":", c.clear)?;
            write_list(w, &c.set, |w, e| write_json(w, e))?;
            w.write_all(b",\"del\":")?;
            write_list(w, &c.del, |w, k| write_json(w, k))?;
            w.write_all(b"}")
        })
    }

    /// Copies up to `budget` entries of the capture under way (taking them off the
    /// budget); whether it is finished (or none is under way).
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        let Some(c) = self.capture.as_mut() else { return true };
        if !c.step(&self.map, budget) {
            return false;
        }
        let c = self.capture.take().expect("checked");
        if let Ok(mut s) = c.slot.lock() {
            *s = Some(c.out);
        }
        true
    }

    /// Finishes the capture under way at once.
    pub fn finish_capture(&mut self) {
        let mut all = usize::MAX;
        self.capture_step(&mut all);
    }

    /// Applies a delta written by [`TrackedMap::write_changes`].
    pub fn apply_changes(&mut self, v: &Members) -> Result<(), serde_json::Error>
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        if v.flag("clear") {
            self.map.clear();
        }
        let del: Vec<K> = v.get("del")?;
        for k in del {
            self.map.remove(&k);
        }
        let set: Vec<(K, V)> = v.get("set")?;
        self.map.extend(set);
        Ok(())
    }
}

/// How a key of a [`TrackedLru`] changed since the last snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Changed in place or removed.
    Touched,
    /// Moved to the front; the number orders the moves.
    Moved(u64),
}

/// Notes that `k` moved to the front (numbered after every move before): one lookup, the
/// key copied the first time only.
fn note_move<K: Hash + Eq + Clone>(changed: &mut Map<K, Change>, moves: &mut u64, k: &K) {
    *moves += 1;
    let n = Change::Moved(*moves);
    changed.raw_entry_mut().from_key(k).and_modify(|_, m| *m = n).or_insert_with(|| (k.clone(), n));
}

/// Notes that `k` changed in place or went (a move noted before stays: it tells more).
fn note_touch<K: Hash + Eq + Clone>(changed: &mut Map<K, Change>, k: &K) {
    changed.raw_entry_mut().from_key(k).or_insert_with(|| (k.clone(), Change::Touched));
}

/// An LRU cache that remembers the keys changed since the last snapshot: moved to the
/// front (put or used), changed in place or removed.
pub struct TrackedLru<K: Hash + Eq, V> {
    cache: LruCache<K, V, RandomState>,
    changed: Map<K, Change>,
    moves: u64,
    tracking: Tracking,
    capture: Option<LruCapture<K, V>>,
}

/// What a delta of a [`TrackedLru`] holds, parsed.
pub struct LruChanges<K, V> {
    pub clear: bool,
    pub del: Vec<K>,
    pub upd: Vec<(K, V)>,
    pub put: Vec<(K, V)>,
}

/// The changes of a [`TrackedLru`] cut for a snapshot; [`LruTaken::take`] them once the
/// capture is finished.
pub struct LruTaken<K, V> {
    slot: Slot<LruChanges<K, V>>,
}

impl<K, V> LruTaken<K, V> {
    pub fn take(&self) -> io::Result<LruChanges<K, V>> {
        take_slot(&self.slot)
    }

    /// Writes the changes (see [`LruChanges::write`]).
    pub fn write(
        &self,
        w: &mut dyn Write,
        key: impl Fn(&mut dyn Write, &K) -> io::Result<()>,
        entry: impl Fn(&mut dyn Write, &K, &V) -> io::Result<()>,
    ) -> io::Result<()> {
        self.take()?.write(w, key, entry)
    }
}

struct LruCapture<K, V> {
    pending: Map<K, Change>,
    clear: bool,
    del: Vec<K>,
    upd: Vec<(K, V)>,
    /// With the number of their last move before the cut: sorted, the front's order then.
    put: Vec<(u64, K, V)>,
    slot: Slot<LruChanges<K, V>>,
    copy: fn(&V) -> V,
}

impl<K: Hash + Eq, V> LruCapture<K, V> {
    fn copy_out(&mut self, cache: &LruCache<K, V, RandomState>, key: K, how: Change) {
        match (cache.peek(&key), how) {
            (Some(v), Change::Moved(n)) => {
                let v = (self.copy)(v);
                self.put.push((n, key, v));
            }
            (Some(v), Change::Touched) => {
                let v = (self.copy)(v);
                self.upd.push((key, v));
            }
            (None, _) => self.del.push(key),
        }
    }

    fn before_change(&mut self, cache: &LruCache<K, V, RandomState>, k: &K) {
        if let Some((key, how)) = self.pending.remove_entry(k) {
            self.copy_out(cache, key, how);
        }
    }

    fn step(&mut self, cache: &LruCache<K, V, RandomState>, budget: &mut usize) -> bool {
        while *budget > 0 {
            let n = (*budget).min(self.pending.len());
            if n == 0 {
                break;
            }
            let keys: Vec<(K, Change)> = self.pending.extract_if(|_, _| true).take(n).collect();
            *budget -= keys.len();
            for (k, how) in keys {
                self.copy_out(cache, k, how);
            }
        }
        self.pending.is_empty()
    }
}

impl<K: Hash + Eq + Clone, V> TrackedLru<K, V> {
    pub fn unbounded() -> Self {
        Self::with(LruCache::unbounded_with_hasher(RandomState::default()))
    }

    pub fn new(cap: NonZeroUsize) -> Self {
        Self::with(LruCache::with_hasher(cap, RandomState::default()))
    }

    fn with(cache: LruCache<K, V, RandomState>) -> Self {
        Self { cache, changed: Map::default(), moves: 0, tracking: Tracking::default(), capture: None }
    }

    /// Copies `k` first if a capture still needs it (before it changes).
    fn before_change(&mut self, k: &K) {
        if let Some(c) = self.capture.as_mut() {
            c.before_change(&self.cache, k);
        }
    }

    fn moved(&mut self, k: &K) {
        self.before_change(k);
        if self.tracking.on {
            note_move(&mut self.changed, &mut self.moves, k);
        }
    }

    fn touched(&mut self, k: &K) {
        self.before_change(k);
        if self.tracking.on {
            note_touch(&mut self.changed, k);
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
        // Copied out before it is looked up (so changed); an absent key's copy is that it
        // is gone, as it was at the cut.
        self.before_change(k);
        let v = self.cache.get_mut(k)?;
        if self.tracking.on {
            note_move(&mut self.changed, &mut self.moves, k);
        }
        Some(v)
    }

    /// The value of `k` where it is (its recency unchanged).
    pub fn peek_mut(&mut self, k: &K) -> Option<&mut V> {
        self.before_change(k);
        let v = self.cache.peek_mut(k)?;
        if self.tracking.on {
            note_touch(&mut self.changed, k);
        }
        Some(v)
    }

    /// The least recent key, copied first if a capture still needs it (it is about to go).
    fn before_lru_goes(&mut self) {
        if let (Some(c), Some((k, _))) = (self.capture.as_mut(), self.cache.peek_lru()) {
            if c.pending.contains_key(k) {
                let k = k.clone();
                c.before_change(&self.cache, &k);
            }
        }
    }

    /// Puts `k` at the front (a bounded cache that is full drops its least recent key).
    pub fn put(&mut self, k: K, v: V) {
        if self.cache.len() >= self.cache.cap().get() && !self.cache.contains(&k) {
            self.before_lru_goes();
        }
        self.moved(&k);
        if let Some((old, _)) = self.cache.push(k, v) {
            if !self.cache.contains(&old) {
                self.touched(&old);
            }
        }
    }

    pub fn pop(&mut self, k: &K) -> Option<V> {
        self.before_change(k);
        let v = self.cache.pop(k);
        if v.is_some() {
            self.touched(k);
        }
        v
    }

    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        self.before_lru_goes();
        let x = self.cache.pop_lru();
        if let Some((k, _)) = &x {
            self.touched(k);
        }
        x
    }

    pub fn clear(&mut self) {
        self.finish_capture();
        self.cache.clear();
        if self.tracking.clear() {
            self.changed.clear();
        }
    }

    /// Tracks changes from now on (call once its whole content is saved).
    pub fn track(&mut self) {
        self.finish_capture();
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
        let taken = self.take_changes();
        self.finish_capture();
        taken.take()?.write(w, key, entry)
    }

    /// Cuts the changes since the last snapshot and starts over. They are copied out by
    /// [`TrackedLru::capture_step`] in slices, and each before it changes or goes; take
    /// them from the returned handle once the capture is finished.
    pub fn take_changes(&mut self) -> LruTaken<K, V>
    where
        V: Clone,
    {
        self.finish_capture();
        // Sized as for `TrackedMap::take_changes`.
        let next = Map::with_capacity_and_hasher(self.changed.len(), RandomState::default());
        let pending = std::mem::replace(&mut self.changed, next);
        let slot: Slot<LruChanges<K, V>> = Arc::default();
        self.capture = Some(LruCapture {
            clear: std::mem::take(&mut self.tracking.cleared),
            put: Vec::with_capacity(pending.len()),
            pending,
            del: Vec::new(),
            upd: Vec::new(),
            slot: slot.clone(),
            copy: V::clone,
        });
        LruTaken { slot }
    }

    /// Copies up to `budget` entries of the capture under way (taking them off the
    /// budget); whether it is finished (or none is under way).
    pub fn capture_step(&mut self, budget: &mut usize) -> bool {
        let Some(c) = self.capture.as_mut() else { return true };
        if !c.step(&self.cache, budget) {
            return false;
        }
        let mut c = self.capture.take().expect("checked");
        // The keys moved to the front since the last snapshot were the front at the cut,
        // in the order of their last moves.
        c.put.sort_unstable_by_key(|(n, _, _)| *n);
        let put = c.put.into_iter().map(|(_, k, v)| (k, v)).collect();
        if let Ok(mut s) = c.slot.lock() {
            *s = Some(LruChanges { clear: c.clear, del: c.del, upd: c.upd, put });
        }
        true
    }

    /// Finishes the capture under way at once.
    pub fn finish_capture(&mut self) {
        let mut all = usize::MAX;
        self.capture_step(&mut all);
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
        self.finish_capture();
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
    pub fn parse(v: &Members) -> Result<Self, serde_json::Error> {
        Ok(Self { clear: v.flag("clear"), del: v.get("del")?, upd: v.get("upd")?, put: v.get("put")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta_of<V: Serialize + Clone>(m: &mut TrackedLru<String, V>) -> String {
        let mut out = Vec::new();
        m.write_changes(&mut out, |w, k| write_json(w, k), |w, k, v| write_json(w, &(k, v))).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn order(m: &TrackedLru<String, u32>) -> Vec<(String, u32)> {
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// A cache of 30 entries (bounded to 40, or not), tracking from now on, and a copy of it.
    fn live_and_copy(bounded: bool) -> (TrackedLru<String, u32>, TrackedLru<String, u32>) {
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
        (live, copy)
    }

    /// Random operations between snapshots: the full state with every delta applied equals
    /// the live cache, entries and order.
    #[test]
    fn lru_deltas_rebuild_entries_and_order() {
        let mut next = crate::event::rng::xorshift(0x9e3779b97f4a7c15);
        for bounded in [false, true] {
            let (mut live, mut copy) = live_and_copy(bounded);
            for _round in 0..50 {
                for _ in 0..next(30) {
                    mutate_lru(&mut live, &mut next);
                }
                let d = delta_of(&mut live);
                copy.apply_changes(LruChanges::parse(&Members::parse(&d).unwrap()).unwrap(), |_, _| {});
                assert_eq!(order(&copy), order(&live), "bounded {bounded}");
            }
        }
    }

    fn mutate_lru(live: &mut TrackedLru<String, u32>, next: &mut impl FnMut(u64) -> u64) {
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

    /// A delta cut at one moment and copied out in slices while the cache goes on
    /// changing holds the cache as it was at the cut, entries and order; the changes made
    /// meanwhile go into the next delta.
    #[test]
    fn lru_capture_in_slices_holds_the_state_at_the_cut() {
        let mut next = crate::event::rng::xorshift(0x2545f4914f6cdd1d);
        for bounded in [false, true] {
            let (mut live, mut copy) = live_and_copy(bounded);
            let mut slices = 0;
            for _round in 0..200 {
                for _ in 0..next(30) {
                    mutate_lru(&mut live, &mut next);
                }
                let at_cut = order(&live);
                let taken = live.take_changes();
                loop {
                    let mut budget = next(4) as usize;
                    if live.capture_step(&mut budget) {
                        break;
                    }
                    slices += 1;
                    for _ in 0..next(4) {
                        mutate_lru(&mut live, &mut next);
                    }
                }
                copy.apply_changes(taken.take().unwrap(), |_, _| {});
                assert_eq!(order(&copy), at_cut, "bounded {bounded}");
            }
            assert!(slices > 100, "the captures were taken in slices with changes between them: {slices}");
        }
    }

    #[test]
    fn map_capture_in_slices_holds_the_state_at_the_cut() {
        let mut next = crate::event::rng::xorshift(0x9e3779b97f4a7c15);
        let mut live: TrackedMap<String, u32> = TrackedMap::default();
        let mut copy: TrackedMap<String, u32> = TrackedMap::default();
        live.track();
        let mutate = |live: &mut TrackedMap<String, u32>, next: &mut dyn FnMut(u64) -> u64| {
            let k = format!("k{}", next(60));
            match next(5) {
                0 => {
                    live.insert(k, next(1000) as u32);
                }
                1 => *live.entry_or_default(k) += 1,
                2 => {
                    if let Some(v) = live.get_mut(&k) {
                        *v += 3;
                    }
                }
                3 => {
                    live.remove(&k);
                }
                _ => {
                    if next(40) == 0 {
                        live.clear();
                    }
                }
            }
        };
        for _round in 0..200 {
            for _ in 0..next(30) {
                mutate(&mut live, &mut next);
            }
            let at_cut = live.clone();
            let part = live.take_changes();
            loop {
                let mut budget = next(4) as usize;
                if live.capture_step(&mut budget) {
                    break;
                }
                for _ in 0..next(4) {
                    mutate(&mut live, &mut next);
                }
            }
            let mut out = Vec::new();
            part(&mut out).unwrap();
            copy.apply_changes(&Members::parse(std::str::from_utf8(&out).unwrap()).unwrap()).unwrap();
            assert_eq!(copy, at_cut);
        }
        // A part written before its capture finished is an error, not a wrong delta.
        live.insert("late".into(), 1);
        let part = live.take_changes();
        assert!(part(&mut Vec::new()).is_err());
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
        copy.apply_changes(&Members::parse(std::str::from_utf8(&out).unwrap()).unwrap()).unwrap();
        assert_eq!(copy, live);
        // Nothing changed since: an empty delta.
        let mut out = Vec::new();
        live.write_changes(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"clear":false,"set":[],"del":[]}"#);
        live.clear();
        live.insert("x".into(), 9);
        let mut out = Vec::new();
        live.write_changes(&mut out).unwrap();
        copy.apply_changes(&Members::parse(std::str::from_utf8(&out).unwrap()).unwrap()).unwrap();
        assert_eq!(copy, live);
    }
}
