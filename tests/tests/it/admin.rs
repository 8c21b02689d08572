//! The operator commands: kpis, leaderboard, reconcile, status, failed.
//!
//! Data is seeded straight into MySQL (customers, products, imports, orders, items) and
//! Redis; the commands run in-process through their library functions, and through the
//! `producer` binary where the exit code and the output format matter.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::NaiveDate;
use oms_reports::{failed, kpis, leaderboard, reconcile, status};
use oms_shared::redis::queue::DeadLetter;
use oms_tests::invariants::producer_exit_code;
use oms_tests::{binary, order_row, wait_for, TestEnv};

const DEADLINE: Duration = Duration::from_secs(60);

/// An XRANGE entry: id and field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn customer(env: &TestEnv, email: &str, total_spent: &str, orders: i64) -> u64 {
    sqlx::query(
        "INSERT INTO customers (email, name, total_spent, orders_count) VALUES (?, ?, ?, ?)",
    )
    .bind(email)
    .bind(format!("Name {email}"))
    .bind(total_spent)
    .bind(orders)
    .execute(&env.db)
    .await
    .expect("insert customer")
    .last_insert_id()
}

/// Inserts an order (and one item of sku `A` at its total) with status and KPI day.
#[allow(clippy::too_many_arguments)]
async fn order(
    env: &TestEnv,
    identity: &str,
    import: Option<u64>,
    customer_id: u64,
    status: &str,
    reason: Option<&str>,
    total: &str,
    kpi_date: Option<&str>,
) {
    let id = sqlx::query(
        "INSERT INTO orders (identity, import_id, line, customer_id, status, failure_reason, total, kpi_date) \
         VALUES (?, ?, 2, ?, ?, ?, ?, ?)",
    )
    .bind(identity)
    .bind(import)
    .bind(customer_id)
    .bind(status)
    .bind(reason)
    .bind(total)
    .bind(kpi_date.map(day))
    .execute(&env.db)
    .await
    .expect("insert order")
    .last_insert_id();
    // As the reserve and settle transactions do: the import's counter of the status.
    if let Some(import) = import {
        sqlx::query(
            "INSERT INTO import_progress (import_id, status, reason, shard, orders, revenue_cents, last_terminal_at) \
             VALUES (?, ?, ?, 0, 1, IF(? = 'completed', CAST(? * 100 AS SIGNED), 0), \
             IF(? IN ('completed', 'failed'), NOW(3), NULL)) ON DUPLICATE KEY UPDATE \
             orders = orders + 1, revenue_cents = revenue_cents + VALUES(revenue_cents), \
             last_terminal_at = COALESCE(VALUES(last_terminal_at), last_terminal_at)",
        )
        .bind(import)
        .bind(status)
        .bind(reason.unwrap_or(""))
        .bind(status)
        .bind(total)
        .bind(status)
        .execute(&env.db)
        .await
        .expect("add to import_progress");
    }
    // As the settle transaction does: a completed order counts in its day's summary.
    if let (Some(kpi_date), "completed") = (kpi_date, status) {
        sqlx::query(
            "INSERT INTO kpi_days (kpi_date, order_count, revenue_cents) \
             VALUES (?, 1, CAST(? * 100 AS SIGNED)) ON DUPLICATE KEY UPDATE \
             order_count = order_count + 1, revenue_cents = revenue_cents + VALUES(revenue_cents)",
        )
        .bind(day(kpi_date))
        .bind(total)
        .execute(&env.db)
        .await
        .expect("add to kpi_days");
    }
    sqlx::query(
        "INSERT INTO order_items (order_id, product_id, sku, quantity, unit_price) \
         SELECT ?, id, sku, 1, ? FROM products WHERE sku = 'A'",
    )
    .bind(id)
    .bind(total)
    .execute(&env.db)
    .await
    .expect("insert item");
}

async fn hash(env: &TestEnv, key: &str) -> BTreeMap<String, String> {
    let mut conn = env.redis_conn().await;
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut *conn)
        .await
        .unwrap()
}

fn kpi_hash(count: i64, revenue: &str, aov: &str, cents: i64) -> BTreeMap<String, String> {
    [
        ("order_count", count.to_string()),
        ("revenue", revenue.to_string()),
        ("average_order_value", aov.to_string()),
        ("revenue_cents", cents.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn producer(env: &TestEnv, args: &[&str]) -> Output {
    Command::new(binary("producer"))
        .args(args)
        .envs(env.env_vars())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run producer")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Orders over two years, two months and several days; a failed and a reserved order that
/// must not count.
async fn seed_kpi_orders(env: &TestEnv) -> (u64, u64, u64) {
    env.product("A", "1.00", 1000).await;
    let c1 = customer(env, "c1@example.com", "11.00", 2).await;
    let c2 = customer(env, "c2@example.com", "3.05", 2).await;
    let c3 = customer(env, "c3@example.com", "7.77", 1).await;
    let done = "completed";
    order(env, "o1", None, c1, done, None, "1.00", Some("2025-12-31")).await;
    order(env, "o2", None, c2, done, None, "3.00", Some("2026-01-15")).await;
    order(env, "o3", None, c1, done, None, "10.00", Some("2026-01-31")).await;
    order(env, "o4", None, c2, done, None, "0.05", Some("2026-01-31")).await;
    order(env, "o5", None, c3, done, None, "7.77", Some("2026-02-01")).await;
    let declined = Some("payment_declined");
    order(
        env,
        "f1",
        None,
        c3,
        "failed",
        declined,
        "100.00",
        Some("2026-01-31"),
    )
    .await;
    order(env, "r1", None, c3, "reserved", None, "50.00", None).await;
    (c1, c2, c3)
}

#[tokio::test]
async fn kpis_generate_matches_hand_computed_figures() {
    let env = TestEnv::new().await;
    seed_kpi_orders(&env).await;
    let k = &env.keys;

    let report = kpis::generate(&env.config, Some(day("2026-01-31")))
        .await
        .unwrap();
    let figures: Vec<(&str, &str, i64, &str, &str)> = report
        .periods
        .iter()
        .map(|p| {
            (
                p.period,
                p.label.as_str(),
                p.order_count,
                p.revenue.as_str(),
                p.average_order_value.as_str(),
            )
        })
        .collect();
    assert_eq!(
        figures,
        vec![
            // 10.05 / 2 = 5.025 → 5.03 (half up)
            ("daily", "2026-01-31", 2, "10.05", "5.03"),
            ("monthly", "2026-01", 3, "13.05", "4.35"),
            // 20.82 / 4 = 5.205 → 5.21
            ("yearly", "2026", 4, "20.82", "5.21"),
            // 21.82 / 5 = 4.364 → 4.36
            ("total", "all", 5, "21.82", "4.36"),
        ]
    );
    let d = day("2026-01-31");
    assert_eq!(
        hash(&env, &k.kpi_daily(d)).await,
        kpi_hash(2, "10.05", "5.03", 1005)
    );
    assert_eq!(
        hash(&env, &k.kpi_monthly(d)).await,
        kpi_hash(3, "13.05", "4.35", 1305)
    );
    assert_eq!(
        hash(&env, &k.kpi_yearly(d)).await,
        kpi_hash(4, "20.82", "5.21", 2082)
    );
    assert_eq!(
        hash(&env, &k.kpi_total()).await,
        kpi_hash(5, "21.82", "4.36", 2182)
    );

    // The next day is in the next month.
    let d = day("2026-02-01");
    kpis::generate(&env.config, Some(d)).await.unwrap();
    assert_eq!(
        hash(&env, &k.kpi_daily(d)).await,
        kpi_hash(1, "7.77", "7.77", 777)
    );
    assert_eq!(
        hash(&env, &k.kpi_monthly(d)).await,
        kpi_hash(1, "7.77", "7.77", 777)
    );
    assert_eq!(
        hash(&env, &k.kpi_yearly(d)).await,
        kpi_hash(4, "20.82", "5.21", 2082)
    );
    // The previous year.
    let d = day("2025-12-31");
    kpis::generate(&env.config, Some(d)).await.unwrap();
    assert_eq!(
        hash(&env, &k.kpi_yearly(d)).await,
        kpi_hash(1, "1.00", "1.00", 100)
    );

    // `show` reads back what `generate` wrote.
    let shown = kpis::show(&env.config, Some(day("2026-01-31")))
        .await
        .unwrap();
    assert_eq!(shown.source, "redis");
    assert_eq!(
        shown.periods,
        kpis::generate(&env.config, Some(day("2026-01-31")))
            .await
            .unwrap()
            .periods
    );

    // The binary: aligned table, and --json.
    let out = producer(&env, &["kpis", "generate", "--date", "2026-01-31"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("period"), "{text}");
    assert!(
        lines[2].starts_with("daily") && lines[2].ends_with("5.03"),
        "{text}"
    );
    let widths: Vec<usize> = lines.iter().map(|l| l.len()).collect();
    assert!(widths.iter().all(|w| *w == widths[0]), "aligned: {text}");
    let out = producer(
        &env,
        &["kpis", "generate", "--date", "2026-01-31", "--json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["periods"][0]["average_order_value"], "5.03");
    assert_eq!(json["periods"][3]["revenue_cents"], 2182);
    let out = producer(&env, &["kpis", "generate", "--date", "2026-13-01"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A connection holding `orders` write-locked: any other session's read of it waits.
async fn lock_orders(env: &TestEnv) -> sqlx::pool::PoolConnection<sqlx::MySql> {
    let mut locker = env.db.acquire().await.unwrap();
    sqlx::query("LOCK TABLES orders WRITE")
        .execute(&mut *locker)
        .await
        .unwrap();
    locker
}

async fn unlock(mut locker: sqlx::pool::PoolConnection<sqlx::MySql>) {
    sqlx::query("UNLOCK TABLES")
        .execute(&mut *locker)
        .await
        .unwrap();
}

/// `kpis generate --date D` and `reconcile` read the per-day summary, never the orders:
/// both finish while another session holds `orders` write-locked (a scan would wait).
#[tokio::test]
async fn kpis_generate_and_reconcile_read_the_day_summary_not_the_orders() {
    let env = TestEnv::new().await;
    seed_kpi_orders(&env).await;
    let locker = lock_orders(&env).await;
    let limit = std::time::Duration::from_secs(20);
    let report = tokio::time::timeout(limit, kpis::generate(&env.config, Some(day("2026-01-31"))))
        .await
        .expect("kpis generate waited for the orders table")
        .unwrap();
    let counts: Vec<i64> = report.periods.iter().map(|p| p.order_count).collect();
    assert_eq!(counts, vec![2, 3, 4, 5]);
    let checked = tokio::time::timeout(limit, reconcile::reconcile(&env.config, false))
        .await
        .expect("reconcile waited for the orders table")
        .unwrap();
    assert!(
        checked.drift.iter().all(|d| !d.key.contains("2026-01-31")),
        "{checked:?}"
    );
    unlock(locker).await;
}

/// An import's progress (`status IMPORT`, each `import --wait` poll, `/api/imports/{id}`)
/// comes from its counters, never from its orders: it is read while another session holds
/// `orders` write-locked (a scan of the import's orders would wait).
#[tokio::test]
async fn an_imports_progress_reads_its_counters_not_its_orders() {
    use oms_shared::store::{imports, reports};
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1000).await;
    let import = env.import_row().await;
    let c = customer(&env, "p@example.com", "3.50", 2).await;
    let i = Some(import);
    let d = Some("2026-01-01");
    order(&env, "p1", i, c, "completed", None, "1.00", d).await;
    order(&env, "p2", i, c, "completed", None, "2.50", d).await;
    order(
        &env,
        "p3",
        i,
        c,
        "failed",
        Some("payment_declined"),
        "9.00",
        d,
    )
    .await;
    order(&env, "p4", i, c, "reserved", None, "4.00", None).await;
    let locker = lock_orders(&env).await;
    let limit = std::time::Duration::from_secs(20);
    let outcomes = tokio::time::timeout(limit, reports::import_outcomes(&env.db, import))
        .await
        .expect("the import's progress waited for the orders table")
        .unwrap();
    assert_eq!(outcomes.completed, 2);
    assert_eq!(outcomes.reserved, 1);
    assert_eq!(outcomes.failed.get("payment_declined"), Some(&1));
    assert!(outcomes.last_terminal_ms.is_some());
    let revenue = tokio::time::timeout(limit, imports::import_revenue(&env.db, import))
        .await
        .expect("the import's revenue waited for the orders table")
        .unwrap();
    assert_eq!(revenue.0, 350);
    unlock(locker).await;
}

/// `reconcile --deep` compares the summaries with the orders: clean when they agree, each
/// corrupted row listed (exit 1) when not.
#[tokio::test]
async fn reconcile_deep_finds_a_summary_that_differs_from_the_orders() {
    let env = TestEnv::new().await;
    seed_kpi_orders(&env).await;
    let import = env.import_row().await;
    let c = customer(&env, "d@example.com", "1.00", 1).await;
    order(
        &env,
        "d1",
        Some(import),
        c,
        "completed",
        None,
        "1.00",
        Some("2026-02-02"),
    )
    .await;
    reconcile::reconcile(&env.config, true).await.unwrap();
    let (code, out) = producer_exit_code(&env, &["reconcile", "--deep"]);
    assert_eq!(code, 0, "{out}");
    sqlx::query("UPDATE kpi_days SET order_count = order_count + 1 WHERE kpi_date = '2026-01-31'")
        .execute(&env.db)
        .await
        .unwrap();
    sqlx::query("UPDATE import_progress SET orders = 5 WHERE import_id = ? AND shard = 0")
        .bind(import)
        .execute(&env.db)
        .await
        .unwrap();
    let output = producer(&env, &["reconcile", "--deep", "--json"]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let drift = json["summary_drift"].as_array().unwrap();
    let tables: Vec<&str> = drift.iter().map(|d| d["table"].as_str().unwrap()).collect();
    assert_eq!(tables, vec!["kpi_days", "import_progress"], "{out}");
    assert_eq!(drift[1]["summary"], "5/100", "{out}");
    assert_eq!(drift[1]["orders"], "1/100", "{out}");
}

#[tokio::test]
async fn leaderboard_update_ranks_by_total_spent_and_keeps_the_snapshot() {
    let env = TestEnv::new().await;
    customer(&env, "a@example.com", "50.00", 2).await;
    customer(&env, "b@example.com", "120.50", 3).await;
    customer(&env, "c@example.com", "50.00", 1).await;
    customer(&env, "d@example.com", "9.99", 1).await;
    customer(&env, "zero@example.com", "0.00", 0).await;
    let today = day("2026-03-07");

    let report = leaderboard::update_on(&env.config, 3, today).await.unwrap();
    assert_eq!(report.customers, 4);
    let top: Vec<(usize, &str, i64, &str)> = report
        .top
        .iter()
        .map(|e| {
            (
                e.rank,
                e.email.as_str(),
                e.orders_count,
                e.total_spent.as_str(),
            )
        })
        .collect();
    // Ties rank like ZREVRANGE: equal scores by email, descending.
    assert_eq!(
        top,
        vec![
            (1, "b@example.com", 3, "120.50"),
            (2, "c@example.com", 1, "50.00"),
            (3, "a@example.com", 2, "50.00"),
        ]
    );
    assert_eq!(report.top[0].name, "Name b@example.com");
    assert_eq!(
        report.snapshot_key.as_deref(),
        Some(env.keys.leaderboard_snapshot(today).as_str())
    );

    let mut conn = env.redis_conn().await;
    let board: Vec<(String, i64)> = redis::cmd("ZREVRANGE")
        .arg(env.keys.leaderboard())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut *conn)
        .await
        .unwrap();
    let expected = vec![
        ("b@example.com".to_string(), 12050),
        ("c@example.com".to_string(), 5000),
        ("a@example.com".to_string(), 5000),
        ("d@example.com".to_string(), 999),
    ];
    assert_eq!(board, expected);
    let snapshot: Vec<(String, i64)> = redis::cmd("ZREVRANGE")
        .arg(env.keys.leaderboard_snapshot(today))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(snapshot, expected);

    // A customer's total changes: the rebuild follows, the old member does not linger.
    sqlx::query("UPDATE customers SET total_spent = 0 WHERE email = 'b@example.com'")
        .execute(&env.db)
        .await
        .unwrap();
    let report = leaderboard::update_on(&env.config, 0, today).await.unwrap();
    assert_eq!(report.top.len(), 3);
    assert_eq!(report.top[0].email, "c@example.com");
    let shown = leaderboard::show(&env.config, 2).await.unwrap();
    assert_eq!(
        shown
            .top
            .iter()
            .map(|e| (e.email.as_str(), e.total_spent_cents, e.orders_count))
            .collect::<Vec<_>>(),
        vec![("c@example.com", 5000, 1), ("a@example.com", 5000, 2)]
    );

    // The binary: today's snapshot, aligned table.
    let out = producer(&env, &["leaderboard", "update", "--limit", "2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("rank  name"), "{text}");
    assert!(lines[2].contains("c@example.com") && lines[2].ends_with("50.00"));
    assert_eq!(lines[2].len(), lines[3].len(), "{text}");
    let snapshot_today = env
        .keys
        .leaderboard_snapshot(chrono::Utc::now().date_naive());
    assert!(text.contains(&snapshot_today), "{text}");
    let exists: bool = redis::cmd("EXISTS")
        .arg(&snapshot_today)
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert!(exists);
}

#[tokio::test]
async fn reconcile_finds_corrupted_read_models_and_fix_repairs_them() {
    let env = TestEnv::new().await;
    seed_kpi_orders(&env).await;
    let k = &env.keys;

    // Nothing in Redis yet: every period and every customer is missing.
    let report = reconcile::reconcile(&env.config, false).await.unwrap();
    assert!(!report.clean);
    assert!(report
        .drift
        .iter()
        .any(|d| d.key == k.kpi_daily(day("2025-12-31")) && d.redis.is_none()));
    assert!(report
        .drift
        .iter()
        .any(|d| d.key == k.leaderboard() && d.field == "c1@example.com"));
    let report = reconcile::reconcile(&env.config, true).await.unwrap();
    assert!(report.clean, "{report:#?}");
    assert_eq!(report.remaining, Some(vec![]));
    // 4 days, 3 months, 2 years, total.
    let report = reconcile::reconcile(&env.config, false).await.unwrap();
    assert!(report.clean && report.drift.is_empty(), "{report:#?}");
    assert_eq!(report.kpi_hashes_checked, 10);
    assert_eq!(report.leaderboard_members_checked, 3);
    assert_eq!(
        hash(&env, &k.kpi_daily(day("2026-01-31"))).await,
        kpi_hash(2, "10.05", "5.03", 1005)
    );

    // Corrupt on purpose: a count, a score, an extra member, a stray hash.
    let daily = k.kpi_daily(day("2026-01-31"));
    let stray = k.kpi_daily(day("1999-01-01"));
    {
        let mut conn = env.redis_conn().await;
        redis::pipe()
            .cmd("HSET")
            .arg(&daily)
            .arg("order_count")
            .arg(99)
            .ignore()
            .cmd("ZADD")
            .arg(k.leaderboard())
            .arg(1)
            .arg("c2@example.com")
            .ignore()
            .cmd("ZADD")
            .arg(k.leaderboard())
            .arg(500)
            .arg("ghost@example.com")
            .ignore()
            .cmd("HSET")
            .arg(&stray)
            .arg("order_count")
            .arg(3)
            .ignore()
            .query_async::<()>(&mut *conn)
            .await
            .unwrap();
    }
    let report = reconcile::reconcile(&env.config, false).await.unwrap();
    assert!(!report.clean);
    let drift: Vec<(&str, &str, Option<&str>, Option<&str>)> = report
        .drift
        .iter()
        .map(|d| {
            (
                d.key.as_str(),
                d.field.as_str(),
                d.redis.as_deref(),
                d.mysql.as_deref(),
            )
        })
        .collect();
    assert!(
        drift.contains(&(daily.as_str(), "order_count", Some("99"), Some("2"))),
        "{drift:?}"
    );
    let board = k.leaderboard();
    assert!(drift.contains(&(board.as_str(), "c2@example.com", Some("1"), Some("305"))));
    assert!(drift.contains(&(board.as_str(), "ghost@example.com", Some("500"), None)));
    assert!(drift.contains(&(stray.as_str(), "order_count", Some("3"), None)));
    assert_eq!(drift.len(), 4, "{drift:?}");

    // The binary lists them and exits 1; --fix repairs; a second run exits 0.
    let out = producer(&env, &["reconcile"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("key"), "{text}");
    assert!(
        text.contains(&daily) && text.contains("ghost@example.com") && text.contains(&stray),
        "{text}"
    );
    assert!(text.contains("4 differences"), "{text}");
    let out = producer(&env, &["reconcile", "--fix"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("clean"), "{}", stdout(&out));
    let out = producer(&env, &["reconcile", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["clean"], true);
    assert_eq!(json["drift"], serde_json::json!([]));

    assert_eq!(hash(&env, &daily).await, kpi_hash(2, "10.05", "5.03", 1005));
    assert!(hash(&env, &stray).await.is_empty(), "stray hash deleted");
    let mut conn = env.redis_conn().await;
    let ghost: Option<f64> = redis::cmd("ZSCORE")
        .arg(k.leaderboard())
        .arg("ghost@example.com")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(ghost, None);

    // A zero hash for a day without orders (what `kpis generate` writes) is not drift.
    kpis::generate(&env.config, Some(day("2026-01-31")))
        .await
        .unwrap();
    kpis::generate(&env.config, Some(day("2027-05-05")))
        .await
        .unwrap();
    let report = reconcile::reconcile(&env.config, false).await.unwrap();
    assert!(report.clean, "{report:#?}");
}

#[tokio::test]
async fn status_reports_a_stuck_pending_entry_and_its_idle_time() {
    let env = TestEnv::new().await;
    let import = env.import_row().await;
    env.enqueue(
        import,
        &[order_row("s1", 2, "s@example.com", &[("A", 1)])],
        1,
    )
    .await;
    let mut conn = env.redis_conn().await;
    let _ = oms_shared::redis::queue::read_new_entries(&mut *conn, &env.keys, 0, "stuck", 1)
        .await
        .unwrap();

    let report = wait_for("the pending entry to be idle", DEADLINE, || async {
        let r = status::status(&env.config, None).await.ok()?;
        (r.stream.oldest_pending.as_ref()?.idle_ms >= 50).then_some(r)
    })
    .await;
    let s = &report.stream;
    assert_eq!((s.length, s.pending, s.lag), (1, 1, Some(0)));
    let oldest = s.oldest_pending.as_ref().unwrap();
    assert_eq!((oldest.consumer.as_str(), oldest.deliveries), ("stuck", 1));
    assert_eq!(s.consumers.len(), 1);
    assert_eq!(
        (s.consumers[0].name.as_str(), s.consumers[0].pending),
        ("stuck", 1)
    );
    assert_eq!(s.dead_letters, 0);
    assert!(report.import.is_none());

    // The binary: --json, and the text.
    let out = producer(&env, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stream"]["pending"], 1);
    assert_eq!(json["stream"]["oldest_pending"]["consumer"], "stuck");
    assert!(
        json["stream"]["oldest_pending"]["idle_ms"]
            .as_u64()
            .unwrap()
            >= 50
    );
    assert_eq!(json["stream"]["consumers"][0]["name"], "stuck");
    assert_eq!(json["import"], serde_json::Value::Null);
    let out = producer(&env, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("oldest pending:") && text.contains("on stuck, idle"),
        "{text}"
    );

    // An unknown import is an error naming it.
    let out = producer(&env, &["status", "999999"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("import 999999 not found"));
}

#[tokio::test]
async fn status_of_an_import_counts_outcomes_in_flight_and_dead() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1000).await;
    let import = env.import_row().await;
    let other = env.import_row().await;
    sqlx::query(
        "UPDATE imports SET rows_total = 10, rows_enqueued = 8, rows_rejected = 2 WHERE id = ?",
    )
    .bind(import)
    .execute(&env.db)
    .await
    .unwrap();
    let c = customer(&env, "x@example.com", "3.00", 3).await;
    let i = Some(import);
    let d = Some("2026-01-01");
    order(&env, "i1", i, c, "completed", None, "1.00", d).await;
    order(&env, "i2", i, c, "completed", None, "1.00", d).await;
    order(&env, "i3", i, c, "completed", None, "1.00", d).await;
    order(
        &env,
        "i4",
        i,
        c,
        "failed",
        Some("payment_declined"),
        "1.00",
        d,
    )
    .await;
    order(
        &env,
        "i5",
        i,
        c,
        "failed",
        Some("insufficient_stock"),
        "1.00",
        d,
    )
    .await;
    order(&env, "i6", i, c, "reserved", None, "1.00", None).await;
    order(&env, "o1", Some(other), c, "completed", None, "1.00", d).await;
    sqlx::query("INSERT INTO import_duplicates (import_id, line, identity) VALUES (?, 9, 'i1')")
        .bind(import)
        .execute(&env.db)
        .await
        .unwrap();
    {
        let mut conn = env.redis_conn().await;
        let mut pipe = redis::pipe();
        oms_shared::redis::queue::push_dead_letters(
            &mut pipe,
            &env.keys,
            &[dead_letter(import, "d1", 7), dead_letter(other, "d2", 3)],
        );
        pipe.query_async::<()>(&mut *conn).await.unwrap();
    }
    // What the consumer records before it dead-letters a row (progress counts these).
    sqlx::query(
        "INSERT INTO dead_lettered_rows (import_id, line, identity) VALUES (?, 7, 'd1'), (?, 3, 'd2')",
    )
    .bind(import)
    .bind(other)
    .execute(&env.db)
    .await
    .unwrap();

    let report = status::status(&env.config, Some(import)).await.unwrap();
    let s = report.import.unwrap();
    assert_eq!(
        (s.rows, s.enqueued, s.rejected, s.duplicates, s.completed),
        (10, 8, 2, 1, 3)
    );
    assert_eq!(
        s.failed,
        BTreeMap::from([
            ("insufficient_stock".to_string(), 1),
            ("payment_declined".to_string(), 1)
        ])
    );
    assert_eq!((s.failed_total, s.reserved, s.dead), (2, 1, 1));
    // 8 enqueued − (3 completed + 2 failed + 1 duplicate + 1 dead)
    assert_eq!(s.in_flight, 1);
    assert!(s.rate_per_sec.unwrap() > 0.0);
    assert!(s.eta_secs.unwrap() > 0.0);
    assert_eq!(report.stream.dead_letters, 2);

    let out = producer(&env, &["status", &import.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("import {import} (test.csv"))
            && text.contains("failed: insufficient_stock 1, payment_declined 1"),
        "{text}"
    );
}

fn dead_letter(import_id: u64, identity: &str, line: u64) -> DeadLetter {
    let mut row = order_row(identity, line, "dead@example.com", &[("A", 1)]);
    row.customer_name = "Dead Letter".into();
    DeadLetter {
        id: String::new(),
        import_id,
        line,
        identity: identity.to_string(),
        row: serde_json::to_string(&row).unwrap(),
        error: "Data too long for column 'name'\nat row 1".into(),
        attempts: 3,
        consumer: "w1".into(),
        source_id: "1-0".into(),
        failed_at: "2026-03-07T10:00:00.000Z".into(),
    }
}

#[tokio::test]
async fn failed_list_retry_and_purge() {
    let env = TestEnv::new().await;
    let import = env.import_row().await;
    let mut garbage = dead_letter(0, "", 0);
    garbage.row = "v=1 rows=[not json".into();
    {
        let mut conn = env.redis_conn().await;
        oms_shared::redis::queue::ensure_group(&mut *conn, &env.keys)
            .await
            .unwrap();
        let mut pipe = redis::pipe();
        oms_shared::redis::queue::push_dead_letters(
            &mut pipe,
            &env.keys,
            &[dead_letter(import, "L-5", 5), garbage],
        );
        pipe.query_async::<()>(&mut *conn).await.unwrap();
    }

    let list = failed::list(&env.config, 0).await.unwrap();
    assert_eq!(list.total, 2);
    assert_eq!(list.dead_letters.len(), 2);
    assert_eq!(
        (
            list.dead_letters[0].identity.as_str(),
            list.dead_letters[0].line
        ),
        ("L-5", 5)
    );
    let limited = failed::list(&env.config, 1).await.unwrap();
    assert_eq!((limited.total, limited.dead_letters.len()), (2, 1));

    let out = producer(&env, &["failed", "list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("id"), "{text}");
    assert!(text.contains(&list.dead_letters[0].id) && text.contains("L-5"));
    assert!(text.contains("2 of 2 dead letters shown"), "{text}");
    let out = producer(&env, &["failed", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["total"], 2);
    assert_eq!(json["dead_letters"][0]["identity"], "L-5");

    // Retry one: back on the orders stream as a one-row chunk of its import, then gone.
    let id = list.dead_letters[0].id.clone();
    let report = failed::retry(&env.config, failed::RetryTarget::Id(id.clone()))
        .await
        .unwrap();
    assert_eq!(report.retried.len(), 1);
    assert!(report.kept.is_empty());
    let mut conn = env.redis_conn().await;
    let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
        .arg(env.keys.orders())
        .arg("-")
        .arg("+")
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, report.retried[0].entry_id);
    let chunk = oms_shared::order::decode_chunk(
        &entries[0].0,
        entries[0].1.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
    )
    .unwrap();
    assert_eq!(chunk.import_id, import);
    assert_eq!(chunk.rows.len(), 1);
    assert_eq!(
        (chunk.rows[0].identity.as_str(), chunk.rows[0].line),
        ("L-5", 5)
    );
    let remaining = failed::list(&env.config, 0).await.unwrap();
    assert_eq!(remaining.total, 1);
    assert_ne!(remaining.dead_letters[0].id, id);
    assert!(failed::retry(&env.config, failed::RetryTarget::Id(id))
        .await
        .is_err());

    // The undecodable one stays and is reported; the binary exits 1.
    let report = failed::retry(&env.config, failed::RetryTarget::All)
        .await
        .unwrap();
    assert!(report.retried.is_empty());
    assert_eq!(report.kept.len(), 1);
    let out = producer(&env, &["failed", "retry", "all"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an order row"));

    let out = producer(&env, &["failed", "purge", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["purged"], 1);
    let left: u64 = redis::cmd("XLEN")
        .arg(env.keys.dead_letters())
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_dead_letter_retried_after_its_cause_is_removed_completes() {
    let env = TestEnv::new().await;
    env.product("A", "2.50", 10).await;
    let import = env.import_row().await;
    // The cause: customer names longer than 10 characters cannot be stored.
    sqlx::query("ALTER TABLE customers MODIFY name VARCHAR(10) NOT NULL")
        .execute(&env.db)
        .await
        .unwrap();
    let row = order_row("R-1", 2, "long@example.com", &[("A", 2)]);
    env.enqueue(import, &[row], 1).await;
    let mut config = env.consumer_config();
    config.claim_idle_secs = 1;
    config.max_attempts = 2;
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);

    let dead = wait_for("a dead letter", DEADLINE, || async {
        let list = failed::list(&env.config, 0).await.ok()?;
        (list.total == 1).then_some(list)
    })
    .await;
    assert_eq!(dead.dead_letters[0].identity, "R-1");
    assert!(
        dead.dead_letters[0].error.contains("name"),
        "{}",
        dead.dead_letters[0].error
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, 0);

    // Remove the cause, retry: the order completes and the dead stream is empty.
    sqlx::query("ALTER TABLE customers MODIFY name VARCHAR(255) NOT NULL")
        .execute(&env.db)
        .await
        .unwrap();
    let report = failed::retry(&env.config, failed::RetryTarget::All)
        .await
        .unwrap();
    assert_eq!(report.retried.len(), 1);
    env.wait_until_processed(1, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE identity = 'R-1' AND status = 'completed'")
            .await,
        1
    );
    assert_eq!(failed::list(&env.config, 0).await.unwrap().total, 0);
    let s = status::status(&env.config, Some(import)).await.unwrap();
    let i = s.import.unwrap();
    assert_eq!((i.completed, i.dead), (1, 0));
    // The live read models agree with a rebuild from MySQL.
    wait_for("read models to settle", DEADLINE, || async {
        let r = reconcile::reconcile(&env.config, false).await.ok()?;
        r.clean.then_some(())
    })
    .await;
}
