//! The dashboard's history: per-minute counts kept in Redis for 24 hours (bounded by key
//! expiry), the lag sampled by a running consumer, and `GET /api/orders/history`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use oms_shared::redis::order_stats::{self, Outcomes};
use oms_tests::api_client::{settings, ApiServer};
use oms_tests::{order_row, wait_for, TestEnv};
use serde_json::Value;

fn outcomes(completed: u64, declined: u64) -> Outcomes {
    Outcomes {
        completed,
        failed: BTreeMap::from([("payment_declined", declined)]),
    }
}

/// The history point starting at `minute_start` (unix seconds).
fn point(history: &Value, minute_start: i64) -> Option<Value> {
    history
        .as_array()?
        .iter()
        .find(|p| p["at"].as_i64() == Some(minute_start))
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_keeps_a_day_of_minutes_and_the_consumers_lag() {
    let env = TestEnv::new().await;
    let now = Utc::now().timestamp();
    let day_ago = now - 20 * 3600;
    let recent = now - 10 * 60;
    {
        let mut conn = env.redis_conn().await;
        order_stats::record(&mut *conn, &env.keys, day_ago, &outcomes(5, 2))
            .await
            .expect("record 20 h ago");
        order_stats::record(&mut *conn, &env.keys, recent, &outcomes(3, 1))
            .await
            .expect("record 10 min ago");
        // Kept for 24 h after its minute, not forever.
        let ttl: i64 = redis::cmd("TTL")
            .arg(env.keys.order_stats_minute(day_ago.div_euclid(60)))
            .query_async(&mut *conn)
            .await
            .expect("TTL");
        assert!(
            ttl > 0 && ttl <= 4 * 3600 + 60,
            "a minute 20 h old expires within 4 h, TTL {ttl}"
        );
    }
    let api = ApiServer::start(&env, settings(None, false, 1 << 20)).await;
    let day = api.get("/api/orders/history?minutes=1440").await.json();
    assert_eq!(day.as_array().map(Vec::len), Some(1440));
    let old = point(&day, day_ago.div_euclid(60) * 60).expect("the minute 20 h ago");
    assert_eq!(
        (old["completed"].as_u64(), old["failed"].as_u64()),
        (Some(5), Some(2))
    );
    let hour = api.get("/api/orders/history").await.json();
    assert_eq!(
        hour.as_array().map(Vec::len),
        Some(60),
        "the default is one hour"
    );
    assert!(point(&hour, day_ago.div_euclid(60) * 60).is_none());
    let ten = point(&hour, recent.div_euclid(60) * 60).expect("the minute 10 min ago");
    assert_eq!(
        (ten["completed"].as_u64(), ten["failed"].as_u64()),
        (Some(3), Some(1))
    );
    for bad in ["0", "1441", "x"] {
        let r = api.get(&format!("/api/orders/history?minutes={bad}")).await;
        assert_eq!(r.status, 400, "minutes={bad}");
    }

    // A consumer that starts paused samples the lag of the entries it does not read.
    {
        let mut conn = env.redis_conn().await;
        oms_shared::redis::pause::set_paused(&mut *conn, &env.keys, true)
            .await
            .expect("pause");
    }
    let import = env.import_row().await;
    let rows: Vec<_> = (0..7u64)
        .map(|i| order_row(&format!("hist-{i}"), i + 2, "h@example.com", &[("H-A", 1)]))
        .collect();
    env.enqueue(import, &rows, 1).await;
    let (consumer, stop) = env.spawn_consumer(env.consumer_config());
    wait_for(
        "the lag in the last minutes' history",
        Duration::from_secs(30),
        || async {
            let last = api.get("/api/orders/history?minutes=2").await.json();
            last.as_array()?
                .iter()
                .any(|p| p["lag"].as_u64() == Some(7))
                .then_some(())
        },
    )
    .await;
    stop.cancel();
    consumer.await.expect("join").expect("consumer run");
}
