//! `producer queue pause|resume`: stop every consumer reading new entries, or start again.
//!
//! Sets or clears `P queue:paused` ([`oms_shared::queue_control`]). Consumers poll it every
//! 250 ms: within a second of `pause` none reads or claims a new entry (they finish and
//! acknowledge the batches they hold, keep their metrics and health endpoints, and report
//! `paused` in `/readyz` and `oms_consumer_paused`); within a second of `resume` they read
//! again. Imports keep enqueueing while paused (their `--max-lag` backpressure applies).
//!
//! `--json` prints a [`PauseReport`]: `{"paused": true, "was_paused": false}`.

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;
use oms_shared::keys::StreamKeys;
use oms_shared::redis_conn::RedisPool;
use serde::Serialize;

use crate::report::print_json;

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Every consumer stops reading new entries within 1 s (held work is finished).
    Pause,
    /// Every consumer starts reading again within 1 s.
    Resume,
}

/// What `queue pause` / `queue resume` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PauseReport {
    /// Whether consumption is paused now.
    pub paused: bool,
    /// Whether it was paused before this call.
    pub was_paused: bool,
}

/// Sets the pause flag over an open pool (CLI and HTTP API).
pub async fn set_paused(
    redis: &RedisPool,
    keys: &StreamKeys,
    paused: bool,
) -> anyhow::Result<PauseReport> {
    let mut rc = redis.get().await?;
    let was_paused = oms_shared::queue_control::set_paused(&mut *rc, keys, paused).await?;
    Ok(PauseReport { paused, was_paused })
}

pub async fn run(
    conn: &ConnectionConfig,
    cmd: QueueCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let keys = conn.read_model_keys();
    let redis = super::connect_redis(conn).await?;
    let report = set_paused(&redis, &keys, matches!(cmd, QueueCommand::Pause)).await?;
    if json {
        print_json(&report);
    } else {
        let now = if report.paused { "paused" } else { "running" };
        let before = if report.was_paused {
            "paused"
        } else {
            "running"
        };
        println!("queue {now} (was {before})");
    }
    Ok(ExitCode::SUCCESS)
}
