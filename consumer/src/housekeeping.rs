//! Periodic duties of every consumer: delete applied outbox rows, apply outbox rows left
//! behind by a consumer that died between commit and Redis (the sweeper), trim Redis's
//! record of applied outbox rows to MySQL's watermark, refresh the queue gauges and the
//! import row counters (every 5 s), trim acknowledged entries, probe MySQL/Redis while
//! they are down, and check every second that MySQL did not go back in time
//! ([`check_history`]): while it did, nothing is swept or trimmed, and work resumes by
//! itself once `producer reconcile --fix` reset Redis's applied record. At shutdown:
//! delete the last applied rows, then apply every committed outbox row still in MySQL,
//! whatever its age ([`apply_committed_outbox`]), so a consumer that stops leaves the
//! read models final when nothing else runs (not while MySQL is taken for rewound).

use std::sync::Arc;
use std::time::Duration;

use oms_shared::kpi::CompletedOrder;
use oms_shared::redis::read_model::HistoryReading;
use oms_shared::store::outbox;
use tokio_util::sync::CancellationToken;

use crate::health::{Rewound, Service};
use crate::metrics::{DEAD_LETTERS, IMPORT_ROWS, STREAM_LAG, STREAM_LENGTH, STREAM_PENDING};
use crate::state::Shared;

/// Outbox rows older than this are considered abandoned and applied by the sweeper.
pub const OUTBOX_ABANDONED_AFTER_SECS: u64 = 30;

/// Rows per page of [`apply_committed_outbox`].
const FINAL_APPLY_PAGE: u32 = 100;

/// Runs until `stop`, then deletes the last applied outbox rows and applies (and deletes)
/// every outbox row committed so far.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        n += 1;
        delete_applied(&shared).await;
        if !shared.health.is_ready() {
            probe(&shared).await;
        }
        if let Err(e) = check_history(&shared).await {
            tracing::debug!(error = %e, "MySQL's history not checked");
        }
        if n % 5 == 1 && shared.health.rewound().is_none() {
            if let Err(e) = refresh_queue(&shared).await {
                tracing::debug!(error = %e, "queue gauges not refreshed");
            }
            if let Err(e) = refresh_import_rows(&shared).await {
                tracing::debug!(error = %e, "import row counters not refreshed");
            }
            if let Err(e) = sweep_outbox(&shared).await {
                tracing::debug!(error = %e, "outbox sweep failed");
            }
            if let Err(e) = trim_applied(&shared).await {
                tracing::debug!(error = %e, "applied outbox record not trimmed");
            }
        }
    }
    delete_applied(&shared).await;
    match apply_committed_outbox(&shared).await {
        Ok(0) => {}
        Ok(rows) => tracing::info!(rows, "applied committed outbox rows before exit"),
        Err(e) => {
            tracing::warn!(error = %e, "outbox rows left to the other consumers' sweepers")
        }
    }
}

/// Applies and deletes every outbox row committed up to now (the sequence's value read
/// first, so rows other consumers commit meanwhile do not keep it going), whatever its
/// age: a row of a consumer that died between its commit and its apply would otherwise
/// wait [`OUTBOX_ABANDONED_AFTER_SECS`] for a sweeper. Exactly once through Redis's record
/// of applied rows, so a row that its owner (or a sweeper) applies at the same moment is
/// a no-op here. The caller bounds the time it may take.
pub async fn apply_committed_outbox(shared: &Shared) -> oms_shared::Result<usize> {
    if shared.health.rewound().is_some() {
        return Ok(0);
    }
    let through = outbox::last_id(&shared.db).await?;
    let mut after = 0;
    let mut applied = 0;
    loop {
        let rows = outbox::rows_between(&shared.db, after, through, FINAL_APPLY_PAGE).await?;
        let Some(&(last, _)) = rows.last() else {
            return Ok(applied);
        };
        after = last;
        applied += apply_rows(shared, rows).await?;
    }
}

async fn delete_applied(shared: &Shared) {
    let ids = shared.take_applied_outbox();
    if ids.is_empty() {
        return;
    }
    if let Err(e) = outbox::delete_rows(&shared.db, &ids).await {
        tracing::debug!(error = %e, "applied outbox rows not deleted yet");
        shared.requeue_applied_outbox(ids);
    }
}

/// Raises Redis's `applied_through` to MySQL's watermark (every outbox row below the
/// lowest one left was applied), keeping the record of applied rows small for good.
/// The record's generation is read before the watermark: a reset in between voids it.
pub async fn trim_applied(shared: &Shared) -> oms_shared::Result<Option<u64>> {
    let mut conn = shared.redis.get().await?;
    let mark = oms_shared::redis::read_model::read_applied_mark(&mut *conn, &shared.keys).await?;
    let floor = outbox::applied_floor(&shared.db).await?;
    oms_shared::redis::read_model::trim_applied(&mut *conn, &shared.keys, floor, mark.generation)
        .await
}

/// Compares MySQL's outbox sequence with Redis's highest applied id: below it, MySQL went
/// back in time (restored from a backup, failed over to a lagging replica) and this
/// consumer stops settling and applying ([`crate::health::Health::set_rewound`]). Redis
/// is read first, MySQL second: in a sane world every id applied by then is committed by
/// then, so the check never fires wrongly. Once rewound, it clears when the record's
/// generation changed (the operator's `reconcile --fix` reset it), then checks afresh.
pub async fn check_history(shared: &Shared) -> oms_shared::Result<()> {
    let reading = {
        let mut conn = shared.redis.get().await?;
        HistoryReading::read(&mut *conn, &shared.keys, &shared.db).await?
    };
    let mark = reading.mark;
    shared.note_applied_mark(mark);
    match shared.health.rewound() {
        Some(rewound) if rewound.generation == mark.generation => return Ok(()),
        Some(_) => shared.health.clear_rewound(),
        None => {}
    }
    if reading.rewound().is_some() {
        shared.health.set_rewound(Rewound {
            generation: mark.generation,
            sequence: reading.sequence,
            applied: mark.applied_max,
        });
    }
    Ok(())
}

async fn probe(shared: &Shared) {
    match oms_shared::store::ping(&shared.db).await {
        Ok(_) => shared.health.up(Service::Mysql),
        Err(e) => shared.health.down(Service::Mysql, &e),
    }
    let redis = async {
        let mut conn = shared.redis.get().await?;
        conn.ping().await?;
        Ok::<(), oms_shared::OmsError>(())
    }
    .await;
    match redis {
        Ok(()) => shared.health.up(Service::Redis),
        Err(e) => shared.health.down(Service::Redis, &e),
    }
}

async fn refresh_queue(shared: &Shared) -> oms_shared::Result<()> {
    let mut conn = shared.redis.get().await?;
    let stats = oms_shared::redis::queue::group_stats(&mut *conn, &shared.keys).await?;
    let dead = oms_shared::redis::queue::dead_letter_counts(&mut *conn, &shared.keys).await?;
    if !shared.keys.is_partitioned() {
        metrics::gauge!(STREAM_LENGTH).set(stats.length as f64);
        metrics::gauge!(STREAM_PENDING).set(stats.pending as f64);
        metrics::gauge!(STREAM_LAG).set(stats.backlog() as f64);
        metrics::gauge!(DEAD_LETTERS).set(dead.iter().sum::<u64>() as f64);
    } else {
        // One series per partition, labelled `partition`: sum() gives the totals.
        for part in &stats.partitions {
            let label = part.partition.to_string();
            metrics::gauge!(STREAM_LENGTH, "partition" => label.clone()).set(part.length as f64);
            metrics::gauge!(STREAM_PENDING, "partition" => label.clone()).set(part.pending as f64);
            metrics::gauge!(STREAM_LAG, "partition" => label.clone())
                .set(part.lag.unwrap_or(part.length) as f64);
            let dead_here = dead.get(part.partition as usize).copied().unwrap_or(0);
            metrics::gauge!(DEAD_LETTERS, "partition" => label).set(dead_here as f64);
        }
    }
    // The lag's history (the dashboard's 1 h / 24 h charts).
    let now = chrono::Utc::now().timestamp();
    oms_shared::redis::order_stats::record_lag(&mut *conn, &shared.keys, now, stats.backlog())
        .await?;
    let trimmed = oms_shared::redis::queue::trim_acknowledged(&mut *conn, &shared.keys).await?;
    if trimmed > 0 {
        tracing::debug!(trimmed, "trimmed acknowledged entries");
    }
    Ok(())
}

/// Sets `oms_import_rows_total{result}` from the `imports` table (all imports, all time).
async fn refresh_import_rows(shared: &Shared) -> Result<(), oms_shared::OmsError> {
    let (enqueued, rejected, duplicate) =
        oms_shared::store::imports::row_totals(&shared.db).await?;
    for (result, rows) in [
        ("enqueued", enqueued),
        ("rejected", rejected),
        ("duplicate", duplicate),
    ] {
        metrics::counter!(IMPORT_ROWS, "result" => result).absolute(rows);
    }
    Ok(())
}

/// Applies outbox rows older than [`OUTBOX_ABANDONED_AFTER_SECS`]; the script's record of
/// applied rows makes this safe even if their own consumer applies them at the same
/// moment, or this sweeper is stalled for any time between its SELECT and its apply.
pub async fn sweep_outbox(shared: &Shared) -> oms_shared::Result<usize> {
    if shared.health.rewound().is_some() {
        return Ok(0);
    }
    let rows = outbox::stale_rows(&shared.db, OUTBOX_ABANDONED_AFTER_SECS, 100).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    stall_point("OMS_TEST_STOP_SWEEPER_BEFORE_APPLY");
    let n = apply_rows(shared, rows).await?;
    tracing::info!(rows = n, "applied abandoned outbox rows");
    Ok(n)
}

/// Applies outbox rows (id, payload) to the read models, exactly once each, then deletes
/// them from MySQL. An unreadable payload is logged and left in place. Returns the number
/// of rows applied (or found applied) and deleted.
async fn apply_rows(shared: &Shared, rows: Vec<(u64, String)>) -> oms_shared::Result<usize> {
    let mut conn = shared.redis.get().await?;
    let mut done = Vec::with_capacity(rows.len());
    for (id, payload) in rows {
        match serde_json::from_str::<Vec<CompletedOrder>>(&payload) {
            Ok(orders) => {
                let applied = oms_shared::redis::read_model::apply_outbox_replicated(
                    &mut *conn,
                    &shared.keys,
                    id,
                    &orders,
                    shared.replica_wait,
                )
                .await?;
                shared.note_applied_mark(applied.mark);
                done.push(id);
            }
            Err(e) => {
                tracing::error!(outbox_id = id, error = %e, "unreadable outbox row left in place")
            }
        }
    }
    outbox::delete_rows(&shared.db, &done).await?;
    Ok(done.len())
}

/// Test hook for the stall tests: when the environment variable `var` is set, the process
/// stops itself (SIGSTOP) here, once, as a VM pause would freeze it; the test resumes it
/// with SIGCONT whenever it likes.
pub fn stall_point(var: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if std::env::var_os(var).is_none() {
        return;
    }
    let mut done = DONE.lock().expect("stall point lock");
    if done.iter().any(|v| v == var) {
        return;
    }
    done.push(var.to_string());
    drop(done);
    tracing::warn!(point = var, "stopping this process (test stall point)");
    // raise() signals the calling thread, so SIGSTOP stops the whole process before this
    // thread goes on (a `kill -STOP` from a child could land after it had moved on).
    // SAFETY: raise takes a plain signal number and touches no memory of ours.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
}
