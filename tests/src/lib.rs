//! Test harness for the workspace integration tests in `tests/tests/it/` (one binary, a module per area).
//!
//! [`TestEnv::new`] gives each test its own MySQL database (`oms_test_<random>`, migrated)
//! and its own Redis prefix, so tests run in parallel against the one local MariaDB and
//! Redis. Dropping the env drops the database and deletes the prefix's keys.
//!
//! The tests take their servers from the programs' settings: `DATABASE_URL` (default
//! `mysql://root@127.0.0.1:3306/oms`; its user needs the right to create and drop
//! databases, and its database part is replaced by each test's own) and `REDIS_URL`
//! (default `redis://127.0.0.1:6379`). `ops/test.sh` starts the servers and, when
//! `DATABASE_URL` is not set, exports the URL of the MySQL user `ops/services.sh` created.

pub mod api_client;
pub mod cluster;
pub mod galera;
pub mod invariants;
pub mod netns;
pub mod otlp_receiver;
pub mod procs;
pub mod servers;
pub mod tcp_proxy;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use oms_shared::config::ConnectionConfig;
use oms_shared::redis::conn::RedisPool;
use oms_shared::redis::keys::StreamKeys;
use rand::Rng;
use sqlx::MySqlPool;

/// The MySQL server of `DATABASE_URL` (or its default) without database or parameters:
/// `mysql://user:password@host:port`, to which a test appends `/its_database`.
pub fn mysql_server() -> String {
    let url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/oms".into());
    server_of(&url)
}

/// `REDIS_URL`, or the local server by default.
pub fn redis_server() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `scheme://user:password@host:port` of a server URL: path, query and fragment dropped.
fn server_of(url: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("DATABASE_URL: {e}"));
    parsed.set_path("");
    parsed.set_query(None);
    parsed.set_fragment(None);
    parsed.as_str().trim_end_matches('/').to_string()
}

/// `url` with its password replaced by `password` (user, host and database kept).
pub fn with_password(url: &str, password: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    parsed
        .set_password(Some(password))
        .unwrap_or_else(|()| panic!("{url} cannot carry a password"));
    parsed.into()
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
        if std::env::var_os("OMS_TEST_LOG").is_some() {
            oms_shared::telemetry::init("text");
        }
        TestEnv::on_servers(&mysql_server(), &redis_server()).await
    }

    /// A [`TestEnv`] on given servers: a fresh migrated database on `mysql_server`
    /// (`mysql://user@host:port`, no database) and a fresh prefix on `redis_url`.
    /// Drop it before the servers it uses (declare it after them).
    pub async fn on_servers(mysql_server: &str, redis_url: &str) -> TestEnv {
        let id: u64 = rand::rng().random();
        let database = format!("oms_test_{id:016x}");
        let prefix = format!("oms_test_{id:016x}:");
        let config =
            ConnectionConfig::new(&format!("{mysql_server}/{database}"), redis_url, &prefix);
        oms_shared::db::migrate(&config.database_url)
            .await
            .expect("migrate the test database");
        let db = oms_shared::db::connect(&config.database_url, 8)
            .await
            .expect("connect to MySQL");
        let redis = oms_shared::redis::conn::connect(&config.redis_url, 8)
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
            // The fixed limit: tests that import before their consumers start must not
            // wait for them; the automatic limit has tests of its own.
            ("IMPORT_MAX_LAG", "1000000".to_string()),
        ]
    }

    /// Runs a SQL query returning one integer (tests' assertions), whatever its SQL type.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let wrapped = format!("SELECT CAST(({sql}) AS SIGNED)");
        let (v,): (Option<i64>,) = sqlx::query_as(&wrapped)
            .fetch_one(&self.db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        v.unwrap_or(0)
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
    pub type Conn = oms_shared::redis::conn::RedisConnection;
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

/// Consumers and seed data, for the workflow tests.
impl TestEnv {
    /// A consumer configuration for this env: metrics on an ephemeral port, payment seed 1.
    pub fn consumer_config(&self) -> consumer::config::ConsumerConfig {
        let mut c = consumer::config::ConsumerConfig::with_connection(self.config.clone());
        c.metrics_addr = "127.0.0.1:0".parse().expect("addr");
        c.payment_seed = 1;
        c.name = Some(format!("test-{}", rand::rng().random::<u32>()));
        c
    }

    /// Runs a consumer in this process until the returned token is cancelled.
    pub fn spawn_consumer(
        &self,
        config: consumer::config::ConsumerConfig,
    ) -> (
        tokio::task::JoinHandle<anyhow::Result<()>>,
        tokio_util::sync::CancellationToken,
    ) {
        let token = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(consumer::app::run(config, token.clone()));
        (handle, token)
    }

    /// Inserts a catalog row.
    pub async fn product(&self, sku: &str, price: &str, stock: i64) {
        sqlx::query("INSERT INTO products (sku, name, price, stock_quantity) VALUES (?, ?, ?, ?)")
            .bind(sku)
            .bind(format!("Product {sku}"))
            .bind(price)
            .bind(stock)
            .execute(&self.db)
            .await
            .expect("insert product");
    }

    /// Creates an `imports` row (orders reference it) and returns its id.
    pub async fn import_row(&self) -> u64 {
        sqlx::query(
            "INSERT INTO imports (file_name, file_sha256) VALUES ('test.csv', REPEAT('0', 64))",
        )
        .execute(&self.db)
        .await
        .expect("insert import")
        .last_insert_id()
    }

    /// Enqueues rows as chunks of `chunk` rows, like the producer does.
    pub async fn enqueue(
        &self,
        import_id: u64,
        rows: &[oms_shared::order::OrderRow],
        chunk: usize,
    ) {
        let mut conn = self.redis_conn().await;
        oms_shared::redis::queue::ensure_group(&mut *conn, &self.keys)
            .await
            .expect("group");
        let chunks: Vec<&[oms_shared::order::OrderRow]> = rows.chunks(chunk.max(1)).collect();
        for part in chunks.chunks(50) {
            oms_shared::redis::queue::add_chunks(&mut *conn, &self.keys, import_id, part)
                .await
                .expect("xadd");
        }
    }

    /// Orders in a terminal state (archived ones, which were, included).
    pub async fn terminal_orders(&self) -> i64 {
        self.scalar(
            "SELECT (SELECT COUNT(*) FROM orders WHERE status IN ('completed','failed')) \
             + (SELECT COUNT(*) FROM archived_orders)",
        )
        .await
    }

    /// Waits until `n` orders are terminal, nothing is pending or unread in the group, and
    /// the read models are final ([`invariants::read_models_final`]: every committed
    /// outbox row applied to Redis), so that checks of MySQL *and* Redis may follow.
    pub async fn wait_until_processed(&self, n: i64, deadline: Duration) {
        wait_for(
            &format!("{n} terminal orders, an empty PEL and final read models"),
            deadline,
            || async {
                let done = self.terminal_orders().await >= n;
                let mut conn = self.redis_conn().await;
                let stats = oms_shared::redis::queue::group_stats(&mut *conn, &self.keys)
                    .await
                    .ok()?;
                let drained = done && stats.pending == 0 && stats.lag == Some(0);
                (drained && invariants::read_models_final(self).await?).then_some(())
            },
        )
        .await
    }
}

/// `rows` of one import as the workflow's input.
pub fn batch_rows(
    import_id: u64,
    rows: &[oms_shared::order::OrderRow],
) -> Vec<oms_shared::store::orders::BatchRow<'_>> {
    rows.iter()
        .map(|row| oms_shared::store::orders::BatchRow { import_id, row })
        .collect()
}

/// An order row for tests: `items` as (sku, quantity).
pub fn order_row(
    identity: &str,
    line: u64,
    email: &str,
    items: &[(&str, u32)],
) -> oms_shared::order::OrderRow {
    oms_shared::order::OrderRow {
        identity: oms_shared::order::OrderIdentity::from_order_id(identity),
        line,
        customer_name: format!("Customer {email}"),
        customer_email: email.to_string(),
        items: items
            .iter()
            .map(|(sku, quantity)| oms_shared::order::OrderItem {
                sku: sku.to_string(),
                quantity: *quantity,
            })
            .collect(),
        order_date: None,
    }
}

#[cfg(test)]
mod server_url_tests {
    use super::{server_of, with_password};

    #[test]
    fn the_server_of_a_database_url_keeps_credentials_and_drops_the_rest() {
        assert_eq!(
            server_of("mysql://oms:p%40ss@127.0.0.1:3306/oms?ssl-mode=disabled#x"),
            "mysql://oms:p%40ss@127.0.0.1:3306"
        );
        assert_eq!(
            server_of("mysql://root@db.example:3307/"),
            "mysql://root@db.example:3307"
        );
        assert_eq!(
            server_of("mysql://root@localhost"),
            "mysql://root@localhost"
        );
    }

    #[test]
    fn a_wrong_password_replaces_the_urls_own_for_any_user() {
        assert_eq!(
            with_password("mysql://oms:s3cret@127.0.0.1:3306/oms_test_1", "wrong"),
            "mysql://oms:wrong@127.0.0.1:3306/oms_test_1"
        );
        assert_eq!(
            with_password("mysql://root@127.0.0.1:3306/db", "wrong"),
            "mysql://root:wrong@127.0.0.1:3306/db"
        );
    }
}
