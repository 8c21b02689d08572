#!/usr/bin/env bash
#
# ops/bench-consumer.sh - end-to-end throughput: N generated orders (skewed SKUs) imported
# while 2 consumers run; measures from the import's start to the last order terminal.
# Prints orders/s, p50/p99 latency from enqueue to terminal (from the consumers'
# oms_order_duration_seconds histograms, interpolated like histogram_quantile), the
# consumers' peak RSS, and MariaDB's innodb_flush_log_at_trx_commit (1 = durable commits).
#
# Database cost per order, read around the run (the server must be local):
# - MariaDB CPU per order: utime+stime of the whole mariadbd/mysqld process (/proc/PID/stat)
#   before and after, over the orders. It includes whatever else the server does meanwhile
#   (other databases' tests), so on a shared machine it is an upper bound; "sessions" is the
#   CPU of only the server threads seen serving this run's connections (PROCESSLIST's TID,
#   MariaDB only, sampled twice a second; /proc/PID/task/TID/stat), "background" that of
#   the threads never seen serving a connection (InnoDB's log writer, page cleaner, purge);
#   their sum leaves out other clients' sessions: the figure to compare on a busy machine.
#   Sessions are split by client process (ss -tnp): the consumers' (the workflow) and the
#   producer's (the import and the `--wait` polling, which reads the import's orders four
#   times a second: its cost per order grows with the run's length).
# - SHOW GLOBAL STATUS deltas per order (statements, handler calls, rows, fsyncs), also
#   server-wide; the full delta is left in $DIR/e2e-status.txt.
# CPU per order depends far less on other load than orders/s does.
#
# Usage: bash ops/bench-consumer.sh [ORDERS] [CONSUMERS]   (defaults: 200000, 2)
# Extra consumer flags: CONSUMER_ARGS="--batch-size 500 --concurrency 4". IMPORT_MAX_LAG=5000
# bounds the queue (the import waits), so latency measures processing, not the backlog.
# BENCH_RATE=R offers R orders/s instead of the whole file at once (a quarter second's
# orders imported every 250 ms, as separate imports): latency at a given load, e.g. 80 % of
# the maximum throughput measured without it.
# Uses database NAME and prefix NAME: with NAME=${BENCH_NAME:-oms_bench_e2e} (give each
# bench running at once on one server its own name), removed at the end, unless
# BENCH_KEEP=1: then both stay for a look with EXPLAIN). Metrics ports 19501… (BENCH_PORT_BASE).
# REDIS_URL may be a Redis Cluster's node list; BENCH_PARTITIONS=16 records 16 partitions
# (ops/bench-cluster.sh runs both and compares).
set -euo pipefail

cd "$(dirname "$0")/.."
ORDERS=${1:-200000}
CONSUMERS=${2:-2}
DIR=${OMS_BENCH_DIR:-target/bench}
mkdir -p "$DIR"
NAME=${BENCH_NAME:-oms_bench_e2e}
[[ $NAME =~ ^[a-z0-9_]+$ ]] || { echo "bench: BENCH_NAME must be [a-z0-9_]+" >&2; exit 2; }
export DATABASE_URL=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/$NAME}
export OMS_PREFIX=$NAME:
PORT_BASE=${BENCH_PORT_BASE:-19500}
PARTITIONS=${BENCH_PARTITIONS:-1}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=${RUST_LOG:-warn}

if [[ $REDIS_URL == *,* ]]; then # a cluster's node list: only MySQL is ours to start
    REDIS_URL=redis://127.0.0.1:6379 bash ops/services.sh mysql >/dev/null
else
    bash ops/services.sh >/dev/null
fi
# BENCH_BIN_DIR: take producer and consumer from there (e.g. another commit's build)
# instead of building this tree.
if [[ -n ${BENCH_BIN_DIR:-} ]]; then
    P=$BENCH_BIN_DIR/producer
    C=$BENCH_BIN_DIR/consumer
else
    cargo build --release --bins -q
    P=target/release/producer
    C=target/release/consumer
fi
# Deletes the prefix's keys, on one Redis or on every node of a cluster (-c follows MOVED).
clear_keys() {
    local node
    for node in ${REDIS_URL//,/ }; do
        redis-cli -u "$node" --scan --pattern "${OMS_PREFIX}*" |
            while read -r key; do redis-cli -c -u "$node" DEL "$key" >/dev/null; done
    done
}
sql() { mariadb -h127.0.0.1 -uroot -N -B -e "$1"; }
MYSQLD_PID=$(pgrep -xo mariadbd || pgrep -xo mysqld || true)
# utime+stime (clock ticks) of the server process, or of each of its threads (TID TICKS).
server_ticks() { awk '{print $14 + $15}' "/proc/$MYSQLD_PID/stat"; }
thread_ticks() { for t in /proc/"$MYSQLD_PID"/task/*; do awk -v t="${t##*/}" '{print t, $14 + $15}' "$t/stat" 2>/dev/null; done; }
global_status() { sql 'SHOW GLOBAL STATUS' | grep -E '^(Com_|Handler_|Innodb_rows_|Innodb_data_|Innodb_os_log_|Innodb_log_|Innodb_deadlocks|Innodb_row_lock_|Questions|Bytes_)'; }

sql "DROP DATABASE IF EXISTS $NAME"
clear_keys
if [[ $PARTITIONS == 1 ]]; then "$P" migrate >/dev/null; else "$P" migrate --partitions "$PARTITIONS" >/dev/null; fi
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

[[ -n $MYSQLD_PID ]] && server_ticks >"$DIR/e2e-ticks-before.txt" && thread_ticks >"$DIR/e2e-threads-before.txt"
global_status >"$DIR/e2e-status-before.txt"
: >"$DIR/e2e-session-tids.txt"
start=$(date +%s.%N)
if [[ -n ${BENCH_RATE:-} ]]; then
    # Offered load BENCH_RATE orders/s: the file in slices of a quarter second's orders, one
    # import per slice on a fixed schedule, then wait until every order has ended.
    python3 - "$P" "$FILE" "$BENCH_RATE" "$ORDERS" "$NAME" "$DIR/slices" <<'PY' >"$DIR/e2e-report.json" &
import os, subprocess, sys, time
producer, path, rate, orders, name, slices = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
per_slice = max(1, rate // 4)
os.makedirs(slices, exist_ok=True)
with open(path) as f:
    header = f.readline()
    files, rows = [], f.readlines()
for i in range(0, len(rows), per_slice):
    out = os.path.join(slices, f"s{i // per_slice:05}.csv")
    with open(out, "w") as o:
        o.write(header)
        o.writelines(rows[i:i + per_slice])
    files.append(out)
start = time.monotonic()
late = 0
for n, f in enumerate(files):
    due = start + n * 0.25
    now = time.monotonic()
    if now < due:
        time.sleep(due - now)
    elif now - due > 0.05:
        late += 1
    subprocess.run([producer, "import", f, "--new", "--json"], check=True, stdout=subprocess.DEVNULL)
sql = f"SELECT COUNT(*) FROM {name}.orders WHERE status IN ('completed', 'failed')"
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    done = int(subprocess.check_output(["mariadb", "-h127.0.0.1", "-uroot", "-N", "-B", "-e", sql]))
    if done >= orders:
        break
    time.sleep(0.1)
counts = subprocess.check_output(["mariadb", "-h127.0.0.1", "-uroot", "-N", "-B", "-e",
    f"SELECT status, COALESCE(failure_reason, '-'), COUNT(*) FROM {name}.orders GROUP BY 1, 2"], text=True)
completed, failed = 0, {}
for line in counts.splitlines():
    status, reason, n = line.split("\t")
    if status == "completed":
        completed += int(n)
    elif status == "failed":
        failed[reason] = failed.get(reason, 0) + int(n)
import json
print(json.dumps({"paced_slices": len(files), "late_slices": late, "rate": rate,
                  "outcome": {"completed": completed, "failed_total": sum(failed.values()),
                              "failed": failed, "dead": 0}}))
PY
else
    "$P" import "$FILE" --new --wait --json >"$DIR/e2e-report.json" &
fi
import_pid=$!
: >"$DIR/e2e-client-ports.txt"
# Which client process each MySQL connection belongs to: "PORT PID" of sockets to 3306.
client_ports() {
    ss -tnpH 'dport = :3306' 2>/dev/null |
        sed -nE 's/.*:([0-9]+) +[0-9.]+:3306 .*pid=([0-9]+).*/\1 \2/p' >>"$DIR/e2e-client-ports.txt" || true
}
sample_sessions() {
    sql "SELECT TID, COALESCE(DB, '-'), SUBSTRING_INDEX(HOST, ':', -1) FROM information_schema.PROCESSLIST" \
        >>"$DIR/e2e-session-tids.txt" 2>/dev/null || true
    client_ports
}
while kill -0 "$import_pid" 2>/dev/null; do
    sample_sessions
    sleep 0.5
done
wait "$import_pid"
end=$(date +%s.%N)
global_status >"$DIR/e2e-status-after.txt"
: >"$DIR/e2e-ticks-after.txt"
: >"$DIR/e2e-threads-after.txt"
if [[ -n $MYSQLD_PID ]]; then
    server_ticks >"$DIR/e2e-ticks-after.txt"
    thread_ticks >"$DIR/e2e-threads-after.txt"
    sample_sessions
fi
# The last terminal order's time, from MySQL, against the import's start.
span=$(sql "SELECT TIMESTAMPDIFF(MICROSECOND, MIN(i.created_at), MAX(o.updated_at)) / 1e6 \
    FROM $NAME.imports i JOIN $NAME.orders o ON o.import_id = i.id")
for i in "${!ports[@]}"; do
    curl -s "http://127.0.0.1:${ports[$i]}/metrics" >"$DIR/e2e-metrics-$i.txt"
done
rss=()
for pid in "${pids[@]}"; do
    rss+=("$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")")
done
python3 - "$DIR" "$ORDERS" "$span" "$start" "$end" "$(getconf CLK_TCK)" "${pids[*]}" "$NAME" "${rss[@]}" <<'PY'
import glob, json, os, re, sys
d, orders, span, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
tck = int(sys.argv[6])
consumer_pids = set(sys.argv[7].split())
name = sys.argv[8]
rss = [int(x) / 1024 for x in sys.argv[9:]]
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

def read(name):
    path = f"{d}/{name}"
    return open(path).read().split() if os.path.exists(path) else []
before, after = read("e2e-ticks-before.txt"), read("e2e-ticks-after.txt")
if before and after:
    server_us = (int(after[0]) - int(before[0])) / tck * 1e6
    t0 = dict(zip(*[iter(read("e2e-threads-before.txt"))] * 2))
    t1 = dict(zip(*[iter(read("e2e-threads-after.txt"))] * 2))
    seen = [line.rstrip("\n").split("\t") for line in open(f"{d}/e2e-session-tids.txt") if "\t" in line]
    ours = {t for t, db, _ in seen if db == name}
    connections = {t for t, _, _ in seen}
    port_pid = dict(line.split() for line in open(f"{d}/e2e-client-ports.txt") if len(line.split()) == 2)
    consumer_tids = {t for t, db, port in seen if db == name and port_pid.get(port) in consumer_pids}
    def ticks(tids):
        return sum(int(t1[t]) - int(t0.get(t, 0)) for t in tids if t in t1) / tck * 1e6
    sessions_us = ticks(ours)
    background_us = ticks(set(t1) - connections)
    wall = end - start
    print(f"MariaDB CPU per order: {server_us / orders:.1f} us (whole server, "
          f"{server_us / 1e6 / wall * 100:.0f} % of one core over the import); "
          f"this run's sessions {sessions_us / orders:.1f} us + background "
          f"{background_us / orders:.1f} us = {(sessions_us + background_us) / orders:.1f} us")
    consumers_us = ticks(consumer_tids)
    print(f"  of which the consumers' sessions {consumers_us / orders:.1f} us, the producer's "
          f"(import, --wait polling) {(sessions_us - consumers_us) / orders:.1f} us; workflow "
          f"(consumers' sessions + background) {(consumers_us + background_us) / orders:.1f} us")
else:
    print("MariaDB CPU per order: n/a (no local mariadbd/mysqld process)")

def status(name):
    out = {}
    for line in open(f"{d}/{name}"):
        k, _, v = line.strip().partition("\t")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out
s0, s1 = status("e2e-status-before.txt"), status("e2e-status-after.txt")
delta = {k: s1[k] - s0.get(k, 0) for k in s1 if s1[k] - s0.get(k, 0) > 0}
with open(f"{d}/e2e-status.txt", "w") as f:
    for k in sorted(delta):
        f.write(f"{k}\t{delta[k]}\t{delta[k] / orders:.3f}/order\n")
shown = ["Questions", "Com_stmt_prepare", "Com_stmt_execute", "Handler_read_key",
         "Handler_read_next", "Handler_read_rnd_next", "Handler_write", "Handler_update",
         "Innodb_data_fsyncs", "Innodb_os_log_written"]
print("server-wide per order: " + ", ".join(f"{k} {delta.get(k, 0) / orders:.2f}" for k in shown))
print(f"server-wide: deadlocks {delta.get('Innodb_deadlocks', 0)}, row lock waits "
      f"{delta.get('Innodb_row_lock_waits', 0)} ({delta.get('Innodb_row_lock_time', 0) / 1000:.1f} s waited)")
PY
cleanup
trap - EXIT
[[ ${BENCH_KEEP:-0} == 1 ]] && exit 0
sql "DROP DATABASE IF EXISTS $NAME"
clear_keys
