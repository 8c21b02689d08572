#!/usr/bin/env bash
#
# ops/bench-consumer.sh - end-to-end throughput: N generated orders (skewed SKUs) imported
# while 2 consumers run; measures from the import's start to the last order terminal.
# Prints orders/s, p50/p99 latency from enqueue to terminal (from the consumers'
# oms_order_duration_seconds histograms, interpolated like histogram_quantile), the
# consumers' peak RSS, and MariaDB's innodb_flush_log_at_trx_commit (1 = durable commits).
#
# Usage: bash ops/bench-consumer.sh [ORDERS] [CONSUMERS]   (defaults: 200000, 2)
# Extra consumer flags: CONSUMER_ARGS="--batch-size 500 --concurrency 4". IMPORT_MAX_LAG=5000
# bounds the queue (the import waits), so latency measures processing, not the backlog.
# Uses database oms_bench_e2e and prefix oms_bench_e2e: (removed at the end; others with
# BENCH_DATABASE_URL and BENCH_PREFIX) and metrics ports 19501… (BENCH_PORT_BASE).
# REDIS_URL may be a Redis Cluster's node list; BENCH_PARTITIONS=16 records 16 partitions
# (ops/bench-cluster.sh runs both and compares).
set -euo pipefail

cd "$(dirname "$0")/.."
ORDERS=${1:-200000}
CONSUMERS=${2:-2}
DIR=${OMS_BENCH_DIR:-target/bench}
mkdir -p "$DIR"
export DATABASE_URL=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/oms_bench_e2e}
export OMS_PREFIX=${BENCH_PREFIX:-oms_bench_e2e:}
DB=${DATABASE_URL##*/}
DB=${DB%%\?*}
PORT_BASE=${BENCH_PORT_BASE:-19500}
PARTITIONS=${BENCH_PARTITIONS:-1}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=${RUST_LOG:-warn}

if [[ $REDIS_URL == *,* ]]; then # a cluster's node list: only MySQL is ours to start
    REDIS_URL=redis://127.0.0.1:6379 bash ops/services.sh mysql >/dev/null
else
    bash ops/services.sh >/dev/null
fi
cargo build --release --bins -q
P=target/release/producer
C=target/release/consumer
# Deletes the prefix's keys, on one Redis or on every node of a cluster (-c follows MOVED).
clear_keys() {
    local node
    for node in ${REDIS_URL//,/ }; do
        redis-cli -u "$node" --scan --pattern "${OMS_PREFIX}*" |
            while read -r key; do redis-cli -c -u "$node" DEL "$key" >/dev/null; done
    done
}
sql() { mariadb -h127.0.0.1 -uroot -N -B -e "$1"; }

sql "DROP DATABASE IF EXISTS $DB"
clear_keys
"$P" migrate --partitions "$PARTITIONS" >/dev/null
"$P" generate products --count 1000 --stock 1000000 --seed 1 >"$DIR/e2e-products.csv"
"$P" products import "$DIR/e2e-products.csv" >/dev/null
FILE="$DIR/e2e-orders-$ORDERS.csv"
[[ -s $FILE ]] || "$P" generate orders --count "$ORDERS" --products 1000 --seed 2 --end-date 2026-11-01 >"$FILE"
echo "orders: $ORDERS, consumers: $CONSUMERS, partitions: $PARTITIONS, innodb_flush_log_at_trx_commit=$(sql 'SELECT @@innodb_flush_log_at_trx_commit')"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
ports=()
for i in $(seq 1 "$CONSUMERS"); do
    port=$((PORT_BASE + i))
    # shellcheck disable=SC2086 # CONSUMER_ARGS is a list of flags
    "$C" --name "bench-$i" --metrics-addr "127.0.0.1:$port" ${CONSUMER_ARGS:-} \
        >"$DIR/e2e-consumer-$i.log" 2>&1 &
    pids+=("$!")
    ports+=("$port")
done
for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
done

start=$(date +%s.%N)
"$P" import "$FILE" --new --wait --json >"$DIR/e2e-report.json"
end=$(date +%s.%N)
# The last terminal order's time, from MySQL, against the import's start.
span=$(sql "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(i.created_at), MAX(o.updated_at)) / 1e6 \
    FROM $DB.imports i JOIN $DB.orders o ON o.import_id = i.id")
for i in "${!ports[@]}"; do
    curl -s "http://127.0.0.1:${ports[$i]}/metrics" >"$DIR/e2e-metrics-$i.txt"
done
rss=()
for pid in "${pids[@]}"; do
    rss+=("$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")")
done
python3 - "$DIR" "$ORDERS" "$span" "$start" "$end" "${rss[@]}" <<'PY'
import glob, json, re, sys
d, orders, span, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
rss = [int(x) / 1024 for x in sys.argv[6:]]
r = json.load(open(f"{d}/e2e-report.json"))
o = r["outcome"]
buckets = {}
for f in glob.glob(f"{d}/e2e-metrics-*.txt"):
    for line in open(f):
        m = re.match(r'oms_order_duration_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            le = float("inf") if m[1] == "+Inf" else float(m[1])
            buckets[le] = buckets.get(le, 0) + float(m[2])
def quantile(q):
    items = sorted(buckets.items())
    total = items[-1][1] if items else 0
    prev_le, prev_c = 0.0, 0.0
    for le, c in items:
        if c >= q * total:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((q * total - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return float("nan")
print(f"completed {o['completed']}, failed {o['failed_total']} {o['failed']}, dead {o['dead']}")
print(f"import start -> last order terminal: {span:.2f} s = {orders / span:,.0f} orders/s "
      f"(import command wall time {end - start:.2f} s)")
print(f"latency enqueue -> terminal: p50 {quantile(0.5):.3f} s, p99 {quantile(0.99):.3f} s")
print("consumer peak RSS: " + ", ".join(f"{x:.1f} MB" for x in rss))
PY
cleanup
trap - EXIT
sql "DROP DATABASE IF EXISTS $DB"
clear_keys
