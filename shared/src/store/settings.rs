//! The `settings` table: properties of the deployment that every producer and consumer
//! must agree on:
//! - `stream_partitions`: the number of partitions of the orders stream (recorded by
//!   `producer migrate --partitions`; 1 by default);
//! - `redis_epoch`: the epoch of the Redis data this database goes with
//!   ([`crate::redis::epoch`]);
//! - `queue_paused`: `1` while `producer queue pause` is in force: the source of truth of
//!   the pause flag, which Redis only mirrors (so a Redis that lost its data can be told
//!   again, [`crate::redis::pause::reassert`]);
//! - `archived_before`: the `--before` day of the last complete `producer archive` run
//!   (terminal orders of earlier KPI days are in `archived_orders`, not `orders`).
//!
//! The partition count is fenced against running imports (`partition_fence`).

use sqlx::{MySqlConnection, MySqlPool};

use crate::error::{OmsError, Result};
use crate::redis::keys::StreamKeys;
use crate::redis::partition::PartitionCount;

pub(crate) const STREAM_PARTITIONS: &str = "stream_partitions";

const REDIS_EPOCH: &str = "redis_epoch";

/// Write conflicts [`record_first_redis_epoch`] retries before it gives up.
const FIRST_EPOCH_CONFLICTS: u64 = 5;
const QUEUE_PAUSED: &str = "queue_paused";
const ARCHIVED_BEFORE: &str = "archived_before";

const SELECT_SETTING: &str = "SELECT value FROM settings WHERE name = ?";
pub(crate) const UPSERT_SETTING: &str = "INSERT INTO settings (name, value) VALUES (?, ?) \
     ON DUPLICATE KEY UPDATE value = VALUES(value)";

/// The recorded partition count of the orders stream (1 when none is recorded).
pub async fn stream_partitions(pool: &MySqlPool) -> Result<PartitionCount> {
    let row: Option<(String,)> = sqlx::query_as(SELECT_SETTING)
        .bind(STREAM_PARTITIONS)
        .fetch_optional(pool)
        .await?;
    parse_partitions(row)
}

/// The partition count read on `conn` under `lock` (` FOR UPDATE` or ` LOCK IN SHARE MODE`).
pub(crate) async fn locked_stream_partitions(
    conn: &mut MySqlConnection,
    lock: &'static str,
) -> Result<PartitionCount> {
    let row: Option<(String,)> = sqlx::query_as(&format!("{SELECT_SETTING}{lock}"))
        .bind(STREAM_PARTITIONS)
        .fetch_optional(conn)
        .await?;
    parse_partitions(row)
}

fn parse_partitions(row: Option<(String,)>) -> Result<PartitionCount> {
    let Some((value,)) = row else {
        return Ok(PartitionCount::ONE);
    };
    value
        .parse::<u16>()
        .ok()
        .and_then(PartitionCount::new)
        .ok_or_else(|| {
            OmsError::Config(format!(
                "settings.stream_partitions is {value:?}: not a partition count (1 to {})",
                PartitionCount::MAX
            ))
        })
}

/// Records the partition count (callers check first that nothing is in flight).
pub async fn record_stream_partitions(pool: &MySqlPool, partitions: PartitionCount) -> Result<()> {
    sqlx::query(UPSERT_SETTING)
        .bind(STREAM_PARTITIONS)
        .bind(partitions.get().to_string())
        .execute(pool)
        .await?;
    Ok(())
}

/// The value of one setting, if recorded.
async fn setting(pool: &MySqlPool, name: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(SELECT_SETTING)
        .bind(name)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(v,)| v))
}

async fn record_setting(pool: &MySqlPool, name: &str, value: &str) -> Result<()> {
    sqlx::query(UPSERT_SETTING)
        .bind(name)
        .bind(value)
        .execute(pool)
        .await?;
    Ok(())
}

/// The epoch of the Redis data recorded in MySQL (none before the first process ran).
pub async fn redis_epoch(pool: &MySqlPool) -> Result<Option<String>> {
    setting(pool, REDIS_EPOCH).await
}

/// Records `epoch` unless one is recorded already; returns the one recorded afterwards
/// (two processes starting at once agree on the first).
///
/// On Galera, processes starting at once on different nodes all insert the row and all but
/// one lose certification (1213): the row exists then, and the retry settles on it.
pub async fn record_first_redis_epoch(pool: &MySqlPool, epoch: &str) -> Result<String> {
    let mut conflicts = 0;
    loop {
        let inserted = sqlx::query("INSERT IGNORE INTO settings (name, value) VALUES (?, ?)")
            .bind(REDIS_EPOCH)
            .bind(epoch)
            .execute(pool)
            .await
            .map_err(OmsError::from);
        match inserted {
            Err(e) if e.is_write_conflict() && conflicts < FIRST_EPOCH_CONFLICTS => {
                conflicts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 * conflicts)).await;
            }
            other => {
                other?;
                break;
            }
        }
    }
    Ok(redis_epoch(pool)
        .await?
        .unwrap_or_else(|| epoch.to_string()))
}

/// Records a new epoch (`producer recover`).
pub(crate) async fn record_redis_epoch(pool: &MySqlPool, epoch: &str) -> Result<()> {
    record_setting(pool, REDIS_EPOCH, epoch).await
}

/// Whether consumption is paused, as recorded in MySQL (the source of truth).
pub async fn queue_paused(pool: &MySqlPool) -> Result<bool> {
    Ok(setting(pool, QUEUE_PAUSED).await?.as_deref() == Some("1"))
}

/// Records whether consumption is paused.
pub async fn record_queue_paused(pool: &MySqlPool, paused: bool) -> Result<()> {
    record_setting(pool, QUEUE_PAUSED, if paused { "1" } else { "0" }).await
}

/// The `--before` day of the last complete `producer archive` run, if any.
pub async fn archived_before(pool: &MySqlPool) -> Result<Option<chrono::NaiveDate>> {
    let Some(value) = setting(pool, ARCHIVED_BEFORE).await? else {
        return Ok(None);
    };
    chrono::NaiveDate::parse_from_str(&value, "%Y-%m-%d")
        .map(Some)
        .map_err(|e| {
            OmsError::Config(format!(
                "settings.archived_before is {value:?}: not a day YYYY-MM-DD ({e})"
            ))
        })
}

/// Records the `--before` day of a complete `producer archive` run.
pub async fn record_archived_before(pool: &MySqlPool, before: chrono::NaiveDate) -> Result<()> {
    record_setting(
        pool,
        ARCHIVED_BEFORE,
        &before.format("%Y-%m-%d").to_string(),
    )
    .await
}

/// The key names of this deployment: `prefix`, the recorded partition count, and whether
/// Redis is a cluster.
pub(crate) async fn deployment_keys(
    pool: &MySqlPool,
    prefix: &str,
    cluster: bool,
) -> Result<StreamKeys> {
    Ok(StreamKeys::for_layout(
        prefix,
        stream_partitions(pool).await?,
        cluster,
    ))
}
