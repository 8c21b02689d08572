#!/usr/bin/env bash
#
# ops/demo.sh - the main job of oms, end to end, on a fresh machine:
#
#   1. a C toolchain, Redis and MariaDB (ops/services.sh installs and starts what is
#      missing; DATABASE_URL unset: the URL it keeps for its generated `oms` MySQL user);
#   2. release build of `producer` and `consumer`;
#   3. `producer migrate`;
#   4. a sample catalog and a sample orders file generated and the catalog imported;
#   5. two consumers started (metrics on 127.0.0.1:9464 and :9465);
#   6. `producer import --wait` of the orders (progress, then the outcome);
#   7. `producer kpis generate` and `producer leaderboard update` printed;
#   8. the consumers stopped with SIGTERM (they drain and exit 0).
#
# Usage: bash ops/demo.sh [ORDERS] [PRODUCTS]      (defaults: 20000 orders, 200 products)
# Environment: DATABASE_URL, REDIS_URL, OMS_PREFIX as everywhere (defaults: the local
# servers, database `oms`, prefix `oms:`). Work files go to ${OMS_DEMO_DIR:-target/demo}.
set -euo pipefail

cd "$(dirname "$0")/.."
ORDERS=${1:-20000}
PRODUCTS=${2:-200}
DIR=${OMS_DEMO_DIR:-target/demo}
mkdir -p "$DIR"

STEP_START=$SECONDS
step() {
    printf '\n== %s (at %ds)\n' "$*" $((SECONDS - STEP_START))
}

if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi

step "services"
bash ops/services.sh build-tools all
kept=${OMS_SERVICES_DIR:-/var/lib/oms-services}/database-url
if [[ -z ${DATABASE_URL:-} && -r $kept ]]; then
    DATABASE_URL=$(<"$kept")
    export DATABASE_URL
    echo "demo: DATABASE_URL from $kept"
fi

step "build (release)"
cargo build --release --bins -q
P=target/release/producer
C=target/release/consumer

step "migrate"
"$P" migrate

step "catalog: $PRODUCTS products"
"$P" generate products --count "$PRODUCTS" --stock 100000 --seed 7 >"$DIR/products.csv"
"$P" products import "$DIR/products.csv"

step "orders: $ORDERS generated"
"$P" generate orders --count "$ORDERS" --products "$PRODUCTS" --seed 7 --days 30 >"$DIR/orders.csv"
ls -l "$DIR/orders.csv"

step "two consumers"
pids=()
stop_consumers() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        if wait "$pid"; then
            echo "consumer $pid stopped cleanly"
        else
            echo "consumer $pid exited with status $?"
        fi
    done
    pids=()
}
trap stop_consumers EXIT
for i in 1 2; do
    RUST_LOG=${RUST_LOG:-warn} "$C" --name "demo-$i" --metrics-addr "127.0.0.1:$((9463 + i))" \
        >"$DIR/consumer-$i.log" 2>&1 &
    pids+=("$!")
    echo "consumer demo-$i: pid $!, metrics http://127.0.0.1:$((9463 + i))/metrics, log $DIR/consumer-$i.log"
done

step "import --wait"
# --new: running the demo twice imports the same file again as new orders.
"$P" import "$DIR/orders.csv" --new --wait --rejects "$DIR/rejects.csv" --force

step "KPIs (rebuilt from MySQL)"
"$P" kpis generate

step "leaderboard"
"$P" leaderboard update --limit 10

step "reconcile (Redis read models against MySQL)"
"$P" reconcile

step "stopping the consumers"
stop_consumers
trap - EXIT
step "done"
