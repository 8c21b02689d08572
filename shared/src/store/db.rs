//! MySQL connection, database creation and the embedded migrations.
//!
//! `producer migrate` calls [`migrate`]: it creates the database if missing and applies
//! `migrations/` (embedded at build time). Everything else calls [`connect`], then
//! [`ensure_migrated`], which refuses to run on a database that is missing migrations.
//!
//! A `DATABASE_URL` may name several nodes of a Galera cluster: a pool then uses one node
//! and moves to another when it stops serving ([`crate::store::mysql_nodes`]).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::mysql::MySqlConnection;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::config::{database_name, host_of, mysql_node_urls};
use crate::error::{OmsError, Result};
use crate::store::mysql_nodes::{self, LastMove};

/// The migrations of `migrations/`, embedded in every binary.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Each node of `url` (one URL per node: [`mysql_node_urls`]) with its connect options.
fn node_options(url: &str) -> Result<Vec<(String, MySqlConnectOptions)>> {
    mysql_node_urls(url)
        .into_iter()
        .map(|node| options(&node).map(|o| (node, o)))
        .collect()
}

/// A plain connection to the first node of `url` that answers and serves queries.
async fn connect_one(url: &str, database: Option<&str>) -> Result<MySqlConnection> {
    let mut nodes = node_options(url)?;
    if let Some(database) = database {
        for (_, options) in &mut nodes {
            *options = options.clone().database(database);
        }
    }
    let (_, conn) = mysql_nodes::first_ready(&nodes, 0, unreachable).await?;
    Ok(conn)
}

fn options(url: &str) -> Result<MySqlConnectOptions> {
    let options = MySqlConnectOptions::from_str(url).map_err(|e| {
        OmsError::Config(format!(
            "DATABASE_URL {}: {e}",
            crate::config::redact_url(url)
        ))
    })?;
    Ok(options
        .charset("utf8mb4")
        .timezone(Some(String::from("+00:00")))
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(2)))
}

fn unreachable(url: &str, source: sqlx::Error) -> OmsError {
    match source {
        sqlx::Error::Database(ref db)
            if db.code().as_deref() == Some("42000")
                && db.message().contains("Unknown database") =>
        {
            OmsError::NotMigrated {
                database: database_name(url).unwrap_or_default(),
                detail: "the database does not exist".into(),
            }
        }
        source => OmsError::MysqlUnreachable {
            host: host_of(url),
            source,
        },
    }
}

/// A pool of at most `max_connections`, checked with one connection.
pub async fn connect(url: &str, max_connections: u32) -> Result<MySqlPool> {
    connect_with_acquire_timeout(url, max_connections, Duration::from_secs(10)).await
}

/// [`connect`] with another acquire timeout: how long a call waits for a connection while
/// MySQL is unreachable before it fails (readers that ride out outages and must say so
/// soon use a short one).
pub async fn connect_with_acquire_timeout(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<MySqlPool> {
    // One plain connection first: a refused or failing connection reports its real cause at
    // once, where the pool would retry until its acquire timeout and say "pool timed out".
    // With several nodes, it also picks the first that serves.
    let nodes = node_options(url)?;
    let (current, probe) = mysql_nodes::first_ready(&nodes, 0, unreachable).await?;
    probe.close().await.ok();
    let last_move = Arc::new(LastMove::default());
    let admits = Arc::clone(&last_move);
    let pool = MySqlPoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        // After a move to another node, connections to the node left are closed.
        .before_acquire(move |_conn, meta| {
            let admitted = admits.admits(meta.age);
            Box::pin(async move { Ok(admitted) })
        })
        // READ COMMITTED: each statement sees the latest commits (a customer created by
        // another consumer a moment ago), and InnoDB takes no gap locks. Idle timeouts: a
        // vanished client's session (and its locks) is closed by the server.
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                sqlx::query(crate::store::schema::READ_COMMITTED)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(crate::store::schema::IDLE_SESSION_TIMEOUT)
                    .execute(&mut *conn)
                    .await?;
                // MariaDB only; MySQL 8 answers "unknown variable", which is fine.
                let _ = sqlx::query(crate::store::schema::IDLE_TRANSACTION_TIMEOUT)
                    .execute(&mut *conn)
                    .await;
                mysql_nodes::prepare_session(conn).await
            })
        })
        .connect_with(nodes[current].1.clone())
        .await
        .map_err(|e| unreachable(&nodes[current].0, e))?;
    if nodes.len() > 1 {
        tokio::spawn(mysql_nodes::watch(
            pool.clone(),
            nodes,
            current,
            last_move,
            unreachable,
        ));
    }
    Ok(pool)
}

/// Creates the URL's database (utf8mb4) if it does not exist; true when it was created.
pub async fn create_database_if_missing(url: &str) -> Result<bool> {
    let name = database_name(url)?;
    let mut conn = connect_one(url, Some("")).await?;
    let exists: Option<(String,)> = sqlx::query_as(crate::store::schema::DATABASE_EXISTS)
        .bind(&name)
        .fetch_optional(&mut conn)
        .await?;
    if exists.is_none() {
        sqlx::query(&crate::store::schema::create_database(&name))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await.ok();
    Ok(exists.is_none())
}

/// What `producer migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub database: String,
    pub database_created: bool,
    pub applied: Vec<String>,
}

/// Creates the database if missing and applies pending migrations; a no-op when current.
pub async fn migrate(url: &str) -> Result<MigrationReport> {
    let database_created = create_database_if_missing(url).await?;
    let pool = connect(url, 2).await?;
    let before = applied_versions(&pool).await.unwrap_or_default();
    MIGRATOR.run(&pool).await?;
    let applied = MIGRATOR
        .iter()
        .filter(|m| !before.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    pool.close().await;
    Ok(MigrationReport {
        database: database_name(url)?,
        database_created,
        applied,
    })
}

async fn applied_versions(pool: &MySqlPool) -> Result<Vec<i64>> {
    let rows: Vec<(i64,)> = sqlx::query_as(crate::store::schema::APPLIED_MIGRATIONS)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

/// Fails with [`OmsError::NotMigrated`] unless every embedded migration is applied.
pub async fn ensure_migrated(pool: &MySqlPool, url: &str) -> Result<()> {
    let database = database_name(url)?;
    let applied = applied_versions(pool).await.map_err(|e| match e {
        OmsError::Sql(sqlx::Error::Database(_)) => OmsError::NotMigrated {
            database: database.clone(),
            detail: "no migration has been applied".into(),
        },
        other => other,
    })?;
    if let Some(missing) = MIGRATOR.iter().find(|m| !applied.contains(&m.version)) {
        return Err(OmsError::NotMigrated {
            database,
            detail: format!(
                "migration {} {} is not applied",
                missing.version, missing.description
            ),
        });
    }
    Ok(())
}
