//! The `settings` table: properties of the deployment that every producer and consumer
//! must agree on, recorded by `producer migrate`. Today one: `stream_partitions`, the
//! number of partitions of the orders stream (no row: 1).
//!
//! The partition count is fenced against running imports: [`PartitionChange`] changes it
//! under `SELECT … FOR UPDATE` of its row, after checking the running imports, and an
//! import creates its row under `LOCK IN SHARE MODE` of the same row
//! (`imports::create_import`), so every import uses either the count before a change (and
//! that change is refused while it runs) or the count after it.

use sqlx::{MySql, MySqlConnection, MySqlPool, Transaction};

use crate::error::{OmsError, Result};
use crate::keys::StreamKeys;
use crate::partition::PartitionCount;
use crate::store::imports::{self, RunningImport};

const STREAM_PARTITIONS: &str = "stream_partitions";

const SELECT_SETTING: &str = "SELECT value FROM settings WHERE name = ?";
const UPSERT_SETTING: &str = "INSERT INTO settings (name, value) VALUES (?, ?) \
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

/// A change of the partition count in progress: a transaction holding the
/// `stream_partitions` row locked (`FOR UPDATE`), so no import can be created meanwhile.
/// Dropped without [`PartitionChange::record`], it rolls back.
pub struct PartitionChange {
    tx: Transaction<'static, MySql>,
    /// The count recorded before the change.
    pub recorded: PartitionCount,
}

impl PartitionChange {
    /// Begins the change: locks the row and reads the recorded count.
    pub async fn begin(pool: &MySqlPool) -> Result<PartitionChange> {
        let mut tx = pool.begin().await?;
        let recorded = locked_stream_partitions(&mut tx, " FOR UPDATE").await?;
        Ok(PartitionChange { tx, recorded })
    }

    /// Imports whose status is `running`, each with whether its heartbeat is fresh.
    pub async fn running_imports(&mut self) -> Result<Vec<RunningImport>> {
        imports::running_imports(&mut self.tx).await
    }

    /// Marks abandoned imports (running, heartbeat not fresh) `interrupted`.
    pub async fn mark_abandoned(&mut self, ids: &[u64]) -> Result<()> {
        imports::mark_abandoned(&mut self.tx, ids).await
    }

    /// Records `partitions` and commits.
    pub async fn record(mut self, partitions: PartitionCount) -> Result<()> {
        sqlx::query(UPSERT_SETTING)
            .bind(STREAM_PARTITIONS)
            .bind(partitions.get().to_string())
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
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
