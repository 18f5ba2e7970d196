"""The archive read back by independent readers: pyarrow and DuckDB from PyPI.

The archive is made by the real `alertflow` binary from the real EVE files in
tests/data/eve; the expected values come from Python's own json module.
"""
import collections
import datetime
import json
import os
import re
import subprocess
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "debug" / "alertflow"))
EVE = sorted((ROOT / "tests" / "data" / "eve").glob("*.ndjson"))

FRACTION = re.compile(r"\.(\d{6})\d+")
HEX = re.compile(r"(?<!\\)((?:\\\\)*)\\x([0-9a-fA-F]{2})")


def reference(line):
    """The expected row of one line, or None when alertflow must reject it."""
    raw = line.rstrip("\r")
    if raw.startswith("\ufeff"):
        raw = raw[1:]
    if not raw.strip():
        return None, None
    try:
        ev = json.loads(raw)
    except ValueError:
        try:
            ev = json.loads(HEX.sub(lambda m: m.group(1) + "\\u00" + m.group(2), raw))
        except ValueError:
            return raw, None
    if not isinstance(ev, dict) or not isinstance(ev.get("timestamp"), str):
        return raw, None
    ts = ev["timestamp"]
    if ts == "ts-error":
        when = None
    else:
        try:
            when = datetime.datetime.strptime(FRACTION.sub(r".\1", ts), "%Y-%m-%dT%H:%M:%S.%f%z")
        except ValueError:
            return raw, None
    alert = ev.get("alert") if isinstance(ev.get("alert"), dict) else {}

    def s(v):
        return v if isinstance(v, str) else None

    def i(v):
        return v if isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 else None

    def port(v):
        v = i(v)
        return v if v is not None and 0 <= v <= 65535 else None

    return raw, {
        "timestamp": when,
        "event_type": s(ev.get("event_type")),
        "sensor": s(ev.get("host")) or "replay",
        "src_ip": s(ev.get("src_ip")),
        "src_port": port(ev.get("src_port")),
        "dest_ip": s(ev.get("dest_ip")),
        "dest_port": port(ev.get("dest_port")),
        "flow_id": i(ev.get("flow_id")),
        "app_proto": s(ev.get("app_proto")),
        "alert_signature_id": i(alert.get("signature_id")),
        "alert_signature": s(alert.get("signature")),
        "alert_severity": i(alert.get("severity")),
    }


def expected_raw_lines():
    """The raw text of every line of the EVE test files that is archived, counted."""
    expected = collections.Counter()
    for f in EVE:
        for line in f.read_text(encoding="utf-8", errors="surrogateescape").split("\n"):
            raw, row = reference(line)
            if row is not None:
                expected[raw] += 1
    return expected


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    out = subprocess.run([BIN, "replay", "--json", "--archive", str(root), *map(str, EVE)], check=True, capture_output=True, text=True)
    summary = json.loads(out.stdout)
    expected, rejected = {}, []
    for f in EVE:
        for line in f.read_text(encoding="utf-8", errors="surrogateescape").split("\n"):
            raw, row = reference(line)
            if raw is None:
                continue
            if row is None:
                rejected.append(raw)
            else:
                expected.setdefault(raw, []).append(row)
    return root, summary, expected, rejected


def test_pyarrow_reads_every_row_with_reference_values(archive):
    root, summary, expected, rejected = archive
    table = ds.dataset(root / "events", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == sum(len(v) for v in expected.values()) == summary["rows_archived"]
    assert summary["rejected"] == {"invalid_json": len(rejected)}
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("src_port").type == pa.int32()
    assert schema.field("flow_id").type == pa.int64()
    assert schema.field("alert_severity").type == pa.int32()
    assert schema.field("raw").type == pa.string()
    # Hive partition columns come from the directory names.
    assert "date" in schema.names and "hour" in schema.names
    seen = collections.Counter()
    for row in table.to_pylist():
        raw = row["raw"]
        assert raw in expected, raw[:200]
        want = expected[raw][0]
        for k, v in want.items():
            assert row[k] == v, (k, row[k], v, raw[:200])
        if want["timestamp"] is not None:
            utc = want["timestamp"].astimezone(datetime.timezone.utc)
            assert str(row["date"]) == utc.strftime("%Y-%m-%d")
            assert int(row["hour"]) == utc.hour
        seen[raw] += 1
    assert all(seen[r] == len(v) for r, v in expected.items()), "every line exactly once"


def test_duckdb_queries_the_archive_as_it_is(archive):
    root, _summary, expected, _rejected = archive
    con = duckdb.connect()
    glob = str(root / "events" / "**" / "*.parquet")
    total, = con.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning=true)").fetchone()
    assert total == sum(len(v) for v in expected.values())
    types = dict(con.execute(f"SELECT event_type, count(*) FROM read_parquet('{glob}') GROUP BY 1").fetchall())
    want_types = collections.Counter()
    for rows in expected.values():
        for r in rows:
            want_types[r["event_type"]] += 1
    assert types == dict(want_types)
    sigs = dict(con.execute(f"SELECT alert_signature_id, count(*) FROM read_parquet('{glob}') WHERE event_type = 'alert' GROUP BY 1").fetchall())
    want_sigs = collections.Counter(r["alert_signature_id"] for rows in expected.values() for r in rows if r["event_type"] == "alert")
    assert sigs == dict(want_sigs)
    # Time columns are real timestamps: range queries work without casts.
    n, = con.execute(f"SELECT count(*) FROM read_parquet('{glob}') WHERE timestamp >= TIMESTAMPTZ '2020-01-01 00:00:00+00'").fetchone()
    want_n = sum(1 for rows in expected.values() for r in rows if r["timestamp"] is not None and r["timestamp"] >= datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc))
    assert n == want_n
    # Partition pruning by the hive columns.
    date, cnt = con.execute(f"SELECT date, count(*) FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY 1 ORDER BY 2 DESC LIMIT 1").fetchone()
    assert cnt > 0 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(date))


def test_footer_records_source_positions(archive):
    root, _s, _e, _r = archive
    import pyarrow.parquet as pq
    segs = sorted(p for t in ("events", "alerts", "incidents", "actions") for p in (root / t).rglob("part-*.parquet"))
    assert segs
    # Segment 0 of the newest commit (renamed first) carries the checkpoint; the last
    # commit of a replay may hold only incident closes and their audit records, so every
    # table is looked at.
    epoch = max(p.name.split("-")[1] for p in segs)
    newest = next(p for p in segs if p.name.split("-")[1] == epoch and p.name.split("-")[2] == "0000")
    meta = pq.ParquetFile(newest).metadata.metadata
    assert b"alertflow.epoch" in meta
    ckpt = json.loads(meta[b"alertflow.checkpoint"])
    files = ckpt["sources"]["replay"]["files"]
    sizes = {str(f): f.stat().st_size for f in EVE}
    # Every non-empty input file is recorded as read to its end.
    by_path = {f["path"]: f["offset"] for f in files}
    for path, size in sizes.items():
        if size:
            assert by_path[path] == size


SYSLOG = ROOT / "tests" / "data" / "syslog"


def test_syslog_columns_read_back_by_duckdb_and_pyarrow(tmp_path):
    """Syslog messages replayed by the binary: the syslog columns as the expected files say."""
    files = [SYSLOG / "syslog-suricata-alert-rfc5424.log", SYSLOG / "syslog-rfc5424-metron.log"]
    subprocess.run([BIN, "replay", "--json", "--format", "syslog", "--archive", str(tmp_path), *map(str, files)], check=True, capture_output=True, text=True)
    glob = str(tmp_path / "events" / "**" / "*.parquet")
    con = duckdb.connect()
    alerts = json.loads("[" + ",".join((SYSLOG / "syslog-suricata-alert.expected.ndjson").read_text().split("\n")[:-1]) + "]")
    # Every rsyslog-forwarded Suricata alert is an alert row with rsyslog's header fields.
    rows = con.execute(
        f"SELECT raw, syslog_facility, syslog_severity, syslog_hostname, syslog_app_name, syslog_procid, alert_signature_id, src_ip, dest_port "
        f"FROM read_parquet('{glob}', hive_partitioning=true) WHERE syslog_app_name = 'suricata'"
    ).fetchall()
    by_raw = {r[0]: r for r in rows}
    assert len(by_raw) == len(alerts)
    for a in alerts:
        r = by_raw[a["rfc5424"]]
        h = a["syslog_as_parsed_by_rsyslog"]
        assert r[1:6] == (h["facility"], h["severity"], h["hostname"], h["app_name"], h["procid"])
        e = a["alert_from_same_run_eve"]
        if e:
            assert r[6:] == (e["signature_id"], e["src_ip"], e["dest_port"])
    # Structured data is JSON analysts can query.
    metron = [json.loads(l) for l in (SYSLOG / "syslog-rfc5424-metron.expected.ndjson").read_text().splitlines()]
    got = con.execute(
        f"SELECT syslog_msgid, json_extract_string(syslog_structured_data, '$.\"exampleSDID@32473\".eventID'), syslog_message "
        f"FROM read_parquet('{glob}') WHERE syslog_hostname = 'loggregator' ORDER BY timestamp"
    ).fetchall()
    assert [g[2] for g in got] == [m["syslog.message"] for m in metron]
    assert got[0][:2] == (None, None)
    assert got[1][:2] == ("MSG-02", "1011")
    t = ds.dataset(tmp_path / "events", format="parquet", partitioning="hive").to_table(columns=["syslog_facility", "event_type"])
    assert t.schema.field("syslog_facility").type == pa.int32()
    assert set(t.column("event_type").to_pylist()) == {"alert", "syslog"}


def test_incidents_join_their_alerts_in_duckdb(tmp_path):
    """The README's incident query, on a scan replayed by the binary."""
    lines = []
    for i in range(30):
        lines.append(json.dumps({
            "timestamp": f"2026-11-28T10:00:{i:02d}.000000+0000", "event_type": "alert",
            "src_ip": "192.0.2.66", "src_port": 40000, "dest_ip": "10.0.0.1", "dest_port": 1000 + i, "proto": "TCP",
            "alert": {"action": "allowed", "gid": 1, "signature_id": 9000, "rev": 1, "signature": "scan probe", "category": "Misc", "severity": 2},
        }))
    eve = tmp_path / "eve.json"
    eve.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[state.rules]]\nname = "scan"\ntype = "value_count"\ngroup_by = ["src_ip"]\nfield = "dest_port"\ngte = 20\ntimespan_secs = 300\n')
    root = tmp_path / "archive"
    subprocess.run([BIN, "replay", "--config", str(cfg), "--archive", str(root), str(eve)], check=True, capture_output=True)
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT i.rule, i.group_key, i.alert_count, a.alert_signature, a.src_ip, a.dest_port
        FROM read_parquet('{root}/incidents/**/*.parquet') i, unnest(i.alert_ids) AS m(id)
        JOIN read_parquet('{root}/alerts/**/*.parquet') a ON a.alert_id = m.id
        WHERE i.status = 'open' ORDER BY a.dest_port"""
    ).fetchall()
    assert [r[5] for r in rows] == list(range(1000, 1020))
    assert {(r[0], r[1], r[3]) for r in rows} == {("scan", "192.0.2.66", "scan probe")}
    closed = con.execute(f"SELECT alert_count FROM read_parquet('{root}/incidents/**/*.parquet') WHERE status = 'closed'").fetchall()
    assert closed == [(30,)]
    flags = con.execute(f"SELECT count(*) FILTER (WHERE suppressed), count(*) FILTER (WHERE incident_id IS NOT NULL) FROM read_parquet('{root}/alerts/**/*.parquet')").fetchone()
    assert flags == (29, 11)
    # The audit trail as the `actions` table: every decision, in one unbroken chain.
    recs = con.execute(f"SELECT seq, kind, subject, prev, hash FROM read_parquet('{root}/actions/**/*.parquet') ORDER BY seq").fetchall()
    assert [r[0] for r in recs] == list(range(1, len(recs) + 1))
    assert all(recs[i][3] == recs[i - 1][4] for i in range(1, len(recs)))
    kinds = {r[1] for r in recs}
    assert {"alert_emitted", "incident_opened", "incident_closed"} <= kinds, kinds
    opened = [r[2] for r in recs if r[1] == "incident_opened"]
    ids = [r[0] for r in con.execute(f"SELECT incident_id FROM read_parquet('{root}/incidents/**/*.parquet') WHERE status = 'open'").fetchall()]
    assert opened == ids


def test_flow_context_is_json_duckdb_can_query(tmp_path):
    """Alerts carry their flow's http/tls/dns events and their host's lookups; incidents
    sum up their alerts' flows. DuckDB's JSON functions read both columns."""
    lines = []
    for i in range(25):
        t = f"2026-11-28T10:00:{i:02d}.000000+0000"
        flow = 7000 + i
        lines.append(json.dumps({"timestamp": t, "flow_id": 9000 + i, "event_type": "dns", "src_ip": "10.0.0.5", "src_port": 5353,
                                 "dest_ip": "10.0.0.53", "dest_port": 53, "proto": "UDP",
                                 "dns": {"version": 3, "type": "request", "queries": [{"rrname": f"c2-{i}.example", "rrtype": "A"}]}}))
        lines.append(json.dumps({"timestamp": t, "flow_id": flow, "event_type": "tls", "src_ip": "10.0.0.5", "src_port": 40000 + i,
                                 "dest_ip": "203.0.113.7", "dest_port": 443, "proto": "TCP",
                                 "tls": {"sni": f"c2-{i}.example", "version": "TLS 1.3", "ja3": {"hash": "e7d705a3286e19ea42f587b344ee6865"}}}))
        lines.append(json.dumps({"timestamp": t, "flow_id": flow, "event_type": "alert", "src_ip": "10.0.0.5", "src_port": 40000 + i,
                                 "dest_ip": "203.0.113.7", "dest_port": 443, "proto": "TCP",
                                 "alert": {"action": "allowed", "gid": 1, "signature_id": 2030000 + i % 3, "rev": 1, "signature": "beacon", "category": "A Network Trojan was detected", "severity": 1}}))
    eve = tmp_path / "eve.json"
    eve.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "c.toml"
    # This rule alone (not layered over the default's triage and scoring).
    cfg.write_text('use_defaults = false\n[[state.rules]]\nname = "beaconing"\ntype = "event_count"\ngroup_by = ["src_ip"]\ngte = 20\ntimespan_secs = 300\n')
    root = tmp_path / "archive"
    subprocess.run([BIN, "replay", "--config", str(cfg), "--archive", str(root), str(eve)], check=True, capture_output=True)
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT flow_id, json_extract_string(flow_context, '$.tls[0].sni'), json_extract_string(flow_context, '$.tls[0].ja3'),
                   json_array_length(json_extract(flow_context, '$.host_dns."10.0.0.5"'))
            FROM read_parquet('{root}/alerts/**/*.parquet') ORDER BY flow_id"""
    ).fetchall()
    assert [r[0] for r in rows] == [7000 + i for i in range(25)]
    assert [r[1] for r in rows] == [f"c2-{i}.example" for i in range(25)]
    assert {r[2] for r in rows} == {"e7d705a3286e19ea42f587b344ee6865"}
    assert all(r[3] >= 1 for r in rows)
    ctx = con.execute(
        f"""SELECT json_extract(context, '$.flows')::INT, json_array_length(json_extract(context, '$.tls_sni'))
            FROM read_parquet('{root}/incidents/**/*.parquet') WHERE status = 'closed'"""
    ).fetchall()
    # Every alert from 20 on joins the incident and adds its flow's TLS name (at most 16 listed).
    assert ctx == [(6, 6)], ctx


def test_enrichment_and_score_columns_duckdb_reads(tmp_path):
    """GeoIP, ASN, asset, intel, score and priority are columns analysts filter on;
    reasons, recommendations and intel matches are JSON DuckDB reads; source versions a
    list. The MaxMind test databases give 81.2.69.142 → GB and 1.128.0.1 → AS1221."""
    data = Path(__file__).resolve().parent.parent / "data"
    feed = tmp_path / "feed.txt"
    feed.write_text("81.2.69.142\nbad.example\n")
    assets = tmp_path / "assets.csv"
    assets.write_text("cidr,name,owner,criticality,tags\n10.20.30.40,db-primary,dba,critical,db\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'''
use_defaults = false
[enrich]
geoip_city = "{data / 'geoip/GeoIP2-City-Test.mmdb'}"
geoip_asn = "{data / 'geoip/GeoLite2-ASN-Test.mmdb'}"
assets = "{assets}"
[[enrich.intel]]
name = "local"
path = "{feed}"
confidence = 90
[score]
aggregator = "sum"
[[score.rules]]
name = "intel"
when = "intel.matched"
score = 60
reason = "{{{{intel.indicators}}}}"
[[score.rules]]
name = "crown jewel"
when = "dest.asset.criticality_level == 4"
score = 35
reason = "targets {{{{dest.asset.name}}}}"
[[score.recommend]]
name = "block"
when = "intel.matched"
actions = ["block {{{{src.ip}}}}"]
evidence = "{{{{intel.fields}}}}"
''')
    lines = []
    for i, (src, dst) in enumerate([("81.2.69.142", "10.20.30.40"), ("1.128.0.1", "10.0.0.9"), ("192.0.2.1", "192.0.2.2")]):
        lines.append(json.dumps({"timestamp": f"2026-11-28T10:00:0{i}.000000+0000", "flow_id": 100 + i, "event_type": "alert", "src_ip": src, "src_port": 1000,
                                 "dest_ip": dst, "dest_port": 443, "proto": "TCP",
                                 "alert": {"action": "allowed", "gid": 1, "signature_id": 2000 + i, "rev": 1, "signature": f"sig {i}", "category": "Misc", "severity": 2}}))
    eve = tmp_path / "eve.json"
    eve.write_text("\n".join(lines) + "\n")
    root = tmp_path / "archive"
    subprocess.run([BIN, "replay", "--config", str(cfg), "--archive", str(root), str(eve)], check=True, capture_output=True)
    con = duckdb.connect()
    rows = con.execute(
        f"""SELECT alert_signature_id, src_country, src_asn, src_as_org, dest_asset, score, priority,
                   json_extract_string(intel, '$[0].indicator'), json_extract_string(reasons, '$[1].reason'),
                   json_extract_string(recommendations, '$[0].actions[0]'), len(source_versions),
                   json_extract_string(enrichment, '$.src.geo.city')
            FROM read_parquet('{root}/alerts/**/*.parquet') ORDER BY alert_signature_id"""
    ).fetchall()
    assert rows[0] == (2000, "GB", None, None, "db-primary", 95, "critical", "81.2.69.142", "targets db-primary", "block 81.2.69.142", 4, "London")
    # Not in the City test database, in the ASN one.
    assert rows[1][:7] == (2001, None, 1221, "Telstra Pty Ltd", None, 0, "info")
    assert rows[2][5:7] == (0, "info") and rows[2][7] is None
    # pyarrow sees the same types.
    t = ds.dataset(str(root / "alerts"), format="parquet", partitioning="hive").to_table()
    assert t.schema.field("score").type == pa.int32()
    assert t.schema.field("src_asn").type == pa.int64()
    assert pa.types.is_list(t.schema.field("source_versions").type)
    versions = t.column("source_versions").to_pylist()[0]
    assert sorted(v.split("@")[0] for v in versions) == ["assets", "geoip-asn", "geoip-city", "intel:local"]


def test_raw_codec_lz4_segments_and_zstd_after_compaction(tmp_path):
    """`raw_codec = "lz4"`: the segments a run writes hold `raw` in LZ4_RAW (the other
    columns in zstd); DuckDB and pyarrow read every line back; compaction rewrites `raw`
    in zstd, every line still there."""
    import pyarrow.parquet as pq

    cfg = tmp_path / "c.toml"
    cfg.write_text('[archive]\nraw_codec = "lz4"\n\n[archive.compaction]\nmin_files = 2\n')
    root = tmp_path / "archive"
    # One replay per file: a commit each, so an hour holds several segments.
    for f in EVE:
        subprocess.run([BIN, "replay", "--json", "--config", str(cfg), "--archive", str(root), str(f)], check=True, capture_output=True, text=True)
    expected = expected_raw_lines()

    def codecs(pattern):
        seen = collections.defaultdict(set)
        for p in (root / "events").rglob(pattern):
            md = pq.ParquetFile(p).metadata
            for rg in range(md.num_row_groups):
                for c in range(md.num_columns):
                    col = md.row_group(rg).column(c)
                    seen[col.path_in_schema].add(col.compression)
        return seen

    def lines():
        con = duckdb.connect()
        rows = con.execute(f"SELECT raw FROM read_parquet('{root}/events/**/*.parquet', hive_partitioning = true)").fetchall()
        by_pyarrow = ds.dataset(root / "events", format="parquet", partitioning="hive").to_table(columns=["raw"]).column("raw").to_pylist()
        assert collections.Counter(by_pyarrow) == collections.Counter(r[0] for r in rows)
        return collections.Counter(r[0] for r in rows)

    before = codecs("part-*.parquet")
    # pyarrow calls Parquet's LZ4_RAW codec "LZ4" (the Hadoop framing is "LZ4_HADOOP").
    assert before["raw"] == {"LZ4"}, before["raw"]
    assert before["src_ip"] == {"ZSTD"} and before["event_type"] == {"ZSTD"}
    assert lines() == expected
    out = subprocess.run([BIN, "compact", "--config", str(cfg), "--archive", str(root)], check=True, capture_output=True, text=True)
    assert "merged" in out.stdout and list((root / "events").rglob("compact-*.parquet")), out.stdout
    after = codecs("compact-*.parquet")
    assert after["raw"] == {"ZSTD"}, after["raw"]
    assert lines() == expected


@pytest.mark.parametrize("version", [1, 2])
def test_data_page_versions_read_back_by_duckdb_and_pyarrow(tmp_path, version):
    """`data_page_version` 1 (the default) and 2 both give files DuckDB and pyarrow read
    line for line; the file says which format version wrote it."""
    import pyarrow.parquet as pq

    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[archive]\ndata_page_version = {version}\n" if version == 2 else "")
    root = tmp_path / "archive"
    subprocess.run([BIN, "replay", "--json", "--config", str(cfg), "--archive", str(root), *map(str, EVE)], check=True, capture_output=True, text=True)
    expected = expected_raw_lines()
    files = list((root / "events").rglob("part-*.parquet"))
    assert files
    assert {pq.ParquetFile(p).metadata.format_version[0] for p in files} == {str(version)}
    con = duckdb.connect()
    by_duckdb = collections.Counter(r[0] for r in con.execute(f"SELECT raw FROM read_parquet('{root}/events/**/*.parquet')").fetchall())
    by_pyarrow = collections.Counter(ds.dataset(root / "events", format="parquet", partitioning="hive").to_table(columns=["raw"]).column("raw").to_pylist())
    assert by_duckdb == expected and by_pyarrow == expected
    # Typed columns too: the same alerts by signature through both readers.
    sql = f"SELECT alert_signature_id, count(*) FROM read_parquet('{root}/events/**/*.parquet') WHERE alert_signature_id IS NOT NULL GROUP BY 1 ORDER BY 1"
    t = ds.dataset(root / "events", format="parquet", partitioning="hive").to_table(columns=["alert_signature_id"]).column("alert_signature_id").to_pylist()
    assert con.execute(sql).fetchall() == sorted(collections.Counter(x for x in t if x is not None).items())
