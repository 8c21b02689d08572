//! One start-up path for every entry point (the consumer, `producer import`, `serve`,
//! `recover`, the reports, the tests): MySQL connected and checked migrated, the stream
//! layout read from it (the partition count `producer migrate --partitions P` recorded),
//! Redis connected and the consumer group ensured on every partition.
//!
//! [`Deployment::connect`] does all of it at once; the consumer, which retries each
//! server on its own while it is unreachable, calls the three steps ([`open_mysql`],
//! [`stream_keys`], [`open_redis`]) in the same order.

use sqlx::MySqlPool;

use crate::config::ConnectionConfig;
use crate::error::Result;
use crate::redis::conn::RedisPool;
use crate::redis::keys::StreamKeys;

/// Both servers of one deployment, and its key names.
#[derive(Clone)]
pub struct Deployment {
    pub db: MySqlPool,
    pub redis: RedisPool,
    pub keys: StreamKeys,
}

/// Connections per pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolSizes {
    pub mysql: u32,
    pub redis: usize,
}

impl PoolSizes {
    /// What a one-shot command needs: two of each.
    pub const COMMAND: PoolSizes = PoolSizes { mysql: 2, redis: 2 };
}

impl Deployment {
    /// [`open_mysql`], [`stream_keys`], [`open_redis`], in that order.
    pub async fn connect(conn: &ConnectionConfig, sizes: PoolSizes) -> Result<Deployment> {
        let db = open_mysql(conn, sizes.mysql).await?;
        let keys = stream_keys(&db, conn).await?;
        let redis = open_redis(conn, &keys, sizes.redis).await?;
        Ok(Deployment { db, redis, keys })
    }
}

/// A MySQL pool of `size` connections, refused unless every migration is applied.
pub async fn open_mysql(conn: &ConnectionConfig, size: u32) -> Result<MySqlPool> {
    let db = crate::db::connect(&conn.database_url, size).await?;
    crate::db::ensure_migrated(&db, &conn.database_url).await?;
    Ok(db)
}

/// The key names of this deployment: the partition count recorded in MySQL, on one Redis
/// or a cluster.
pub async fn stream_keys(db: &MySqlPool, conn: &ConnectionConfig) -> Result<StreamKeys> {
    crate::store::settings::deployment_keys(db, &conn.prefix, conn.is_cluster()).await
}

/// A Redis pool of `size` connections, with the consumer group ensured on every partition
/// of `keys`.
pub async fn open_redis(
    conn: &ConnectionConfig,
    keys: &StreamKeys,
    size: usize,
) -> Result<RedisPool> {
    let redis = crate::redis::conn::connect(&conn.redis_url, size).await?;
    let mut c = redis.get().await?;
    crate::redis::queue::ensure_group(&mut *c, keys).await?;
    drop(c);
    Ok(redis)
}
