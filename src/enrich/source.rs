//! Enrichment sources: files (GeoIP/ASN databases, indicator feeds, the asset inventory)
//! loaded and validated off the hot path, then swapped in whole; a file that does not load
//! keeps the previous version in use. Reloads run every `reload_poll` and on SIGHUP.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;

use super::asset::AssetTable;
use super::geo::{DbKind, GeoDb};
use super::intel::{self, IndicatorSet, LoadOptions};
use super::{EnrichConfig, Snapshot};

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

pub(super) fn now_us() -> i64 {
    crate::event::time::wall_clock_us()
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
