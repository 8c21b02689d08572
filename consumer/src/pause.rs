//! Pause and resume: the consumer's view of `P queue:paused` ([`oms_shared::queue_control`]).
//!
//! [`watch`] reads the key every [`POLL`] and keeps the [`crate::state::PauseFlag`]; intake consults the
//! flag before every `XREADGROUP` and `XAUTOCLAIM`, so within `POLL` (plus the batches
//! already handed to workers, which are finished and acknowledged) a paused consumer takes
//! no new work. Entries that a read in progress returns once the pause is seen are held,
//! unprocessed, until resume (pending; claimed by others if this consumer stops).
//! Heartbeat, metrics, housekeeping and `/readyz` go on; the `oms_consumer_paused` gauge and
//! the `/readyz` body say so. When Redis cannot be read the flag keeps its last value.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::Shared;

/// How often the pause key is read.
pub const POLL: Duration = Duration::from_millis(250);

/// Reads the pause key once (false when it cannot be read).
pub async fn read(shared: &Shared) -> Option<bool> {
    let mut conn = shared.redis.get().await.ok()?;
    oms_shared::queue_control::is_paused(&mut *conn, &shared.keys)
        .await
        .ok()
}

/// Refreshes the flag every [`POLL`] until `shutdown`.
pub async fn watch(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => break,
        }
        let reading = tokio::time::timeout(POLL * 4, read(&shared)).await;
        if let Ok(Some(paused)) = reading {
            shared.pause.set(paused);
        }
    }
}
