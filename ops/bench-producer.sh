#!/usr/bin/env bash
#
# ops/bench-producer.sh - producer throughput and peak memory: `producer import` of N
# generated orders (validation, encoding and XADD included) into the local Redis, with no
# consumer running. Prints, per run: rows/s, peak RSS (GNU time), and the CPU time the
# producer and Redis used (user + sys) per row: on a busy machine wall-clock rows/s are
# noisy, CPU per row is not. Three runs.
#
# Usage: bash ops/bench-producer.sh [ROWS]   (default 1000000)
#        PRODUCER_BIN=/path/to/producer bash ops/bench-producer.sh   (compare another build;
#        nothing is built then)
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
if [[ -n ${PRODUCER_BIN:-} ]]; then
    P=$PRODUCER_BIN
else
    cargo build --release --bins -q
    P=target/release/producer
fi

FILE="$DIR/orders-$ROWS.csv"
if [[ ! -s $FILE ]]; then
    "$P" generate orders --count "$ROWS" --products 1000 --seed 1 --end-date 2026-11-01 >"$FILE"
fi
echo "file: $FILE, $(stat -c %s "$FILE") bytes, $ROWS rows"
"$P" migrate >/dev/null

redis() { redis-cli -u "$REDIS_URL" "$@"; }
# Seconds of CPU (user + sys) the Redis server has used so far.
redis_cpu() { redis INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { print s }'; }
for run in $(seq 1 "$RUNS"); do
    redis DEL "${OMS_PREFIX}orders" >/dev/null
    redis_before=$(redis_cpu)
    /usr/bin/time -f '%M %e %U %S' -o "$DIR/time.txt" \
        "$P" import "$FILE" --new --max-lag 0 --json >"$DIR/report.json"
    redis_after=$(redis_cpu)
    read -r rss_kb wall user sys <"$DIR/time.txt"
    python3 - "$DIR/report.json" "$rss_kb" "$wall" "$run" "$user" "$sys" "$redis_before" "$redis_after" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rss_mb = int(sys.argv[2]) / 1024
rows = max(r['rows'], 1)
cpu = float(sys.argv[5]) + float(sys.argv[6])
redis_cpu = float(sys.argv[8]) - float(sys.argv[7])
print(f"run {sys.argv[4]}: {r['rows']} rows, {r['enqueued']} enqueued in {r['elapsed_secs']:.2f} s "
      f"= {r['rows_per_sec']:,.0f} rows/s (wall {sys.argv[3]} s incl. start-up), peak RSS {rss_mb:.1f} MB; "
      f"CPU: producer {cpu:.2f} s = {cpu / rows * 1e6:.2f} us/row, redis {redis_cpu:.2f} s = {redis_cpu / rows * 1e6:.2f} us/row")
PY
done
echo "redis used_memory with the last run's stream: $(redis INFO memory | grep '^used_memory_human' | tr -d '\r')"
redis DEL "${OMS_PREFIX}orders" >/dev/null
mariadb -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS oms_bench' 2>/dev/null || true
