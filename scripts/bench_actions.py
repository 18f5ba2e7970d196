#!/usr/bin/env python3
"""Actions benchmark: alert line → webhook request latency, and the cost of a trigger.

  bench_actions.py latency [--rate 140000] [--seconds 20] [--markers 20] [--poll-ms N]
      `alertflow run` follows a file that receives mixed EVE events (scripts/gen_eve.py)
      at --rate lines/s, plus --markers marker alerts a second. A trigger sends each
      marker to a webhook receiver (Python http.server on loopback). Reported: p50, p99
      and max of (request arrival − marker line written), and markers lost; the same for
      the markers written after the first --warmup seconds (the steady state: at start the
      pipeline is catching up with what was written while it started).
  bench_actions.py throughput [--events 1000000] [--runs 3]
      `alertflow replay` of the mixed file with the default config, then with one webhook
      trigger on high and critical (to a loopback receiver): medians of wall seconds.

Never run in CI. Uses target/release/alertflow (cargo build --release first).
"""
import argparse
import http.server
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "release" / "alertflow"))


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.arrived = {}
        self.count = 0
        rx = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(h):
                body = h.rfile.read(int(h.headers.get("content-length", 0)))
                now = time.perf_counter()
                rx.count += 1
                try:
                    d = json.loads(body)["data"]
                    rx.arrived.setdefault(d["flow_id"], now)
                except (ValueError, KeyError):
                    pass
                h.send_response(204)
                h.send_header("content-length", "0")
                h.end_headers()

            def log_message(h, *a):
                pass

        super().__init__(("127.0.0.1", 0), H)

    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def start_receiver():
    r = Receiver()
    threading.Thread(target=r.serve_forever, daemon=True).start()
    return r


def marker(seq):
    t = time.time()
    g = time.gmtime(int(t))
    ts = "%04d-%02d-%02dT%02d:%02d:%02d.%06d+0000" % (g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, int((t % 1) * 1e6))
    return json.dumps({
        "timestamp": ts, "flow_id": seq, "event_type": "alert", "src_ip": "10.9.%d.%d" % (seq // 250 % 250, seq % 250 + 1), "src_port": 40000 + seq % 20000,
        "dest_ip": "203.0.113.1", "dest_port": 443, "proto": "TCP",
        # A new source each time: every marker is the first of its dedup key.
        "alert": {"action": "allowed", "gid": 1, "signature_id": 9999999, "rev": 1, "signature": f"BENCH marker {seq}", "category": "Misc", "severity": 1},
    })


def mixed(n, out):
    if not out.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_eve.py"), "mixed", str(n), str(out)], check=True)
    return out


def latency(a):
    tmp = Path(tempfile.mkdtemp(prefix="af-bench-actions-"))
    rx = start_receiver()
    follow = tmp / "eve.json"
    poll = f"poll_interval_ms = {a.poll_ms}\n" if a.poll_ms else ""
    cfg = tmp / "c.toml"
    cfg.write_text(
        f'[archive]\nroot = "{tmp / "archive"}"\n\n[metrics]\nlisten = ""\n\n'
        f'[[sources]]\nname = "eve"\ntype = "file"\npath = "{follow}"\n{poll}\n'
        f'[[actions.destinations]]\nname = "hook"\ntype = "webhook"\nurl = "{rx.url()}"\nallow = ["127.0.0.1/32"]\nconcurrency = 4\n\n'
        '[[actions.triggers]]\nname = "markers"\non = ["alert"]\nwhen = "event.signature_id == 9999999"\nactions = ["hook"]\n'
    )
    src = mixed(max(a.rate * a.seconds, 1000), ROOT / "bench-out" / f"mixed-bench-actions-{a.rate * a.seconds}.json")
    lines = src.read_bytes().splitlines(keepends=True)
    # The file exists with a first line before alertflow starts, as a sensor's EVE file does:
    # an empty file has no fingerprint yet and is only picked up at the source's next scan,
    # which is start-up latency, not the latency of a followed file.
    follow.write_bytes(lines[0])
    # Snapshot debug lines say what each commit's snapshot cost the alert path.
    log = dict(os.environ, ALERTFLOW_LOG=os.environ.get("ALERTFLOW_LOG", "info,alertflow::pipeline::alert_worker=debug"))
    proc = subprocess.Popen([BIN, "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True, env=log)
    for line in proc.stderr:
        if "following file" in line:
            break
    snapshots = []
    start = time.perf_counter()

    log_file = open(a.log, "w") if a.log else None

    def read_log():
        for line in proc.stderr:
            if log_file:
                log_file.write(f"{time.perf_counter() - start:8.3f} {line}")
            if "state snapshot taken" in line:
                f = dict(re.findall(r"(\w+)=(\S+)", line))
                snapshots.append((int(f.get("bytes", 0)), f.get("whole") == "true", float(f.get("ms", 0)), round(time.perf_counter() - start, 2)))

    threading.Thread(target=read_log, daemon=True).start()
    written = {}
    step = 0.01
    per_step = max(1, int(a.rate * step))
    every = max(1, int(1 / (a.markers * step)))
    seq = 0
    pos = 0
    start = time.perf_counter()
    with open(follow, "ab", buffering=0) as f:
        k = 0
        while time.perf_counter() - start < a.seconds:
            chunk = b"".join(lines[pos:pos + per_step])
            pos = (pos + per_step) % max(1, len(lines) - per_step)
            f.write(chunk)
            if k % every == 0:
                seq += 1
                f.write((marker(seq) + "\n").encode())
                written[seq] = time.perf_counter()
            k += 1
            next_t = start + k * step
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    achieved = k * per_step / (time.perf_counter() - start)
    deadline = time.time() + 10
    while len(rx.arrived) < len(written) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    # Archives of millions of lines a run: not kept.
    shutil.rmtree(tmp, ignore_errors=True)
    lat = sorted((rx.arrived[s] - t) * 1000 for s, t in written.items() if s in rx.arrived)
    steady = sorted((rx.arrived[s] - t) * 1000 for s, t in written.items() if s in rx.arrived and t - start >= a.warmup)
    lost = len(written) - len(lat)
    q = lambda v, p: round(v[min(len(v) - 1, int(p * len(v)))], 1) if v else None
    print(json.dumps({
        "rate_lines_per_s": round(achieved), "markers": len(written), "lost": lost,
        "p50_ms": q(lat, 0.5), "p99_ms": q(lat, 0.99), "max_ms": q(lat, 1.0),
        "after_warmup": {"secs": a.warmup, "markers": len(steady), "p50_ms": q(steady, 0.5), "p99_ms": q(steady, 0.99), "max_ms": q(steady, 1.0)},
        "poll_interval_ms": a.poll_ms or "default",
        "snapshots": {
            "whole": sum(1 for _, w, _, _ in snapshots if w), "delta": sum(1 for _, w, _, _ in snapshots if not w),
            "max_bytes": max((b for b, _, _, _ in snapshots), default=0), "max_ms": max((m for _, _, m, _ in snapshots), default=0),
            "each": [(b, "whole" if w else "delta", m, at) for b, w, m, at in snapshots if b > 100_000],
        },
        # Markers over the 50 ms target (seconds from the start, ms): what they waited for.
        "slow_markers": [(round(t - start, 2), round((rx.arrived[s] - t) * 1000)) for s, t in written.items() if s in rx.arrived and rx.arrived[s] - t > 0.05][:60],
    }))


def throughput(a):
    tmp = Path(tempfile.mkdtemp(prefix="af-bench-actions-"))
    rx = start_receiver()
    src = mixed(a.events, ROOT / "bench-out" / f"mixed-{a.events}.json")
    with_trigger = tmp / "trigger.toml"
    with_trigger.write_text(
        f'[[actions.destinations]]\nname = "hook"\ntype = "webhook"\nurl = "{rx.url()}"\nallow = ["127.0.0.1/32"]\nconcurrency = 4\n\n'
        f'[[actions.triggers]]\nname = "high"\non = ["alert", "incident_opened"]\nmin_priority = "{a.min_priority}"\nactions = ["hook"]\n'
    )
    plain = tmp / "plain.toml"
    plain.write_text("")
    res = {"default": [], "with_trigger": []}
    for i in range(a.runs):
        for name, cfg in (("default", plain), ("with_trigger", with_trigger)):
            arch = tmp / f"archive-{name}-{i}"
            t = time.perf_counter()
            subprocess.run([BIN, "replay", "--config", str(cfg), "--archive", str(arch), str(src)], check=True, capture_output=True)
            res[name].append(time.perf_counter() - t)
    med = {k: round(statistics.median(v), 3) for k, v in res.items()}
    print(json.dumps({"events": a.events, "runs": a.runs, "median_s": med, "ratio": round(med["with_trigger"] / med["default"], 3), "min_priority": a.min_priority, "webhooks": rx.count}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("latency")
    l.add_argument("--rate", type=int, default=140_000)
    l.add_argument("--seconds", type=int, default=20)
    l.add_argument("--markers", type=int, default=20)
    l.add_argument("--poll-ms", type=int, default=0)
    l.add_argument("--warmup", type=float, default=5.0)
    l.add_argument("--log", help="write alertflow's log here, each line with the seconds since the start")
    t = sub.add_parser("throughput")
    t.add_argument("--events", type=int, default=1_000_000)
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--min-priority", default="high")
    a = p.parse_args()
    latency(a) if a.cmd == "latency" else throughput(a)


if __name__ == "__main__":
    main()
