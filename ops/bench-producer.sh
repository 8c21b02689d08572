#!/usr/bin/env bash
#
# ops/bench-producer.sh - producer throughput and peak memory: `producer import` of N
# generated orders (validation, encoding and XADD included) into the local Redis, with no
# consumer running. Prints rows/s and the peak RSS (GNU time), three runs.
#
# Usage: bash ops/bench-producer.sh [ROWS]   (default 1000000)
# Uses database oms_bench and prefix oms_bench: (both removed at the end).
set -euo pipefail

cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
RUNS=${RUNS:-3}
DIR=${OMS_BENCH_DIR:-target/bench}
mkdir -p "$DIR"
export DATABASE_URL=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/oms_bench}
export OMS_PREFIX=oms_bench:
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=warn

command -v /usr/bin/time >/dev/null || { echo "bench: GNU time is needed (apt-get install time)" >&2; exit 1; }
bash ops/services.sh >/dev/null
cargo build --release --bins -q
P=target/release/producer

FILE="$DIR/orders-$ROWS.csv"
if [[ ! -s $FILE ]]; then
    "$P" generate orders --count "$ROWS" --products 1000 --seed 1 --end-date 2026-11-01 >"$FILE"
fi
echo "file: $FILE, $(stat -c %s "$FILE") bytes, $ROWS rows"
"$P" migrate >/dev/null

redis() { redis-cli -u "$REDIS_URL" "$@"; }
for run in $(seq 1 "$RUNS"); do
    redis DEL "${OMS_PREFIX}orders" >/dev/null
    /usr/bin/time -f '%M %e' -o "$DIR/time.txt" \
        "$P" import "$FILE" --new --max-lag 0 --json >"$DIR/report.json"
    read -r rss_kb wall <"$DIR/time.txt"
    python3 - "$DIR/report.json" "$rss_kb" "$wall" "$run" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rss_mb = int(sys.argv[2]) / 1024
print(f"run {sys.argv[4]}: {r['rows']} rows, {r['enqueued']} enqueued in {r['elapsed_secs']:.2f} s "
      f"= {r['rows_per_sec']:,.0f} rows/s (wall {sys.argv[3]} s incl. start-up), peak RSS {rss_mb:.1f} MB")
PY
done
echo "redis used_memory with the last run's stream: $(redis INFO memory | grep '^used_memory_human' | tr -d '\r')"
redis DEL "${OMS_PREFIX}orders" >/dev/null
mariadb -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS oms_bench' 2>/dev/null || true
