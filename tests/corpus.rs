//! Every line of every real EVE file is archived exactly once, with typed columns equal to
//! an independent reference parse (serde_json + chrono), `raw` byte for byte, and the
//! intentionally broken lines in the dead-letter file with their reason.

use crate::common;

use std::path::PathBuf;

use common::*;

fn corpus_files() -> Vec<PathBuf> {
    let mut dirs = vec![data_dir().join("eve")];
    // The full corpus (with the samples not copied into this repository) when present.
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/eve");
    if shared.is_dir() {
        dirs.push(shared);
    }
    if let Some(extra) = std::env::var_os("ALERTFLOW_EXTRA_EVE") {
        dirs.push(PathBuf::from(extra));
    }
    let mut files = Vec::new();
    for d in dirs {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // `*.index.ndjson` describe the corpus; they are not sensor output.
            if name.ends_with(".ndjson") && !name.ends_with(".index.ndjson") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_corpus_line_is_archived_once_with_reference_fields() {
    let files = corpus_files();
    assert!(files.len() >= 7, "test data present: {files:?}");
    for file in files {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        let summary = replay(&mut cfg, std::slice::from_ref(&file));
        let text = std::fs::read(&file).unwrap();

        let mut expected = Vec::new();
        let mut rejected = Vec::new();
        let mut non_empty = 0;
        for line in text.split(|&b| b == b'\n') {
            let Some(raw) = reference_raw(line) else { continue };
            non_empty += 1;
            match reference_row(&raw, "replay") {
                Some(row) => expected.push(row),
                None => rejected.push(raw),
            }
        }
        let mut got = read_archive(dir.path());
        assert_eq!(got.len(), expected.len(), "{}: rows = non-empty lines ({non_empty}) - rejected ({})", file.display(), rejected.len());
        assert_eq!(summary.rows_archived as usize, expected.len());
        assert_eq!(summary.events as usize, expected.len());
        // Rows come back in input order within a partition; compare as multisets keyed by raw.
        got.sort_by(|a, b| a.raw.cmp(&b.raw));
        expected.sort_by(|a, b| a.raw.cmp(&b.raw));
        for (g, e) in got.iter().zip(&expected) {
            let mut g = g.clone();
            // The partition is the UTC hour of the event time.
            if let Some(ts) = g.timestamp {
                let t = chrono::DateTime::from_timestamp_micros(ts).unwrap();
                assert_eq!(g.partition, t.format("date=%Y-%m-%d/hour=%H").to_string());
            }
            g.partition.clear();
            assert_eq!(&g, e, "{}", file.display());
        }
        // Every rejected line is in the dead-letter file with its reason.
        let dl = dead_letters(dir.path());
        assert_eq!(dl.len(), rejected.len(), "{}", file.display());
        for (rec, raw) in dl.iter().zip(&rejected) {
            assert_eq!(rec["sample"].as_str().unwrap(), &raw[..raw.len().min(4096)]);
            assert_eq!(rec["source"], "replay");
            assert!(rec["offset"].as_u64().is_some());
        }
        let reasons: u64 = summary.rejected.values().sum();
        assert_eq!(reasons as usize, rejected.len());
    }
}

#[test]
fn the_broken_fever_line_is_dead_lettered_as_invalid_json_and_the_next_line_flows() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let file = data_dir().join("eve/eve-edgecase-fever-broken-line.ndjson");
    let summary = replay(&mut cfg, std::slice::from_ref(&file));
    assert_eq!(summary.rows_archived, 2);
    assert_eq!(summary.rejected.get("invalid_json"), Some(&1));
    let dl = dead_letters(dir.path());
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["reason"], "invalid_json");
    assert_eq!(dl[0]["path"], file.display().to_string());
    // The broken line starts right after the first line and its newline.
    let first_len = std::fs::read(&file).unwrap().iter().position(|&b| b == b'\n').unwrap() as u64 + 1;
    assert_eq!(dl[0]["offset"].as_u64(), Some(first_len));
    let rows = read_archive(dir.path());
    assert_eq!(rows.iter().filter(|r| r.event_type.as_deref() == Some("http")).count(), 1, "the line after the broken one is archived");
}

#[test]
fn replaying_the_same_file_twice_archives_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = data_dir().join("eve/eve-suricata-docs-8.0.6.ndjson");
    let mut cfg = test_config(dir.path());
    let first = replay(&mut cfg, std::slice::from_ref(&file));
    let second = replay(&mut cfg, &[file]);
    assert!(first.rows_archived > 0);
    assert_eq!(second.rows_archived, 0, "positions in the sealed segments say the file is done");
    assert_eq!(read_archive(dir.path()).len() as u64, first.rows_archived);
}
