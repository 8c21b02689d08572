//! `dead_lettered_rows`: the durable record of rows that ended dead-lettered, by import and
//! line. The consumer records a row before the `MULTI` that dead-letters and acknowledges
//! it, in a transaction that excludes the reserve of the same row ([`record_unless_ended`]
//! and [`fence`]); `failed retry` forgets the rows it put back on the stream. An import's `dead` count
//! is read here, not from the dead-letter stream, which `failed purge` empties.

use std::collections::HashSet;

use sqlx::MySqlPool;

use crate::error::Result;
use crate::order::rules::MAX_IDENTITY_CHARS;
use crate::store::{placeholders, rows_per_statement, value_tuples};

/// One row about to be dead-lettered: (import id, line, identity) and the stream entry it
/// came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRow<'a> {
    pub import_id: u64,
    pub line: u64,
    pub identity: &'a str,
    pub entry: &'a str,
}

/// What [`record_unless_ended`] decided for rows about to be dead-lettered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeadRowFates {
    /// Rows (import id, line) that ended after all: their own order is completed or
    /// failed, or they were recorded as a duplicate of another import's order. Not
    /// recorded; acknowledged, never dead-lettered.
    pub ended: HashSet<(u64, u64)>,
    /// Entries with a row whose order an earlier delivery reserved and has not settled:
    /// none of their rows is recorded; the entry stays pending and its next delivery
    /// settles the order.
    pub unsettled_entries: HashSet<String>,
}

/// Records the rows as dead-lettered (`dead_lettered_rows`, idempotent per import and
/// line) unless they ended after all, in one transaction that excludes the workflow:
/// the rows are written first, then their orders are read with `FOR UPDATE`. The
/// reserve does the mirror image (orders written, then `dead_lettered_rows` read with a
/// lock, [`fence`]), so whichever commits second sees the other's row, or InnoDB finds
/// the two waiting for each other and rolls one back (1213, retried): no row can be
/// both an order and dead, even when an earlier holder of the entry is still at work.
/// This holds at READ COMMITTED, the pools' level, because each side's locking read
/// waits for the other's uncommitted insert of the same key.
pub async fn record_unless_ended(pool: &MySqlPool, rows: &[DeadRow<'_>]) -> Result<DeadRowFates> {
    let mut fates = DeadRowFates::default();
    if rows.is_empty() {
        return Ok(fates);
    }
    let mut tx = pool.begin().await?;
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
        query.execute(&mut *tx).await?;
    }
    let wanted: HashSet<(u64, u64)> = rows.iter().map(|r| (r.import_id, r.line)).collect();
    let mut unsettled: HashSet<(u64, u64)> = HashSet::new();
    for part in rows.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT import_id, line, CAST(status AS CHAR) FROM orders \
             FORCE INDEX (uq_orders_identity) WHERE identity IN ({}) FOR UPDATE",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (Option<u64>, Option<u64>, String)>(&sql);
        for r in part {
            query = query.bind(stored_identity(r.identity));
        }
        for (import_id, line, status) in query.fetch_all(&mut *tx).await? {
            let (Some(import_id), Some(line)) = (import_id, line) else {
                continue;
            };
            if !wanted.contains(&(import_id, line)) {
                continue;
            }
            if status == "reserved" {
                unsettled.insert((import_id, line));
            } else {
                fates.ended.insert((import_id, line));
            }
        }
    }
    for part in rows.chunks(rows_per_statement(2)) {
        let sql = format!(
            "SELECT import_id, line FROM import_duplicates WHERE (import_id, line) IN ({}) \
             FOR UPDATE",
            value_tuples(part.len(), 2)
        );
        let mut query = sqlx::query_as::<_, (u64, u64)>(&sql);
        for r in part {
            query = query.bind(r.import_id).bind(r.line);
        }
        fates.ended.extend(query.fetch_all(&mut *tx).await?);
    }
    fates.unsettled_entries = rows
        .iter()
        .filter(|r| unsettled.contains(&(r.import_id, r.line)))
        .map(|r| r.entry.to_string())
        .collect();
    let not_dead: Vec<(u64, u64)> = rows
        .iter()
        .filter(|r| {
            fates.ended.contains(&(r.import_id, r.line))
                || fates.unsettled_entries.contains(r.entry)
        })
        .map(|r| (r.import_id, r.line))
        .collect();
    delete_rows(&mut tx, &not_dead).await?;
    tx.commit().await?;
    Ok(fates)
}

/// Of the rows (import id, line) about to be written as orders or duplicates, those
/// recorded as dead-lettered: read with a lock inside the reserve's transaction, after
/// its own writes (see [`record_unless_ended`]). Without `tx`'s writes it would not
/// exclude anything; with them, a dead-letter record committing meanwhile is either seen
/// here or deadlocks with this transaction.
pub async fn fence(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    rows: &[(u64, u64)],
) -> Result<HashSet<(u64, u64)>> {
    recorded_among(tx, rows, " FOR UPDATE").await
}

/// Of the rows (import id, line), those recorded as dead-lettered (no lock: the reserve
/// reads it before its transaction and leaves these rows alone; [`fence`] catches a
/// record committed after this read).
pub async fn recorded(pool: &MySqlPool, rows: &[(u64, u64)]) -> Result<HashSet<(u64, u64)>> {
    let mut conn = pool.acquire().await?;
    recorded_among(&mut conn, rows, "").await
}

async fn recorded_among(
    conn: &mut sqlx::MySqlConnection,
    rows: &[(u64, u64)],
    lock: &str,
) -> Result<HashSet<(u64, u64)>> {
    let mut found = HashSet::new();
    for part in rows.chunks(rows_per_statement(2)) {
        let sql = format!(
            "SELECT import_id, line FROM dead_lettered_rows WHERE (import_id, line) IN ({}){lock}",
            value_tuples(part.len(), 2)
        );
        let mut query = sqlx::query_as::<_, (u64, u64)>(&sql);
        for (import_id, line) in part {
            query = query.bind(*import_id).bind(*line);
        }
        found.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// An identity as the tables store it (at most `MAX_IDENTITY_CHARS` characters).
fn stored_identity(identity: &str) -> String {
    identity.chars().take(MAX_IDENTITY_CHARS).collect()
}

/// Forgets the record of rows (import id, line) put back on the stream.
pub async fn forget(pool: &MySqlPool, rows: &[(u64, u64)]) -> Result<()> {
    let mut conn = pool.acquire().await?;
    delete_rows(&mut conn, rows).await
}

async fn delete_rows(conn: &mut sqlx::MySqlConnection, rows: &[(u64, u64)]) -> Result<()> {
    for part in rows.chunks(rows_per_statement(2)) {
        let sql = format!(
            "DELETE FROM dead_lettered_rows WHERE (import_id, line) IN ({})",
            value_tuples(part.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (import_id, line) in part {
            query = query.bind(*import_id).bind(*line);
        }
        query.execute(&mut *conn).await?;
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
