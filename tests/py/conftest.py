"""Shared by the Python tests: the demo archive made once by the real binary, and DuckDB
over an archive's tables."""
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "debug" / "alertflow"))


@pytest.fixture(scope="session")
def demo_archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo") / "site"
    out = subprocess.run([BIN, "demo", "--dir", str(d)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return d


def duck_rows(archive, sql):
    """DuckDB's answer over the archive's Hive folders."""
    con = duckdb.connect()
    for t in ("events", "alerts", "incidents", "actions"):
        if (archive / t).is_dir():
            con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{archive / t}/**/*.parquet', hive_partitioning = true)")
    return con.execute(sql).fetchall()
