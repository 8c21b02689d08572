//! `producer migrate --partitions P`: records the stream's partition count in MySQL
//! (`settings.stream_partitions`), which every producer and consumer then uses.
//!
//! Changing it is refused while an import runs (status `running`, heartbeat within
//! `imports::HEARTBEAT_FRESH_SECS`): its rows would go to streams nobody reads any more.
//! The check and the change are one MySQL transaction holding the `stream_partitions` row
//! locked, and an import creates its row under a shared lock of it, so no import can slip
//! in between. A `running` import without a fresh heartbeat was abandoned (its producer
//! died): it is marked `interrupted` (importing the same file again resumes it) and said.
//! Changing it is also refused while entries are in flight in the layout recorded so far
//! (unread or pending entries, or dead letters, in any of its partitions). Once both hold,
//! the change is recorded and the new partitions' groups are created.

use oms_shared::config::ConnectionConfig;
use oms_shared::redis::keys::StreamKeys;
use oms_shared::redis::partition::PartitionCount;
use oms_shared::store::{partition_fence, settings};

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
// Long on purpose: the fence checks (in-flight entries, unfinished imports) and the
// write of the new P, in one place so no path records P without passing every check.
pub async fn record(
    conn: &ConnectionConfig,
    wanted: Option<u16>,
) -> anyhow::Result<PartitionsReport> {
    let db = oms_shared::db::connect(&conn.database_url, 2).await?;
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
    let mut change = partition_fence::PartitionChange::begin(&db).await?;
    let recorded = change.recorded;
    let running = change.running_imports().await?;
    let alive: Vec<String> = running
        .iter()
        .filter(|i| i.fresh)
        .map(|i| {
            format!(
                "import {} of {} (last heartbeat {} UTC)",
                i.id,
                i.file_name,
                i.heartbeat_at.as_deref().unwrap_or("never")
            )
        })
        .collect();
    if !alive.is_empty() {
        anyhow::bail!(
            "cannot change the orders stream from {} to {} partitions while an import is running: \
             {}; wait until it ends (or stop it), then run producer migrate --partitions {} again",
            recorded.get(),
            wanted.get(),
            alive.join(", "),
            wanted.get()
        );
    }
    let redis = oms_shared::redis::conn::connect(&conn.redis_url, 1).await?;
    let mut rc = redis.get().await?;
    let old = StreamKeys::for_layout(&conn.prefix, recorded, conn.is_cluster());
    let stats = oms_shared::redis::queue::group_stats(&mut *rc, &old).await?;
    let dead = oms_shared::redis::queue::dead_letter_count(&mut *rc, &old).await?;
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
    let abandoned: Vec<u64> = running.iter().map(|i| i.id).collect();
    change.mark_abandoned(&abandoned).await?;
    change.record(wanted).await?;
    for i in &running {
        let since = i
            .heartbeat_at
            .as_deref()
            .map_or("ever".to_string(), |h| format!("{h} UTC"));
        tracing::warn!(
            "import {} of {} was running without a heartbeat since {since} (its producer is gone): \
             marked interrupted; import the same file again to resume it",
            i.id,
            i.file_name
        );
    }
    let new = old.with_partitions(wanted);
    oms_shared::redis::queue::ensure_group(&mut *rc, &new).await?;
    // The new partitions' streams belong to the same Redis data: give them its epoch.
    oms_shared::redis::epoch::extend_to(&db, &mut *rc, &new).await?;
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
