#!/usr/bin/env bash
#
# ops/soak.sh - bounded soak: generate and import N orders (default 1,000,000) while 2
# consumers run, sampling every few seconds the consumers' RSS (VmRSS), Redis'
# used_memory, the stream's length and pending count and the terminal orders, to a CSV;
# then prints, per series, min / max / first / last and the growth from the second
# quarter of the run to the last (both should stay flat: the stream is trimmed, and
# nothing accumulates in the consumers). Redis memory also holds the leaderboard, which
# grows with the number of distinct customers (sampled too, to tell the two apart).
#
# Usage: bash ops/soak.sh [--orders N] [--consumers N] [--interval SECS] [--max-lag ROWS]
#                         [--max-secs SECS] [--out DIR] [--keep] [--shared-redis]
#   --orders N       orders to generate and import (default 1000000)
#   --consumers N    consumer processes (default 2)
#   --interval SECS  sampling period (default 5)
#   --max-lag ROWS   `producer import --max-lag` (default 50000): the import waits while
#                    more rows than this are unread, so the run reaches a steady state
#   --max-secs SECS  give up after this long (default 7200); the script always ends
#   --out DIR        where samples.csv, the logs and summary.txt go (default target/soak)
#   --keep           keep the database oms_soak and the Redis keys afterwards
#   --shared-redis   use REDIS_URL (default redis://127.0.0.1:6379) instead of a private
#                    redis-server; its used_memory then includes everyone else's keys
#
# Needs: the release binaries (built here with `cargo build --release --bins`, or taken
# from SOAK_BIN_DIR), MariaDB
# or MySQL at DATABASE_URL's server (default mysql://root@127.0.0.1:3306, database
# oms_soak, dropped first), redis-server and redis-cli, mariadb client, python3.
# Exit 0 when the import finished, every consumer stopped cleanly and
# `producer reconcile` found no drift; 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
ORDERS=1000000
CONSUMERS=2
INTERVAL=5
MAX_LAG=50000
MAX_SECS=7200
OUT=target/soak
KEEP=0
SHARED_REDIS=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --orders) ORDERS=$2; shift 2 ;;
    --consumers) CONSUMERS=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --max-lag) MAX_LAG=$2; shift 2 ;;
    --max-secs) MAX_SECS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --shared-redis) SHARED_REDIS=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0 ;;
    *) echo "soak: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for n in "$ORDERS" "$CONSUMERS" "$INTERVAL" "$MAX_LAG" "$MAX_SECS"; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "soak: $n is not a whole number" >&2; exit 2; }
done
say() { printf 'soak: %s\n' "$*"; }

mkdir -p "$OUT"
SERVER_URL=${DATABASE_URL:-mysql://root@127.0.0.1:3306/oms}
SERVER_URL=${SERVER_URL%/*}
export DATABASE_URL="$SERVER_URL/oms_soak"
export OMS_PREFIX=oms_soak:
export RUST_LOG=${RUST_LOG:-info}
# SOAK_BIN_DIR: use the producer and consumer found there instead of building.
if [[ -n ${SOAK_BIN_DIR:-} ]]; then
    BIN=$SOAK_BIN_DIR
else
    BIN=${CARGO_TARGET_DIR:-target}/release
    say "building release binaries"
    cargo build --release --bins -q
fi
P=$BIN/producer
C=$BIN/consumer

pids=()
sampler=""
redis_pid=""
redis_dir=""
cleanup() {
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [[ $KEEP -eq 0 ]]; then
        mariadb_sql 'DROP DATABASE IF EXISTS oms_soak' 2>/dev/null || true
        if [[ $SHARED_REDIS -eq 1 ]]; then
            redis-cli -u "$REDIS_URL" --scan --pattern "${OMS_PREFIX}*" |
                xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
        fi
    fi
    if [[ -n $redis_pid ]]; then
        { kill -KILL "$redis_pid" && wait "$redis_pid"; } 2>/dev/null || true
    fi
    [[ -n $redis_dir ]] && rm -rf "$redis_dir"
    wait 2>/dev/null || true
}
trap cleanup EXIT

# The MariaDB client against DATABASE_URL's host and port (user root, no password, as
# the local test server; set MYSQL_PWD for a password).
mariadb_sql() {
    local hostport=${SERVER_URL#*://}
    hostport=${hostport#*@}
    mariadb -h"${hostport%:*}" -P"${hostport##*:}" -uroot -N -B -e "$1"
}

if [[ $SHARED_REDIS -eq 1 ]]; then
    export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
else
    redis_dir=$(mktemp -d -t oms-soak-redis-XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --dir "$redis_dir" --save '' \
        --appendonly yes --appendfsync everysec --logfile "$redis_dir/redis.log" --daemonize no &
    redis_pid=$!
    export REDIS_URL=redis://127.0.0.1:$port
    for _ in $(seq 1 100); do
        redis-cli -u "$REDIS_URL" PING >/dev/null 2>&1 && break
        sleep 0.1
    done
    say "private redis-server on port $port"
fi
rcli() { redis-cli -u "$REDIS_URL" --no-auth-warning "$@"; }

mariadb_sql 'DROP DATABASE IF EXISTS oms_soak'
if [[ $SHARED_REDIS -eq 1 ]]; then
    rcli --scan --pattern "${OMS_PREFIX}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null
fi
"$P" migrate >/dev/null
"$P" generate products --count 1000 --stock 1000000000 --seed 1 >"$OUT/products.csv"
"$P" products import "$OUT/products.csv" >/dev/null

for i in $(seq 1 "$CONSUMERS"); do
    "$C" --name "soak-$i" --metrics-addr 127.0.0.1:0 >"$OUT/consumer-$i.log" 2>&1 &
    pids+=("$!")
done

# Sampler: one CSV line every INTERVAL seconds until killed.
SAMPLES=$OUT/samples.csv
{
    printf 'secs,terminal_orders,stream_length,stream_pending,leaderboard_members,redis_used_memory'
    for i in $(seq 1 "$CONSUMERS"); do printf ',consumer%s_rss_kb' "$i"; done
    printf '\n'
} >"$SAMPLES"
sample() {
    local t0=$1 now line mem len pending members done_orders
    while true; do
        now=$(date +%s)
        mem=$(rcli INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
        len=$(rcli XLEN "${OMS_PREFIX}orders" | tr -d '\r')
        pending=$(rcli XPENDING "${OMS_PREFIX}orders" workers 2>/dev/null | head -1 | tr -d '\r')
        members=$(rcli ZCARD "${OMS_PREFIX}leaderboard" | tr -d '\r')
        done_orders=$(mariadb_sql "SELECT COUNT(*) FROM oms_soak.orders WHERE status IN ('completed','failed')" 2>/dev/null || echo "")
        line="$((now - t0)),${done_orders},${len},${pending:-0},${members},${mem}"
        for pid in "${pids[@]}"; do
            line+=",$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "")"
        done
        echo "$line" >>"$SAMPLES"
        sleep "$INTERVAL"
    done
}
start=$(date +%s)
sample "$start" &
sampler=$!

say "importing $ORDERS generated orders (--max-lag $MAX_LAG) with $CONSUMERS consumers; samples every ${INTERVAL}s in $SAMPLES"
status=0
timeout "$MAX_SECS" bash -c "'$P' generate orders --count '$ORDERS' --products 1000 --seed 2 |
    '$P' import - --max-lag '$MAX_LAG' --wait --json >'$OUT/import.json' 2>'$OUT/import.log'" || status=$?
end=$(date +%s)
sleep "$INTERVAL"
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=""
if [[ $status -ne 0 ]]; then
    say "import failed or timed out (exit $status); see $OUT/import.log"
fi

for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
done
for i in "${!pids[@]}"; do
    code=0
    wait "${pids[$i]}" || code=$?
    if [[ $code -ne 0 ]]; then
        say "consumer soak-$((i + 1)) exited $code; see $OUT/consumer-$((i + 1)).log"
        status=1
    fi
done
pids=()
if ! "$P" reconcile >"$OUT/reconcile.txt" 2>&1; then
    say "reconcile found drift; see $OUT/reconcile.txt"
    status=1
fi

# Where Redis' memory is at the end: the leaderboard grows with the customers (data, not
# a leak); the stream should be empty; applied-outbox markers expire after 7 days.
say "redis at the end: $(rcli DBSIZE | tr -d '\r') keys;" \
    "leaderboard $(rcli ZCARD "${OMS_PREFIX}leaderboard" | tr -d '\r') members," \
    "$(rcli MEMORY USAGE "${OMS_PREFIX}leaderboard" | tr -d '\r') bytes;" \
    "stream $(rcli XLEN "${OMS_PREFIX}orders" | tr -d '\r') entries," \
    "$(rcli MEMORY USAGE "${OMS_PREFIX}orders" | tr -d '\r') bytes;" \
    "$(rcli --scan --pattern "${OMS_PREFIX}readmodel:applied:*" | wc -l) applied-outbox markers" |
    tee "$OUT/redis-end.txt"

python3 - "$SAMPLES" "$ORDERS" "$((end - start))" <<'PY' | tee "$OUT/summary.txt"
import csv, statistics, sys
path, orders, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [r for r in csv.DictReader(open(path))]
print(f"orders: {orders}, import + processing: {secs} s ({orders / max(secs, 1):,.0f} orders/s), samples: {len(rows)}")
def series(col):
    return [float(r[col]) for r in rows if r.get(col, "") not in ("", None)]
def fmt(col, v):
    if col == "redis_used_memory":
        return f"{v / 1048576:.1f} MB"
    if col.endswith("_rss_kb"):
        return f"{v / 1024:.1f} MB"
    return f"{v:,.0f}"
print(f"{'series':<22}{'min':>12}{'max':>12}{'first':>12}{'last':>12}{'growth Q2->Q4':>16}")
for col in rows[0].keys() if rows else []:
    if col == "secs":
        continue
    v = series(col)
    if not v:
        continue
    q = max(len(v) // 4, 1)
    q2 = statistics.median(v[q:2 * q] or v)
    q4 = statistics.median(v[-q:])
    growth = "" if col in ("terminal_orders", "leaderboard_members") or q2 == 0 else f"{(q4 - q2) / q2 * 100:+.1f}%"
    print(f"{col:<22}{fmt(col, min(v)):>12}{fmt(col, max(v)):>12}{fmt(col, v[0]):>12}{fmt(col, v[-1]):>12}{growth:>16}")
PY
if [[ -s $OUT/import.json ]]; then
    say "import outcome: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r.get("outcome", r))' "$OUT/import.json" 2>/dev/null || head -c 300 "$OUT/import.json")"
fi
exit "$status"
