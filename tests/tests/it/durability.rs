//! Redis durability: with AOF (`appendonly yes`, `appendfsync everysec`, what oms ships and
//! `ops/services.sh` starts), a Redis SIGKILLed in the middle of an import and restarted
//! on the same directory comes back with the stream, the group and its pending entries,
//! and the read models: every order reaches MySQL with no command run, the import ends
//! by itself, and every invariant holds. README "Durability" says what each setting loses.

use std::time::{Duration, Instant};

use oms_tests::invariants::{account, reconcile_exit_code, violations, wait_settled};
use oms_tests::procs::{import_log, spawn_import, wait_import, ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::servers::{CrashableServer, RedisOptions, RedisPersistence, RedisServer};
use oms_tests::workload::{Figures, Workload};
use oms_tests::{wait_for, TestEnv};

const DEADLINE: Duration = Duration::from_secs(240);

/// `(status, rows_enqueued)` of the one import, or `None` while MySQL has none yet.
async fn import_progress(env: &TestEnv) -> Option<(String, i64)> {
    sqlx::query_as("SELECT status, CAST(rows_enqueued AS SIGNED) FROM imports")
        .fetch_optional(&env.db)
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn redis_with_aof_killed_mid_import_loses_nothing_without_any_command() {
    let started = Instant::now();
    let mut redis = RedisServer::start(RedisOptions {
        persistence: RedisPersistence::AofEverysec,
        ..RedisOptions::default()
    })
    .await;
    let env = TestEnv::on_servers(&oms_tests::mysql_server(), &redis.url()).await;
    let n = 20_000;
    let work = Workload::new("aof", n, 50, 500);
    work.seed(&env).await;
    let csv = work.write_csv();
    let logs = LogDir::new();
    let args = ["--claim-idle-secs", "3", "--batch-size", "200"];
    let mut consumers: Vec<ConsumerProc> = ["aof-a", "aof-b"]
        .iter()
        .map(|name| ConsumerProc::spawn(&ConsumerSpec::new(&env, name, &args), &logs))
        .collect();
    // Backpressure keeps the import running as long as the consumers take: it cannot end
    // before they have finished all but 2,000 rows.
    let import = spawn_import(&env, csv.path(), &["--max-lag", "2000"], &logs);
    let (status, enqueued) = wait_for("the import under way", DEADLINE, || async {
        import_progress(&env)
            .await
            .filter(|(_, enqueued)| *enqueued >= 4_000)
    })
    .await;
    assert_eq!(status, "running", "the import ended before the crash");

    redis.kill();
    eprintln!("Redis SIGKILLed at {enqueued} rows enqueued");
    // Down until the import has seen it (it says it retries), then back on the same AOF.
    wait_for("the import to see Redis down", DEADLINE, || {
        let log = import_log(&logs);
        async move { log.contains("retrying in").then_some(()) }
    })
    .await;
    redis.boot().await;

    // No command: the import rides the outage out and the consumers finish every row.
    wait_import(import, &logs, DEADLINE).await;
    let (status, enqueued) = import_progress(&env).await.expect("the import row");
    assert_eq!((status.as_str(), enqueued), ("finished", n as i64));
    wait_settled(&env, n as i64, DEADLINE).await;
    for c in consumers.iter_mut() {
        let exit = c.terminate(Duration::from_secs(60));
        assert!(exit.is_some_and(|s| s.success()), "{}: {exit:?}", c.name);
    }
    let initial = work.initial_stock();
    let v = violations(&env, &initial).await;
    let a = account(&env, &work.identities(), &initial).await;
    let (code, output) = reconcile_exit_code(&env);
    let figures = Figures {
        scenario: "redis-aof-everysec-killed-mid-import".into(),
        faults: 1,
        fault_kind: "Redis (AOF everysec) SIGKILL + restart mid-import".into(),
        ..Figures::default()
    }
    .counted(&a, started.elapsed());
    eprintln!("{figures}");
    assert!(v.is_empty(), "invariants violated: {v:#?}");
    assert_eq!(code, 0, "producer reconcile: {output}");
    assert_eq!(a.unexpected, 0, "orders nobody enqueued: {a:?}");
    assert_eq!(a.dead_lettered, 0, "{a:?}");
    figures.assert_clean();
    drop(env);
    drop(redis);
}
