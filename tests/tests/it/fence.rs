//! Repartitioning is fenced against running imports: `migrate --partitions` refuses while
//! an import's heartbeat is fresh (naming it), treats a running import without one as
//! abandoned (marked `interrupted`), and an import whose recorded partition count changes
//! under it stops with a clear error instead of writing to a stream no consumer reads.

use std::process::{Child, Command, Output};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub use oms_tests::procs::spawn_producer;
use oms_tests::{binary, wait_for, TestEnv};

const DEADLINE: Duration = Duration::from_secs(60);

/// A CSV file of `n` valid orders of one `A` each.
pub fn orders_csv(n: usize) -> String {
    let mut csv = String::from("customer_name,customer_email,products\n");
    for i in 0..n {
        csv.push_str(&format!(
            "C{i},c{i}@example.com,\"[{{\"\"sku\"\":\"\"A\"\",\"\"quantity\"\":1}}]\"\n"
        ));
    }
    csv
}

/// Runs `producer ARGS` to its end against `env`.
pub fn producer(env: &TestEnv, args: &[&str]) -> Output {
    Command::new(binary("producer"))
        .args(args)
        .envs(env.env_vars())
        .env("RUST_LOG", "info")
        .output()
        .expect("run producer")
}

/// Waits (bounded) for `child` to exit; kills it and panics if it does not.
pub async fn wait_exit(mut child: Child, deadline: Duration) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "producer still running after {deadline:?}; stdout {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn recorded_partitions(env: &TestEnv) -> i64 {
    env.scalar("SELECT value FROM settings WHERE name = 'stream_partitions'")
        .await
}

/// An import held by backpressure (no consumer; `--max-lag 50`): running, heartbeat fresh.
fn held_import(env: &TestEnv, path: &str) -> (Child, Receiver<String>) {
    let (child, rx) = spawn_producer(
        env,
        &[
            "import",
            path,
            "--chunk-size",
            "10",
            "--max-lag",
            "50",
            "--json",
        ],
    );
    crate::import::wait_for_line(&rx, "waiting: more rows unread than --max-lag");
    (child, rx)
}

#[tokio::test]
async fn repartitioning_is_refused_while_an_import_runs_and_done_after_it_ends() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1_000_000).await;
    let file = env.file(&orders_csv(400));
    let path = file.path().to_str().unwrap().to_string();
    let (child, _rx) = held_import(&env, &path);
    let import = env.scalar("SELECT MAX(id) FROM imports").await;

    let out = producer(&env, &["migrate", "--partitions", "4"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stderr(&out);
    assert!(
        text.contains("while an import is running")
            && text.contains(&format!("import {import} of {path} (last heartbeat 20")),
        "the refusal names the running import: {text}"
    );
    assert_eq!(recorded_partitions(&env).await, 1);

    // A consumer drains the stream; the import ends; then the change is made.
    let (handle, token) = env.spawn_consumer(env.consumer_config());
    let out = wait_exit(child, DEADLINE).await;
    assert!(out.status.success(), "{}", stderr(&out));
    env.wait_until_processed(400, DEADLINE).await;
    token.cancel();
    handle.await.unwrap().unwrap();
    let out = producer(&env, &["migrate", "--partitions", "4"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(recorded_partitions(&env).await, 4);
}

#[tokio::test]
async fn an_abandoned_running_import_is_marked_interrupted_and_does_not_block_repartitioning() {
    let env = TestEnv::new().await;
    let insert = |heartbeat: &'static str| {
        let db = env.db.clone();
        async move {
            sqlx::query(&format!(
                "INSERT INTO imports (file_name, file_sha256, status, heartbeat_at) \
                 VALUES ('gone.csv', REPEAT('0', 64), 'running', {heartbeat})"
            ))
            .execute(&db)
            .await
            .unwrap()
            .last_insert_id()
        }
    };
    // A fresh heartbeat blocks the change, even without a producer behind it.
    let alive = insert("NOW(3)").await;
    let out = producer(&env, &["migrate", "--partitions", "2"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains(&format!("import {alive} of gone.csv")),
        "{}",
        stderr(&out)
    );
    // Heartbeats older than a minute (or none): abandoned, marked interrupted, said.
    sqlx::query("UPDATE imports SET heartbeat_at = NOW(3) - INTERVAL 5 MINUTE")
        .execute(&env.db)
        .await
        .unwrap();
    let never = insert("NULL").await;
    let out = producer(&env, &["migrate", "--partitions", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(recorded_partitions(&env).await, 2);
    for id in [alive, never] {
        assert_eq!(
            env.scalar(&format!(
                "SELECT status = 'interrupted' AND finished_at IS NOT NULL FROM imports WHERE id = {id}"
            ))
            .await,
            1,
            "import {id} marked interrupted"
        );
        assert!(
            stderr(&out).contains(&format!(
                "import {id} of gone.csv was running without a heartbeat"
            )),
            "{}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn an_import_whose_partition_count_changes_under_it_stops_with_a_clear_error() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1_000_000).await;
    let file = env.file(&orders_csv(400));
    let path = file.path().to_str().unwrap().to_string();
    let (child, rx) = held_import(&env, &path);
    let import = env.scalar("SELECT MAX(id) FROM imports").await;

    // The count changed behind the import's back (as a migrate that missed it would).
    sqlx::query("UPDATE settings SET value = '4' WHERE name = 'stream_partitions'")
        .execute(&env.db)
        .await
        .unwrap();
    let out = wait_exit(child, Duration::from_secs(30)).await;
    // The reader thread ends at EOF, once the process is gone.
    let text = rx.iter().collect::<Vec<_>>().join("\n");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("the orders stream was repartitioned from 1 to 4 partitions while importing")
            && text.contains(&path)
            && text.contains("import the same file again to resume"),
        "{text}"
    );
    wait_for("the import marked interrupted", DEADLINE, || async {
        (env.scalar(&format!(
            "SELECT status = 'interrupted' FROM imports WHERE id = {import}"
        ))
        .await
            == 1)
            .then_some(())
    })
    .await;
}
