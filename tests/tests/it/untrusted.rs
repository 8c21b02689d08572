//! Stream entries are untrusted and every message has a bound: forged entries and rows are
//! dead-lettered once with their reason (consumer alive, memory bounded), errors that never
//! heal reach the dead letters after `--max-attempts`, spellings MySQL used to fold never
//! stall a batch, and SIGTERM during a retry exits in time leaving the batch pending.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oms_shared::order::{OrderIdentity, OrderItem, OrderRow};
use oms_shared::redis::queue::DeadLetter;
use oms_tests::{binary, order_row, wait_for, TestEnv};

const DEADLINE: Duration = Duration::from_secs(90);

fn spawn_consumer_process(env: &TestEnv, name: &str, extra: &[&str], log: &str) -> Child {
    Command::new(binary("consumer"))
        .args(["--name", name, "--metrics-addr", "127.0.0.1:0"])
        .args(["--payment-success-rate", "1.0"])
        .args(extra)
        .envs(env.env_vars())
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consumer")
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Peak resident memory of a running process, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

/// Writes one entry with the given fields straight to the stream, as anyone could.
async fn xadd(env: &TestEnv, fields: &[(&str, &[u8])]) -> String {
    let mut conn = env.redis_conn().await;
    oms_shared::redis::queue::ensure_group(&mut *conn, &env.keys)
        .await
        .unwrap();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(env.keys.orders()).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(&mut *conn).await.expect("xadd")
}

async fn xadd_rows(env: &TestEnv, import: u64, rows: &[u8]) -> String {
    xadd(
        env,
        &[
            ("v", b"1"),
            ("import", import.to_string().as_bytes()),
            ("rows", rows),
        ],
    )
    .await
}

async fn dead_letters(env: &TestEnv) -> Vec<DeadLetter> {
    let mut conn = env.redis_conn().await;
    oms_shared::redis::queue::all_dead_letters(&mut *conn, &env.keys)
        .await
        .unwrap()
}

/// Waits until `n` dead letters exist and nothing is pending or unread.
async fn wait_for_dead_letters(env: &TestEnv, n: usize, deadline: Duration) -> Vec<DeadLetter> {
    wait_for(
        &format!("{n} dead letters and an empty PEL"),
        deadline,
        || async {
            let dead = dead_letters(env).await;
            let mut conn = env.redis_conn().await;
            let stats = oms_shared::redis::queue::group_stats(&mut *conn, &env.keys)
                .await
                .ok()?;
            (dead.len() >= n && stats.pending == 0 && stats.lag == Some(0)).then_some(dead)
        },
    )
    .await
}

fn row_with_items(identity: &str, line: u64, items: Vec<OrderItem>) -> OrderRow {
    let mut row = order_row(identity, line, "forger@example.com", &[]);
    row.items = items;
    row
}

fn item(sku: &str, quantity: u32) -> OrderItem {
    OrderItem {
        sku: sku.into(),
        quantity,
    }
}

#[tokio::test]
async fn forged_entries_and_rows_are_dead_lettered_once_with_their_reason() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1_000).await;
    // The price (2^34 cents) and the largest DECIMAL(12,2) price.
    env.product("WRAP", "171798691.84", 1_000_000).await;
    env.product("BIG", "9999999999.99", 1_000_000).await;
    let import = env.import_row().await;

    // 17 MB, 200,000 rows in one entry.
    let huge: Vec<OrderRow> = (0..200_000u64)
        .map(|i| order_row(&format!("huge{i}"), i + 2, "h@example.com", &[("A", 1)]))
        .collect();
    let huge = serde_json::to_vec(&huge).unwrap();
    assert!(huge.len() > 16_000_000, "{} bytes", huge.len());
    let huge_id = xadd_rows(&env, import, &huge).await;
    drop(huge);
    // One order of 300,000 items.
    let wide = vec![row_with_items(
        "wide",
        2,
        (0..300_000).map(|i| item(&format!("S{i}"), 1)).collect(),
    )];
    let wide_id = xadd_rows(&env, import, &serde_json::to_vec(&wide).unwrap()).await;
    let empty_id = xadd_rows(&env, import, b"[]").await;
    let version_id = xadd(&env, &[("v", b"9"), ("import", b"1"), ("rows", b"[]")]).await;
    // Forged rows beside a healthy one, in one entry.
    let rows = vec![
        row_with_items("overflow", 2, vec![item("WRAP", 1_073_741_824)]),
        row_with_items("no-items", 3, vec![]),
        row_with_items("twice", 4, vec![item("A", 600), item("A", 600)]),
        row_with_items("too-big", 5, vec![item("BIG", 10_000)]),
        order_row("healthy", 6, "ok@example.com", &[("A", 2)]),
    ];
    xadd_rows(&env, import, &serde_json::to_vec(&rows).unwrap()).await;

    let mut consumer = spawn_consumer_process(
        &env,
        "untrusting",
        &["--claim-idle-secs", "1", "--max-attempts", "3"],
        "warn",
    );
    let dead = wait_for_dead_letters(&env, 8, DEADLINE).await;
    env.wait_until_processed(1, DEADLINE).await;
    assert!(
        consumer.try_wait().unwrap().is_none(),
        "the consumer is still running"
    );
    let peak = peak_rss_mib(consumer.id());
    println!("consumer peak RSS: {peak:.1} MiB");
    sigterm(&consumer);
    assert!(consumer.wait().unwrap().success());

    let by_source =
        |id: &str| -> Vec<&DeadLetter> { dead.iter().filter(|d| d.source_id == id).collect() };
    for (id, reason) in [
        (&huge_id, "more than 4194304"),
        (&wide_id, "more than 4194304"),
        (&empty_id, "no rows"),
        (&version_id, "unknown version"),
    ] {
        let letters = by_source(id);
        assert_eq!(letters.len(), 1, "{id} dead-lettered once: {letters:?}");
        assert!(letters[0].error.contains(reason), "{}", letters[0].error);
        assert_eq!(letters[0].attempts, 1);
        assert!(
            letters[0].row.len() < 100_000,
            "only a stub of the payload is kept"
        );
    }
    for (identity, reason) in [
        ("overflow", "invalid_quantity"),
        ("no-items", "invalid_products"),
        ("twice", "duplicate_sku"),
        ("too-big", "total_overflow"),
    ] {
        let letters: Vec<&DeadLetter> = dead.iter().filter(|d| d.identity == identity).collect();
        assert_eq!(letters.len(), 1, "{identity} dead-lettered once: {dead:?}");
        assert!(letters[0].error.contains(reason), "{}", letters[0].error);
        assert_eq!(letters[0].attempts, 1, "never retried");
        let replayable: OrderRow = serde_json::from_str(&letters[0].row).expect("full row");
        assert_eq!(replayable.identity, OrderIdentity::from_order_id(identity));
    }
    assert_eq!(dead.len(), 8, "{dead:?}");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders").await,
        1,
        "only the healthy order was written"
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed' AND total = 2.00")
            .await,
        1
    );
    assert_eq!(
        env.scalar("SELECT stock_quantity FROM products WHERE sku = 'A'")
            .await,
        998
    );
    assert!(peak < 150.0, "peak RSS {peak:.1} MiB");
}

/// Makes inserting order `identity` fail with MySQL error `errno` (1290: the server is
/// read-only, which the consumer treats as transient; 1644: a permanent fault).
async fn inject_fault(env: &TestEnv, trigger: &str, condition: &str, errno: u32) {
    let sql = format!(
        "CREATE TRIGGER {trigger} BEFORE INSERT ON orders FOR EACH ROW \
         IF {condition} THEN SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = {errno}, \
         MESSAGE_TEXT = 'injected fault {errno}'; END IF"
    );
    sqlx::raw_sql(&sql).execute(&env.db).await.expect(&sql);
}

#[tokio::test]
async fn errors_that_never_heal_reach_the_dead_letters_after_max_attempts() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 100).await;
    inject_fault(&env, "stuck_fault", "NEW.identity = 'stuck'", 1290).await;
    inject_fault(&env, "broken_fault", "NEW.identity = 'broken'", 1644).await;
    let import = env.import_row().await;
    let rows = vec![
        order_row("stuck", 2, "s@example.com", &[("A", 1)]),
        order_row("healthy1", 3, "h1@example.com", &[("A", 1)]),
        order_row("healthy2", 4, "h2@example.com", &[("A", 1)]),
        order_row("broken", 5, "b@example.com", &[("A", 1)]),
    ];
    env.enqueue(import, &rows, 2).await;
    let mut config = env.consumer_config();
    config.claim_idle_secs = 1;
    config.max_attempts = 3;
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);

    let dead = wait_for_dead_letters(&env, 2, DEADLINE).await;
    env.wait_until_processed(2, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    let mut got: Vec<(&str, u64)> = dead
        .iter()
        .map(|d| (d.identity.as_str(), d.attempts))
        .collect();
    got.sort();
    assert_eq!(got, vec![("broken", 3), ("stuck", 3)], "{dead:?}");
    for d in &dead {
        assert!(
            d.error.contains("injected fault"),
            "last error kept: {}",
            d.error
        );
        let row: OrderRow = serde_json::from_str(&d.row).expect("full row, replayable");
        assert_eq!(row.identity.as_str(), d.identity);
    }
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        2,
        "the healthy rows of both entries completed"
    );
    let mut conn = env.redis_conn().await;
    let notes: u64 = redis::cmd("HLEN")
        .arg(env.keys.message_errors())
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(notes, 0, "no entry is left with an error note");
}

#[tokio::test]
async fn spellings_mysql_used_to_fold_are_distinct_customers_and_never_stall() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1_000).await;
    let import = env.import_row().await;
    let pairs = [
        ("jose@x.de", "josé@x.de"),
        ("strasse@x.de", "straße@x.de"),
        ("jose@y.de", "ｊｏｓｅ@y.de"),
        ("jose@z.de", "jo\u{ad}se@z.de"),
        ("😀@x.de", "😃@x.de"),
    ];
    let mut rows = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        let line = 2 + 3 * i as u64;
        rows.push(order_row(&format!("p{i}a"), line, a, &[("A", 1)]));
        rows.push(order_row(&format!("p{i}b"), line + 1, b, &[("A", 1)]));
        let healthy = format!("healthy{i}@example.com");
        rows.push(order_row(
            &format!("p{i}h"),
            line + 2,
            &healthy,
            &[("A", 1)],
        ));
    }
    env.enqueue(import, &rows, 3).await;
    let mut config = env.consumer_config();
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);
    // Without one rule the entries retry for ever; with it they end at once.
    env.wait_until_processed(15, Duration::from_secs(30)).await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    assert!(dead_letters(&env).await.is_empty());
    let stored: Vec<(String,)> =
        sqlx::query_as("SELECT CAST(email AS CHAR) FROM customers ORDER BY email")
            .fetch_all(&env.db)
            .await
            .unwrap();
    let stored: std::collections::BTreeSet<String> = stored.into_iter().map(|(e,)| e).collect();
    for (a, b) in pairs {
        assert!(
            stored.contains(a) && stored.contains(b),
            "{a} and {b}: {stored:?}"
        );
        let orders = env
            .scalar(&format!(
                "SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id \
                 WHERE c.email = '{b}' AND o.status = 'completed'"
            ))
            .await;
        assert_eq!(orders, 1, "{b} has its own order");
    }
    assert_eq!(stored.len(), 15);
    // The leaderboard and MySQL agree member by member.
    let mut conn = env.redis_conn().await;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(env.keys.leaderboard())
        .arg(0)
        .arg(-1)
        .query_async(&mut *conn)
        .await
        .unwrap();
    let members: std::collections::BTreeSet<String> = members.into_iter().collect();
    assert_eq!(members, stored);
}

#[tokio::test]
async fn sigterm_during_a_retry_exits_in_time_and_leaves_the_batch_pending() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 100).await;
    inject_fault(&env, "read_only", "TRUE", 1290).await;
    let import = env.import_row().await;
    let rows: Vec<OrderRow> = (0..20u64)
        .map(|i| order_row(&format!("t{i}"), i + 2, "t@example.com", &[("A", 1)]))
        .collect();
    env.enqueue(import, &rows, 10).await;
    let mut child = spawn_consumer_process(
        &env,
        "retrying",
        &["--claim-idle-secs", "120", "--shutdown-timeout-secs", "20"],
        "info,consumer=debug",
    );
    let rx = oms_tests::procs::stderr_lines(&mut child);
    let started = Instant::now();
    loop {
        let line = rx
            .recv_timeout(DEADLINE.saturating_sub(started.elapsed()))
            .expect("the consumer logs a retry");
        if line.contains("transient error, retrying") {
            break;
        }
    }
    let signalled = Instant::now();
    sigterm(&child);
    let status = wait_for("exit after SIGTERM", Duration::from_secs(30), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // Required: within --shutdown-timeout-secs + 5 s. It does better: the retrying batch
    // gives up after a few tries instead of holding the exit until the timeout aborts it.
    assert!(
        took <= Duration::from_secs(10),
        "exited {took:?} after SIGTERM: the retry held the exit until the shutdown timeout"
    );
    let mut conn = env.redis_conn().await;
    let stats = oms_shared::redis::queue::group_stats(&mut *conn, &env.keys)
        .await
        .unwrap();
    assert_eq!(
        stats.pending, 2,
        "the batch stays pending for another consumer"
    );
    assert!(dead_letters(&env).await.is_empty(), "nothing dead-lettered");

    // Healed, another consumer takes the entries over and finishes them.
    sqlx::raw_sql("DROP TRIGGER read_only")
        .execute(&env.db)
        .await
        .unwrap();
    let mut config = env.consumer_config();
    config.claim_idle_secs = 1;
    let (handle, stop) = env.spawn_consumer(config);
    env.wait_until_processed(20, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    assert!(dead_letters(&env).await.is_empty());
}

/// An entry whose import is not in MySQL (written for another database, or an import MySQL
/// no longer has) can never be processed: its rows are dead-lettered at their first
/// delivery, naming the import's foreign key, not retried `--max-attempts` times a claim
/// period apart; the other entries of the batch complete.
#[tokio::test]
async fn rows_of_an_import_mysql_does_not_have_are_dead_lettered_at_once() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 100).await;
    let import = env.import_row().await;
    let unknown = import + 1_000_000;
    env.enqueue(
        unknown,
        &[
            order_row("orphan1", 2, "o1@example.com", &[("A", 1)]),
            order_row("orphan2", 3, "o2@example.com", &[("A", 1)]),
        ],
        2,
    )
    .await;
    env.enqueue(
        import,
        &[order_row("healthy", 2, "h@example.com", &[("A", 1)])],
        1,
    )
    .await;
    let mut config = env.consumer_config();
    // A retry would come a claim period later: far beyond the deadline below.
    config.claim_idle_secs = 120;
    config.max_attempts = 3;
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);

    let dead = wait_for_dead_letters(&env, 2, Duration::from_secs(60)).await;
    env.wait_until_processed(1, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    let mut got: Vec<(&str, u64, u64)> = dead
        .iter()
        .map(|d| (d.identity.as_str(), d.import_id, d.attempts))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![("orphan1", unknown, 1), ("orphan2", unknown, 1)],
        "{dead:?}"
    );
    for d in &dead {
        assert!(d.error.contains("fk_orders_import"), "{}", d.error);
    }
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        1,
        "the healthy entry completed"
    );
}

/// An identity carrying a newline and an ESC sequence cannot forge a line in, or colour,
/// the consumer's log: every control character of a logged field is written `\u{XXXX}`.
#[tokio::test]
async fn control_characters_of_a_row_cannot_forge_a_consumer_log_line() {
    use std::io::Read;
    let env = TestEnv::new().await;
    let import = env.import_row().await;
    let forged = "forged\n2026-12-04T00:00:00Z ERROR consumer: FAKE LINE \u{1b}[31mred";
    let rows = vec![row_with_items(forged, 2, vec![])];
    xadd_rows(&env, import, &serde_json::to_vec(&rows).unwrap()).await;
    let mut consumer = spawn_consumer_process(&env, "log-forger", &[], "warn");
    wait_for_dead_letters(&env, 1, DEADLINE).await;
    sigterm(&consumer);
    let mut log = String::new();
    consumer
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(consumer.wait().unwrap().success());
    assert!(log.contains("row refused"), "{log}");
    assert!(
        log.contains(
            "forged\\u{000a}2026-12-04T00:00:00Z ERROR consumer: FAKE LINE \\u{001b}[31mred"
        ),
        "the identity is logged escaped: {log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("2026-12-04T00:00:00Z")),
        "a forged line: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "a raw ESC reached the log: {log:?}"
    );
}
