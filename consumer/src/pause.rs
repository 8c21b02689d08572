//! Pause and resume: the consumer's view of `P queue:paused` ([`oms_shared::redis::pause`]).
//!
//! [`watch`] reads the key every [`POLL`] and keeps the [`crate::state::PauseFlag`]; intake consults the
//! flag before every `XREADGROUP` and `XAUTOCLAIM`, so within `POLL` (plus the batches
//! already handed to workers, which are finished and acknowledged) a paused consumer takes
//! no new work. Entries that a read in progress returns once the pause is seen are held,
//! unprocessed, until resume (pending; claimed by others if this consumer stops).
//! Heartbeat, metrics, housekeeping and `/readyz` go on; the `oms_consumer_paused` gauge and
//! the `/readyz` body say so. When Redis cannot be read the flag keeps its last value.
//!
//! Every [`EPOCH_EVERY`] polls the watcher also checks the epoch of the Redis data
//! ([`oms_shared::redis::epoch`]): while Redis lacks it (restarted without persistence),
//! intake takes no work as if paused, `/readyz` answers 503 naming `producer recover`,
//! and `oms_redis_data_lost` is 1. A mismatch is confirmed against MySQL's record first
//! (`recover` changes it), so the consumer resumes by itself once recovery is done.

use std::sync::Arc;
use std::time::Duration;

use oms_shared::redis::epoch::{self, EpochState};
use tokio_util::sync::CancellationToken;

use crate::state::Shared;

/// How often the pause key is read.
pub const POLL: Duration = Duration::from_millis(250);

/// The epoch is checked every this many polls (once a second).
pub const EPOCH_EVERY: u32 = 4;

/// Reads the pause key once (false when it cannot be read).
pub async fn read(shared: &Shared) -> Option<bool> {
    let mut conn = shared.redis.get().await.ok()?;
    oms_shared::redis::pause::is_paused(&mut *conn, &shared.keys)
        .await
        .ok()
}

/// Checks the epoch: against `expected` (MySQL's record as last read), then, on a
/// mismatch, against MySQL's record read again. `None` when a server cannot be read.
async fn check_epoch(shared: &Shared, expected: &mut Option<String>) -> Option<EpochState> {
    let mut conn = shared.redis.get().await.ok()?;
    if let Some(e) = expected.clone() {
        let state = epoch::compare(&mut *conn, &shared.keys, e).await.ok()?;
        if !state.is_lost() {
            return Some(state);
        }
    }
    let state = epoch::check(&shared.db, &mut *conn, &shared.keys)
        .await
        .ok()?;
    *expected = match &state {
        EpochState::Intact(e) => Some(e.clone()),
        EpochState::Lost(loss) => Some(loss.expected.clone()),
    };
    Some(state)
}

/// Refreshes the flag every [`POLL`], and the epoch every [`EPOCH_EVERY`] polls, until
/// `shutdown`.
pub async fn watch(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut expected: Option<String> = None;
    let mut polls = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => break,
        }
        let reading = tokio::time::timeout(POLL * 4, read(&shared)).await;
        if let Ok(Some(paused)) = reading {
            shared.pause.set(paused);
        }
        polls += 1;
        if polls.is_multiple_of(EPOCH_EVERY) {
            let checked = tokio::time::timeout(POLL * 4, check_epoch(&shared, &mut expected));
            if let Ok(Some(state)) = checked.await {
                shared.pause.set_redis_lost(match state {
                    EpochState::Intact(_) => None,
                    EpochState::Lost(loss) => Some(loss.describe()),
                });
            }
        }
    }
}
