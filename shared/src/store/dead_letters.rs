//! `dead_lettered_rows`: the durable record of rows that ended dead-lettered, by import and
//! line. The consumer records a row before the `MULTI` that dead-letters and acknowledges
//! it; `failed retry` forgets the rows it put back on the stream. An import's `dead` count
//! is read here, not from the dead-letter stream, which `failed purge` empties.

use std::collections::HashSet;

use sqlx::MySqlPool;

use crate::error::Result;
use crate::order_rules::MAX_IDENTITY_CHARS;
use crate::store::{placeholders, rows_per_statement, value_tuples};

/// One dead-lettered row: (import id, line, identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRow<'a> {
    pub import_id: u64,
    pub line: u64,
    pub identity: &'a str,
}

/// Records dead rows; idempotent per (import, line): a row recorded again keeps one record.
pub async fn record(pool: &MySqlPool, rows: &[DeadRow<'_>]) -> Result<()> {
    for part in rows.chunks(rows_per_statement(3)) {
        let sql = format!(
            "INSERT INTO dead_lettered_rows (import_id, line, identity) VALUES {} \
             ON DUPLICATE KEY UPDATE identity = VALUES(identity)",
            value_tuples(part.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for r in part {
            query = query
                .bind(r.import_id)
                .bind(r.line)
                .bind(stored_identity(r.identity));
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// The rows of `rows` that ended after all, as (import id, line): their own order is
/// completed or failed, or they were recorded as a duplicate of another import's order.
/// Asked just before rows are dead-lettered at their last delivery: an earlier holder may
/// have committed them while an outage swallowed its answer, and such a row must not be
/// both done and dead.
pub async fn ended(pool: &MySqlPool, rows: &[DeadRow<'_>]) -> Result<HashSet<(u64, u64)>> {
    let mut ended = HashSet::new();
    for part in rows.chunks(rows_per_statement(2)) {
        let sql = format!(
            "SELECT import_id, line FROM orders FORCE INDEX (uq_orders_identity) \
             WHERE identity IN ({}) AND status IN ('completed', 'failed')",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (Option<u64>, Option<u64>)>(&sql);
        for r in part {
            query = query.bind(stored_identity(r.identity));
        }
        let wanted: HashSet<(u64, u64)> = part.iter().map(|r| (r.import_id, r.line)).collect();
        for (import_id, line) in query.fetch_all(pool).await? {
            if let (Some(import_id), Some(line)) = (import_id, line) {
                if wanted.contains(&(import_id, line)) {
                    ended.insert((import_id, line));
                }
            }
        }
        let sql = format!(
            "SELECT import_id, line FROM import_duplicates WHERE (import_id, line) IN ({})",
            value_tuples(part.len(), 2)
        );
        let mut query = sqlx::query_as::<_, (u64, u64)>(&sql);
        for r in part {
            query = query.bind(r.import_id).bind(r.line);
        }
        ended.extend(query.fetch_all(pool).await?);
    }
    Ok(ended)
}

/// An identity as the tables store it (at most `MAX_IDENTITY_CHARS` characters).
fn stored_identity(identity: &str) -> String {
    identity.chars().take(MAX_IDENTITY_CHARS).collect()
}

/// Forgets the record of rows (import id, line) put back on the stream.
pub async fn forget(pool: &MySqlPool, rows: &[(u64, u64)]) -> Result<()> {
    for part in rows.chunks(rows_per_statement(2)) {
        let sql = format!(
            "DELETE FROM dead_lettered_rows WHERE (import_id, line) IN ({})",
            value_tuples(part.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (import_id, line) in part {
            query = query.bind(*import_id).bind(*line);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// Rows of `import_id` that ended dead-lettered (and were not retried since).
pub async fn count_for_import(pool: &MySqlPool, import_id: u64) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COUNT(*) AS SIGNED) FROM dead_lettered_rows WHERE import_id = ?",
    )
    .bind(import_id)
    .fetch_one(pool)
    .await?;
    Ok(n)
}
