"""`alertflow query` against DuckDB (PyPI) over the same archive: ten analyst questions
give the same answers; a one-hour condition opens only that hour's files; bad SQL, an
unknown table or column, a missing archive and an empty time range are one line each, exit
code 2.
"""
import csv
import io
import os
import subprocess
from pathlib import Path

import pytest
from conftest import duck_rows

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "debug" / "alertflow"))

QUESTIONS = [
    "SELECT count(*) AS n FROM events",
    "SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY n DESC, event_type",
    "SELECT alert_signature_id, alert_signature, count(*) AS n FROM alerts GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 10",
    "SELECT src_ip, count(*) AS n FROM events WHERE src_ip IS NOT NULL GROUP BY src_ip ORDER BY n DESC, src_ip LIMIT 10",
    "SELECT priority, count(*) AS n FROM alerts WHERE priority IS NOT NULL GROUP BY priority ORDER BY priority",
    "SELECT hour, count(*) AS n FROM alerts WHERE date = DATE '2024-03-10' GROUP BY hour ORDER BY hour",
    "SELECT count(DISTINCT incident_id) AS n FROM incidents",
    "SELECT rule, max(score) AS top, count(*) AS changes FROM incidents GROUP BY rule ORDER BY rule",
    "SELECT dest_port, count(*) AS n FROM events WHERE event_type = 'alert' AND dest_port IS NOT NULL GROUP BY dest_port ORDER BY n DESC, dest_port LIMIT 10",
    "SELECT count(*) AS n FROM alerts WHERE suppressed AND hour = 10",
]


@pytest.fixture(scope="module")
def archive(demo_archive):
    return demo_archive


def ours(archive, sql, *extra):
    out = subprocess.run([BIN, "query", "--archive", str(archive), "--format", "csv", *extra, sql], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    return [tuple(r) for r in rows[1:]]


def duck(archive, sql):
    text = lambda v: "" if v is None else ("true" if v is True else "false" if v is False else str(v))
    return [tuple(text(v) for v in row) for row in duck_rows(archive, sql)]


@pytest.mark.parametrize("sql", QUESTIONS)
def test_answers_equal_duckdb(archive, sql):
    got, want = ours(archive, sql), duck(archive, sql)
    assert got == want
    assert want, "a question with an empty answer proves little"


def test_json_columns_work_with_json_functions(archive):
    got = ours(archive, "SELECT json_get_str(reasons, 0, 'rule') AS r, count(*) AS n FROM incidents GROUP BY 1 ORDER BY 1")
    want = duck(archive, "SELECT json_extract_string(reasons, '$[0].rule') AS r, count(*) AS n FROM incidents GROUP BY 1 ORDER BY 1")
    assert got == want and want


def test_since_and_until_bound_every_table(archive):
    sql = "SELECT count(*) AS n FROM events"
    got = ours(archive, sql, "--since", "2024-03-10T10:30:00Z", "--until", "2024-03-10T11:00:00Z")
    want = duck(archive, "SELECT count(*) FROM events WHERE timestamp >= TIMESTAMPTZ '2024-03-10 10:30:00+00' AND timestamp < TIMESTAMPTZ '2024-03-10 11:00:00+00'")
    assert got == want and int(want[0][0]) > 0


def test_a_one_hour_query_opens_only_that_hours_files(archive):
    plan = "\n".join(r[1] for r in ours(archive, "EXPLAIN SELECT count(DISTINCT src_ip) FROM events WHERE date = DATE '2024-03-10' AND hour = 10"))
    files = [p for p in plan.replace(",", " ").replace("[", " ").replace("]", " ").split() if p.endswith(".parquet")]
    assert files, plan
    assert all("hour=10/" in f for f in files), files
    assert len(list((archive / "events").glob("date=*/hour=*/*.parquet"))) > len(files)


@pytest.mark.parametrize(
    "args, says",
    [
        (["SELEC nothing"], "SQL error"),
        (["SELECT * FROM nope"], "unknown table `nope`"),
        (["SELECT nope FROM events"], "No field named nope"),
        (["--since", "2030-01-01T00:00:00Z", "SELECT count(*) FROM events"], "no data in the time range"),
        (["top-nothing"], "neither SQL nor a saved query"),
    ],
)
def test_mistakes_are_one_clear_line_and_exit_2(archive, args, says):
    out = subprocess.run([BIN, "query", "--archive", str(archive), *args], capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], out.stderr


def test_a_missing_archive_is_one_line(tmp_path):
    out = subprocess.run([BIN, "query", "--archive", str(tmp_path / "none"), "SELECT 1"], capture_output=True, text=True)
    assert out.returncode == 2 and "no such archive" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_saved_queries_run(archive):
    listed = subprocess.run([BIN, "query", "--list"], capture_output=True, text=True, check=True).stdout
    for name in ("top-signatures", "top-talkers", "alerts-by-priority", "incidents"):
        assert name in listed
        assert ours(archive, name), name
    incidents = ours(archive, "incidents")
    want = duck(archive, "SELECT count(DISTINCT incident_id) FROM incidents")
    assert len(incidents) == int(want[0][0]), "one row per incident: its latest state"
    first = incidents[0][0]
    alerts = ours(archive, "incident-alerts", "--set", f"incident={first}")
    assert alerts
    out = subprocess.run([BIN, "query", "--archive", str(archive), "host", "--set", "host=1' OR '1'='1"], capture_output=True, text=True)
    assert out.returncode == 2 and "is not a value for host" in out.stderr


def test_the_query_api_is_read_only_authenticated_and_bounded(archive, tmp_path):
    import json as _json
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    follow = tmp_path / "eve.json"
    follow.write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[archive]\nroot = "{archive}"\n\n[metrics]\nlisten = "127.0.0.1:{port}"\nquery_api = true\nquery_token_env = "AF_TEST_QUERY_TOKEN"\nquery_max_rows = 5\n\n'
        f'[[sources]]\nname = "eve"\ntype = "file"\npath = "{follow}"\n'
    )
    token = "t0ken-for-the-query-api-test"
    proc = subprocess.Popen([BIN, "run", "--config", str(cfg)], env=dict(os.environ, AF_TEST_QUERY_TOKEN=token), stderr=subprocess.DEVNULL)
    try:
        def post(body, tok=token, accept="application/json"):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/query", data=_json.dumps(body).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json", "Accept": accept})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        deadline = time.time() + 30
        while True:
            try:
                status, body = post({"sql": "SELECT count(*) AS n FROM events"})
                break
            except OSError:
                assert time.time() < deadline, "the listener did not come up"
                time.sleep(0.2)
        assert status == 200, body
        got = _json.loads(body)
        assert got["columns"] == ["n"] and got["rows"][0][0] == int(duck(archive, "SELECT count(*) FROM events")[0][0])
        # Bounded rows.
        status, body = post({"sql": "SELECT src_ip FROM events"})
        got = _json.loads(body)
        assert status == 200 and len(got["rows"]) == 5 and got["truncated"] is True
        # Read-only: no statement that writes or defines.
        for sql in ("CREATE TABLE x AS SELECT 1", f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'", "SET datafusion.execution.batch_size = 1"):
            status, body = post({"sql": sql})
            assert status == 400, (sql, body)
        assert not (tmp_path / "x.csv").exists()
        # The token is required.
        assert post({"sql": "SELECT 1"}, tok="wrong-token-wrong-token")[0] == 401
        # Arrow IPC for tools that want it.
        status, body = post({"sql": "SELECT count(*) AS n FROM events"}, accept="application/vnd.apache.arrow.stream")
        assert status == 200
        import pyarrow.ipc
        t = pyarrow.ipc.open_stream(body).read_all()
        assert sum(t.column("n").to_pylist()) == int(duck(archive, "SELECT count(*) FROM events")[0][0])
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_answers_as_json_lines_and_parquet(archive, tmp_path):
    import json as _json

    import pyarrow.parquet as pq

    sql = "SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY n DESC, event_type"
    want = duck(archive, sql)
    out = subprocess.run([BIN, "query", "--archive", str(archive), "--format", "json", sql], capture_output=True, text=True, check=True)
    got = [(_json.loads(l)["event_type"], str(_json.loads(l)["n"])) for l in out.stdout.splitlines()]
    assert got == want
    p = tmp_path / "answer.parquet"
    subprocess.run([BIN, "query", "--archive", str(archive), "--format", "parquet", "--out", str(p), sql], check=True, capture_output=True)
    t = pq.read_table(p)
    assert list(zip(t.column("event_type").to_pylist(), map(str, t.column("n").to_pylist()))) == want


# The README's DuckDB example of incidents and their alerts, exactly as it is written there
# (after `con.execute(views)`, the output of `alertflow query --duckdb-views`).
README_INCIDENTS_SQL = """SELECT i.incident_id, i.rule, i.status, i.alert_count, a.alert_signature, a.src_ip
FROM incidents_now i
JOIN incident_members m USING (incident_id)
JOIN alerts a ON a.alert_id = m.alert_id
ORDER BY i.incident_id, a.alert_id"""


def duck_with_views(archive, sql):
    import duckdb

    views = subprocess.run([BIN, "query", "--archive", str(archive), "--duckdb-views"], capture_output=True, text=True)
    assert views.returncode == 0, views.stderr
    con = duckdb.connect()
    con.execute(views.stdout)
    text = lambda v: "" if v is None else str(v)
    return [tuple(text(v) for v in row) for row in con.execute(sql).fetchall()]


def test_incident_views_give_the_latest_state_and_every_member_in_duckdb_and_ours(archive):
    readme = (ROOT / "README.md").read_text()
    assert README_INCIDENTS_SQL in readme, "the README shows the query this test runs"
    now_sql = "SELECT incident_id, status, alert_count FROM incidents_now ORDER BY incident_id"
    ours_now, duck_now = ours(archive, now_sql), duck_with_views(archive, now_sql)
    assert ours_now == duck_now and duck_now
    # One row per incident, at its newest change: a replay closes every incident at its end.
    changes = duck(archive, "SELECT count(DISTINCT incident_id) FROM incidents")
    assert len(duck_now) == int(changes[0][0])
    assert {r[1] for r in duck_now} == {"closed"}, duck_now
    # Complete membership in one place: each incident's members are as many as its count.
    members = dict(duck_with_views(archive, "SELECT incident_id, count(*) FROM incident_members GROUP BY 1"))
    assert {i: int(n) for i, n in members.items()} == {r[0]: int(r[2]) for r in duck_now}
    assert ours(archive, "SELECT count(*) FROM incident_members") == duck_with_views(archive, "SELECT count(*) FROM incident_members")
    # The README's example, as written: every member with its alert, for closed incidents too.
    rows = duck_with_views(archive, README_INCIDENTS_SQL)
    assert len(rows) == sum(int(r[2]) for r in duck_now) and all(r[2] == "closed" for r in rows)
    assert ours(archive, README_INCIDENTS_SQL) == rows


def test_partition_columns_have_one_type_in_every_reader(archive):
    import pyarrow as pa
    import pyarrow.dataset as ds

    assert duck_with_views(archive, "SELECT DISTINCT typeof(date), typeof(hour) FROM events") == [("DATE", "INTEGER")]
    assert ours(archive, "SELECT DISTINCT arrow_typeof(date), arrow_typeof(hour) FROM events") == [("Date32", "Int32")]
    # pyarrow with the partitioning the README documents.
    part = ds.partitioning(pa.schema([("date", pa.date32()), ("hour", pa.int32())]), flavor="hive")
    t = ds.dataset(str(archive / "events"), format="parquet", partitioning=part).to_table(columns=["date", "hour"])
    assert t.schema.field("date").type == pa.date32() and t.schema.field("hour").type == pa.int32()


def test_a_statement_opens_only_the_tables_it_names(archive, tmp_path):
    # A copy of the archive whose events table holds a damaged segment (the newest one, the
    # footer the schema is read from): questions about alerts do not touch it; a question
    # about events says which file is damaged, in one line, exit 2.
    import shutil

    copy = tmp_path / "archive"
    shutil.copytree(archive, copy)
    newest = sorted((copy / "events").glob("date=*/hour=*/part-*.parquet"))[-1]
    newest.write_bytes(b"not parquet at all")
    sql = "SELECT alert_signature_id, count(*) AS n FROM alerts GROUP BY 1 ORDER BY n DESC, 1 LIMIT 5"
    assert ours(copy, sql) == duck(archive, sql)
    got = ours(copy, "SELECT count(*) AS n FROM incidents_now")
    assert got == duck(archive, "SELECT count(DISTINCT incident_id) FROM incidents") and int(got[0][0]) > 0
    out = subprocess.run([BIN, "query", "--archive", str(copy), "SELECT count(*) FROM events"], capture_output=True, text=True)
    assert out.returncode == 2, out
    assert len(out.stderr.strip().splitlines()) == 1 and "events" in out.stderr, out.stderr
