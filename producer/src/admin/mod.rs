//! The admin commands of `producer`: status, failed, kpis, leaderboard, reconcile, queue
//! pause/resume, and the order reports of the HTTP API (`orders`).
//!
//! Each command has a library function returning a serializable report (tests call it
//! in-process) and a `run` that prints it as an aligned table or, with `--json`, as the
//! JSON documented on the module. Connections go through the shared connect functions, so
//! an unreachable server is one error line naming its host.

pub mod failed;
pub mod kpis;
pub mod leaderboard;
pub mod orders;
pub mod queue;
pub mod reconcile;
pub mod status;

use oms_shared::config::ConnectionConfig;
use oms_shared::keys::StreamKeys;
use oms_shared::redis_conn::RedisPool;
use sqlx::MySqlPool;

/// A small MySQL pool, refused unless the database is migrated.
pub(crate) async fn connect_mysql(conn: &ConnectionConfig) -> anyhow::Result<MySqlPool> {
    let pool = oms_shared::db::connect(&conn.database_url, 2).await?;
    oms_shared::db::ensure_migrated(&pool, &conn.database_url).await?;
    Ok(pool)
}

/// The key names of the stream for this deployment: the partition count recorded in
/// MySQL (`producer migrate --partitions P`). Commands that read only Redis still need it;
/// when MySQL cannot be asked on one Redis, one partition is assumed (the default), with a
/// warning; on a cluster the error stops the command.
pub(crate) async fn stream_keys(conn: &ConnectionConfig) -> anyhow::Result<StreamKeys> {
    let read = async {
        let pool = connect_mysql(conn).await?;
        let keys =
            oms_shared::store::settings::deployment_keys(&pool, &conn.prefix, conn.is_cluster())
                .await?;
        pool.close().await;
        Ok::<_, anyhow::Error>(keys)
    };
    match read.await {
        Ok(keys) => Ok(keys),
        Err(e) if !conn.is_cluster() => {
            tracing::warn!(error = %e, "cannot read the partition count from MySQL; assuming 1");
            Ok(StreamKeys::new(&conn.prefix))
        }
        Err(e) => Err(e),
    }
}

/// A small Redis pool, checked with `PING`.
pub(crate) async fn connect_redis(conn: &ConnectionConfig) -> anyhow::Result<RedisPool> {
    Ok(oms_shared::redis_conn::connect(&conn.redis_url, 2).await?)
}
