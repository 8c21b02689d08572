//! `producer queue pause|resume`: stop every consumer reading new entries, or start again.
//!
//! Records the flag in MySQL (`settings.queue_paused`, the source of truth, so that a Redis
//! that lost its data is told again by `producer recover`), then sets or clears
//! `P queue:paused` ([`oms_shared::redis::pause`]). Consumers poll it every
//! 250 ms: within a second of `pause` none reads or claims a new entry (they finish and
//! acknowledge the batches they hold, keep their metrics and health endpoints, and report
//! `paused` in `/readyz` and `oms_consumer_paused`); within a second of `resume` they read
//! again. Imports keep enqueueing while paused (their `--max-lag` backpressure applies).
//!
//! `--json` prints a [`PauseReport`]: `{"paused": true, "was_paused": false}`.

use crate::Result;
use oms_shared::redis::conn::RedisPool;
use oms_shared::redis::keys::ReadModelKeys;
use serde::Serialize;
use sqlx::MySqlPool;

/// What `queue pause` / `queue resume` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PauseReport {
    /// Whether consumption is paused now.
    pub paused: bool,
    /// Whether it was paused before this call.
    pub was_paused: bool,
}

/// Sets the pause flag over open pools (CLI and HTTP API): MySQL first, then Redis.
pub async fn set_paused(
    db: &MySqlPool,
    redis: &RedisPool,
    keys: &ReadModelKeys,
    paused: bool,
) -> Result<PauseReport> {
    oms_shared::store::settings::record_queue_paused(db, paused).await?;
    let mut rc = redis.get().await?;
    let was_paused = oms_shared::redis::pause::set_paused(&mut *rc, keys, paused).await?;
    Ok(PauseReport { paused, was_paused })
}
