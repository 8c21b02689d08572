#!/usr/bin/env bash
#
# ops/bench-api-crowd.sh - the API under a hostile crowd while a consumer runs flat out
# (issue 21's attack, on release binaries, each party in its own process):
#   1. a fresh database and prefix, a catalog, 20 small imports (so /api/imports has rows),
#      then ORDERS orders;
#   2. a warm-up run (creates the customers), then the baseline: CONSUMERS consumers process
#      ORDERS orders alone (orders/s), and once more after step 3 (the mean is the baseline);
#   3. again while a crowd of CROWD connections from 127.0.0.1 busts the answer cache of
#      the most expensive read (`/api/imports?limit=1..50`, wrk, as fast as it can) and a
#      well-behaved client from 127.0.0.2 reads `/api/queue` every 50 ms on a new
#      connection (python3, timing each answer);
#   prints the well-behaved client's p50/p99/max and statuses, the crowd's requests and
#   non-2xx answers, the consumers' throughput drop and the server's CPU time.
# Targets (issue 21): good client's p99 < 100 ms, throughput within 15 % of idle, the
# crowd refused (429 / shed).
#
# Usage: bash ops/bench-api-crowd.sh [ORDERS] [CROWD] [CONSUMERS]   (defaults 200000 200 1)
# Needs wrk (apt-get install wrk); builds release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${1:-200000}
CROWD=${2:-200}
CONSUMERS=${3:-1}
DIR=target/bench-api-crowd
mkdir -p "$DIR"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bins -q
P=$PWD/target/release/producer
C=$PWD/target/release/consumer
. ops/scratch-env.sh
scratch_env oms_benchcrowd
PORT=$((20000 + RANDOM % 20000))
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    { mysql -u root -e "DROP DATABASE IF EXISTS oms_benchcrowd_$ID" || mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS oms_benchcrowd_$ID"; } 2>/dev/null || true
    redis-cli --scan --pattern "oms_benchcrowd_$ID:*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$P" migrate >/dev/null
"$P" generate products --count 1000 --stock 100000000 --seed 1 >"$DIR/products.csv"
"$P" products import "$DIR/products.csv" >/dev/null
for n in $(seq 1 20); do
    "$P" generate orders --count 1000 --products 1000 --seed $((100 + n)) >"$DIR/small.csv"
    "$P" import "$DIR/small.csv" --new >/dev/null
done
"$P" generate orders --count "$ORDERS" --products 1000 --seed 1 >"$DIR/orders.csv"
"$P" generate orders --count "$ORDERS" --products 1000 --seed 2 >"$DIR/orders-2.csv"
"$P" generate orders --count "$ORDERS" --products 1000 --seed 3 >"$DIR/orders-3.csv"
"$P" generate orders --count "$ORDERS" --products 1000 --seed 4 >"$DIR/orders-4.csv"
"$P" serve --addr "127.0.0.1:$PORT" >"$DIR/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
until curl -fsS "http://127.0.0.1:$PORT/api/queue" >/dev/null 2>&1; do sleep 0.2; done

# Runs the consumers over one file; prints orders/s.
run_consumers() {
    local file=$1 import started elapsed cpids=()
    import=$("$P" import "$file" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["import_id"])')
    started=$(date +%s.%N)
    for n in $(seq 1 "$CONSUMERS"); do "$C" --name "bench-$n" --metrics-addr 127.0.0.1:0 >/dev/null 2>&1 & cpids+=($!); done
    until "$P" status "$import" --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["import"]["done"] else 1)'; do
        sleep 0.5
    done
    elapsed=$(echo "$(date +%s.%N) - $started" | bc)
    for pid in "${cpids[@]}"; do kill -TERM "$pid"; done
    for pid in "${cpids[@]}"; do wait "$pid" || true; done
    echo "$(echo "$ORDERS / $elapsed" | bc)"
}

# The server's CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$serve_pid/stat"; }

# A warm-up run first (not counted): it creates most customers, so that the measured runs
# do the same work (a first run over an empty customers table inserts far more rows).
# Then idle, crowd, idle again; the crowd is compared with the mean of the two idle runs.
warm=$(run_consumers "$DIR/orders.csv")
echo "warm-up: $warm orders/s"
base=$(run_consumers "$DIR/orders-2.csv")
echo "baseline: $base orders/s with $CONSUMERS consumer(s)"

cat >"$DIR/bust.lua" <<'LUA'
local i = 0
request = function() i = i + 1; return wrk.format("GET", "/api/imports?limit=" .. ((i % 50) + 1)) end
LUA
cat >"$DIR/good.py" <<'PY'
import http.client, signal, socket, sys, time
port = int(sys.argv[1])
class FromSecondAddress(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), self.timeout,
                                             source_address=("127.0.0.2", 0))
latencies, statuses, running = [], {}, True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
while running:
    started = time.perf_counter()
    try:
        c = FromSecondAddress("127.0.0.1", port, timeout=10)
        c.request("GET", "/api/queue")
        r = c.getresponse(); r.read(); c.close()
        status = r.status
    except Exception as e:
        status = type(e).__name__
    latencies.append(time.perf_counter() - started)
    statuses[status] = statuses.get(status, 0) + 1
    time.sleep(0.05)
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * (len(latencies) - 1)))] * 1000
print(f"good client: {len(latencies)} requests, p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, "
      f"max {latencies[-1]*1000:.1f} ms, statuses {statuses}")
PY
ticks0=$(cpu_ticks)
wrk -t2 -c"$CROWD" -d3600s --timeout 10s -s "$DIR/bust.lua" "http://127.0.0.1:$PORT" >"$DIR/wrk.txt" 2>&1 &
wrkpid=$!
python3 "$DIR/good.py" "$PORT" >"$DIR/good.txt" &
goodpid=$!
sleep 2
loaded=$(run_consumers "$DIR/orders-3.csv")
kill -INT "$wrkpid"; kill -TERM "$goodpid"
wait "$wrkpid" || true; wait "$goodpid" || true
ticks1=$(cpu_ticks)
echo "under the crowd: $loaded orders/s"
base2=$(run_consumers "$DIR/orders-4.csv")
echo "idle again: $base2 orders/s"
base=$(( (base + base2) / 2 ))
echo "idle (mean of the runs before and after the crowd): $base orders/s"
cat "$DIR/good.txt"
echo "crowd (wrk, $CROWD connections from 127.0.0.1):"
grep -E 'requests in|Requests/sec|Non-2xx|Socket errors' "$DIR/wrk.txt" | sed 's/^/  /'
echo "server CPU during the crowd: $(echo "scale=1; ($ticks1 - $ticks0) / $(getconf CLK_TCK)" | bc) s"
echo "throughput drop: $(echo "scale=1; 100 * ($base - $loaded) / $base" | bc) %"
