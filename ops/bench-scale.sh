#!/usr/bin/env bash
#
# ops/bench-scale.sh - every operator command timed on a database of 1 M, 5 M (and more)
# orders (issue 22, "A year of orders").
#
# The orders are loaded with bulk SQL (INSERT … SELECT from a cross join of a digits
# table, a million rows per statement), not through the consumer, so a size takes
# minutes: one import holding every order, spread over the 365 days of 2026, 1 in 20
# failed (payment_declined), the rest completed; 100,000 customers whose totals match
# their orders; the per-day summary `kpi_days` and the import's counters
# (`import_progress`) filled from the orders when the schema has them. Sizes grow in place (1 M, then 4 M more for 5 M, …). No order_items are loaded:
# no timed command reads them.
#
# Timed at each size (wall clock of one run, after one warm-up run of the read-only ones):
#   kpis generate --date 2026-06-15, reconcile --fix (rebuilds every KPI hash: Redis
#   starts empty at each size), leaderboard update, reconcile, status IMPORT, one
#   `import --wait` poll (the query `status IMPORT --json` and the poll share),
#   GET /api/orders/stats, GET /api/imports/{id};
# and, for comparison, the SQL the commands ran before the per-day summary: the four KPI
# scans of the old `kpis generate`, the old `reconcile`'s per-day scan and the old poll of
# an import's progress (its orders grouped by status), via the client.
#
# Usage: bash ops/bench-scale.sh [SIZES]   (default "1000000 5000000"; add 20000000)
# BENCH_BIN_DIR: take `producer` from there (e.g. target/debug or another commit's build)
# instead of building this tree in release mode. Uses database and prefix NAME
# (BENCH_NAME, default oms_bench_scale), dropped at the end unless BENCH_KEEP=1.
# API port BENCH_PORT (default 19580). The table goes to stdout and $DIR/scale.txt.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZES=${1:-"1000000 5000000"}
DIR=${OMS_BENCH_DIR:-target/bench}
mkdir -p "$DIR"
NAME=${BENCH_NAME:-oms_bench_scale}
[[ $NAME =~ ^[a-z0-9_]+$ ]] || { echo "bench: BENCH_NAME must be [a-z0-9_]+" >&2; exit 2; }
export DATABASE_URL=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/$NAME}
export OMS_PREFIX=$NAME:
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=${RUST_LOG:-warn}
PORT=${BENCH_PORT:-19580}
DAY=2026-06-15
CUSTOMERS=100000

if [[ -n ${BENCH_BIN_DIR:-} ]]; then
    P=$BENCH_BIN_DIR/producer
else
    cargo build --release --bin producer -q
    P=target/release/producer
fi
sql() { mariadb -h127.0.0.1 -uroot -N -B "$NAME" -e "$1"; }
clear_keys() {
    redis-cli -u "$REDIS_URL" --scan --pattern "${OMS_PREFIX}*" |
        while read -r key; do redis-cli -u "$REDIS_URL" DEL "$key" >/dev/null; done
}
SERVE_PID=
cleanup() {
    [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null || true
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then
        mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $NAME" || true
        clear_keys || true
    fi
}
trap cleanup EXIT

mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $NAME"
clear_keys
"$P" migrate >/dev/null
HAS_SUMMARY=$(sql "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '$NAME' AND table_name = 'kpi_days'")
sql "CREATE TABLE bench_digits (d INT NOT NULL PRIMARY KEY);
     INSERT INTO bench_digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
     INSERT INTO products (sku, name, price, stock_quantity) VALUES ('SKU-1', 'Bench', 1.00, 1000000);
     INSERT INTO customers (email, name)
       SELECT CONCAT('c', a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d, '@bench.example'), 'Bench'
       FROM bench_digits a, bench_digits b, bench_digits c, bench_digits e, bench_digits f;
     INSERT INTO imports (file_name, file_sha256, status, finished_at) VALUES ('bench.csv', REPEAT('0', 64), 'done', NOW(3));"
IMPORT=$(sql "SELECT MAX(id) FROM imports")
FIRST_CUSTOMER=$(sql "SELECT MIN(id) FROM customers")

# Adds orders base+0 … base+999999 (one statement, one transaction).
load_million() {
    local base=$1
    sql "INSERT INTO orders (identity, import_id, line, customer_id, status, failure_reason, total, order_date, kpi_date)
         SELECT CONCAT('B', n), $IMPORT, n + 1, $FIRST_CUSTOMER + n % $CUSTOMERS,
                IF(n % 20 = 0, 'failed', 'completed'), IF(n % 20 = 0, 'payment_declined', NULL),
                1 + (n % 10000) / 100, TIMESTAMP('2026-01-01') + INTERVAL (n % 365) DAY + INTERVAL (n % 86400) SECOND,
                DATE('2026-01-01') + INTERVAL (n % 365) DAY
         FROM (SELECT $base + a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d AS n
               FROM bench_digits a, bench_digits b, bench_digits c, bench_digits e, bench_digits f, bench_digits g) t"
}
# Customer totals, import counts and the per-day summary, from the orders.
derive() {
    local n=$1
    sql "UPDATE customers c JOIN (SELECT customer_id, SUM(total) s, COUNT(*) k FROM orders
           WHERE status = 'completed' GROUP BY customer_id) t ON t.customer_id = c.id
         SET c.total_spent = t.s, c.orders_count = t.k;
         UPDATE imports SET rows_total = $n, rows_enqueued = $n, enqueued_through_line = $n WHERE id = $IMPORT"
    if [[ $HAS_SUMMARY == 1 ]]; then
        sql "DELETE FROM kpi_days;
             INSERT INTO kpi_days (kpi_date, order_count, revenue_cents)
             SELECT kpi_date, COUNT(*), CAST(SUM(total) * 100 AS SIGNED) FROM orders
             WHERE status = 'completed' AND kpi_date IS NOT NULL GROUP BY kpi_date;
             DELETE FROM import_progress;
             INSERT INTO import_progress (import_id, status, reason, shard, orders, revenue_cents, last_terminal_at)
             SELECT import_id, CAST(status AS CHAR), COALESCE(failure_reason, ''), 0, COUNT(*),
                    IF(status = 'completed', CAST(SUM(total) * 100 AS SIGNED), 0), MAX(updated_at)
             FROM orders WHERE import_id IS NOT NULL GROUP BY import_id, status, failure_reason"
    fi
}

# Seconds (3 decimals) one command takes; its output goes to $DIR/scale-last.txt.
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$DIR/scale-last.txt" 2>&1 || true
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}
old_kpi_sql() {
    local w="FROM orders WHERE status = 'completed'"
    sql "SELECT COUNT(*), SUM(total) $w AND kpi_date BETWEEN '$DAY' AND '$DAY';
         SELECT COUNT(*), SUM(total) $w AND kpi_date BETWEEN '2026-06-01' AND '2026-06-30';
         SELECT COUNT(*), SUM(total) $w AND kpi_date BETWEEN '2026-01-01' AND '2026-12-31';
         SELECT COUNT(*), SUM(total) $w AND kpi_date IS NOT NULL" >/dev/null
}
old_reconcile_sql() {
    sql "SELECT kpi_date, COUNT(*), SUM(total) FROM orders WHERE status = 'completed'
         AND kpi_date IS NOT NULL GROUP BY kpi_date" >/dev/null
}
old_import_sql() {
    sql "SELECT CAST(o.status AS CHAR), o.failure_reason, COUNT(*), MAX(o.updated_at)
         FROM imports i JOIN orders o ON o.import_id = i.id WHERE i.id = $IMPORT
         GROUP BY o.status, o.failure_reason" >/dev/null
}
api() { curl -sf -o /dev/null "http://127.0.0.1:$PORT$1"; }

"$P" serve --addr "127.0.0.1:$PORT" >"$DIR/scale-serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

ROWS=("kpis generate --date $DAY" "reconcile --fix (every KPI hash)" "leaderboard update"
    "reconcile" "status IMPORT" "import --wait poll" "GET /api/orders/stats"
    "GET /api/imports/{id}" "(old SQL) kpis generate's 4 scans" "(old SQL) reconcile's scan"
    "(old SQL) an import's progress (a poll)")
declare -A CELL
LOADED=0
for size in $SIZES; do
    t0=$(date +%s)
    while ((LOADED < size)); do
        # A million orders take about 0.3 GB: stop well before the disk fills.
        avail_kb=$(df -Pk /var/lib/mysql 2>/dev/null | awk 'NR == 2 { print $4 }')
        if [[ -n $avail_kb ]] && ((avail_kb < ${BENCH_MIN_FREE_GB:-6} * 1024 * 1024)); then
            echo "bench-scale: under ${BENCH_MIN_FREE_GB:-6} GB free on the database's disk; stopping at $LOADED orders" >&2
            break 2
        fi
        load_million "$LOADED"
        LOADED=$((LOADED + 1000000))
    done
    derive "$LOADED"
    echo "bench-scale: $LOADED orders loaded in $(($(date +%s) - t0)) s" >&2
    clear_keys
    "$P" kpis generate --date $DAY >/dev/null 2>&1 || true # warm-up
    CELL["0,$size"]=$(timed "$P" kpis generate --date $DAY)
    clear_keys
    CELL["1,$size"]=$(timed "$P" reconcile --fix)
    CELL["2,$size"]=$(timed "$P" leaderboard update)
    CELL["3,$size"]=$(timed "$P" reconcile)
    "$P" status "$IMPORT" >/dev/null 2>&1 || true # warm-up
    CELL["4,$size"]=$(timed "$P" status "$IMPORT")
    CELL["5,$size"]=$(timed "$P" status "$IMPORT" --json)
    api /api/orders/stats || true
    CELL["6,$size"]=$(timed api /api/orders/stats)
    CELL["7,$size"]=$(timed api "/api/imports/$IMPORT")
    CELL["8,$size"]=$(timed old_kpi_sql)
    CELL["9,$size"]=$(timed old_reconcile_sql)
    CELL["10,$size"]=$(timed old_import_sql)
done

{
    printf '%-38s' "seconds (wall clock)"
    for size in $SIZES; do printf '%12s' "$((size / 1000000)) M"; done
    echo
    for i in "${!ROWS[@]}"; do
        printf '%-38s' "${ROWS[$i]}"
        for size in $SIZES; do printf '%12s' "${CELL[$i,$size]}"; done
        echo
    done
} | tee "$DIR/scale.txt"
