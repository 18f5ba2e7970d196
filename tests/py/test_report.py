"""`alertflow report` of the demo archive: one self-contained HTML file whose numbers
equal the SQL answers (ours and DuckDB's), rendered by headless Chromium (Debian
`chromium`) to a PNG without console errors.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import duck_rows

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "debug" / "alertflow"))


@pytest.fixture(scope="module")
def archive(demo_archive):
    return demo_archive


def duck(archive, sql):
    return duck_rows(archive, sql)


def test_report_numbers_equal_the_sql_answers(archive, tmp_path):
    html = tmp_path / "report.html"
    subprocess.run([BIN, "report", "--archive", str(archive), "--out", str(html)], check=True, capture_output=True)
    doc = html.read_text()
    data = json.loads(subprocess.run([BIN, "report", "--archive", str(archive), "--format", "json"], check=True, capture_output=True, text=True).stdout)
    a = data["answers"]
    # The headline figures, as DuckDB counts them.
    events = duck(archive, "SELECT count(*) FROM events")[0][0]
    alerts, suppressed = duck(archive, "SELECT count(*), sum(CASE WHEN suppressed THEN 1 ELSE 0 END) FROM alerts")[0]
    incidents = duck(archive, "SELECT count(DISTINCT incident_id) FROM incidents")[0][0]
    assert int(a["totals_events"]["rows"][0][0]) == events
    assert int(a["totals_alerts"]["rows"][0][0]) == alerts
    assert int(a["totals_alerts"]["rows"][0][1]) == suppressed
    assert len(a["incidents"]["rows"]) == min(incidents, 25)
    kpis = re.findall(r'<div class="kpi"><b>([0-9]+)</b>([a-z ]+)</div>', doc)
    assert dict((k, int(v)) for v, k in kpis)["events"] == events
    assert dict((k, int(v)) for v, k in kpis)["alerts"] == alerts
    assert dict((k, int(v)) for v, k in kpis)["incidents"] == incidents
    top = duck(archive, "SELECT alert_signature, count(*) AS n FROM alerts GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1")[0]
    assert [top[0], str(top[1])] == a["top_signatures"]["rows"][0]
    # Self-contained: nothing to fetch, nothing to run.
    assert not re.search(r"<script|<link|<img|<iframe|src=|href=|url\(|@import", doc, re.I)
    assert doc.count("<svg") >= 3


def test_the_report_renders_in_headless_chromium(archive, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (scripts/test installs it)"
    html = tmp_path / "report.html"
    subprocess.run([BIN, "report", "--archive", str(archive), "--out", str(html)], check=True, capture_output=True)
    png = tmp_path / "report.png"
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
         "--window-size=1000,2600", f"--screenshot={png}", html.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert png.exists() and png.stat().st_size > 20_000, out.stderr[-2000:]
    console = [l for l in out.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert console == [], console
    keep = os.environ.get("ALERTFLOW_KEEP_REPORT")
    if keep:
        shutil.copy(png, keep)
