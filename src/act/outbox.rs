//! The outbox thread: picks from triggers become journaled entries, delivered by worker
//! threads per destination (`concurrency` each) under rate limits, per-key spacing, retries
//! with exponential backoff and jitter, and a circuit breaker.
//!
//! Durability: [`Outbox::sync`] returns once every line offered before it is journaled and
//! fsynced; the committer calls it before each archive commit point, so a decision the
//! archive has moved past is in the journal, and a decision made again after a restart
//! finds its key there.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use serde_json::{json, Value};

use super::journal::{Journal, Status};
use super::trigger::Triggers;
use super::{exec, id_of, template, ActionsConfig, Destination, Job, Kind, On, Outcome};
use crate::metrics as m;

enum Msg {
    Offer(Vec<String>),
    Sync(Sender<Result<(), String>>),
    Stop(Sender<usize>),
}

/// The handle the pipeline holds.
pub struct Outbox {
    tx: Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the journal held at start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub pending: usize,
    pub delivered: usize,
    pub dead: usize,
}

struct Entry {
    key: String,
    id: String,
    trigger: String,
    on: On,
    data: Arc<Value>,
    attempts: u32,
}

struct Dest {
    cfg: Destination,
    /// (due, entry).
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    inflight: usize,
    failures: u32,
    open_until: Option<Instant>,
    tokens: f64,
    refilled: Instant,
    per_key_next: HashMap<String, Instant>,
    jobs: Sender<Job>,
}

/// Picks held for a digest.
struct Held {
    since_us: i64,
    items: Vec<(u64, Arc<Value>)>,
}

/// Items a digest lists in full (the rest are counted).
const DIGEST_ITEMS: usize = 100;

struct Core {
    cfg: ActionsConfig,
    /// By (trigger, destination).
    digests: HashMap<(usize, usize), Held>,
    dests: Vec<Dest>,
    entries: HashMap<u64, Entry>,
    keys: HashMap<String, u64>,
    key_order: VecDeque<String>,
    journal: Journal,
    triggers: Triggers,
    stopping: Option<(Instant, Sender<usize>)>,
}

fn now_us() -> i64 {
    crate::event::time::wall_clock_us()
}

/// A fraction in [0.5, 1.5) for jitter, different per entry and attempt.
fn jitter(entry: u64, attempt: u32) -> f64 {
    let h = xxhash_rust::xxh3::xxh3_64(&[entry.to_le_bytes(), (attempt as u64).to_le_bytes(), (now_us() as u64).to_le_bytes()].concat());
    0.5 + (h % 10_000) as f64 / 10_000.0
}

impl Core {
    fn remember(&mut self, key: &str, seq: u64) {
        if self.keys.insert(key.to_string(), seq).is_none() {
            self.key_order.push_back(key.to_string());
            while self.key_order.len() > self.cfg.remember_keys {
                if let Some(old) = self.key_order.pop_front() {
                    self.keys.remove(&old);
                }
            }
        }
    }

    fn dest_index(&self, name: &str) -> Option<usize> {
        self.dests.iter().position(|d| d.cfg.name == name)
    }

    /// Rebuilds queue, keys and cool-downs from the journal's records.
    fn restore(&mut self, records: Vec<Value>) -> Restored {
        let mut r = Restored::default();
        let now = Instant::now();
        for e in super::journal::entries(&records) {
            self.remember(&e.key, e.entry);
            if let (Some(slot), Ok(ts)) = (&e.cooldown, e.queued.parse::<jiff::Timestamp>()) {
                self.triggers.fired(slot, ts.as_microsecond());
            }
            match e.status {
                Status::Held => {
                    let trigger = (0..self.cfg.triggers.len()).find(|&i| self.triggers.get(i).cfg.name == e.trigger);
                    if let (Some(t), Some(d)) = (trigger, self.dest_index(&e.action)) {
                        self.digests.entry((t, d)).or_insert_with(|| Held { since_us: now_us(), items: Vec::new() }).items.push((e.entry, Arc::new(e.data)));
                        r.pending += 1;
                    }
                }
                Status::Digested => r.delivered += 1,
                Status::Delivered => r.delivered += 1,
                Status::Dead | Status::Dropped => r.dead += 1,
                Status::Pending => {
                    let Some(dest) = self.dest_index(&e.action) else {
                        self.journal.add(
                            now_us(),
                            "action_dead",
                            &e.key,
                            &json!({"entry": e.entry, "action": e.action, "error": "the destination is no longer configured"}),
                        );
                        r.dead += 1;
                        continue;
                    };
                    let on = On::from_name(&e.event).unwrap_or(On::Alert);
                    self.entries.insert(e.entry, Entry { id: id_of(&e.key), key: e.key, trigger: e.trigger, on, data: Arc::new(e.data), attempts: e.attempts });
                    self.dests[dest].queue.push(Reverse((now, e.entry)));
                    r.pending += 1;
                }
            }
        }
        r
    }

    fn offer(&mut self, lines: Vec<String>) {
        for l in lines {
            let Ok(v) = serde_json::from_str::<Value>(&l) else { continue };
            let errors = self.triggers.errors;
            let cooled = self.triggers.cooled;
            let picks = self.triggers.pick(&v);
            if self.triggers.errors > errors {
                metrics::counter!(m::ACTIONS_SKIPPED, "reason" => "condition_error").increment(self.triggers.errors - errors);
            }
            if self.triggers.cooled > cooled {
                metrics::counter!(m::ACTIONS_SKIPPED, "reason" => "cooldown").increment(self.triggers.cooled - cooled);
            }
            if picks.is_empty() {
                continue;
            }
            let data = Arc::new(v);
            for p in picks {
                if self.keys.contains_key(&p.key) {
                    metrics::counter!(m::ACTIONS_SKIPPED, "reason" => "duplicate").increment(1);
                    continue;
                }
                let name = self.dests[p.action].cfg.name.clone();
                let trigger = self.triggers.get(p.trigger).cfg.name.clone();
                if !self.triggers.get(p.trigger).cfg.digest.is_zero() {
                    let detail = json!({"action": name, "trigger": trigger, "event": p.on.as_str(), "cooldown": p.cooldown, "data": &*data});
                    let seq = self.journal.add(p.ts_us, "action_held", &p.key, &detail);
                    self.remember(&p.key, seq);
                    let h = self.digests.entry((p.trigger, p.action)).or_insert_with(|| Held { since_us: now_us(), items: Vec::new() });
                    h.items.push((seq, data.clone()));
                    continue;
                }
                if self.entries.len() >= self.cfg.queue_max {
                    let seq = self.journal.add(
                        p.ts_us,
                        "action_queued",
                        &p.key,
                        &json!({"action": name, "trigger": trigger, "event": p.on.as_str(), "cooldown": p.cooldown, "data": &*data}),
                    );
                    self.journal.add(now_us(), "action_dropped", &p.key, &json!({"entry": seq, "action": name, "error": "queue full"}));
                    self.remember(&p.key, seq);
                    metrics::counter!(m::ACTIONS_SKIPPED, "reason" => "queue_full").increment(1);
                    continue;
                }
                let seq = self.journal.add(
                    p.ts_us,
                    "action_queued",
                    &p.key,
                    &json!({"action": name, "trigger": trigger, "event": p.on.as_str(), "cooldown": p.cooldown, "data": &*data}),
                );
                self.remember(&p.key, seq);
                metrics::counter!(m::ACTIONS_QUEUED, "action" => name).increment(1);
                self.entries.insert(seq, Entry { id: id_of(&p.key), key: p.key, trigger, on: p.on, data: data.clone(), attempts: 0 });
                self.dests[p.action].queue.push(Reverse((Instant::now(), seq)));
            }
        }
    }

    /// Queues the digests that are due (all of them with `all`: shutdown, end of a replay).
    fn digests_due(&mut self, all: bool) {
        let now = now_us();
        let due: Vec<(usize, usize)> =
            self.digests.iter().filter(|((t, _), h)| all || now - h.since_us >= self.triggers.get(*t).cfg.digest.as_micros() as i64).map(|(k, _)| *k).collect();
        for (t, d) in due {
            let Some(h) = self.digests.remove(&(t, d)) else { continue };
            if h.items.is_empty() {
                continue;
            }
            let trigger = self.triggers.get(t).cfg.name.clone();
            let name = self.dests[d].cfg.name.clone();
            let seen = |k: &'static str| -> Vec<String> {
                h.items.iter().filter_map(|(_, v)| v.get(k).or_else(|| v.get("timestamp")).and_then(Value::as_str).map(str::to_string)).collect()
            };
            let first = seen("first_seen").into_iter().min();
            let last = seen("last_seen").into_iter().max();
            let summary: Vec<String> = h
                .items
                .iter()
                .take(20)
                .map(|(_, v)| {
                    template::render("[{priority}] {signature}{rule} {group_key}{status} {src_ip} {dest_ip}", v)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let data = json!({
                "type": "digest",
                "trigger": trigger,
                "count": h.items.len(),
                "first_seen": first,
                "last_seen": last,
                "summary": summary.join("\n"),
                "items": h.items.iter().take(DIGEST_ITEMS).map(|(_, v)| &**v).collect::<Vec<_>>(),
                "omitted": h.items.len().saturating_sub(DIGEST_ITEMS),
            });
            let key = format!("digest/{trigger}/{name}/{}", h.since_us);
            let held: Vec<u64> = h.items.iter().map(|(s, _)| *s).collect();
            let seq = self.journal.add(now, "action_queued", &key, &json!({"action": name, "trigger": trigger, "event": "digest", "held": held, "data": data}));
            self.remember(&key, seq);
            metrics::counter!(m::ACTIONS_QUEUED, "action" => name).increment(1);
            self.entries.insert(seq, Entry { id: id_of(&key), key, trigger, on: On::Digest, data: Arc::new(data), attempts: 0 });
            self.dests[d].queue.push(Reverse((Instant::now(), seq)));
        }
    }

    fn result(&mut self, dest: usize, seq: u64, outcome: Outcome) {
        let d = &mut self.dests[dest];
        d.inflight = d.inflight.saturating_sub(1);
        let Some(e) = self.entries.get_mut(&seq) else { return };
        e.attempts += 1;
        let name = d.cfg.name.clone();
        let attempt = e.attempts;
        match outcome {
            Outcome::Delivered(said) => {
                d.failures = 0;
                d.open_until = None;
                self.journal.add(now_us(), "action_delivered", &e.key, &json!({"entry": seq, "action": name, "attempt": attempt, "result": said}));
                metrics::counter!(m::ACTIONS_DELIVERED, "action" => name).increment(1);
                self.entries.remove(&seq);
            }
            Outcome::Failed(error) => {
                self.journal.add(now_us(), "action_dead", &e.key, &json!({"entry": seq, "action": name, "attempt": attempt, "error": error}));
                tracing::warn!(action = %name, key = %e.key, %error, "action failed for good (dead letter; `alertflow actions replay` sends it again)");
                metrics::counter!(m::ACTIONS_DEAD, "action" => name).increment(1);
                self.entries.remove(&seq);
            }
            Outcome::Retry { error, after } => {
                d.failures += 1;
                if d.failures >= self.cfg.breaker_failures {
                    if d.open_until.is_none() {
                        tracing::warn!(action = %name, failures = d.failures, secs = self.cfg.breaker_open.as_secs(), "destination failing: circuit open, deliveries paused");
                    }
                    d.open_until = Some(Instant::now() + self.cfg.breaker_open);
                }
                if attempt >= d.cfg.max_attempts {
                    self.journal.add(now_us(), "action_dead", &e.key, &json!({"entry": seq, "action": name, "attempt": attempt, "error": error}));
                    tracing::warn!(action = %name, key = %e.key, %error, attempts = attempt, "action given up (dead letter; `alertflow actions replay` sends it again)");
                    metrics::counter!(m::ACTIONS_DEAD, "action" => name).increment(1);
                    self.entries.remove(&seq);
                    return;
                }
                let exp = d.cfg.backoff.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
                let wait = Duration::from_secs_f64((exp * jitter(seq, attempt)).min(d.cfg.max_backoff.as_secs_f64()));
                let wait = after.map_or(wait, |a| a.max(wait));
                self.journal.add(
                    now_us(),
                    "action_retry",
                    &e.key,
                    &json!({"entry": seq, "action": name, "attempt": attempt, "error": error, "retry_in_ms": wait.as_millis() as u64}),
                );
                metrics::counter!(m::ACTIONS_RETRIES, "action" => name).increment(1);
                d.queue.push(Reverse((Instant::now() + wait, seq)));
            }
        }
    }

    /// Sends what is due; returns when to look again.
    fn dispatch(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let mut soon = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        let mut open = 0;
        for d in &mut self.dests {
            if let Some(t) = d.open_until {
                if t > now {
                    open += 1;
                    soon(t);
                    continue;
                }
            }
            if d.cfg.rate_per_minute > 0 {
                let rate = d.cfg.rate_per_minute as f64;
                d.tokens = (d.tokens + now.duration_since(d.refilled).as_secs_f64() * rate / 60.0).min(rate);
                d.refilled = now;
            }
            while d.inflight < d.cfg.concurrency {
                let Some(&Reverse((due, seq))) = d.queue.peek() else { break };
                if due > now {
                    soon(due);
                    break;
                }
                if d.cfg.rate_per_minute > 0 && d.tokens < 1.0 {
                    soon(now + Duration::from_secs_f64((1.0 - d.tokens) * 60.0 / d.cfg.rate_per_minute as f64));
                    break;
                }
                d.queue.pop();
                let Some(e) = self.entries.get(&seq) else { continue };
                if let Some(t) = &d.cfg.per_key {
                    let k = template::render(t, &e.data);
                    match d.per_key_next.get(&k) {
                        Some(&next) if next > now => {
                            d.queue.push(Reverse((next, seq)));
                            continue;
                        }
                        _ => {
                            if d.per_key_next.len() >= 100_000 {
                                d.per_key_next.retain(|_, t| *t > now);
                            }
                            d.per_key_next.insert(k, now + d.cfg.per_key_interval);
                        }
                    }
                }
                if d.cfg.rate_per_minute > 0 {
                    d.tokens -= 1.0;
                }
                let job = Job {
                    entry: seq,
                    id: e.id.clone(),
                    key: e.key.clone(),
                    trigger: e.trigger.clone(),
                    on: e.on,
                    attempt: e.attempts + 1,
                    data: e.data.clone(),
                };
                if d.jobs.send(job).is_ok() {
                    d.inflight += 1;
                }
            }
        }
        metrics::gauge!(m::ACTIONS_OPEN_CIRCUITS).set(open as f64);
        metrics::gauge!(m::ACTIONS_PENDING).set(self.entries.len() as f64);
        wake
    }
}

/// A destination's deliverer, shared by its worker threads.
enum Deliverer {
    Webhook(Box<super::webhook::Webhook>),
    Exec(super::ExecConfig),
    Jsonl(std::sync::Mutex<std::fs::File>),
    Redis(super::RedisConfig, std::sync::Mutex<Option<redis::Connection>>),
    Email(Box<super::email::Mailer>),
}

impl Deliverer {
    fn new(d: &Destination) -> Result<Deliverer, String> {
        Ok(match &d.kind {
            Kind::Webhook(w) => Deliverer::Webhook(Box::new(super::webhook::Webhook::new(w.clone(), d.timeout)?)),
            Kind::Exec(e) => Deliverer::Exec(e.clone()),
            Kind::Jsonl(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                let f = std::fs::File::options().create(true).append(true).open(p).map_err(|e| format!("{}: {e}", p.display()))?;
                Deliverer::Jsonl(std::sync::Mutex::new(f))
            }
            Kind::Email(e) => Deliverer::Email(Box::new(super::email::Mailer::new(e.clone(), d.timeout)?)),
            Kind::Redis(r) => {
                redis::Client::open(r.url.expose()).map_err(|e| format!("url: {e}"))?;
                Deliverer::Redis(r.clone(), std::sync::Mutex::new(None))
            }
        })
    }

    fn deliver(&self, j: &Job, timeout: Duration) -> Outcome {
        match self {
            Deliverer::Webhook(w) => w.send(j),
            Deliverer::Exec(cfg) => exec::run(cfg, j, timeout),
            Deliverer::Email(m) => m.send(j),
            Deliverer::Jsonl(f) => {
                use std::io::Write as _;
                let mut line = super::envelope(j).to_string();
                line.push('\n');
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                match f.write_all(line.as_bytes()).and_then(|_| f.sync_data()) {
                    Ok(()) => Outcome::Delivered("appended".into()),
                    Err(e) => Outcome::Retry { error: e.to_string(), after: None },
                }
            }
            Deliverer::Redis(cfg, conn) => {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let res = (|| -> redis::RedisResult<String> {
                    if conn.is_none() {
                        let c = redis::Client::open(cfg.url.expose())?.get_connection_with_timeout(timeout)?;
                        c.set_read_timeout(Some(timeout))?;
                        c.set_write_timeout(Some(timeout))?;
                        *conn = Some(c);
                    }
                    let c = conn.as_mut().expect("connected");
                    let body = super::envelope(j).to_string();
                    Ok(match cfg.mode {
                        super::RedisMode::List => format!("list length {}", redis::cmd("RPUSH").arg(&cfg.key).arg(body).query::<u64>(c)?),
                        super::RedisMode::Publish => format!("{} subscribers", redis::cmd("PUBLISH").arg(&cfg.key).arg(body).query::<u64>(c)?),
                        super::RedisMode::Stream => {
                            let mut cmd = redis::cmd("XADD");
                            cmd.arg(&cfg.key);
                            if cfg.maxlen > 0 {
                                cmd.arg("MAXLEN").arg("~").arg(cfg.maxlen);
                            }
                            format!("stream entry {}", cmd.arg("*").arg("id").arg(&j.id).arg("envelope").arg(body).query::<String>(c)?)
                        }
                    })
                })();
                match res {
                    Ok(said) => Outcome::Delivered(said),
                    Err(e) => {
                        // A fresh connection for the next attempt.
                        *conn = None;
                        Outcome::Retry { error: e.to_string(), after: None }
                    }
                }
            }
        }
    }
}

/// Offers lines to the outbox's triggers ([`Outbox::offers`]). An offer made before a
/// [`Outbox::sync`] begins is journaled when it returns.
#[derive(Clone)]
pub struct Offers(Sender<Msg>);

impl Offers {
    /// Hands the alert and incident lines among `lines` to the triggers.
    pub fn offer(&self, lines: &[String]) {
        let picked: Vec<String> = lines.iter().filter(|l| l.contains("\"type\":\"alert\"") || l.contains("\"type\":\"incident\"")).cloned().collect();
        if !picked.is_empty() {
            let _ = self.0.send(Msg::Offer(picked));
        }
    }
}

impl Outbox {
    /// Opens the journal, rebuilds the queue and starts delivering.
    pub fn start(cfg: ActionsConfig, journal: PathBuf) -> Result<(Outbox, Restored), String> {
        let (journal, records) = Journal::open(journal)?;
        let names: Vec<String> = cfg.destinations.iter().map(|d| d.name.clone()).collect();
        let triggers = Triggers::new(&cfg.triggers, &names)?;
        let (res_tx, res_rx) = unbounded::<(usize, u64, Outcome)>();
        let mut dests = Vec::new();
        for (i, d) in cfg.destinations.iter().enumerate() {
            let deliverer = Arc::new(Deliverer::new(d).map_err(|e| format!("action {}: {e}", d.name))?);
            let (jobs, rx) = unbounded::<Job>();
            for w in 0..d.concurrency.max(1) {
                let (rx, res, deliverer, timeout) = (rx.clone(), res_tx.clone(), deliverer.clone(), d.timeout);
                std::thread::Builder::new()
                    .name(format!("action-{}-{w}", d.name))
                    .spawn(move || {
                        for job in rx {
                            let out = deliverer.deliver(&job, timeout);
                            if res.send((i, job.entry, out)).is_err() {
                                return;
                            }
                        }
                    })
                    .map_err(|e| e.to_string())?;
            }
            dests.push(Dest {
                cfg: d.clone(),
                queue: BinaryHeap::new(),
                inflight: 0,
                failures: 0,
                open_until: None,
                tokens: d.rate_per_minute as f64,
                refilled: Instant::now(),
                per_key_next: HashMap::new(),
                jobs,
            });
        }
        let mut core = Core {
            cfg,
            digests: HashMap::new(),
            dests,
            entries: HashMap::new(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
            journal,
            triggers,
            stopping: None,
        };
        let restored = core.restore(records);
        core.journal.sync().map_err(|e| format!("{}: {e}", core.journal.path().display()))?;
        let (tx, rx) = bounded::<Msg>(64);
        let thread = std::thread::Builder::new().name("outbox".into()).spawn(move || run(core, rx, res_rx)).map_err(|e| e.to_string())?;
        Ok((Outbox { tx, thread: Some(thread) }, restored))
    }

    /// Hands the lines of the alert path to the triggers (the alert and incident lines).
    pub fn offer(&self, lines: &[String]) {
        self.offers().offer(lines);
    }

    /// A handle to offer lines from another thread (the alert path's own, so its lines
    /// reach the triggers without waiting for the commit thread).
    pub fn offers(&self) -> Offers {
        Offers(self.tx.clone())
    }

    /// Returns once everything offered so far is journaled durably.
    pub fn sync(&self) -> Result<(), String> {
        let (tx, rx) = bounded(1);
        self.tx.send(Msg::Sync(tx)).map_err(|_| "the outbox thread stopped".to_string())?;
        rx.recv().map_err(|_| "the outbox thread stopped".to_string())?
    }

    /// Stops after the queue empties or the drain time passes; returns the entries left
    /// (they go out after the next start).
    pub fn stop(mut self) -> usize {
        let (tx, rx) = bounded(1);
        let left = if self.tx.send(Msg::Stop(tx)).is_ok() { rx.recv().unwrap_or(0) } else { 0 };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        left
    }
}

fn run(mut core: Core, rx: Receiver<Msg>, results: Receiver<(usize, u64, Outcome)>) {
    let mut wake = core.dispatch();
    loop {
        let wait = wake.map_or(Duration::from_millis(500), |t| t.saturating_duration_since(Instant::now())).min(Duration::from_millis(500));
        let mut syncs = Vec::new();
        let handle = |core: &mut Core, m: Msg, syncs: &mut Vec<Sender<Result<(), String>>>| match m {
            Msg::Offer(lines) => core.offer(lines),
            Msg::Sync(s) => syncs.push(s),
            Msg::Stop(s) => {
                core.digests_due(true);
                let deadline = Instant::now() + core.cfg.drain;
                core.stopping = Some((deadline, s));
            }
        };
        select! {
            recv(rx) -> m => match m {
                Ok(m) => handle(&mut core, m, &mut syncs),
                Err(_) => return,
            },
            recv(results) -> r => if let Ok((d, seq, out)) = r { core.result(d, seq, out) },
            default(wait) => {}
        }
        while let Ok(m) = rx.try_recv() {
            handle(&mut core, m, &mut syncs);
        }
        while let Ok((d, seq, out)) = results.try_recv() {
            core.result(d, seq, out);
        }
        core.digests_due(false);
        let synced = core.journal.sync().map_err(|e| format!("{}: {e}", core.journal.path().display()));
        if let Err(e) = &synced {
            tracing::error!(error = %e, "action journal write failed");
        }
        for s in syncs {
            let _ = s.send(synced.clone());
        }
        wake = core.dispatch();
        if let Some((deadline, _)) = &core.stopping {
            let inflight: usize = core.dests.iter().map(|d| d.inflight).sum();
            if core.entries.is_empty() || (Instant::now() >= *deadline && inflight == 0) || Instant::now() >= *deadline + Duration::from_secs(30) {
                let left = core.entries.len();
                let _ = core.journal.sync();
                if left > 0 {
                    tracing::warn!(actions = left, "actions still queued at shutdown; they go out after the next start");
                }
                if let Some((_, s)) = core.stopping.take() {
                    let _ = s.send(left);
                }
                return;
            }
        }
    }
}
