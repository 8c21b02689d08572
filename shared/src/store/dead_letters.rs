//! `dead_lettered_rows`: the durable record of rows that ended dead-lettered, by import and
//! line. The consumer records a row before the `MULTI` that dead-letters and acknowledges
//! it; `failed retry` forgets the rows it put back on the stream. An import's `dead` count
//! is read here, not from the dead-letter stream, which `failed purge` empties.

use sqlx::MySqlPool;

use crate::error::Result;
use crate::order_rules::MAX_IDENTITY_CHARS;
use crate::store::{rows_per_statement, value_tuples};

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
            let identity: String = r.identity.chars().take(MAX_IDENTITY_CHARS).collect();
            query = query.bind(r.import_id).bind(r.line).bind(identity);
        }
        query.execute(pool).await?;
    }
    Ok(())
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
