//! Imports and their rejected rows: the producer's bookkeeping in MySQL.
//!
//! An import is created before its first entry is enqueued (chunks carry its id), its counts
//! are updated as it goes, and `enqueued_through_line` records the highest line whose row
//! is on the stream or rejected. A later import of the same file (same SHA-256) without
//! `--new` skips every line up to the highest such line of the earlier imports: this is
//! how a re-import enqueues nothing twice, and how an interrupted import resumes.
//!
//! A running import refreshes `heartbeat_at` every [`HEARTBEAT_INTERVAL`]; one whose
//! heartbeat is older than [`HEARTBEAT_FRESH_SECS`] is abandoned. Its row is created under
//! a shared lock of the recorded partition count (`settings`), the fence of `migrate
//! --partitions`.

use sqlx::MySqlPool;

use crate::error::Result;
use crate::money::Cents;
use crate::store::{rows_per_statement, value_tuples};

/// Longest `detail` stored for a rejected row (`import_rejects.detail` is VARCHAR(1024)).
pub(crate) const MAX_REJECT_DETAIL: usize = 1024;

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

/// How often a running import refreshes `imports.heartbeat_at`.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// A running import whose heartbeat is older than this is abandoned (its producer died):
/// `migrate --partitions` marks it `interrupted` instead of waiting for it.
pub const HEARTBEAT_FRESH_SECS: u64 = 60;

/// What an import's row is created with.
#[derive(Debug, Clone)]
pub struct NewImport<'a> {
    pub file_name: &'a str,
    pub file_sha256: &'a str,
    pub new_identities: bool,
    /// The lines this import covers start after this one (earlier imports of the same
    /// file enqueued up to it).
    pub resumed_after_line: u64,
}

/// Creates the `imports` row (`running`, heartbeat now) in a transaction that reads the
/// stream's partition count under a shared lock; returns its id and that count, the
/// layout the import must use: a concurrent `migrate --partitions` either committed
/// before (and this reads its count) or sees this import running and refuses.
pub async fn create_import(
    pool: &MySqlPool,
    new: &NewImport<'_>,
) -> Result<(u64, crate::redis::partition::PartitionCount)> {
    let file_name: String = new.file_name.chars().take(1024).collect();
    let mut tx = pool.begin().await?;
    let partitions =
        crate::store::settings::locked_stream_partitions(&mut tx, " LOCK IN SHARE MODE").await?;
    let done = sqlx::query(
        "INSERT INTO imports (file_name, file_sha256, new_identities, status, \
         resumed_after_line, heartbeat_at) VALUES (?, ?, ?, 'running', ?, NOW(3))",
    )
    .bind(file_name)
    .bind(new.file_sha256)
    .bind(new.new_identities)
    .bind(new.resumed_after_line)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((done.last_insert_id(), partitions))
}

/// Refreshes a running import's heartbeat.
pub async fn touch_heartbeat(pool: &MySqlPool, import_id: u64) -> Result<()> {
    sqlx::query("UPDATE imports SET heartbeat_at = NOW(3) WHERE id = ? AND status = 'running'")
        .bind(import_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// An import whose status is `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningImport {
    pub id: u64,
    pub file_name: String,
    /// Its last heartbeat (UTC, `YYYY-MM-DD HH:MM:SS`), if any.
    pub heartbeat_at: Option<String>,
    /// Heartbeat within [`HEARTBEAT_FRESH_SECS`]: its producer is alive.
    pub fresh: bool,
}

/// Running imports, oldest first (on a partition change's transaction).
pub(crate) async fn running_imports(
    conn: &mut sqlx::MySqlConnection,
) -> Result<Vec<RunningImport>> {
    let rows: Vec<(u64, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT id, file_name, DATE_FORMAT(heartbeat_at, '%Y-%m-%d %H:%i:%s'), \
         CAST(COALESCE(heartbeat_at > NOW(3) - INTERVAL ? SECOND, 0) AS SIGNED) \
         FROM imports WHERE status = 'running' ORDER BY id",
    )
    .bind(HEARTBEAT_FRESH_SECS)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, file_name, heartbeat_at, fresh)| RunningImport {
            id,
            file_name,
            heartbeat_at,
            fresh: fresh != 0,
        })
        .collect())
}

/// Marks running imports `interrupted` (abandoned: a re-import of the file resumes them).
pub(crate) async fn mark_abandoned(conn: &mut sqlx::MySqlConnection, ids: &[u64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE imports SET status = 'interrupted', finished_at = NOW(3) \
         WHERE status = 'running' AND id IN ({})",
        crate::store::placeholders(ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
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
         heartbeat_at = NOW(3), finished_at = CASE WHEN ? = 'running' THEN NULL ELSE NOW(3) END WHERE id = ?",
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

/// Imports with enqueued rows that MySQL does not account for (no order, archived or not,
/// no consumer-found duplicate, no dead letter): still in the stream, or lost. Indexed
/// counts per import.
pub async fn imports_with_unaccounted_rows(pool: &MySqlPool) -> Result<Vec<RecoveryView>> {
    Ok(sqlx::query_as(&format!(
        "{RECOVERY_COLUMNS} i WHERE i.rows_enqueued > \
         (SELECT COUNT(*) FROM orders o WHERE o.import_id = i.id) \
         + (SELECT COUNT(*) FROM archived_orders a WHERE a.import_id = i.id) \
         + (SELECT COUNT(*) FROM import_duplicates d WHERE d.import_id = i.id) \
         + (SELECT COUNT(*) FROM dead_lettered_rows x WHERE x.import_id = i.id) \
         ORDER BY i.id"
    ))
    .fetch_all(pool)
    .await?)
}

/// Calls `line` with every line of the import that MySQL accounts for: an order (archived
/// or not), a duplicate the consumers found, or a dead-lettered row. Streamed (memory flat).
pub async fn accounted_lines(
    pool: &MySqlPool,
    import_id: u64,
    mut line: impl FnMut(u64),
) -> Result<()> {
    use futures_util::TryStreamExt;
    for sql in [
        "SELECT line FROM orders WHERE import_id = ? AND line IS NOT NULL",
        "SELECT line FROM archived_orders WHERE import_id = ? AND line IS NOT NULL",
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
