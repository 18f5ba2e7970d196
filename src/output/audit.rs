//! The audit trail: every decision of the alert path — an alert emitted, repeats summed up
//! by a roll-up, an incident opened, updated, corrected or closed with its score and
//! priority — as one JSON line, hash-chained to the one before it, in
//! `<archive>/_audit/audit.jsonl`.
//!
//! A record is `{"seq":…,"id":…,"ts":…,"kind":…,"subject":…,"detail":{…},"prev":…,"hash":…}`:
//! `seq` counts from 1 without gaps, `id` is stable (derived from kind, subject and event
//! time, so a replay gives the same ids), `prev` is the previous record's `hash`, and `hash`
//! is the SHA-256 of `prev`, a newline and the record's text up to `prev` (closed with `}`).
//! Editing, deleting, inserting or reordering a record breaks the chain at that record;
//! records cut off the end are found against the chain head saved with each commit.
//!
//! Records are appended (and fsynced) after the commit that produced them has landed; the
//! chain's head is part of the commit's snapshot, and each record is a row of the commit's
//! `actions` table too, so a restart rebuilds the records a crash kept from the file from
//! those rows (byte for byte: the hash chain checks it) and appends them, once.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use arrow::array::{Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};

use crate::event::chain::{check, verify_at};
pub use crate::event::chain::{line_of, record_id, verify, write_detail, BadRecord, Chain, Parts, Record, Verified, GENESIS};
use crate::event::members::Members;

/// The trail's file under the archive root (beside the tables; table readers skip `_`).
pub const FILE: &str = "_audit/audit.jsonl";

/// The marker of what has been appended durably, beside the trail.
fn head_path(trail: &Path) -> PathBuf {
    trail.with_file_name("head.json")
}

/// The trail file of an archive.
pub fn path_in(archive_root: &Path) -> PathBuf {
    archive_root.join(FILE)
}

/// The trail's last record as a chain head (the start of a chain: no records or no file).
pub fn last_chain(path: &Path) -> std::io::Result<Chain> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Chain::default()),
        Err(e) => return Err(e),
    };
    let mut last = Chain::default();
    for line in std::io::BufReader::new(f).lines() {
        let v = serde_json::from_str::<serde_json::Value>(&line?).ok();
        if let Some((seq, hash)) = v.as_ref().and_then(|v| Some((v["seq"].as_u64()?, v["hash"].as_str()?))) {
            last = Chain { seq, head: hash.to_string() };
        }
    }
    Ok(last)
}

/// The trail file, appended to and fsynced.
pub struct Trail {
    path: PathBuf,
    f: std::fs::File,
}

impl Trail {
    pub fn open(path: PathBuf) -> std::io::Result<Trail> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let f = std::fs::File::options().create(true).append(true).open(&path)?;
        Ok(Trail { path, f })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines` and makes them durable; then the head marker says so (records cut
    /// off the end later are found by it).
    pub fn append<S: AsRef<str>>(&mut self, lines: &[S]) -> std::io::Result<()> {
        let Some(last) = lines.last().map(AsRef::as_ref) else { return Ok(()) };
        // Straight from the lines, a few hundred to a call: a commit's records can be tens
        // of megabytes, not worth a copy in fresh memory.
        for part in lines.chunks(512) {
            let mut slices: Vec<std::io::IoSlice> =
                part.iter().flat_map(|l| [std::io::IoSlice::new(l.as_ref().as_bytes()), std::io::IoSlice::new(b"\n")]).collect();
            let mut rest = &mut slices[..];
            while !rest.is_empty() {
                match self.f.write_vectored(rest) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.f.sync_data()?;
        let v: serde_json::Value = serde_json::from_str(last).map_err(std::io::Error::other)?;
        let head = Chain { seq: v["seq"].as_u64().unwrap_or(0), head: v["hash"].as_str().unwrap_or_default().to_string() };
        let marker = head_path(&self.path);
        let tmp = marker.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string(&head).map_err(std::io::Error::other)?.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, &marker)
    }

    /// Appends the records a crash kept from the file: those `lines` gives for its last
    /// record's number (the records after it, or more), which must continue its chain
    /// record by record (else nothing is appended).
    pub fn recover(&mut self, lines: impl FnOnce(u64) -> std::io::Result<Vec<String>>) -> std::io::Result<usize> {
        let mut chain = last_chain(&self.path)?;
        let lines = lines(chain.seq)?;
        let mut missing: Vec<(u64, &String)> = lines
            .iter()
            .filter_map(|l| Some((serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_u64()?, l)))
            .filter(|(s, _)| *s > chain.seq)
            .collect();
        missing.sort_by_key(|(s, _)| *s);
        for (_, line) in &missing {
            chain = check(&chain, line)
                .map_err(|(seq, why)| {
                    let at = seq.map_or_else(String::new, |s| format!(" (seq {s})"));
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a record to append does not continue the trail{at}: {why}"))
                })?
                .1;
        }
        let missing: Vec<&String> = missing.into_iter().map(|(_, l)| l).collect();
        self.append(&missing)?;
        Ok(missing.len())
    }
}

/// The trail's lines numbered within `seqs`, rebuilt from `actions` rows (see
/// [`crate::output::rows::actions_schema`]), in the order of their numbers.
pub fn lines_of_rows(batches: &[RecordBatch], seqs: std::ops::RangeInclusive<u64>) -> Result<Vec<String>, String> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for b in batches {
        let col = |name: &str| b.column_by_name(name).ok_or_else(|| format!("actions rows without `{name}`"));
        let text = |name: &str| -> Result<&StringArray, String> { col(name)?.as_any().downcast_ref().ok_or_else(|| format!("`{name}` is not text")) };
        let seq: &Int64Array = col("seq")?.as_any().downcast_ref().ok_or("`seq` is not an Int64")?;
        let ts: &TimestampMicrosecondArray = col("timestamp")?.as_any().downcast_ref().ok_or("`timestamp` is not in microseconds")?;
        let (id, kind, subject, detail, prev, hash) = (text("record_id")?, text("kind")?, text("subject")?, text("detail")?, text("prev")?, text("hash")?);
        for i in (0..b.num_rows()).filter(|&i| seqs.contains(&(seq.value(i) as u64))) {
            let p = Parts {
                seq: seq.value(i) as u64,
                id: id.value(i),
                ts_us: ts.value(i),
                kind: kind.value(i),
                subject: subject.value(i),
                detail: detail.value(i),
                prev: prev.value(i),
                hash: hash.value(i),
            };
            out.push((p.seq, line_of(&p)));
        }
    }
    out.sort_by_key(|(s, _)| *s);
    Ok(out.into_iter().map(|(_, l)| l).collect())
}

/// Writes the `audit` member of a snapshot: the chain's head (the records themselves are
/// rows of the commit's `actions` table).
pub fn write_snapshot_member(w: &mut dyn Write, chain: &Chain) -> std::io::Result<()> {
    w.write_all(b"{\"chain\":")?;
    crate::event::delta::write_json(w, chain)?;
    w.write_all(b"}")
}

/// Reads what [`write_snapshot_member`] wrote: the chain's head, and from snapshots of
/// earlier versions the records they held for the file (member `records`, each as the
/// JSON object it is, or `unsaved`, as strings); none from this version's.
pub fn read_snapshot_member(m: &Members) -> Result<(Chain, Vec<String>), serde_json::Error> {
    let chain = m.get("chain")?;
    let records = if !m.is_null("records") {
        let raw: Vec<&serde_json::value::RawValue> = m.get("records")?;
        let not_object = || <serde_json::Error as serde::de::Error>::custom("an audit record in a snapshot is not a JSON object");
        raw.into_iter().map(|r| if r.get().starts_with('{') { Ok(r.get().to_string()) } else { Err(not_object()) }).collect::<Result<_, _>>()?
    } else if !m.is_null("unsaved") {
        m.get("unsaved")?
    } else {
        Vec::new()
    };
    Ok((chain, records))
}

/// The newest state snapshot's chain and the records it held for the file.
fn newest_snapshot(root: &Path) -> Option<(Chain, Vec<String>)> {
    let dir = root.join("_state");
    // `snap-<seq>-…` (the newest has the highest seq, whole or delta: each holds the
    // chain), or the single `state-<epoch>` file of earlier versions.
    let files: Vec<PathBuf> = std::fs::read_dir(&dir).ok()?.filter_map(Result::ok).map(|e| e.path()).collect();
    let named = |prefix: &str| {
        files.iter().filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))).max().cloned()
    };
    let newest = named("snap-").or_else(|| named("state-"))?;
    let text = std::fs::read_to_string(newest).ok()?;
    let audit = Members::parse(&text).ok()?.members("audit").ok()?;
    // Without readable records the chain still counts (no records to come).
    read_snapshot_member(&audit).ok().or_else(|| Some((audit.get("chain").ok()?, Vec::new())))
}

/// `alertflow audit verify`: the archive's trail checked record by record and against the
/// chain head its newest commit saved; records the trail lacks (a crash before they were
/// appended) are checked as `pending` gives them (the records after the first number up
/// to the second, from the `actions` table). `Ok`: what was checked; `Err`: the first problem.
pub fn verify_archive(root: &Path, pending: impl FnOnce(u64, u64) -> Result<Vec<String>, String>) -> Result<String, String> {
    let path = path_in(root);
    let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let marker: Option<Chain> = std::fs::read_to_string(head_path(&path)).ok().and_then(|t| serde_json::from_str(&t).ok());
    let (v, at_marker) = verify_at(std::io::BufReader::new(f), marker.as_ref().map_or(0, |m| m.seq)).map_err(|b| format!("{}: {b}", path.display()))?;
    if let Some(m) = &marker {
        if v.chain.seq < m.seq {
            return Err(format!("{}: records after seq {} were removed ({} had been written)", path.display(), v.chain.seq, m.seq));
        }
        if at_marker.as_deref() != Some(m.head.as_str()) {
            return Err(format!("{}: line {} (seq {}): not the record that was written", path.display(), m.seq, m.seq));
        }
    }
    let mut msg = format!("{}: ok, {} records, head {}", path.display(), v.records, v.chain.head);
    if let Some((saved, unsaved)) = newest_snapshot(root) {
        if saved.seq < v.chain.seq {
            return Err(format!("{}: {} records after seq {} were not made by the newest commit", path.display(), v.chain.seq - saved.seq, saved.seq));
        }
        if saved.seq == v.chain.seq && saved.head != v.chain.head {
            return Err(format!("{}: line {} (seq {}): not the record the newest commit made", path.display(), v.records, v.chain.seq));
        }
        if saved.seq > v.chain.seq {
            // Records not yet appended (a crash before the append): they must continue the
            // file exactly, and the next start appends them.
            let held: Vec<String> = unsaved
                .into_iter()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|x| x["seq"].as_u64()).is_some_and(|s| s > v.chain.seq))
                .collect();
            let tail = if held.is_empty() { pending(v.chain.seq, saved.seq)? } else { held };
            let joined: String = tail.iter().map(|l| format!("{l}\n")).collect();
            let mut whole =
                std::io::BufReader::new(std::fs::File::open(&path).map_err(|e| e.to_string())?).lines().map_while(Result::ok).collect::<Vec<_>>().join("\n");
            if !whole.is_empty() {
                whole.push('\n');
            }
            whole.push_str(&joined);
            match verify(std::io::Cursor::new(whole)) {
                Ok(w) if w.chain == saved => msg.push_str(&format!("; {} records after seq {} are appended at the next start", tail.len(), v.chain.seq)),
                _ => return Err(format!("{}: records after seq {} are missing (the newest commit made {})", path.display(), v.chain.seq, saved.seq)),
            }
        }
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trail(n: usize) -> Vec<String> {
        let mut c = Chain::default();
        (0..n).map(|i| c.append(1_700_000_000_000_000 + i as i64, "alert_emitted", &format!("a{i}"), &serde_json::json!({"n": i}))).collect()
    }

    fn check(lines: &[String]) -> Result<Verified, BadRecord> {
        verify(std::io::Cursor::new(lines.iter().map(|l| format!("{l}\n")).collect::<String>()))
    }

    /// The snapshot member holds the chain's head; snapshots of earlier versions, which
    /// held the records too (as the objects they are, or as strings), give each record
    /// back byte for byte (escapes, non-ASCII and all).
    #[test]
    fn snapshot_member_holds_the_head_and_earlier_versions_their_records() {
        let mut c = Chain::default();
        let subjects = ["plain", "quote \" back\\slash", "tab\tnew\nline", "ünïcode ✓", "\u{1}ctl"];
        let records: Vec<String> = subjects.iter().map(|s| c.append(1_700_000_000_000_000, "alert_emitted", s, &serde_json::json!({"s": s}))).collect();
        let mut buf = Vec::new();
        write_snapshot_member(&mut buf, &c).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(read_snapshot_member(&Members::parse(&text).unwrap()).unwrap(), (c.clone(), Vec::new()));
        for n in [0, 1, records.len()] {
            let objects = format!("{{\"chain\":{},\"records\":[{}]}}", serde_json::to_string(&c).unwrap(), records[..n].join(","));
            let (chain, back) = read_snapshot_member(&Members::parse(&objects).unwrap()).unwrap();
            assert_eq!((chain, back.as_slice()), (c.clone(), &records[..n]));
        }
        let old = serde_json::json!({"chain": c, "unsaved": records}).to_string();
        assert_eq!(read_snapshot_member(&Members::parse(&old).unwrap()).unwrap(), (c.clone(), records.clone()));
        assert!(read_snapshot_member(&Members::parse(r#"{"chain":{"seq":1,"head":"x"},"records":["a"]}"#).unwrap()).is_err(), "a record must be an object");
    }

    /// The `actions` rows of a trail rebuild its lines byte for byte, any range of them in
    /// order whatever the order of the rows; a restart appends those the file lacks, and
    /// nothing that does not continue the file's chain.
    #[test]
    fn actions_rows_rebuild_the_trail_and_recovery_appends_only_what_continues_it() {
        let mut c = Chain::default();
        let subjects = ["plain", "quote \" back\\slash", "tab\tnew\nline", "ünïcode ✓", "\u{1}ctl", "last"];
        let mut rows = [crate::output::rows::ActionRows::default(), crate::output::rows::ActionRows::default()];
        let mut lines = Vec::new();
        for (i, s) in subjects.iter().enumerate() {
            let detail = serde_json::json!({"s": s, "n": i, "x": [1.5, null, "é"]});
            let r = c.record(1_700_000_000_000_000 + 3_600_000_000 * i as i64, "alert_emitted", s, &detail);
            // Rows spread over two files, the way a commit spreads them over hours.
            rows[i % 2].push(&r, "alert_emitted", s);
            lines.push(r.line);
        }
        let [a, b] = rows;
        let batches = [b.finish().columns, a.finish().columns];
        assert_eq!(lines_of_rows(&batches, 1..=6).unwrap(), lines);
        assert_eq!(lines_of_rows(&batches, 3..=4).unwrap(), &lines[2..4]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut t = Trail::open(path.clone()).unwrap();
        t.append(&lines[..2]).unwrap();
        // Records that skip one, or come from another chain, are refused.
        let err = t.recover(|last| Ok(lines_of_rows(&batches, last + 2..=6).unwrap())).unwrap_err();
        assert!(err.to_string().contains("(seq 4)"), "{err}");
        let other = trail(4);
        assert!(t.recover(|_| Ok(other.clone())).is_err());
        assert_eq!(check(&std::fs::read_to_string(&path).unwrap().lines().map(str::to_string).collect::<Vec<_>>()).unwrap().records, 2);
        // Those after the file's last go in, once.
        assert_eq!(t.recover(|last| Ok(lines_of_rows(&batches, last + 1..=6).unwrap())).unwrap(), 4);
        assert_eq!(t.recover(|_| Ok(lines.clone())).unwrap(), 0);
        let back: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(str::to_string).collect();
        assert_eq!(back, lines);
        assert_eq!(last_chain(&path).unwrap(), c);
    }

    /// A record's columns are the members of its line, its detail the serializer's text of
    /// it; the chain of such lines verifies.
    #[test]
    fn record_columns_are_the_members_of_its_line() {
        let mut c = Chain::default();
        let mut lines = Vec::new();
        let mut prev = GENESIS.to_string();
        for (i, s) in ["plain", "quote \" back\\slash", "ünïcode ✓ \u{1}"].iter().enumerate() {
            let detail = serde_json::json!({"n": i, "s": s, "deep": {"x": [1.5, null, "é\n"]}});
            let ts = 1_700_000_000_000_000 + i as i64;
            let r = c.record(ts, "alert_emitted", s, &detail);
            let v: serde_json::Value = serde_json::from_str(&r.line).unwrap();
            assert_eq!((v["seq"].as_u64(), v["subject"].as_str()), (Some(i as u64 + 1), Some(*s)));
            assert_eq!(r.id(), record_id("alert_emitted", s, ts));
            assert_eq!(Some(r.id()), v["id"].as_str());
            assert_eq!(r.detail(), serde_json::to_string(&detail).unwrap());
            assert_eq!(v["detail"], detail);
            assert_eq!((r.prev(), Some(r.hash())), (prev.as_str(), v["hash"].as_str()));
            assert_eq!(c.head, r.hash());
            let parts = Parts { seq: r.seq, id: r.id(), ts_us: ts, kind: "alert_emitted", subject: s, detail: r.detail(), prev: r.prev(), hash: r.hash() };
            assert_eq!(line_of(&parts), r.line, "rebuilt from its columns");
            prev = r.hash().to_string();
            lines.push(r.line);
        }
        assert_eq!(check(&lines).unwrap().records, 3);
    }

    #[test]
    fn a_good_trail_verifies_and_every_tampering_names_its_record() {
        let t = trail(5);
        let ok = check(&t).unwrap();
        assert_eq!(ok.records, 5);
        assert_eq!(ok.chain.seq, 5);
        // Changed.
        let mut m = t.clone();
        m[2] = m[2].replace("\"n\":2", "\"n\":7");
        assert_eq!(check(&m).unwrap_err().line, 3);
        // Deleted.
        let mut d = t.clone();
        d.remove(1);
        assert_eq!(check(&d).unwrap_err().line, 2);
        // Inserted: a record made elsewhere.
        let mut ins = t.clone();
        ins.insert(3, Chain::default().append(0, "alert_emitted", "x", &serde_json::json!({})));
        assert_eq!(check(&ins).unwrap_err().line, 4);
        // Reordered.
        let mut r = t.clone();
        r.swap(1, 2);
        assert_eq!(check(&r).unwrap_err().line, 2);
        // A record rewritten with a fresh hash still breaks the link of the next one.
        let mut forged = t.clone();
        let v: serde_json::Value = serde_json::from_str(&forged[1]).unwrap();
        let mut c = Chain { seq: 1, head: v["prev"].as_str().unwrap().to_string() };
        forged[1] = c.append(1_700_000_000_000_001, "alert_emitted", "a1", &serde_json::json!({"n": 99}));
        assert_eq!(check(&forged).unwrap_err().line, 3);
    }
}
