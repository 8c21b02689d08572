//! Retention (issue 22): `producer archive --before DATE (--to FILE | --delete)`.
//!
//! - archive runs during a live run of 100,000 orders with 2 consumers leave the invariant
//!   checker clean (archived orders counted, none lost or doubled), `reconcile` and
//!   `reconcile --deep` exit 0, the rebuilds (`kpis generate --date`, `leaderboard
//!   update`) keep the archived days, and `recover` finds nothing missing;
//! - the archive file decodes (zstd, CSV, items as JSON) to exactly what MySQL held, in
//!   several batches; reserved orders stay; the API's lookup answers `archived`; the run
//!   is in the audit log and `settings.archived_before`;
//! - an archived order imported again (same `order_id`, another file) is a duplicate, and
//!   redelivered (same import and line) a no-op: never processed twice.
//! - an order that ends with a KPI day the run's walk has passed is still archived by it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, TimeZone, Utc};
use oms_shared::order::OrderRow;
use oms_tests::invariants::{account, producer_exit_code, violations, wait_settled};
use oms_tests::procs::{spawn_import, wait_import, ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::workload::{Figures, Workload};
use oms_tests::{batch_rows, binary, order_row, wait_for, TestEnv};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(600);
const CUTOFF: &str = "2026-02-01";

/// Runs `producer ARGS --json` against `env`; asserts exit 0 and returns its JSON.
fn producer_json(env: &TestEnv, args: &[&str]) -> Value {
    let out = Command::new(binary("producer"))
        .arg("--json")
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OMS_PREFIX")
        .envs(env.env_vars())
        .stdin(Stdio::null())
        .output()
        .expect("run producer");
    assert!(
        out.status.success(),
        "producer {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("producer {args:?}: {e}"))
}

fn day(i: usize) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new(i as u64)
}

/// Gives the rows order dates over `days` days from 2026-01-01 (noon UTC).
fn spread_dates(rows: &mut [OrderRow], days: usize) {
    for (i, row) in rows.iter_mut().enumerate() {
        let at = day(i % days).and_hms_opt(12, 0, 0).unwrap();
        row.order_date = Some(Utc.from_utc_datetime(&at));
    }
}

/// The rows as an orders CSV with `order_id` and `order_date`, in a temp file.
fn dated_csv(rows: &[OrderRow]) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".csv")
        .tempfile()
        .expect("temp csv");
    let mut out = std::io::BufWriter::new(f.as_file_mut());
    writeln!(
        out,
        "order_id,customer_name,customer_email,products,order_date"
    )
    .unwrap();
    for row in rows {
        let items: Vec<String> = row
            .items
            .iter()
            .map(|i| format!(r#"{{""sku"":""{}"",""quantity"":{}}}"#, i.sku, i.quantity))
            .collect();
        let date = row
            .order_date
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        writeln!(
            out,
            "{},{},{},\"[{}]\",{date}",
            row.identity.as_str(),
            row.customer_name,
            row.customer_email,
            items.join(",")
        )
        .unwrap();
    }
    out.flush().unwrap();
    drop(out);
    f
}

/// Decodes an archive file (zstd, then CSV with a header): one map per row.
fn read_archive(path: &Path) -> Vec<BTreeMap<String, String>> {
    let decoder =
        zstd::Decoder::new(std::fs::File::open(path).expect("open archive")).expect("zstd decoder");
    let mut reader = csv::Reader::from_reader(decoder);
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.expect("archive row");
            header
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

async fn archived_count(env: &TestEnv) -> i64 {
    env.scalar("SELECT COUNT(*) FROM archived_orders").await
}

/// The producer's deep and plain reconcile and the rebuilds, as an operator runs them.
fn operator_checks(env: &TestEnv, archived_day: &str) {
    for args in [
        &["reconcile"][..],
        &["reconcile", "--deep"],
        &["kpis", "generate", "--date", archived_day],
        &["kpis", "generate"],
        &["leaderboard", "update"],
        &["reconcile", "--deep"],
    ] {
        let (code, out) = producer_exit_code(env, args);
        assert_eq!(code, 0, "producer {args:?}: {out}");
    }
}

#[tokio::test]
async fn archiving_during_a_live_run_keeps_every_invariant() {
    let n: u64 = std::env::var("OMS_ARCHIVE_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let started = Instant::now();
    let env = TestEnv::new().await;
    let mut work = Workload::new("arch", n, 400, 5_000);
    // 120 KPI days: the first 31 (January) are archived.
    spread_dates(&mut work.rows, 120);
    work.seed(&env).await;
    let initial = work.initial_stock();
    let csv = dated_csv(&work.rows);
    let logs = LogDir::new();
    let import = spawn_import(&env, csv.path(), &[], &logs);
    let args = ["--batch-size", "500"];
    let mut consumers: Vec<ConsumerProc> = (0..2)
        .map(|i| ConsumerProc::spawn(&ConsumerSpec::new(&env, &format!("arch-{i}"), &args), &logs))
        .collect();

    let dir = tempfile::tempdir().expect("temp dir");
    let mut runs: Vec<(String, Value)> = Vec::new();
    for (k, threshold) in [n / 5, n / 2].into_iter().enumerate() {
        wait_for(
            &format!("{threshold} terminal orders"),
            DEADLINE,
            || async { (env.terminal_orders().await >= threshold as i64).then_some(()) },
        )
        .await;
        let file = dir.path().join(format!("run{k}.csv.zst"));
        let file = file.to_str().expect("utf-8").to_string();
        let took = Instant::now();
        let report = producer_json(
            &env,
            &[
                "archive",
                "--before",
                CUTOFF,
                "--to",
                &file,
                "--batch-size",
                "500",
            ],
        );
        eprintln!(
            "archive run {k} while consumers run: {report} in {:?}",
            took.elapsed()
        );
        assert!(report["orders"].as_u64().unwrap() > 0, "{report}");
        runs.push((file, report));
    }
    wait_import(import, &logs, DEADLINE).await;
    wait_settled(&env, n as i64, DEADLINE).await;
    for c in consumers.iter_mut() {
        c.terminate(Duration::from_secs(60));
    }

    // Every archived order is in exactly one file, and nothing terminal before the cutoff
    // was left behind by a run that saw it.
    let mut in_files = 0;
    for (file, report) in &runs {
        let rows = read_archive(Path::new(file));
        assert_eq!(rows.len() as u64, report["orders"].as_u64().unwrap());
        assert!(rows.iter().all(|r| r["kpi_date"].as_str() < CUTOFF));
        in_files += rows.len() as i64;
    }
    assert_eq!(archived_count(&env).await, in_files);
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM archived_orders WHERE kpi_date >= '{CUTOFF}'"
        ))
        .await,
        0
    );

    let v = violations(&env, &initial).await;
    let a = account(&env, &work.identities(), &initial).await;
    let figures = Figures {
        scenario: "archive runs during a live run".into(),
        faults: runs.len(),
        fault_kind: format!("producer archive --before {CUTOFF} with 2 consumers running"),
        ..Figures::default()
    }
    .counted(&a, started.elapsed());
    eprintln!("{figures}; archived {in_files}");
    assert!(v.is_empty(), "invariants violated: {v:#?}");
    figures.assert_clean();
    operator_checks(&env, "2026-01-15");
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "after the rebuilds: {v:#?}");

    // `recover` counts archived orders as accounted for: nothing to enqueue again.
    let recovered = producer_json(&env, &["recover"]);
    assert_eq!(
        recovered["imports"],
        Value::Array(Vec::new()),
        "{recovered}"
    );
    // The import's progress still counts the archived orders.
    let import_id = env.scalar("SELECT MAX(id) FROM imports").await;
    let status = producer_json(&env, &["status", &import_id.to_string()]);
    let import = &status["import"];
    assert_eq!(import["lost"], 0, "{import}");
    assert_eq!(import["done"], true, "{import}");
    assert_eq!(
        import["completed"].as_i64().unwrap() + import["failed_total"].as_i64().unwrap(),
        n as i64,
        "{import}"
    );
}

/// The expected archive rows, read from MySQL with its own formatting (not the code's).
async fn expected_rows(env: &TestEnv) -> BTreeMap<String, BTreeMap<String, String>> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT CAST(o.id AS CHAR), CAST(o.identity AS CHAR), COALESCE(CAST(o.import_id AS CHAR), ''), \
         COALESCE(CAST(o.line AS CHAR), ''), CAST(c.email AS CHAR), c.name, CAST(o.status AS CHAR), \
         COALESCE(o.failure_reason, ''), CAST(o.total AS CHAR), \
         COALESCE(DATE_FORMAT(o.order_date, '%Y-%m-%dT%H:%i:%sZ'), ''), DATE_FORMAT(o.kpi_date, '%Y-%m-%d'), \
         CONCAT(DATE_FORMAT(o.created_at, '%Y-%m-%dT%H:%i:%s.'), LPAD(FLOOR(MICROSECOND(o.created_at) / 1000), 3, '0'), 'Z'), \
         CONCAT(DATE_FORMAT(o.updated_at, '%Y-%m-%dT%H:%i:%s.'), LPAD(FLOOR(MICROSECOND(o.updated_at) / 1000), 3, '0'), 'Z') \
         FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.kpi_date < '{CUTOFF}' AND o.status IN ('completed','failed')"
    ))
    .fetch_all(&env.db)
    .await
    .expect("orders to archive");
    let items: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(&format!(
        "SELECT CAST(i.order_id AS CHAR), CAST(i.sku AS CHAR), CAST(i.quantity AS SIGNED), CAST(i.unit_price AS CHAR) \
         FROM order_items i JOIN orders o ON o.id = i.order_id \
         WHERE o.kpi_date < '{CUTOFF}' AND o.status IN ('completed','failed') ORDER BY i.id"
    ))
    .fetch_all(&env.db)
    .await
    .expect("items to archive");
    let mut by_order: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (order_id, sku, quantity, price) in items {
        by_order
            .entry(order_id)
            .or_default()
            .push(serde_json::json!({
                "sku": sku, "quantity": quantity, "unit_price": price,
            }));
    }
    let columns = [
        "order_id",
        "identity",
        "import_id",
        "line",
        "customer_email",
        "customer_name",
        "status",
        "failure_reason",
        "total",
        "order_date",
        "kpi_date",
        "created_at",
        "updated_at",
    ];
    rows.into_iter()
        .map(|r| {
            let values = [
                r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12,
            ];
            let mut row: BTreeMap<String, String> =
                columns.iter().map(|c| c.to_string()).zip(values).collect();
            let items = by_order.remove(&row["order_id"]).unwrap_or_default();
            row.insert("items".into(), Value::Array(items).to_string());
            (row["identity"].clone(), row)
        })
        .collect()
}

#[tokio::test]
async fn archived_orders_read_back_from_the_file_as_mysql_had_them() {
    let env = TestEnv::new().await;
    env.product("A", "5.00", 100_000).await;
    env.product("B", "12.50", 30).await;
    env.product("C", "0.99", 100_000).await;
    let import = env.import_row().await;
    let mut rows: Vec<OrderRow> = (0..300u64)
        .map(|i| {
            let mut items = vec![("A", 1 + (i % 3) as u32)];
            if i % 4 == 0 {
                items.push(("B", 2));
            }
            if i % 7 == 0 {
                items.push(("C", 3));
            }
            if i % 50 == 3 {
                items.push(("NO-SUCH-SKU", 1));
            }
            let name = format!("c{}@example.com", i % 40);
            order_row(&format!("rb-{i}"), i + 2, &name, &items)
        })
        .collect();
    // 60 KPI days: the first 31 are archived; every tenth order has no order_date (its
    // KPI day is the day it ends: today, kept).
    spread_dates(&mut rows, 60);
    for row in rows.iter_mut().step_by(10) {
        row.order_date = None;
    }
    env.enqueue(import, &rows, 20).await;
    let (consumer, stop) = env.spawn_consumer(env.consumer_config());
    env.wait_until_processed(rows.len() as i64, DEADLINE).await;
    let initial: BTreeMap<String, i64> = [("A", 100_000), ("B", 30), ("C", 100_000)]
        .into_iter()
        .map(|(s, q)| (s.to_string(), q))
        .collect();

    // A reserved order (its settle not run yet) is never archived, whatever its KPI day.
    let mut held = order_row("held-1", 9_999, "held@example.com", &[("A", 1)]);
    held.order_date = rows[1].order_date;
    let today = Utc::now().date_naive();
    oms_shared::store::orders::reserve_stock(&env.db, &batch_rows(import, &[held.clone()]), today)
        .await
        .expect("reserve");
    sqlx::query("UPDATE orders SET kpi_date = '2026-01-02' WHERE identity = 'held-1'")
        .execute(&env.db)
        .await
        .unwrap();

    let expected = expected_rows(&env).await;
    assert!(expected.len() > 100, "{} orders to archive", expected.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jan.csv.zst");
    let report = producer_json(
        &env,
        &[
            "archive",
            "--before",
            CUTOFF,
            "--to",
            file.to_str().unwrap(),
            "--batch-size",
            "7",
        ],
    );
    assert_eq!(
        report["orders"].as_u64().unwrap(),
        expected.len() as u64,
        "{report}"
    );
    assert!(report["batches"].as_u64().unwrap() > 10, "{report}");

    let read: BTreeMap<String, BTreeMap<String, String>> = read_archive(&file)
        .into_iter()
        .map(|r| (r["identity"].clone(), r))
        .collect();
    assert_eq!(read.len(), expected.len());
    for (identity, want) in &expected {
        let got = &read[identity];
        let got_items: Value = serde_json::from_str(&got["items"]).expect("items JSON");
        let want_items: Value = serde_json::from_str(&want["items"]).unwrap();
        assert_eq!(got_items, want_items, "items of {identity}");
        let mut got = got.clone();
        let mut want = want.clone();
        got.remove("items");
        want.remove("items");
        assert_eq!(got, want, "order {identity}");
    }
    // Moved, not copied: gone from orders and order_items, kept in archived_orders.
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE kpi_date < '{CUTOFF}' AND status <> 'reserved'"
        ))
        .await,
        0
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM order_items i LEFT JOIN orders o ON o.id = i.order_id WHERE o.id IS NULL")
            .await,
        0
    );
    assert_eq!(archived_count(&env).await, expected.len() as i64);
    let held_status: (String,) =
        sqlx::query_as("SELECT CAST(status AS CHAR) FROM orders WHERE identity = 'held-1'")
            .fetch_one(&env.db)
            .await
            .expect("the reserved order stays");
    assert_eq!(held_status.0, "reserved");

    // The API's lookup answers `archived` with what archived_orders keeps.
    let some = expected.keys().next().unwrap().clone();
    let found = oms_reports::orders::lookup(&env.redis, &env.db, &env.keys, &some)
        .await
        .unwrap()
        .expect("archived order found");
    assert_eq!(found.state, "archived");
    let archived = found.archived.expect("archived record");
    assert_eq!(archived.total, expected[&some]["total"]);
    assert_eq!(archived.kpi_date, expected[&some]["kpi_date"]);

    // The run is recorded: audit log and settings.
    let (actions, archived_before): (i64, String) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM audit_log WHERE action = 'archive' AND outcome = 'ok' \
         AND arguments LIKE '%archive --before 2026-02-01 --to %'), \
         (SELECT value FROM settings WHERE name = 'archived_before')",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!((actions, archived_before.as_str()), (1, CUTOFF));

    // The held order settles (its redelivery), and everything adds up.
    sqlx::query("UPDATE orders SET kpi_date = NULL WHERE identity = 'held-1'")
        .execute(&env.db)
        .await
        .unwrap();
    env.enqueue(import, &[held], 1).await;
    env.wait_until_processed(rows.len() as i64 + 1, DEADLINE)
        .await;
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "invariants violated: {v:#?}");
    operator_checks(&env, "2026-01-10");
    stop.cancel();
    consumer.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_archived_order_imported_again_or_redelivered_is_not_processed_twice() {
    let env = TestEnv::new().await;
    env.product("A", "4.00", 100_000).await;
    env.product("B", "7.25", 100_000).await;
    let customer = |i: u64| format!("re{}@example.com", i % 7);
    let mut first: Vec<OrderRow> = (0..40u64)
        .map(|i| {
            order_row(
                &format!("re-{i}"),
                i + 2,
                &customer(i),
                &[("A", 1 + (i % 2) as u32)],
            )
        })
        .collect();
    spread_dates(&mut first, 20);
    let (consumer, stop) = env.spawn_consumer(env.consumer_config());
    let logs = LogDir::new();
    let file_a = dated_csv(&first);
    wait_import(
        spawn_import(&env, file_a.path(), &["--wait"], &logs),
        &logs,
        DEADLINE,
    )
    .await;
    env.wait_until_processed(40, DEADLINE).await;
    let import_a = env.scalar("SELECT MAX(id) FROM imports").await as u64;
    let spent_before = env
        .scalar("SELECT CAST(SUM(total_spent) * 100 AS SIGNED) FROM customers")
        .await;
    let counted_before = env.scalar("SELECT SUM(orders_count) FROM customers").await;

    let report = producer_json(&env, &["archive", "--before", CUTOFF, "--delete"]);
    assert_eq!(report["orders"], 40, "{report}");
    assert_eq!(report["file"], Value::Null);
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, 0);

    // Another file with the same order_ids (and five new orders): the archived ones are
    // duplicates of the first import, the new ones are processed.
    let mut second = first.clone();
    second.extend((0..5u64).map(|i| order_row(&format!("new-{i}"), 0, &customer(i), &[("B", 1)])));
    for (i, row) in second.iter_mut().enumerate() {
        row.line = i as u64 + 2;
    }
    let file_b = dated_csv(&second);
    wait_import(
        spawn_import(&env, file_b.path(), &["--wait"], &logs),
        &logs,
        DEADLINE,
    )
    .await;
    let import_b = env.scalar("SELECT MAX(id) FROM imports").await as u64;
    assert_ne!(import_a, import_b);
    env.wait_until_processed(45, DEADLINE).await;
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM import_duplicates WHERE import_id = {import_b}"
        ))
        .await,
        40,
        "the archived orders are duplicates"
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE identity LIKE 're-%'")
            .await,
        0,
        "no archived order is inserted again"
    );
    let new_spent = env
        .scalar("SELECT CAST(SUM(total) * 100 AS SIGNED) FROM orders WHERE status = 'completed'")
        .await;
    let new_completed = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
        .await;
    assert_eq!(
        env.scalar("SELECT CAST(SUM(total_spent) * 100 AS SIGNED) FROM customers")
            .await,
        spent_before + new_spent
    );
    assert_eq!(
        env.scalar("SELECT SUM(orders_count) FROM customers").await,
        counted_before + new_completed
    );

    // The first import's entries delivered again (same import and line): no-ops.
    env.enqueue(import_a, &first, 10).await;
    env.wait_until_processed(45, DEADLINE).await;
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, 5);
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM import_duplicates WHERE import_id = {import_a}"
        ))
        .await,
        0
    );
    let initial: BTreeMap<String, i64> = [("A", 100_000), ("B", 100_000)]
        .into_iter()
        .map(|(s, q)| (s.to_string(), q))
        .collect();
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "invariants violated: {v:#?}");
    let expected = first
        .iter()
        .chain(&second)
        .map(|r| r.identity.as_str().to_string())
        .collect();
    let a = account(&env, &expected, &initial).await;
    assert_eq!((a.lost, a.doubled, a.unexpected), (0, 0, 0), "{a:?}");
    operator_checks(&env, "2026-01-05");
    stop.cancel();
    consumer.await.unwrap().unwrap();
}

/// Inserts an order of `customer` as the workflow leaves it: `status` with `kpi_date` (a
/// `reserved` order has none); returns its id.
async fn insert_order(
    env: &TestEnv,
    identity: &str,
    customer: u64,
    status: &str,
    kpi: Option<NaiveDate>,
) -> u64 {
    sqlx::query(
        "INSERT INTO orders (identity, customer_id, status, total, order_date, kpi_date) \
         VALUES (?, ?, ?, 1.00, ?, ?)",
    )
    .bind(identity)
    .bind(customer)
    .bind(status)
    .bind(kpi.unwrap_or(day(0)).and_hms_opt(12, 0, 0))
    .bind(kpi)
    .execute(&env.db)
    .await
    .expect("insert order")
    .last_insert_id()
}

#[tokio::test]
async fn an_order_that_ends_after_the_run_passed_its_day_is_archived_by_the_same_run() {
    use oms_shared::store::archive::ArchiveScan;
    let env = TestEnv::new().await;
    let customer =
        sqlx::query("INSERT INTO customers (email, name) VALUES ('late@example.com', 'Late')")
            .execute(&env.db)
            .await
            .expect("insert customer")
            .last_insert_id();
    for i in 0..6 {
        insert_order(
            &env,
            &format!("early-{i}"),
            customer,
            "completed",
            Some(day(i % 3)),
        )
        .await;
    }
    let late = insert_order(&env, "late", customer, "reserved", None).await;
    let cutoff = NaiveDate::parse_from_str(CUTOFF, "%Y-%m-%d").unwrap();
    let mut scan = ArchiveScan::new(cutoff, 2);
    let mut moved = Vec::new();
    while let Some(batch) = scan.next_batch(&env.db).await.expect("batch") {
        moved.extend(batch.orders.iter().map(|o| o.identity.clone()));
        batch.commit().await.expect("commit");
        if moved.len() == 2 {
            // The walk is past day 0 now: the reserved order ends with that KPI day.
            sqlx::query("UPDATE orders SET status = 'completed', kpi_date = ? WHERE id = ?")
                .bind(day(0))
                .bind(late)
                .execute(&env.db)
                .await
                .expect("settle the late order");
        }
    }
    assert_eq!(moved.len(), 7, "{moved:?}");
    assert!(moved.contains(&"late".to_string()), "{moved:?}");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, 0);
    assert_eq!(archived_count(&env).await, 7);
}
