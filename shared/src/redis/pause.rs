//! Pausing and resuming consumption, like Horizon's `pause` / `continue`.
//!
//! The flag is one Redis key, `P queue:paused` ([`ReadModelKeys::queue_paused`]): present
//! while paused. Every consumer polls it at least every 500 ms and, while it is set, reads
//! and claims nothing new (it finishes and acknowledges what it holds). Imports keep
//! enqueueing; their backpressure applies as usual. A consumer that starts while the key
//! exists starts paused.
//!
//! MySQL's `settings.queue_paused` is the source of truth (`producer queue pause` writes it
//! first); the key mirrors it for the consumers' fast polls. [`reassert`] writes the
//! mirror again from MySQL: `producer recover` runs it after Redis lost its data, so a
//! paused queue stays paused.

use redis::aio::ConnectionLike;
use sqlx::MySqlPool;

use crate::error::Result;
use crate::redis::keys::ReadModelKeys;

/// Sets the Redis flag from MySQL's record; returns whether the queue is paused.
pub async fn reassert<C: ConnectionLike>(
    db: &MySqlPool,
    conn: &mut C,
    keys: &ReadModelKeys,
) -> Result<bool> {
    let paused = crate::store::settings::queue_paused(db).await?;
    set_paused(conn, keys, paused).await?;
    Ok(paused)
}

/// Sets or clears the pause flag; returns whether consumption was paused before.
pub async fn set_paused<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    paused: bool,
) -> Result<bool> {
    let was: Option<String> = if paused {
        redis::cmd("SET")
            .arg(keys.queue_paused())
            .arg("1")
            .arg("GET")
            .query_async(conn)
            .await?
    } else {
        redis::cmd("GETDEL")
            .arg(keys.queue_paused())
            .query_async(conn)
            .await?
    };
    Ok(was.is_some())
}

/// Whether consumption is paused.
pub async fn is_paused<C: ConnectionLike>(conn: &mut C, keys: &ReadModelKeys) -> Result<bool> {
    let exists: bool = redis::cmd("EXISTS")
        .arg(keys.queue_paused())
        .query_async(conn)
        .await?;
    Ok(exists)
}
