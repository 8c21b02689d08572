#!/usr/bin/env bash
#
# ops/bench-galera.sh - one MariaDB against a 3-node MariaDB Galera cluster, in the same
# run, on the same machine: end-to-end orders/s of N generated orders (1,000 skewed SKUs,
# `producer import --wait` while 2 consumers run), and the Galera certification conflicts
# per 1,000 orders (oms_mysql_write_conflicts_total of both consumers). On the cluster
# each consumer prefers another node (DATABASE_URL lists every node, its own first), so
# both write at once and conflict on the hot product rows. Also measures what a causal
# read costs (wsrep_sync_wait = 1, which oms sets on every Galera session): 5,000 point
# SELECTs on one node with and without it.
#
# All four servers are private mariadbd processes started here with the same settings
# (the single one without wsrep), in a temp dir removed at the end, with them; Redis is
# the local one (REDIS_URL). Ports: BENCH_GALERA_PORT_BASE (default 17400) and up to +33.
#
# Usage: bash ops/bench-galera.sh [ORDERS]   (default 100000)
set -euo pipefail

cd "$(dirname "$0")/.."
ORDERS=${1:-100000}
BASE=${BENCH_GALERA_PORT_BASE:-17400}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=warn
TARGET=${CARGO_TARGET_DIR:-target}
PROVIDER=/usr/lib/galera/libgalera_smm.so

bash ops/services.sh redis galera >/dev/null
cargo build --release --bins -q
P=$TARGET/release/producer
C=$TARGET/release/consumer

DIR=$(mktemp -d /tmp/oms-bench-galera.XXXXXX)
chmod 755 "$DIR"
USER_ARGS=()
if [[ $(id -u) == 0 ]]; then
    # An SST's rsync daemon drops root privileges to nobody: the nodes run as nobody.
    USER_ARGS=(--user=nobody)
    chown nobody: "$DIR"
fi
servers=()
consumers=()
cleanup() {
    for pid in "${consumers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${servers[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

GCOMM="gcomm://127.0.0.1:$((BASE + 11)),127.0.0.1:$((BASE + 12)),127.0.0.1:$((BASE + 13))"

# start_server NAME PORT WAIT_FOR [ARGS...]: mariadbd in $DIR/NAME, until its log says WAIT_FOR.
start_server() {
    local name=$1 port=$2 marker=$3
    shift 3
    local dir="$DIR/$name"
    mkdir -p "$dir/data"
    [[ $(id -u) == 0 ]] && chown -R nobody: "$dir"
    mariadbd --no-defaults --datadir="$dir/data" --port="$port" --bind-address=127.0.0.1 \
        --socket="$dir/sock" --pid-file="$dir/pid" --log-error="$dir/err.log" \
        --skip-grant-tables --skip-name-resolve --max-connections=1000 \
        --innodb-buffer-pool-size=256M --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_unicode_ci --binlog-format=ROW --innodb-autoinc-lock-mode=2 \
        "${USER_ARGS[@]}" "$@" >/dev/null 2>&1 &
    servers+=("$!")
    for _ in $(seq 1 1200); do
        grep -q "$marker" "$dir/err.log" 2>/dev/null && return 0
        kill -0 "${servers[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$dir/err.log" >&2
    echo "bench-galera: $name did not start" >&2
    exit 1
}
install_datadir() { # NAME
    mkdir -p "$DIR/$1"
    mariadb-install-db --no-defaults --datadir="$DIR/$1/data" --skip-test-db \
        --auth-root-authentication-method=normal "${USER_ARGS[@]}" >/dev/null
}
galera_node() { # INDEX [--wsrep-new-cluster]
    local i=$1
    shift
    start_server "node$i" $((BASE + i)) "Synchronized with group" \
        --wsrep-on=ON --wsrep-provider="$PROVIDER" --wsrep-cluster-address="$GCOMM" \
        --wsrep-cluster-name=oms-bench --wsrep-node-name="node$i" \
        --wsrep-node-address="127.0.0.1:$((BASE + 10 + i))" \
        --wsrep-node-incoming-address="127.0.0.1:$((BASE + i))" \
        --wsrep-sst-receive-address="127.0.0.1:$((BASE + 30 + i))" --wsrep-sst-method=rsync \
        --wsrep-slave-threads=2 \
        "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:$((BASE + 10 + i));ist.recv_addr=127.0.0.1:$((BASE + 20 + i));gcache.size=256M" \
        "$@"
}

install_datadir single
start_server single "$BASE" "ready for connections"
install_datadir node1
galera_node 1 --wsrep-new-cluster
galera_node 2
galera_node 3

"$P" generate products --count 1000 --stock 1000000 --seed 1 >"$DIR/products.csv"
"$P" generate orders --count "$ORDERS" --products 1000 --seed 2 --end-date 2026-11-01 >"$DIR/orders.csv"

counter() { # PORT METRIC: its value on the consumer's /metrics
    curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print int($2)}'
}

# run LABEL URL_OF_CONSUMER_1 URL_OF_CONSUMER_2: writes "ORDERS_PER_SEC CONFLICTS" to
# $DIR/result-LABEL.
run() {
    local label=$1 url1=$2 url2=$3
    export OMS_PREFIX="oms_bench_galera_$label:"
    DATABASE_URL=$url1 "$P" migrate >/dev/null
    DATABASE_URL=$url1 "$P" products import "$DIR/products.csv" >/dev/null
    consumers=()
    local ports=() i=0 url
    for url in "$url1" "$url2"; do
        i=$((i + 1))
        DATABASE_URL=$url "$C" --name "bench-$label-$i" --metrics-addr "127.0.0.1:$((BASE + 40 + i))" \
            >"$DIR/consumer-$label-$i.log" 2>&1 &
        consumers+=("$!")
        ports+=($((BASE + 40 + i)))
    done
    for port in "${ports[@]}"; do
        for _ in $(seq 1 200); do
            curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
            sleep 0.1
        done
    done
    local start end conflicts=0
    start=$(date +%s.%N)
    DATABASE_URL=$url1 "$P" import "$DIR/orders.csv" --new --wait >/dev/null
    end=$(date +%s.%N)
    for port in "${ports[@]}"; do
        conflicts=$((conflicts + $(counter "$port" oms_mysql_write_conflicts_total)))
    done
    for pid in "${consumers[@]}"; do kill -TERM "$pid" && wait "$pid" || true; done
    consumers=()
    DATABASE_URL=$url1 "$P" reconcile >/dev/null || echo "bench-galera: $label: reconcile found drift" >&2
    redis-cli -u "$REDIS_URL" --scan --pattern "$OMS_PREFIX*" | xargs -r redis-cli -u "$REDIS_URL" DEL >/dev/null
    python3 -c 'import sys; print(round(int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2]))), sys.argv[4])' \
        "$ORDERS" "$start" "$end" "$conflicts" >"$DIR/result-$label"
}

CLUSTER="127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3))"
run single "mysql://root@127.0.0.1:$BASE/oms_bench" "mysql://root@127.0.0.1:$BASE/oms_bench"
read -r single_rate single_conflicts <"$DIR/result-single"
CLUSTER_2="127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3)),127.0.0.1:$((BASE + 1))"
run galera "mysql://root@$CLUSTER/oms_bench" "mysql://root@$CLUSTER_2/oms_bench"
read -r galera_rate galera_conflicts <"$DIR/result-galera"
# What Galera itself counted on the three nodes: local transactions that failed
# certification, and local transactions aborted by another node's writeset (BF aborts).
galera_status() { # VARIABLE: its sum over the nodes
    local sum=0 i
    for i in 1 2 3; do
        sum=$((sum + $(mariadb -h127.0.0.1 -P$((BASE + i)) -uroot -N -B -e "SHOW GLOBAL STATUS LIKE '$1'" | awk '{print $2}')))
    done
    echo "$sum"
}
cert_failures=$(galera_status wsrep_local_cert_failures)
bf_aborts=$(galera_status wsrep_local_bf_aborts)

# Causal reads: 5,000 point SELECTs in one session on node 1, wsrep_sync_wait 0 and 1.
reads_us() { # SYNC_WAIT: microseconds per read
    {
        echo "SET SESSION wsrep_sync_wait = $1;"
        for i in $(seq 1 5000); do echo "SELECT stock_quantity FROM oms_bench.products WHERE id = $((i % 1000 + 1));"; done
    } >"$DIR/reads.sql"
    local start end
    start=$(date +%s.%N)
    mariadb -h127.0.0.1 -P$((BASE + 1)) -uroot -N -B <"$DIR/reads.sql" >/dev/null
    end=$(date +%s.%N)
    python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1e6 / 5000))' "$start" "$end"
}
plain_us=$(reads_us 0)
causal_us=$(reads_us 1)

python3 - "$ORDERS" "$single_rate" "$single_conflicts" "$galera_rate" "$galera_conflicts" "$plain_us" "$causal_us" "$cert_failures" "$bf_aborts" <<'PY'
import sys
n, sr, sc, gr, gc, plain, causal, cert, bf = map(int, sys.argv[1:])
print(f"orders: {n:,}, 2 consumers, 1,000 skewed SKUs")
print(f"one MariaDB:          {sr:,} orders/s, write conflicts {sc * 1000 / n:.2f} per 1,000 orders ({sc})")
print(f"Galera, 3 nodes:      {gr:,} orders/s ({(gr - sr) / sr:+.0%}), write conflicts "
      f"{gc * 1000 / n:.2f} per 1,000 orders ({gc}; certification failures and deadlocks, all retried)")
print(f"                      Galera's own counters: {cert} certification failures, {bf} brute-force aborts")
print(f"causal read (node 1): {plain} us per point SELECT without, {causal} us with wsrep_sync_wait = 1")
PY
