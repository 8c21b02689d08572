#!/usr/bin/env bash
#
# ops/bench-api.sh - the API under load while two consumers run at full speed:
#   1. a fresh database and prefix, a catalog, ORDERS orders;
#   2. baseline: two consumers process ORDERS orders alone (orders/s);
#   3. again with 200 concurrent clients on the API for the run (wrk, 30 s at least):
#      GET /api/queue, /api/kpis/total, /api/orders/stats, /api/leaderboard, /api/imports/ID
#      in turn; prints the API latency percentiles and the consumers' throughput drop.
# Targets: API p99 < 50 ms, throughput drop < 10 %.
#
# Usage: bash ops/bench-api.sh [ORDERS] [CONNECTIONS] [SECONDS]   (defaults 200000 200 30)
# OMS_BENCH_DELAY_MS=N: each client waits N ms between requests (a dashboard-like load:
# 200 clients at 100 ms offer 2,000 requests/s); default 0, as fast as wrk can send.
# Needs wrk (apt-get install wrk); builds release binaries (OMS_BENCH_PROFILE=debug: the
# debug ones, for a quick check only - their figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${1:-200000}
CONNS=${2:-200}
SECS=${3:-30}
DIR=target/bench-api
mkdir -p "$DIR"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
PROFILE=${OMS_BENCH_PROFILE:-release}
if [[ $PROFILE == release ]]; then cargo build --release --bins -q; else cargo build --bins -q; fi
P=$PWD/target/$PROFILE/producer
C=$PWD/target/$PROFILE/consumer
. ops/scratch-env.sh
scratch_env oms_benchapi
PORT=$((20000 + RANDOM % 20000))
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    { mysql -u root -e "DROP DATABASE IF EXISTS oms_benchapi_$ID" || mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS oms_benchapi_$ID"; } 2>/dev/null || true
    redis-cli --scan --pattern "oms_benchapi_$ID:*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$P" migrate >/dev/null
"$P" generate products --count 1000 --stock 10000000 --seed 1 >"$DIR/products.csv"
"$P" products import "$DIR/products.csv" >/dev/null
"$P" generate orders --count "$ORDERS" --products 1000 --seed 1 >"$DIR/orders.csv"
"$P" generate orders --count "$ORDERS" --products 1000 --seed 2 >"$DIR/orders-2.csv"
"$P" serve --addr "127.0.0.1:$PORT" >"$DIR/serve.log" 2>&1 &
pids+=($!)

# Runs the consumers over one file; prints orders/s.
run_consumers() {
    local file=$1 import started elapsed cpids=()
    import=$("$P" import "$file" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["import_id"])')
    started=$(date +%s.%N)
    for n in 1 2; do "$C" --name "bench-$n" --metrics-addr 127.0.0.1:0 >/dev/null 2>&1 & cpids+=($!); done
    until "$P" status "$import" --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["import"]["done"] else 1)'; do
        sleep 0.5
    done
    elapsed=$(echo "$(date +%s.%N) - $started" | bc)
    for pid in "${cpids[@]}"; do kill -TERM "$pid"; done
    for pid in "${cpids[@]}"; do wait "$pid" || true; done
    echo "$import $(echo "$ORDERS / $elapsed" | bc)"
}

read -r _ base < <(run_consumers "$DIR/orders.csv")
echo "baseline: $base orders/s with 2 consumers"

cat >"$DIR/paths.lua" <<LUA
local paths = {"/api/queue", "/api/kpis/total", "/api/orders/stats", "/api/leaderboard?limit=10", "/api/imports/1"}
local i = 0
request = function() i = i + 1; return wrk.format("GET", paths[(i % #paths) + 1]) end
delay = function() return ${OMS_BENCH_DELAY_MS:-0} end
LUA
( sleep 2; wrk -t4 -c"$CONNS" -d"${SECS}s" --latency -s "$DIR/paths.lua" "http://127.0.0.1:$PORT" >"$DIR/wrk.txt" ) &
wrkpid=$!
read -r _ loaded < <(run_consumers "$DIR/orders-2.csv")
wait "$wrkpid"
echo "under API load: $loaded orders/s"
grep -E 'Latency|50%|90%|99%|Requests/sec|Non-2xx|Socket errors' "$DIR/wrk.txt"
echo "throughput drop: $(echo "scale=1; 100 * ($base - $loaded) / $base" | bc) %"
