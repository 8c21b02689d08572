//! `producer failed list|retry|purge`: the dead-letter stream `P orders:dead`.
//!
//! - `list [--limit N]` (default 100, 0: all), oldest first. `--json` prints a
//!   [`FailedList`]:
//!   ```json
//!   {"total": 2, "dead_letters": [{"id": "1700000000000-0", "import_id": 3, "line": 17,
//!     "identity": "A-17", "row": "{\"id\":\"A-17\",...}", "error": "...", "attempts": 3,
//!     "consumer": "w1", "source_id": "1699999999999-0",
//!     "failed_at": "2026-03-07T10:00:00.000Z"}]}
//!   ```
//! - `retry ID|all`: puts each row back on the orders stream as a one-row chunk of its
//!   import, then deletes the dead letter and the row's record in MySQL
//!   (`dead_lettered_rows`, which import progress counts as dead). Add first, delete
//!   second: a crash in between leaves the row both queued and dead, and a second retry
//!   enqueues it again, which is harmless (consumers process one identity once). A dead letter whose row cannot be
//!   decoded stays and is reported; the exit code is then 1. `--json` prints a
//!   [`RetryReport`]:
//!   ```json
//!   {"retried": [{"id": "1700000000000-0", "import_id": 3, "line": 17,
//!                 "identity": "A-17", "entry_id": "1700000000001-0"}],
//!    "kept": [{"id": "1700000000002-0", "reason": "row is not an order row: ..."}]}
//!   ```
//! - `purge`: deletes the dead-letter stream; `--json` prints `{"purged": n}`.

use crate::error::NoSuchDeadLetter;
use crate::Result;
use oms_shared::config::ConnectionConfig;
use oms_shared::order::OrderRow;
use oms_shared::redis::conn::{RedisPool, ReplicaWait};
use oms_shared::redis::keys::StreamKeys;
use oms_shared::redis::queue::{self, DeadLetter};
use serde::Serialize;
use sqlx::MySqlPool;

/// What `failed list` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FailedList {
    pub total: u64,
    #[schema(value_type = Vec<Object>)]
    pub dead_letters: Vec<DeadLetter>,
}

/// A dead letter put back on the orders stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Retried {
    pub id: String,
    pub import_id: u64,
    pub line: u64,
    pub identity: String,
    /// The new entry of the orders stream.
    pub entry_id: String,
}

/// A dead letter left in place, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Kept {
    pub id: String,
    pub reason: String,
}

/// What `failed retry` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RetryReport {
    pub retried: Vec<Retried>,
    pub kept: Vec<Kept>,
}

/// Which dead letters to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    All,
    Id(String),
}

impl RetryTarget {
    pub fn parse(s: &str) -> RetryTarget {
        if s.eq_ignore_ascii_case("all") {
            RetryTarget::All
        } else {
            RetryTarget::Id(s.to_string())
        }
    }
}

/// The first `limit` dead letters (0: all) and the total.
pub async fn list(conn: &ConnectionConfig, limit: usize) -> Result<FailedList> {
    let keys = crate::stream_keys(conn).await?;
    let redis = crate::connect_redis(conn).await?;
    list_from(&redis, &keys, limit).await
}

/// [`list`] over an open pool (the HTTP API's entry point).
pub async fn list_from(redis: &RedisPool, keys: &StreamKeys, limit: usize) -> Result<FailedList> {
    let mut rc = redis.get().await?;
    let total = queue::dead_letter_count(&mut *rc, keys).await?;
    let dead_letters = if limit == 0 {
        queue::all_dead_letters(&mut *rc, keys).await?
    } else {
        queue::dead_letters(&mut *rc, keys, "-", limit).await?
    };
    Ok(FailedList {
        total,
        dead_letters,
    })
}

/// Re-enqueues a page of dead letters (add, then delete the letters and their records).
async fn retry_page(
    db: &MySqlPool,
    redis: &RedisPool,
    keys: &StreamKeys,
    letters: &[DeadLetter],
    report: &mut RetryReport,
) -> Result<()> {
    let mut rows: Vec<(&DeadLetter, OrderRow)> = Vec::new();
    for letter in letters {
        match serde_json::from_str::<OrderRow>(&letter.row) {
            Ok(row) => rows.push((letter, row)),
            Err(e) => report.kept.push(Kept {
                id: letter.id.clone(),
                reason: format!("row is not an order row: {e}"),
            }),
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut rc = redis.get().await?;
    // A chunk holds one import's rows: group by import, one row per chunk, one round trip
    // per import.
    let mut by_import: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (i, (letter, _)) in rows.iter().enumerate() {
        by_import.entry(letter.import_id).or_default().push(i);
    }
    for (import_id, indexes) in by_import {
        let chunks: Vec<&[OrderRow]> = indexes
            .iter()
            .map(|&i| std::slice::from_ref(&rows[i].1))
            .collect();
        // On a cluster a retried row must be on a replica before its dead letter goes.
        let wait = ReplicaWait::new(u32::from(keys.is_cluster()));
        let entry_ids =
            queue::add_chunks_replicated(&mut *rc, keys, import_id, &chunks, wait).await?;
        for (&i, entry_id) in indexes.iter().zip(entry_ids) {
            let (letter, row) = &rows[i];
            report.retried.push(Retried {
                id: letter.id.clone(),
                import_id,
                line: row.line,
                identity: row.identity.to_string(),
                entry_id,
            });
        }
    }
    let ids: Vec<&str> = rows.iter().map(|(l, _)| l.id.as_str()).collect();
    queue::delete_dead_letters(&mut *rc, keys, &ids).await?;
    let back: Vec<(u64, u64)> = rows
        .iter()
        .map(|(letter, row)| (letter.import_id, row.line))
        .collect();
    oms_shared::store::dead_letters::forget(db, &back).await?;
    Ok(())
}

/// `failed retry ID|all`.
pub async fn retry(conn: &ConnectionConfig, target: RetryTarget) -> Result<RetryReport> {
    let keys = crate::stream_keys(conn).await?;
    let db = crate::connect_mysql(conn).await?;
    let redis = crate::connect_redis(conn).await?;
    retry_from(&db, &redis, &keys, target).await
}

/// [`retry`] over an open pool (the HTTP API's entry point).
pub async fn retry_from(
    db: &MySqlPool,
    redis: &RedisPool,
    keys: &StreamKeys,
    target: RetryTarget,
) -> Result<RetryReport> {
    let (redis, keys) = (redis.clone(), keys.clone());
    {
        let mut rc = redis.get().await?;
        queue::ensure_group(&mut *rc, &keys).await?;
    }
    let mut report = RetryReport::default();
    match target {
        RetryTarget::Id(id) => {
            let mut rc = redis.get().await?;
            let found = queue::dead_letters(&mut *rc, &keys, &id, 1).await?;
            drop(rc);
            match found.into_iter().next() {
                Some(letter) if letter.id == id => {
                    retry_page(db, &redis, &keys, &[letter], &mut report).await?
                }
                _ => {
                    return Err(NoSuchDeadLetter {
                        id,
                        key: keys.dead_letters(),
                    }
                    .into())
                }
            }
        }
        RetryTarget::All => {
            // Page through from the start; kept letters stay behind the cursor.
            let mut start = "-".to_string();
            loop {
                let page = {
                    let mut rc = redis.get().await?;
                    queue::dead_letters(&mut *rc, &keys, &start, 500).await?
                };
                let Some(last) = page.last() else { break };
                start = format!("({}", last.id);
                retry_page(db, &redis, &keys, &page, &mut report).await?;
                if page.len() < 500 {
                    break;
                }
            }
        }
    }
    Ok(report)
}

/// `failed purge`: deletes the dead-letter stream; returns how many letters it held.
pub async fn purge(conn: &ConnectionConfig) -> Result<u64> {
    let keys = crate::stream_keys(conn).await?;
    let redis = crate::connect_redis(conn).await?;
    purge_from(&redis, &keys).await
}

/// [`purge`] over an open pool (the HTTP API's entry point).
pub async fn purge_from(redis: &RedisPool, keys: &StreamKeys) -> Result<u64> {
    let mut rc = redis.get().await?;
    Ok(queue::purge_dead_letters(&mut *rc, keys).await?)
}
