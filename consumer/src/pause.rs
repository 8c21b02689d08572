//! Pause and resume: the consumer's view of `P queue:paused` ([`oms_shared::queue_control`]).
//!
//! [`watch`] reads the key every [`POLL`] and keeps a [`PauseFlag`]; intake consults the
//! flag before every `XREADGROUP` and `XAUTOCLAIM`, so within `POLL` (plus the batches
//! already handed to workers, which are finished and acknowledged) a paused consumer takes
//! no new work. Entries that a read in progress returns once the pause is seen are held,
//! unprocessed, until resume (pending; claimed by others if this consumer stops).
//! Heartbeat, metrics, housekeeping and `/readyz` go on; the `oms_consumer_paused` gauge and
//! the `/readyz` body say so. When Redis cannot be read the flag keeps its last value.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;
use crate::metrics::PAUSED;

/// How often the pause key is read.
pub const POLL: Duration = Duration::from_millis(250);

/// Whether consumption is paused, as last read from Redis.
#[derive(Debug)]
pub struct PauseFlag {
    tx: watch::Sender<bool>,
}

impl PauseFlag {
    pub fn new(paused: bool) -> Self {
        metrics::gauge!(PAUSED).set(if paused { 1.0 } else { 0.0 });
        PauseFlag {
            tx: watch::Sender::new(paused),
        }
    }

    pub fn is_paused(&self) -> bool {
        *self.tx.borrow()
    }

    /// Records a new reading; logs and updates the gauge on a change.
    pub fn set(&self, paused: bool) {
        let changed = self.tx.send_if_modified(|v| {
            let changed = *v != paused;
            *v = paused;
            changed
        });
        if changed {
            metrics::gauge!(PAUSED).set(if paused { 1.0 } else { 0.0 });
            if paused {
                tracing::info!("queue paused: reading no new entries, finishing held work");
            } else {
                tracing::info!("queue resumed");
            }
        }
    }

    /// Waits while paused; true when `shutdown` came first.
    pub async fn wait_while_paused(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.tx.subscribe();
        tokio::select! {
            _ = rx.wait_for(|paused| !*paused) => shutdown.is_cancelled(),
            _ = shutdown.cancelled() => true,
        }
    }
}

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
