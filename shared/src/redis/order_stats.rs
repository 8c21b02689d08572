//! Live counts of orders that reached a terminal state, for `GET /api/orders/stats` and the
//! dashboard's throughput chart, kept in Redis so that no request scans the orders table.
//!
//! After each workflow run a consumer adds its terminal outcomes with one pipeline:
//! - `P stats:orders:<unix minute>` ([`ReadModelKeys::order_stats_minute`]): fields
//!   `completed`, `failed`, `failed:<reason>`, and `s<ss>:completed` / `s<ss>:failed` per
//!   second of the minute, and `lag`, the stream's lag (entries not yet delivered) as last
//!   sampled in that minute by a consumer's housekeeping ([`record_lag`]); each key
//!   expires [`RETENTION_SECS`] (24 h) after its minute, so at most 1,440 minute hashes
//!   exist per deployment (the 1 h and 24 h history of the dashboard, [`read_history`]);
//! - `P stats:failed` ([`ReadModelKeys::failed_by_reason`]): failure reason → count, kept.
//!
//! These are live counters, not a ledger: they are written after the transaction that
//! settles the orders commits, so a consumer killed between the commit and the write
//! leaves those orders uncounted (the redelivery finds them settled and does not count
//! them again). Exact totals come from MySQL (`kpis generate`, `status IMPORT`, `reconcile`).

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::error::Result;
use crate::redis::keys::ReadModelKeys;

/// How long a minute's counts are kept (the history's longest window).
pub(crate) const RETENTION_SECS: i64 = 24 * 3600;

/// The longest history [`read_history`] reads, in minutes.
pub const HISTORY_MINUTES: i64 = RETENTION_SECS / 60;

/// When the hash of `minute` expires.
fn expiry(minute: i64) -> i64 {
    (minute + 1) * 60 + RETENTION_SECS
}

/// Terminal outcomes of one workflow run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub completed: u64,
    /// Failure reason → count.
    pub failed: BTreeMap<&'static str, u64>,
}

impl Outcomes {
    pub fn is_empty(&self) -> bool {
        self.completed == 0 && self.failed.values().all(|n| *n == 0)
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// The commands that add `outcomes`, ended at `unix_secs`, to the counters.
pub(crate) fn record_pipeline(
    keys: &ReadModelKeys,
    unix_secs: i64,
    outcomes: &Outcomes,
) -> redis::Pipeline {
    let minute = unix_secs.div_euclid(60);
    let second = unix_secs.rem_euclid(60);
    let key = keys.order_stats_minute(minute);
    let mut pipe = redis::pipe();
    let mut add = |field: String, n: u64| {
        if n > 0 {
            pipe.cmd("HINCRBY").arg(&key).arg(field).arg(n).ignore();
        }
    };
    add("completed".into(), outcomes.completed);
    add(format!("s{second:02}:completed"), outcomes.completed);
    add("failed".into(), outcomes.failed_total());
    add(format!("s{second:02}:failed"), outcomes.failed_total());
    for (reason, n) in &outcomes.failed {
        add(format!("failed:{reason}"), *n);
    }
    pipe.cmd("EXPIREAT").arg(&key).arg(expiry(minute)).ignore();
    for (reason, n) in &outcomes.failed {
        if *n > 0 {
            pipe.cmd("HINCRBY")
                .arg(keys.failed_by_reason())
                .arg(*reason)
                .arg(*n)
                .ignore();
        }
    }
    pipe
}

/// Adds `outcomes` to the counters.
pub async fn record<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    unix_secs: i64,
    outcomes: &Outcomes,
) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    record_pipeline(keys, unix_secs, outcomes)
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// Records the stream's lag sampled at `unix_secs` in its minute's hash (the latest sample
/// of the minute wins).
pub async fn record_lag<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    unix_secs: i64,
    lag: u64,
) -> Result<()> {
    let minute = unix_secs.div_euclid(60);
    let key = keys.order_stats_minute(minute);
    redis::pipe()
        .cmd("HSET")
        .arg(&key)
        .arg("lag")
        .arg(lag)
        .ignore()
        .cmd("EXPIREAT")
        .arg(&key)
        .arg(expiry(minute))
        .ignore()
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// One minute of history: orders that ended in it, and the lag last sampled in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryPoint {
    /// Unix time (seconds) of the start of the minute.
    pub at: i64,
    pub completed: u64,
    pub failed: u64,
    /// `None` when no consumer sampled the lag in that minute.
    pub lag: Option<u64>,
}

/// The minutes `first..=last` (at most [`HISTORY_MINUTES`], ending at `last`), oldest
/// first, in one round trip of `HMGET`s.
pub async fn read_history<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    first: i64,
    last: i64,
) -> Result<Vec<HistoryPoint>> {
    let first = first.max(last - HISTORY_MINUTES + 1);
    let mut pipe = redis::pipe();
    for m in first..=last {
        pipe.cmd("HMGET")
            .arg(keys.order_stats_minute(m))
            .arg("completed")
            .arg("failed")
            .arg("lag");
    }
    let values: Vec<(Option<u64>, Option<u64>, Option<u64>)> = pipe.query_async(conn).await?;
    Ok((first..=last)
        .zip(values)
        .map(|(minute, (completed, failed, lag))| HistoryPoint {
            at: minute * 60,
            completed: completed.unwrap_or(0),
            failed: failed.unwrap_or(0),
            lag,
        })
        .collect())
}

/// Completed and failed orders in one minute or one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// Unix time (seconds) of the start of the interval.
    pub at: i64,
    pub completed: u64,
    pub failed: u64,
}

/// One minute's hash, as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteCounts {
    pub minute: i64,
    pub fields: BTreeMap<String, u64>,
}

impl MinuteCounts {
    fn get(&self, field: &str) -> u64 {
        self.fields.get(field).copied().unwrap_or(0)
    }

    pub fn per_minute(&self) -> Throughput {
        Throughput {
            at: self.minute * 60,
            completed: self.get("completed"),
            failed: self.get("failed"),
        }
    }

    /// The 60 seconds of the minute.
    pub fn per_second(&self) -> impl Iterator<Item = Throughput> + '_ {
        (0..60).map(move |s| Throughput {
            at: self.minute * 60 + s,
            completed: self.get(&format!("s{s:02}:completed")),
            failed: self.get(&format!("s{s:02}:failed")),
        })
    }
}

/// The hashes of the minutes `first..=last` (one round trip), oldest first.
pub async fn read_minutes<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    first: i64,
    last: i64,
) -> Result<Vec<MinuteCounts>> {
    let mut pipe = redis::pipe();
    for m in first..=last {
        pipe.cmd("HGETALL").arg(keys.order_stats_minute(m));
    }
    let hashes: Vec<BTreeMap<String, u64>> = pipe.query_async(conn).await?;
    Ok((first..=last)
        .zip(hashes)
        .map(|(minute, fields)| MinuteCounts { minute, fields })
        .collect())
}

/// Failure reason → orders failed with it, since the counters exist.
pub async fn failed_by_reason<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
) -> Result<BTreeMap<String, u64>> {
    Ok(redis::cmd("HGETALL")
        .arg(keys.failed_by_reason())
        .query_async(conn)
        .await?)
}

/// Per-second throughput over `window_secs` ending at `now_secs` (inclusive), from the
/// minute hashes; seconds outside the window are dropped.
pub fn per_second_window(
    minutes: &[MinuteCounts],
    now_secs: i64,
    window_secs: i64,
) -> Vec<Throughput> {
    let from = now_secs - window_secs + 1;
    minutes
        .iter()
        .flat_map(|m| m.per_second())
        .filter(|t| t.at >= from && t.at <= now_secs)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_minutes_read_back_from_the_fields() {
        let mut fields = BTreeMap::new();
        fields.insert("completed".to_string(), 7);
        fields.insert("failed".to_string(), 2);
        fields.insert("s05:completed".to_string(), 7);
        fields.insert("s59:failed".to_string(), 2);
        let m = MinuteCounts { minute: 10, fields };
        assert_eq!(
            m.per_minute(),
            Throughput {
                at: 600,
                completed: 7,
                failed: 2
            }
        );
        let secs: Vec<Throughput> = m.per_second().collect();
        assert_eq!(secs.len(), 60);
        assert_eq!(
            secs[5],
            Throughput {
                at: 605,
                completed: 7,
                failed: 0
            }
        );
        assert_eq!(
            secs[59],
            Throughput {
                at: 659,
                completed: 0,
                failed: 2
            }
        );
        let window = per_second_window(std::slice::from_ref(&m), 659, 10);
        assert_eq!(window.len(), 10);
        assert_eq!(window[0].at, 650);
    }

    #[test]
    fn an_empty_run_records_nothing() {
        assert!(Outcomes::default().is_empty());
        let mut o = Outcomes::default();
        o.failed.insert("payment_declined", 3);
        assert_eq!(o.failed_total(), 3);
        assert!(!o.is_empty());
    }
}
