//! The commit protocol: parsed batches in (from the parse workers), sealed archive
//! commits, the alert path's snapshot and notifications out.
//!
//! One thread owns it. It keeps the batches of each positioned stream in their original
//! order (a reorder buffer per stream), hands their rows to the archive's segments and
//! their alerts to the alert path, advances the source positions, and decides when to
//! commit: open bytes ≥ `segment_max_bytes`, more partitions than `max_open_partitions`,
//! no new rows for `idle_seal`, the oldest open row older than `max_segment_age`, too many
//! notifications waiting, and shutdown.
//!
//! A commit: (1) drain the alert path, so every output of the commit's batches is in it;
//! (2) cut: the lanes seal the open segments with the positions in their footers (fsynced
//! temporaries) and the alert path saves its snapshot of this point, both while new
//! batches go on into the next epoch's segments (one commit in flight at a time); once both
//! are done, (3) rename the temporaries into place — the first rename is the commit point;
//! (4) publish "sealed up to here" to the sources that acknowledge upstream (Redis); (5)
//! append the commit's notification lines to the output files. A restart from a commit
//! continues with exactly its snapshot, and a line is only written once its rows are
//! durable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::alert_worker::AlertWorker;
use super::alerts::{AlertOutput, AlertPath};
use crate::archive::recovery::Recovered;
use crate::archive::{ArchiveConfig, ArchiveError, ArchiveTotals, Segments, Table};
use crate::event::handoff::ParsedBatch;
use crate::event::position::{Checkpoint, Position, Sealed};
use crate::event::time::wall_clock_us;
use crate::output::file::{OutputError, Outputs, MAX_PENDING_LINES};

impl From<OutputError> for ArchiveError {
    fn from(e: OutputError) -> Self {
        ArchiveError::Io { path: e.path, error: e.source }
    }
}

/// Snapshot file of the alert path after commit `epoch`, in the single-file form of
/// earlier versions (restored when no newer snapshot is there).
fn state_file(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("state-{epoch:012}.json"))
}

/// Restores the alert path from the snapshot of the newest commit (`epoch` − 1): its base
/// and deltas in order (see `snapshots`), after removing snapshots of a commit that did
/// not land. Returns which snapshot comes next and the due lines of the newest.
fn restore_state(dir: &Path, epoch: u64, path: &mut AlertPath) -> Result<(super::snapshots::Policy, Option<crate::output::file::DueLines>), ArchiveError> {
    use super::snapshots;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ArchiveError::Io { path, error }
    };
    let files = snapshots::remove_uncommitted(dir, epoch).map_err(io(dir))?;
    if epoch == 0 {
        return Ok((snapshots::Policy::empty(), None));
    }
    let newest_seq = files.last().map_or(0, |f| f.seq);
    let chain = snapshots::chain(&files).map_err(|reason| ArchiveError::BadSegment { path: dir.to_path_buf(), reason })?;
    let mut restored = Vec::new();
    let mut due = None;
    let mut restore = |f: &Path, text: &str| -> Result<(), ArchiveError> {
        let bad = |e: serde_json::Error| ArchiveError::BadSegment { path: f.to_path_buf(), reason: format!("state snapshot: {e}") };
        path.restore(text).map_err(bad)?;
        due = crate::output::file::DueLines::in_snapshot(text).map_err(bad)?;
        Ok(())
    };
    for f in chain {
        let text = std::fs::read_to_string(&f.path).map_err(io(&f.path))?;
        restore(&f.path, &text)?;
        restored.push((f, text.len() as u64));
    }
    if restored.is_empty() {
        let f = state_file(dir, epoch - 1);
        match std::fs::read_to_string(&f) {
            Ok(text) => restore(&f, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::Io { path: f, error: e }),
        }
    }
    if let Some((last, _)) = restored.last() {
        tracing::info!(snapshot = %last.path.display(), files = restored.len(), bytes = restored.iter().map(|(_, b)| b).sum::<u64>(), "state restored");
    }
    Ok((snapshots::Policy::after(&restored, newest_seq), due))
}

#[derive(Default)]
struct Reorder {
    next: u64,
    waiting: BTreeMap<u64, ParsedBatch>,
}

/// A snapshot being written: its file and the answer to wait for.
type SnapshotWait = (PathBuf, crossbeam_channel::Receiver<std::io::Result<()>>);

/// A commit cut from the stream: its lanes seal its segments and the alert path saves its
/// snapshot while new batches go on into the next commit's segments.
struct InFlight {
    seal: crate::archive::PendingSeal,
    /// The alert path's snapshot for this commit, being saved.
    snapshot: Option<SnapshotWait>,
    /// The positions this commit covers (published once it lands).
    checkpoint: Checkpoint,
}

impl InFlight {
    fn ready(&mut self) -> bool {
        self.seal.ready() && self.snapshot.as_ref().is_none_or(|(_, rx)| !rx.is_empty())
    }
}

/// The alert path and what belongs to it: its snapshot directory and the output files.
struct Alerts {
    worker: AlertWorker,
    dir: PathBuf,
    outputs: Outputs,
}

pub struct Committer {
    segments: Segments,
    checkpoint: Checkpoint,
    reorder: HashMap<(usize, u64), Reorder>,
    sealed: Arc<Sealed>,
    /// Dedup, correlation, enrichment and scoring of alerts, run on batches in archive order.
    alerts: Option<Alerts>,
    /// Too many notifications wait: commit at the next opportunity.
    commit_due: bool,
    /// Triggers and the outbox of actions (`[actions]`).
    actions: Option<(crate::act::outbox::Outbox, PathBuf)>,
    /// The commit being completed, if any (at most one).
    in_flight: Option<InFlight>,
}

impl Committer {
    /// Opens the archive (recovery included) and returns the coordinator with what
    /// recovery found (the positions to resume from).
    pub fn open(cfg: ArchiveConfig) -> Result<(Self, Recovered), ArchiveError> {
        let (segments, rec) = Segments::open(cfg)?;
        let c = Self {
            segments,
            checkpoint: rec.checkpoint.clone(),
            reorder: HashMap::new(),
            sealed: Arc::new(Sealed::new(rec.checkpoint.clone())),
            alerts: None,
            commit_due: false,
            actions: None,
            in_flight: None,
        };
        Ok((c, rec))
    }

    /// Turns on the alert path: the `alerts` and `incidents` tables fill from the events,
    /// and the snapshot saved with the newest commit is restored.
    pub fn enable_alerts(&mut self, mut path: AlertPath, output: Option<PathBuf>, late_output: Option<PathBuf>, audit: bool) -> Result<(), ArchiveError> {
        let dir = self.segments.root().join("_state");
        std::fs::create_dir_all(&dir).map_err(|error| ArchiveError::Io { path: dir.clone(), error })?;
        let epoch = self.segments.epoch();
        let (policy, due) = restore_state(&dir, epoch, &mut path)?;
        let audit_path = audit.then(|| crate::output::audit::path_in(self.segments.root()));
        let mut outputs = Outputs::open(output, late_output, audit_path)?;
        // Records a crash kept from the trail go in now, once: rebuilt from the `actions`
        // rows of the commits that made them (or, from a snapshot of an earlier version,
        // as it held them), up to the restored chain's head.
        let held = path.take_recovered_audit();
        let upto = path.audit_chain().map_or(0, |c| c.seq);
        let root = self.segments.root().to_path_buf();
        let recovered = outputs.recover_audit(|last| match last < upto && held.is_empty() {
            true => {
                let lines = audit_records(&root, last, upto).map_err(std::io::Error::other)?;
                match lines.len() as u64 == upto - last {
                    true => Ok(lines),
                    false => Err(std::io::Error::other(format!(
                        "the trail ends at record {last} and the newest commit's chain at {upto}, but the `actions` table holds {} of the records between",
                        lines.len()
                    ))),
                }
            }
            false => Ok(held),
        })?;
        if recovered > 0 {
            tracing::info!(records = recovered, "audit records the trail lacked appended");
        }
        // Lines of the newest commit a crash kept from the output files go out now, once.
        if let Some(due) = due {
            let n = outputs.catch_up(&due)?;
            if n > 0 {
                tracing::info!(lines = n, "output lines of the last commit written");
            }
        }
        self.alerts = Some(Alerts { worker: AlertWorker::spawn(path, policy), dir, outputs });
        Ok(())
    }

    /// Leaves less severe alerts out of the alert path while it is behind (see
    /// [`AlertWorker::shed_when_behind`]).
    pub fn shed_when_behind(&mut self, high_water: usize) {
        if let Some(a) = self.alerts.as_mut() {
            a.worker.shed_when_behind(high_water);
        }
    }

    /// Starts the outbox (after [`Committer::enable_alerts`]): the alert path's lines go to
    /// the triggers from its own thread as they are made, and every commit point waits until
    /// the actions they queued are journaled.
    pub fn enable_actions(&mut self, cfg: crate::act::ActionsConfig) -> Result<(), ArchiveError> {
        let path = crate::act::journal::path_in(self.segments.root());
        let (outbox, restored) =
            crate::act::outbox::Outbox::start(cfg, path.clone()).map_err(|e| ArchiveError::Io { path: path.clone(), error: std::io::Error::other(e) })?;
        if restored.pending > 0 {
            tracing::info!(pending = restored.pending, delivered = restored.delivered, dead = restored.dead, "actions of the last run resumed");
        }
        match self.alerts.as_mut() {
            Some(a) => a.worker.offer_to(outbox.offers()),
            None => tracing::warn!("actions configured without the alert path: nothing will trigger them"),
        }
        self.actions = Some((outbox, path));
        Ok(())
    }

    /// The alert path's output channel, when it runs (see [`Committer::collect_ready`]).
    pub fn alert_outputs(&self) -> Option<crossbeam_channel::Receiver<AlertOutput>> {
        self.alerts.as_ref().map(|a| a.worker.outputs())
    }

    /// Whether the alert path's thread still runs.
    pub fn alert_thread_running(&self) -> bool {
        self.alerts.as_ref().is_some_and(|a| a.worker.running())
    }

    /// Takes the alert path's outputs that are ready: their rows go to the segments, their
    /// lines to the triggers at once (not at the next batch or tick).
    pub fn collect_ready(&mut self) -> Result<(), ArchiveError> {
        self.poll_commit()?;
        self.collect(false)?;
        if std::mem::take(&mut self.commit_due) {
            self.commit()?;
        }
        Ok(())
    }

    /// Positions of the newest commit, for sources that acknowledge upstream.
    pub fn sealed(&self) -> Arc<Sealed> {
        self.sealed.clone()
    }

    pub fn totals(&self) -> ArchiveTotals {
        self.segments.totals()
    }

    /// Takes a parsed batch. Batches of a positioned stream are applied in sequence order.
    pub fn accept(&mut self, batch: ParsedBatch) -> Result<(), ArchiveError> {
        if matches!(batch.position, Position::None) {
            return self.apply(batch);
        }
        let key = (batch.source.id, batch.stream);
        let r = self.reorder.entry(key).or_default();
        if batch.seq != r.next {
            r.waiting.insert(batch.seq, batch);
            return Ok(());
        }
        r.next += 1;
        self.apply(batch)?;
        loop {
            let r = self.reorder.get_mut(&key).expect("entry exists");
            let next = r.next;
            match r.waiting.remove(&next) {
                Some(b) => {
                    r.next += 1;
                    self.apply(b)?;
                }
                None => break,
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: ParsedBatch) -> Result<(), ArchiveError> {
        self.poll_commit()?;
        if let (Some(a), true) = (&mut self.alerts, batch.events.num_rows() > 0) {
            // Cheap: the columns are shared, not copied.
            a.worker.process(&batch.events, wall_clock_us());
        }
        self.segments.write(Table::Events, batch.events)?;
        self.collect(false)?;
        if std::mem::take(&mut self.commit_due) {
            self.commit()?;
        }
        match &batch.position {
            Position::File { fingerprint, offset, path } => self.checkpoint.advance(&batch.source.name, *fingerprint, *offset, path),
            Position::Redis(r) => self.checkpoint.advance_redis(&batch.source.name, r),
            Position::None => {}
        }
        if self.segments.full() {
            self.commit()?;
        }
        Ok(())
    }

    /// Sends the alert path's table rows to the segments and holds its lines for the commit
    /// (the outbox has been offered them on the alert path's thread).
    fn write_alert_output(&mut self, out: AlertOutput) -> Result<(), ArchiveError> {
        for (table, batch) in [(Table::Alerts, out.alerts), (Table::Incidents, out.incidents), (Table::Actions, out.actions)] {
            if let Some(batch) = batch {
                self.segments.write(table, batch)?;
            }
        }
        if let Some(a) = self.alerts.as_mut() {
            a.outputs.hold(out.lines, out.late_lines, out.audit);
            // Notifications wait for their commit: bound what waits (the caller commits).
            self.commit_due |= a.outputs.held() >= MAX_PENDING_LINES;
        }
        Ok(())
    }

    /// Writes the alert path's outputs that are ready (or, with `wait`, all outstanding ones).
    fn collect(&mut self, wait: bool) -> Result<(), ArchiveError> {
        let outs = match self.alerts.as_mut() {
            Some(a) if wait => a.worker.drain(),
            Some(a) => a.worker.ready(),
            None => return Ok(()),
        };
        for o in outs {
            self.write_alert_output(o)?;
        }
        Ok(())
    }

    /// Cuts the alert path after everything submitted: its lines held so far go with
    /// commit `epoch`, and its state then is saved as that commit's snapshot — on its own
    /// thread; the answer comes on the returned channel.
    fn cut_alerts(&mut self, epoch: u64) -> Result<Option<SnapshotWait>, ArchiveError> {
        self.collect(true)?;
        // The actions of the decisions this snapshot moves past are journaled first: a
        // restart from it cannot make them again.
        if let Some((o, path)) = &self.actions {
            o.sync().map_err(|e| ArchiveError::Io { path: path.clone(), error: std::io::Error::other(e) })?;
        }
        let Some(a) = self.alerts.as_mut() else { return Ok(None) };
        a.outputs.cut();
        // The lines this commit will append, with their offsets: a restart after a crash
        // between the commit point and the writes finishes them.
        let due = a.outputs.due().map(|d| serde_json::to_string(&d).expect("lines serialize"));
        Ok(a.worker.request_snapshot(&a.dir, epoch, due).map(|rx| (a.dir.clone(), rx)))
    }

    fn lines_waiting(&self) -> bool {
        self.alerts.as_ref().is_some_and(|a| a.outputs.held() > 0)
    }

    /// Whether a commit is being completed (see [`Committer::poll_commit`]).
    pub fn commit_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Completes the commit in flight if its lanes and snapshot are done (without waiting).
    pub fn poll_commit(&mut self) -> Result<(), ArchiveError> {
        if self.in_flight.as_mut().is_some_and(|f| f.ready()) {
            self.complete_commit()?;
        }
        Ok(())
    }

    /// Completes the commit in flight, waiting for its lanes and snapshot: the snapshot is
    /// durable, the temporaries are renamed into place (the first rename is the commit
    /// point), the positions are published, the commit's lines are written.
    fn complete_commit(&mut self) -> Result<(), ArchiveError> {
        let Some(f) = self.in_flight.take() else { return Ok(()) };
        let epoch = f.seal.epoch();
        let sealed = f.seal.wait()?;
        // The state after this commit is saved before the commit point: a restart from
        // this commit continues with exactly this state. (No answer: the state thread is
        // gone, and the pipeline stops on that.)
        if let Some((path, rx)) = f.snapshot {
            if let Ok(res) = rx.recv() {
                res.map_err(|e| ArchiveError::Io { path, error: e })?;
            }
        }
        self.segments.publish(sealed)?;
        self.sealed.publish(&f.checkpoint);
        if let Some(a) = self.alerts.as_mut() {
            a.outputs.emit()?;
            // Snapshots nothing builds on any more (the newest commit is this one).
            if let Err(error) = super::snapshots::remove_unneeded(&a.dir, epoch) {
                tracing::warn!(%error, dir = %a.dir.display(), "old state snapshots not removed");
            }
        }
        Ok(())
    }

    /// Called periodically: moves event time on for idle sources, seals on idle time or
    /// segment age.
    pub fn tick(&mut self) -> Result<(), ArchiveError> {
        self.poll_commit()?;
        self.segments.maintain();
        if let Some(a) = self.alerts.as_mut() {
            a.worker.advance(wall_clock_us());
            let rows_before = self.segments.open_rows();
            self.collect(false)?;
            if self.segments.open_rows() > rows_before {
                self.segments.touch();
            }
        }
        if self.segments.open_rows() == 0 {
            if self.lines_waiting() && !self.commit_in_flight() {
                self.emit_without_rows()?;
            }
            return Ok(());
        }
        if self.segments.due() || std::mem::take(&mut self.commit_due) {
            self.commit()?;
        }
        Ok(())
    }

    /// Cuts a commit: every open segment is sealed with the current positions and the alert
    /// path's state at this point is saved, while new batches go on into the next commit's
    /// segments; [`Committer::poll_commit`] lands it once both are done. A commit in flight
    /// lands first (one at a time). A commit with no rows writes nothing (its positions are
    /// carried by the next commit).
    pub fn commit(&mut self) -> Result<(), ArchiveError> {
        self.complete_commit()?;
        // Every output of the batches so far belongs to this commit.
        self.collect(true)?;
        self.commit_due = false;
        if self.segments.open_rows() == 0 {
            if self.lines_waiting() {
                self.emit_without_rows()?;
            }
            return Ok(());
        }
        let ckpt = serde_json::to_string(&self.checkpoint).expect("checkpoint serializes");
        let seal = self.segments.begin_seal(&ckpt)?;
        let snapshot = self.cut_alerts(seal.epoch())?;
        self.in_flight = Some(InFlight { seal, snapshot, checkpoint: self.checkpoint.clone() });
        Ok(())
    }

    /// Notifications produced without new rows (roll-ups, a watermark moving on): the
    /// state is saved over the newest commit's snapshot (the archive position is the
    /// same), then the lines go out.
    fn emit_without_rows(&mut self) -> Result<(), ArchiveError> {
        self.complete_commit()?;
        self.collect(true)?;
        if self.segments.open_rows() > 0 {
            // The outputs brought rows: they and the lines go with the next commit.
            return Ok(());
        }
        let epoch = self.segments.epoch();
        let snapshot = match epoch {
            0 => {
                if let Some(a) = self.alerts.as_mut() {
                    a.outputs.cut();
                }
                None
            }
            _ => self.cut_alerts(epoch - 1)?,
        };
        if let Some((path, rx)) = snapshot {
            if let Ok(res) = rx.recv() {
                res.map_err(|e| ArchiveError::Io { path, error: e })?;
            }
        }
        match self.alerts.as_mut() {
            Some(a) => Ok(a.outputs.emit()?),
            None => Ok(()),
        }
    }

    /// End of a replay: every open dedup key rolls up and every open incident closes.
    pub fn flush_alerts(&mut self) -> Result<(), ArchiveError> {
        let Some(a) = self.alerts.as_mut() else { return Ok(()) };
        a.worker.flush();
        self.collect(true)
    }

    /// Seals everything and stops the lanes (shutdown, end of replay).
    pub fn finish(mut self) -> Result<ArchiveTotals, ArchiveError> {
        // Batches still waiting for an earlier sequence number cannot be archived without
        // a gap; they are read again after restart.
        let waiting: usize = self.reorder.values().map(|r| r.waiting.len()).sum();
        if waiting > 0 {
            tracing::warn!(batches = waiting, "batches left out of order at shutdown; they will be read again");
        }
        self.commit()?;
        self.complete_commit()?;
        if let Some((o, _)) = self.actions.take() {
            o.stop();
        }
        let totals = self.segments.totals();
        // The alert path's thread ends before the lanes.
        self.alerts = None;
        self.segments.close();
        Ok(totals)
    }
}

/// The audit trail's records after number `after`, up to `upto`, rebuilt from the
/// archive's `actions` rows (`alertflow audit verify` and the start after a crash).
pub fn audit_records(root: &std::path::Path, after: u64, upto: u64) -> Result<Vec<String>, String> {
    let rows = crate::archive::tail::rows_after(root, Table::Actions, "seq", after as i64).map_err(|e| e.to_string())?;
    crate::output::audit::lines_of_rows(&rows, after + 1..=upto)
}
