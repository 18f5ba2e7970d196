//! `alertflow demo`: a small site replayed with the embedded default configuration and the
//! site's asset inventory (see `data/demo/SOURCES.md`): one hour of real Suricata traffic
//! with attacks planted, archived into a demo folder, then read back from the Parquet
//! archive as the analyst's queue.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::archive::layout::sealed_files;
use crate::archive::Table;
use crate::config::{Config, SourceConfig, SourceKind};
use crate::ingest::file::{FileSourceConfig, StartAt};
use crate::ingest::Overflow;
use crate::pipeline::{self, Mode, Summary};

/// The bundled site: its EVE output (zstd) and its asset inventory.
pub const SITE_EVE_ZST: &[u8] = include_bytes!("../data/demo/site/eve.json.zst");
pub const SITE_ASSETS: &[u8] = include_bytes!("../data/demo/site/assets.csv");
const MARKER: &str = ".alertflow-demo";

/// One entry of the analyst's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub score: i32,
    pub priority: String,
    /// `incident` or `alert`.
    pub kind: &'static str,
    /// Alerts it holds.
    pub alerts: u64,
    /// The story (an incident's first reason) or the alert's signature, hosts and reason.
    pub text: String,
}

pub struct DemoResult {
    pub summary: Summary,
    pub rows_read_back: usize,
    pub alerts: u64,
    /// Incidents plus standalone alerts at medium or above, by score.
    pub queue: Vec<Item>,
    pub dir: PathBuf,
}

/// Runs the demo into `dir` (re-created on each run; only a folder made by the demo is
/// ever cleared).
pub fn run(dir: &Path) -> anyhow::Result<DemoResult> {
    use anyhow::Context;
    if dir.exists() {
        anyhow::ensure!(dir.join(MARKER).exists(), "{} exists and was not made by `alertflow demo`; choose another --dir", dir.display());
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    let input_dir = dir.join("input");
    std::fs::create_dir_all(&input_dir).with_context(|| format!("creating {}", input_dir.display()))?;
    std::fs::write(dir.join(MARKER), "made by alertflow demo\n")?;
    let input = input_dir.join("eve.json");
    std::fs::write(&input, zstd::decode_all(SITE_EVE_ZST).context("the bundled site")?)?;
    let assets = input_dir.join("assets.csv");
    std::fs::write(&assets, SITE_ASSETS)?;

    let mut cfg = Config::embedded_default();
    cfg.archive.root = dir.to_path_buf();
    cfg.dead_letter.path = Some(crate::config::default_dead_letter_path(dir));
    cfg.metrics.listen = None;
    cfg.enrich.assets = Some(assets);
    cfg.sources = vec![SourceConfig {
        name: "demo".into(),
        kind: SourceKind::File(replay_file_config(vec![input.display().to_string()])),
        overflow: Overflow::Block,
        format: crate::ingest::Format::Eve,
        timezone: None,
    }];
    let summary = pipeline::run(&cfg, Mode::ReadToEnd, Arc::new(AtomicBool::new(false)), None, None)?;
    let rows_read_back = sealed_files(dir, Table::Events.dir(), None)
        .iter()
        .map(|p| -> anyhow::Result<usize> {
            Ok(ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p)?)?.build()?.map(|b| b.map(|b| b.num_rows()).unwrap_or(0)).sum())
        })
        .sum::<anyhow::Result<usize>>()?;
    let (alerts, queue) = read_queue(dir)?;
    Ok(DemoResult { summary, rows_read_back, alerts, queue, dir: dir.to_path_buf() })
}

/// File source settings for reading files once (replay, demo).
pub fn replay_file_config(paths: Vec<String>) -> FileSourceConfig {
    FileSourceConfig {
        paths,
        follow: false,
        start_at: StartAt::Beginning,
        poll_interval: std::time::Duration::from_millis(250),
        rotate_wait: std::time::Duration::from_secs(0),
        max_open_files: 1024,
    }
}

fn col<'a>(batch: &'a arrow::record_batch::RecordBatch, name: &str) -> Option<&'a arrow::array::StringArray> {
    batch.column_by_name(name).map(|c| c.as_string::<i32>())
}

/// The first reason of a `reasons` JSON list.
fn first_reason(json: &str) -> String {
    serde_json::from_str::<Vec<serde_json::Value>>(json).ok().and_then(|v| v.first().and_then(|r| r["reason"].as_str().map(str::to_string))).unwrap_or_default()
}

/// The analyst's queue from the archive: every incident (its last row) and every alert
/// that is not suppressed, not in an incident and at medium or above; by score.
pub fn read_queue(root: &Path) -> anyhow::Result<(u64, Vec<Item>)> {
    let mut incidents: HashMap<String, Item> = HashMap::new();
    for p in sealed_files(root, Table::Incidents.dir(), None) {
        for batch in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p)?)?.build()? {
            let batch = batch?;
            let (Some(id), Some(pr), Some(rs)) = (col(&batch, "incident_id"), col(&batch, "priority"), col(&batch, "reasons")) else { continue };
            let (Some(sc), Some(n)) = (batch.column_by_name("score"), batch.column_by_name("alert_count")) else { continue };
            let (sc, n) = (sc.as_primitive::<arrow::datatypes::Int32Type>(), n.as_primitive::<arrow::datatypes::Int64Type>());
            for i in 0..batch.num_rows() {
                let item = Item {
                    score: if sc.is_valid(i) { sc.value(i) } else { 0 },
                    priority: if pr.is_valid(i) { pr.value(i).to_string() } else { String::new() },
                    kind: "incident",
                    alerts: n.value(i).max(0) as u64,
                    text: if rs.is_valid(i) { first_reason(rs.value(i)) } else { String::new() },
                };
                incidents.insert(id.value(i).to_string(), item);
            }
        }
    }
    let mut queue: Vec<Item> = incidents.into_values().collect();
    let mut alerts = 0u64;
    for p in sealed_files(root, Table::Alerts.dir(), None) {
        for batch in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p)?)?.build()? {
            let batch = batch?;
            let (Some(inc), Some(pr), Some(sig), Some(src), Some(dst), Some(rs)) = (
                col(&batch, "incident_id"),
                col(&batch, "priority"),
                col(&batch, "alert_signature"),
                col(&batch, "src_ip"),
                col(&batch, "dest_ip"),
                col(&batch, "reasons"),
            ) else {
                continue;
            };
            let (Some(sup), Some(sc)) = (batch.column_by_name("suppressed"), batch.column_by_name("score")) else { continue };
            let (sup, sc) = (sup.as_boolean(), sc.as_primitive::<arrow::datatypes::Int32Type>());
            for i in 0..batch.num_rows() {
                alerts += 1;
                if inc.is_valid(i) {
                    continue;
                }
                let prio = if pr.is_valid(i) { pr.value(i) } else { "" };
                if sup.value(i) || !matches!(prio, "medium" | "high" | "critical") {
                    continue;
                }
                queue.push(Item {
                    score: sc.value(i),
                    priority: prio.to_string(),
                    kind: "alert",
                    alerts: 1,
                    text: format!(
                        "{} ({} → {}): {}",
                        sig.value(i),
                        src.value(i),
                        dst.value(i),
                        if rs.is_valid(i) { first_reason(rs.value(i)) } else { String::new() }
                    ),
                });
            }
        }
    }
    queue.sort_by(|a, b| b.score.cmp(&a.score).then(b.alerts.cmp(&a.alerts)).then(a.text.cmp(&b.text)));
    Ok((alerts, queue))
}
