//! Pausing and resuming consumption, like Horizon's `pause` / `continue`.
//!
//! The flag is one Redis key, `P queue:paused` ([`StreamKeys::queue_paused`]): present
//! while paused. Every consumer polls it at least every 500 ms and, while it is set, reads
//! and claims nothing new (it finishes and acknowledges what it holds). Imports keep
//! enqueueing; their backpressure applies as usual. A consumer that starts while the key
//! exists starts paused.

use redis::aio::ConnectionLike;

use crate::error::Result;
use crate::keys::StreamKeys;

/// Sets or clears the pause flag; returns whether consumption was paused before.
pub async fn set_paused<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
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
pub async fn is_paused<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<bool> {
    let exists: bool = redis::cmd("EXISTS")
        .arg(keys.queue_paused())
        .query_async(conn)
        .await?;
    Ok(exists)
}
