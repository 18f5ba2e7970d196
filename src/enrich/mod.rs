//! Enrichment of alerts from in-memory tables: GeoIP/ASN (MaxMind DB), threat-intel
//! indicator sets, the asset inventory, and history.
//!
//! Every source is an immutable snapshot behind an `ArcSwap`, replaced whole when its file
//! changes or on SIGHUP, after the new content loaded and validated; a broken file keeps
//! the previous snapshot (logged, `alertflow_enrich_reloads_total{result="failed"}`).
//! Each snapshot carries a [`Version`] (name, content hash, load time) that every alert
//! enriched from it records. The alert thread owns an [`Enricher`]: per-thread memo of
//! GeoIP lookups, history counts.
//!
//! In: an alert ([`AlertRecord`]) and what its flow context knows. Out: its
//! [`Enrichment`] (and `intel_alert` lines for indicators in traffic without an alert).
//! [`source`] loads and swaps the files, [`matching`] matches values against feeds.

pub mod asset;
pub mod geo;
pub mod history;
pub mod intel;
pub use crate::event::prefix;
pub mod matching;
pub mod source;
pub mod stix;

pub use matching::{context_probes, event_probes, intel_alert_line, match_feeds};
pub use source::{spawn_reloader, LoadError, Loaded, Outcome, ReloadReport, Source, Sources, Version, RELOAD_REQUESTED};

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lru::LruCache;

use crate::event::alert::AlertRecord;
use crate::event::ContextView;
use asset::AssetTable;
use geo::GeoDb;
use history::{History, NoVerdicts, VerdictStore};
use intel::{IndicatorSet, Kind, Probe};

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
                match history::seed(&mut h, &cfg.history_seed, source::now_us()) {
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
    /// Whether [`Enricher::sighting`] can find anything: sightings are on and an indicator
    /// feed is loaded (else the caller need not decode the events at all).
    pub fn watches_traffic(&self, snap: &Snapshot) -> bool {
        self.sighted.is_some() && !snap.intel.is_empty()
    }

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
