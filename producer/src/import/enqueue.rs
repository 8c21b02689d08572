//! The I/O side of an import: puts shipped chunks on the orders stream, stores rejects,
//! keeps the `imports` row current, and holds back while consumers are behind.
//!
//! - **Pipelining**: chunks are sent `pipeline_chunks` at a time, in one round trip; while
//!   a pipeline is in flight the scan thread keeps reading (the channel between them holds
//!   a few shipments of a few thousand rows).
//! - **Backpressure**: before each pipeline, the group's backlog (entries not yet
//!   delivered, × chunk size) is compared with `--max-lag`; above it, the enqueuer waits,
//!   trimming acknowledged entries meanwhile. Unread rows therefore stay below `--max-lag`
//!   plus one pipeline (sized to at most a quarter of `--max-lag`). Without `--max-lag`
//!   the limit is automatic ([`super::auto_lag`]): a quarter second of the consumers'
//!   measured throughput.
//! - **Partitions**: a pipeline's chunks go to their partitions' streams (one round trip
//!   per partition, all at once on a cluster); with `--min-replicas` N each round trip
//!   ends with `WAIT N`, and rows count as enqueued only once that many replicas hold them.
//! - **Bookkeeping**: after each pipeline and its rejects are stored, every line up to the
//!   shipment's `through_line` is accounted for; the `imports` row is updated at most once
//!   a second and at the end, so an interrupted import can be resumed by importing the same
//!   file again.
//! - **Fence**: each save (about once a second, waits for room included) re-reads the
//!   recorded partition count; if `migrate --partitions` (or a hand) changed it, the
//!   import stops ([`EnqueueError::Repartitioned`]) instead of writing to streams no
//!   consumer reads. Its heartbeat is a task of its own (`import::heartbeat`).
//! - **Transient errors** (Redis or MySQL restarting) are retried with backoff for up to
//!   [`RETRY_BUDGET`]; a retried pipeline may have been applied, which is harmless: the
//!   consumers process an identity once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_shared::order::EncodedChunk;
use oms_shared::redis::conn::{RedisPool, ReplicaWait};
use oms_shared::redis::keys::StreamKeys;
use oms_shared::redis::queue;
use oms_shared::retry::{GiveUp, RetryPolicy, Stopped};
use oms_shared::store::imports::{self, ImportCounts, ImportStatus, RejectRow};
use oms_shared::store::settings;
use oms_shared::OmsError;
use sqlx::MySqlPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::auto_lag::AutoLag;
use super::progress::Progress;
use super::scan::Shipment;

/// How long a failing Redis or MySQL call is retried before the import stops.
pub const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// How often the `imports` row is updated (and the partition count checked).
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How often the group's backlog is checked while waiting.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(200);

/// Settings of the enqueuer.
#[derive(Debug, Clone)]
pub struct EnqueueSettings {
    pub import_id: u64,
    pub chunk_size: usize,
    /// Rows allowed to wait unread in the stream; `Some(0)`: no limit; `None`: automatic
    /// ([`AutoLag`]).
    pub max_lag: Option<u64>,
    /// Replicas each pipeline must reach (`--min-replicas`) before its rows count.
    pub replica_wait: ReplicaWait,
    /// The epoch of the Redis data ([`oms_shared::redis::epoch`]): entries are added only
    /// while Redis still holds it.
    pub epoch: String,
    /// The import span's W3C `traceparent`, written into every entry when traces are on:
    /// the consumers' spans of these rows join the import's trace.
    pub trace_parent: Option<String>,
}

/// Chunks per pipeline: up to 64, and at most a quarter of the lag limit (0: no limit).
pub fn pipeline_chunks(chunk_size: usize, limit: u64) -> usize {
    let by_lag = match limit {
        0 => usize::MAX,
        lag => (lag / 4 / chunk_size.max(1) as u64) as usize,
    };
    by_lag.clamp(1, 64)
}

/// Why the enqueuer stopped early.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("interrupted")]
    Interrupted,
    /// The recorded partition count changed under the import: it used `from`, `to` is now
    /// recorded.
    #[error("the orders stream was repartitioned from {from} to {to} partitions")]
    Repartitioned { from: u16, to: u16 },
    #[error(transparent)]
    Failed(#[from] OmsError),
}

pub struct Enqueuer {
    pub db: MySqlPool,
    pub redis: RedisPool,
    pub keys: StreamKeys,
    pub settings: EnqueueSettings,
    pub progress: Arc<Progress>,
    /// What is on the stream or stored so far.
    pub counts: ImportCounts,
    chunks: Vec<EncodedChunk>,
    rejects: Vec<RejectRow>,
    /// Counts of the shipments held in `chunks`/`rejects`, not yet flushed.
    held: ImportCounts,
    last_saved: Instant,
    announced_wait: bool,
    /// Rows that can still be sent without reading the lag again: `--max-lag` minus the
    /// unread rows at the last reading minus what was sent since (consumers only lower it).
    headroom: u64,
    /// The automatic limit, without `--max-lag`.
    auto_lag: Option<AutoLag>,
}

impl Enqueuer {
    pub fn new(
        db: MySqlPool,
        redis: RedisPool,
        keys: StreamKeys,
        settings: EnqueueSettings,
        progress: Arc<Progress>,
    ) -> Self {
        Enqueuer {
            db,
            redis,
            keys,
            auto_lag: settings.max_lag.is_none().then(AutoLag::new),
            settings,
            progress,
            counts: ImportCounts::default(),
            chunks: Vec::new(),
            rejects: Vec::new(),
            held: ImportCounts::default(),
            last_saved: Instant::now(),
            announced_wait: false,
            headroom: 0,
        }
    }

    /// The lag limit now, in rows (0: no limit).
    fn lag_limit(&self) -> u64 {
        match (&self.auto_lag, self.settings.max_lag) {
            (Some(auto), _) => auto.limit(),
            (None, limit) => limit.unwrap_or(0),
        }
    }

    fn pipeline_chunks(&self) -> usize {
        pipeline_chunks(self.settings.chunk_size, self.lag_limit())
    }

    /// Takes shipments until the scan ends (its sender dropped), then flushes. On
    /// `shutdown` during a wait, stops with [`EnqueueError::Interrupted`]; what was flushed
    /// stays accounted for in `counts`.
    pub async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Shipment>,
        shutdown: &CancellationToken,
    ) -> Result<(), EnqueueError> {
        loop {
            let shipment = match rx.try_recv() {
                Ok(s) => Some(s),
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing ready: send what is held rather than sit on it.
                    self.flush(shutdown).await?;
                    rx.recv().await
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
            let Some(shipment) = shipment else { break };
            self.hold(shipment);
            if self.chunks.len() >= self.pipeline_chunks() || self.rejects.len() >= 1_000 {
                self.flush(shutdown).await?;
            }
        }
        self.flush(shutdown).await
    }

    fn hold(&mut self, s: Shipment) {
        self.held.rows_total += s.rows_read;
        self.held.rows_duplicate += s.duplicates;
        self.held.rows_rejected += s.rejects.len() as u64;
        self.held.enqueued_through_line = self.held.enqueued_through_line.max(s.through_line);
        self.rejects.extend(s.rejects);
        for chunk in s.chunks {
            self.held.rows_enqueued += chunk.rows as u64;
            self.chunks.push(chunk);
        }
    }

    /// Sends held chunks (a pipeline at a time, each after the lag check), stores held
    /// rejects, then counts them as done.
    async fn flush(&mut self, shutdown: &CancellationToken) -> Result<(), EnqueueError> {
        while !self.chunks.is_empty() {
            let n = self.chunks.len().min(self.pipeline_chunks());
            let pipeline: Vec<EncodedChunk> = self.chunks.drain(..n).collect();
            let rows: u64 = pipeline.iter().map(|c| c.rows as u64).sum();
            self.wait_for_room(rows, shutdown).await?;
            retry("XADD to the orders stream", shutdown, || async {
                queue::add_encoded_chunks_checked_on(
                    &self.redis,
                    &self.keys,
                    self.settings.import_id,
                    &pipeline,
                    self.settings.replica_wait,
                    &self.settings.epoch,
                    self.settings.trace_parent.as_deref(),
                )
                .await
            })
            .await?;
            self.progress.enqueued(rows);
            // Every valid row up to the received shipments' `through_line` was shipped
            // (rows still in the scan's open chunks are above it), and every shipped row
            // before the first line still held is now on the stream: that much a resumed
            // import may skip.
            let shipped_through = self.held.enqueued_through_line;
            let last_line = match self.chunks.iter().map(|c| c.first_line).min() {
                Some(first_held) => first_held.saturating_sub(1).min(shipped_through),
                None => shipped_through,
            };
            self.held.rows_enqueued -= rows;
            self.counts.rows_enqueued += rows;
            self.counts.enqueued_through_line = self.counts.enqueued_through_line.max(last_line);
        }
        if !self.rejects.is_empty() {
            let rejects = std::mem::take(&mut self.rejects);
            retry("storing rejected rows", shutdown, || {
                imports::insert_rejects(&self.db, self.settings.import_id, &rejects)
            })
            .await?;
            self.progress.rejected(rejects.len() as u64);
        }
        let held = std::mem::take(&mut self.held);
        self.counts.rows_total += held.rows_total;
        self.counts.rows_enqueued += held.rows_enqueued;
        self.counts.rows_rejected += held.rows_rejected;
        self.counts.rows_duplicate += held.rows_duplicate;
        self.counts.enqueued_through_line = self
            .counts
            .enqueued_through_line
            .max(held.enqueued_through_line);
        if self.last_saved.elapsed() >= SAVE_EVERY {
            self.save_running(shutdown).await?;
        }
        Ok(())
    }

    /// Saves the counts of a running import, then checks that the recorded partition
    /// count is still the one the import uses.
    async fn save_running(&mut self, shutdown: &CancellationToken) -> Result<(), EnqueueError> {
        let recorded = retry("saving the import's progress", shutdown, || async {
            imports::record_progress(
                &self.db,
                self.settings.import_id,
                &self.counts,
                ImportStatus::Running,
            )
            .await?;
            settings::stream_partitions(&self.db).await
        })
        .await?;
        self.last_saved = Instant::now();
        let used = self.keys.partitions();
        if recorded != used {
            return Err(EnqueueError::Repartitioned {
                from: used.get(),
                to: recorded.get(),
            });
        }
        Ok(())
    }

    /// Writes the counts on the `imports` row.
    pub async fn save(&mut self, status: ImportStatus) -> Result<(), OmsError> {
        imports::record_progress(&self.db, self.settings.import_id, &self.counts, status).await?;
        self.last_saved = Instant::now();
        Ok(())
    }

    /// Waits while more than `--max-lag` rows (or the automatic limit) wait unread; trims
    /// acknowledged entries. Reads the lag only when `rows` do not fit the headroom left
    /// by the last reading.
    async fn wait_for_room(
        &mut self,
        rows: u64,
        shutdown: &CancellationToken,
    ) -> Result<(), EnqueueError> {
        if self.lag_limit() == 0 {
            return Ok(());
        }
        if rows <= self.headroom {
            self.headroom -= rows;
            return Ok(());
        }
        loop {
            let stats = retry("reading the group's lag", shutdown, || async {
                let mut conn = self.redis.get().await?;
                queue::group_stats(&mut *conn, &self.keys).await
            })
            .await?;
            let chunk = self.settings.chunk_size as u64;
            let unread = stats.backlog() * chunk;
            if let Some(auto) = &mut self.auto_lag {
                let unfinished = (stats.backlog() + stats.pending) * chunk;
                auto.observe(Instant::now(), self.counts.rows_enqueued, unfinished);
            }
            let limit = self.lag_limit();
            if unread < limit {
                self.headroom = (limit - unread).saturating_sub(rows);
                if self.announced_wait {
                    tracing::info!(unread, "consumers caught up; enqueueing again");
                    self.announced_wait = false;
                }
                self.progress.waiting(0);
                return Ok(());
            }
            if !self.announced_wait {
                tracing::info!(
                    unread,
                    max_lag = limit,
                    automatic = self.auto_lag.is_some(),
                    "waiting: more rows unread than --max-lag; enqueueing resumes as consumers catch up"
                );
                self.announced_wait = true;
            }
            self.progress.waiting(unread);
            if self.last_saved.elapsed() >= SAVE_EVERY {
                self.save_running(shutdown).await?;
            }
            if let Ok(mut conn) = self.redis.get().await {
                let _ = queue::trim_acknowledged(&mut *conn, &self.keys).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(BACKPRESSURE_POLL) => {}
                _ = shutdown.cancelled() => return Err(EnqueueError::Interrupted),
            }
        }
    }
}

/// Refreshes the import's `heartbeat_at` every [`imports::HEARTBEAT_INTERVAL`] until
/// aborted, whatever the import waits for (backpressure, a server): `migrate
/// --partitions` refuses while it is fresh.
pub async fn heartbeat(db: MySqlPool, import_id: u64) {
    loop {
        tokio::time::sleep(imports::HEARTBEAT_INTERVAL).await;
        if let Err(e) = imports::touch_heartbeat(&db, import_id).await {
            tracing::debug!(import_id, error = %e, "cannot refresh the import's heartbeat");
        }
    }
}

/// Runs `op`, retrying transient errors with backoff (100 ms doubling to 5 s) for up to
/// [`RETRY_BUDGET`]; saying what it waits for.
pub(crate) async fn retry<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    op: F,
) -> Result<T, EnqueueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OmsError>>,
{
    let policy = RetryPolicy::CONSUMER.give_up(GiveUp::Budget(RETRY_BUDGET));
    let warn = |e: &OmsError, wait| tracing::warn!("{what} failed: {e}; retrying in {wait:?}");
    policy
        .run(Some(shutdown), warn, op)
        .await
        .map_err(|stopped| match stopped {
            Stopped::GaveUp(e) => EnqueueError::Failed(e),
            Stopped::Shutdown => EnqueueError::Interrupted,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_stay_within_a_quarter_of_max_lag() {
        assert_eq!(pipeline_chunks(100, 0), 64);
        assert_eq!(pipeline_chunks(100, 1_000_000), 64);
        assert_eq!(pipeline_chunks(100, 4_000), 10);
        assert_eq!(pipeline_chunks(10, 50), 1);
        assert_eq!(pipeline_chunks(1, 1), 1);
    }
}
