//! Delivery guarantees of the consumer: retries and dead letters, poison isolation,
//! concurrency on a hot sku, SIGKILL mid-batch (and between commit and apply: a stopping
//! consumer applies the row left behind), SIGTERM drain, payment determinism.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use oms_tests::invariants::{read_model_violations, read_models_final, stock_snapshot, violations};
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::{binary, order_row, wait_for, TestEnv};

const DEADLINE: Duration = Duration::from_secs(120);

fn spawn_consumer_process(env: &TestEnv, name: &str, extra: &[&str]) -> Child {
    Command::new(binary("consumer"))
        .args([
            "--name",
            name,
            "--metrics-addr",
            "127.0.0.1:0",
            "--payment-seed",
            "3",
        ])
        .args(extra)
        .envs(env.env_vars())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consumer")
}

fn many_rows(n: u64, skus: u32) -> Vec<oms_shared::order::OrderRow> {
    (0..n)
        .map(|i| {
            let sku = format!("S{}", i % u64::from(skus));
            let hot = "S0".to_string();
            let items: Vec<(&str, u32)> = if sku == hot {
                vec![(&hot, 1)]
            } else {
                vec![(&hot, 1), (&sku, 2)]
            };
            let items: Vec<(String, u32)> =
                items.into_iter().map(|(s, q)| (s.to_string(), q)).collect();
            let refs: Vec<(&str, u32)> = items.iter().map(|(s, q)| (s.as_str(), *q)).collect();
            order_row(
                &format!("m{i}"),
                i + 2,
                &format!("c{}@example.com", i % 50),
                &refs,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_row_breaking_a_limit_is_dead_lettered_at_once_and_its_chunk_completes() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 100).await;
    let import = env.import_row().await;
    let mut poison = order_row("p2", 3, "p@example.com", &[("A", 1)]);
    poison.customer_name = "x".repeat(300); // longer than the 255 characters allowed
    let rows = vec![
        order_row("p1", 2, "a@example.com", &[("A", 1)]),
        poison,
        order_row("p3", 4, "b@example.com", &[("A", 1)]),
    ];
    env.enqueue(import, &rows, 3).await;
    let mut config = env.consumer_config();
    config.claim_idle_secs = 1;
    config.max_attempts = 3;
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);

    let dead = wait_for("a dead letter", DEADLINE, || async {
        let mut conn = env.redis_conn().await;
        let dead = oms_shared::redis::queue::all_dead_letters(&mut *conn, &env.keys)
            .await
            .ok()?;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    env.wait_until_processed(2, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    assert_eq!(dead.len(), 1, "only the poison row is dead: {dead:?}");
    assert_eq!(
        (dead[0].identity.as_str(), dead[0].line, dead[0].import_id),
        ("p2", 3, import)
    );
    assert_eq!(dead[0].attempts, 1, "no retry can fix it: dead at once");
    assert!(
        dead[0].error.contains("customer_name"),
        "last error names the cause: {}",
        dead[0].error
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        2
    );
    assert_eq!(env.scalar("SELECT stock_quantity FROM products").await, 98);
    assert!(violations(&env, &[("A".to_string(), 100)].into())
        .await
        .is_empty());
}

#[tokio::test]
async fn eight_consumers_on_one_hot_sku_never_oversell() {
    let env = TestEnv::new().await;
    env.product("HOT", "3.00", 150).await;
    let import = env.import_row().await;
    let rows: Vec<_> = (0..600u64)
        .map(|i| {
            order_row(
                &format!("h{i}"),
                i + 2,
                &format!("c{}@example.com", i % 40),
                &[("HOT", 1 + (i % 2) as u32)],
            )
        })
        .collect();
    env.enqueue(import, &rows, 10).await;
    let initial = stock_snapshot(&env).await;
    let mut running = Vec::new();
    for _ in 0..8 {
        let mut config = env.consumer_config();
        config.batch_size = 20;
        config.concurrency = 2;
        running.push(env.spawn_consumer(config));
    }
    env.wait_until_processed(600, DEADLINE).await;
    for (handle, stop) in running {
        stop.cancel();
        handle.await.unwrap().unwrap();
    }
    let stock = env.scalar("SELECT stock_quantity FROM products").await;
    assert!(stock >= 0);
    assert!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE failure_reason = 'insufficient_stock'")
            .await
            > 0
    );
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
}

#[tokio::test]
async fn a_consumer_killed_mid_batch_loses_and_doubles_nothing() {
    let env = TestEnv::new().await;
    for s in 0..20 {
        env.product(&format!("S{s}"), "1.25", 100_000).await;
    }
    let initial = stock_snapshot(&env).await;
    let import = env.import_row().await;
    let rows = many_rows(6_000, 20);
    env.enqueue(import, &rows, 50).await;
    let mut victim = spawn_consumer_process(
        &env,
        "victim",
        &["--claim-idle-secs", "2", "--batch-size", "200"],
    );
    let mut survivor = spawn_consumer_process(
        &env,
        "survivor",
        &["--claim-idle-secs", "2", "--batch-size", "200"],
    );
    wait_for("the victim to hold work", DEADLINE, || async {
        let mut conn = env.redis_conn().await;
        let consumers = oms_shared::redis::queue::consumers(&mut *conn, &env.keys)
            .await
            .ok()?;
        let busy = consumers
            .iter()
            .any(|c| c.name == "victim" && c.pending > 0);
        (busy && env.terminal_orders().await > 200).then_some(())
    })
    .await;
    victim.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
    victim.wait().unwrap();
    // Not only the orders: the read models too. If the victim died between a commit and
    // its apply, its outbox row reaches Redis through the survivor's sweeper (after 30 s)
    // or its shutdown; checking before that saw Redis behind MySQL (the old flake).
    env.wait_until_processed(6_000, DEADLINE).await;
    unsafe_sigterm(&survivor);
    let status = survivor.wait().unwrap();
    assert!(status.success(), "survivor exit: {status:?}");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, 6_000);
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
}

#[tokio::test]
async fn a_stopping_consumer_applies_the_outbox_row_a_killed_one_committed() {
    let env = TestEnv::new().await;
    for s in 0..4 {
        env.product(&format!("S{s}"), "2.00", 1_000).await;
    }
    let initial = stock_snapshot(&env).await;
    let import = env.import_row().await;
    let n = 20;
    env.enqueue(import, &many_rows(n as u64, 4), n).await;
    let logs = LogDir::new();
    let args = ["--payment-success-rate", "1", "--claim-idle-secs", "1"];

    // The victim commits the one batch (orders completed, one outbox row), stops before
    // applying it to Redis, and is SIGKILLed there.
    let mut victim = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "victim", &args).with_env("OMS_TEST_STOP_BEFORE_APPLY", "1"),
        &logs,
    );
    wait_for(
        "the victim stopped between commit and apply",
        DEADLINE,
        || async { (victim.is_stopped() && env.terminal_orders().await == n as i64).then_some(()) },
    )
    .await;
    victim.kill();
    assert_eq!(outbox_rows(&env).await, 1);

    // Another consumer starts and is stopped at once, seconds after that commit: its
    // sweeper takes only rows older than 30 s, so it is its shutdown that applies the row.
    let mut stopping = ConsumerProc::spawn(&ConsumerSpec::new(&env, "stopping", &args), &logs);
    wait_for("the second consumer started", DEADLINE, || {
        let started = stopping.log().contains("consumer started");
        async move { started.then_some(()) }
    })
    .await;
    let status = stopping.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}\n{}",
        stopping.log()
    );
    assert_eq!(outbox_rows(&env).await, 0, "{}", stopping.log());
    assert!(
        stopping
            .log()
            .contains("applied committed outbox rows before exit"),
        "{}",
        stopping.log()
    );
    assert_eq!(read_models_final(&env).await, Some(true));
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "read models right after the exit: {v:?}");

    // The victim's entry is still pending: a third consumer claims it; the redelivery
    // changes nothing, and every invariant holds.
    let mut config = env.consumer_config();
    config.claim_idle_secs = 1;
    let (handle, stop) = env.spawn_consumer(config);
    env.wait_until_processed(n as i64, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
}

async fn outbox_rows(env: &TestEnv) -> i64 {
    env.scalar("SELECT COUNT(*) FROM read_model_outbox").await
}

#[tokio::test]
async fn sigterm_drains_what_the_consumer_holds_and_exits_0() {
    let env = TestEnv::new().await;
    for s in 0..20 {
        env.product(&format!("S{s}"), "2.00", 100_000).await;
    }
    let initial = stock_snapshot(&env).await;
    let import = env.import_row().await;
    env.enqueue(import, &many_rows(4_000, 20), 50).await;
    let mut child = spawn_consumer_process(&env, "draining", &["--batch-size", "100"]);
    wait_for("processing to start", DEADLINE, || async {
        (env.terminal_orders().await > 0).then_some(())
    })
    .await;
    unsafe_sigterm(&child);
    let exited = wait_for("exit after SIGTERM", Duration::from_secs(30), || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await;
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(exited.success(), "exit status {exited:?}: {stderr}");
    let mut conn = env.redis_conn().await;
    let consumers = oms_shared::redis::queue::consumers(&mut *conn, &env.keys)
        .await
        .unwrap();
    let held = consumers
        .iter()
        .find(|c| c.name == "draining")
        .map(|c| c.pending);
    assert_eq!(held, Some(0), "everything held was acknowledged: {stderr}");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status NOT IN ('completed','failed')")
            .await,
        0
    );
    let done = env.terminal_orders().await;
    assert!(
        done < 4_000,
        "stopped before the end ({done} done), so the drain was exercised"
    );

    // Another consumer finishes the rest; nothing lost, nothing doubled.
    let (handle, stop) = env.spawn_consumer(env.consumer_config());
    env.wait_until_processed(4_000, DEADLINE).await;
    stop.cancel();
    handle.await.unwrap().unwrap();
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
}

fn unsafe_sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn payment_success_rate_holds_and_is_deterministic_per_seed() {
    let completed = |env: &TestEnv| {
        let db = env.db.clone();
        async move {
            let ids: Vec<(String,)> = sqlx::query_as(
                "SELECT CAST(identity AS CHAR) FROM orders WHERE status = 'completed'",
            )
            .fetch_all(&db)
            .await
            .unwrap();
            ids.into_iter().map(|(i,)| i).collect::<BTreeSet<_>>()
        }
    };
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let env = TestEnv::new().await;
        env.product("A", "1.00", 1_000_000).await;
        let import = env.import_row().await;
        let rows: Vec<_> = (0..10_000u64)
            .map(|i| {
                order_row(
                    &format!("pay{i}"),
                    i + 2,
                    &format!("c{}@example.com", i % 100),
                    &[("A", 1)],
                )
            })
            .collect();
        env.enqueue(import, &rows, 100).await;
        let mut config = env.consumer_config();
        config.payment_seed = 42;
        config.batch_size = 1000;
        let (handle, stop) = env.spawn_consumer(config);
        env.wait_until_processed(10_000, DEADLINE).await;
        stop.cancel();
        handle.await.unwrap().unwrap();
        let ok = completed(&env).await;
        let declined = env
            .scalar("SELECT COUNT(*) FROM orders WHERE failure_reason = 'payment_declined'")
            .await;
        assert_eq!(ok.len() as i64 + declined, 10_000);
        let rate = ok.len() as f64 / 10_000.0;
        assert!((0.78..=0.82).contains(&rate), "success rate {rate}");
        outcomes.push(ok);
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "same seed, same identities: same outcomes"
    );
}

/// An earlier holder commits an entry's rows and stalls before acknowledging it; the entry's
/// last delivery then loses MySQL mid-batch (a cut link: the server and everyone else's
/// view of it stay up) for longer than its retries, so its rows are to be dead-lettered;
/// MySQL is back when they are recorded. They ended, so none is dead-lettered: no row
/// is both completed and dead (`faults::mariadb_crashed_…` once found 1,000 such rows).
#[tokio::test]
async fn a_last_delivery_cut_off_from_mysql_never_dead_letters_rows_an_earlier_holder_committed() {
    let env = TestEnv::new().await;
    let (initial, n) = (one_entry_of_rows(&env, 20).await, 20);
    let logs = LogDir::new();
    let args = LAST_DELIVERY_ARGS;

    // The earlier holder commits every row, then freezes before its apply and its XACK.
    let earlier = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "earlier", &args).with_env("OMS_TEST_STOP_BEFORE_APPLY", "1"),
        &logs,
    );
    wait_for(
        "the earlier holder stopped after its commit",
        DEADLINE,
        || async {
            (earlier.is_stopped() && env.terminal_orders().await == n as i64).then_some(())
        },
    )
    .await;

    let (mut last, _proxy) = last_delivery_cut_off_from_mysql(&env, &args, &logs).await;
    wait_for("the entry acknowledged", DEADLINE, || async {
        let mut conn = env.redis_conn().await;
        let stats = oms_shared::redis::queue::group_stats(&mut *conn, &env.keys)
            .await
            .ok()?;
        (stats.pending == 0).then_some(())
    })
    .await;
    let mut conn = env.redis_conn().await;
    let dead = oms_shared::redis::queue::dead_letter_count(&mut *conn, &env.keys)
        .await
        .unwrap();
    assert_eq!(dead, 0, "dead letters:\n{}", last.log());
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM dead_lettered_rows").await,
        0
    );
    assert!(
        last.log().contains("had ended after all"),
        "the last holder found the rows ended:\n{}",
        last.log()
    );

    // The earlier holder wakes up, applies its outbox row and acknowledges (a no-op).
    earlier.resume();
    env.wait_until_processed(n as i64, DEADLINE).await;
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        n as i64
    );
    drop(earlier);
    let status = last.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", last.log());
}

/// The last holder of the stream's one entry: it reaches MySQL through a proxy, claims
/// the entry (delivery 2 of 2) and freezes before its first statement; its link to MySQL
/// is then cut, so it retries for the claim period, gives up, and freezes before
/// recording the rows as dead; the link is back before it goes on. Returned running,
/// with its proxy (which must outlive it).
async fn last_delivery_cut_off_from_mysql(
    env: &TestEnv,
    args: &[&str],
    logs: &LogDir,
) -> (ConsumerProc, oms_tests::tcp_proxy::TcpProxy) {
    let mysql = oms_tests::mysql_server();
    let target: std::net::SocketAddr = mysql
        .rsplit_once('@')
        .map_or(mysql.as_str(), |(_, host)| host)
        .trim_start_matches("mysql://")
        .parse()
        .expect("DATABASE_URL's host:port");
    let proxy = oms_tests::tcp_proxy::TcpProxy::start(target);
    let last = ConsumerProc::spawn(
        &ConsumerSpec::new(env, "last", args)
            .with_env("DATABASE_URL", &proxy.url_through(&env.config.database_url))
            .with_env("OMS_TEST_STOP_BEFORE_RESERVE", "1")
            .with_env("OMS_TEST_STOP_BEFORE_DEAD_LETTERS", "1"),
        logs,
    );
    wait_for(
        "the last holder stopped before its reserve",
        DEADLINE,
        || {
            let stopped = last.is_stopped();
            async move { stopped.then_some(()) }
        },
    )
    .await;
    proxy.cut();
    last.resume();
    wait_for(
        "the last holder stopped before its dead letters",
        DEADLINE,
        || {
            let log = last.log();
            let stopped = last.is_stopped();
            async move { (stopped && log.contains("batch left pending")).then_some(()) }
        },
    )
    .await;
    proxy.restore();
    last.resume();
    (last, proxy)
}

/// Four products and one import of `n` rows enqueued as one stream entry; returns the
/// stock before any order.
async fn one_entry_of_rows(env: &TestEnv, n: usize) -> std::collections::BTreeMap<String, i64> {
    for s in 0..4 {
        env.product(&format!("S{s}"), "2.00", 1_000).await;
    }
    let initial = stock_snapshot(env).await;
    let import = env.import_row().await;
    env.enqueue(import, &many_rows(n as u64, 4), n).await;
    initial
}

const LAST_DELIVERY_ARGS: [&str; 6] = [
    "--payment-success-rate",
    "1",
    "--claim-idle-secs",
    "2",
    "--max-attempts",
    "2",
];

/// An earlier holder reserves an entry's rows and freezes before settling them; the
/// entry's last delivery is cut off from MySQL past its retries, so its rows are to be
/// dead-lettered, with MySQL back when they are recorded. Their orders exist, `reserved`:
/// the entry stays pending, nothing is dead-lettered, and a later delivery settles them
/// (`faults::mariadb_crashed_…` once found 1,989 rows both terminal and dead: the
/// earlier holder settled rows the last delivery had dead-lettered).
#[tokio::test]
async fn a_last_delivery_leaves_pending_an_entry_whose_orders_an_earlier_holder_reserved() {
    let env = TestEnv::new().await;
    let (initial, n) = (one_entry_of_rows(&env, 20).await, 20);
    let logs = LogDir::new();
    let args = LAST_DELIVERY_ARGS;
    let earlier = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "earlier", &args).with_env("OMS_TEST_STOP_BEFORE_SETTLE", "1"),
        &logs,
    );
    wait_for(
        "the earlier holder stopped between its reserve and its settle",
        DEADLINE,
        || async {
            let reserved = env
                .scalar("SELECT COUNT(*) FROM orders WHERE status = 'reserved'")
                .await;
            (earlier.is_stopped() && reserved == n as i64).then_some(())
        },
    )
    .await;
    let (mut last, _proxy) = last_delivery_cut_off_from_mysql(&env, &args, &logs).await;
    wait_for("the entry left pending", DEADLINE, || {
        let log = last.log();
        async move { log.contains("their entries stay pending").then_some(()) }
    })
    .await;
    // A later delivery (the last holder claims it again) settles the orders, while the
    // earlier holder is still frozen.
    env.wait_until_processed(n as i64, DEADLINE).await;
    let mut conn = env.redis_conn().await;
    let dead = oms_shared::redis::queue::dead_letter_count(&mut *conn, &env.keys)
        .await
        .unwrap();
    assert_eq!(dead, 0, "dead letters:\n{}", last.log());
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM dead_lettered_rows").await,
        0
    );
    // The earlier holder wakes up: its settle finds nothing still reserved.
    earlier.resume();
    let mut earlier = earlier;
    let status = earlier.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", earlier.log());
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        n as i64
    );
    let dead = oms_shared::redis::queue::dead_letter_count(&mut *conn, &env.keys)
        .await
        .unwrap();
    assert_eq!(dead, 0);
    let status = last.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", last.log());
}

/// An earlier holder freezes before its reserve; the entry's last delivery, cut off from
/// MySQL past its retries, dead-letters every row (none has an order). The earlier
/// holder then wakes up and runs its reserve: it must not create the orders of rows that
/// are dead (the dead-letter record and the reserve exclude each other).
#[tokio::test]
async fn an_earlier_holder_waking_after_its_rows_were_dead_lettered_creates_no_order() {
    let env = TestEnv::new().await;
    let (initial, n) = (one_entry_of_rows(&env, 20).await, 20);
    let logs = LogDir::new();
    let args = LAST_DELIVERY_ARGS;
    let mut earlier = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "earlier", &args).with_env("OMS_TEST_STOP_BEFORE_RESERVE", "1"),
        &logs,
    );
    wait_for(
        "the earlier holder stopped before its reserve",
        DEADLINE,
        || {
            let stopped = earlier.is_stopped();
            async move { stopped.then_some(()) }
        },
    )
    .await;
    let (mut last, _proxy) = last_delivery_cut_off_from_mysql(&env, &args, &logs).await;
    wait_for(
        "every row dead-lettered and acknowledged",
        DEADLINE,
        || async {
            let mut conn = env.redis_conn().await;
            let stats = oms_shared::redis::queue::group_stats(&mut *conn, &env.keys)
                .await
                .ok()?;
            let dead = oms_shared::redis::queue::dead_letter_count(&mut *conn, &env.keys)
                .await
                .ok()?;
            (stats.pending == 0 && dead == n as u64).then_some(())
        },
    )
    .await;
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM dead_lettered_rows").await,
        n as i64
    );
    // The earlier holder wakes up and finishes its batch before it exits.
    earlier.resume();
    let status = earlier.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", earlier.log());
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders").await,
        0,
        "orders created for dead rows:\n{}",
        earlier.log()
    );
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
    let status = last.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", last.log());
}
