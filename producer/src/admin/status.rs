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
//!             "dead_letters": 0, "paused": false},
//!  "import": {"id": 3, "file_name": "orders.csv", "status": "running",
//!             "created_at": "2026-03-07T10:00:00.000000Z", "finished_at": null,
//!             "rows": 1000, "enqueued": 990, "rejected": 10, "duplicates": 0,
//!             "completed": 700, "failed": {"payment_declined": 180},
//!             "failed_total": 180, "reserved": 5, "dead": 0, "in_flight": 110,
//!             "rate_per_sec": 250.0, "eta_secs": 0.44, "done": false}}
//! ```
//! `import` is null without an import id; `oldest_pending`, `lag`, `rate_per_sec` and
//! `eta_secs` are null when unknown.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use oms_shared::config::ConnectionConfig;
use oms_shared::keys::{StreamKeys, CONSUMER_GROUP};
use oms_shared::queue::{self, ConsumerInfo};
use oms_shared::redis_conn::RedisPool;
use oms_shared::store::reports;
use serde::Serialize;
use sqlx::MySqlPool;
use std::collections::BTreeMap;

use crate::report::{print_json, table};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// An import id: show its progress too.
    pub import: Option<u64>,

    /// Refresh until Ctrl-C.
    #[arg(long)]
    pub watch: bool,

    /// Seconds between refreshes with `--watch`.
    #[arg(long, default_value_t = 2.0, value_parser = parse_interval)]
    pub interval: f64,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} must be a number of seconds within 0.1 and 3600"
        )),
    }
}

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

/// `status IMPORT` named no import.
#[derive(Debug, thiserror::Error)]
#[error("import {0} not found")]
pub struct NoSuchImport(pub u64);

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
    pub async fn connect(conn: &ConnectionConfig, with_db: bool) -> anyhow::Result<Self> {
        let redis = super::connect_redis(conn).await?;
        let db = if with_db {
            Some(super::connect_mysql(conn).await?)
        } else {
            None
        };
        Ok(StatusSource {
            keys: super::stream_keys(conn).await?,
            redis,
            db,
        })
    }

    /// Readings over open pools (the HTTP API's; `db` for import progress).
    pub fn from_pools(keys: StreamKeys, redis: RedisPool, db: Option<MySqlPool>) -> Self {
        StatusSource { keys, redis, db }
    }

    /// The stream and group figures.
    pub async fn stream(&self) -> anyhow::Result<StreamStatus> {
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
        let paused = oms_shared::queue_control::is_paused(&mut *rc, &self.keys).await?;
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
            partitions,
        })
    }

    /// One import's progress; `previous` gives the rate over the last refresh.
    pub async fn import(
        &self,
        import_id: u64,
        previous: Option<Sample>,
    ) -> anyhow::Result<ImportStatus> {
        let Some(db) = &self.db else {
            anyhow::bail!("status: not connected to MySQL");
        };
        let Some(row) = reports::import_row(db, import_id).await? else {
            return Err(NoSuchImport(import_id).into());
        };
        let outcomes = reports::import_outcomes(db, import_id).await?;
        let mut rc = self.redis.get().await?;
        let dead = queue::all_dead_letters(&mut *rc, &self.keys)
            .await?
            .iter()
            .filter(|d| d.import_id == import_id)
            .count() as i64;
        let failed_total: i64 = outcomes.failed.values().sum();
        let terminal = outcomes.completed + failed_total + outcomes.duplicates + dead;
        let in_flight = (row.rows_enqueued - terminal).max(0);
        let rate = progress_rate(
            terminal,
            in_flight,
            row.age_ms,
            outcomes.last_terminal_ms,
            previous,
        );
        let done = in_flight == 0 && row.finished_at.is_some();
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
    ) -> anyhow::Result<StatusReport> {
        let stream = self.stream().await?;
        let import = match import {
            Some(id) => Some(self.import(id, previous).await?),
            None => None,
        };
        Ok(StatusReport { stream, import })
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
pub async fn status(conn: &ConnectionConfig, import: Option<u64>) -> anyhow::Result<StatusReport> {
    StatusSource::connect(conn, import.is_some())
        .await?
        .report(import, None)
        .await
}

/// `1234` → `1.2s`, `185000` → `3m05s`.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// The report as text.
pub fn render(report: &StatusReport) -> String {
    let s = &report.stream;
    let mut out = Vec::new();
    out.push(format!("stream {} (group {})", s.key, s.group));
    let rows = vec![vec![
        s.length.to_string(),
        s.pending.to_string(),
        s.lag.map_or("unknown".into(), |l| l.to_string()),
        s.consumers.len().to_string(),
        s.dead_letters.to_string(),
    ]];
    out.push(table(
        &["length", "pending", "lag", "consumers", "dead letters"],
        &rows,
        &[0, 1, 2, 3, 4],
    ));
    if s.partitions.len() > 1 {
        let rows: Vec<Vec<String>> = s
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.partition.to_string(),
                    p.key.clone(),
                    p.length.to_string(),
                    p.pending.to_string(),
                    p.lag.map_or("unknown".into(), |l| l.to_string()),
                    p.dead_letters.to_string(),
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(
            &[
                "partition",
                "key",
                "length",
                "pending",
                "lag",
                "dead letters",
            ],
            &rows,
            &[0, 2, 3, 4, 5],
        ));
    }
    if let Some(p) = &s.oldest_pending {
        out.push(format!(
            "oldest pending: {} on {}, idle {}, {} deliveries",
            p.id,
            p.consumer,
            human_duration(p.idle_ms),
            p.deliveries
        ));
    }
    if !s.consumers.is_empty() {
        let rows: Vec<Vec<String>> = s
            .consumers
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.pending.to_string(),
                    human_duration(c.idle_ms),
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(&["consumer", "pending", "idle"], &rows, &[1, 2]));
    }
    if let Some(i) = &report.import {
        out.push(String::new());
        out.push(format!(
            "import {} ({}, {}{})",
            i.id,
            i.file_name,
            i.status,
            if i.done { ", done" } else { "" }
        ));
        let rows = vec![vec![
            i.rows.to_string(),
            i.enqueued.to_string(),
            i.rejected.to_string(),
            i.duplicates.to_string(),
            i.completed.to_string(),
            i.failed_total.to_string(),
            i.dead.to_string(),
            i.in_flight.to_string(),
            i.rate_per_sec.map_or("-".into(), |r| format!("{r:.1}")),
            i.eta_secs
                .map_or("-".into(), |e| human_duration((e * 1000.0) as u64)),
        ]];
        out.push(table(
            &[
                "rows",
                "enqueued",
                "rejected",
                "duplicates",
                "completed",
                "failed",
                "dead",
                "in flight",
                "rate/s",
                "eta",
            ],
            &rows,
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ));
        if !i.failed.is_empty() {
            let reasons: Vec<String> = i.failed.iter().map(|(r, n)| format!("{r} {n}")).collect();
            out.push(format!("failed: {}", reasons.join(", ")));
        }
    }
    out.join("\n")
}

pub async fn run(
    conn: &ConnectionConfig,
    args: StatusArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let source = StatusSource::connect(conn, args.import.is_some()).await?;
    if !args.watch {
        let report = source.report(args.import, None).await?;
        if json {
            print_json(&report);
        } else {
            println!("{}", render(&report));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let interval = Duration::from_secs_f64(args.interval);
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut previous: Option<Sample> = None;
    // One listener for the whole loop: a Ctrl-C while reading is not lost.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let report = source.report(args.import, previous).await?;
        previous = report.import.as_ref().map(|i| Sample {
            terminal: i.terminal,
            at: Instant::now(),
        });
        if json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            if interactive {
                print!("\x1b[2J\x1b[H");
            }
            println!(
                "{}\n\n(refreshing every {:.1}s, Ctrl-C to stop)",
                render(&report),
                args.interval
            );
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(15), "15ms");
        assert_eq!(human_duration(1234), "1.2s");
        assert_eq!(human_duration(185_000), "3m05s");
        assert_eq!(human_duration(7_260_000), "2h01m");
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
