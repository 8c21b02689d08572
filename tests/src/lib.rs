//! Test harness for the workspace integration tests in `tests/tests/`.
//!
//! [`TestEnv::new`] gives each test its own MySQL database (`oms_test_<random>`, migrated)
//! and its own Redis prefix, so tests run in parallel against the one local MariaDB and
//! Redis. Dropping the env drops the database and deletes the prefix's keys.
//!
//! Servers come from `OMS_TEST_MYSQL` (default `mysql://root@127.0.0.1:3306`) and
//! `OMS_TEST_REDIS` (default `redis://127.0.0.1:6379`); `ops/services.sh` starts them.

use std::path::PathBuf;
use std::time::Duration;

use oms_shared::config::ConnectionConfig;
use oms_shared::keys::StreamKeys;
use oms_shared::redis_conn::RedisPool;
use rand::Rng;
use sqlx::MySqlPool;

pub fn mysql_server() -> String {
    std::env::var("OMS_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn redis_server() -> String {
    std::env::var("OMS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One test's private database and Redis prefix.
pub struct TestEnv {
    pub config: ConnectionConfig,
    pub database: String,
    pub keys: StreamKeys,
    pub db: MySqlPool,
    pub redis: RedisPool,
}

impl TestEnv {
    /// Creates and migrates a fresh database, and picks a fresh prefix.
    pub async fn new() -> TestEnv {
        let id: u64 = rand::rng().random();
        let database = format!("oms_test_{id:016x}");
        let prefix = format!("oms_test_{id:016x}:");
        let config = ConnectionConfig::new(
            &format!("{}/{database}", mysql_server()),
            &redis_server(),
            &prefix,
        );
        oms_shared::db::migrate(&config.database_url)
            .await
            .expect("migrate the test database");
        let db = oms_shared::db::connect(&config.database_url, 8)
            .await
            .expect("connect to MySQL");
        let redis = oms_shared::redis_conn::connect(&config.redis_url, 8)
            .await
            .expect("connect to Redis");
        TestEnv {
            keys: StreamKeys::new(&prefix),
            config,
            database,
            db,
            redis,
        }
    }

    pub async fn redis_conn(&self) -> deadpool_redis_conn::Conn {
        self.redis.get().await.expect("a Redis connection")
    }

    /// Environment variables that point a spawned binary at this env.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.config.database_url.clone()),
            ("REDIS_URL", self.config.redis_url.clone()),
            ("OMS_PREFIX", self.config.prefix.clone()),
        ]
    }

    /// Runs a SQL query returning one integer (tests' assertions).
    pub async fn scalar(&self, sql: &str) -> i64 {
        let (v,): (i64,) = sqlx::query_as(sql)
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        v
    }

    /// Writes `contents` to a temp file that lives as long as the returned guard.
    pub fn file(&self, contents: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::Builder::new()
            .suffix(".csv")
            .tempfile()
            .expect("temp file");
        f.write_all(contents.as_bytes()).expect("write temp file");
        f.flush().expect("flush temp file");
        f
    }
}

/// Re-exported so tests name the pooled connection type without depending on deadpool.
pub mod deadpool_redis_conn {
    pub type Conn = oms_shared::redis_conn::RedisConnection;
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let database_url = self.config.database_url.clone();
        let redis_url = self.config.redis_url.clone();
        let prefix = self.config.prefix.clone();
        let database = self.database.clone();
        // Async clean-up on a thread of its own: Drop cannot await.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(pool) = oms_shared::db::connect(&mysql_server_of(&database_url), 1).await
                {
                    let _ = sqlx::query(&oms_shared::store::schema::drop_database(&database))
                        .execute(&pool)
                        .await;
                }
                if let Ok(client) = redis::Client::open(redis_url.as_str()) {
                    if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                        let keys: Vec<String> = redis::cmd("KEYS")
                            .arg(format!("{prefix}*"))
                            .query_async(&mut conn)
                            .await
                            .unwrap_or_default();
                        for part in keys.chunks(500) {
                            let _: redis::RedisResult<()> =
                                redis::cmd("DEL").arg(part).query_async(&mut conn).await;
                        }
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// `mysql://root@h:3306/db` → `mysql://root@h:3306/mysql` (a database that always exists).
fn mysql_server_of(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/mysql"),
        None => url.to_string(),
    }
}

/// Path of a workspace binary (`producer`, `consumer`) built next to the test executable.
/// `ops/test.sh` builds them first (`cargo build --workspace --bins`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `deadline` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
