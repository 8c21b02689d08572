//! The fence between repartitioning and imports. [`PartitionChange`] changes the recorded
//! partition count under `SELECT … FOR UPDATE` of its `settings` row, after checking the
//! running imports, and an import creates its row under `LOCK IN SHARE MODE` of the same
//! row (`imports::create_import`), so every import uses either the count before a change
//! (and that change is refused while it runs) or the count after it.

use sqlx::{MySql, MySqlPool, Transaction};

use crate::error::Result;
use crate::redis::partition::PartitionCount;
use crate::store::imports::{self, RunningImport};
use crate::store::settings::{locked_stream_partitions, STREAM_PARTITIONS, UPSERT_SETTING};

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
