//! `producer migrate --partitions P`: records the stream's partition count in MySQL
//! (`settings.stream_partitions`), which every producer and consumer then uses.
//!
//! Changing it is refused while entries are in flight in the layout recorded so far
//! (unread or pending entries, or dead letters, in any of its partitions): they would be
//! stranded in streams nobody reads any more. Once the stream is drained the change is
//! recorded and the new partitions' groups are created.

use oms_shared::config::ConnectionConfig;
use oms_shared::keys::StreamKeys;
use oms_shared::partition::PartitionCount;
use oms_shared::store::settings;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct MigrateArgs {
    /// Split the orders stream into this many partitions (1 to 1024; default: keep the
    /// recorded count, 1 when none is recorded).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub partitions: Option<u16>,
}

/// The partition count after `migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionsReport {
    pub partitions: u16,
    pub changed: bool,
}

/// Records `wanted` (when given and different), refusing while entries are in flight.
pub async fn record(
    conn: &ConnectionConfig,
    wanted: Option<u16>,
) -> anyhow::Result<PartitionsReport> {
    let db = oms_shared::db::connect(&conn.database_url, 1).await?;
    let recorded = settings::stream_partitions(&db).await?;
    let Some(wanted) = wanted.and_then(PartitionCount::new) else {
        db.close().await;
        return Ok(PartitionsReport {
            partitions: recorded.get(),
            changed: false,
        });
    };
    if wanted == recorded {
        settings::record_stream_partitions(&db, wanted).await?;
        db.close().await;
        return Ok(PartitionsReport {
            partitions: wanted.get(),
            changed: false,
        });
    }
    let redis = oms_shared::redis_conn::connect(&conn.redis_url, 1).await?;
    let mut rc = redis.get().await?;
    let old = StreamKeys::for_layout(&conn.prefix, recorded, conn.is_cluster());
    let stats = oms_shared::queue::group_stats(&mut *rc, &old).await?;
    let dead = oms_shared::queue::dead_letter_count(&mut *rc, &old).await?;
    let unread = stats.backlog();
    if unread > 0 || stats.pending > 0 || dead > 0 {
        anyhow::bail!(
            "cannot change the orders stream from {} to {} partitions while entries are in flight: \
             {unread} unread, {} pending, {dead} dead letters; let the consumers drain the stream \
             (producer status), retry or purge the dead letters (producer failed), then run \
             producer migrate --partitions {} again",
            recorded.get(),
            wanted.get(),
            stats.pending,
            wanted.get()
        );
    }
    settings::record_stream_partitions(&db, wanted).await?;
    let new = old.with_partitions(wanted);
    oms_shared::queue::ensure_group(&mut *rc, &new).await?;
    // The new partitions' streams belong to the same Redis data: give them its epoch.
    oms_shared::redis_epoch::extend_to(&db, &mut *rc, &new).await?;
    db.close().await;
    tracing::info!(
        from = recorded.get(),
        to = wanted.get(),
        "recorded the stream's partition count"
    );
    Ok(PartitionsReport {
        partitions: wanted.get(),
        changed: true,
    })
}
