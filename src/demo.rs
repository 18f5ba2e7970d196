//! `alertflow demo`: the embedded default configuration and a bundled sample of real
//! Suricata 8.0.6 EVE output (see `data/demo/SOURCES.md`), archived into a demo folder,
//! then read back from the Parquet archive to show what an analyst gets.

use std::collections::BTreeMap;
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

/// The bundled sample.
pub const SAMPLE: &[u8] = include_bytes!("../data/demo/eve-sample.json");
const MARKER: &str = ".alertflow-demo";

pub struct DemoResult {
    pub summary: Summary,
    pub rows_read_back: usize,
    pub top_signatures: Vec<(String, u64)>,
    /// Alerts by priority, most severe first.
    pub priorities: Vec<(String, u64)>,
    /// The highest-scored alert: score, signature, its reasons.
    pub top_alert: Option<(i32, String, Vec<String>)>,
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
    std::fs::write(&input, SAMPLE)?;

    let mut cfg = Config::embedded_default();
    cfg.archive.root = dir.to_path_buf();
    cfg.dead_letter.path = Some(crate::config::default_dead_letter_path(dir));
    cfg.sources = vec![SourceConfig {
        name: "demo".into(),
        kind: SourceKind::File(replay_file_config(vec![input.display().to_string()])),
        overflow: Overflow::Block,
        format: crate::ingest::Format::Eve,
        timezone: None,
    }];
    let summary = pipeline::run(&cfg, Mode::ReadToEnd, Arc::new(AtomicBool::new(false)), None, None)?;

    let (rows_read_back, signatures) = read_back(dir)?;
    let mut top: Vec<(String, u64)> = signatures.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(5);
    let (priorities, top_alert) = read_scores(dir)?;
    Ok(DemoResult { summary, rows_read_back, top_signatures: top, priorities, top_alert, dir: dir.to_path_buf() })
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

type Scores = (Vec<(String, u64)>, Option<(i32, String, Vec<String>)>);

/// The `alerts` table: counts by priority and the highest-scored alert with its reasons.
fn read_scores(root: &Path) -> anyhow::Result<Scores> {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut top: Option<(i32, String, Vec<String>)> = None;
    for p in sealed_files(root, Table::Alerts.dir(), None) {
        for batch in ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p)?)?.build()? {
            let batch = batch?;
            let (Some(pr), Some(sc), Some(sig), Some(rs)) =
                (batch.column_by_name("priority"), batch.column_by_name("score"), batch.column_by_name("alert_signature"), batch.column_by_name("reasons"))
            else {
                continue;
            };
            let (pr, sig, rs) = (pr.as_string::<i32>(), sig.as_string::<i32>(), rs.as_string::<i32>());
            let sc = sc.as_primitive::<arrow::datatypes::Int32Type>();
            for i in 0..batch.num_rows() {
                if !pr.is_valid(i) {
                    continue;
                }
                *by.entry(pr.value(i).to_string()).or_insert(0) += 1;
                if top.as_ref().is_none_or(|t| sc.value(i) > t.0) {
                    let reasons: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(rs.value(i))
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|r| r["reason"].as_str().map(str::to_string))
                        .collect();
                    top = Some((sc.value(i), sig.value(i).to_string(), reasons));
                }
            }
        }
    }
    let order = ["critical", "high", "medium", "low", "info"];
    let mut v: Vec<(String, u64)> = by.into_iter().collect();
    v.sort_by_key(|(p, _)| order.iter().position(|o| o == p).unwrap_or(9));
    Ok((v, top))
}

/// Reads every sealed segment of `events` back: row count and alert counts per signature.
fn read_back(root: &Path) -> anyhow::Result<(usize, BTreeMap<String, u64>)> {
    let mut rows = 0;
    let mut sigs = BTreeMap::new();
    for p in sealed_files(root, Table::Events.dir(), None) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p)?)?.build()?;
        for batch in reader {
            let batch = batch?;
            rows += batch.num_rows();
            let sig = batch.column_by_name("alert_signature").expect("alert_signature column").as_string::<i32>();
            for i in 0..sig.len() {
                if sig.is_valid(i) && !sig.value(i).is_empty() {
                    *sigs.entry(sig.value(i).to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    Ok((rows, sigs))
}
