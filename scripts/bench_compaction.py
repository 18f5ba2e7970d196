#!/usr/bin/env python3
"""Compaction benchmark: a trickle, the files it leaves, and what compaction changes for a
reader.

  bench_compaction.py [--events 10000] [--rate 10] [--quiet 30]

`alertflow run` follows a file that receives --events generated mixed EVE events
(scripts/gen_eve.py, timestamps rewritten to now) at --rate a second, with the default
configuration except `[archive.compaction] quiet_secs = --quiet`. When the trickle ends the
archive is copied (the uncompacted archive); once every hour is compacted the script
reports, for both: Parquet files per table and hour, bytes, and DuckDB (PyPI) timings of two
queries over the day, in one run. Never run in CI; uses target/release/alertflow.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "release" / "alertflow"))

QUERIES = {
    "count_by_type": "SELECT event_type, count(*) FROM read_parquet('{t}/**/*.parquet', hive_partitioning = true) GROUP BY 1",
    "top_talkers": "SELECT src_ip, count(*) AS n FROM read_parquet('{t}/**/*.parquet', hive_partitioning = true) GROUP BY 1 ORDER BY n DESC LIMIT 10",
}


def files_per_hour(archive):
    out = {}
    for table in ("events", "alerts", "incidents"):
        for hour in sorted((archive / table).glob("date=*/hour=*")):
            n = len(list(hour.glob("*.parquet")))
            out[f"{table}/{hour.parent.name}/{hour.name}"] = n
    return out


def size(archive):
    return sum(p.stat().st_size for p in archive.rglob("*.parquet") if "_compact" not in p.parts)


def timed(sql, runs=5):
    import duckdb

    out = []
    for _ in range(runs):
        con = duckdb.connect()
        t = time.perf_counter()
        con.execute(sql).fetchall()
        out.append(time.perf_counter() - t)
        con.close()
    return round(statistics.median(out), 4)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=10)
    p.add_argument("--quiet", type=int, default=30)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="af-bench-compaction-"))
    src = tmp / "mixed.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_eve.py"), "mixed", str(a.events), str(src)], check=True)
    lines = src.read_text().splitlines()
    follow = tmp / "eve.json"
    follow.write_text("")
    archive = tmp / "archive"
    cfg = tmp / "c.toml"
    cfg.write_text(
        f'[archive]\nroot = "{archive}"\n\n[archive.compaction]\nquiet_secs = {a.quiet}\n\n[metrics]\nlisten = ""\n\n'
        f'[[sources]]\nname = "eve"\ntype = "file"\npath = "{follow}"\n'
    )
    proc = subprocess.Popen([BIN, "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True, env=dict(os.environ, ALERTFLOW_LOG="info"))
    for line in proc.stderr:
        if "alertflow running" in line:
            break
    log = tmp / "alertflow.log"
    import threading

    logf = open(log, "w")
    def keep_log():
        for x in proc.stderr:
            logf.write(x)
            logf.flush()

    threading.Thread(target=keep_log, daemon=True).start()
    start = time.time()
    with open(follow, "a") as f:
        for i, line in enumerate(lines):
            ev = json.loads(line)
            t = time.time()
            g = time.gmtime(int(t))
            ev["timestamp"] = "%04d-%02d-%02dT%02d:%02d:%02d.%06d+0000" % (g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, int((t % 1) * 1e6))
            f.write(json.dumps(ev) + "\n")
            f.flush()
            delay = start + (i + 1) / a.rate - time.time()
            if delay > 0:
                time.sleep(delay)
    trickle_s = time.time() - start
    time.sleep(3)  # the last commit
    before_dir = tmp / "uncompacted"
    shutil.copytree(archive, before_dir, ignore=shutil.ignore_patterns("_compact", ".*"))
    before = files_per_hour(before_dir)
    deadline = time.time() + a.quiet + 600
    # Done when every hour with more than a few segments holds a compacted file (the newest
    # commit's segments, one per writer lane, stay beside it).
    def compacted(table_hour):
        return any(p.name.startswith("compact-") for p in (archive / table_hour).glob("*.parquet"))

    while time.time() < deadline:
        after = files_per_hour(archive)
        if after and all(n <= 2 or compacted(k) for k, n in after.items()):
            break
        time.sleep(2)
    after = files_per_hour(archive)
    proc.terminate()
    proc.wait(timeout=60)
    report = {
        "events": a.events,
        "rate": a.rate,
        "trickle_s": round(trickle_s, 1),
        "files_per_hour_before": before,
        "files_per_hour_after": after,
        "bytes_before": size(before_dir),
        "bytes_after": size(archive),
        "compactions_logged": sum(1 for x in open(log) if "compacted" in x),
    }
    for name, q in QUERIES.items():
        report[f"duckdb_{name}_s"] = {
            "uncompacted": timed(q.format(t=before_dir / "events")),
            "compacted": timed(q.format(t=archive / "events")),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
