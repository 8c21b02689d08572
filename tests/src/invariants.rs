//! The invariant checker: what must hold after any run, whatever faults were injected.
//!
//! - every order is terminal (`completed` or `failed` with a reason);
//! - per sku: initial stock − Σ quantities of completed orders = current stock ≥ 0;
//! - customer totals and counts = Σ of their completed orders;
//! - order totals = Σ of their items;
//! - identities are unique;
//! - Redis KPI hashes and the leaderboard equal the MySQL aggregates.

use std::collections::BTreeMap;

use oms_shared::kpi::{kpi_keys_for_day, KpiFigures};
use oms_shared::money::Cents;

use crate::TestEnv;

/// Checks every invariant; returns the list of violations (empty when all hold).
pub async fn violations(env: &TestEnv, initial_stock: &BTreeMap<String, i64>) -> Vec<String> {
    let mut v = Vec::new();
    let db = &env.db;
    let q = |sql: &'static str| sqlx::query_as::<_, (String, i64, i64)>(sql);

    let not_terminal = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status NOT IN ('completed','failed')")
        .await;
    if not_terminal > 0 {
        v.push(format!("{not_terminal} orders are not terminal"));
    }
    let no_reason = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'failed' AND failure_reason IS NULL")
        .await;
    if no_reason > 0 {
        v.push(format!("{no_reason} failed orders have no reason"));
    }

    let stock: Vec<(String, i64, i64)> = q("SELECT CAST(p.sku AS CHAR), CAST(p.stock_quantity AS SIGNED), \
         CAST(COALESCE((SELECT SUM(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id \
         WHERE i.product_id = p.id AND o.status = 'completed'), 0) AS SIGNED) FROM products p")
    .fetch_all(db)
    .await
    .expect("stock query");
    for (sku, current, sold) in stock {
        let initial = initial_stock.get(&sku).copied().unwrap_or(current + sold);
        if current < 0 || initial - sold != current {
            v.push(format!(
                "sku {sku}: initial {initial} - sold {sold} != current {current}"
            ));
        }
    }

    let customers: Vec<(String, i64, i64)> = q("SELECT c.email, \
         CAST(c.total_spent * 100 AS SIGNED) - CAST(COALESCE((SELECT SUM(o.total) FROM orders o \
           WHERE o.customer_id = c.id AND o.status = 'completed'), 0) * 100 AS SIGNED), \
         CAST(c.orders_count AS SIGNED) - (SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id AND o.status = 'completed') \
         FROM customers c")
    .fetch_all(db)
    .await
    .expect("customer query");
    for (email, spent_diff, count_diff) in customers {
        if spent_diff != 0 || count_diff != 0 {
            v.push(format!(
                "customer {email}: totals off by {spent_diff} cents and {count_diff} orders"
            ));
        }
    }

    let bad_totals = env
        .scalar(
            "SELECT COUNT(*) FROM orders o WHERE o.total <> (SELECT COALESCE(SUM(i.quantity * i.unit_price), 0) \
             FROM order_items i WHERE i.order_id = o.id)",
        )
        .await;
    if bad_totals > 0 {
        v.push(format!(
            "{bad_totals} orders whose total is not the sum of their items"
        ));
    }
    let dup = env
        .scalar("SELECT COUNT(*) - COUNT(DISTINCT identity) FROM orders")
        .await;
    if dup != 0 {
        v.push(format!("{dup} duplicate identities"));
    }

    v.extend(read_model_violations(env).await);
    v
}

/// Redis KPIs and leaderboard against MySQL.
pub async fn read_model_violations(env: &TestEnv) -> Vec<String> {
    let mut v = Vec::new();
    let days: Vec<(chrono::NaiveDate, i64, i64)> = sqlx::query_as(
        "SELECT kpi_date, COUNT(*), CAST(SUM(total) * 100 AS SIGNED) FROM orders \
         WHERE status = 'completed' GROUP BY kpi_date",
    )
    .fetch_all(&env.db)
    .await
    .expect("kpi query");
    let mut expected: BTreeMap<String, KpiFigures> = BTreeMap::new();
    for (day, count, cents) in days {
        for key in kpi_keys_for_day(&env.keys, day) {
            let f = expected.entry(key).or_default();
            f.order_count += count;
            f.revenue += Cents(cents);
        }
    }
    let mut conn = env.redis_conn().await;
    for (key, want) in &expected {
        let got = oms_shared::read_model::read_kpis(&mut *conn, key)
            .await
            .expect("read kpis");
        if got.as_ref() != Some(want) {
            v.push(format!("{key}: redis {got:?} != mysql {want:?}"));
        }
    }
    let board: BTreeMap<String, Cents> =
        oms_shared::read_model::read_leaderboard(&mut *conn, &env.keys, 0)
            .await
            .expect("leaderboard")
            .into_iter()
            .collect();
    let spent: Vec<(String, i64)> = sqlx::query_as(
        "SELECT email, CAST(total_spent * 100 AS SIGNED) FROM customers WHERE total_spent > 0",
    )
    .fetch_all(&env.db)
    .await
    .expect("customers");
    let spent: BTreeMap<String, Cents> = spent.into_iter().map(|(e, c)| (e, Cents(c))).collect();
    if board != spent {
        v.push(format!(
            "leaderboard differs from customers.total_spent ({} vs {} members)",
            board.len(),
            spent.len()
        ));
    }
    v
}

/// Current stock per sku, to pass as the initial stock later.
pub async fn stock_snapshot(env: &TestEnv) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT CAST(sku AS CHAR), CAST(stock_quantity AS SIGNED) FROM products")
            .fetch_all(&env.db)
            .await
            .expect("stock snapshot");
    rows.into_iter().collect()
}
