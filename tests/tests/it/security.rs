//! Security: hostile names are data, never code (stored and shown verbatim); Redis with a
//! password, with an ACL user confined to the prefix, and over TLS with a private CA
//! works for the consumer and the producer's admin commands; secrets never appear in
//! logs or error output.

use std::process::{Command, Output};
use std::time::Duration;

use oms_tests::invariants::{violations, wait_settled};
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::servers::{make_tls_files, RedisOptions, RedisServer};
use oms_tests::{binary, order_row, wait_for, TestEnv};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(120);

const SQL_NAME: &str = "Robert'); DROP TABLE orders;--";
const HTML_NAME: &str = "<script>alert(1)</script>";
const QUOTE_EMAIL: &str = "o'brien@example.com";

/// Runs `producer ARGS` with `vars` (and nothing inherited that points elsewhere).
fn producer(vars: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(binary("producer"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OMS_PREFIX")
        .env_remove("REDIS_CA_CERT")
        .env("RUST_LOG", "debug")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run producer")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `producer ARGS`, asserting exit 0; returns stdout.
fn producer_ok(vars: &[(&str, String)], args: &[&str]) -> String {
    let out = producer(vars, args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "producer {args:?} exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

fn env_vars(env: &TestEnv) -> Vec<(&'static str, String)> {
    env.env_vars()
}

#[tokio::test]
async fn names_with_sql_and_html_are_stored_and_shown_verbatim() {
    let env = TestEnv::new().await;
    let vars = env_vars(&env);
    // The catalog through `producer products import` (CSV quoting for the quote and `;`).
    let catalog = env.file(&format!(
        "sku,name,price,stock_quantity\nH1,\"{}\",1.00,100\nH2,{HTML_NAME},2.00,100\n",
        SQL_NAME.replace('"', "\"\"")
    ));
    producer_ok(
        &vars,
        &["products", "import", catalog.path().to_str().unwrap()],
    );
    let list: Value =
        serde_json::from_str(&producer_ok(&vars, &["--json", "products", "list"])).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .or_else(|| list["products"].as_array())
        .expect("a product list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        names.contains(&SQL_NAME) && names.contains(&HTML_NAME),
        "{list}"
    );

    // Customers with those names, through the consumer.
    let import = env.import_row().await;
    let mut rows = vec![
        order_row("sec-1", 2, "robert@example.com", &[("H1", 1)]),
        order_row("sec-2", 3, QUOTE_EMAIL, &[("H2", 2)]),
    ];
    rows[0].customer_name = SQL_NAME.into();
    rows[1].customer_name = HTML_NAME.into();
    env.enqueue(import, &rows, 10).await;
    // A file name and a consumer name with markup, shown by `status`.
    let file_name = format!("{HTML_NAME}{SQL_NAME}.csv");
    sqlx::query("UPDATE imports SET file_name = ? WHERE id = ?")
        .bind(&file_name)
        .bind(import)
        .execute(&env.db)
        .await
        .unwrap();
    let mut config = env.consumer_config();
    config.payment_success_rate = 1.0;
    config.name = Some(HTML_NAME.into());
    let (handle, stop) = env.spawn_consumer(config);
    env.wait_until_processed(2, DEADLINE).await;

    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT CAST(email AS CHAR), name FROM customers ORDER BY email")
            .fetch_all(&env.db)
            .await
            .unwrap();
    assert_eq!(
        stored,
        vec![
            (QUOTE_EMAIL.to_string(), HTML_NAME.to_string()),
            ("robert@example.com".to_string(), SQL_NAME.to_string()),
        ]
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'completed'")
            .await,
        2,
        "the orders table is still there and holds both orders"
    );

    // Leaderboard: JSON carries the exact strings; text shows them unescaped.
    let board: Value =
        serde_json::from_str(&producer_ok(&vars, &["--json", "leaderboard", "update"])).unwrap();
    let top: Vec<(&str, &str)> = board["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["email"].as_str().unwrap()))
        .collect();
    assert_eq!(
        top,
        vec![(HTML_NAME, QUOTE_EMAIL), (SQL_NAME, "robert@example.com")]
    );
    let shown = producer_ok(&vars, &["leaderboard", "update"]);
    for s in [SQL_NAME, HTML_NAME, QUOTE_EMAIL] {
        assert!(shown.contains(s), "leaderboard text lacks {s:?}:\n{shown}");
    }

    // Status: the import's file name and the consumer's name, verbatim.
    let status: Value = serde_json::from_str(&producer_ok(
        &vars,
        &["--json", "status", &import.to_string()],
    ))
    .unwrap();
    assert_eq!(
        status["import"]["file_name"].as_str(),
        Some(file_name.as_str())
    );
    let consumers: Vec<&str> = status["stream"]["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(consumers, vec![HTML_NAME]);
    let shown = producer_ok(&vars, &["status", &import.to_string()]);
    assert!(shown.contains(&file_name), "status text:\n{shown}");

    stop.cancel();
    handle.await.unwrap().unwrap();
    let v = violations(&env, &[("H1".into(), 100), ("H2".into(), 100)].into()).await;
    assert!(v.is_empty(), "{v:?}");
}

/// Orders for the Redis-auth scenarios.
async fn enqueue_some(env: &TestEnv, n: u64) {
    env.product("A", "1.50", 1_000_000).await;
    let import = env.import_row().await;
    let rows: Vec<_> = (0..n)
        .map(|i| {
            order_row(
                &format!("auth{i}"),
                i + 2,
                &format!("c{}@example.com", i % 20),
                &[("A", 1)],
            )
        })
        .collect();
    env.enqueue(import, &rows, 50).await;
}

/// One consumer process with `redis_url` processes `n` orders, then the producer's admin
/// commands work with the same URL; neither ever prints `secret`.
async fn consumer_and_admin_work_with(env: &TestEnv, redis_url: &str, secret: &str, n: u64) {
    let logs = LogDir::new();
    let spec = ConsumerSpec::new(env, "auth", &[])
        .with_env("REDIS_URL", redis_url)
        .with_env("RUST_LOG", "debug");
    let mut consumer = ConsumerProc::spawn(&spec, &logs);
    wait_settled(env, n as i64, DEADLINE).await;
    let status = consumer.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "consumer exit {status:?}"
    );
    let log = consumer.log();
    assert!(log.contains("consumer started"), "{log}");
    assert!(
        !log.contains(secret),
        "the consumer logged the password:\n{log}"
    );

    let mut vars = env_vars(env);
    vars.retain(|(k, _)| *k != "REDIS_URL");
    vars.push(("REDIS_URL", redis_url.to_string()));
    for args in [
        &["status"][..],
        &["--json", "status"],
        &["failed", "list"],
        &["kpis", "generate"],
        &["leaderboard", "update"],
        &["reconcile"],
    ] {
        let out = producer(&vars, args);
        let (stdout, stderr) = text(&out);
        assert!(
            out.status.success(),
            "producer {args:?} with an authenticated URL: {stdout}{stderr}"
        );
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "producer {args:?} printed the password:\n{stdout}{stderr}"
        );
    }
    let v = violations(env, &[("A".into(), 1_000_000)].into()).await;
    assert!(v.is_empty(), "{v:?}");
}

#[tokio::test]
async fn redis_password_and_acl_user_work_and_are_never_printed() {
    let password = "pw-Requirepass-7f3a9";
    let acl_password = "pw-AclUser-51c2e";
    let redis = RedisServer::start(RedisOptions {
        password: Some(password.into()),
        ..RedisOptions::default()
    })
    .await;
    let default_url = redis.url_with_auth("", password);
    let env = TestEnv::on_servers(&oms_tests::mysql_server(), &default_url).await;

    // requirepass (default user).
    enqueue_some(&env, 300).await;
    consumer_and_admin_work_with(&env, &default_url, password, 300).await;

    // An ACL user allowed only the keys under this test's prefix and no dangerous command.
    let mut conn = env.redis_conn().await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("oms_worker")
        .arg("on")
        .arg(format!(">{acl_password}"))
        .arg("resetkeys")
        .arg(format!("~{}*", env.keys.prefix()))
        .arg("resetchannels")
        .arg("+@all")
        .arg("-@dangerous")
        .query_async(&mut *conn)
        .await
        .expect("ACL SETUSER");
    let acl_url = redis.url_with_auth("oms_worker", acl_password);
    let outside = Command::new("redis-cli")
        .args([
            "-u",
            &acl_url,
            "--no-auth-warning",
            "SET",
            "not-our-key",
            "1",
        ])
        .output()
        .expect("redis-cli");
    assert!(
        String::from_utf8_lossy(&outside.stdout).contains("NOPERM"),
        "the ACL user is confined to the prefix: {outside:?}"
    );
    // Second batch of orders, processed as the ACL user.
    let import = env.import_row().await;
    let rows: Vec<_> = (300..600u64)
        .map(|i| order_row(&format!("auth{i}"), i + 2, "acl@example.com", &[("A", 2)]))
        .collect();
    env.enqueue(import, &rows, 50).await;
    consumer_and_admin_work_with(&env, &acl_url, acl_password, 600).await;

    // Wrong passwords: a clear error naming the host, never the password.
    let wrong = "pw-Wrong-0d9e1";
    let mut vars = env_vars(&env);
    vars.retain(|(k, _)| *k != "REDIS_URL");
    vars.push(("REDIS_URL", redis.url_with_auth("oms_worker", wrong)));
    let out = producer(&vars, &["status"]);
    let (stdout, stderr) = text(&out);
    eprintln!(
        "producer status with a wrong Redis password: {}",
        stderr.trim()
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{}", redis.port)),
        "{stderr}"
    );
    for secret in [wrong, acl_password, password] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stderr}"
        );
    }
    let logs = LogDir::new();
    let spec = ConsumerSpec::new(&env, "wrongpw", &[])
        .with_env("REDIS_URL", &redis.url_with_auth("oms_worker", wrong))
        .with_env("RUST_LOG", "debug");
    let mut consumer = ConsumerProc::spawn(&spec, &logs);
    // Wrong credentials do not heal by waiting: one line naming the host, exit 1.
    let status = wait_for("the consumer to exit on the failed login", DEADLINE, || {
        let exited = consumer.exited();
        async move { exited }
    })
    .await;
    assert_eq!(status.code(), Some(1), "{}", consumer.log());
    let log = consumer.log();
    let line = log
        .lines()
        .find(|l| l.contains("cannot reach Redis at 127.0.0.1:"))
        .unwrap_or_else(|| panic!("no line naming the Redis host:\n{log}"))
        .to_string();
    eprintln!("consumer with a wrong Redis password: {line}");
    consumer.kill();
    let log = consumer.log();
    for secret in [wrong, acl_password, password] {
        assert!(
            !log.contains(secret),
            "the consumer printed a password:\n{log}"
        );
    }

    // A wrong MySQL password: the URL's user, with a password it does not have.
    let mysql_secret = "pw-Mysql-88aa1";
    let mut vars = env_vars(&env);
    let db = vars.iter_mut().find(|(k, _)| *k == "DATABASE_URL").unwrap();
    db.1 = oms_tests::with_password(&db.1, mysql_secret);
    let out = producer(&vars, &["reconcile"]);
    let (stdout, stderr) = text(&out);
    eprintln!(
        "producer reconcile with a wrong MySQL password: {}",
        stderr.trim()
    );
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        !stdout.contains(mysql_secret) && !stderr.contains(mysql_secret),
        "{stderr}"
    );
}

#[tokio::test]
async fn rediss_with_a_private_ca_works_and_unverified_servers_are_refused() {
    let certs = tempfile::tempdir().unwrap();
    let tls = make_tls_files(certs.path());
    let redis = RedisServer::start(RedisOptions {
        tls: Some(tls.clone()),
        extra_binds: vec!["127.0.0.2".into()],
        ..RedisOptions::default()
    })
    .await;
    // The harness uses the plain port; the binaries under test use TLS only.
    let env = TestEnv::on_servers(&oms_tests::mysql_server(), &redis.url()).await;
    enqueue_some(&env, 300).await;
    let ca = tls.ca.display().to_string();
    let mut vars = env_vars(&env);
    vars.retain(|(k, _)| *k != "REDIS_URL");
    let with_url = |url: String| {
        let mut v = vars.clone();
        v.push(("REDIS_URL", url));
        v
    };

    // Refused: no CA given (the public roots do not know ours), a certificate that does
    // not name the host dialled, a CA file that does not exist.
    for (url, ca_file, expect) in [
        (redis.tls_url("127.0.0.1"), None, "certificate"),
        (redis.tls_url("127.0.0.2"), Some(ca.clone()), "certificate"),
        (
            redis.tls_url("localhost"),
            Some("/nonexistent/ca.pem".to_string()),
            "REDIS_CA_CERT",
        ),
    ] {
        let mut v = with_url(url.clone());
        if let Some(ca_file) = ca_file {
            v.push(("REDIS_CA_CERT", ca_file));
        }
        let out = producer(&v, &["status"]);
        let (stdout, stderr) = text(&out);
        eprintln!("producer status, {url}: {}", stderr.trim());
        assert!(!out.status.success(), "{url} must be refused: {stdout}");
        assert!(
            stderr.to_lowercase().contains(&expect.to_lowercase()),
            "{url}: the error says why ({expect}): {stderr}"
        );
    }

    // Works: with REDIS_CA_CERT, by IP and by name, consumer and admin commands.
    let url = redis.tls_url("localhost");
    let mut v = with_url(redis.tls_url("127.0.0.1"));
    v.push(("REDIS_CA_CERT", ca.clone()));
    producer_ok(&v, &["status"]);
    let logs = LogDir::new();
    let spec = ConsumerSpec::new(&env, "tls", &[])
        .with_env("REDIS_URL", &url)
        .with_env("REDIS_CA_CERT", &ca);
    let mut consumer = ConsumerProc::spawn(&spec, &logs);
    wait_settled(&env, 300, DEADLINE).await;
    let status = consumer.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "consumer over TLS: {status:?}\n{}",
        consumer.log()
    );
    let mut v = with_url(url);
    v.push(("REDIS_CA_CERT", ca));
    for args in [&["status"][..], &["leaderboard", "update"], &["reconcile"]] {
        producer_ok(&v, args);
    }
    let v = violations(&env, &[("A".into(), 1_000_000)].into()).await;
    assert!(v.is_empty(), "{v:?}");
}
