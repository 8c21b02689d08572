//! The `settings` table: properties of the deployment that every producer and consumer
//! must agree on, recorded by `producer migrate`. Today one: `stream_partitions`, the
//! number of partitions of the orders stream (no row: 1).
//!
//! The partition count is fenced against running imports (`partition_fence`).

use sqlx::{MySqlConnection, MySqlPool};

use crate::error::{OmsError, Result};
use crate::keys::StreamKeys;
use crate::partition::PartitionCount;

pub(crate) const STREAM_PARTITIONS: &str = "stream_partitions";

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

/// The key names of this deployment: `prefix`, the recorded partition count, and whether
/// Redis is a cluster.
pub async fn deployment_keys(pool: &MySqlPool, prefix: &str, cluster: bool) -> Result<StreamKeys> {
    Ok(StreamKeys::for_layout(
        prefix,
        stream_partitions(pool).await?,
        cluster,
    ))
}
