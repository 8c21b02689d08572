#!/usr/bin/env bash
#
# ops/bench-archive.sh - times `producer archive` of one month on a database of SIZE orders
# (issue 22, retention).
#
# Loads orders with the bulk SQL of ops/bench-scale.sh's fast path (one import, the 365
# days of 2026, 1 in 20 failed, 100,000 customers whose totals match, `kpi_days` and
# `import_progress` filled from the orders) plus two items per order (unlike bench-scale:
# archiving moves them), then times, each once:
#   archive --before 2026-02-01 --to FILE.csv.zst   (January)
#   archive --before 2026-03-01 --delete            (February)
#   reconcile --deep                                (after both: must exit 0)
# and prints the orders moved, the file's size and the wall clock of each.
#
# Usage: bash ops/bench-archive.sh [SIZE]   (default 1000000)
# BENCH_BIN_DIR: take `producer` from there instead of building this tree in release
# mode. BATCH (default 1000): --batch-size. Database and prefix BENCH_NAME (default
# oms_bench_archive), dropped at the end unless BENCH_KEEP=1.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE=${1:-1000000}
BATCH=${BATCH:-1000}
DIR=${OMS_BENCH_DIR:-target/bench}
mkdir -p "$DIR"
NAME=${BENCH_NAME:-oms_bench_archive}
[[ $NAME =~ ^[a-z0-9_]+$ ]] || { echo "bench: BENCH_NAME must be [a-z0-9_]+" >&2; exit 2; }
export DATABASE_URL=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/$NAME}
export OMS_PREFIX=$NAME:
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export RUST_LOG=${RUST_LOG:-warn}
CUSTOMERS=100000

if [[ -n ${BENCH_BIN_DIR:-} ]]; then
    P=$BENCH_BIN_DIR/producer
else
    cargo build --release --bin producer -q
    P=target/release/producer
fi
sql() { mariadb -h127.0.0.1 -uroot -N -B "$NAME" -e "$1"; }
FILE=$DIR/archive-2026-01.csv.zst
cleanup() {
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then
        mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $NAME" || true
        redis-cli -u "$REDIS_URL" --scan --pattern "${OMS_PREFIX}*" |
            while read -r key; do redis-cli -u "$REDIS_URL" DEL "$key" >/dev/null; done || true
    fi
}
trap cleanup EXIT

mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $NAME"
rm -f "$FILE" "$FILE.partial"
"$P" migrate >/dev/null
t0=$(date +%s)
sql "CREATE TABLE bench_digits (d INT NOT NULL PRIMARY KEY);
     INSERT INTO bench_digits VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9);
     INSERT INTO products (sku, name, price, stock_quantity) VALUES ('SKU-1', 'Bench', 1.00, 1000000), ('SKU-2', 'Bench 2', 0.50, 1000000);
     INSERT INTO customers (email, name)
       SELECT CONCAT('c', a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d, '@bench.example'), 'Bench'
       FROM bench_digits a, bench_digits b, bench_digits c, bench_digits e, bench_digits f;
     INSERT INTO imports (file_name, file_sha256, status, finished_at) VALUES ('bench.csv', REPEAT('0', 64), 'done', NOW(3));"
IMPORT=$(sql "SELECT MAX(id) FROM imports")
FIRST_CUSTOMER=$(sql "SELECT MIN(id) FROM customers")
for ((base = 0; base < SIZE; base += 1000000)); do
    # ops/bench-scale.sh's load_million, then two items per order (totals: 1.00 × q + 0.50 × 2q).
    sql "INSERT INTO orders (identity, import_id, line, customer_id, status, failure_reason, total, order_date, kpi_date)
         SELECT CONCAT('B', n), $IMPORT, n + 1, $FIRST_CUSTOMER + n % $CUSTOMERS,
                IF(n % 20 = 0, 'failed', 'completed'), IF(n % 20 = 0, 'payment_declined', NULL),
                2 * (1 + n % 5), TIMESTAMP('2026-01-01') + INTERVAL (n % 365) DAY + INTERVAL (n % 86400) SECOND,
                DATE('2026-01-01') + INTERVAL (n % 365) DAY
         FROM (SELECT $base + a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d AS n
               FROM bench_digits a, bench_digits b, bench_digits c, bench_digits e, bench_digits f, bench_digits g) t
         WHERE n < $SIZE;
         INSERT INTO order_items (order_id, product_id, sku, quantity, unit_price)
         SELECT o.id, p.id, p.sku, IF(p.sku = 'SKU-1', 1, 2) * (1 + (o.line - 1) % 5), p.price
         FROM orders o JOIN products p
         WHERE o.line > $base AND o.line <= $base + 1000000"
done
sql "UPDATE customers c JOIN (SELECT customer_id, SUM(total) s, COUNT(*) k FROM orders
       WHERE status = 'completed' GROUP BY customer_id) t ON t.customer_id = c.id
     SET c.total_spent = t.s, c.orders_count = t.k;
     UPDATE imports SET rows_total = $SIZE, rows_enqueued = $SIZE, enqueued_through_line = $SIZE WHERE id = $IMPORT;
     INSERT INTO kpi_days (kpi_date, order_count, revenue_cents)
     SELECT kpi_date, COUNT(*), CAST(SUM(total) * 100 AS SIGNED) FROM orders
     WHERE status = 'completed' GROUP BY kpi_date;
     INSERT INTO import_progress (import_id, status, reason, shard, orders, revenue_cents, last_terminal_at)
     SELECT import_id, CAST(status AS CHAR), COALESCE(failure_reason, ''), 0, COUNT(*),
            IF(status = 'completed', CAST(SUM(total) * 100 AS SIGNED), 0), MAX(updated_at)
     FROM orders WHERE import_id IS NOT NULL GROUP BY import_id, status, failure_reason"
echo "bench-archive: $SIZE orders and $(sql "SELECT COUNT(*) FROM order_items") items loaded in $(($(date +%s) - t0)) s" >&2
"$P" reconcile --fix >/dev/null

timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$DIR/archive-last.txt" 2>&1
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
to=$(timed "$P" --json archive --before 2026-02-01 --to "$FILE" --batch-size "$BATCH")
to_orders=$(grep -o '"orders": [0-9]*' "$DIR/archive-last.txt" | grep -o '[0-9]*$')
del=$(timed "$P" --json archive --before 2026-03-01 --delete --batch-size "$BATCH")
del_orders=$(grep -o '"orders": [0-9]*' "$DIR/archive-last.txt" | grep -o '[0-9]*$')
deep=$(timed "$P" reconcile --deep)
{
    echo "orders loaded: $SIZE; --batch-size $BATCH"
    echo "archive --before 2026-02-01 --to FILE: $to_orders orders in $to s; file $(stat -c %s "$FILE") bytes ($(zstdcat "$FILE" | wc -c) bytes of CSV)"
    echo "archive --before 2026-03-01 --delete:  $del_orders orders in $del s"
    echo "reconcile --deep afterwards: $deep s, $(tail -1 "$DIR/archive-last.txt")"
} | tee "$DIR/archive.txt"
