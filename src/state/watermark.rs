//! Event time (DESIGN §3): a watermark per shard = the highest event time seen − allowed
//! lateness. Events stamped too far in the future are clamped to `now + max_future` and
//! do not move the watermark at all; an idle shard's watermark moves on with the wall
//! clock after `idle` without events, so windows of a quiet sensor still close.
//!
//! Time comes from the events and from the `now_us` the caller passes in (an injected
//! clock), never from the system clock here, so tests and replays are deterministic.

/// What the watermark made of an event's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The event time to use (clamped when it was in the future).
    pub ts_us: i64,
    /// Older than the watermark: the window it belongs to may already be closed.
    pub late: bool,
    /// The timestamp was further in the future than allowed and was clamped.
    pub clamped: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Watermark {
    lateness_us: i64,
    max_future_us: i64,
    idle_us: i64,
    max_seen: Option<i64>,
    /// Wall-clock time of the last event.
    last_arrival_us: i64,
}

impl Watermark {
    pub fn new(lateness_us: i64, max_future_us: i64, idle_us: i64) -> Self {
        Self { lateness_us, max_future_us, idle_us, max_seen: None, last_arrival_us: 0 }
    }

    /// Takes an event stamped `ts_us` arriving at wall-clock `now_us`.
    pub fn observe(&mut self, ts_us: i64, now_us: i64) -> Observed {
        let limit = now_us.saturating_add(self.max_future_us);
        let clamped = ts_us > limit;
        let ts = ts_us.min(limit);
        let late = self.current(now_us).is_some_and(|w| ts < w);
        // A clock running ahead must not close everyone else's windows: a clamped event
        // takes its place in time but does not move the watermark.
        if !late && !clamped {
            self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
        }
        self.last_arrival_us = now_us;
        Observed { ts_us: ts, late, clamped }
    }

    /// The watermark at wall-clock `now_us`: windows ending before it are complete.
    pub fn current(&self, now_us: i64) -> Option<i64> {
        let m = self.max_seen?;
        let idle_for = now_us - self.last_arrival_us;
        // Quiet for longer than `idle`: event time advances with the wall clock.
        let advanced = if idle_for > self.idle_us { m.saturating_add(idle_for - self.idle_us) } else { m };
        Some(advanced - self.lateness_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn late_future_and_idle() {
        let mut w = Watermark::new(10 * S, 60 * S, 30 * S);
        let now = 1_000 * S;
        assert!(!w.observe(900 * S, now).late);
        assert_eq!(w.current(now), Some(890 * S));
        // Out of order within the lateness: on time.
        assert!(!w.observe(895 * S, now).late);
        // Older than the watermark: late, and it does not move the watermark.
        let o = w.observe(880 * S, now);
        assert!(o.late);
        assert_eq!(w.current(now), Some(890 * S));
        // A timestamp a day ahead is clamped to now + 60 s.
        let o = w.observe(now + 86_400 * S, now);
        assert!(o.clamped && o.ts_us == now + 60 * S);
        assert_eq!(w.current(now), Some(890 * S), "a clamped event does not drag the watermark");
        // Idle for 100 s: the watermark moves 70 s (100 − 30) with the wall clock.
        assert_eq!(w.current(now + 100 * S), Some(960 * S));
    }
}
