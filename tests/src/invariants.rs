//! The invariant checker: what must hold after any run, whatever faults were injected.
//!
//! - every order is terminal (`completed`, or `failed` with a reason), or its row is in
//!   the dead-letter stream with the last error;
//! - per sku: initial stock − Σ quantities of completed orders = current stock ≥ 0;
//! - customer totals and counts = Σ of their completed orders;
//! - order totals = Σ of their items;
//! - identities are unique (`orders` and `archived_orders` together), and no identity is
//!   both processed and dead-lettered;
//! - Redis KPI hashes and the leaderboard equal the MySQL aggregates, and
//!   `producer reconcile` finds no drift (in process: [`reconcile_violations`]; the binary's
//!   exit code: [`reconcile_exit_code`]).
//!
//! [`violations`] checks a state; a test first waits until that state is final: with
//! [`wait_settled`] (orders terminal or dead-lettered, nothing pending, nothing unread,
//! and the read models final: [`read_models_final`]) or `TestEnv::wait_until_processed`
//! (the same for orders that all end in MySQL). Orders being terminal is not enough: an
//! outbox row committed by a consumer that was killed before applying it reaches Redis
//! later (a sweeper, or a consumer as it stops). Then the fault tests count what was lost
//! or doubled against the identities they enqueued with [`account`].
//!
//! Orders `producer archive` moved out of `orders` count everywhere as the terminal
//! orders they were: their identity, status, total, customer and KPI day from
//! `archived_orders`, the units their completed items took from `archived_product_sales`.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use oms_shared::kpi::{kpi_keys_for_day, KpiFigures};
use oms_shared::money::Cents;
use oms_shared::redis::queue::DeadLetter;

use crate::TestEnv;

/// Checks every invariant; returns the list of violations (empty when all hold).
pub async fn violations(env: &TestEnv, initial_stock: &BTreeMap<String, i64>) -> Vec<String> {
    let mut v = Vec::new();
    let db = &env.db;
    let q = |sql: &'static str| sqlx::query_as::<_, (String, i64, i64)>(sql);

    let dead = match dead_letters(env).await {
        Ok(dead) => dead,
        Err(e) => {
            v.push(format!("dead letters unreadable: {e}"));
            Vec::new()
        }
    };
    for letter in dead.iter().filter(|d| d.error.trim().is_empty()) {
        v.push(format!(
            "dead letter {} (identity {:?}) has no error",
            letter.id, letter.identity
        ));
    }
    let dead_identities: BTreeSet<&str> = dead.iter().map(|d| d.identity.as_str()).collect();
    let not_terminal: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(identity AS CHAR), CAST(status AS CHAR) FROM orders \
         WHERE status NOT IN ('completed','failed')",
    )
    .fetch_all(db)
    .await
    .expect("non-terminal orders");
    let stuck: Vec<&(String, String)> = not_terminal
        .iter()
        .filter(|(identity, _)| !dead_identities.contains(identity.as_str()))
        .collect();
    if !stuck.is_empty() {
        v.push(format!(
            "{} orders are neither terminal nor dead-lettered, e.g. {:?}",
            stuck.len(),
            &stuck[..stuck.len().min(5)]
        ));
    }
    let processed_and_dead = processed_identities(env)
        .await
        .iter()
        .filter(|i| dead_identities.contains(i.as_str()))
        .count();
    if processed_and_dead > 0 {
        v.push(format!(
            "{processed_and_dead} identities are both terminal in MySQL and dead-lettered"
        ));
    }
    let no_reason = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'failed' AND failure_reason IS NULL")
        .await;
    if no_reason > 0 {
        v.push(format!("{no_reason} failed orders have no reason"));
    }

    let stock: Vec<(String, i64, i64)> = q("SELECT CAST(p.sku AS CHAR), CAST(p.stock_quantity AS SIGNED), \
         CAST(COALESCE((SELECT SUM(i.quantity) FROM order_items i JOIN orders o ON o.id = i.order_id \
         WHERE i.product_id = p.id AND o.status = 'completed'), 0) \
         + COALESCE((SELECT SUM(s.units) FROM archived_product_sales s WHERE s.product_id = p.id), 0) \
         AS SIGNED) FROM products p")
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

    let customers: Vec<(String, i64, i64)> = q("SELECT CAST(c.email AS CHAR), \
         CAST(c.total_spent * 100 AS SIGNED) - CAST(COALESCE((SELECT SUM(o.total) FROM orders o \
           WHERE o.customer_id = c.id AND o.status = 'completed'), 0) * 100 AS SIGNED) \
         - CAST(COALESCE((SELECT SUM(a.total) FROM archived_orders a \
           WHERE a.customer_id = c.id AND a.status = 'completed'), 0) * 100 AS SIGNED), \
         CAST(c.orders_count AS SIGNED) - (SELECT COUNT(*) FROM orders o WHERE o.customer_id = c.id AND o.status = 'completed') \
         - (SELECT COUNT(*) FROM archived_orders a WHERE a.customer_id = c.id AND a.status = 'completed') \
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
    let archived_twice = env
        .scalar("SELECT COUNT(*) FROM orders o JOIN archived_orders a ON a.identity = o.identity")
        .await;
    if archived_twice != 0 {
        v.push(format!(
            "{archived_twice} identities are both in orders and archived_orders"
        ));
    }
    let archived_not_terminal = env
        .scalar("SELECT COUNT(*) FROM archived_orders WHERE status NOT IN ('completed','failed')")
        .await;
    if archived_not_terminal != 0 {
        v.push(format!(
            "{archived_not_terminal} archived orders were not terminal"
        ));
    }

    v.extend(read_model_violations(env).await);
    v.extend(reconcile_violations(env).await);
    v
}

/// `producer reconcile` (the library function behind the command): its drift, if any.
pub async fn reconcile_violations(env: &TestEnv) -> Vec<String> {
    match oms_reports::reconcile::reconcile(&env.config, false).await {
        Ok(report) if report.clean => Vec::new(),
        Ok(report) => vec![format!(
            "reconcile: {} differences ({} outbox rows pending), e.g. {:?}",
            report.drift.len(),
            report.pending_outbox_rows,
            &report.drift[..report.drift.len().min(5)]
        )],
        Err(e) => vec![format!("reconcile failed: {e:#}")],
    }
}

/// Runs the `producer reconcile` binary against `env`; returns its exit code and output.
pub fn reconcile_exit_code(env: &TestEnv) -> (i32, String) {
    producer_exit_code(env, &["reconcile"])
}

/// Runs the `producer` binary with `args` against `env`, as an operator would; returns
/// its exit code and output (stdout, then stderr).
pub fn producer_exit_code(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(crate::binary("producer"))
        .args(args)
        .envs(env.env_vars())
        .output()
        .expect("run producer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Every dead letter of `env`'s prefix.
pub async fn dead_letters(env: &TestEnv) -> oms_shared::Result<Vec<DeadLetter>> {
    let mut conn = env.redis.get().await?;
    oms_shared::redis::queue::all_dead_letters(&mut *conn, &env.keys).await
}

/// Identities of terminal orders, archived ones included.
async fn processed_identities(env: &TestEnv) -> Vec<String> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT CAST(identity AS CHAR) FROM orders WHERE status IN ('completed','failed') \
         UNION ALL SELECT CAST(identity AS CHAR) FROM archived_orders",
    )
    .fetch_all(&env.db)
    .await
    .expect("terminal identities");
    rows.into_iter().map(|(i,)| i).collect()
}

/// How the orders a test enqueued ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    pub expected: usize,
    pub completed: i64,
    pub failed: i64,
    /// Expected identities that are in the dead-letter stream (and not terminal).
    pub dead_lettered: usize,
    /// Expected identities neither terminal nor dead-lettered.
    pub lost: usize,
    /// Effects applied more than once: duplicate order rows or dead letters, identities
    /// both processed and dead-lettered, and the excess of customers' order counts, Redis'
    /// total order count and sold stock over the completed orders.
    pub doubled: i64,
    /// Orders whose identity the test never enqueued.
    pub unexpected: usize,
}

/// Accounts for every identity in `expected` (see [`Accounting`]).
pub async fn account(
    env: &TestEnv,
    expected: &BTreeSet<String>,
    initial_stock: &BTreeMap<String, i64>,
) -> Accounting {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(identity AS CHAR), CAST(status AS CHAR) FROM orders \
         UNION ALL SELECT CAST(identity AS CHAR), status FROM archived_orders",
    )
    .fetch_all(&env.db)
    .await
    .expect("orders");
    let dead = dead_letters(env).await.expect("dead letters");
    let mut a = Accounting {
        expected: expected.len(),
        ..Accounting::default()
    };
    let mut terminal: BTreeSet<&str> = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (identity, status) in &rows {
        if !seen.insert(identity.as_str()) {
            a.doubled += 1;
        }
        if !expected.contains(identity) {
            a.unexpected += 1;
        }
        match status.as_str() {
            "completed" => a.completed += 1,
            "failed" => a.failed += 1,
            _ => continue,
        }
        terminal.insert(identity.as_str());
    }
    let mut dead_seen: BTreeSet<&str> = BTreeSet::new();
    for letter in &dead {
        if !dead_seen.insert(letter.identity.as_str()) {
            a.doubled += 1;
        }
        if terminal.contains(letter.identity.as_str()) {
            a.doubled += 1;
        }
    }
    for identity in expected {
        if terminal.contains(identity.as_str()) {
            continue;
        }
        if dead_seen.contains(identity.as_str()) {
            a.dead_lettered += 1;
        } else {
            a.lost += 1;
        }
    }
    let counted = env
        .scalar("SELECT COALESCE(SUM(orders_count), 0) FROM customers")
        .await;
    a.doubled += (counted - a.completed).max(0);
    let mut conn = env.redis_conn().await;
    let total = oms_shared::redis::read_model::read_kpis(&mut *conn, &env.keys.kpi_total())
        .await
        .expect("kpi total")
        .unwrap_or_default();
    a.doubled += (total.order_count - a.completed).max(0);
    let now = stock_snapshot(env).await;
    let taken: i64 = initial_stock
        .iter()
        .map(|(sku, initial)| initial - now.get(sku).copied().unwrap_or(*initial))
        .sum();
    let sold = env
        .scalar(
            "SELECT COALESCE(SUM(i.quantity), 0) FROM order_items i \
             JOIN orders o ON o.id = i.order_id WHERE o.status = 'completed'",
        )
        .await
        + env
            .scalar("SELECT COALESCE(SUM(units), 0) FROM archived_product_sales")
            .await;
    a.doubled += (taken - sold).max(0);
    a
}

/// Whether the read models are final for what MySQL has committed so far: the outbox is
/// empty, and Redis's record of applied outbox rows covers every id up to the sequence
/// (`applied_through`, plus the set of ids above it). Read here with its own queries, not
/// through the code it checks. `None` while a server does not answer.
pub async fn read_models_final(env: &TestEnv) -> Option<bool> {
    let (outbox, last_id): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM read_model_outbox), \
         CAST((SELECT last_id FROM read_model_sequence WHERE id = 1) AS SIGNED)",
    )
    .fetch_one(&env.db)
    .await
    .ok()?;
    if outbox > 0 {
        return Some(false);
    }
    let mut conn = env.redis.get().await.ok()?;
    let through: Option<i64> = redis::cmd("GET")
        .arg(env.keys.outbox_applied_through())
        .query_async(&mut *conn)
        .await
        .ok()?;
    let through = through.unwrap_or(0);
    if through >= last_id {
        return Some(true);
    }
    let above: Vec<i64> = redis::cmd("ZRANGEBYSCORE")
        .arg(env.keys.outbox_applied_above())
        .arg(format!("({through}"))
        .arg(last_id)
        .query_async(&mut *conn)
        .await
        .ok()?;
    Some(above.len() as i64 == last_id - through)
}

/// Waits until `n` orders are accounted for (terminal, or dead-lettered), nothing is
/// pending or unread in the group and the read models are final
/// ([`read_models_final`]). Tolerates servers that are still coming back (errors count as
/// "not yet").
pub async fn wait_settled(env: &TestEnv, n: i64, deadline: Duration) {
    crate::wait_for(
        &format!("{n} orders settled, an empty PEL and final read models"),
        deadline,
        || async {
            let terminal: (i64,) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM orders WHERE status IN ('completed','failed')) \
                 + (SELECT COUNT(*) FROM archived_orders)",
            )
            .fetch_one(&env.db)
            .await
            .ok()?;
            let mut conn = env.redis.get().await.ok()?;
            let stats = oms_shared::redis::queue::group_stats(&mut *conn, &env.keys)
                .await
                .ok()?;
            let dead = oms_shared::redis::queue::dead_letter_count(&mut *conn, &env.keys)
                .await
                .ok()? as i64;
            let settled = terminal.0 + dead >= n && stats.pending == 0 && stats.lag == Some(0);
            (settled && read_models_final(env).await?).then_some(())
        },
    )
    .await
}

/// Redis KPIs and leaderboard against MySQL.
pub async fn read_model_violations(env: &TestEnv) -> Vec<String> {
    let mut v = Vec::new();
    let days: Vec<(chrono::NaiveDate, i64, i64)> = sqlx::query_as(
        "SELECT kpi_date, COUNT(*), CAST(SUM(total) * 100 AS SIGNED) FROM orders \
         WHERE status = 'completed' GROUP BY kpi_date \
         UNION ALL SELECT kpi_date, COUNT(*), CAST(SUM(total) * 100 AS SIGNED) FROM archived_orders \
         WHERE status = 'completed' GROUP BY kpi_date",
    )
    .fetch_all(&env.db)
    .await
    .expect("kpi query");
    let summaries = oms_reports::reconcile::check_summaries(&env.db)
        .await
        .expect("summaries against orders");
    if !summaries.is_empty() {
        v.push(format!(
            "MySQL summaries differ from the orders: {summaries:?}"
        ));
    }
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
        let got = oms_shared::redis::read_model::read_kpis(&mut *conn, key)
            .await
            .expect("read kpis");
        if got.as_ref() != Some(want) {
            v.push(format!("{key}: redis {got:?} != mysql {want:?}"));
        }
    }
    let board: BTreeMap<String, Cents> =
        oms_shared::redis::read_model::read_leaderboard(&mut *conn, &env.keys, 0)
            .await
            .expect("leaderboard")
            .into_iter()
            .collect();
    let spent: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CAST(email AS CHAR), CAST(total_spent * 100 AS SIGNED) FROM customers WHERE total_spent > 0",
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
