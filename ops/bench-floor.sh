#!/usr/bin/env bash
#
# ops/bench-floor.sh - the SQL floor: the row work oms does per order, as hand-written
# batched SQL sent by N parallel `mariadb` clients, with no queue, no Redis, no Rust.
# Each client is a process with its own connection (PyMySQL, in a venv under target/);
# a transaction that meets a deadlock or lock wait timeout is rolled back and run again, as oms
# does. The SQL is built before the clock starts.
# What oms's end-to-end figure (ops/bench-consumer.sh) is compared with: the ratio
# oms / floor says what the queue, the retries and the read models cost over the bare
# database work, like for like when N = consumers x --concurrency.
#
# Per batch of BATCH orders (the same file bench-consumer.sh imports: same seeds):
#   upsert the customers (on its own, as oms does); in a reserve transaction insert the
#   orders (`reserved`, with their KPI day and total), lock the products in sku order and
#   take the stock, insert the items at the catalog's price; then in a settle
#   transaction: payment decided (80 % approved, by a hash of the identity), the approved
#   orders completed and the declined failed with their stock given back, the approved
#   customers' totals grown, the day's figures added to `kpi_days`.
# Not done (oms does it): the outbox row and the read-model apply, import counters,
# duplicate checks, the stream.
#
# Usage: bash ops/bench-floor.sh [ORDERS] [CLIENTS...]   (defaults: 200000, 1 8)
#   e.g. `bash ops/bench-floor.sh 200000 1 8` for the 1-client and 8-client floors
#   (2 consumers x --concurrency 4 = 8). BATCH=500 orders per transaction.
# Database oms_bench_floor (dropped at the end); producer from BENCH_BIN_DIR or a release
# build (for `migrate` and `generate` only).
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${1:-200000}
shift || true
CLIENTS=("${@:-1}")
[[ $# -eq 0 ]] && CLIENTS=(1 8)
BATCH=${BATCH:-500}
DIR=${OMS_BENCH_DIR:-target/bench}
mkdir -p "$DIR/floor"
NAME=oms_bench_floor
export DATABASE_URL=mysql://root@127.0.0.1:3306/$NAME RUST_LOG=warn
bash ops/services.sh mysql >/dev/null
if [[ -n ${BENCH_BIN_DIR:-} ]]; then P=$BENCH_BIN_DIR/producer; else
    cargo build --release --bin producer -q
    P=target/release/producer
fi
sql() { mariadb -h127.0.0.1 -uroot -N -B "$@"; }
FILE="$DIR/e2e-orders-$ORDERS.csv"
[[ -s $FILE ]] || "$P" generate orders --count "$ORDERS" --products 1000 --seed 2 --end-date 2026-11-01 >"$FILE"
"$P" generate products --count 1000 --stock 1000000 --seed 1 >"$DIR/e2e-products.csv"
trap 'sql -e "DROP DATABASE IF EXISTS $NAME"' EXIT

VENV=target/floor-venv
[[ -x $VENV/bin/python ]] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q pymysql; }

for n in "${CLIENTS[@]}"; do
    sql -e "DROP DATABASE IF EXISTS $NAME"
    "$P" migrate >/dev/null
    "$P" products import "$DIR/e2e-products.csv" >/dev/null
    "$VENV/bin/python" - "$FILE" "$n" "$BATCH" "$NAME" <<'PY'
import csv, hashlib, json, multiprocessing as mp, sys, time
import pymysql

path, clients, batch, db = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def q(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"

def approved(identity):
    # 80 % approved, decided by the identity (a stand-in for oms's payment rule).
    return hashlib.sha256(identity.encode()).digest()[0] < 205

SETUP = [
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "CREATE TEMPORARY TABLE b_orders (identity VARCHAR(128) CHARACTER SET utf8mb4 COLLATE "
    "utf8mb4_bin PRIMARY KEY, email VARCHAR(254) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, name VARCHAR(255), kpi_date DATE, paid BOOLEAN)",
    "CREATE TEMPORARY TABLE b_items (identity VARCHAR(128) CHARACTER SET utf8mb4 COLLATE "
    "utf8mb4_bin, sku VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, quantity INT UNSIGNED)",
]
# The transaction: every statement works on the whole batch (b_orders, b_items).
# Two transactions per batch, as oms runs them. Reserve: the orders and their items (ids
# read back), the products locked in sku order, the stock taken. Settle: statuses, the
# customers' totals, the declined orders' stock given back (products last, as in oms:
# reserve holds customers' shared locks while it waits for products), the day's figures.
LOCK_AND_TAKE = [
    "SELECT p.id FROM products p WHERE p.sku IN (SELECT sku FROM b_items) ORDER BY p.sku FOR UPDATE",
    """UPDATE products p JOIN (SELECT sku, SUM(quantity) q FROM b_items GROUP BY sku) t
       ON t.sku = p.sku SET p.stock_quantity = p.stock_quantity - t.q""",
]
SETTLE = [
    """UPDATE orders o JOIN b_orders b ON b.identity = o.identity
       SET o.status = IF(b.paid, 'completed', 'failed'),
           o.failure_reason = IF(b.paid, NULL, 'payment_declined')""",
    # Customers in email order, the order of the upsert (the derived table drives the join).
    """UPDATE (SELECT b.email, SUM(o.total) s, COUNT(*) n FROM b_orders b
       JOIN orders o ON o.identity = b.identity WHERE b.paid GROUP BY b.email
       ORDER BY b.email LIMIT 1000000) t STRAIGHT_JOIN customers c ON c.email = t.email
       SET c.total_spent = c.total_spent + t.s, c.orders_count = c.orders_count + t.n""",
    """UPDATE products p JOIN (SELECT i.sku, SUM(i.quantity) q FROM b_items i
       JOIN b_orders b ON b.identity = i.identity WHERE NOT b.paid GROUP BY i.sku) t
       ON t.sku = p.sku SET p.stock_quantity = p.stock_quantity + t.q""",
    """INSERT INTO kpi_days (kpi_date, order_count, revenue_cents)
       SELECT o.kpi_date, COUNT(*), CAST(SUM(o.total) * 100 AS SIGNED) FROM b_orders b
       JOIN orders o ON o.identity = b.identity WHERE b.paid GROUP BY o.kpi_date
       ORDER BY o.kpi_date
       ON DUPLICATE KEY UPDATE order_count = order_count + VALUES(order_count),
                               revenue_cents = revenue_cents + VALUES(revenue_cents)""",
]

def batches(client, catalog):
    """This client's batches, as (statements before the transactions, emails, orders, items)."""
    rows = list(csv.reader(open(path, encoding="utf-8")))[1:]
    out = []
    for n, start in enumerate(range(0, len(rows), batch)):
        if n % clients != client:
            continue
        staged, staged_items, orders, items, customers = [], [], [], [], {}
        for line, (name, email, products, day) in enumerate(rows[start:start + batch], start + 2):
            identity = f"floor-{line}"
            customers.setdefault(email, name)
            total = 0
            for it in json.loads(products):
                product_id, cents = catalog[it["sku"]]
                quantity = int(it["quantity"])
                total += cents * quantity
                items.append((identity, product_id, it["sku"], quantity, cents))
                staged_items.append(f"({q(identity)},{q(it['sku'])},{quantity})")
            orders.append((identity, email, total, day[:10]))
            staged.append(f"({q(identity)},{q(email)},{q(name)},{q(day[:10])},{int(approved(identity))})")
        before = ["DELETE FROM b_orders", "DELETE FROM b_items",
                  "INSERT INTO b_orders VALUES " + ",".join(staged),
                  "INSERT INTO b_items VALUES " + ",".join(staged_items),
                  "INSERT INTO customers (email, name) VALUES "
                  + ",".join(f"({q(e)},{q(n)})" for e, n in sorted(customers.items()))
                  + " ON DUPLICATE KEY UPDATE name = name"]
        out.append((before, sorted(customers), orders, items))
    return out

def cents(c):
    return f"{c // 100}.{c % 100:02}"

def client(index, ready, go, retries):
    conn = pymysql.connect(host="127.0.0.1", user="root", database=db, autocommit=True,
                           charset="utf8mb4")
    cur = conn.cursor()
    for s in SETUP:
        cur.execute(s)
    cur.execute("SELECT sku, id, CAST(price * 100 AS SIGNED) FROM products")
    catalog = {sku: (pid, int(c)) for sku, pid, c in cur.fetchall()}
    work = batches(index, catalog)
    ready.wait()
    go.wait()
    for before, emails, orders, items in work:
        def reserve():
            for s in before:
                cur.execute(s)
            cur.execute("SELECT email, id FROM customers WHERE email IN ("
                        + ",".join(q(e) for e in emails) + ")")
            customer = dict(cur.fetchall())
            cur.execute("START TRANSACTION")
            cur.execute("INSERT INTO orders (identity, customer_id, status, total, order_date, "
                        "kpi_date) VALUES " + ",".join(
                            f"({q(i)},{customer[e]},'reserved',{cents(t)},{q(d)},{q(d)})"
                            # by email: the foreign key's shared locks in the order
                            # settle takes the customers in
                            for i, e, t, d in sorted(orders, key=lambda o: o[1])))
            cur.execute("SELECT identity, id FROM orders WHERE identity IN ("
                        + ",".join(q(o[0]) for o in orders) + ")")
            order_id = dict(cur.fetchall())
            # Products locked before the items' foreign keys take shared locks on them
            # (in item order), as oms does.
            for s in LOCK_AND_TAKE:
                cur.execute(s)
            cur.execute("INSERT INTO order_items (order_id, product_id, sku, quantity, unit_price) "
                        "VALUES " + ",".join(f"({order_id[i]},{p},{q(s)},{n},{cents(c)})"
                                             for i, p, s, n, c in items))
            cur.execute("COMMIT")

        def settle():
            cur.execute("START TRANSACTION")
            for s in SETTLE:
                cur.execute(s)
            cur.execute("COMMIT")

        for step in (reserve, settle):
            retrying(cur, retries, step)

def retrying(cur, retries, step):
    """Runs `step` until it commits; a deadlock or lock wait timeout rolls back and counts."""
    while True:
        try:
            return step()
        except pymysql.err.OperationalError as e:
            if e.args[0] not in (1213, 1205):
                raise
            cur.execute("ROLLBACK")
            with retries.get_lock():
                retries.value += 1

if __name__ == "__main__":
    ready, go = mp.Barrier(clients + 1), mp.Event()
    retries = mp.Value("i", 0)
    procs = [mp.Process(target=client, args=(i, ready, go, retries)) for i in range(clients)]
    for p in procs:
        p.start()
    ready.wait()
    start = time.monotonic()
    go.set()
    for p in procs:
        p.join()
    wall = time.monotonic() - start
    if any(p.exitcode for p in procs):
        sys.exit("floor: a client failed")
    conn = pymysql.connect(host="127.0.0.1", user="root", database=db)
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM orders WHERE status IN ('completed', 'failed')")
    done = cur.fetchone()[0]
    print(f"floor, {clients} client(s): {done:,} orders in {wall:.2f} s = {done / wall:,.0f} orders/s "
          f"({retries.value} batches retried after a deadlock or lock wait)")
PY
done
