//! The consumer's order workflow against real MariaDB and Redis.

use std::time::Duration;

use oms_shared::kpi::KpiFigures;
use oms_shared::money::Cents;
use oms_tests::{order_row, TestEnv};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn every_branch_of_the_workflow() {
    let env = TestEnv::new().await;
    env.product("A", "2.50", 5).await;
    env.product("B", "10.00", 1).await;
    let import = env.import_row().await;
    let rows = vec![
        order_row("o1", 2, "ann@example.com", &[("A", 2), ("B", 1)]), // completes: 15.00
        order_row("o2", 3, "bob@example.com", &[("A", 1), ("B", 1)]), // B exhausted
        order_row("o3", 4, "bob@example.com", &[("A", 1), ("NOPE", 1)]), // unknown sku
        order_row(
            "o4",
            5,
            "ANN@example.com".to_lowercase().as_str(),
            &[("A", 1)],
        ), // completes: 2.50
    ];
    env.enqueue(import, &rows, 2).await;
    let mut config = env.consumer_config();
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);
    env.wait_until_processed(4, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    let status = |id: &'static str| {
        let db = env.db.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>, i64)>(
                "SELECT CAST(status AS CHAR), failure_reason, CAST(total * 100 AS SIGNED) FROM orders WHERE identity = ?",
            )
            .bind(id)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(status("o1").await, ("completed".into(), None, 1500));
    assert_eq!(
        status("o2").await,
        ("failed".into(), Some("insufficient_stock".into()), 1250)
    );
    assert_eq!(status("o3").await.1.as_deref(), Some("unknown_sku"));
    assert_eq!(status("o4").await, ("completed".into(), None, 250));
    // Stock: A 5 - 2 - 1 = 2 (o2 reserved nothing), B 0.
    assert_eq!(
        env.scalar("SELECT stock_quantity FROM products WHERE sku = 'A'")
            .await,
        2
    );
    assert_eq!(
        env.scalar("SELECT stock_quantity FROM products WHERE sku = 'B'")
            .await,
        0
    );
    // One customer per email, case-insensitively; totals only from completed orders.
    assert_eq!(env.scalar("SELECT COUNT(*) FROM customers").await, 2);
    assert_eq!(
        env.scalar("SELECT CAST(total_spent * 100 AS SIGNED) FROM customers WHERE email = 'ann@example.com'").await,
        1750
    );
    assert_eq!(
        env.scalar("SELECT orders_count FROM customers WHERE email = 'ann@example.com'")
            .await,
        2
    );
    assert_eq!(
        env.scalar("SELECT orders_count FROM customers WHERE email = 'bob@example.com'")
            .await,
        0
    );
    // Items keep the unit price snapshot; unknown skus have none.
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM order_items WHERE unit_price IS NULL")
            .await,
        1
    );

    // Read models: today's KPIs and the leaderboard.
    let today = chrono::Utc::now().date_naive();
    let mut conn = env.redis_conn().await;
    let kpis = oms_shared::redis::read_model::read_kpis(&mut *conn, &env.keys.kpi_daily(today))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kpis,
        KpiFigures {
            order_count: 2,
            revenue: Cents(1750)
        }
    );
    let total = oms_shared::redis::read_model::read_kpis(&mut *conn, &env.keys.kpi_total())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, kpis);
    let board = oms_shared::redis::read_model::read_leaderboard(&mut *conn, &env.keys, 10)
        .await
        .unwrap();
    assert_eq!(board, vec![("ann@example.com".to_string(), Cents(1750))]);
    // Nothing left in the outbox once applied.
    oms_tests::wait_for("outbox drained", DEADLINE, || async {
        (env.scalar("SELECT COUNT(*) FROM read_model_outbox").await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn declined_payment_releases_stock_and_redelivery_changes_nothing() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 10).await;
    let import = env.import_row().await;
    let rows = vec![order_row("d1", 2, "c@example.com", &[("A", 3)])];
    env.enqueue(import, &rows, 1).await;
    let mut config = env.consumer_config();
    config.payment_success_rate = 0.0;
    let (handle, stop) = env.spawn_consumer(config.clone());
    env.wait_until_processed(1, DEADLINE).await;
    assert_eq!(env.scalar("SELECT stock_quantity FROM products").await, 10);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE failure_reason = 'payment_declined'")
            .await,
        1
    );

    // The same row delivered again (a re-import, a redelivery): no second effect.
    env.enqueue(import, &rows, 1).await;
    env.wait_until_processed(1, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, 1);
    assert_eq!(env.scalar("SELECT stock_quantity FROM products").await, 10);
}

#[tokio::test]
async fn outbox_rows_are_deleted_and_the_applied_record_shrinks_to_one_number() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1_000).await;
    let import = env.import_row().await;
    let rows: Vec<_> = (0..50u64)
        .map(|i| order_row(&format!("m{i}"), i + 2, "m@example.com", &[("A", 1)]))
        .collect();
    env.enqueue(import, &rows, 10).await;
    let mut config = env.consumer_config();
    config.payment_success_rate = 1.0;
    config.batch_size = 10;
    let (handle, stop) = env.spawn_consumer(config);
    env.wait_until_processed(50, DEADLINE).await;
    // Housekeeping deletes applied outbox rows each second; Redis's record of applied rows
    // ends as `applied_through` = the last outbox id, with no id kept above it.
    let last = env
        .scalar("SELECT last_id FROM read_model_sequence WHERE id = 1")
        .await;
    assert!(last >= 5, "one outbox row per batch of 10, got {last}");
    oms_tests::wait_for(
        "outbox emptied and applied record trimmed",
        DEADLINE,
        || async {
            if env.scalar("SELECT COUNT(*) FROM read_model_outbox").await > 0 {
                return None;
            }
            let mut conn = env.redis_conn().await;
            let (through, above): (Option<i64>, i64) = redis::pipe()
                .get(env.keys.outbox_applied_through())
                .zcard(env.keys.outbox_applied_above())
                .query_async(&mut *conn)
                .await
                .ok()?;
            (through == Some(last) && above == 0).then_some(())
        },
    )
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();
}

/// Two runs settling the same reserved orders (a redelivery racing the first run): the
/// later run's guarded UPDATE moves fewer orders than it was given, so it rolls back and
/// settles, under row locks, only those still `reserved`. Nothing is counted twice.
#[tokio::test]
async fn a_settle_racing_another_settles_only_what_is_left() {
    use oms_shared::order::payment::PaymentSimulator;
    use oms_shared::store::orders::{reserve_stock, settle_payments, RowOutcome};

    let env = TestEnv::new().await;
    env.product("A", "2.50", 10).await;
    let import = env.import_row().await;
    let rows = [
        order_row("s1", 2, "ann@example.com", &[("A", 1)]),
        order_row("s2", 3, "ann@example.com", &[("A", 2)]),
    ];
    let batch = oms_tests::batch_rows(import, &rows);
    let today = chrono::Utc::now().date_naive();
    let reserved = reserve_stock(&env.db, &batch, today)
        .await
        .unwrap()
        .reserved;
    assert_eq!(reserved.len(), 2);
    let approve_all = PaymentSimulator::new(1.0, 0).unwrap();

    let first = settle_payments(&env.db, &reserved[..1], &approve_all, today)
        .await
        .unwrap();
    assert_eq!(first.completed.len(), 1);
    let second = settle_payments(&env.db, &reserved, &approve_all, today)
        .await
        .unwrap();
    assert_eq!(
        second.outcomes,
        vec![(reserved[1].batch_index, RowOutcome::Completed)],
        "only the order left reserved is settled"
    );
    assert_eq!(second.completed.len(), 1);
    assert!(second.outbox_id.is_some());
    let third = settle_payments(&env.db, &reserved, &approve_all, today)
        .await
        .unwrap();
    assert!(third.outcomes.is_empty() && third.outbox_id.is_none());

    let customer = "FROM customers WHERE email = 'ann@example.com'";
    assert_eq!(
        env.scalar(&format!("SELECT orders_count {customer}")).await,
        2
    );
    assert_eq!(
        env.scalar(&format!(
            "SELECT CAST(total_spent * 100 AS SIGNED) {customer}"
        ))
        .await,
        750
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        2
    );
    assert_eq!(
        env.scalar("SELECT stock_quantity FROM products WHERE sku = 'A'")
            .await,
        7
    );
    assert_counters_equal_orders(&env).await;
}

/// Eight settles of the same reserved orders at once (redeliveries racing each other and
/// the first run), half of the payments declined: every order is settled by exactly one
/// of them — totals grown once, declined stock released once, one outbox row per order.
#[tokio::test]
async fn concurrent_settles_of_one_batch_count_every_order_once() {
    use oms_shared::order::payment::PaymentSimulator;
    use oms_shared::order::OrderIdentity;
    use oms_shared::store::orders::{reserve_stock, settle_payments};

    let env = TestEnv::new().await;
    env.product("A", "1.00", 1_000).await;
    let import = env.import_row().await;
    let rows: Vec<_> = (0..40u32)
        .map(|i| {
            order_row(
                &format!("c{i}"),
                u64::from(i) + 2,
                &format!("c{}@example.com", i % 7),
                &[("A", 1 + i % 3)],
            )
        })
        .collect();
    let batch = oms_tests::batch_rows(import, &rows);
    let today = chrono::Utc::now().date_naive();
    let reserved = reserve_stock(&env.db, &batch, today)
        .await
        .unwrap()
        .reserved;
    assert_eq!(reserved.len(), 40);
    let payment = PaymentSimulator::new(0.5, 7).unwrap();

    let runs = (0..8).map(|_| {
        let (db, reserved) = (env.db.clone(), reserved.clone());
        tokio::spawn(async move { settle_payments(&db, &reserved, &payment, today).await })
    });
    let mut settled = 0;
    for run in runs.collect::<Vec<_>>() {
        match run.await.unwrap() {
            Ok(phase) => settled += phase.outcomes.len(),
            // A deadlock between racing settles is transient: the batch would be retried.
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
    }
    assert!(settled <= 40, "{settled} settlements for 40 orders");
    // Settle what a transient error left reserved, as a retry would.
    settle_payments(&env.db, &reserved, &payment, today)
        .await
        .unwrap();

    let quantity = |i: u32| i64::from(1 + i % 3);
    let approved: Vec<u32> = (0..40)
        .filter(|i| {
            let identity = OrderIdentity(reserved[*i as usize].identity.clone());
            payment.approves(&identity)
        })
        .collect();
    let sold: i64 = approved.iter().map(|&i| quantity(i)).sum();
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'reserved'")
            .await,
        0
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        approved.len() as i64
    );
    assert_eq!(
        env.scalar("SELECT CAST(SUM(total_spent) * 100 AS SIGNED) FROM customers")
            .await,
        sold * 100
    );
    assert_eq!(
        env.scalar("SELECT SUM(orders_count) FROM customers").await,
        approved.len() as i64
    );
    assert_eq!(
        env.scalar("SELECT stock_quantity FROM products WHERE sku = 'A'")
            .await,
        1_000 - sold
    );
    let outboxed = env
        .scalar("SELECT COALESCE(SUM(JSON_LENGTH(payload)), 0) FROM read_model_outbox")
        .await;
    assert_eq!(
        outboxed,
        approved.len() as i64,
        "one outbox entry per completed order"
    );
    // The import's counters and the day sums moved once per order, with the orders.
    assert_counters_equal_orders(&env).await;
}

/// `import_progress` and `kpi_days` equal what the orders say (both are kept in the
/// transactions that move the orders).
async fn assert_counters_equal_orders(env: &TestEnv) {
    let counters = oms_shared::store::import_progress::all_counters(&env.db)
        .await
        .unwrap();
    assert!(!counters.is_empty(), "no import counters");
    let drift = oms_reports::reconcile::check_summaries(&env.db)
        .await
        .unwrap();
    assert!(drift.is_empty(), "{drift:?}");
}
