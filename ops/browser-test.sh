#!/usr/bin/env bash
#
# ops/browser-test.sh - the dashboard in a real headless Chromium (Debian's `chromium`,
# driven by Playwright's `playwright-core` from the npm registry; no browser download).
#
#   1. installs chromium (apt) and playwright-core (npm, into target/browser-test) if missing;
#   2. builds `producer` and `consumer`; a fresh database and Redis prefix;
#   3. a catalog, two consumers, `producer serve` with a token;
#   4. ops/browser-test.mjs: imports orders through the API, opens the page, waits until the
#      KPIs and the throughput chart show the import's figures, retries a dead letter from
#      the page and sees it go, toggles pause and sees consumption stop (orders uploaded
#      while paused stay unprocessed) and resume finish them; screenshots of a desktop and
#      a phone-sized screen under target/browser-test/; three hostile entries (4 MB names)
#      are dead-lettered as excerpts, /api/failed answers 200, and with one endpoint failing
#      every other panel still renders.
#
# Usage: bash ops/browser-test.sh          (about 1 minute after the build)
# Environment: DATABASE_URL (its server; a database of its own is used) and REDIS_URL,
# as for the tests; without DATABASE_URL, the URL ops/services.sh keeps, if any.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=target/browser-test
mkdir -p "$DIR"

# Debian's chromium, and node + npm for playwright-core when the machine has none.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
    echo "browser-test: installing ${missing[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# 1.60 runs on Debian 12's Node.js 18 (playwright-core 1.62 and later need Node 20).
PLAYWRIGHT_CORE=1.60.0
if ! grep -qs "\"version\": \"$PLAYWRIGHT_CORE\"" "$DIR/node_modules/playwright-core/package.json"; then
    npm install --silent --no-audit --no-fund --prefix "$DIR" "playwright-core@$PLAYWRIGHT_CORE" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1 && [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
cargo build --bins -q
P=${CARGO_TARGET_DIR:-$PWD/target}/debug/producer
C=${CARGO_TARGET_DIR:-$PWD/target}/debug/consumer

. ops/scratch-env.sh
scratch_env oms_browser
export OMS_API_TOKEN="browser-$ID-token"
PORT=$((20000 + RANDOM % 20000))

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    { mysql -u root -e "DROP DATABASE IF EXISTS oms_browser_$ID" || mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS oms_browser_$ID"; } 2>/dev/null || true
    redis-cli --scan --pattern "oms_browser_$ID:*" 2>/dev/null | xargs -r redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$P" migrate >/dev/null
"$P" generate products --count 50 --stock 100000 --seed 3 >"$DIR/products.csv"
"$P" products import "$DIR/products.csv" >/dev/null
"$P" generate orders --count 3000 --products 50 --seed 3 --days 1 >"$DIR/orders.csv"
"$P" generate orders --count 400 --products 50 --seed 4 --days 1 >"$DIR/orders-paused.csv"
for n in 1 2; do
    "$C" --name "browser-$n" --batch-size 100 --metrics-addr 127.0.0.1:0 >"$DIR/consumer-$n.log" 2>&1 &
    pids+=($!)
done
"$P" serve --addr "127.0.0.1:$PORT" >"$DIR/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/api/queue" >/dev/null 2>&1 && break
    sleep 0.1
done
# The dead letter the page retries is added by browser-test.mjs once its import exists.

started=$(date +%s)
BASE="http://127.0.0.1:$PORT" OUT="$DIR" NODE_PATH="$DIR/node_modules" \
    node ops/browser-test.mjs
echo "browser test passed in $(($(date +%s) - started)) s; screenshots in $DIR/"
