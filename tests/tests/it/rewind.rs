//! MySQL going back in time (restored from a backup, failed over to a lagging replica).
//!
//! - A dump taken mid-run and restored while a consumer keeps running: the consumer
//!   detects it (log, `/readyz`, `oms_mysql_history_rewound`) and settles nothing more,
//!   `producer reconcile` exits 1 naming both numbers; after `producer reconcile --fix`
//!   the consumer resumes by itself, the new orders are counted — also those whose
//!   outbox ids the old history had applied — and the invariants and `reconcile` are
//!   clean.
//! - The settle transaction itself refuses an outbox id that is not above the applied
//!   mark it is given, and rolls back.
//! - The reset script (`Rebuild::finish_with_reset`) against real Redis: rows applied
//!   during its lease above the snapshot count once and stay recorded, the old history's
//!   record is forgotten (a new-history row it had skipped counts once afterwards).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use oms_shared::order::OrderRow;
use oms_shared::OmsError;
use oms_tests::api_client::get_at;
use oms_tests::invariants::{
    producer_exit_code, read_model_violations, reconcile_exit_code, stock_snapshot, violations,
    wait_settled,
};
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::{order_row, wait_for, TestEnv};

const DEADLINE: Duration = Duration::from_secs(90);

fn batch(name: &str, first_line: u64, n: u64) -> Vec<OrderRow> {
    (0..n)
        .map(|i| {
            let email = format!("{name}-{}@example.com", i % 7);
            let items: &[(&str, u32)] = if i % 2 == 0 {
                &[("A", 1)]
            } else {
                &[("A", 2), ("B", 1)]
            };
            order_row(&format!("{name}-{i}"), first_line + i, &email, items)
        })
        .collect()
}

/// `mysql://user[:password]@host:port/database` as the client tools' arguments.
fn client_args(database_url: &str) -> (Vec<String>, String) {
    let url = url::Url::parse(database_url).expect("DATABASE_URL");
    let mut args = vec![
        format!("--host={}", url.host_str().unwrap_or("127.0.0.1")),
        format!("--port={}", url.port().unwrap_or(3306)),
        "--protocol=TCP".to_string(),
        format!("--user={}", url.username()),
    ];
    if let Some(password) = url.password() {
        args.push(format!("--password={password}"));
    }
    let database = url.path().trim_start_matches('/').to_string();
    (args, database)
}

/// The first of `names` found on the PATH.
fn client_tool(names: &[&str]) -> String {
    names
        .iter()
        .find(|n| {
            Command::new("sh")
                .args(["-c", &format!("command -v {n}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| panic!("none of {names:?} is installed"))
        .to_string()
}

/// A consistent dump of the test database, as a backup would take it.
fn dump(env: &TestEnv) -> Vec<u8> {
    let (args, database) = client_args(&env.config.database_url);
    let out = Command::new(client_tool(&["mariadb-dump", "mysqldump"]))
        .args(&args)
        .args(["--single-transaction", "--skip-lock-tables", "--routines"])
        .arg(&database)
        .output()
        .expect("run the dump tool");
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Restores `dump` into the test database, in place (each table dropped and recreated
/// from the dump), as `mysql DB < backup.sql` does, while the consumers keep running.
fn restore(env: &TestEnv, dump: &[u8]) {
    use std::io::Write;
    let (args, database) = client_args(&env.config.database_url);
    let mut child = Command::new(client_tool(&["mariadb", "mysql"]))
        .args(&args)
        .arg(&database)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dump)
        .expect("feed the dump");
    let out = child.wait_with_output().expect("client exit");
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn sequence(env: &TestEnv) -> i64 {
    env.scalar("SELECT last_id FROM read_model_sequence WHERE id = 1")
        .await
}

async fn completed(env: &TestEnv) -> i64 {
    env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
        .await
}

async fn kpi_total_orders(env: &TestEnv) -> i64 {
    let mut conn = env.redis_conn().await;
    oms_shared::redis::read_model::read_kpis(&mut *conn, &env.keys.kpi_total())
        .await
        .expect("kpi total")
        .unwrap_or_default()
        .order_count
}

async fn body(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    get_at(addr, path).await.map(|r| (r.status, r.text()))
}

async fn gauge(addr: SocketAddr) -> Option<String> {
    let (_, text) = body(addr, "/metrics").await?;
    text.lines()
        .find(|l| l.starts_with("oms_mysql_history_rewound "))
        .map(|l| {
            l.trim_start_matches("oms_mysql_history_rewound ")
                .to_string()
        })
}

#[tokio::test]
async fn mysql_restored_from_a_dump_mid_run_is_detected_and_reconcile_fix_counts_new_orders() {
    let env = TestEnv::new().await;
    env.product("A", "3.50", 100_000).await;
    env.product("B", "12.25", 100_000).await;
    let initial_stock = stock_snapshot(&env).await;
    let import = env.import_row().await;
    let logs = LogDir::new();
    // One entry (10 rows) per batch: one outbox id per entry, so ids climb with the work.
    let spec = ConsumerSpec::new(
        &env,
        "rewind",
        &["--claim-idle-secs", "2", "--batch-size", "10"],
    );
    let consumer = ConsumerProc::spawn(&spec, &logs);
    let addr = consumer.metrics_addr(DEADLINE).await;

    // Batch 1, then the backup.
    env.enqueue(import, &batch("one", 1, 40), 10).await;
    wait_settled(&env, 40, DEADLINE).await;
    let backup = dump(&env);
    let sequence_at_backup = sequence(&env).await;
    assert!(sequence_at_backup > 0, "batch 1 completed orders");

    // Batch 2 after the backup: Redis applies ids above the backup's sequence, more of
    // them than batches 3 and 4 take together.
    env.enqueue(import, &batch("two", 41, 100), 10).await;
    wait_settled(&env, 140, DEADLINE).await;
    let applied_before_restore = sequence(&env).await;
    assert!(applied_before_restore > sequence_at_backup);
    assert_eq!(read_model_violations(&env).await, Vec::<String>::new());

    // The restore, while the consumer runs; then batch 3 arrives.
    restore(&env, &backup);
    assert_eq!(sequence(&env).await, sequence_at_backup);
    let completed_after_restore = completed(&env).await;
    env.enqueue(import, &batch("three", 141, 20), 10).await;

    let message = format!(
        "MySQL went back in time: its outbox sequence is {sequence_at_backup} but Redis \
         applied up to {applied_before_restore}"
    );
    wait_for("the consumer's ERROR line", DEADLINE, || {
        let log = consumer.log();
        let message = message.clone();
        async move {
            log.lines()
                .any(|l| l.contains("ERROR") && l.contains(&message))
                .then_some(())
        }
    })
    .await;
    let (status, text) = body(addr, "/readyz").await.expect("/readyz answers");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains(&message), "{text}");
    assert_eq!(gauge(addr).await.as_deref(), Some("1"));

    // The consumer settles nothing while rewound (its intake stops; held entries stay
    // pending). Observed across a redelivery period (--claim-idle-secs 2).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(sequence(&env).await, sequence_at_backup, "nothing settled");
    assert_eq!(completed(&env).await, completed_after_restore);
    let (code, out) = reconcile_exit_code(&env);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{message} (restored from a backup or failed over to a lagging replica?); \
             run `producer reconcile --fix`"
        )),
        "{out}"
    );
    // The other rebuilds refuse, naming the fix.
    let (code, out) = producer_exit_code(&env, &["kpis", "generate"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("reconcile --fix"), "{out}");

    // The operator's fix: the consumer resumes by itself and batch 3 is counted.
    let (_, out) = producer_exit_code(&env, &["reconcile", "--fix"]);
    assert!(out.contains("applied record reset"), "{out}");
    wait_for("/readyz to say ready again", DEADLINE, || async {
        body(addr, "/readyz")
            .await
            .filter(|(status, _)| *status == 200)
    })
    .await;
    assert_eq!(gauge(addr).await.as_deref(), Some("0"));
    // 40 of batch 1 (restored) + 20 of batch 3; batch 2 is lost with the restore.
    wait_settled(&env, 60, DEADLINE).await;
    assert_eq!(kpi_total_orders(&env).await, completed(&env).await);
    // Batch 4 after the fix: its ids are still below the old history's mark, and are
    // counted all the same (the record was reset).
    env.enqueue(import, &batch("four", 161, 20), 10).await;
    wait_settled(&env, 80, DEADLINE).await;
    assert!(
        sequence(&env).await < applied_before_restore,
        "batch 4 took ids the old history had applied"
    );
    let identities: Vec<(String,)> = sqlx::query_as(
        "SELECT CAST(identity AS CHAR) FROM orders WHERE status IN ('completed','failed')",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    let identities: BTreeSet<String> = identities.into_iter().map(|(i,)| i).collect();
    for row in batch("three", 141, 20)
        .iter()
        .chain(&batch("four", 161, 20))
    {
        assert!(
            identities.contains(&row.identity.to_string()),
            "{} not processed",
            row.identity
        );
    }
    let v = violations(&env, &initial_stock).await;
    assert!(v.is_empty(), "{v:#?}");
    assert_eq!(kpi_total_orders(&env).await, completed(&env).await);
    let (code, out) = reconcile_exit_code(&env);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn a_settle_whose_outbox_id_is_not_above_the_applied_mark_rolls_back() {
    use oms_shared::order::payment::PaymentSimulator;
    use oms_shared::store::orders::{reserve_stock, settle_payments_checked};
    let env = TestEnv::new().await;
    env.product("A", "3.50", 100).await;
    let import = env.import_row().await;
    let rows = batch("solo", 1, 3);
    let batch_rows = oms_tests::batch_rows(import, &rows);
    let today = chrono::Utc::now().date_naive();
    let reserved = reserve_stock(&env.db, &batch_rows, today).await.unwrap();
    assert!(!reserved.reserved.is_empty());
    let approve_all = PaymentSimulator::new(1.0, 0).unwrap();
    // Redis applied up to 5 while MySQL's sequence is 0: the next id, 1, is not new.
    let err = settle_payments_checked(&env.db, &reserved.reserved, &approve_all, today, 5)
        .await
        .expect_err("a rewound history");
    assert!(
        matches!(
            err,
            OmsError::HistoryRewound {
                sequence: 0,
                applied: 5
            }
        ),
        "{err}"
    );
    assert!(!err.is_transient() && !err.never_succeeds());
    assert_eq!(sequence(&env).await, 0, "the id was given back");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'reserved'")
            .await,
        reserved.reserved.len() as i64,
        "rolled back: still reserved"
    );
    // Above the mark: settles.
    let settled = settle_payments_checked(&env.db, &reserved.reserved, &approve_all, today, 0)
        .await
        .unwrap();
    assert_eq!(settled.outbox_id, Some(1));
}

#[tokio::test]
async fn the_reset_keeps_the_rows_applied_during_its_lease_and_forgets_the_old_history() {
    use oms_shared::kpi::{CompletedOrder, KpiFigures};
    use oms_shared::money::Cents;
    use oms_shared::redis::read_model::{
        apply_outbox, read_applied_mark, read_kpis, AppliedMark, Rebuild,
    };
    use oms_shared::store::outbox::OutboxSnapshot;
    let env = TestEnv::new().await;
    let keys = &env.keys;
    let mut conn = env.redis_conn().await;
    let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
    let order = |cents: i64| {
        vec![CompletedOrder {
            kpi_day: day,
            email: "ann@example.com".into(),
            total: Cents(cents),
        }]
    };
    let total = |figures: Option<KpiFigures>| {
        let f = figures.unwrap_or_default();
        (f.order_count, f.revenue.0)
    };
    // The history that went away: ids 1..=20 applied, 100 cents each.
    for id in 1..=20 {
        assert!(
            apply_outbox(&mut *conn, keys, id, &order(100))
                .await
                .unwrap()
                .now
        );
    }
    // MySQL restored at sequence 10 (ids 1..=10, 100 cents each; row 10 not deleted yet).
    let rebuild = Rebuild::begin(&env.redis, keys).await.unwrap();
    // During the lease: id 11 of the new history meets the old record (skipped, not
    // logged: its row stays for the sweeper); id 21 is applied and logged.
    assert!(
        !apply_outbox(&mut *conn, keys, 11, &order(7))
            .await
            .unwrap()
            .now
    );
    assert!(
        apply_outbox(&mut *conn, keys, 21, &order(5))
            .await
            .unwrap()
            .now
    );
    let snapshot = OutboxSnapshot {
        through: 10,
        rows: vec![(10, serde_json::to_string(&order(100)).unwrap())],
    };
    let values = KpiFigures {
        order_count: 10,
        revenue: Cents(1000),
    };
    let board = vec![("ann@example.com".to_string(), Cents(1000))];
    rebuild
        .finish_with_reset(
            &mut *conn,
            &snapshot,
            &[(keys.kpi_total(), values, false)],
            (&board, day),
        )
        .await
        .unwrap();
    // The snapshot's values, plus the row logged above its sequence; row 10 not
    // subtracted (the reset records it as applied).
    assert_eq!(
        total(read_kpis(&mut *conn, &keys.kpi_total()).await.unwrap()),
        (11, 1005)
    );
    assert_eq!(
        read_applied_mark(&mut *conn, keys).await.unwrap(),
        AppliedMark {
            generation: 1,
            applied_max: 21
        }
    );
    // Afterwards: row 10 and row 21 are no-ops, row 11 (left by its owner) counts once.
    assert!(
        !apply_outbox(&mut *conn, keys, 10, &order(100))
            .await
            .unwrap()
            .now
    );
    assert!(
        !apply_outbox(&mut *conn, keys, 21, &order(5))
            .await
            .unwrap()
            .now
    );
    assert!(
        apply_outbox(&mut *conn, keys, 11, &order(7))
            .await
            .unwrap()
            .now
    );
    assert!(
        !apply_outbox(&mut *conn, keys, 11, &order(7))
            .await
            .unwrap()
            .now
    );
    assert_eq!(
        total(read_kpis(&mut *conn, &keys.kpi_total()).await.unwrap()),
        (12, 1012)
    );
    let leaderboard = oms_shared::redis::read_model::read_leaderboard(&mut *conn, keys, 0)
        .await
        .unwrap();
    assert_eq!(
        leaderboard,
        vec![("ann@example.com".to_string(), Cents(1012))]
    );
}
