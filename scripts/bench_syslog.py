"""Syslog ingest, side by side: alertflow (syslog_tcp -> Parquet archive) as shipped (every
message is an alert: dedup, correlation, triage, enrichment, scoring, the alerts table) and
with `[state] enabled = false` (archive only), and rsyslog (imtcp -> omfile), the same
RFC 5424 messages sent over one TCP connection in one run. Reports messages/s and ratios. Usage: bench_syslog.py --alertflow BIN --out DIR [--messages N]"""
import argparse, json, os, shutil, socket, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "syslog", "syslog-suricata-alert-rfc5424.log")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def messages(n):
    base = [l for l in open(DATA, "rb").read().split(b"\n") if l]
    out = bytearray()
    for i in range(n):
        m = base[i % len(base)]
        out += m.replace(b" - -  [", b" ID%d -  [" % (i % 100000), 1) + b"\n"
    return bytes(out)


def wait_port(port, secs=30):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def send(port, data):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data); s.close()


def run_rsyslog(out, data, n):
    d = os.path.join(out, "rsyslog"); shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
    port = free_port(); target = os.path.join(d, "out.log")
    conf = os.path.join(d, "rsyslog.conf")
    open(conf, "w").write(f'''global(workDirectory="{d}" maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}")
action(type="omfile" file="{target}" template="RSYSLOG_FileFormat" asyncWriting="on" ioBufferSize="256k" flushOnTXEnd="off")
''')
    p = subprocess.Popen(["rsyslogd", "-n", "-f", conf, "-i", os.path.join(d, "pid")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        t0 = time.time(); send(port, data)
        while True:
            try:
                with open(target, "rb") as f:
                    if f.read().count(b"\n") >= n: break
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        return time.time() - t0
    finally:
        p.terminate(); p.wait()


def run_alertflow(binary, out, data, n, extra=""):
    d = os.path.join(out, "alertflow"); shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
    port, mport = free_port(), free_port()
    conf = os.path.join(d, "c.toml")
    open(conf, "w").write(f'''[archive]
root = "{d}/archive"
idle_seal_ms = 200
[metrics]
listen = "127.0.0.1:{mport}"
[[sources]]
name = "syslog"
type = "syslog_tcp"
listen = "127.0.0.1:{port}"
overflow = "block"
{extra}''')
    p = subprocess.Popen([binary, "run", "--config", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        t0 = time.time(); send(port, data)
        while True:
            # Timed until the rows are sealed in Parquet (rsyslog: until its file holds them).
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{mport}/health").read())
            if health["rows_sealed"] >= n: break
            time.sleep(0.05)
        return time.time() - t0
    finally:
        p.terminate(); p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alertflow", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)
    data = messages(a.messages)
    best = {}
    for _ in range(a.runs):
        runs = (
            ("alertflow", lambda: run_alertflow(a.alertflow, a.out, data, a.messages)),
            ("alertflow, state off", lambda: run_alertflow(a.alertflow, a.out, data, a.messages, "[state]\nenabled = false\n")),
            ("rsyslog", lambda: run_rsyslog(a.out, data, a.messages)),
        )
        for name, fn in runs:
            t = fn(); best[name] = min(best.get(name, t), t)
    af = a.messages / best["alertflow"]
    print(f"| syslog RFC 5424 over TCP, {a.messages:,} messages ({len(data) / 1e6:.0f} MB), best of {a.runs} | messages/s | alertflow ÷ this |")
    print("| --- | --- | --- |")
    for name in ("alertflow", "alertflow, state off", "rsyslog"):
        r = a.messages / best[name]
        print(f"| {name} | {r:,.0f} | {af / r:.2f}x |")


if __name__ == "__main__":
    main()
