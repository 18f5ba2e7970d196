#!/usr/bin/env bash
# Redis list ingest (exactly-once mode): N EVE lines LPUSHed into a fresh redis-server
# first, then timed from alertflow's start until all N rows are sealed in Parquet.
# Usage: scripts/bench_redis.sh EVE_FILE [N]   (needs redis-server, redis-cli, curl; a
# release build in target/release). Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
FILE="$1"
N="${2:-500000}"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
trap 'kill $AF $RS 2>/dev/null || true; rm -rf "$WORK"' EXIT
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null &
RS=$!
AF=
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done
head -n "$N" "$FILE" | python3 -c '
import sys
out = sys.stdout
for l in sys.stdin.buffer:
    l = l.rstrip(b"\n")
    out.buffer.write(b"*3\r\n$5\r\nLPUSH\r\n$8\r\nsuricata\r\n$%d\r\n%s\r\n" % (len(l), l))
' | redis-cli -p "$PORT" --pipe >/dev/null
echo "pushed $(redis-cli -p "$PORT" LLEN suricata) entries" >&2
cat > "$WORK/c.toml" <<T
[archive]
root = "$WORK/archive"
idle_seal_ms = 200
[metrics]
listen = "127.0.0.1:$MPORT"
[[sources]]
name = "r"
type = "redis"
url = "redis://127.0.0.1:$PORT/0"
mode = "list"
key = "suricata"
T
start=$(date +%s.%N)
target/release/alertflow run --config "$WORK/c.toml" 2>/dev/null &
AF=$!
until [ "$(curl -s "127.0.0.1:$MPORT/health" | python3 -c 'import sys,json; print(json.load(sys.stdin)["rows_sealed"])' 2>/dev/null || echo 0)" -ge "$N" ]; do sleep 0.05; done
end=$(date +%s.%N)
python3 -c "n=$N; t=$end-$start; print(f'| redis list (LPUSH, exactly once) | {n:,} entries | {t:.2f} s | {n/t:,.0f} entries/s |')"
