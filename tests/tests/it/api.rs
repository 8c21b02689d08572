//! `producer serve`: every endpoint against real Redis and MariaDB — figures equal to the
//! CLI's `--json` output for the same state, bad input, authorization, bounds, uploads —
//! and pause/resume with two consumers mid-run.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::Utc;
use oms_shared::redis::queue::DeadLetter;
use oms_tests::api_client::{get_at, settings, ApiServer};
use oms_tests::invariants::violations;
use oms_tests::workload::Workload;
use oms_tests::{binary, order_row, wait_for, TestEnv};
use serde_json::Value;

const TOKEN: &str = "test-token-7f3a";

fn producer(env: &TestEnv, args: &[&str]) -> Output {
    Command::new(binary("producer"))
        .args(args)
        .envs(env.env_vars())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run producer")
}

fn cli_json(env: &TestEnv, args: &[&str]) -> Value {
    let out = producer(env, args);
    assert!(
        out.status.success(),
        "producer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("CLI --json output")
}

/// A CSV of `n` good orders on sku A, plus three bad rows.
fn orders_csv(tag: &str, n: usize) -> String {
    let mut csv = String::from("order_id,customer_name,customer_email,products\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{tag}-{i},Customer {i},c{}@{tag}.example.com,\"[{{\"\"sku\"\":\"\"A\"\",\"\"quantity\"\":{}}}]\"\n",
            i % 7,
            1 + i % 3
        ));
    }
    csv.push_str(&format!(
        "{tag}-bad1,Bad,not-an-email,\"[{{\"\"sku\"\":\"\"A\"\",\"\"quantity\"\":1}}]\"\n"
    ));
    csv.push_str(&format!("{tag}-bad2,Bad,b@example.com,not json\n"));
    csv.push_str(&format!(
        "{tag}-bad3,Bad,b@example.com,\"[{{\"\"sku\"\":\"\"A\"\",\"\"quantity\"\":0}}]\"\n"
    ));
    csv
}

fn without(mut v: Value, pointer_fields: &[&str]) -> Value {
    fn strip(v: &mut Value, field: &str) {
        match v {
            Value::Object(map) => {
                map.remove(field);
                map.values_mut().for_each(|x| strip(x, field));
            }
            Value::Array(items) => items.iter_mut().for_each(|x| strip(x, field)),
            _ => {}
        }
    }
    for f in pointer_fields {
        strip(&mut v, f);
    }
    v
}

fn dead_letter(import_id: u64, identity: &str, line: u64) -> DeadLetter {
    let row = order_row(identity, line, "dead@example.com", &[("A", 1)]);
    DeadLetter {
        id: String::new(),
        import_id,
        line,
        identity: identity.to_string(),
        row: serde_json::to_string(&row).unwrap(),
        error: "Data too long for column 'name'".into(),
        attempts: 3,
        consumer: "w1".into(),
        source_id: "1-0".into(),
        failed_at: "2026-03-07T10:00:00.000Z".into(),
    }
}

async fn add_dead_letters(env: &TestEnv, letters: &[DeadLetter]) {
    let mut conn = env.redis_conn().await;
    oms_shared::redis::queue::ensure_group(&mut *conn, &env.keys)
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    oms_shared::redis::queue::push_dead_letters(&mut pipe, &env.keys, letters);
    pipe.query_async::<()>(&mut *conn).await.unwrap();
}

#[tokio::test]
async fn reports_equal_the_cli_json_for_the_same_state() {
    let env = TestEnv::new().await;
    env.product("A", "12.50", 1_000_000).await;
    let api = ApiServer::start(&env, settings(Some(TOKEN), false, 1 << 20))
        .await
        .with_token(TOKEN);

    // Upload through the API, process with a consumer.
    let up = api
        .post(
            "/api/imports?name=orders.csv&wait=true",
            orders_csv("R", 40).into_bytes(),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text());
    let report = up.json();
    let import = report["import_id"].as_u64().unwrap();
    assert_eq!(report["rows"], 43);
    assert_eq!(report["enqueued"], 40);
    assert_eq!(report["rejected"], 3);
    let (handle, stop) = env.spawn_consumer(env.consumer_config());
    env.wait_until_processed(40, Duration::from_secs(60)).await;
    add_dead_letters(&env, &[dead_letter(import, "R-dead", 99)]).await;

    let today = Utc::now().date_naive();
    let day = today.format("%Y-%m-%d").to_string();
    let kpis = cli_json(&env, &["kpis", "show", "--date", &day, "--json"]);
    for (i, path) in [
        format!("/api/kpis/daily/{day}"),
        format!("/api/kpis/monthly/{}", today.format("%Y-%m")),
        format!("/api/kpis/yearly/{}", today.format("%Y")),
        "/api/kpis/total".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let r = api.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json(), kpis["periods"][i], "{path}");
    }
    assert!(kpis["periods"][3]["order_count"].as_i64().unwrap() > 0);

    let board = cli_json(&env, &["leaderboard", "show", "--limit", "5", "--json"]);
    let r = api.get("/api/leaderboard?limit=5").await;
    assert_eq!(r.json(), board);
    assert_eq!(r.json()["top"].as_array().unwrap().len(), 5);
    assert!(r.json()["top"][0]["name"]
        .as_str()
        .unwrap()
        .starts_with("Customer"));
    // A day's snapshot, as `leaderboard update` keeps it.
    cli_json(&env, &["leaderboard", "update", "--json"]);
    let snap = api
        .get(&format!("/api/leaderboard?limit=5&date={day}"))
        .await;
    assert_eq!(snap.status, 200);
    assert_eq!(snap.json()["top"], board["top"]);
    assert_eq!(
        snap.json()["key"],
        format!("{}leaderboard:{day}", env.config.prefix)
    );

    let status = cli_json(&env, &["status", &import.to_string(), "--json"]);
    let r = api.get(&format!("/api/imports/{import}")).await;
    let mut detail = r.json();
    assert_eq!(detail["rejected_by_reason"]["invalid_email"], 1);
    assert_eq!(detail["rejected_by_reason"]["invalid_products"], 1);
    assert_eq!(detail["rejected_by_reason"]["invalid_quantity"], 1);
    detail.as_object_mut().unwrap().remove("rejected_by_reason");
    assert_eq!(detail, status["import"]);
    let list = api.get("/api/imports").await.json();
    assert_eq!(list[0], status["import"]);

    let volatile = ["idle_ms", "oldest_pending"];
    let status = cli_json(&env, &["status", "--json"]);
    let queue = api.get("/api/queue").await.json();
    assert_eq!(
        without(queue.clone(), &volatile),
        without(status["stream"].clone(), &volatile)
    );
    assert_eq!(queue["paused"], false);
    assert_eq!(queue["dead_letters"], 1);

    let failed = cli_json(&env, &["failed", "list", "--json"]);
    assert_eq!(api.get("/api/failed").await.json(), failed);

    // Order stats come from Redis aggregates and agree with MySQL.
    let stats = api.get("/api/orders/stats").await.json();
    let completed = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
        .await;
    let failed_n = env
        .scalar("SELECT COUNT(*) FROM orders WHERE status = 'failed'")
        .await;
    assert_eq!(stats["completed"].as_i64().unwrap(), completed);
    assert_eq!(stats["failed_total"].as_i64().unwrap(), failed_n);
    assert_eq!(stats["revenue"], kpis["periods"][3]["revenue"]);
    assert_eq!(stats["dead_letters"], 1);
    let per_minute: i64 = stats["per_minute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["completed"].as_i64().unwrap() + m["failed"].as_i64().unwrap())
        .sum();
    assert_eq!(per_minute, completed + failed_n);
    assert_eq!(stats["per_minute"].as_array().unwrap().len(), 61);
    let thr = api.get("/api/orders/throughput?window=900").await.json();
    let per_second: i64 = thr
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["completed"].as_i64().unwrap() + m["failed"].as_i64().unwrap())
        .sum();
    assert_eq!(per_second, completed + failed_n);

    // Where is my order: a finished one, a dead one.
    let o = api.get("/api/orders/R-3").await;
    assert_eq!(o.status, 200, "{}", o.text());
    let o = o.json();
    let row_status: String =
        sqlx::query_scalar("SELECT CAST(status AS CHAR) FROM orders WHERE identity = 'R-3'")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(o["state"], row_status);
    assert_eq!(o["order"]["items"][0]["sku"], "A");
    assert_eq!(o["order"]["items"][0]["quantity"], 1);
    assert_eq!(o["order"]["items"][0]["unit_price"], "12.50");
    assert_eq!(o["order"]["customer"]["email"], "c3@r.example.com");
    assert_eq!(o["order"]["import_id"], import);
    let dead = api.get("/api/orders/R-dead").await.json();
    assert_eq!(dead["state"], "dead");
    assert_eq!(
        dead["dead_letter"]["error"],
        "Data too long for column 'name'"
    );

    // The OpenAPI document lists the paths.
    let doc = api.get("/api/openapi.json").await.json();
    assert!(doc["paths"]["/api/orders/{identity}"].is_object());

    stop.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_in_flight_order_shows_its_stream_entry_deliveries_and_last_error() {
    let env = TestEnv::new().await;
    let import = env.import_row().await;
    env.enqueue(
        import,
        &[order_row("F-1", 2, "f@example.com", &[("A", 1)])],
        1,
    )
    .await;
    // A consumer that read the entry and died: it stays pending with an error note.
    let mut conn = env.redis_conn().await;
    let read = oms_shared::redis::queue::read_new_entries(&mut *conn, &env.keys, 0, "ghost", 1)
        .await
        .unwrap();
    assert_eq!(read.len(), 1, "the ghost consumer read the entry");
    let pending = oms_shared::redis::queue::pending_entries(&mut *conn, &env.keys, 10)
        .await
        .unwrap();
    let entry = pending[0].id.clone();
    let _: () = redis::cmd("HSET")
        .arg(env.keys.message_errors())
        .arg(&entry)
        .arg("deadlock found")
        .query_async(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let api = ApiServer::start(&env, settings(None, false, 1 << 20)).await;
    let r = api.get("/api/orders/F-1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let o = r.json();
    assert_eq!(o["state"], "in_flight");
    assert_eq!(o["order"], Value::Null);
    assert_eq!(o["in_flight"]["entry_id"], entry);
    assert_eq!(o["in_flight"]["consumer"], "ghost");
    assert_eq!(o["in_flight"]["deliveries"], 1);
    assert_eq!(o["in_flight"]["last_error"], "deadlock found");
    // An identity in no chunk, row or dead letter.
    let r = api.get("/api/orders/F-404").await;
    assert_eq!((r.status, r.code()), (404, "not_found".to_string()));
}

#[tokio::test]
async fn bad_input_answers_json_errors_with_the_right_status() {
    let env = TestEnv::new().await;
    let api = ApiServer::start(&env, settings(Some(TOKEN), false, 2048))
        .await
        .with_token(TOKEN);
    for (path, status, code) in [
        ("/api/kpis/daily/2026-02-30", 400, "bad_request"),
        ("/api/kpis/daily/2026-3-7", 400, "bad_request"),
        ("/api/kpis/daily/yesterday", 400, "bad_request"),
        ("/api/kpis/monthly/2026-13", 400, "bad_request"),
        ("/api/kpis/yearly/26", 400, "bad_request"),
        ("/api/leaderboard?limit=0", 400, "bad_request"),
        ("/api/leaderboard?limit=ten", 400, "bad_request"),
        ("/api/leaderboard?date=2026-99-01", 400, "bad_request"),
        ("/api/orders/no-such-order", 404, "not_found"),
        ("/api/imports/999999", 404, "not_found"),
        ("/api/imports/abc", 400, "bad_request"),
        ("/api/imports?limit=500", 400, "bad_request"),
        ("/api/failed?limit=0", 400, "bad_request"),
        ("/api/imports?limit=50&bust=1", 400, "bad_request"),
        ("/api/queue?bust=1", 400, "bad_request"),
        ("/api/leaderboard?limit=5&limit=6", 400, "bad_request"),
        ("/api/orders/throughput?window=0", 400, "bad_request"),
        ("/api/nothing/here", 404, "not_found"),
        ("/favicon.ico", 404, "not_found"),
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.code(), code, "{path}");
        assert!(!r.json()["error"].as_str().unwrap().is_empty(), "{path}");
    }
    let r = api.post("/api/failed/1-0/retry", Vec::new()).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "not_found".to_string()),
        "{}",
        r.text()
    );
    let r = api.post("/api/failed/not-an-id/retry", Vec::new()).await;
    assert_eq!((r.status, r.code()), (400, "bad_request".to_string()));
    let r = api.request("PUT", "/api/queue", Vec::new(), None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "method_not_allowed");

    // Bodies: over the upload bound (2 KiB here), and over the 64 KiB bound elsewhere.
    let big = orders_csv("B", 100).into_bytes();
    assert!(big.len() > 2048);
    let r = api.post("/api/imports", big).await;
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large".to_string()),
        "{}",
        r.text()
    );
    let r = api.post("/api/queue/pause", vec![b'x'; 100 * 1024]).await;
    assert_eq!(
        (r.status, r.code()),
        (413, "payload_too_large".to_string()),
        "{}",
        r.text()
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM imports").await, 0);

    // A CSV whose header lacks a required column: refused like the CLI refuses it.
    let bad = "order_id,customer_name,products\n1,Ann,\"[]\"\n";
    let r = api
        .post("/api/imports?name=bad.csv", bad.as_bytes().to_vec())
        .await;
    assert_eq!(
        (r.status, r.code()),
        (400, "bad_csv".to_string()),
        "{}",
        r.text()
    );
    let file = env.file(bad);
    let cli = producer(&env, &["import", file.path().to_str().unwrap()]);
    assert_eq!(cli.status.code(), Some(1));
    let cli_err = String::from_utf8_lossy(&cli.stderr).to_string();
    let reason = cli_err.rsplit(": ").next().unwrap().trim();
    assert!(
        r.json()["error"].as_str().unwrap().ends_with(reason),
        "{} vs {cli_err}",
        r.text()
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM imports").await, 0);
    let r = api
        .post("/api/imports?name=..%2Fx.csv", b"a".to_vec())
        .await;
    assert_eq!(r.status, 400);
    let r = api.post("/api/imports", Vec::new()).await;
    assert_eq!((r.status, r.code()), (400, "bad_csv".to_string()));

    // Rejected rows: the upload and `producer import` report the same rejects.
    let csv = orders_csv("J", 5);
    let r = api
        .post("/api/imports?name=j.csv", csv.clone().into_bytes())
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["import_id"].as_u64().unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/imports/{id}").as_str())
    );
    let detail = wait_for("the upload to finish", Duration::from_secs(30), || async {
        let d = api.get(&format!("/api/imports/{id}")).await.json();
        (d["status"] != "running").then_some(d)
    })
    .await;
    let file = env.file(&csv);
    let cli = cli_json(
        &env,
        &["import", file.path().to_str().unwrap(), "--new", "--json"],
    );
    assert_eq!(detail["rejected_by_reason"], cli["rejected_by_reason"]);
    assert_eq!(detail["rejected"], cli["rejected"]);
    assert_eq!(detail["rows"], cli["rows"]);
    assert_eq!(detail["enqueued"], 5);
    // The same file again: idempotent, nothing enqueued twice.
    let again = api
        .post("/api/imports?name=j.csv&wait=true", csv.into_bytes())
        .await
        .json();
    assert_eq!(again["enqueued"], 0, "{again}");
}

#[tokio::test]
async fn writes_need_the_token_and_reads_too_when_asked() {
    let env = TestEnv::new().await;
    // No token configured: writes are refused with 403 saying why, reads are open.
    let open = ApiServer::start(&env, settings(None, false, 1 << 20)).await;
    for (method, path) in [
        ("POST", "/api/queue/pause"),
        ("POST", "/api/queue/resume"),
        ("POST", "/api/failed/retry"),
        ("POST", "/api/failed/1-0/retry"),
        ("DELETE", "/api/failed"),
        ("POST", "/api/imports"),
    ] {
        let r = open
            .request(method, path, b"x".to_vec(), Some("anything"))
            .await;
        assert_eq!(r.status, 403, "{method} {path}");
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("OMS_API_TOKEN"));
    }
    assert_eq!(open.get("/api/queue").await.status, 200);

    let guarded = ApiServer::start(&env, settings(Some(TOKEN), false, 1 << 20)).await;
    let r = guarded
        .request("POST", "/api/queue/pause", Vec::new(), None)
        .await;
    assert_eq!((r.status, r.code()), (401, "unauthorized".to_string()));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = guarded
        .request("POST", "/api/queue/pause", Vec::new(), Some("wrong"))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(guarded.get("/api/queue").await.json()["paused"], false);
    let r = guarded
        .request("POST", "/api/queue/pause", Vec::new(), Some(TOKEN))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        serde_json::json!({"paused": true, "was_paused": false})
    );
    assert_eq!(guarded.get("/api/queue").await.json()["paused"], true);
    // The CLI sees (and changes) the same flag.
    let st = cli_json(&env, &["status", "--json"]);
    assert_eq!(st["stream"]["paused"], true);
    let resumed = cli_json(&env, &["queue", "resume", "--json"]);
    assert_eq!(
        resumed,
        serde_json::json!({"paused": false, "was_paused": true})
    );
    // A change made outside the API shows once the shared reading expires (1 s).
    let seen_at = Instant::now();
    wait_for(
        "the API to see the CLI's resume",
        Duration::from_secs(3),
        || async { (guarded.get("/api/queue").await.json()["paused"] == false).then_some(()) },
    )
    .await;
    assert!(seen_at.elapsed() <= producer::serve::readings::FRESH + Duration::from_millis(500));

    // Reads need the token with OMS_API_READ_TOKEN=1; the page itself stays public.
    let closed = ApiServer::start(&env, settings(Some(TOKEN), true, 1 << 20)).await;
    assert_eq!(closed.get("/api/queue").await.status, 401);
    assert_eq!(closed.get("/api/kpis/total").await.status, 401);
    let r = closed
        .request("GET", "/api/queue", Vec::new(), Some(TOKEN))
        .await;
    assert_eq!(r.status, 200);
    let page = closed.get("/").await;
    assert_eq!(page.status, 200);
    // Security headers on every answer.
    for r in [&page, &r] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert!(r
            .header("content-security-policy")
            .unwrap()
            .starts_with("default-src 'self'"));
    }
    // The page has no inline script or style (it must run under the CSP).
    let html = page.text();
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "inline code in the page"
    );
}

#[tokio::test]
async fn dead_letters_are_listed_retried_and_purged_through_the_api() {
    let env = TestEnv::new().await;
    let import = env.import_row().await;
    add_dead_letters(
        &env,
        &[
            dead_letter(import, "D-1", 2),
            dead_letter(import, "D-2", 3),
            dead_letter(import, "D-3", 4),
        ],
    )
    .await;
    let api = ApiServer::start(&env, settings(Some(TOKEN), false, 1 << 20))
        .await
        .with_token(TOKEN);
    let list = api.get("/api/failed").await.json();
    assert_eq!(list["total"], 3);
    let first = list["dead_letters"][0]["id"].as_str().unwrap().to_string();
    let r = api
        .post(&format!("/api/failed/{first}/retry"), Vec::new())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["retried"][0]["identity"], "D-1");
    let list = api.get("/api/failed").await.json();
    assert_eq!(list["total"], 2);
    assert!(list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["id"] != first.as_str()));
    let r = api.post("/api/failed/retry", Vec::new()).await.json();
    assert_eq!(r["retried"].as_array().unwrap().len(), 2);
    assert_eq!(api.get("/api/failed").await.json()["total"], 0);
    let len: u64 = redis::cmd("XLEN")
        .arg(env.keys.orders())
        .query_async(&mut *env.redis_conn().await)
        .await
        .unwrap();
    assert_eq!(len, 3, "each retried row is back on the orders stream");
    add_dead_letters(&env, &[dead_letter(import, "D-4", 5)]).await;
    let r = api.delete("/api/failed").await;
    assert_eq!(r.json(), serde_json::json!({"purged": 1}));
    assert_eq!(api.get("/api/failed").await.json()["total"], 0);
}

#[tokio::test]
async fn pause_stops_every_consumer_within_a_second_and_resume_finishes_the_run() {
    let env = TestEnv::new().await;
    let work = Workload::new("p", 4_000, 40, 300);
    work.seed(&env).await;
    let import = env.import_row().await;
    env.enqueue(import, &work.rows, 10).await;
    let api = ApiServer::start(&env, settings(Some(TOKEN), false, 1 << 20))
        .await
        .with_token(TOKEN);
    let mut running = Vec::new();
    for _ in 0..2 {
        let mut config = env.consumer_config();
        config.batch_size = 50;
        config.concurrency = 2;
        running.push(env.spawn_consumer(config));
    }
    wait_for(
        "the run to be under way",
        Duration::from_secs(60),
        || async { (env.terminal_orders().await >= 300).then_some(()) },
    )
    .await;

    let r = api.post("/api/queue/pause", Vec::new()).await;
    assert_eq!(r.status, 200);
    // A consumer started while paused starts paused.
    let mut late = env.consumer_config();
    late.batch_size = 50;
    running.push(env.spawn_consumer(late));
    // Every consumer polls the flag every 250 ms and then reads and claims nothing: in
    // Redis's view each one goes idle (no XREADGROUP, no XAUTOCLAIM). How soon depends on
    // the machine's load; that it happens is the promise.
    let stopped = wait_for(
        "every consumer to stop reading",
        Duration::from_secs(20),
        || async {
            let q = api.get("/api/queue").await.json();
            let consumers = q["consumers"].as_array()?.clone();
            let all_idle = !consumers.is_empty()
                && consumers
                    .iter()
                    .all(|c| c["idle_ms"].as_u64().unwrap_or(0) >= 1_000);
            all_idle.then_some(q)
        },
    )
    .await;
    let terminal_when_stopped = env.terminal_orders().await;
    // Watch for 3 s: nothing is read or claimed (checked below); only the batches the
    // consumers still held may end — at most --concurrency batches of about --batch-size
    // rows each (2 × 50 per consumer, plus an entry of 10 rows a batch may end on).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = env.terminal_orders().await;
    let held_at_most = 2 * 2 * (50 + 10);
    assert!(
        after - terminal_when_stopped <= held_at_most,
        "{} orders ended after the consumers stopped reading, more than the {held_at_most} rows held",
        after - terminal_when_stopped
    );
    let queue_when_stopped = stopped;
    assert!(
        after < 4_000,
        "the run ended before the pause could be seen"
    );
    let q = api.get("/api/queue").await.json();
    assert_eq!(q["paused"], true);
    assert_eq!(
        (&q["lag"], &q["last_delivered_id"]),
        (
            &queue_when_stopped["lag"],
            &queue_when_stopped["last_delivered_id"]
        ),
        "entries were read while paused: {queue_when_stopped} then {q}"
    );
    // Imports still enqueue while paused.
    let more = vec![order_row(
        "p-extra",
        9_999,
        "x@p.example.com",
        &[("F-00001", 1)],
    )];
    env.enqueue(import, &more, 1).await;

    let r = api.post("/api/queue/resume", Vec::new()).await;
    assert_eq!(r.json()["paused"], false);
    let resumed = Instant::now();
    wait_for("reading to restart", Duration::from_secs(1), || async {
        (env.terminal_orders().await > after).then_some(())
    })
    .await;
    println!("restarted {:?} after resume", resumed.elapsed());
    env.wait_until_processed(4_001, Duration::from_secs(120))
        .await;
    for (handle, stop) in running {
        stop.cancel();
        handle.await.unwrap().unwrap();
    }
    let v = violations(&env, &work.initial_stock()).await;
    assert!(v.is_empty(), "{v:#?}");
}

#[tokio::test]
async fn a_paused_consumer_says_so_in_readyz_and_its_gauge() {
    let env = TestEnv::new().await;
    let port = oms_tests::servers::free_local_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(binary("consumer"))
        .args([
            "--name",
            "readyz-paused",
            "--metrics-addr",
            &addr.to_string(),
        ])
        .envs(env.env_vars())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a consumer");
    let body = |path: &'static str| async move {
        get_at(addr, path)
            .await
            .filter(|r| r.status == 200)
            .map(|r| r.text())
    };
    wait_for(
        "/readyz to answer ready",
        Duration::from_secs(30),
        || async { body("/readyz").await.filter(|b| b.trim() == "ready") },
    )
    .await;
    assert!(body("/metrics")
        .await
        .unwrap()
        .contains("\noms_consumer_paused 0\n"));

    cli_json(&env, &["queue", "pause", "--json"]);
    let paused = Instant::now();
    wait_for("/readyz to say paused", Duration::from_secs(1), || async {
        body("/readyz")
            .await
            .filter(|b| b.trim() == "ready, paused")
    })
    .await;
    println!("/readyz said paused {:?} after the pause", paused.elapsed());
    assert!(body("/metrics")
        .await
        .unwrap()
        .contains("\noms_consumer_paused 1\n"));
    cli_json(&env, &["queue", "resume", "--json"]);
    wait_for(
        "/readyz to say ready again",
        Duration::from_secs(1),
        || async { body("/readyz").await.filter(|b| b.trim() == "ready") },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

/// One request on a new connection from `from` (a loopback address: a client of its own);
/// the status, or `None` when the server closed the connection unanswered (shed).
async fn status_from(from: &str, addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(format!("{from}:0").parse().ok()?).ok()?;
    let mut stream = socket.connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.ok()?;
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Terminal orders per second over `window`.
async fn throughput(env: &TestEnv, window: Duration) -> f64 {
    let before = env.terminal_orders().await;
    tokio::time::sleep(window).await;
    (env.terminal_orders().await - before) as f64 / window.as_secs_f64()
}

/// The attack, bounded and on loopback: 200 clients (one address) busting the
/// cache of the most expensive read (`/api/imports?limit=1..50`, 50 imports and 2,000
/// dead letters) for 20 s while a consumer works flat out. The crowd gets 429s; a second,
/// well-behaved client (another address) reading `/api/queue` every 50 ms is always
/// answered 200, quickly; the consumer keeps most of its throughput. Then 512 idle
/// connections from one address do not shut another client out. The figures are printed;
/// the machine-dependent bounds asserted here are loose (2 shared cores, debug build): the
/// issue's targets (p99 < 100 ms, throughput within 15 %) are measured by ops/bench-api.sh.
/// It loads the machine on purpose, so it runs alone: `ops/test.sh` runs it in a step of its
/// own after the other tests (`--ignored`), never beside timing-sensitive ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs alone: ops/test.sh's load step"]
async fn a_cache_busting_crowd_gets_429s_while_others_and_the_consumer_go_on() {
    const CROWD: usize = 200;
    const BUST: Duration = Duration::from_secs(20);
    let env = TestEnv::new().await;
    env.product("A", "1.00", 100_000_000).await;
    let mut imports = Vec::new();
    for _ in 0..50 {
        imports.push(env.import_row().await);
    }
    let letters: Vec<DeadLetter> = (0..2_000)
        .map(|i| dead_letter(imports[i % 50], &format!("dead-{i}"), i as u64 + 2))
        .collect();
    for part in letters.chunks(500) {
        add_dead_letters(&env, part).await;
    }
    let mut serve = settings(None, false, 1 << 20);
    serve.rate = producer::serve::guard::RateSettings {
        per_sec: 20,
        burst: 40,
        token_per_sec: 0,
    };
    serve.max_connections_per_client = 64;
    let api = ApiServer::start(&env, serve).await;
    let addr = api.addr;

    // A feeder keeps the consumer busy: the backlog never runs dry while we measure.
    let import = imports[0];
    let feeder = {
        let keys = env.keys.clone();
        let config = env.config.clone();
        tokio::spawn(async move {
            let redis = oms_shared::redis::conn::connect(&config.redis_url, 2)
                .await
                .unwrap();
            let mut next = 0u64;
            loop {
                let mut conn = redis.get().await.unwrap();
                let stats = oms_shared::redis::queue::group_stats(&mut *conn, &keys)
                    .await
                    .unwrap();
                if stats.backlog() < 5_000 {
                    let rows: Vec<_> = (next..next + 2_000)
                        .map(|i| {
                            order_row(
                                &format!("L-{i}"),
                                i + 2,
                                &format!("c{}@l.example", i % 97),
                                &[("A", 1)],
                            )
                        })
                        .collect();
                    next += 2_000;
                    let chunks: Vec<&[oms_shared::order::OrderRow]> = rows.chunks(100).collect();
                    oms_shared::redis::queue::add_chunks(&mut *conn, &keys, import, &chunks)
                        .await
                        .unwrap();
                }
                drop(conn);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (consumer, stop_consumer) = env.spawn_consumer(env.consumer_config());
    wait_for(
        "the consumer to process orders",
        Duration::from_secs(60),
        || async { (env.terminal_orders().await > 0).then_some(()) },
    )
    .await;
    let idle = throughput(&env, Duration::from_secs(5)).await;

    // The crowd, and the well-behaved client.
    let started = Instant::now();
    let mut crowd = Vec::new();
    for c in 0..CROWD {
        crowd.push(tokio::spawn(async move {
            let (mut limited, mut ok, mut other) = (0u64, 0u64, 0u64);
            let mut n = c;
            while started.elapsed() < BUST {
                n += 1;
                let path = format!("/api/imports?limit={}", 1 + n % 50);
                match status_from("127.0.0.1", addr, &path).await {
                    Some(429) => limited += 1,
                    Some(200) => ok += 1,
                    _ => {
                        // Shed (over its connection cap): a client retries a moment later.
                        other += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (limited, ok, other)
        }));
    }
    let good = tokio::spawn(async move {
        let mut latencies = Vec::new();
        let mut statuses = Vec::new();
        while started.elapsed() < BUST {
            let t = Instant::now();
            statuses.push(status_from("127.0.0.2", addr, "/api/queue").await);
            latencies.push(t.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (latencies, statuses)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = throughput(&env, BUST - Duration::from_secs(4)).await;
    let (mut limited, mut ok, mut other) = (0, 0, 0);
    for c in crowd {
        let (l, o, x) = c.await.unwrap();
        (limited, ok, other) = (limited + l, ok + o, other + x);
    }
    let (mut latencies, statuses) = good.await.unwrap();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let (p50, p99) = (p(0.5), p(0.99));
    eprintln!(
        "crowd: {limited} × 429, {ok} × 200, {other} shed or other; good client: {} requests, \
         p50 {p50:?}, p99 {p99:?}; consumer {idle:.0} orders/s idle, {loaded:.0} under the crowd \
         ({:+.1} %)",
        latencies.len(),
        100.0 * (loaded - idle) / idle
    );
    assert!(limited > 0, "the crowd was never rate limited");
    assert!(
        statuses.iter().all(|s| *s == Some(200)),
        "the well-behaved client was refused: {statuses:?}"
    );
    // Before the bounds: p99 15 s with 504s. The consumer's rate is measured on a machine
    // shared with the crowd itself (same process) and other tests: only its going on is
    // asserted; ops/bench-api.sh measures the drop.
    assert!(p99 < Duration::from_secs(2), "good client's p99 {p99:?}");
    assert!(
        loaded >= idle * 0.1,
        "the consumer fell from {idle:.0} to {loaded:.0} orders/s"
    );

    // 512 idle connections from one address: another address is still served.
    let mut idle_conns = Vec::new();
    for _ in 0..512 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        if let Ok(s) = socket.connect(addr).await {
            idle_conns.push(s);
        }
    }
    for _ in 0..5 {
        assert_eq!(
            status_from("127.0.0.2", addr, "/api/queue").await,
            Some(200)
        );
    }
    drop(idle_conns);

    feeder.abort();
    stop_consumer.cancel();
    consumer.await.unwrap().unwrap();
}

/// One raw request (`head` lines after the request line) on a new connection; the answer's
/// head (status line and headers), lower-cased.
async fn raw_head(addr: std::net::SocketAddr, path: &str, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Over its rate a client without the token gets 429 with `Retry-After`; the token's
/// requests are not limited (by default); a `Host` that is not an IP literal, localhost or
/// an `--allowed-host` name gets 421 (DNS rebinding).
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_foreign_hosts_421() {
    let env = TestEnv::new().await;
    let mut serve = settings(Some(TOKEN), false, 1 << 20);
    serve.rate = producer::serve::guard::RateSettings {
        per_sec: 1,
        burst: 3,
        token_per_sec: 0,
    };
    serve.allowed_hosts = vec!["oms.internal".into()];
    let api = ApiServer::start(&env, serve).await;
    let host = "Host: 127.0.0.1\r\n";
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(raw_head(api.addr, "/api/queue", host).await);
    }
    assert!(
        statuses.iter().all(|h| h.starts_with("http/1.1 200")),
        "{statuses:?}"
    );
    // The fourth is over the rate: 429, held for the tarpit's second (a client retrying
    // at once cannot make the server answer faster than that).
    let asked = std::time::Instant::now();
    let limited = raw_head(api.addr, "/api/queue", host).await;
    assert!(limited.starts_with("http/1.1 429"), "{limited}");
    assert!(limited.contains("\r\nretry-after: 1"), "{limited}");
    assert!(
        asked.elapsed() >= producer::serve::guard::TARPIT - Duration::from_millis(100),
        "the 429 was not held: {:?}",
        asked.elapsed()
    );
    // The token's requests are another client, not limited.
    let bearer = format!("{host}Authorization: Bearer {TOKEN}\r\n");
    for _ in 0..10 {
        let h = raw_head(api.addr, "/api/queue", &bearer).await;
        assert!(h.starts_with("http/1.1 200"), "{h}");
    }
    // The page itself is not limited.
    assert!(raw_head(api.addr, "/", host)
        .await
        .starts_with("http/1.1 200"));
    // Hosts.
    let authed = |h: &str| format!("Host: {h}\r\nAuthorization: Bearer {TOKEN}\r\n");
    for (h, status) in [
        ("attacker.example", "421"),
        ("attacker.example:8080", "421"),
        ("localhost:8080", "200"),
        ("oms.internal", "200"),
        ("[::1]:80", "200"),
    ] {
        let head = raw_head(api.addr, "/api/queue", &authed(h)).await;
        assert!(
            head.starts_with(&format!("http/1.1 {status}")),
            "{h}: {head}"
        );
    }
}
