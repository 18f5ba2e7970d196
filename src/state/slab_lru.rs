//! A least-recently-used map whose entries live in one vector, linked into recency order by
//! slot number, and found through a hash table of slot numbers.
//!
//! Against a map of separately allocated nodes (the `lru` crate) an insert allocates
//! nothing once the vector has grown (a freed slot is reused), the index holds four bytes
//! per entry instead of two pointers, and each slot keeps its key's hash, so a lookup
//! compares keys only when the hashes agree and the table grows without hashing a key
//! again. The flow context looks up a flow for most events of a sensor's stream.
//!
//! The vector keeps the most slots it ever held (a bounded cache is bounded by its cap), at
//! most 2^32 - 1 (`[state.context] max_flows` and `max_hosts` stop at 2^31).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// No slot: the end of a list.
const NIL: u32 = u32::MAX;

struct Slot<K, V> {
    hash: u64,
    /// Towards the most recent (in use) — unused in a free slot.
    prev: u32,
    /// Towards the least recent (in use), or the next free slot.
    next: u32,
    kv: Option<(K, V)>,
}

pub struct SlabLru<K, V> {
    index: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    hasher: foldhash::fast::RandomState,
    /// The most recent entry.
    head: u32,
    /// The least recent entry.
    tail: u32,
    /// The first free slot.
    free: u32,
    len: usize,
}

impl<K, V> Default for SlabLru<K, V> {
    fn default() -> Self {
        Self { index: HashTable::new(), slots: Vec::new(), hasher: Default::default(), head: NIL, tail: NIL, free: NIL, len: 0 }
    }
}

impl<K: Hash + Eq, V> SlabLru<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find<Q>(&self, hash: u64, k: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slots = &self.slots;
        self.index.find(hash, |&i| matches_key(&slots[i as usize], hash, k)).copied()
    }

    /// The value of `k`, its recency unchanged.
    pub fn peek<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.find(self.hasher.hash_one(k), k)?;
        self.slots[i as usize].kv.as_ref().map(|(_, v)| v)
    }

    pub fn contains<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(self.hasher.hash_one(k), k).is_some()
    }

    /// Removes `k`, returning its value.
    pub fn pop<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(k);
        let slots = &self.slots;
        let found = self.index.find_entry(hash, |&i| matches_key(&slots[i as usize], hash, k)).ok()?;
        let (i, _) = found.remove();
        self.release(i).map(|(_, v)| v)
    }

    /// The value of `k`, inserted with `make` if absent (the key made from `k` only then);
    /// either way the most recent now.
    pub fn get_or_insert_mut<Q>(&mut self, k: &Q, make: impl FnOnce() -> V) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwned<Owned = K>,
    {
        let hash = self.hasher.hash_one(k);
        let slots = &self.slots;
        let i = match self.index.entry(hash, |&i| matches_key(&slots[i as usize], hash, k), |&i| slots[i as usize].hash) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let i = Self::fill(&mut self.slots, &mut self.free, hash, (k.to_owned(), make()));
                e.insert(i);
                self.len += 1;
                i
            }
        };
        self.promote(i);
        &mut self.slots[i as usize].kv.as_mut().expect("slot in use").1
    }

    /// A slot (a free one, or a new one at the end) holding `kv`, not yet linked.
    fn fill(slots: &mut Vec<Slot<K, V>>, free: &mut u32, hash: u64, kv: (K, V)) -> u32 {
        if *free != NIL {
            let i = *free;
            let s = &mut slots[i as usize];
            *free = s.next;
            s.hash = hash;
            s.prev = NIL;
            s.next = NIL;
            s.kv = Some(kv);
            return i;
        }
        let i = u32::try_from(slots.len()).ok().filter(|&i| i != NIL).expect("fewer than 2^32 - 1 entries");
        slots.push(Slot { hash, prev: NIL, next: NIL, kv: Some(kv) });
        i
    }

    /// The least recent entry.
    pub fn peek_lru(&self) -> Option<(&K, &V)> {
        if self.tail == NIL {
            return None;
        }
        self.slots[self.tail as usize].kv.as_ref().map(|(k, v)| (k, v))
    }

    /// Removes the least recent entry.
    pub fn pop_lru(&mut self) -> Option<(K, V)> {
        let i = self.tail;
        if i == NIL {
            return None;
        }
        let hash = self.slots[i as usize].hash;
        if let Ok(e) = self.index.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        self.release(i)
    }

    /// Takes slot `i` (already out of the index) out of the recency list onto the free list.
    fn release(&mut self, i: u32) -> Option<(K, V)> {
        self.unlink(i);
        let s = &mut self.slots[i as usize];
        s.next = self.free;
        self.free = i;
        self.len -= 1;
        s.kv.take()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let head = self.head;
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = head;
        match head {
            NIL => self.tail = i,
            h => self.slots[h as usize].prev = i,
        }
        self.head = i;
    }

    /// Makes slot `i` the most recent. Of the linked slots only the head has no `prev`, so
    /// a slot other than the head without one was just filled and is not linked yet.
    fn promote(&mut self, i: u32) {
        if self.head == i {
            return;
        }
        if self.slots[i as usize].prev != NIL {
            self.unlink(i);
        }
        self.push_front(i);
    }
}

fn matches_key<K: Borrow<Q>, V, Q: Eq + ?Sized>(s: &Slot<K, V>, hash: u64, k: &Q) -> bool {
    s.hash == hash && s.kv.as_ref().is_some_and(|(key, _)| key.borrow() == k)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random operations on small key ranges (many hits, removals and reuse of slots), the
    /// same on the `lru` crate's map: every answer, the length and the order of eviction
    /// agree.
    #[test]
    fn behaves_as_a_node_lru_under_random_operations() {
        let mut next = crate::event::rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for keys in [3u64, 40, 1000] {
            let mut ours: SlabLru<String, u64> = SlabLru::default();
            let mut theirs: lru::LruCache<String, u64> = lru::LruCache::unbounded();
            for step in 0..20_000u64 {
                let k = format!("k{}", next(keys));
                match next(7) {
                    0 | 1 => {
                        *ours.get_or_insert_mut(k.as_str(), || step) += 1;
                        *theirs.get_or_insert_mut(k, || step) += 1;
                    }
                    2 => {
                        *ours.get_or_insert_mut(k.as_str(), || step) += 2;
                        *theirs.get_or_insert_mut_ref(k.as_str(), || step) += 2;
                    }
                    3 => assert_eq!(ours.peek(k.as_str()), theirs.peek(k.as_str()), "peek at step {step}"),
                    4 => assert_eq!(ours.pop(k.as_str()), theirs.pop(k.as_str()), "pop at step {step}"),
                    5 => assert_eq!(ours.contains(k.as_str()), theirs.contains(k.as_str())),
                    _ => {
                        assert_eq!(ours.peek_lru(), theirs.peek_lru(), "least recent at step {step}");
                        if next(3) == 0 {
                            assert_eq!(ours.pop_lru(), theirs.pop_lru(), "evicted at step {step}");
                        }
                    }
                }
                assert_eq!(ours.len(), theirs.len());
                assert_eq!(ours.is_empty(), theirs.is_empty());
            }
            // Drained in the same order, and every slot back on the free list.
            while let Some(e) = theirs.pop_lru() {
                assert_eq!(ours.pop_lru(), Some(e));
            }
            assert_eq!((ours.pop_lru(), ours.len(), ours.index.len()), (None, 0, 0));
            let mut free = 0;
            let mut i = ours.free;
            while i != NIL {
                free += 1;
                i = ours.slots[i as usize].next;
            }
            assert_eq!(free, ours.slots.len(), "all {} slots free", ours.slots.len());
        }
    }

    #[test]
    fn reuses_freed_slots() {
        let mut m: SlabLru<i64, i64> = SlabLru::default();
        for round in 0..10 {
            for k in 0..100 {
                m.get_or_insert_mut(&(round * 1000 + k), || k);
            }
            while m.pop_lru().is_some() {}
        }
        assert_eq!(m.slots.len(), 100, "ten rounds of 100 entries fit in 100 slots");
    }
}
