//! Retro-hunt: when a feed gains indicators, the archived events of the last N days are
//! scanned for the new ones alone, and each event that matches becomes an `intel_alert`
//! line (with its original event time) — the traffic that was not suspicious yet when it
//! passed. Also run by hand: `alertflow hunt`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::archive::layout;
use crate::enrich::intel::{IndicatorSet, Kind};
use crate::enrich::{event_probes, hits_json, intel_alert_line, match_feeds, ReloadReport, Version};
use crate::parse::eve::{repair_escapes, EveParser};
use crate::parse::ParseLimits;

/// What a hunt went through and found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HuntStats {
    pub files: u64,
    pub events: u64,
    /// Archived lines that no longer parse (counted, skipped).
    pub unreadable: u64,
    pub matches: u64,
}

/// One feed's indicators to hunt for, with the version of the feed that brought them.
pub struct Wanted<'a> {
    pub version: Version,
    pub set: &'a IndicatorSet,
}

/// Sealed files of `events/` whose `date=` partition is within `days` of `now_us`.
pub fn event_files(root: &Path, days: u32, now_us: i64) -> Vec<PathBuf> {
    layout::recent_files(root, "events", days, now_us)
}

/// Scans archived events for the wanted indicators, writing one line per matching event.
pub fn hunt(files: &[PathBuf], wanted: &[Wanted<'_>], out: &mut dyn Write) -> std::io::Result<HuntStats> {
    let mut stats = HuntStats::default();
    let ips = wanted.iter().any(|w| w.set.iter().any(|i| i.kind == Kind::Ip));
    let mut parser = EveParser::new(ParseLimits { context: true, ..Default::default() });
    for path in files {
        let file = std::fs::File::open(path)?;
        let builder = match ParquetRecordBatchReaderBuilder::try_new(file) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %path.display(), "retro-hunt skips an unreadable segment: {e}");
                continue;
            }
        };
        let schema = builder.schema().clone();
        let cols: Vec<usize> = ["event_type", "raw"].iter().filter_map(|c| schema.index_of(c).ok()).collect();
        if cols.len() != 2 {
            continue;
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), cols);
        let reader = builder.with_projection(mask).with_batch_size(8192).build().map_err(std::io::Error::other)?;
        stats.files += 1;
        for batch in reader {
            let batch = batch.map_err(std::io::Error::other)?;
            let et = batch.column_by_name("event_type").and_then(|c| c.as_any().downcast_ref::<StringArray>()).cloned();
            let raw = batch.column_by_name("raw").and_then(|c| c.as_any().downcast_ref::<StringArray>()).cloned();
            let (Some(et), Some(raw)) = (et, raw) else { continue };
            for i in 0..batch.num_rows() {
                stats.events += 1;
                let t = if et.is_valid(i) { et.value(i) } else { "" };
                // Without IP indicators only the events that carry names and hashes count.
                if !ips && !matches!(t, "dns" | "http" | "tls" | "fileinfo") {
                    continue;
                }
                if !raw.is_valid(i) {
                    continue;
                }
                let line = raw.value(i);
                let hit = parser.parse(line.as_bytes(), |v| {
                    let probes = event_probes(v.src_ip, v.dest_ip, v.context.as_ref());
                    let hits = match_feeds(wanted.iter().map(|w| (&w.version, w.set)), &probes);
                    (!hits.is_empty()).then(|| {
                        intel_alert_line(
                            "retro-hunt",
                            v.timestamp_us,
                            v.event_type.unwrap_or(""),
                            v.host,
                            v.src_ip,
                            v.dest_ip,
                            v.flow_id,
                            &hits_json(&hits),
                            |o| {
                                o.str("archive_file", &path.display().to_string());
                                // The archived line as JSON: Suricata's `\xNN` and lone surrogate
                                // escapes are not, so they are repaired for the line out.
                                let mut fixed = Vec::new();
                                match repair_escapes(line.as_bytes(), &mut fixed) {
                                    0 => o.raw("event", line),
                                    _ => o.raw("event", &String::from_utf8_lossy(&fixed)),
                                }
                            },
                        )
                    })
                });
                match hit {
                    Ok(Some(l)) => {
                        stats.matches += 1;
                        out.write_all(l.as_bytes())?;
                        out.write_all(b"\n")?;
                    }
                    Ok(None) => {}
                    Err(_) => stats.unreadable += 1,
                }
            }
        }
    }
    out.flush()?;
    Ok(stats)
}

/// The automatic retro-hunt of a running pipeline.
pub struct RetroHunt {
    root: PathBuf,
    days: u32,
    output: PathBuf,
    running: Arc<std::sync::Mutex<()>>,
}

impl RetroHunt {
    /// `None` when `enrich.retro_hunt_days` is 0.
    pub fn from_config(cfg: &crate::config::Config) -> Option<RetroHunt> {
        let days = cfg.enrich.retro_hunt_days;
        (days > 0).then(|| RetroHunt {
            root: cfg.archive.root.clone(),
            days,
            output: cfg.enrich.retro_hunt_output.clone().unwrap_or_else(|| cfg.archive.root.join("_state").join("retro-hunt.jsonl")),
            running: Arc::new(std::sync::Mutex::new(())),
        })
    }

    /// Hunts for what the reload added, on a thread of its own (one hunt at a time).
    pub fn start(&self, report: ReloadReport) -> Option<std::thread::JoinHandle<()>> {
        let (root, days, output, running) = (self.root.clone(), self.days, self.output.clone(), self.running.clone());
        std::thread::Builder::new().name("retro-hunt".into()).spawn(move || {
            let _one = running.lock().unwrap_or_else(|e| e.into_inner());
            let now = crate::event::time::wall_clock_us();
            let files = event_files(&root, days, now);
            let wanted: Vec<Wanted<'_>> = report.added.iter().map(|(feed, label, set)| Wanted { version: Version::labelled(feed, label.clone()), set }).collect();
            let added: usize = report.added.iter().map(|(_, _, s)| s.len()).sum();
            let res = (|| {
                if let Some(d) = output.parent() {
                    std::fs::create_dir_all(d)?;
                }
                let f = std::fs::File::options().create(true).append(true).open(&output)?;
                hunt(&files, &wanted, &mut std::io::BufWriter::new(f))
            })();
            match res {
                Ok(s) => {
                    metrics::counter!(crate::metrics::RETRO_HUNT_MATCHES).increment(s.matches);
                    tracing::info!(indicators = added, files = s.files, events = s.events, matches = s.matches, output = %output.display(), "retro-hunt done");
                }
                Err(e) => tracing::error!(output = %output.display(), "retro-hunt failed: {e}"),
            }
        })
        .ok()
    }
}
