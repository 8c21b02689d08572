//! Recovery when Redis loses its data: a Redis restarted without persistence in the
//! middle of an import is detected by every surface (`import --wait`, `status`, the
//! consumer's `/readyz` and gauge), and `producer recover` brings every row to MySQL
//! exactly once, from the import's file.

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use oms_tests::api_client::get_at;
use oms_tests::invariants::{
    read_model_violations, read_models_final, reconcile_exit_code, violations,
};
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::servers::{CrashableServer, RedisOptions, RedisServer};
use oms_tests::workload::Workload;
use oms_tests::{binary, mysql_server, order_row, wait_for, TestEnv};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(180);

fn producer(env: &TestEnv) -> Command {
    let mut c = Command::new(binary("producer"));
    c.env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OMS_PREFIX")
        .envs(env.env_vars())
        .stdin(Stdio::null());
    c
}

fn run_producer(env: &TestEnv, args: &[&str]) -> Output {
    producer(env).args(args).output().expect("run producer")
}

async fn readyz(addr: SocketAddr) -> Option<(u16, String)> {
    let r = get_at(addr, "/readyz").await?;
    Some((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

fn status_json(env: &TestEnv, import: u64) -> Value {
    let out = run_producer(env, &["--json", "status", &import.to_string()]);
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[tokio::test]
async fn redis_restarted_without_its_data_mid_import_is_detected_and_recovered() {
    let mut redis = RedisServer::start(RedisOptions::default()).await;
    let env = TestEnv::on_servers(&mysql_server(), &redis.url()).await;
    let n = 12_000u64;
    let work = Workload::new("lostredis", n, 200, 3_000);
    work.seed(&env).await;
    let initial = work.initial_stock();
    let csv = work.write_csv_without_order_ids();
    let csv_path = csv.path().to_str().expect("utf-8 path").to_string();
    let logs = LogDir::new();
    // A slow consumer (small batches, one at a time), so the wipe comes mid-run.
    let args = ["--batch-size", "50", "--concurrency", "1"];
    let consumer = ConsumerProc::spawn(&ConsumerSpec::new(&env, "survivor", &args), &logs);
    let addr = consumer.metrics_addr(DEADLINE).await;

    // The whole file is enqueued at once; --wait follows it.
    let wait_log = std::fs::File::create(logs.path().join("import.log")).expect("log");
    let mut import: Child = producer(&env)
        .args(["import", &csv_path, "--wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(wait_log))
        .spawn()
        .expect("spawn import --wait");
    let import_id = wait_for("the import to finish enqueueing", DEADLINE, || async {
        let (id, finished): (u64, bool) = sqlx::query_as(
            "SELECT id, finished_at IS NOT NULL FROM imports ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&env.db)
        .await
        .ok()??;
        finished.then_some(id)
    })
    .await;
    wait_for("some orders to end", DEADLINE, || async {
        (env.terminal_orders().await >= 1_000).then_some(())
    })
    .await;

    // Redis dies and comes back empty (no persistence), as ops/services.sh used to run it.
    redis.kill();
    redis.boot().await;

    // --wait says so, naming the command, instead of waiting for ever.
    let exit = wait_for("import --wait to give up", DEADLINE, || {
        let status = import.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    let wait_out = std::fs::read_to_string(logs.path().join("import.log")).unwrap();
    assert!(
        !exit.success(),
        "--wait exited 0 after the loss: {wait_out}"
    );
    assert!(
        wait_out.contains("producer recover"),
        "--wait names the fix: {wait_out}"
    );
    // The consumer stops taking work and says why.
    let (code, body) = wait_for("/readyz to report the loss", DEADLINE, || async {
        readyz(addr).await.filter(|(code, _)| *code == 503)
    })
    .await;
    assert_eq!(code, 503);
    assert!(body.contains("Redis lost its data"), "{body}");
    // status: the stream and the import say so.
    let status = status_json(&env, import_id);
    let lost_line = status["stream"]["redis_data_lost"].as_str().unwrap_or("");
    assert!(lost_line.contains("producer recover"), "{status}");
    assert!(status["import"]["lost"].as_i64().unwrap() > 0, "{status}");
    assert_eq!(status["import"]["done"], false);
    let before = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status IN ('completed','failed')")
        .await;
    assert!(before < n as i64, "the wipe came after the end: {before}");

    // One command brings everything back.
    let out = run_producer(&env, &["--json", "recover"]);
    assert!(
        out.status.success(),
        "recover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("recover JSON");
    assert!(report["new_epoch"].is_string(), "{report}");
    assert_eq!(report["read_models_rebuilt"], true);
    let recovered = &report["imports"][0];
    assert_eq!(recovered["import_id"], import_id);
    assert!(recovered["enqueued"].as_u64().unwrap() > 0, "{report}");

    wait_for("/readyz to be ready again", DEADLINE, || async {
        readyz(addr).await.filter(|(code, _)| *code == 200)
    })
    .await;
    oms_tests::invariants::wait_settled(&env, n as i64, DEADLINE).await;
    let status = status_json(&env, import_id);
    assert_eq!(status["import"]["done"], true, "{status}");
    assert_eq!(status["import"]["lost"], 0, "{status}");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, n as i64);
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
    let (code, text) = reconcile_exit_code(&env);
    assert_eq!(code, 0, "{text}");

    // A second recover finds nothing to do and doubles nothing.
    let out = run_producer(&env, &["--json", "recover", &import_id.to_string()]);
    assert!(out.status.success());
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(again["new_epoch"].is_null(), "{again}");
    assert_eq!(again["imports"][0]["enqueued"], 0, "{again}");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM orders").await, n as i64);
    drop(consumer);
}

#[tokio::test]
async fn recover_refuses_a_file_that_is_not_the_imports() {
    let env = TestEnv::new().await;
    let work = Workload::new("wrongfile", 50, 5, 10);
    work.seed(&env).await;
    let csv = work.write_csv_without_order_ids();
    let out = run_producer(&env, &["import", csv.path().to_str().unwrap()]);
    assert!(out.status.success());
    let import_id = env.scalar("SELECT MAX(id) FROM imports").await.to_string();
    // Nothing consumed the rows, and they vanish from the stream as if Redis lost them.
    {
        let mut conn = env.redis_conn().await;
        let _: () = redis::cmd("DEL")
            .arg(env.keys.orders())
            .query_async(&mut *conn)
            .await
            .unwrap();
    }
    let other = env.file("customer_name,customer_email,products\n");
    let out = run_producer(
        &env,
        &[
            "recover",
            &import_id,
            "--file",
            other.path().to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is not the import's"), "{err}");
    assert!(
        err.contains(&format!("producer recover {import_id} --file")),
        "{err}"
    );
    // With the right file, the 50 rows go back on the stream, once.
    let out = run_producer(
        &env,
        &[
            "--json",
            "recover",
            &import_id,
            "--file",
            csv.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imports"][0]["enqueued"], 50, "{report}");
    let out = run_producer(&env, &["--json", "recover", &import_id]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["imports"][0]["enqueued"], 0,
        "rows in the stream are not lost: {report}"
    );
}

#[tokio::test]
async fn a_paused_queue_stays_paused_across_a_redis_that_lost_its_data() {
    let env = TestEnv::new().await;
    let out = run_producer(&env, &["queue", "pause"]);
    assert!(out.status.success());
    let out = run_producer(&env, &["status"]);
    assert!(out.status.success());
    // Redis loses everything under the prefix (as a restart without persistence would).
    wipe_redis(&env).await;
    let status: Value =
        serde_json::from_slice(&run_producer(&env, &["--json", "status"]).stdout).unwrap();
    assert_eq!(
        status["stream"]["paused"], false,
        "the flag went with the data"
    );
    assert!(status["stream"]["redis_data_lost"].is_string(), "{status}");
    let out = run_producer(&env, &["--json", "recover"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["paused"], true, "{report}");
    let status: Value =
        serde_json::from_slice(&run_producer(&env, &["--json", "status"]).stdout).unwrap();
    assert_eq!(status["stream"]["paused"], true, "{status}");
    assert!(status["stream"]["redis_data_lost"].is_null(), "{status}");
}

/// Wipes every key under the test's prefix, as a Redis restarted without persistence
/// would lose them.
async fn wipe_redis(env: &TestEnv) {
    let mut conn = env.redis_conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", env.config.prefix))
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut *conn)
        .await
        .unwrap();
}

/// A consumer applied its outbox row to the Redis that then lost its data, and was
/// frozen before deleting the row from MySQL: `recover`'s rebuild finds the row in the
/// outbox but not in the (new, empty) record of applied rows. The row's orders must
/// count once in the rebuilt read models, although nobody applies the row again (its
/// owner deletes it when it wakes).
#[tokio::test]
async fn an_outbox_row_applied_just_before_redis_lost_its_data_counts_once_after_recover() {
    let env = TestEnv::new().await;
    env.product("A", "3.00", 1_000).await;
    env.product("B", "5.00", 1_000).await;
    let initial = oms_tests::invariants::stock_snapshot(&env).await;
    let import = env.import_row().await;
    let n = 30u64;
    let rows: Vec<_> = (0..n)
        .map(|i| {
            let email = format!("c{}@example.com", i % 7);
            order_row(&format!("w{i}"), i + 2, &email, &[("A", 1), ("B", 2)])
        })
        .collect();
    env.enqueue(import, &rows, n as usize).await;
    let logs = LogDir::new();
    let args = ["--payment-success-rate", "1", "--batch-size", "100"];
    let owner = ConsumerProc::spawn(
        &ConsumerSpec::new(&env, "owner", &args).with_env("OMS_TEST_STOP_AFTER_APPLY", "1"),
        &logs,
    );
    wait_for(
        "the owner stopped between its apply and its outbox delete",
        DEADLINE,
        || async { owner.is_stopped().then_some(()) },
    )
    .await;
    assert_eq!(env.terminal_orders().await, n as i64);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM read_model_outbox").await,
        1,
        "the applied row is still in MySQL"
    );

    wipe_redis(&env).await;
    let out = run_producer(&env, &["--json", "recover"]);
    assert!(
        out.status.success(),
        "recover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("recover JSON");
    assert_eq!(report["read_models_rebuilt"], true, "{report}");

    owner.resume();
    wait_for("the read models final", DEADLINE, || async {
        (read_models_final(&env).await == Some(true)
            && env.scalar("SELECT COUNT(*) FROM read_model_outbox").await == 0)
            .then_some(())
    })
    .await;
    let v = read_model_violations(&env).await;
    assert!(v.is_empty(), "{v:?}\n{}", owner.log());
    let v = violations(&env, &initial).await;
    assert!(v.is_empty(), "{v:?}");
    drop(owner);
}
