//! Enrichment of alerts from in-memory tables: GeoIP/ASN (MaxMind DB), threat-intel
//! indicator sets, the asset inventory, and history.
//!
//! Every source is an immutable snapshot behind an `ArcSwap`, replaced whole when its file
//! changes or on SIGHUP, after the new content loaded and validated; a broken file keeps
//! the previous snapshot (logged, `alertflow_enrich_reloads_total{result="failed"}`).
//! Each snapshot carries a [`Version`] (name, content hash, load time) that every alert
//! enriched from it records. The state thread owns an [`Enricher`]: per-thread memo of
//! GeoIP lookups, history counts.

pub mod asset;
pub mod geo;
pub mod history;
pub mod intel;
pub use crate::event::prefix;
pub mod stix;

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use lru::LruCache;

use crate::event::alert::AlertRecord;
use crate::event::json::JsonObject;
use crate::event::{ContextKind, ContextView};
use asset::AssetTable;
use geo::{DbKind, GeoDb};
use history::{History, NoVerdicts, VerdictStore};
use intel::{IndicatorSet, Kind, LoadOptions, Probe};

/// One indicator feed in the configuration.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    pub name: String,
    pub path: PathBuf,
    /// `None`: from the file name and content.
    pub format: Option<intel::Format>,
    pub kind: Option<Kind>,
    pub confidence: u8,
    pub to_ids_only: bool,
}

/// `[enrich]`.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    pub enabled: bool,
    pub geoip_city: Option<PathBuf>,
    pub geoip_asn: Option<PathBuf>,
    pub intel: Vec<FeedConfig>,
    pub assets: Option<PathBuf>,
    pub history: bool,
    pub history_max_keys: usize,
    /// Entries of the per-thread GeoIP memo.
    pub memo_entries: usize,
    /// How often files are checked for changes (zero: only on SIGHUP).
    pub reload_poll: Duration,
    /// Days of the archive a retro-hunt scans when a feed gains indicators (0: off).
    pub retro_hunt_days: u32,
    /// Where retro-hunt matches go (JSON lines); `None`: the state output.
    pub retro_hunt_output: Option<PathBuf>,
    /// Indicators seen in events that raised no alert (dns, http, tls, fileinfo, flow)
    /// become `intel_alert` lines.
    pub sightings: bool,
    /// Archived `alerts` segments (of the last week) that seed the history at start (set
    /// by the pipeline; empty: history starts empty).
    pub history_seed: Vec<PathBuf>,
    /// A feed with more indicators than this is rejected.
    pub max_indicators_per_feed: usize,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            geoip_city: None,
            geoip_asn: None,
            intel: Vec::new(),
            assets: None,
            history: true,
            history_max_keys: 200_000,
            memo_entries: 65_536,
            reload_poll: Duration::from_secs(5),
            retro_hunt_days: 7,
            retro_hunt_output: None,
            sightings: true,
            history_seed: Vec::new(),
            max_indicators_per_feed: 10_000_000,
        }
    }
}

/// What the alert path needs to enrich: the shared sources and their settings.
#[derive(Clone)]
pub struct EnrichRuntime {
    pub sources: Arc<Sources>,
    pub config: EnrichConfig,
}

impl std::fmt::Debug for EnrichRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnrichRuntime {{ enabled: {} }}", self.config.enabled)
    }
}

/// Which load of a source: `name@hash@load time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub name: String,
    /// xxh3 of the file's bytes, 16 hex digits.
    pub hash: String,
    pub loaded_at_us: i64,
    /// `name@hash@2026-11-28T15:03:59Z`: what alerts record.
    pub label: Arc<str>,
}

impl Version {
    /// A version known by its label alone (`name@hash@time`).
    pub fn labelled(name: &str, label: Arc<str>) -> Self {
        let hash = label.split('@').nth(1).unwrap_or_default().to_string();
        Self { name: name.into(), hash, loaded_at_us: 0, label }
    }

    /// The version of `bytes` loaded at `now_us`.
    pub fn new(name: &str, bytes: &[u8], now_us: i64) -> Self {
        let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes));
        let at = jiff::Timestamp::from_microsecond(now_us).map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string()).unwrap_or_default();
        let label = format!("{name}@{hash}@{at}").into();
        Self { name: name.into(), hash, loaded_at_us: now_us, label }
    }
}

/// One load of a source.
#[derive(Debug)]
pub struct Loaded<T> {
    pub version: Version,
    pub data: T,
}

type LoadFn<T> = Box<dyn Fn(Vec<u8>) -> Result<T, LoadError> + Send + Sync>;

/// Why a source file was refused (the previous version stays in use).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// Feeds and inventories are UTF-8 text.
    #[error("not UTF-8: {0}")]
    NotUtf8(String),
    /// Not a MaxMind DB, or not the kind of database the source expects.
    #[error("{0}")]
    Database(String),
    /// The file's structure: JSON or CSV syntax, the shape of a MISP export or a STIX
    /// bundle, a pattern, a header, a column, an empty file.
    #[error("{0}")]
    Format(String),
    /// A value that is not what its type says.
    #[error("`{value}` is not {what}")]
    BadValue { value: String, what: String },
    /// More indicators than `enrich.max_indicators_per_feed`.
    #[error("more than {0} indicators (enrich.max_indicators_per_feed)")]
    TooMany(usize),
    /// Where in the file: `line 3`, `indicator indicator--…`, `MISP attribute ip-dst`.
    #[error("{at}: {source}")]
    At { at: String, source: Box<LoadError> },
}

impl LoadError {
    /// This error, at a place in the file.
    pub fn at(self, at: impl Into<String>) -> Self {
        LoadError::At { at: at.into(), source: Box::new(self) }
    }

    /// The error itself, without the places it is at.
    pub fn innermost(&self) -> &LoadError {
        match self {
            LoadError::At { source, .. } => source.innermost(),
            e => e,
        }
    }
}

/// A file-backed table, swapped whole on reload.
pub struct Source<T> {
    pub name: String,
    pub path: PathBuf,
    load: LoadFn<T>,
    current: ArcSwapOption<Loaded<T>>,
    /// Modification time and length last looked at, and the hash of the content in use.
    seen: Mutex<SeenFile>,
}

/// A file's modification time and length, and the hash of the content in use.
type SeenFile = (Option<(SystemTime, u64)>, Option<String>);

/// What a reload attempt did.
#[derive(Debug)]
pub enum Outcome<T> {
    Unchanged,
    Loaded { old: Option<Arc<Loaded<T>>>, new: Arc<Loaded<T>> },
    Failed(String),
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

impl<T> Source<T> {
    pub fn new(name: impl Into<String>, path: PathBuf, load: impl Fn(Vec<u8>) -> Result<T, LoadError> + Send + Sync + 'static) -> Self {
        Self { name: name.into(), path, load: Box::new(load), current: ArcSwapOption::empty(), seen: Mutex::new((None, None)) }
    }

    /// The snapshot in use.
    pub fn get(&self) -> Option<Arc<Loaded<T>>> {
        self.current.load_full()
    }

    /// Loads the file when it changed (or always, with `force`), validates it and swaps
    /// it in; a file that does not load keeps the previous snapshot.
    pub fn reload(&self, force: bool) -> Outcome<T> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = std::fs::metadata(&self.path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        // Unchanged since the last look (a missing file is reported once, not every poll).
        if !force && stamp == seen.0 {
            return Outcome::Unchanged;
        }
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                seen.0 = stamp;
                return self.failed(format!("cannot read {}: {e}", self.path.display()));
            }
        };
        seen.0 = stamp;
        let hash = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        if seen.1.as_deref() == Some(hash.as_str()) {
            return Outcome::Unchanged;
        }
        let version = Version::new(&self.name, &bytes, now_us());
        match (self.load)(bytes) {
            Ok(data) => {
                let new = Arc::new(Loaded { version, data });
                let old = self.current.swap(Some(new.clone()));
                seen.1 = Some(hash);
                metrics::counter!(crate::metrics::ENRICH_RELOADS, "source" => self.name.clone(), "result" => "ok").increment(1);
                metrics::gauge!(crate::metrics::ENRICH_SOURCE_LOADED, "source" => self.name.clone()).set(new.version.loaded_at_us as f64 / 1e6);
                tracing::info!(source = %self.name, version = %new.version.label, "enrichment source loaded");
                Outcome::Loaded { old, new }
            }
            Err(e) => self.failed(format!("{}: {e}", self.path.display())),
        }
    }

    fn failed(&self, msg: String) -> Outcome<T> {
        metrics::counter!(crate::metrics::ENRICH_RELOADS, "source" => self.name.clone(), "result" => "failed").increment(1);
        let keeps = match self.current.load().as_ref() {
            Some(l) => format!("keeping {}", l.version.label),
            None => "the source stays empty".into(),
        };
        tracing::error!(source = %self.name, "enrichment source rejected: {msg}; {keeps}");
        Outcome::Failed(msg)
    }
}

/// Every enrichment source of a pipeline.
pub struct Sources {
    pub city: Option<Source<GeoDb>>,
    pub asn: Option<Source<GeoDb>>,
    pub intel: Vec<Source<IndicatorSet>>,
    pub assets: Option<Source<AssetTable>>,
    /// The first load, when it runs beside the pipeline's start ([`Sources::open_background`]).
    initial: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What one reload pass did, per source.
#[derive(Debug, Default)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// Per feed that gained indicators: its name and the new ones alone.
    pub added: Vec<(String, Arc<str>, IndicatorSet)>,
}

impl Sources {
    /// Builds the sources of a configuration and loads them once; the report says what
    /// failed (those sources stay empty until their file loads).
    pub fn open(cfg: &EnrichConfig) -> (Arc<Sources>, ReloadReport) {
        let s = Arc::new(Sources::unloaded(cfg));
        let report = s.reload(true);
        (s, report)
    }

    /// The sources of a configuration, nothing loaded yet.
    fn unloaded(cfg: &EnrichConfig) -> Sources {
        let geo = |name: &str, path: &Option<PathBuf>, kind: DbKind| path.clone().map(|p| Source::new(name, p, move |b| GeoDb::load(b, kind)));
        let intel = cfg
            .intel
            .iter()
            .map(|f| {
                let f2 = f.clone();
                let max = cfg.max_indicators_per_feed;
                Source::new(format!("intel:{}", f.name), f.path.clone(), move |b: Vec<u8>| {
                    let format = f2.format.unwrap_or_else(|| intel::Format::guess(&f2.path, &b));
                    IndicatorSet::load(
                        &b,
                        &LoadOptions { format, kind: f2.kind, confidence: f2.confidence, to_ids_only: f2.to_ids_only, now_us: now_us(), max_indicators: max },
                    )
                })
            })
            .collect();
        Sources {
            city: geo("geoip-city", &cfg.geoip_city, DbKind::City),
            asn: geo("geoip-asn", &cfg.geoip_asn, DbKind::Asn),
            intel,
            assets: cfg.assets.clone().map(|p| Source::new("assets", p, |b: Vec<u8>| AssetTable::load(&b))),
            initial: Mutex::new(None),
        }
    }

    /// [`Sources::open`] with the first load on a thread of its own, so the pipeline
    /// starts reading meanwhile; the first enriched batch waits for it
    /// ([`Sources::wait_loaded`]): every alert sees the loaded sources.
    pub fn open_background(cfg: &EnrichConfig) -> Arc<Sources> {
        let s = Arc::new(Sources::unloaded(cfg));
        let bg = s.clone();
        let handle = std::thread::Builder::new()
            .name("enrich-load".into())
            .spawn(move || {
                let r = bg.reload(true);
                if !r.loaded.is_empty() {
                    tracing::info!(sources = ?r.loaded, "enrichment sources loaded");
                }
            })
            .expect("spawn the enrichment loader");
        *s.initial.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        s
    }

    /// Waits for the first load started by [`Sources::open_background`] (at once when
    /// there is none or it is done).
    pub fn wait_loaded(&self) {
        let h = self.initial.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = h {
            let _ = h.join();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.city.is_none() && self.asn.is_none() && self.intel.is_empty() && self.assets.is_none()
    }

    /// Reloads changed files (every file with `force`).
    pub fn reload(&self, force: bool) -> ReloadReport {
        let mut r = ReloadReport::default();
        fn note<T>(r: &mut ReloadReport, name: &str, o: &Outcome<T>) {
            match o {
                Outcome::Loaded { .. } => r.loaded.push(name.to_string()),
                Outcome::Failed(e) => r.failed.push((name.to_string(), e.clone())),
                Outcome::Unchanged => {}
            }
        }
        // Each source loads on a thread of its own (they are independent files).
        let (geo, assets, feeds) = std::thread::scope(|sc| {
            let geo: Vec<_> = [&self.city, &self.asn].into_iter().flatten().map(|s| (s, sc.spawn(move || s.reload(force)))).collect();
            let assets = self.assets.as_ref().map(|a| (a, sc.spawn(move || a.reload(force))));
            let feeds: Vec<_> = self.intel.iter().map(|f| (f, sc.spawn(move || f.reload(force)))).collect();
            let geo: Vec<_> = geo.into_iter().map(|(s, h)| (s, h.join().unwrap_or_else(|_| Outcome::Failed("loader panicked".into())))).collect();
            let assets = assets.map(|(a, h)| (a, h.join().unwrap_or_else(|_| Outcome::Failed("loader panicked".into()))));
            let feeds: Vec<_> = feeds.into_iter().map(|(f, h)| (f, h.join().unwrap_or_else(|_| Outcome::Failed("loader panicked".into())))).collect();
            (geo, assets, feeds)
        });
        for (s, o) in &geo {
            note(&mut r, &s.name, o);
        }
        if let Some((a, o)) = &assets {
            note(&mut r, &a.name, o);
        }
        for (f, o) in feeds {
            note(&mut r, &f.name, &o);
            if let Outcome::Loaded { old: Some(old), new } = o {
                let added = new.data.added_since(&old.data);
                if !added.is_empty() {
                    r.added.push((f.name.clone(), new.version.label.clone(), added));
                }
            }
            if let Some(l) = f.get() {
                metrics::gauge!(crate::metrics::ENRICH_INDICATORS, "source" => f.name.clone()).set(l.data.len() as f64);
            }
        }
        r
    }

    /// The snapshots in use, taken once per batch: every alert of a batch sees the same.
    pub fn snapshot(&self) -> Snapshot {
        let city = self.city.as_ref().and_then(Source::get);
        let asn = self.asn.as_ref().and_then(Source::get);
        let intel: Vec<_> = self.intel.iter().filter_map(Source::get).collect();
        let assets = self.assets.as_ref().and_then(Source::get);
        let mut versions: Vec<Arc<str>> = Vec::new();
        versions.extend(city.iter().map(|l| l.version.label.clone()));
        versions.extend(asn.iter().map(|l| l.version.label.clone()));
        versions.extend(intel.iter().map(|l| l.version.label.clone()));
        versions.extend(assets.iter().map(|l| l.version.label.clone()));
        Snapshot { city, asn, intel, assets, versions: versions.into() }
    }
}

/// Raised by SIGHUP: every source is reloaded at once.
pub static RELOAD_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts the thread that reloads changed files every `poll` and at once when `hup` is
/// raised (SIGHUP); it ends with the last owner of the sources. `added` gets the new
/// indicators of every feed that gained some (the retro-hunt).
pub fn spawn_reloader(
    sources: &Arc<Sources>,
    poll: Duration,
    hup: &'static std::sync::atomic::AtomicBool,
    added: impl Fn(ReloadReport) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let weak: Weak<Sources> = Arc::downgrade(sources);
    std::thread::Builder::new()
        .name("enrich-reload".into())
        .spawn(move || {
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            loop {
                std::thread::sleep(step);
                waited += step;
                let forced = hup.swap(false, std::sync::atomic::Ordering::AcqRel);
                if !forced && (poll.is_zero() || waited < poll) {
                    if weak.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
                waited = Duration::ZERO;
                let Some(s) = weak.upgrade() else { return };
                let report = s.reload(forced);
                drop(s);
                if !report.added.is_empty() {
                    added(report);
                }
            }
        })
        .expect("spawn the reload thread")
}

/// The sources as one batch sees them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub city: Option<Arc<Loaded<GeoDb>>>,
    pub asn: Option<Arc<Loaded<GeoDb>>>,
    pub intel: Vec<Arc<Loaded<IndicatorSet>>>,
    pub assets: Option<Arc<Loaded<AssetTable>>>,
    pub versions: Arc<[Arc<str>]>,
}

pub use crate::event::enriched::{hits_json, Enrichment, GeoHit, IntelHit, Side};

/// Failed lookups since start, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EnrichCounts {
    pub alerts: u64,
    pub geo_lookups: u64,
    pub geo_memo_hits: u64,
    /// Address text that is not an IP address.
    pub bad_ip: u64,
    /// The database could not decode its record.
    pub geo_errors: u64,
    pub intel_hits: u64,
    /// `intel_alert` lines for events without an alert, and repeats held back.
    pub sightings: u64,
    pub sightings_repeated: u64,
}

/// The per-thread part: memo and history.
pub struct Enricher {
    sources: Arc<Sources>,
    memo: LruCache<IpAddr, Arc<GeoHit>>,
    /// Which City and ASN loads the memo holds answers of.
    memo_of: (usize, usize),
    history: Option<History>,
    verdicts: Arc<dyn VerdictStore>,
    /// The first load has been waited for.
    loaded: bool,
    /// Sightings already reported: (feed, indicator, source) → event time, so a host
    /// that keeps resolving a listed name is reported once an hour, not per query.
    sighted: Option<LruCache<u64, i64>>,
    pub counts: EnrichCounts,
}

fn ptr<T>(l: &Option<Arc<Loaded<T>>>) -> usize {
    l.as_ref().map_or(0, |a| Arc::as_ptr(a) as usize)
}

impl Enricher {
    pub fn new(sources: Arc<Sources>, cfg: &EnrichConfig) -> Self {
        Self {
            sources,
            memo: LruCache::new(NonZeroUsize::new(cfg.memo_entries.max(1)).expect("non-zero")),
            memo_of: (0, 0),
            history: cfg.history.then(|| {
                let mut h = History::new(cfg.history_max_keys);
                match history::seed(&mut h, &cfg.history_seed, now_us()) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(alerts = n, "history seeded from the archive"),
                    Err(e) => tracing::warn!("history not seeded from the archive: {e}"),
                }
                h
            }),
            verdicts: Arc::new(NoVerdicts),
            loaded: false,
            sighted: cfg.sightings.then(|| LruCache::new(NonZeroUsize::new(65_536).expect("non-zero"))),
            counts: EnrichCounts::default(),
        }
    }

    pub fn with_verdicts(mut self, v: Arc<dyn VerdictStore>) -> Self {
        self.verdicts = v;
        self
    }

    pub fn sources(&self) -> &Arc<Sources> {
        &self.sources
    }

    pub fn history_keys(&self) -> usize {
        self.history.as_ref().map_or(0, History::keys)
    }

    /// The snapshot for one batch (drops memo entries of replaced databases).
    pub fn snapshot(&mut self) -> Snapshot {
        if !self.loaded {
            self.sources.wait_loaded();
            self.loaded = true;
        }
        let s = self.sources.snapshot();
        let of = (ptr(&s.city), ptr(&s.asn));
        if of != self.memo_of {
            self.memo.clear();
            self.memo_of = of;
        }
        s
    }

    fn geo(&mut self, snap: &Snapshot, ip: Option<IpAddr>) -> Option<Arc<GeoHit>> {
        let ip = ip?;
        if snap.city.is_none() && snap.asn.is_none() {
            return None;
        }
        self.counts.geo_lookups += 1;
        if let Some(h) = self.memo.get(&ip) {
            self.counts.geo_memo_hits += 1;
            return Some(h.clone());
        }
        let mut hit = GeoHit::default();
        if let Some(c) = &snap.city {
            match c.data.place(ip) {
                Ok(p) => hit.place = p,
                Err(_) => self.counts.geo_errors += 1,
            }
        }
        if let Some(a) = &snap.asn {
            match a.data.asn(ip) {
                Ok(p) => hit.asn = p,
                Err(_) => self.counts.geo_errors += 1,
            }
        }
        let hit = Arc::new(hit);
        self.memo.put(ip, hit.clone());
        Some(hit)
    }

    /// Enriches one alert; `around` is what its flow carried (dns, http, tls, fileinfo).
    pub fn enrich(&mut self, snap: &Snapshot, a: &AlertRecord, around: &[ContextView<'_>]) -> Enrichment {
        self.counts.alerts += 1;
        let parse = |s: &str, bad: &mut u64| {
            if s.is_empty() {
                return None;
            }
            let ip = s.parse::<IpAddr>().ok();
            *bad += ip.is_none() as u64;
            ip
        };
        let src_ip = parse(&a.src_ip, &mut self.counts.bad_ip);
        let dest_ip = parse(&a.dest_ip, &mut self.counts.bad_ip);
        let mut e = Enrichment { versions: snap.versions.clone(), ..Default::default() };
        e.src.geo = self.geo(snap, src_ip);
        e.dest.geo = self.geo(snap, dest_ip);
        if let Some(t) = &snap.assets {
            e.src.asset = src_ip.and_then(|ip| t.data.lookup(ip).cloned());
            e.dest.asset = dest_ip.and_then(|ip| t.data.lookup(ip).cloned());
        }
        if !snap.intel.is_empty() {
            let mut probes: Vec<(&'static str, Probe<'_>, &str)> = Vec::with_capacity(8);
            if let Some(ip) = src_ip {
                probes.push(("src_ip", Probe::Ip(ip), &a.src_ip));
            }
            if let Some(ip) = dest_ip {
                probes.push(("dest_ip", Probe::Ip(ip), &a.dest_ip));
            }
            for c in around {
                context_probes(c, &mut probes);
            }
            e.intel = match_feeds(snap.intel.iter().map(|f| (&f.version, &f.data)), &probes);
            self.counts.intel_hits += e.intel.len() as u64;
        }
        if let Some(h) = &mut self.history {
            let mut info = h.observe(a.ts_us, a.signature_id, &a.src_ip, &a.dest_ip);
            info.verdicts = self.verdicts.verdicts(a.signature_id, &a.src_ip);
            info.verdicts.extend(self.verdicts.verdicts(a.signature_id, &a.dest_ip));
            e.history = Some(info);
        }
        e
    }
}

/// How long a sighting (feed, indicator, source) is not reported again, in event time.
const SIGHTING_REPEAT_US: i64 = 3_600_000_000;

impl Enricher {
    /// Matches an event that is not an alert (its addresses and, for dns, http, tls and
    /// fileinfo, its names and hashes); a match becomes an `intel_alert` line, once per
    /// feed, indicator and source an hour.
    #[allow(clippy::too_many_arguments)]
    pub fn sighting(
        &mut self,
        snap: &Snapshot,
        ts_us: i64,
        flow_id: Option<i64>,
        src: Option<&str>,
        dest: Option<&str>,
        c: Option<&ContextView<'_>>,
    ) -> Option<String> {
        let sighted = self.sighted.as_mut()?;
        if snap.intel.is_empty() {
            return None;
        }
        let probes = event_probes(src, dest, c);
        let mut hits = match_feeds(snap.intel.iter().map(|f| (&f.version, &f.data)), &probes);
        hits.retain(|h| {
            let key = {
                let mut x = xxhash_rust::xxh3::Xxh3::new();
                for part in [h.feed.as_bytes(), h.indicator.as_bytes(), src.unwrap_or("").as_bytes()] {
                    x.update(part);
                    x.update(&[0]);
                }
                x.digest()
            };
            match sighted.get(&key) {
                Some(&at) if (ts_us - at).abs() < SIGHTING_REPEAT_US => {
                    self.counts.sightings_repeated += 1;
                    false
                }
                _ => {
                    sighted.put(key, ts_us);
                    true
                }
            }
        });
        if hits.is_empty() {
            return None;
        }
        self.counts.sightings += 1;
        let event_type = c.map_or("flow", |c| c.kind.event_type());
        Some(intel_alert_line("live", Some(ts_us), event_type, None, src, dest, flow_id, &hits_json(&hits), |_| {}))
    }
}

/// What an event that is not an alert offers for matching: its addresses and, for dns,
/// http, tls and fileinfo, its names and hashes.
pub fn event_probes<'a>(src: Option<&'a str>, dest: Option<&'a str>, c: Option<&ContextView<'a>>) -> Vec<(&'static str, Probe<'a>, &'a str)> {
    let mut probes = Vec::with_capacity(6);
    for (field, ip) in [("src_ip", src), ("dest_ip", dest)] {
        if let Some(text) = ip.filter(|t| !t.is_empty()) {
            if let Ok(a) = text.parse() {
                probes.push((field, Probe::Ip(a), text));
            }
        }
    }
    if let Some(c) = c {
        context_probes(c, &mut probes);
    }
    probes
}

/// Every feed's indicator each probe matches, once per feed, indicator and field.
pub fn match_feeds<'s>(feeds: impl Iterator<Item = (&'s Version, &'s IndicatorSet)>, probes: &[(&'static str, Probe<'_>, &str)]) -> Vec<IntelHit> {
    let mut hits: Vec<IntelHit> = Vec::new();
    for (version, set) in feeds {
        for (field, p, value) in probes {
            let Some(i) = set.lookup(*p) else { continue };
            let ind = set.indicator(i);
            if hits.iter().any(|h| &*h.indicator == ind.value && *h.feed == *version.name && h.field == *field) {
                continue;
            }
            hits.push(IntelHit {
                feed: version.name.as_str().into(),
                feed_version: version.label.clone(),
                indicator: ind.value.into(),
                kind: ind.kind,
                field,
                value: (*value).into(),
                confidence: ind.confidence,
                description: ind.description.map(Into::into),
            });
        }
    }
    hits
}

/// An `intel_alert` line: indicators in an event that raised no alert (`origin`: `live`
/// or `retro-hunt`), with the event's own time; `more` adds fields.
#[allow(clippy::too_many_arguments)]
pub fn intel_alert_line(
    origin: &str,
    ts_us: Option<i64>,
    event_type: &str,
    sensor: Option<&str>,
    src: Option<&str>,
    dest: Option<&str>,
    flow_id: Option<i64>,
    matches: &str,
    more: impl FnOnce(&mut JsonObject<'_>),
) -> String {
    let mut line = String::with_capacity(256 + matches.len());
    let mut o = JsonObject::open(&mut line);
    o.str("type", "intel_alert");
    o.str("origin", origin);
    if let Some(t) = ts_us.and_then(|t| jiff::Timestamp::from_microsecond(t).ok()) {
        o.str("timestamp", &t.to_string());
    }
    o.str("event_type", event_type);
    if let Some(s) = sensor {
        o.str("sensor", s);
    }
    o.str("src_ip", src.unwrap_or(""));
    o.str("dest_ip", dest.unwrap_or(""));
    o.opt_int("flow_id", flow_id);
    o.raw("matches", matches);
    more(&mut o);
    o.close();
    line
}

/// The values of a context event that indicators are matched against.
pub fn context_probes<'a>(c: &ContextView<'a>, probes: &mut Vec<(&'static str, Probe<'a>, &'a str)>) {
    let t = |i: usize| c.text[i].filter(|s| !s.is_empty());
    match c.kind {
        ContextKind::Dns => {
            if let Some(n) = t(0) {
                probes.push(("dns.rrname", Probe::Domain(n), n));
            }
            if let Some(ans) = t(4) {
                match ans.parse::<IpAddr>() {
                    Ok(ip) => probes.push(("dns.answer", Probe::Ip(ip), ans)),
                    Err(_) => probes.push(("dns.answer", Probe::Domain(ans), ans)),
                }
            }
        }
        ContextKind::Http => {
            if let Some(h) = t(0) {
                probes.push(("http.hostname", Probe::Domain(h), h));
            }
            if let Some(u) = t(1) {
                probes.push(("http.url", Probe::Url(t(0), u), u));
            }
        }
        ContextKind::Tls => {
            if let Some(s) = t(0) {
                probes.push(("tls.sni", Probe::Sni(s), s));
            }
            if let Some(h) = t(2) {
                probes.push(("tls.ja3", Probe::Ja3(h), h));
            }
            if let Some(h) = t(3) {
                probes.push(("tls.ja4", Probe::Ja4(h), h));
            }
        }
        ContextKind::FileInfo => {
            if let Some(h) = t(1) {
                probes.push(("fileinfo.sha256", Probe::Hash(h), h));
            }
            if let Some(h) = t(2) {
                probes.push(("fileinfo.md5", Probe::Hash(h), h));
            }
            if let Some(h) = t(4) {
                probes.push(("fileinfo.sha1", Probe::Hash(h), h));
            }
        }
        ContextKind::Flow | ContextKind::Anomaly => {}
    }
}
