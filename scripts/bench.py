#!/usr/bin/env python3
"""End-to-end benchmark: alertflow and its peers on the same input in one run.

Each tool runs as a child process; wall time, CPU seconds and peak RSS come from
wait4(2) for that child. The page cache is warmed before every run. Row counts are
checked, so nobody wins by dropping events. Prints a Markdown table and writes
results.json into the output folder.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as ds

HERE = Path(__file__).resolve().parent


def warm(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def measured(argv, **kw):
    """Runs argv in a helper that reports the child's own rusage (exact per tool)."""
    helper = [sys.executable, "-c", (
        "import os,sys,json,time,resource,subprocess\n"
        "t=time.perf_counter();p=subprocess.Popen(sys.argv[1:],stdout=subprocess.PIPE,stderr=subprocess.PIPE)\n"
        "out,err=p.communicate();w=time.perf_counter()-t\n"
        "r=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "sys.stderr.write(err.decode(errors='replace')[-2000:])\n"
        "print(json.dumps({'rc':p.returncode,'wall':w,'cpu':r.ru_utime+r.ru_stime,'rss_mb':r.ru_maxrss/1024,'out':out.decode(errors='replace')[-20000:]}))\n"
    ), *argv]
    p = subprocess.run(helper, capture_output=True, text=True, **kw)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{argv[0]} failed ({res['rc']}): {p.stderr[-2000:]}")
    return res


def parquet_rows(path):
    return ds.dataset(str(path), format="parquet").count_rows()


def enrich_config(data, out, venv_site):
    """A configuration with every enrichment source loaded: the real GeoLite2-City
    database (PyPI maxminddb-geolite2), MaxMind's ASN test database, a 1 M-indicator feed
    (IPs, CIDRs, domains, hashes; a few hundred taken from the input so alerts match) and
    an asset inventory, plus the default scoring rules."""
    import random
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "enrich.toml"
    if cfg.exists():
        return cfg
    city = next(c for p in venv_site for c in [Path(p) / "_maxminddb_geolite2" / "GeoLite2-City.mmdb"] if c.exists())
    asn = Path(__file__).resolve().parent.parent / "tests/data/geoip/GeoLite2-ASN-Test.mmdb"
    rnd = random.Random(1)
    seen = set()
    with open(data, "rb") as f:
        for i, line in enumerate(f):
            if i > 200_000 or len(seen) > 500:
                break
            if b'"alert"' in line:
                e = json.loads(line)
                seen.add(e.get("src_ip"))
    seen.discard(None)
    feed = out / "feed-1m.txt"
    with open(feed, "w") as w:
        for ip in sorted(seen):
            w.write(ip + "\n")
        for _ in range(600_000):
            w.write(".".join(str(rnd.randrange(1, 224)) for _ in range(4)) + "\n")
        for _ in range(20_000):
            w.write(f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.0/24\n")
        for i in range(280_000):
            w.write(f"h{rnd.getrandbits(32):x}.bad{i}.example\n")
        for _ in range(100_000):
            w.write(f"{rnd.getrandbits(256):064x}\n")
    assets = out / "assets.csv"
    with open(assets, "w") as w:
        w.write("cidr,name,owner,criticality,tags\n10.0.0.0/8,corp,it,low,internal\n192.168.0.0/16,office,it,medium,internal\n")
        for i in range(500):
            w.write(f"10.{i // 250}.{i % 250}.0/24,segment-{i},team-{i % 7},{['low', 'medium', 'high', 'critical'][i % 4]},dc\n")
    base = (Path(__file__).resolve().parent.parent / "configs/default.toml").read_text()
    extra = f'\n[[enrich.intel]]\nname = "bench-1m"\npath = "{feed}"\nformat = "list"\nconfidence = 80\n'
    base = base.replace('geoip_city = ""', f'geoip_city = "{city}"').replace('geoip_asn = ""', f'geoip_asn = "{asn}"').replace('assets = ""', f'assets = "{assets}"')
    base = base.replace("# Priority scoring:", extra + "\n# Priority scoring:", 1)
    cfg.write_text(base)
    return cfg


def bench_alertflow(binary, data, out, state=True, config=None):
    """The default configuration (state stage on: alerts, incidents, flow context,
    history and scoring), the same with every enrichment source loaded (`config`), or
    the archive alone with `[state] enabled = false`."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [binary, "replay", "--json", "--archive", str(out)]
    if config:
        argv += ["--config", str(config)]
    if not state:
        out.mkdir(parents=True, exist_ok=True)
        cfg = out.parent / "state-off.toml"
        cfg.write_text("[state]\nenabled = false\n")
        argv += ["--config", str(cfg)]
    r = measured([*argv, str(data)])
    summary = json.loads(r["out"])
    r["rows"] = summary["rows_archived"]
    assert parquet_rows(out / "events") == r["rows"]
    if state:
        assert summary["alert_rows"] > 0 and parquet_rows(out / "alerts") == summary["alert_rows"]
    return r


def bench_duckdb(data, out):
    out.mkdir(parents=True, exist_ok=True)
    target = out / "duckdb.parquet"
    code = (
        "import duckdb,sys\n"
        "con=duckdb.connect()\n"
        "con.execute(\"SET threads TO 2\")\n"
        f"con.execute(\"COPY (SELECT * FROM read_ndjson_auto('{data}', maximum_object_size=16777216)) TO '{target}' (FORMAT parquet, COMPRESSION zstd)\")\n"
    )
    r = measured([sys.executable, "-c", code])
    r["rows"] = parquet_rows(target)
    return r


def bench_tenzir(tenzir, data, out):
    out.mkdir(parents=True, exist_ok=True)
    target = out / "tenzir.parquet"
    fields = ("timestamp: timestamp, event_type: event_type, sensor: string(host?), in_iface: string(in_iface?), "
              "src_ip: string(src_ip?), src_port: int(src_port?), dest_ip: string(dest_ip?), dest_port: int(dest_port?), "
              "proto: string(proto?), app_proto: string(app_proto?), flow_id: int(flow_id?), community_id: string(community_id?), "
              "alert_gid: int(alert?.gid?), alert_signature_id: int(alert?.signature_id?), alert_rev: int(alert?.rev?), "
              "alert_signature: string(alert?.signature?), alert_category: string(alert?.category?), "
              "alert_severity: int(alert?.severity?), alert_action: string(alert?.action?)")
    tql = (f'from_file "{data}" {{ read_suricata }} | this = {{{fields}}} | @name = "eve" | '
           f'to_file "{target}" {{ write_parquet compression_type="zstd", compression_level=1 }}')
    r = measured([tenzir, tql])
    r["rows"] = parquet_rows(target)
    return r


def bench_orjson(data, out):
    out.mkdir(parents=True, exist_ok=True)
    target = out / "orjson.parquet"
    r = measured([sys.executable, str(HERE / "peers" / "orjson_loop.py"), str(data), str(target)])
    r["rows"] = parquet_rows(target)
    return r


def bench_fever(fever, data, out, expected):
    """FEVER reads EVE from its input socket and dispatches every event to its handlers.
    With a non-dropping input buffer of 1,000 events, the time to send it the whole file
    is its processing time. Its forwarder drops events under
    load, so rows are the events its non-dropping input took in, not events written."""
    out.mkdir(parents=True, exist_ok=True)
    ins, outs, log = out / "fever-in.sock", out / "fever-out.sock", out / "fever.log"
    for p in (ins, outs):
        if p.exists():
            p.unlink()
    # FEVER needs somewhere to forward to; this sink reads and discards.
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sink.bind(str(outs))
    sink.listen(1)

    def drain():
        try:
            conn, _ = sink.accept()
            while conn.recv(1 << 20):
                pass
        except OSError:
            pass

    import threading
    threading.Thread(target=drain, daemon=True).start()
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([fever, "run", "-i", str(ins), "-o", str(outs), "-T", "--in-buffer-drop=false", "--in-buffer-length", "1000",
                             "--dummy", "--logfile", str(log), "--mgmt-socket", str(out / "fever-mgmt.sock")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not ins.exists():
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError("fever did not open its input socket")
        time.sleep(0.05)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(str(ins))
    sent = 0
    t0 = time.perf_counter()
    with open(data, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            c.sendall(b)
            sent += b.count(b"\n")
    # The input buffer holds at most 1,000 events and never drops, so sending blocks
    # until FEVER has taken in all but the last few: this is its processing time.
    wall = time.perf_counter() - t0
    c.close()
    time.sleep(1)
    rss_mb = 0.0
    try:
        for l in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if l.startswith("VmHWM:"):
                rss_mb = int(l.split()[1]) / 1024
    except OSError:
        pass
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # Input is never dropped with --in-buffer-drop=false: every event sent was consumed.
    return {"rc": 0, "wall": wall, "cpu": cpu, "rss_mb": rss_mb, "rows": sent}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alertflow", required=True)
    ap.add_argument("--tenzir")
    ap.add_argument("--fever")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--enrich", action="store_true", help="also run alertflow with GeoIP, a 1 M-indicator feed and assets loaded")
    ap.add_argument("datasets", nargs="+", help="name=path")
    args = ap.parse_args()
    out = Path(args.out)
    results = []
    for spec in args.datasets:
        name, path = spec.split("=", 1)
        data = Path(path)
        size = data.stat().st_size
        with open(data, "rb") as f:
            lines = sum(1 for l in f if l.strip())
        tools = [("alertflow", lambda d: bench_alertflow(args.alertflow, data, d))]
        if args.enrich:
            import site
            cfg = enrich_config(data, out / f"enrich-{name}", site.getsitepackages())
            tools.append(("alertflow-enriched", lambda d: bench_alertflow(args.alertflow, data, d, config=cfg)))
        tools.append(("alertflow-state-off", lambda d: bench_alertflow(args.alertflow, data, d, state=False)))
        tools.append(("duckdb", lambda d: bench_duckdb(data, d)))
        if args.tenzir:
            tools.append(("tenzir", lambda d: bench_tenzir(args.tenzir, data, d)))
        if args.fever:
            tools.append(("fever", lambda d: bench_fever(args.fever, data, d, lines)))
        tools.append(("orjson-loop", lambda d: bench_orjson(data, d)))
        for tool, fn in tools:
            best = None
            for _ in range(args.runs):
                warm(data)
                d = out / name / tool
                shutil.rmtree(d, ignore_errors=True)
                try:
                    r = fn(d)
                except Exception as e:  # a peer that fails is reported, not hidden
                    r = {"error": str(e)[-500:]}
                    break
                if best is None or r["wall"] < best["wall"]:
                    best = r
                shutil.rmtree(d, ignore_errors=True)
            r = best or r
            r.update(dataset=name, tool=tool, input_lines=lines, input_bytes=size)
            r.pop("out", None)
            results.append(r)
            print(f"  {name:8} {tool:12} " + (f"{r['rows']} rows in {r['wall']:.2f} s" if "wall" in r else f"FAILED: {r['error']}"), file=sys.stderr, flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print("| dataset | tool | rows (of input) | seconds | events/s | MB/s | CPU-s | peak RSS MB | alertflow speed ÷ tool |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["dataset"] for r in results):
        af = next(r for r in results if r["dataset"] == name and r["tool"] == "alertflow")
        for r in (x for x in results if x["dataset"] == name):
            if "error" in r:
                print(f"| {name} | {r['tool']} | failed: {r['error'][:80]} | | | | | | |")
                continue
            evs = r["rows"] / r["wall"]
            ratio = (af["rows"] / af["wall"]) / evs if evs else float("inf")
            ok = "" if r["rows"] == r["input_lines"] else " ⚠"
            print(f"| {name} | {r['tool']} | {r['rows']} ({r['input_lines']}){ok} | {r['wall']:.2f} | {evs:,.0f} | {r['input_bytes'] / 1e6 / r['wall']:.0f} | {r['cpu']:.2f} | {r['rss_mb']:.0f} | {ratio:.2f}× |")
    print()
    for name in dict.fromkeys(r["dataset"] for r in results):
        on = next((r for r in results if r["dataset"] == name and r["tool"] == "alertflow" and "wall" in r), None)
        off = next((r for r in results if r["dataset"] == name and r["tool"] == "alertflow-state-off" and "wall" in r), None)
        if on and off:
            print(f"{name}: state stage on keeps {100 * off['wall'] / on['wall']:.0f} % of the archive-only throughput")
        en = next((r for r in results if r["dataset"] == name and r["tool"] == "alertflow-enriched" and "wall" in r), None)
        if en and off:
            print(f"{name}: enrichment and scoring on (GeoIP, 1 M indicators, assets) keeps {100 * off['wall'] / en['wall']:.0f} % of the archive-only throughput")


if __name__ == "__main__":
    main()
