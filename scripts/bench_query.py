#!/usr/bin/env python3
"""Query benchmark: `alertflow query` and `alertflow report` against DuckDB (PyPI) over the
same archive, in one run.

  bench_query.py [--events 10000000] [--runs 3]

Makes (once) an archive of --events generated mixed EVE events (scripts/gen_eve.py, spread
over hours) with `alertflow replay`, then times, as a user runs them (a fresh process each):
a GROUP BY over alerts, a one-hour filtered query over events, and the whole report.
DuckDB runs the same SQL over read_parquet(..., hive_partitioning=true) in a fresh
connection each time. Prints medians and ratios. Never run in CI; uses
target/release/alertflow (cargo build --release first).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "release" / "alertflow"))
OUT = ROOT / "bench-out"

GROUP_BY = "SELECT alert_signature, count(*) AS n FROM alerts GROUP BY alert_signature ORDER BY n DESC, alert_signature LIMIT 20"
# Scans of the whole events table (every row group read).
SCAN_TYPES = "SELECT event_type, count(*) AS n, count(DISTINCT src_ip) AS hosts FROM events GROUP BY event_type ORDER BY n DESC"
SCAN_PORTS = "SELECT dest_port, count(*) AS n FROM events WHERE proto = 'TCP' GROUP BY dest_port ORDER BY n DESC, dest_port LIMIT 10"


def one_hour(date, hour):
    return f"SELECT count(*) AS n, count(DISTINCT src_ip) AS hosts FROM events WHERE date = DATE '{date}' AND hour = {hour} AND event_type = 'dns'"


def timed(fn, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    import duckdb

    OUT.mkdir(exist_ok=True)
    src = OUT / f"mixed-{a.events}.json"
    if not src.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_eve.py"), "mixed", str(a.events), str(src)], check=True)
    archive = OUT / f"archive-query-{a.events}"
    if not archive.exists():
        subprocess.run([BIN, "replay", "--archive", str(archive), str(src)], check=True, capture_output=True)
    parts = sorted((archive / "events").glob("date=*/hour=*"))
    mid = parts[len(parts) // 2]
    date, hour = mid.parent.name.split("=")[1], int(mid.name.split("=")[1])

    def ours(sql):
        subprocess.run([BIN, "query", "--archive", str(archive), "--format", "csv", sql], check=True, capture_output=True)

    def duck(sql):
        con = duckdb.connect()
        for t in ("events", "alerts", "incidents", "actions"):
            if (archive / t).is_dir():
                con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{archive / t}/**/*.parquet', hive_partitioning = true)")
        con.execute(sql).fetchall()

    res = {"events": a.events, "partitions": len(parts), "runs": a.runs}
    for name, sql in (("group_by_signature", GROUP_BY), ("one_hour", one_hour(date, hour)), ("scan_event_types", SCAN_TYPES), ("scan_tcp_ports", SCAN_PORTS)):
        o, d = timed(lambda: ours(sql), a.runs), timed(lambda: duck(sql), a.runs)
        res[name] = {"alertflow_s": round(o, 3), "duckdb_s": round(d, 3), "ratio": round(o / d, 2)}
    res["report_s"] = round(timed(lambda: subprocess.run([BIN, "report", "--archive", str(archive), "--out", str(OUT / "report.html")], check=True, capture_output=True), a.runs), 3)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
