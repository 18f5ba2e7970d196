#!/usr/bin/env python3
"""What a user would write instead: an orjson loop that extracts the same hot fields
and the raw line and writes zstd Parquet with pyarrow. Prints the row count."""
import sys

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

COLS = ["timestamp", "event_type", "sensor", "in_iface", "src_ip", "src_port", "dest_ip", "dest_port", "proto",
        "app_proto", "flow_id", "community_id", "alert_gid", "alert_signature_id", "alert_rev", "alert_signature",
        "alert_category", "alert_severity", "alert_action", "raw"]


def main(src, dst):
    writer = None
    rows = 0
    cols = {c: [] for c in COLS}
    def flush():
        nonlocal writer
        t = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(dst, t.schema, compression="zstd", compression_level=1)
        writer.write_table(t)
        for c in COLS:
            cols[c].clear()
    with open(src, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            try:
                ev = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            a = ev.get("alert") or {}
            cols["timestamp"].append(ev.get("timestamp"))
            cols["event_type"].append(ev.get("event_type"))
            cols["sensor"].append(ev.get("host"))
            cols["in_iface"].append(ev.get("in_iface"))
            cols["src_ip"].append(ev.get("src_ip"))
            cols["src_port"].append(ev.get("src_port"))
            cols["dest_ip"].append(ev.get("dest_ip"))
            cols["dest_port"].append(ev.get("dest_port"))
            cols["proto"].append(ev.get("proto"))
            cols["app_proto"].append(ev.get("app_proto"))
            cols["flow_id"].append(ev.get("flow_id"))
            cols["community_id"].append(ev.get("community_id"))
            cols["alert_gid"].append(a.get("gid"))
            cols["alert_signature_id"].append(a.get("signature_id"))
            cols["alert_rev"].append(a.get("rev"))
            cols["alert_signature"].append(a.get("signature"))
            cols["alert_category"].append(a.get("category"))
            cols["alert_severity"].append(a.get("severity"))
            cols["alert_action"].append(a.get("action"))
            cols["raw"].append(line.decode())
            rows += 1
            if len(cols["raw"]) >= 100_000:
                flush()
    if cols["raw"]:
        flush()
    if writer:
        writer.close()
    print(rows)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
