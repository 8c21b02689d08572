//! `oms-reports`: what operators read, as typed values — the one implementation behind
//! both the `producer` CLI (which parses arguments and renders) and `producer serve`
//! (which returns JSON).
//!
//! - [`status`]: the stream and its group, one import's progress, rate and ETA;
//! - [`kpis`]: the KPI periods of a day, read or rebuilt (fenced against the outbox);
//! - [`leaderboard`]: the top customers, read or rebuilt with today's snapshot;
//! - [`failed`]: dead letters listed, retried (back to the stream) or purged;
//! - [`reconcile`]: read models compared with MySQL, and repaired;
//! - [`orders`]: live order statistics and "where is my order";
//! - [`pause`]: pausing and resuming the consumers;
//! - [`audit`]: the audit log of operator actions.
//!
//! A crate of its own rather than part of `shared`: the consumer never links it (nor
//! utoipa, whose schema derives document these values in the API), and nothing here is
//! something producer and consumer must agree on. SQL stays in `oms_shared::store`, the
//! stream protocol in `oms_shared::redis::queue`, key names in `oms_shared::redis::keys`.

pub mod audit;
mod error;
pub mod failed;
pub mod kpis;
pub mod leaderboard;
pub mod orders;
pub mod pause;
pub mod reconcile;
pub mod status;

pub use error::{NoSuchDeadLetter, NoSuchImport, ReportError, Result};

use oms_shared::config::ConnectionConfig;
use oms_shared::redis::conn::RedisPool;
use oms_shared::redis::keys::{ReadModelKeys, StreamKeys};
use sqlx::MySqlPool;

/// A small MySQL pool, refused unless the database is migrated.
pub async fn connect_mysql(conn: &ConnectionConfig) -> Result<MySqlPool> {
    Ok(oms_shared::deployment::open_mysql(conn, 2).await?)
}

/// The key names of the stream for this deployment: the partition count recorded in
/// MySQL (`producer migrate --partitions P`). Commands that read only Redis still need it;
/// when MySQL cannot be asked on one Redis, one partition is assumed (the default), with a
/// warning; on a cluster the error stops the command.
pub async fn stream_keys(conn: &ConnectionConfig) -> Result<StreamKeys> {
    let read = async {
        let pool = connect_mysql(conn).await?;
        let keys = oms_shared::deployment::stream_keys(&pool, conn).await?;
        pool.close().await;
        Ok::<_, ReportError>(keys)
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
pub async fn connect_redis(conn: &ConnectionConfig) -> Result<RedisPool> {
    Ok(oms_shared::redis::conn::connect(&conn.redis_url, 2).await?)
}

/// Whether MySQL went back in time (its outbox sequence below an id Redis applied):
/// [`oms_shared::OmsError::HistoryRewound`], with both numbers and the fix, if so.
pub async fn history_rewound(
    pool: &MySqlPool,
    redis: &RedisPool,
    keys: &ReadModelKeys,
) -> Result<Option<oms_shared::OmsError>> {
    let mut rc = redis.get().await?;
    let reading = oms_shared::redis::read_model::HistoryReading::read(&mut *rc, keys, pool).await?;
    Ok(reading.rewound())
}

/// Refuses a fenced rebuild (`kpis generate`, `leaderboard update`) while MySQL went back
/// in time: Redis's record of applied rows belongs to the history that went away, so
/// only `reconcile --fix` may rebuild then (it resets that record in the same script).
pub async fn refuse_if_rewound(
    pool: &MySqlPool,
    redis: &RedisPool,
    keys: &ReadModelKeys,
) -> Result<()> {
    match history_rewound(pool, redis, keys).await? {
        Some(rewound) => Err(rewound.into()),
        None => Ok(()),
    }
}
