//! Redis connection pools (deadpool over multiplexed connections).
//!
//! Every connection gets a 30 s response timeout: long enough for a blocking `XREADGROUP`
//! and a large pipeline, short enough that a dead server surfaces as an error and the
//! caller backs off and reconnects (deadpool drops broken connections on recycle).

use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::AsyncConnectionConfig;

use crate::config::host_of;
use crate::error::{OmsError, Result};

pub type RedisPool = Pool;
pub type RedisConnection = deadpool_redis::Connection;

/// Response timeout of every Redis command (blocking reads block for at most a few seconds).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a pool of at most `max_size` connections. Does not connect yet: see [`ping`].
pub fn pool(url: &str, max_size: usize) -> Result<RedisPool> {
    let unreachable = |source| OmsError::RedisUnreachable {
        host: host_of(url),
        source,
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let manager = Manager::new_with_config(url, config).map_err(unreachable)?;
    Pool::builder(manager)
        .max_size(max_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| OmsError::Config(format!("Redis pool for {}: {e}", host_of(url))))
}

/// Builds the pool and checks that Redis answers `PING`, naming the host if not.
pub async fn connect(url: &str, max_size: usize) -> Result<RedisPool> {
    let pool = pool(url, max_size)?;
    ping(&pool, url).await?;
    Ok(pool)
}

/// `PING` through the pool; any failure becomes [`OmsError::RedisUnreachable`].
pub async fn ping(pool: &RedisPool, url: &str) -> Result<()> {
    let host = host_of(url);
    let mut conn = pool.get().await.map_err(|e| match e {
        deadpool_redis::PoolError::Backend(source) => OmsError::RedisUnreachable {
            host: host.clone(),
            source,
        },
        other => OmsError::RedisUnreachable {
            host: host.clone(),
            source: redis::RedisError::from(std::io::Error::other(other.to_string())),
        },
    })?;
    let _: String = redis::cmd("PING")
        .query_async(&mut *conn)
        .await
        .map_err(|source| OmsError::RedisUnreachable { host, source })?;
    Ok(())
}
