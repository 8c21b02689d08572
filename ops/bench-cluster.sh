#!/usr/bin/env bash
#
# ops/bench-cluster.sh - one Redis against a Redis Cluster, in the same run: `producer
# import` rows/s (no consumer) and end-to-end orders/s with 2 consumers
# (ops/bench-consumer.sh), first on the local Redis (P = 1), then on a private 3-primary,
# 3-replica cluster started here (P = 16, `WAIT 1` for every pipeline and read-model
# update). Prints both and the cluster's cost end to end (the goal: at most 15 %).
#
# Usage: bash ops/bench-cluster.sh [IMPORT_ROWS] [E2E_ORDERS]   (defaults: 1000000, 200000)
# The cluster's nodes listen on 127.0.0.1:17100-17105 (bus 17200-17205), in a temp dir
# removed at the end, with the nodes.
set -euo pipefail

cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
ORDERS=${2:-200000}
DIR=${OMS_BENCH_DIR:-target/bench}
mkdir -p "$DIR"
export DATABASE_URL=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/oms_bench_cluster}
export RUST_LOG=warn
SINGLE=${REDIS_URL:-redis://127.0.0.1:6379}

bash ops/services.sh >/dev/null
cargo build --release --bins -q
P=target/release/producer

# The cluster: six nodes with AOF (appendfsync everysec, as oms ships Redis; figures before
# 2026-12-04 were measured without persistence), 1 s node timeout, one replica per primary.
CLUSTER_DIR=$(mktemp -d /tmp/oms-bench-cluster.XXXXXX)
nodes=()
stop_cluster() {
    for port in $(seq 17100 17105); do redis-cli -p "$port" SHUTDOWN NOSAVE >/dev/null 2>&1 || true; done
    rm -rf "$CLUSTER_DIR"
}
trap stop_cluster EXIT
for port in $(seq 17100 17105); do
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-port $((port + 100)) --cluster-config-file "$CLUSTER_DIR/nodes-$port.conf" \
        --cluster-node-timeout 1000 --save "" --appendonly yes --appendfsync everysec \
        --appenddirname "aof-$port" --dir "$CLUSTER_DIR" \
        --logfile "$CLUSTER_DIR/$port.log" --daemonize yes
    nodes+=("127.0.0.1:$port")
done
for port in $(seq 17100 17105); do
    until redis-cli -p "$port" PING >/dev/null 2>&1; do sleep 0.1; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
until redis-cli -p 17100 CLUSTER INFO | grep -q 'cluster_state:ok'; do sleep 0.2; done
CLUSTER=$(printf 'redis://%s,' "${nodes[@]}")
CLUSTER=${CLUSTER%,}
sleep 2 # replicas' first sync

FILE="$DIR/orders-$ROWS.csv"
[[ -s $FILE ]] || "$P" generate orders --count "$ROWS" --products 1000 --seed 1 --end-date 2026-11-01 >"$FILE"

# producer import, no consumer: rows/s from the import's own report.
import_rate() { # REDIS_URL PARTITIONS PREFIX
    mariadb -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS oms_bench_cluster'
    REDIS_URL=$1 OMS_PREFIX=$3 "$P" migrate --partitions "$2" >/dev/null
    REDIS_URL=$1 OMS_PREFIX=$3 "$P" import "$FILE" --new --max-lag 0 --json >"$DIR/cluster-import.json"
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["rows_per_sec"]))' "$DIR/cluster-import.json"
}
single_import=$(import_rate "$SINGLE" 1 "oms_bench_cl1:")
redis-cli -u "$SINGLE" --scan --pattern 'oms_bench_cl1:*' | xargs -r redis-cli -u "$SINGLE" DEL >/dev/null
cluster_import=$(import_rate "$CLUSTER" 16 "oms_bench_cl16:")
mariadb -h127.0.0.1 -uroot -e 'DROP DATABASE IF EXISTS oms_bench_cluster'

# End to end: 2 consumers, the same file, same machine.
e2e() { # REDIS_URL PARTITIONS
    REDIS_URL=$1 BENCH_PARTITIONS=$2 BENCH_NAME=oms_bench_cl_e2e BENCH_PORT_BASE=19600 \
        bash ops/bench-consumer.sh "$ORDERS" 2 | tee "$DIR/cluster-e2e.txt" >&2
    grep -o '= [0-9,]* orders/s' "$DIR/cluster-e2e.txt" | tr -dc '0-9'
}
single_e2e=$(e2e "$SINGLE" 1)
cluster_e2e=$(e2e "$CLUSTER" 16)

python3 - "$single_import" "$cluster_import" "$single_e2e" "$cluster_e2e" <<'PY'
import sys
si, ci, se, ce = map(int, sys.argv[1:])
print(f"producer import:  one Redis {si:,} rows/s, cluster (P=16, WAIT 1) {ci:,} rows/s ({(ci - si) / si:+.0%})")
cost = (se - ce) / se
print(f"end to end:       one Redis {se:,} orders/s, cluster (P=16, WAIT 1) {ce:,} orders/s "
      f"(cost {cost:.0%}; goal <= 15%: {'met' if cost <= 0.15 else 'NOT met'})")
PY
