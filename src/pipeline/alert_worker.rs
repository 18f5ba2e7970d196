//! The alert path on a thread of its own, fed by the commit coordinator in archive order.
//!
//! The coordinator submits jobs (a batch to process, a wall-clock advance, a final flush) and
//! collects the outputs in the same order without waiting; before a commit it drains
//! every outstanding output and asks for a snapshot, so the snapshot saved with a commit
//! covers exactly the batches of that commit. The state itself is owned by the thread.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::alerts::{AlertOutput, AlertPath, SnapshotTail};
use crate::event::delta::Deferred;
use crate::event::EventBatch;
use crate::metrics as m;
use crate::state::stage::StateInput;

enum Job {
    Process(Box<StateInput>, i64),
    Advance(i64),
    Flush,
    /// A snapshot of commit `epoch` into the folder, with the due lines.
    Snapshot(std::path::PathBuf, u64, Option<String>, Sender<std::io::Result<()>>),
    /// From now on the lines go to the outbox's triggers from this thread.
    OfferTo(crate::act::outbox::Offers),
}

pub struct AlertWorker {
    tx: Option<Sender<Job>>,
    /// Shedding from this many waiting batches on (`None`: never).
    shed: Option<usize>,
    shed_total: u64,
    shed_logged: Option<std::time::Instant>,
    rx: Receiver<AlertOutput>,
    outstanding: usize,
    thread: Option<JoinHandle<()>>,
    /// Tells a fold under way to give up (the worker is going).
    stop_folding: Arc<AtomicBool>,
}

/// Jobs queued before the archive waits (backpressure).
const QUEUE: usize = 16;

/// Fault injection for tests: the alert path takes this many milliseconds more per batch
/// (an alert path that falls behind).
pub const FAULT_SLOW_ALERT_PATH: &str = "ALERTFLOW_FAULT_SLOW_ALERT_PATH_MS";

impl AlertWorker {
    /// Runs `stage` on its own thread; `policy` says which snapshot comes next (the state
    /// tracks its changes from here when deltas build on it).
    pub fn spawn(mut stage: AlertPath, policy: super::snapshots::Policy) -> Self {
        if policy.base.is_some() {
            stage.track_changes();
        }
        let policy = Arc::new(Mutex::new(policy));
        let (tx, jobs) = bounded::<Job>(QUEUE);
        let (out_tx, rx) = bounded::<AlertOutput>(QUEUE * 4);
        // Snapshot files are serialized (deltas), written and fsynced here, off the alert
        // path's thread; the chain is folded into a whole snapshot on a thread of its own.
        let (writer, snapshots) = bounded::<Pending>(2);
        let written = policy.clone();
        let stop_folding = Arc::new(AtomicBool::new(false));
        let fold = Fold { shape: stage.shape(), policy: policy.clone(), stop: stop_folding.clone() };
        let _ = std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            crate::event::thread::run_in_background();
            for p in snapshots {
                let delta = (!p.whole).then(|| (p.path.clone(), p.seq));
                if write_snapshot(p, &written) {
                    if let Some((path, seq)) = delta {
                        fold.start_if_due(&path, seq);
                    }
                }
            }
        });
        let slow = std::env::var(FAULT_SLOW_ALERT_PATH).ok().and_then(|v| v.parse::<u64>().ok()).map(std::time::Duration::from_millis);
        let thread = std::thread::Builder::new()
            .name("state".into())
            .spawn(move || {
                let mut published = Published::default();
                let mut offers: Option<crate::act::outbox::Offers> = None;
                // A delta whose changes are still being copied out (in slices, between jobs).
                let mut capturing: Option<Pending> = None;
                let hand_over = |p: Pending| {
                    metrics::gauge!(m::STATE_SNAPSHOT_SECONDS).set(p.secs);
                    if let Err(crossbeam_channel::SendError(p)) = writer.send(p) {
                        // The writer is gone: write it here.
                        let _ = write_snapshot(p, &policy);
                    }
                };
                loop {
                    let job = match capturing.is_some() {
                        // Copy a slice whenever no job waits.
                        true => match jobs.try_recv() {
                            Ok(job) => job,
                            Err(crossbeam_channel::TryRecvError::Empty) => {
                                capture_slice(&mut stage, &mut capturing, &hand_over);
                                continue;
                            }
                            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                        },
                        false => match jobs.recv() {
                            Ok(job) => job,
                            Err(_) => break,
                        },
                    };
                    let out = match job {
                        Job::Process(b, now) => {
                            if let Some(d) = slow {
                                std::thread::sleep(d);
                            }
                            stage.process_input(*b, now)
                        }
                        Job::Advance(now) => {
                            let mut o = AlertOutput::default();
                            stage.advance(now, &mut o);
                            o
                        }
                        Job::Flush => {
                            let mut o = AlertOutput::default();
                            stage.flush(&mut o);
                            o
                        }
                        Job::Snapshot(dir, epoch, due, reply) => {
                            // The one before is finished first (snapshots land in order).
                            if let Some(mut p) = capturing.take() {
                                let took = std::time::Instant::now();
                                stage.finish_capture();
                                p.secs += took.elapsed().as_secs_f64();
                                hand_over(p);
                            }
                            // The state is cut here, at its point in the job order: a whole
                            // snapshot serialized, or a delta's changed keys taken, copied
                            // out in slices while the next jobs go on; the file is written
                            // and fsynced on a thread of its own.
                            let took = std::time::Instant::now();
                            let whole_due = policy.lock().is_ok_and(|p| p.whole_due());
                            match stage.snapshot_parts(whole_due) {
                                Ok((parts, whole, mut tail)) => {
                                    let secs = took.elapsed().as_secs_f64();
                                    let (seq, name) = match policy.lock() {
                                        Ok(mut p) => p.next(epoch, whole),
                                        Err(_) => (0, String::new()),
                                    };
                                    tail.due = due;
                                    let p = Pending { path: dir.join(name), seq, whole, parts, tail, secs, cut_secs: secs, slices: 0, reply };
                                    capturing = Some(p);
                                    capture_slice(&mut stage, &mut capturing, &hand_over);
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(e));
                                }
                            }
                            continue;
                        }
                        Job::OfferTo(o) => {
                            offers = Some(o);
                            continue;
                        }
                    };
                    // Before the output goes to the commit thread: a sync the commit thread
                    // starts after taking it covers these offers.
                    if let Some(o) = &offers {
                        o.offer(&out.lines);
                    }
                    published.publish(&stage);
                    if out_tx.send(out).is_err() {
                        break;
                    }
                    if capturing.is_some() {
                        capture_slice(&mut stage, &mut capturing, &hand_over);
                    }
                }
                if let Some(p) = capturing.take() {
                    stage.finish_capture();
                    hand_over(p);
                }
                // A storm's state is large: it is freed on a thread of its own, so that the
                // end of a run does not wait for it (when no thread can be made, here).
                let _ = std::thread::Builder::new().name("state-free".into()).spawn(move || drop(stage));
            })
            .expect("spawn state thread");
        Self { tx: Some(tx), rx, outstanding: 0, thread: Some(thread), shed: None, shed_total: 0, shed_logged: None, stop_folding }
    }

    fn submit(&mut self, job: Job) {
        if let Some(tx) = &self.tx {
            if tx.send(job).is_ok() {
                self.outstanding += 1;
            }
        }
    }

    /// Offers the lines of every later job to the outbox's triggers from the alert path's
    /// thread, as soon as they are made.
    pub fn offer_to(&mut self, offers: crate::act::outbox::Offers) {
        if let Some(tx) = &self.tx {
            // No output comes back for it: not outstanding.
            let _ = tx.send(Job::OfferTo(offers));
        }
    }

    /// Takes what the state needs of `batch` (on this thread) and queues it. When
    /// shedding (see [`AlertWorker::shed_when_behind`]) and the alert path is behind, the
    /// less severe alerts are left out first.
    pub fn process(&mut self, batch: &EventBatch, now_us: i64) {
        let mut input = StateInput::from_batch(batch);
        if let (Some(high_water), Some(tx)) = (self.shed, &self.tx) {
            let waiting = tx.len();
            if waiting >= high_water && input.alerts.is_some() {
                let keep = if waiting >= QUEUE { 1 } else { 2 };
                let shed = input.shed_above(keep);
                for (i, n) in shed.iter().enumerate().filter(|(_, n)| **n > 0) {
                    metrics::counter!(m::ALERTS_SHED, "severity" => ["2", "3", "4"][i]).increment(*n);
                }
                let n: u64 = shed.iter().sum();
                if n > 0 {
                    self.shed_total += n;
                    if self.shed_logged.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10)) {
                        self.shed_logged = Some(std::time::Instant::now());
                        tracing::warn!(waiting, kept_severity = keep, shed_total = self.shed_total, "alert path behind: low-severity alerts left out of it");
                    }
                }
            }
        }
        self.submit(Job::Process(Box::new(input), now_us));
    }

    /// Leaves less severe alerts out of the alert path while `high_water` or more batches
    /// wait for it (`[state.overload]`; live runs only): severity 3 and lower, and with a
    /// full queue severity 2 too. They are archived as events all the same.
    pub fn shed_when_behind(&mut self, high_water: usize) {
        self.shed = Some(high_water.clamp(1, QUEUE));
    }

    pub fn advance(&mut self, now_us: i64) {
        // One advance in flight is enough.
        if self.outstanding == 0 {
            self.submit(Job::Advance(now_us));
        }
    }

    pub fn flush(&mut self) {
        self.submit(Job::Flush);
    }

    /// The channel outputs arrive on (to wait for one beside other channels; take them
    /// with [`AlertWorker::ready`]).
    pub fn outputs(&self) -> Receiver<AlertOutput> {
        self.rx.clone()
    }

    pub fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Outputs ready now, in order.
    pub fn ready(&mut self) -> Vec<AlertOutput> {
        self.take(false)
    }

    /// Every outstanding output, waiting for them.
    pub fn drain(&mut self) -> Vec<AlertOutput> {
        self.take(true)
    }

    fn take(&mut self, wait: bool) -> Vec<AlertOutput> {
        let mut out = Vec::new();
        while self.outstanding > 0 {
            let next = if wait { self.rx.recv().ok() } else { self.rx.try_recv().ok() };
            match next {
                Some(o) => {
                    self.outstanding -= 1;
                    out.push(o);
                }
                // Not ready yet, or the thread is gone (then nothing more will come).
                None => {
                    if wait {
                        self.outstanding = 0;
                    }
                    break;
                }
            }
        }
        out
    }

    /// Queues the snapshot of the state after everything submitted so far (call after
    /// [`AlertWorker::drain`]) as the snapshot of commit `epoch` in `dir`, with `due` (JSON:
    /// the output lines about to go out) in it, without waiting: jobs submitted later are
    /// applied after it. Its file is written durably; the answer arrives on the returned
    /// channel (`None`: the state thread is gone).
    pub fn request_snapshot(&mut self, dir: &std::path::Path, epoch: u64, due: Option<String>) -> Option<Receiver<std::io::Result<()>>> {
        let (reply, answer) = bounded(1);
        self.tx.as_ref()?.send(Job::Snapshot(dir.to_path_buf(), epoch, due, reply)).ok()?;
        Some(answer)
    }
}

/// A snapshot on its way to its file.
struct Pending {
    path: std::path::PathBuf,
    seq: u64,
    whole: bool,
    parts: Deferred,
    tail: SnapshotTail,
    /// Time the alert path spent on it: in all, at the cut, and in how many slices after it.
    secs: f64,
    cut_secs: f64,
    slices: u32,
    reply: Sender<std::io::Result<()>>,
}

/// The alert path's time per slice of a delta's capture (a job waits at most this long).
const CAPTURE_SLICE: std::time::Duration = std::time::Duration::from_millis(2);

/// Entries copied between two looks at the clock.
const CAPTURE_CHUNK: usize = 256;

/// Copies a slice of the capture under way; a finished one goes to the snapshot writer.
fn capture_slice(stage: &mut AlertPath, capturing: &mut Option<Pending>, hand_over: &impl Fn(Pending)) {
    let Some(p) = capturing.as_mut() else { return };
    let took = std::time::Instant::now();
    let done = loop {
        let mut budget = CAPTURE_CHUNK;
        if stage.capture_step(&mut budget) {
            break true;
        }
        if took.elapsed() >= CAPTURE_SLICE {
            break false;
        }
    };
    p.secs += took.elapsed().as_secs_f64();
    p.slices += 1;
    if done {
        hand_over(capturing.take().expect("checked"));
    }
}

/// Folds the snapshot chain into a whole snapshot when it is due (see
/// `snapshots::fold`), on a thread of its own.
struct Fold {
    shape: super::alerts::Shape,
    policy: Arc<Mutex<super::snapshots::Policy>>,
    stop: Arc<AtomicBool>,
}

impl Fold {
    /// After delta `seq` (file `path`) was written.
    fn start_if_due(&self, path: &std::path::Path, seq: u64) {
        let Ok(mut pol) = self.policy.lock() else { return };
        if !pol.fold_due() {
            return;
        }
        let Some(dir) = path.parent().map(std::path::Path::to_path_buf) else { return };
        pol.fold_started();
        drop(pol);
        let (shape, policy, stop) = (self.shape.clone(), self.policy.clone(), self.stop.clone());
        let spawned = std::thread::Builder::new().name("snapshot-fold".into()).spawn(move || {
            crate::event::thread::run_in_background();
            let took = std::time::Instant::now();
            let res = super::snapshots::fold(&dir, seq, shape.empty(), &stop);
            let folded = match &res {
                Ok(Some(f)) => {
                    metrics::counter!(m::STATE_SNAPSHOTS, "kind" => "whole").increment(1);
                    tracing::debug!(
                        snapshot = %f.file.path.display(),
                        bytes = f.bytes,
                        read_files = f.read_files,
                        read_bytes = f.read_bytes,
                        ms = (took.elapsed().as_secs_f64() * 1000.0).round(),
                        "state snapshots folded"
                    );
                    Some((f.file.seq, f.bytes))
                }
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%error, "folding the state snapshots failed; the next snapshot is written whole");
                    None
                }
            };
            if let Ok(mut pol) = policy.lock() {
                pol.fold_ended(folded);
            }
        });
        if spawned.is_err() {
            if let Ok(mut pol) = self.policy.lock() {
                pol.fold_ended(None);
            }
        }
    }
}

/// Serializes a snapshot (what was left to serialize), completes it with its tail, writes
/// it durably and answers (on the snapshot thread); whether it was written.
fn write_snapshot(p: Pending, policy: &Mutex<super::snapshots::Policy>) -> bool {
    let took = std::time::Instant::now();
    let (parts, tail, seq, whole) = (p.parts, p.tail, p.seq, p.whole);
    let mut state_bytes = 0;
    let res = super::alerts::write_durably_with(&p.path, |w| {
        let mut head = super::alerts::HeldBack::new(w);
        parts.write(&mut head)?;
        state_bytes = head.bytes();
        if let Ok(mut pol) = policy.lock() {
            pol.wrote(seq, whole, state_bytes);
        }
        metrics::gauge!(m::STATE_SNAPSHOT_BYTES).set(state_bytes as f64);
        metrics::counter!(m::STATE_SNAPSHOTS, "kind" => if whole { "whole" } else { "delta" }).increment(1);
        tail.append_to(head)
    })
    .map(|()| {
        tracing::debug!(
            bytes = state_bytes,
            whole,
            ms = (p.secs * 1000.0).round(),
            cut_ms = (p.cut_secs * 1000.0).round(),
            slices = p.slices,
            write_ms = (took.elapsed().as_secs_f64() * 1000.0).round(),
            "state snapshot taken"
        );
    });
    let ok = res.is_ok();
    let _ = p.reply.send(res);
    ok
}

impl Drop for AlertWorker {
    fn drop(&mut self) {
        self.stop_folding.store(true, Ordering::Relaxed);
        self.tx = None;
        // Unblock the thread if it waits to hand over an output.
        while self.rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Counter values already published (metrics take increments).
#[derive(Default)]
struct Published {
    alerts: u64,
    late: u64,
    suppressed: u64,
    rollups: u64,
    opened: u64,
    evicted: u64,
    late_handled: [u64; 4],
    context: [u64; 5],
    enrich: [u64; 7],
    priority: [u64; 5],
    rule_errors: u64,
    triage: [u64; 5],
    /// When open incidents were last counted.
    counted_open: Option<std::time::Instant>,
}

impl Published {
    fn publish(&mut self, path: &AlertPath) {
        if self.counted_open.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
            self.counted_open = Some(std::time::Instant::now());
            let open = path.open_incidents();
            metrics::gauge!(m::STATE_INCIDENTS_OPEN).set(open as f64);
            if let Some(s) = path.run_stats() {
                s.open_incidents.store(open, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stage = path.state();
        let c = stage.counts;
        let d = stage.dedup_counts();
        let k = stage.correlation_counts();
        let bump = |name: &'static str, now: u64, seen: &mut u64| {
            if now > *seen {
                metrics::counter!(name).increment(now - *seen);
                *seen = now;
            }
        };
        bump(m::STATE_ALERTS, c.alerts, &mut self.alerts);
        bump(m::STATE_LATE, c.late, &mut self.late);
        bump(m::STATE_SUPPRESSED, d.suppressed, &mut self.suppressed);
        bump(m::STATE_ROLLUPS, c.rollups, &mut self.rollups);
        bump(m::STATE_INCIDENTS_OPENED, k.opened, &mut self.opened);
        bump(m::STATE_DEDUP_EVICTIONS, d.evicted, &mut self.evicted);
        let late = [c.late_output, k.late_skipped, k.late_reevaluated, k.corrected];
        for (i, policy) in ["late_output", "dropped", "reevaluated", "corrected"].into_iter().enumerate() {
            if late[i] > self.late_handled[i] {
                metrics::counter!(m::STATE_LATE_HANDLED, "policy" => policy).increment(late[i] - self.late_handled[i]);
                self.late_handled[i] = late[i];
            }
        }
        let x = stage.context_counts();
        let ctx = [x.events, x.evicted, x.expired, x.items_dropped, x.alerts_with_context];
        for (i, (name, reason)) in [
            (m::STATE_CONTEXT_EVENTS, ""),
            (m::STATE_CONTEXT_EVICTIONS, "cap"),
            (m::STATE_CONTEXT_EVICTIONS, "ttl"),
            (m::STATE_CONTEXT_EVICTIONS, "items"),
            (m::STATE_CONTEXT_ALERTS, ""),
        ]
        .into_iter()
        .enumerate()
        {
            if ctx[i] > self.context[i] {
                let n = ctx[i] - self.context[i];
                if reason.is_empty() {
                    metrics::counter!(name).increment(n);
                } else {
                    metrics::counter!(name, "reason" => reason).increment(n);
                }
                self.context[i] = ctx[i];
            }
        }
        metrics::gauge!(m::STATE_CONTEXT_BYTES).set(stage.context_bytes() as f64);
        if let Some(e) = path.enrich_counts() {
            let now = [e.alerts, e.geo_lookups, e.geo_memo_hits, e.bad_ip, e.geo_errors, e.sightings, e.sightings_repeated];
            let names: [(&'static str, &'static str); 7] = [
                (m::ENRICH_ALERTS, ""),
                (m::ENRICH_GEO_LOOKUPS, ""),
                (m::ENRICH_GEO_MEMO_HITS, ""),
                (m::ENRICH_LOOKUP_FAILURES, "bad_ip"),
                (m::ENRICH_LOOKUP_FAILURES, "geo_decode"),
                (m::ENRICH_SIGHTINGS, ""),
                (m::ENRICH_SIGHTINGS_REPEATED, ""),
            ];
            for (i, (name, reason)) in names.into_iter().enumerate() {
                if now[i] > self.enrich[i] {
                    let n = now[i] - self.enrich[i];
                    if reason.is_empty() {
                        metrics::counter!(name).increment(n);
                    } else {
                        metrics::counter!(name, "reason" => reason).increment(n);
                    }
                    self.enrich[i] = now[i];
                }
            }
        }
        let sc = path.score_counts;
        for (i, p) in ["info", "low", "medium", "high", "critical"].into_iter().enumerate() {
            if sc.by_priority[i] > self.priority[i] {
                metrics::counter!(m::SCORE_ALERTS, "priority" => p).increment(sc.by_priority[i] - self.priority[i]);
                self.priority[i] = sc.by_priority[i];
            }
        }
        bump(m::SCORE_RULE_ERRORS, sc.rule_errors, &mut self.rule_errors);
        if let Some(t) = path.triage() {
            let c = t.counts;
            let now = [c.alerts, c.incidents_opened, c.evicted_entities, c.evicted_signatures, c.evicted_pairs];
            let names: [(&'static str, &'static str); 5] = [
                (m::TRIAGE_ALERTS, ""),
                (m::TRIAGE_INCIDENTS, ""),
                (m::TRIAGE_EVICTED, "entities"),
                (m::TRIAGE_EVICTED, "signatures"),
                (m::TRIAGE_EVICTED, "pairs"),
            ];
            for (i, (name, map)) in names.into_iter().enumerate() {
                if now[i] > self.triage[i] {
                    let n = now[i] - self.triage[i];
                    if map.is_empty() {
                        metrics::counter!(name).increment(n);
                    } else {
                        metrics::counter!(name, "map" => map).increment(n);
                    }
                    self.triage[i] = now[i];
                }
            }
            metrics::gauge!(m::TRIAGE_ENTITIES).set(t.entities() as f64);
        }
    }
}
