//! The byte budget of the queue between the sources and the parse workers: the queue is
//! bounded by the bytes it holds, not by how many batches, so many small batches (one per
//! connection of a busy listener) are not refused while the queue is nearly empty, and a
//! few large ones cannot exceed the memory the configuration allows.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct ByteBudget {
    limit: u64,
    used: AtomicU64,
}

impl ByteBudget {
    pub fn new(limit: u64) -> Self {
        Self { limit: limit.max(1), used: AtomicU64::new(0) }
    }

    /// Takes `n` bytes if they fit; a batch larger than the whole budget fits when
    /// nothing else is queued (so it is never refused forever).
    pub fn try_take(&self, n: u64) -> bool {
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            if cur != 0 && cur.saturating_add(n) > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Gives back `n` bytes taken before.
    pub fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Bytes queued now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_fit_up_to_the_limit_and_an_oversize_batch_fits_alone() {
        let b = ByteBudget::new(100);
        assert!(b.try_take(60));
        assert!(b.try_take(40));
        assert!(!b.try_take(1), "full");
        b.give(60);
        assert!(b.try_take(50));
        assert!(!b.try_take(500));
        b.give(40);
        b.give(50);
        assert_eq!(b.used(), 0);
        assert!(b.try_take(500), "alone, a batch over the limit fits");
        assert!(!b.try_take(1));
    }
}
