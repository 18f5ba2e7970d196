//! Event time (DESIGN §3): the watermark = the event time the pack has reached − allowed
//! lateness. "The pack": the `quorum`-th highest event time seen (default 3), each capped
//! at its arrival time, so one event ahead of the rest (a sensor with a bad clock, a
//! crafted timestamp) cannot make everyone else's alerts late — neither live (the cap)
//! nor in a replay (the quorum). Events stamped too far in the future are clamped to
//! `now + max_future` and do not move the watermark at all; an idle watermark moves on
//! with the wall clock after `idle` without events, so windows of a quiet sensor still
//! close.
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
    /// The event time the pack has reached: the lowest of `top` (`None` before any event).
    max_seen: Option<i64>,
    /// The `quorum` highest event times seen (each capped at its arrival), highest first.
    #[serde(default)]
    top: Vec<i64>,
    /// How many events must reach a time before the watermark follows (1: the newest event
    /// alone moves it). Configuration, not state: kept across a restore.
    #[serde(skip, default = "one")]
    quorum: usize,
    /// Wall-clock time of the last event.
    last_arrival_us: i64,
}

fn one() -> usize {
    1
}

impl Watermark {
    pub fn new(lateness_us: i64, max_future_us: i64, idle_us: i64) -> Self {
        Self::with_quorum(lateness_us, max_future_us, idle_us, 1)
    }

    /// A watermark that follows the `quorum`-th highest event time.
    pub fn with_quorum(lateness_us: i64, max_future_us: i64, idle_us: i64, quorum: usize) -> Self {
        Self { lateness_us, max_future_us, idle_us, max_seen: None, top: Vec::new(), quorum: quorum.max(1), last_arrival_us: 0 }
    }

    /// The watermark of a snapshot, with this one's quorum (a snapshot written before the
    /// quorum existed starts its pack at its newest event time).
    pub fn restored(&self, mut saved: Watermark) -> Watermark {
        saved.quorum = self.quorum;
        if saved.top.is_empty() {
            saved.top.extend(saved.max_seen);
        }
        saved.top.truncate(saved.quorum);
        saved
    }

    /// Counts `t` into the pack: the `quorum` highest times, highest first.
    fn reach(&mut self, t: i64) {
        let pos = self.top.partition_point(|&x| x >= t);
        if pos < self.quorum {
            self.top.insert(pos, t);
            self.top.truncate(self.quorum);
        }
        // Fewer events than the quorum so far: the lowest of them.
        let pack = *self.top.last().expect("just inserted or full");
        self.max_seen = Some(self.max_seen.map_or(pack, |m| m.max(pack)));
    }

    /// Takes an event stamped `ts_us` arriving at wall-clock `now_us`.
    pub fn observe(&mut self, ts_us: i64, now_us: i64) -> Observed {
        let limit = now_us.saturating_add(self.max_future_us);
        let clamped = ts_us > limit;
        let ts = ts_us.min(limit);
        let late = self.current(now_us).is_some_and(|w| ts < w);
        // A clock running ahead must not close everyone else's windows: a clamped event
        // takes its place in time but does not move the watermark, and an event ahead of
        // its arrival counts only up to its arrival.
        if !late && !clamped {
            self.reach(ts.min(now_us));
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

    #[test]
    fn one_event_ahead_of_the_pack_does_not_make_the_rest_late() {
        let now = 10_000 * S;
        // Live: an alert 200 s ahead (inside max_future) counts only up to its arrival.
        let mut w = Watermark::with_quorum(60 * S, 300 * S, 30 * S, 1);
        w.observe(now, now);
        w.observe(now + 200 * S, now);
        for k in 1..=10 {
            assert!(!w.observe(now + k * S, now + k * S).late, "genuine alert {k} s later is on time");
        }
        // Replay (arrival far later than event time): the pack moves on the quorum.
        let later = 1_000_000 * S;
        let mut w = Watermark::with_quorum(60 * S, 300 * S, 30 * S, 3);
        for t in [1000, 1001, 1002] {
            w.observe(t * S, later);
        }
        assert!(!w.observe(1200 * S, later).late, "one event 200 s ahead");
        assert_eq!(w.current(later), Some((1001 - 60) * S), "does not move the watermark past the pack (1200, 1002, 1001)");
        assert!(!w.observe(1003 * S, later).late && !w.observe(1010 * S, later).late);
        // Once three events reach a time, the watermark follows: 1200, 1250, 1300.
        w.observe(1300 * S, later);
        assert_eq!(w.current(later), Some((1010 - 60) * S), "the pack: 1300, 1200, 1010");
        w.observe(1250 * S, later);
        assert_eq!(w.current(later), Some((1200 - 60) * S));
        assert!(w.observe(1100 * S, later).late);
        // Near miss: with a quorum of 1 the outlier moves it (the old behaviour).
        let mut w = Watermark::with_quorum(60 * S, 300 * S, 30 * S, 1);
        for t in [1000, 1001, 1002, 1200] {
            w.observe(t * S, later);
        }
        assert!(w.observe(1003 * S, later).late);
    }
}
