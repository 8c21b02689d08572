//! `producer status [IMPORT] [--watch] [--json]`: the queue, and one import's progress.
//!
//! Queue: stream length, entries pending (delivered, not acknowledged) and the oldest of
//! them (id, consumer, idle time, deliveries), lag (entries not yet delivered to the group;
//! null when Redis cannot tell), the consumers (pending, idle) and the dead letters.
//! With an import id, its progress: rows in the file, enqueued, rejected, duplicates,
//! completed, failed by reason, dead letters, in flight (enqueued − terminal), the rate
//! of terminal orders per second (over the last refresh with `--watch`, else since the
//! import was created) and the ETA of the rest at that rate.
//! `--watch` refreshes every `--interval` seconds (2) until Ctrl-C; with `--json` it
//! prints one compact JSON object per refresh (NDJSON).
//!
//! `--json` prints a [`StatusReport`]:
//! ```json
//! {"stream": {"key": "oms:orders", "group": "workers", "length": 120, "pending": 1,
//!             "lag": 0, "last_delivered_id": "1700000000000-0",
//!             "oldest_pending": {"id": "1700000000000-0", "consumer": "w1",
//!                                "idle_ms": 5321, "deliveries": 1},
//!             "consumers": [{"name": "w1", "pending": 1, "idle_ms": 5321}],
//!             "dead_letters": 0, "paused": false, "redis_data_lost": null},
//!  "import": {"id": 3, "file_name": "orders.csv", "status": "running",
//!             "created_at": "2026-03-07T10:00:00.000000Z", "finished_at": null,
//!             "rows": 1000, "enqueued": 990, "rejected": 10, "duplicates": 0,
//!             "completed": 700, "failed": {"payment_declined": 180},
//!             "failed_total": 180, "reserved": 5, "dead": 0, "in_flight": 110,
//!             "lost": 0, "lost_reason": null,
//!             "rate_per_sec": 250.0, "eta_secs": 0.44, "done": false}}
//! ```
//! `import` is null without an import id; `oldest_pending`, `lag`, `rate_per_sec` and
//! `eta_secs` are null when unknown.

use std::time::Instant;

use crate::error::NoSuchImport;
use crate::Result;
use oms_shared::config::ConnectionConfig;
use oms_shared::redis::conn::RedisPool;
use oms_shared::redis::keys::{StreamKeys, CONSUMER_GROUP};
use oms_shared::redis::queue::{self, ConsumerInfo};
use oms_shared::store::reports;
use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::BTreeMap;

/// The oldest pending entry of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PendingEntry {
    pub id: String,
    pub consumer: String,
    pub idle_ms: u64,
    pub deliveries: u64,
}

/// The orders stream and its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StreamStatus {
    pub key: String,
    pub group: &'static str,
    pub length: u64,
    pub pending: u64,
    pub lag: Option<u64>,
    pub last_delivered_id: String,
    pub oldest_pending: Option<PendingEntry>,
    #[schema(value_type = Vec<Object>)]
    pub consumers: Vec<ConsumerInfo>,
    pub dead_letters: u64,
    /// `producer queue pause` is in force: consumers read nothing new.
    pub paused: bool,
    /// Set when Redis does not hold the data MySQL recorded (its epoch, see
    /// `oms_shared::redis::epoch`): the one line saying so and naming `producer recover`.
    /// Null when intact, or when MySQL could not be asked.
    pub redis_data_lost: Option<String>,
    /// Each partition's figures (the totals above are their sums).
    pub partitions: Vec<PartitionStatus>,
}

/// One partition of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PartitionStatus {
    pub partition: u16,
    pub key: String,
    pub length: u64,
    pub pending: u64,
    pub lag: Option<u64>,
    pub dead_letters: u64,
}

/// One import's progress.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ImportStatus {
    pub id: u64,
    pub file_name: String,
    pub status: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub rows: i64,
    pub enqueued: i64,
    pub rejected: i64,
    /// Found at import (not enqueued) plus found by the consumers.
    pub duplicates: i64,
    pub completed: i64,
    pub failed: BTreeMap<String, i64>,
    pub failed_total: i64,
    /// Stock reserved, payment not settled yet.
    pub reserved: i64,
    pub dead: i64,
    pub in_flight: i64,
    /// Enqueued rows that are neither in MySQL nor in the stream any more (Redis lost
    /// them); `lost_reason` says why they are taken for lost and what to run.
    pub lost: i64,
    pub lost_reason: Option<String>,
    pub rate_per_sec: Option<f64>,
    pub eta_secs: Option<f64>,
    pub done: bool,
    /// Terminal rows (completed, failed, duplicate, dead), for the next refresh's rate.
    #[serde(skip)]
    pub terminal: i64,
}

/// What `status` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub stream: StreamStatus,
    pub import: Option<ImportStatus>,
}

/// A previous reading of an import, for the rate over the last refresh.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub terminal: i64,
    pub at: Instant,
}

/// Open connections for repeated readings.
pub struct StatusSource {
    keys: StreamKeys,
    redis: RedisPool,
    db: Option<MySqlPool>,
}

impl StatusSource {
    /// Connects to Redis, then (when an import is to be shown) to MySQL.
    pub async fn connect(conn: &ConnectionConfig, with_db: bool) -> Result<Self> {
        let redis = crate::connect_redis(conn).await?;
        // MySQL is needed for an import's progress; for the stream alone it only adds the
        // check that Redis still holds the recorded data.
        let db = match crate::connect_mysql(conn).await {
            Ok(db) => Some(db),
            Err(e) if !with_db => {
                tracing::warn!(error = %e, "cannot reach MySQL: not checking whether Redis lost its data");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(StatusSource {
            keys: crate::stream_keys(conn).await?,
            redis,
            db,
        })
    }

    /// Readings over open pools (the HTTP API's; `db` for import progress).
    pub fn from_pools(keys: StreamKeys, redis: RedisPool, db: Option<MySqlPool>) -> Self {
        StatusSource { keys, redis, db }
    }

    /// Whether Redis lost the data MySQL recorded: the line saying so (None when intact
    /// or without MySQL).
    pub async fn redis_data_lost(&self) -> Result<Option<String>> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        let mut rc = self.redis.get().await?;
        Ok(
            match oms_shared::redis::epoch::check(db, &mut *rc, &self.keys).await? {
                oms_shared::redis::epoch::EpochState::Intact(_) => None,
                oms_shared::redis::epoch::EpochState::Lost(loss) => Some(loss.describe()),
            },
        )
    }

    /// The stream and group figures.
    pub async fn stream(&self) -> Result<StreamStatus> {
        let redis_data_lost = self.redis_data_lost().await?;
        let mut rc = self.redis.get().await?;
        let stats = queue::group_stats(&mut *rc, &self.keys).await?;
        let consumers = queue::consumers(&mut *rc, &self.keys).await?;
        let dead_counts = queue::dead_letter_counts(&mut *rc, &self.keys).await?;
        let dead_letters = dead_counts.iter().sum();
        let partitions = stats
            .partitions
            .iter()
            .map(|p| PartitionStatus {
                partition: p.partition,
                key: self.keys.stream(p.partition),
                length: p.length,
                pending: p.pending,
                lag: p.lag,
                dead_letters: dead_counts.get(p.partition as usize).copied().unwrap_or(0),
            })
            .collect();
        let paused = oms_shared::redis::pause::is_paused(&mut *rc, &self.keys).await?;
        let oldest_pending = if stats.pending > 0 {
            queue::pending_entries(&mut *rc, &self.keys, 1)
                .await?
                .into_iter()
                .next()
                .map(|p| PendingEntry {
                    id: p.id,
                    consumer: p.consumer,
                    idle_ms: p.idle_ms,
                    deliveries: p.deliveries,
                })
        } else {
            None
        };
        Ok(StreamStatus {
            key: self.keys.orders(),
            group: CONSUMER_GROUP,
            length: stats.length,
            pending: stats.pending,
            lag: stats.lag,
            last_delivered_id: stats.last_delivered_id,
            oldest_pending,
            consumers,
            dead_letters,
            paused,
            redis_data_lost,
            partitions,
        })
    }

    /// One import's progress; `previous` gives the rate over the last refresh.
    pub async fn import(&self, import_id: u64, previous: Option<Sample>) -> Result<ImportStatus> {
        let Some(db) = &self.db else {
            return Err(crate::ReportError::NotConnected(
                "status: not connected to MySQL",
            ));
        };
        let Some(row) = reports::import_row(db, import_id).await? else {
            return Err(NoSuchImport(import_id).into());
        };
        // The stream's figures between the import's row and its outcomes: when nothing is
        // unread or pending then, every row enqueued by the row's reading has ended by
        // the outcomes' reading (a row ends in MySQL before its entry is acknowledged).
        let drained = {
            let mut rc = self.redis.get().await?;
            let stats = queue::group_stats(&mut *rc, &self.keys).await?;
            stats.lag == Some(0) && stats.pending == 0
        };
        let outcomes = reports::import_outcomes(db, import_id).await?;
        let redis_data_lost = self.redis_data_lost().await?;
        // Recorded in MySQL by the consumer: `failed purge` does not change it.
        let dead = oms_shared::store::dead_letters::count_for_import(db, import_id).await?;
        let failed_total: i64 = outcomes.failed.values().sum();
        let terminal = outcomes.completed + failed_total + outcomes.duplicates + dead;
        let mut in_flight = (row.rows_enqueued - terminal).max(0);
        let finished = row.finished_at.is_some();
        let lost_reason =
            lost_rows_reason(import_id, in_flight, finished && drained, redis_data_lost);
        let lost = if lost_reason.is_some() { in_flight } else { 0 };
        in_flight -= lost;
        let rate = progress_rate(
            terminal,
            in_flight,
            row.age_ms,
            outcomes.last_terminal_ms,
            previous,
        );
        let done = in_flight == 0 && lost == 0 && finished;
        Ok(ImportStatus {
            id: row.id,
            file_name: row.file_name,
            status: row.status,
            created_at: row.created_at,
            finished_at: row.finished_at,
            rows: row.rows_total,
            enqueued: row.rows_enqueued,
            rejected: row.rows_rejected,
            duplicates: row.rows_duplicate + outcomes.duplicates,
            completed: outcomes.completed,
            failed: outcomes.failed,
            failed_total,
            reserved: outcomes.reserved,
            dead,
            in_flight,
            lost,
            lost_reason,
            rate_per_sec: rate,
            eta_secs: eta(in_flight, rate),
            done,
            terminal,
        })
    }

    /// A full reading.
    pub async fn report(
        &self,
        import: Option<u64>,
        previous: Option<Sample>,
    ) -> Result<StatusReport> {
        let stream = self.stream().await?;
        let import = match import {
            Some(id) => Some(self.import(id, previous).await?),
            None => None,
        };
        Ok(StatusReport { stream, import })
    }
}

/// Why an import's unfinished rows are taken for lost, if they are: Redis lost its data
/// (`redis_data_lost`), or the stream holds nothing unread or pending (`drained`, read
/// between the import's row and its outcomes) while rows are still unaccounted for.
pub fn lost_rows_reason(
    import_id: u64,
    unaccounted: i64,
    drained: bool,
    redis_data_lost: Option<String>,
) -> Option<String> {
    if unaccounted <= 0 {
        return None;
    }
    let fix = format!("run `producer recover {import_id}` to enqueue them again from the file");
    match redis_data_lost {
        Some(why) => Some(format!(
            "{unaccounted} rows of import {import_id} are lost with Redis's data ({why}); {fix}"
        )),
        None if drained => Some(format!(
            "{unaccounted} rows of import {import_id} are neither in MySQL nor in the stream \
             (Redis lost them?); {fix}"
        )),
        None => None,
    }
}

/// Terminal orders per second: over the last refresh when there was one, else since the
/// import was created (until its last terminal order once nothing is in flight).
pub fn progress_rate(
    terminal: i64,
    in_flight: i64,
    age_ms: i64,
    last_terminal_ms: Option<i64>,
    previous: Option<Sample>,
) -> Option<f64> {
    if let Some(p) = previous {
        let secs = p.at.elapsed().as_secs_f64();
        if secs > 0.0 {
            return Some(((terminal - p.terminal).max(0)) as f64 / secs);
        }
    }
    let elapsed_ms = if in_flight == 0 {
        last_terminal_ms.unwrap_or(age_ms)
    } else {
        age_ms
    };
    (terminal > 0 && elapsed_ms > 0).then(|| terminal as f64 * 1000.0 / elapsed_ms as f64)
}

/// Seconds to finish `in_flight` rows at `rate`; 0 when nothing is left, None if unknown.
pub fn eta(in_flight: i64, rate: Option<f64>) -> Option<f64> {
    if in_flight == 0 {
        return Some(0.0);
    }
    rate.filter(|r| *r > 0.0).map(|r| in_flight as f64 / r)
}

/// `status` once: connects, reads, returns the report.
pub async fn status(conn: &ConnectionConfig, import: Option<u64>) -> Result<StatusReport> {
    StatusSource::connect(conn, import.is_some())
        .await?
        .report(import, None)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaccounted_rows_are_lost_only_when_redis_lost_data_or_the_stream_is_drained() {
        assert_eq!(lost_rows_reason(7, 0, true, Some("x".into())), None);
        assert_eq!(lost_rows_reason(7, 5, false, None), None);
        let drained = lost_rows_reason(7, 5, true, None).unwrap();
        assert!(drained.contains("producer recover 7"), "{drained}");
        let wiped = lost_rows_reason(7, 5, false, Some("Redis lost its data".into())).unwrap();
        assert!(wiped.starts_with("5 rows of import 7"), "{wiped}");
    }

    #[test]
    fn rate_and_eta() {
        assert_eq!(
            progress_rate(100, 50, 10_000, Some(5_000), None),
            Some(10.0)
        );
        assert_eq!(progress_rate(100, 0, 10_000, Some(5_000), None), Some(20.0));
        assert_eq!(progress_rate(0, 50, 10_000, None, None), None);
        assert_eq!(eta(50, Some(10.0)), Some(5.0));
        assert_eq!(eta(0, None), Some(0.0));
        assert_eq!(eta(5, Some(0.0)), None);
    }
}
