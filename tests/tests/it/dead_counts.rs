//! An import's dead rows are counted from MySQL (`dead_lettered_rows`, recorded by the
//! consumer before it dead-letters a row), so `failed purge`, which empties the
//! dead-letter stream, leaves the import's progress right: its dead rows stay dead and the
//! import done; `failed retry` of a row takes it out of the dead count.

use std::time::Duration;

use oms_reports::{failed, status};
use oms_tests::{wait_for, TestEnv};
use producer::import::{import, wait_for_outcome};
use tokio_util::sync::CancellationToken;

use crate::fence::producer;

const DEADLINE: Duration = Duration::from_secs(60);

/// (completed, dead, in flight, done) of `import` as `status IMPORT` reads it.
async fn progress(env: &TestEnv, import: u64) -> Option<(i64, i64, i64, bool)> {
    let s = status::status(&env.config, Some(import))
        .await
        .ok()?
        .import?;
    Some((s.completed, s.dead, s.in_flight, s.done))
}

#[tokio::test]
async fn dead_rows_stay_counted_after_a_purge_and_a_retried_row_leaves_the_count() {
    let env = TestEnv::new().await;
    env.product("A", "1.00", 1_000).await;
    // The cause: customer names longer than 10 characters cannot be stored.
    sqlx::query("ALTER TABLE customers MODIFY name VARCHAR(10) NOT NULL")
        .execute(&env.db)
        .await
        .unwrap();
    let item = "\"[{\"\"sku\"\":\"\"A\"\",\"\"quantity\"\":1}]\"";
    let file = env.file(&format!(
        "customer_name,customer_email,products\n\
         Bo,bo@example.com,{item}\n\
         Bartholomew Long,bart@example.com,{item}\n\
         Maximilian Long,max@example.com,{item}\n"
    ));
    let mut args = crate::import::args(file.path().to_str().unwrap());
    args.chunk_size = 1;
    let report = import(&env.config, &args, CancellationToken::new())
        .await
        .unwrap();
    let id = report.import_id;
    let mut config = env.consumer_config();
    config.claim_idle_secs = 1;
    config.max_attempts = 2;
    config.payment_success_rate = 1.0;
    let (handle, stop) = env.spawn_consumer(config);

    wait_for("1 completed, 2 dead, done", DEADLINE, || async {
        (progress(&env, id).await? == (1, 2, 0, true)).then_some(())
    })
    .await;
    let letters = failed::list(&env.config, 0).await.unwrap();
    assert_eq!(letters.total, 2);

    // Retry one after its cause is gone: it completes; the dead count goes down.
    sqlx::query("ALTER TABLE customers MODIFY name VARCHAR(255) NOT NULL")
        .execute(&env.db)
        .await
        .unwrap();
    let bart = letters
        .dead_letters
        .iter()
        .find(|l| l.line == 3)
        .expect("line 3 dead");
    let out = producer(&env, &["failed", "retry", &bart.id]);
    assert!(out.status.success(), "{out:?}");
    wait_for("2 completed, 1 dead, done", DEADLINE, || async {
        (progress(&env, id).await? == (2, 1, 0, true)).then_some(())
    })
    .await;
    stop.cancel();
    handle.await.unwrap().unwrap();

    // Purge the other: still dead, the import still done, and --wait ends as before.
    let out = producer(&env, &["failed", "purge"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(failed::list(&env.config, 0).await.unwrap().total, 0);
    assert_eq!(progress(&env, id).await, Some((2, 1, 0, true)));
    let outcome = wait_for_outcome(
        &env.config,
        id,
        Some(Duration::from_secs(20)),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        (outcome.completed, outcome.dead, outcome.done),
        (2, 1, true)
    );
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM dead_lettered_rows WHERE import_id = {id} AND line = 4"
        ))
        .await,
        1
    );
}
