//! The read models stay exact under live operations (issue 10, "Trust"):
//!
//! - rebuilds (`kpis generate`, `leaderboard update`, `reconcile --fix`) and `failed retry
//!   all` at random moments during a run of 100,000 orders with 2 consumers SIGKILLed and
//!   restarted: after it drains, with no rebuild at rest, reconcile is clean and nothing
//!   is lost or doubled;
//! - a consumer stopped between commit and apply, and a sweeper stopped between its SELECT
//!   and its apply, both past every timeout, apply nothing twice; `import --wait` returns
//!   only once the read models hold the whole import;
//! - a free order (total 0.00) keeps reconcile clean;
//! - an `order_date` of 23:59:59.6 counts on the day MySQL stores, on a server that rounds
//!   fractional seconds as MySQL 8 does;
//! - a rebuild busy for five leases keeps its fence (its process renews the lease) and
//!   finishes exact; one stopped past its lease writes nothing and says "run it again".
//!
//! Sizes: `OMS_REBUILD_ORDERS` (default 100,000) and `OMS_REBUILD_SEEDS` (comma-separated,
//! default `1`; CI may pass several to run the randomised test more than once).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use oms_reports::{failed, kpis, leaderboard, reconcile};
use oms_tests::invariants::{
    account, read_model_violations, reconcile_exit_code, reconcile_violations, violations,
    wait_settled,
};
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::servers::MariaDbServer;
use oms_tests::workload::{Figures, Workload};
use oms_tests::{binary, order_row, wait_for, TestEnv};
use rand::{Rng, SeedableRng};

const DEADLINE: Duration = Duration::from_secs(240);

/// Longer than every timeout of the read-model path: the sweeper's 30 s, and the two
/// minutes after which the former design forgot that a row had been applied.
const STALL: Duration = Duration::from_secs(125);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn completed_in_mysql(env: &TestEnv) -> i64 {
    env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
        .await
}

async fn outbox_rows(env: &TestEnv) -> i64 {
    env.scalar("SELECT COUNT(*) FROM read_model_outbox").await
}

/// The highest outbox id handed out, and Redis's `applied_through`.
async fn applied_through(env: &TestEnv) -> (i64, i64) {
    let last = env
        .scalar("SELECT last_id FROM read_model_sequence WHERE id = 1")
        .await;
    let mut conn = env.redis_conn().await;
    let through: Option<i64> = redis::cmd("GET")
        .arg(env.keys.outbox_applied_through())
        .query_async(&mut *conn)
        .await
        .expect("applied_through");
    (last, through.unwrap_or(0))
}

fn products_json(sku: &str, quantity: u32) -> String {
    format!(r#""[{{""sku"":""{sku}"",""quantity"":{quantity}}}]""#)
}

#[tokio::test]
async fn a_free_order_keeps_reconcile_clean_live_and_after_rebuilds() {
    let env = TestEnv::new().await;
    env.product("FREE", "0.00", 100).await;
    env.product("PAID", "3.00", 100).await;
    let import = env.import_row().await;
    let rows = vec![
        order_row("free-1", 2, "free@example.com", &[("FREE", 1)]),
        order_row("paid-1", 3, "paid@example.com", &[("PAID", 1)]),
        // A customer with a free and a paid order is a member, with the paid total.
        order_row("free-2", 4, "both@example.com", &[("FREE", 2)]),
        order_row("paid-2", 5, "both@example.com", &[("PAID", 2)]),
    ];
    env.enqueue(import, &rows, 1).await;
    let mut config = env.consumer_config();
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);
    env.wait_until_processed(4, DEADLINE).await;
    wait_for("outbox drained", DEADLINE, || async {
        (outbox_rows(&env).await == 0).then_some(())
    })
    .await;
    assert_eq!(completed_in_mysql(&env).await, 4);

    // Live path: the free order added no member with score 0.
    let v = reconcile_violations(&env).await;
    assert!(v.is_empty(), "after the live updates: {v:?}");
    let board = leaderboard::show(&env.config, 0).await.unwrap();
    let members: Vec<(&str, i64)> = board
        .top
        .iter()
        .map(|e| (e.email.as_str(), e.total_spent_cents))
        .collect();
    assert_eq!(
        members,
        [("both@example.com", 600), ("paid@example.com", 300)]
    );

    // Rebuilds follow the same rule.
    leaderboard::update(&env.config, 0).await.unwrap();
    kpis::generate(&env.config, None).await.unwrap();
    let v = reconcile_violations(&env).await;
    assert!(v.is_empty(), "after the rebuilds: {v:?}");
    let (code, out) = reconcile_exit_code(&env);
    assert_eq!(code, 0, "{out}");
    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_order_at_23_59_59_6_counts_on_the_day_the_database_stores() {
    // MariaDB truncates fractional seconds in DATETIME(0); MySQL 8 rounds them. A private
    // MariaDB with TIME_ROUND_FRACTIONAL rounds like MySQL 8.
    let server = MariaDbServer::start_with(
        &[],
        &["--sql-mode=STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION,TIME_ROUND_FRACTIONAL"],
    )
    .await;
    let env = TestEnv::on_servers(&server.server_url(), &oms_tests::redis_server()).await;
    let (rounded,): (String,) =
        sqlx::query_as("SELECT CAST(CAST('2026-03-07 23:59:59.6' AS DATETIME(0)) AS CHAR)")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(rounded, "2026-03-08 00:00:00", "the server must round");

    env.product("A", "5.00", 10).await;
    let import = env.import_row().await;
    let mut row = order_row("late-1", 2, "late@example.com", &[("A", 1)]);
    let at: DateTime<Utc> = "2026-03-07T23:59:59.6Z".parse().unwrap();
    row.order_date = Some(at);
    env.enqueue(import, &[row], 1).await;
    let mut config = env.consumer_config();
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);
    env.wait_until_processed(1, DEADLINE).await;
    wait_for("outbox drained", DEADLINE, || async {
        (outbox_rows(&env).await == 0).then_some(())
    })
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    let (stored, kpi_date): (String, String) = sqlx::query_as(
        "SELECT CAST(order_date AS CHAR), CAST(kpi_date AS CHAR) FROM orders WHERE status = 'completed'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(
        stored, "2026-03-07 23:59:59",
        "the value sent is whole seconds"
    );
    assert_eq!(kpi_date, "2026-03-07");
    let day = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
    let redis = kpis::show(&env.config, Some(day)).await.unwrap();
    assert_eq!(redis.periods[0].order_count, 1, "{redis:?}");
    let v = reconcile_violations(&env).await;
    assert!(v.is_empty(), "{v:?}");
    drop(env);
    drop(server);
}

/// Runs `producer import FILE --wait --json` in the background.
fn import_wait(env: &TestEnv, path: &str) -> std::process::Child {
    Command::new(binary("producer"))
        .args(["import", path, "--wait", "--json"])
        .envs(env.env_vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn producer import --wait")
}

#[tokio::test]
async fn a_consumer_and_a_sweeper_stalled_past_every_timeout_apply_nothing_twice() {
    let env = TestEnv::new().await;
    env.product("A", "2.50", 1_000).await;
    let n = 20;
    let mut csv = vec!["customer_name,customer_email,products,order_id,order_date".to_string()];
    for i in 0..n {
        csv.push(format!(
            "Cust {i},s{}@example.com,{},S-{i},",
            i % 4,
            products_json("A", 1 + i % 3)
        ));
    }
    let file = env.file(&csv.join("\n"));
    let path = file.path().to_str().unwrap().to_string();
    let logs = LogDir::new();
    let args = ["--payment-success-rate", "1"];

    // A commits the import's one batch, then freezes before applying it to Redis.
    let a = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "stall-a", &args).with_env("OMS_TEST_STOP_BEFORE_APPLY", "1"),
        &logs,
    );
    let mut waiter = import_wait(&env, &path);
    wait_for("A stopped between commit and apply", DEADLINE, || async {
        (a.is_stopped() && completed_in_mysql(&env).await == n as i64).then_some(())
    })
    .await;
    assert_eq!(outbox_rows(&env).await, 1);

    // B's sweeper picks the abandoned row up after 30 s, and freezes before applying it.
    let b = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "stall-b", &args)
            .with_env("OMS_TEST_STOP_SWEEPER_BEFORE_APPLY", "1"),
        &logs,
    );
    wait_for("B's sweeper stopped before its apply", DEADLINE, || async {
        b.is_stopped().then_some(())
    })
    .await;
    // Every order ended over 30 s ago, but the import's read-model update is not applied.
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "import --wait returned before the read models held the import"
    );

    // C's sweeper applies and deletes it.
    let mut c = ConsumerProc::spawn(&ConsumerSpec::new(&env, "stall-c", &args), &logs);
    // `import --wait` returns only now, and then the read models hold the whole import.
    let status = wait_for("import --wait to return", DEADLINE, || {
        let exited = waiter.try_wait().unwrap();
        async move { exited }
    })
    .await;
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "right after import --wait: {v:?}");
    let (code, out) = reconcile_exit_code(&env);
    assert_eq!(code, 0, "reconcile right after import --wait: {out}");
    assert!(status.success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut waiter.stdout.take().unwrap(), &mut stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("import --json");
    assert_eq!(report["outcome"]["done"], true, "{stdout}");
    assert_eq!(report["outcome"]["completed"], n as i64, "{stdout}");

    wait_for(
        "outbox deleted and applied record trimmed",
        DEADLINE,
        || async {
            let (last, through) = applied_through(&env).await;
            (outbox_rows(&env).await == 0 && last >= 1 && through == last).then_some(())
        },
    )
    .await;

    // Both stay frozen past every timeout, then resume where they were.
    tokio::time::sleep(STALL).await;
    let mark_b = b.log().len();
    a.resume();
    b.resume();
    wait_for("A's batch acknowledged", DEADLINE, || async {
        let mut conn = env.redis_conn().await;
        let stats = oms_shared::redis::queue::group_stats(&mut *conn, &env.keys)
            .await
            .ok()?;
        (stats.pending == 0).then_some(())
    })
    .await;
    wait_for("B's sweep to end", DEADLINE, || {
        let log = b.log();
        async move {
            log.get(mark_b..)
                .is_some_and(|l| l.contains("applied abandoned outbox rows"))
                .then_some(())
        }
    })
    .await;

    let mut conn = env.redis_conn().await;
    let total = oms_shared::redis::read_model::read_kpis(&mut *conn, &env.keys.kpi_total())
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(total.order_count, n as i64, "applied exactly once");
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "after both resumed: {v:?}");
    let (code, out) = reconcile_exit_code(&env);
    assert_eq!(code, 0, "{out}");
    c.terminate(Duration::from_secs(30));
}

#[tokio::test]
async fn rebuilds_between_a_commit_and_its_apply_count_the_batch_once() {
    let env = TestEnv::new().await;
    env.product("A", "4.00", 1_000).await;
    let n = 12;
    let mut csv = vec!["customer_name,customer_email,products,order_id,order_date".to_string()];
    for i in 0..n {
        csv.push(format!(
            "Cust {i},r{}@example.com,{},R-{i},2026-03-07T10:00:00Z",
            i % 3,
            products_json("A", 1)
        ));
    }
    let file = env.file(&csv.join("\n"));
    let path = file.path().to_str().unwrap().to_string();
    let logs = LogDir::new();
    // A commits the batch (in MySQL, in the outbox), then freezes before its apply.
    let a = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "fence-a", &["--payment-success-rate", "1"])
            .with_env("OMS_TEST_STOP_BEFORE_APPLY", "1"),
        &logs,
    );
    let mut waiter = import_wait(&env, &path);
    wait_for("A stopped between commit and apply", DEADLINE, || async {
        (a.is_stopped() && completed_in_mysql(&env).await == n as i64).then_some(())
    })
    .await;
    // Every rebuild now reads the batch in MySQL while its apply is still to come.
    let day = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
    kpis::generate(&env.config, Some(day)).await.unwrap();
    leaderboard::update(&env.config, 0).await.unwrap();
    reconcile::reconcile(&env.config, true).await.unwrap();
    a.resume();
    wait_for(
        "A's apply, then the outbox row deleted",
        DEADLINE,
        || async { (outbox_rows(&env).await == 0).then_some(()) },
    )
    .await;
    let shown = kpis::show(&env.config, Some(day)).await.unwrap();
    assert_eq!(shown.periods[0].order_count, n as i64, "{shown:?}");
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "{v:?}");
    let (code, out) = reconcile_exit_code(&env);
    assert_eq!(code, 0, "{out}");
    let _ = waiter.wait();
}

/// One randomised operator action; returns its name.
async fn operator_action(env: &TestEnv, rng: &mut impl Rng, days: &[NaiveDate]) -> &'static str {
    match rng.random_range(0..4) {
        0 => {
            let day = days[rng.random_range(0..days.len())];
            kpis::generate(&env.config, Some(day))
                .await
                .expect("kpis generate");
            "kpis generate"
        }
        1 => {
            leaderboard::update(&env.config, 10)
                .await
                .expect("leaderboard update");
            "leaderboard update"
        }
        2 => {
            reconcile::reconcile(&env.config, true)
                .await
                .expect("reconcile --fix");
            "reconcile --fix"
        }
        _ => {
            failed::retry(&env.config, failed::RetryTarget::All)
                .await
                .expect("failed retry all");
            "failed retry all"
        }
    }
}

async fn rebuilds_during_a_live_run(seed: u64, n: u64) {
    let started = Instant::now();
    let env = TestEnv::new().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut work = Workload::new(&format!("rb{seed}"), n, 400, 5_000);
    // Four KPI days; every tenth order at 23:59:59.6.
    let first = NaiveDate::from_ymd_opt(2026, 3, 5).unwrap();
    let days: Vec<NaiveDate> = (0..4).map(|d| first + chrono::Days::new(d)).collect();
    for (i, row) in work.rows.iter_mut().enumerate() {
        let day = days[i % days.len()];
        let time = if i % 10 == 0 {
            day.and_hms_milli_opt(23, 59, 59, 600)
        } else {
            day.and_hms_opt(12, 0, 0)
        };
        row.order_date = Some(Utc.from_utc_datetime(&time.unwrap()));
    }
    work.seed(&env).await;
    let import = env.import_row().await;
    env.enqueue(import, &work.rows, 100).await;

    let logs = LogDir::new();
    let args = ["--claim-idle-secs", "3", "--batch-size", "500"];
    let spec = |name: &str| ConsumerSpec::new(&env, name, &args);
    let mut consumers: Vec<ConsumerProc> = (0..2)
        .map(|i| ConsumerProc::spawn(&spec(&format!("rb{seed}-{i}")), &logs))
        .collect();
    // Per action: how many ran, and the longest.
    let mut actions: std::collections::BTreeMap<&str, (usize, Duration)> = Default::default();
    let mut kills = 0;
    let mut round = 0;
    loop {
        let terminal = env
            .scalar("SELECT COUNT(*) FROM orders WHERE status IN ('completed','failed')")
            .await;
        if terminal >= n as i64 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "run not done in {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..=2000))).await;
        let took = Instant::now();
        let action = operator_action(&env, &mut rng, &days).await;
        let entry = actions.entry(action).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(took.elapsed());
        round += 1;
        if round % 4 == 0 {
            let slot = rng.random_range(0..consumers.len());
            consumers[slot].kill();
            kills += 1;
            consumers[slot] =
                ConsumerProc::spawn(&spec(&format!("rb{seed}-{slot}-r{round}")), &logs);
        }
    }
    eprintln!("operator actions during the run (count, longest): {actions:?}, {kills} SIGKILLs");
    // Drained: every order terminal, every outbox row applied; no rebuild from here on.
    wait_settled(&env, n as i64, DEADLINE).await;
    for c in consumers.iter_mut() {
        c.terminate(Duration::from_secs(60));
    }
    let initial = work.initial_stock();
    let v = violations(&env, &initial).await;
    let a = account(&env, &work.identities(), &initial).await;
    let (code, output) = reconcile_exit_code(&env);
    let figures = Figures {
        scenario: format!("rebuilds during a live run (seed {seed})"),
        faults: actions.values().map(|(n, _)| n).sum::<usize>() + kills,
        fault_kind: "kpis generate / leaderboard update / reconcile --fix / failed retry all every 0.5-2 s, SIGKILL every 4th".into(),
        ..Figures::default()
    }
    .counted(&a, started.elapsed());
    eprintln!("{figures}");
    assert!(v.is_empty(), "invariants violated: {v:#?}");
    assert_eq!(code, 0, "producer reconcile: {output}");
    figures.assert_clean();
}

#[tokio::test]
async fn rebuilds_fixes_and_retries_at_random_moments_of_a_live_run_leave_redis_exact() {
    let n: u64 = env_or("OMS_REBUILD_ORDERS", 100_000);
    let seeds: String = env_or("OMS_REBUILD_SEEDS", "1".to_string());
    for seed in seeds.split(',').filter_map(|s| s.trim().parse().ok()) {
        rebuilds_during_a_live_run(seed, n).await;
    }
}

/// `producer kpis generate --date day`, spawned with a `lease_ms` lease and a rebuild kept
/// busy `busy_ms` before its write (the test hook `OMS_TEST_REBUILD_BUSY_MS`).
fn slow_kpis_generate(
    env: &TestEnv,
    day: &str,
    lease_ms: u64,
    busy_ms: u64,
) -> std::process::Child {
    Command::new(binary("producer"))
        .args(["kpis", "generate", "--date", day])
        .envs(env.env_vars())
        .env("OMS_REBUILD_LEASE_MS", lease_ms.to_string())
        .env("OMS_TEST_REBUILD_BUSY_MS", busy_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer kpis generate")
}

/// A CSV of `n` orders of one "A" each on 2026-03-07, order ids `R{tag}-i`.
fn day_csv(tag: &str, n: usize) -> String {
    let mut csv = vec!["customer_name,customer_email,products,order_id,order_date".to_string()];
    for i in 0..n {
        csv.push(format!(
            "Cust {i},s{}@example.com,{},R{tag}-{i},2026-03-07T10:00:00Z",
            i % 3,
            products_json("A", 1)
        ));
    }
    csv.join("\n")
}

async fn lease_exists(env: &TestEnv) -> bool {
    let mut conn = env.redis_conn().await;
    redis::cmd("EXISTS")
        .arg(env.keys.rebuild_lease())
        .query_async::<i64>(&mut *conn)
        .await
        .unwrap()
        == 1
}

#[tokio::test]
async fn a_slow_rebuild_held_past_its_lease_keeps_its_fence_and_finishes_exact() {
    let env = TestEnv::new().await;
    env.product("A", "4.00", 1_000).await;
    let logs = LogDir::new();
    let _consumer = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "lease-c", &["--payment-success-rate", "1"]),
        &logs,
    );
    let first = env.file(&day_csv("a", 10));
    let mut waiter = import_wait(&env, first.path().to_str().unwrap());
    assert!(waiter.wait().unwrap().success());
    // The rebuild takes its snapshot, then works five leases long before its write; the
    // second import completes (and is logged) meanwhile.
    let rebuild = slow_kpis_generate(&env, "2026-03-07", 600, 3_000);
    wait_for("the rebuild's lease", DEADLINE, || async {
        lease_exists(&env).await.then_some(())
    })
    .await;
    let second = env.file(&day_csv("b", 7));
    let mut waiter = import_wait(&env, second.path().to_str().unwrap());
    assert!(waiter.wait().unwrap().success());
    let out = rebuild.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the slow rebuild lost its fence: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("every outbox row applied", DEADLINE, || async {
        (outbox_rows(&env).await == 0).then_some(())
    })
    .await;
    let day = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
    let shown = kpis::show(&env.config, Some(day)).await.unwrap();
    assert_eq!(shown.periods[0].order_count, 17, "{shown:?}");
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "{v:?}");
    let (code, out) = reconcile_exit_code(&env);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn a_rebuild_stopped_past_its_lease_writes_nothing_and_says_run_it_again() {
    let env = TestEnv::new().await;
    let rebuild = slow_kpis_generate(&env, "2026-03-07", 600, 1_500);
    wait_for("the rebuild's lease", DEADLINE, || async {
        lease_exists(&env).await.then_some(())
    })
    .await;
    oms_tests::servers::signal(rebuild.id(), "-STOP");
    // Stopped, it renews nothing: the lease expires.
    wait_for("the lease expired", DEADLINE, || async {
        (!lease_exists(&env).await).then_some(())
    })
    .await;
    oms_tests::servers::signal(rebuild.id(), "-CONT");
    let out = rebuild.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("run it again"), "{stderr}");
    let mut conn = env.redis_conn().await;
    let day = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
    let written: i64 = redis::cmd("EXISTS")
        .arg(env.keys.kpi_daily(day))
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(written, 0, "a stopped rebuild wrote its figures");
}
