//! Imports and their rejected rows: the producer's bookkeeping in MySQL.
//!
//! An import is created before its first entry is enqueued (chunks carry its id), its counts
//! are updated as it goes, and `enqueued_through_line` records the highest line whose row
//! is on the stream or rejected. A later import of the same file (same SHA-256) without
//! `--new` skips every line up to the highest such line of the earlier imports: this is
//! how a re-import enqueues nothing twice, and how an interrupted import resumes.

use sqlx::MySqlPool;

use crate::error::Result;
use crate::money::Cents;
use crate::store::{rows_per_statement, value_tuples};

/// Longest `detail` stored for a rejected row (`import_rejects.detail` is VARCHAR(1024)).
pub const MAX_REJECT_DETAIL: usize = 1024;

/// The counts an import carries on its `imports` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportCounts {
    /// Data rows read (the header excluded).
    pub rows_total: u64,
    pub rows_enqueued: u64,
    pub rows_rejected: u64,
    /// Rows an earlier import of the same file already enqueued (not enqueued again).
    pub rows_duplicate: u64,
    /// Every line up to this one is enqueued, rejected or a duplicate.
    pub enqueued_through_line: u64,
}

/// A rejected row as stored in `import_rejects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRow {
    pub line: u64,
    pub reason: &'static str,
    pub detail: String,
}

/// Lifecycle of an import (`imports.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportStatus {
    Running,
    Finished,
    /// Stopped by a signal or an error before the end of the file; a re-import resumes it.
    Interrupted,
}

impl ImportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportStatus::Running => "running",
            ImportStatus::Finished => "finished",
            ImportStatus::Interrupted => "interrupted",
        }
    }
}

/// Creates the `imports` row; returns its id.
pub async fn create_import(
    pool: &MySqlPool,
    file_name: &str,
    file_sha256: &str,
    new_identities: bool,
) -> Result<u64> {
    let file_name: String = file_name.chars().take(1024).collect();
    let done = sqlx::query(
        "INSERT INTO imports (file_name, file_sha256, new_identities, status) VALUES (?, ?, ?, 'running')",
    )
    .bind(file_name)
    .bind(file_sha256)
    .bind(new_identities)
    .execute(pool)
    .await?;
    Ok(done.last_insert_id())
}

/// The highest line that earlier imports of this file (without `--new`) put on the stream
/// or rejected; 0 when the file was never imported.
pub async fn already_imported_through(pool: &MySqlPool, file_sha256: &str) -> Result<u64> {
    let (line,): (Option<i64>,) = sqlx::query_as(
        "SELECT CAST(MAX(enqueued_through_line) AS SIGNED) FROM imports \
         WHERE file_sha256 = ? AND new_identities = FALSE",
    )
    .bind(file_sha256)
    .fetch_one(pool)
    .await?;
    Ok(line.unwrap_or(0).max(0) as u64)
}

/// Writes the counts (and the status) on the import's row; `finished_at` is set with any
/// status but `running`.
pub async fn record_progress(
    pool: &MySqlPool,
    import_id: u64,
    counts: &ImportCounts,
    status: ImportStatus,
) -> Result<()> {
    sqlx::query(
        "UPDATE imports SET rows_total = ?, rows_enqueued = ?, rows_rejected = ?, rows_duplicate = ?, \
         enqueued_through_line = GREATEST(enqueued_through_line, ?), status = ?, \
         finished_at = CASE WHEN ? = 'running' THEN NULL ELSE NOW(3) END WHERE id = ?",
    )
    .bind(counts.rows_total)
    .bind(counts.rows_enqueued)
    .bind(counts.rows_rejected)
    .bind(counts.rows_duplicate)
    .bind(counts.enqueued_through_line)
    .bind(status.as_str())
    .bind(status.as_str())
    .bind(import_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stores rejected rows (idempotent per import and line), in statements under the
/// placeholder limit.
pub async fn insert_rejects(pool: &MySqlPool, import_id: u64, rejects: &[RejectRow]) -> Result<()> {
    for part in rejects.chunks(rows_per_statement(4)) {
        let sql = format!(
            "INSERT INTO import_rejects (import_id, line, reason, detail) VALUES {} \
             ON DUPLICATE KEY UPDATE reason = VALUES(reason), detail = VALUES(detail)",
            value_tuples(part.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for r in part {
            let detail: String = r.detail.chars().take(MAX_REJECT_DETAIL).collect();
            query = query
                .bind(import_id)
                .bind(r.line)
                .bind(r.reason)
                .bind(detail);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// Rejected rows of an import by reason code.
pub async fn rejects_by_reason(pool: &MySqlPool, import_id: u64) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT reason, COUNT(*) FROM import_rejects WHERE import_id = ? GROUP BY reason ORDER BY reason",
    )
    .bind(import_id)
    .fetch_all(pool)
    .await?)
}

/// Revenue of the import's completed orders (its `import_progress` counter).
pub async fn import_revenue(pool: &MySqlPool, import_id: u64) -> Result<Cents> {
    let cents: Option<(Option<i64>,)> = sqlx::query_as(
        "SELECT CAST(SUM(revenue_cents) AS SIGNED) FROM import_progress \
         WHERE import_id = ? AND status = 'completed' AND reason = ''",
    )
    .bind(import_id)
    .fetch_optional(pool)
    .await?;
    Ok(Cents(cents.and_then(|(c,)| c).unwrap_or(0)))
}

/// Rows of all imports, all time: (enqueued, rejected, duplicate), for
/// `oms_import_rows_total{result}`.
pub async fn row_totals(pool: &MySqlPool) -> Result<(u64, u64, u64)> {
    let (enqueued, rejected, duplicate): (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(rows_enqueued), 0) AS SIGNED), \
         CAST(COALESCE(SUM(rows_rejected), 0) AS SIGNED), \
         CAST(COALESCE(SUM(rows_duplicate), 0) AS SIGNED) FROM imports",
    )
    .fetch_one(pool)
    .await?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok((n(enqueued), n(rejected), n(duplicate)))
}

/// What `producer recover` needs of an import.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RecoveryView {
    pub id: u64,
    pub file_name: String,
    pub file_sha256: String,
    pub new_identities: bool,
    pub status: String,
    /// The import's lines start after this one (an import resuming an earlier one).
    pub resumed_after_line: u64,
    pub enqueued_through_line: u64,
    pub rows_enqueued: u64,
}

const RECOVERY_COLUMNS: &str = "SELECT id, file_name, file_sha256, new_identities, status, \
     resumed_after_line, enqueued_through_line, rows_enqueued FROM imports";

/// One import as `recover` sees it.
pub async fn recovery_view(pool: &MySqlPool, import_id: u64) -> Result<Option<RecoveryView>> {
    Ok(sqlx::query_as(&format!("{RECOVERY_COLUMNS} WHERE id = ?"))
        .bind(import_id)
        .fetch_optional(pool)
        .await?)
}

/// Imports with enqueued rows that MySQL does not account for (no order, no consumer-found
/// duplicate, no dead letter): still in the stream, or lost. One indexed count per import.
pub async fn imports_with_unaccounted_rows(pool: &MySqlPool) -> Result<Vec<RecoveryView>> {
    Ok(sqlx::query_as(&format!(
        "{RECOVERY_COLUMNS} i WHERE i.rows_enqueued > \
         (SELECT COUNT(*) FROM orders o WHERE o.import_id = i.id) \
         + (SELECT COUNT(*) FROM import_duplicates d WHERE d.import_id = i.id) \
         + (SELECT COUNT(*) FROM dead_lettered_rows x WHERE x.import_id = i.id) \
         ORDER BY i.id"
    ))
    .fetch_all(pool)
    .await?)
}

/// Calls `line` with every line of the import that MySQL accounts for: an order, a
/// duplicate the consumers found, or a dead-lettered row. Streamed (memory flat).
pub async fn accounted_lines(
    pool: &MySqlPool,
    import_id: u64,
    mut line: impl FnMut(u64),
) -> Result<()> {
    use futures_util::TryStreamExt;
    for sql in [
        "SELECT line FROM orders WHERE import_id = ? AND line IS NOT NULL",
        "SELECT line FROM import_duplicates WHERE import_id = ?",
        "SELECT line FROM dead_lettered_rows WHERE import_id = ?",
    ] {
        let mut rows = sqlx::query_as::<_, (u64,)>(sql).bind(import_id).fetch(pool);
        while let Some((l,)) = rows.try_next().await? {
            line(l);
        }
    }
    Ok(())
}
