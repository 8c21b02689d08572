//! The audit log (`audit_log`): one row per operator action, CLI or API — its time (UTC),
//! action (`queue pause`, `failed retry`, ...), arguments, outcome (`ok` or `failed: ...`)
//! and actor (`user@host`, `api:<token>@<peer>`). Rows are only ever added.

use chrono::{NaiveDateTime, Utc};
use sqlx::MySqlPool;

use crate::error::Result;

/// Longest `action` stored (`audit_log.action` is VARCHAR(64)).
pub(crate) const MAX_ACTION: usize = 64;
/// Longest `actor` stored (`audit_log.actor` is VARCHAR(255)).
pub(crate) const MAX_ACTOR: usize = 255;
/// Longest `arguments` / `outcome` stored (TEXT holds 65,535 bytes; keep rows small).
pub(crate) const MAX_TEXT: usize = 4096;

/// One action to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditAction<'a> {
    pub action: &'a str,
    pub arguments: &'a str,
    pub outcome: &'a str,
    pub actor: &'a str,
}

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: u64,
    /// UTC.
    pub at: NaiveDateTime,
    pub action: String,
    pub arguments: String,
    pub outcome: String,
    pub actor: String,
}

fn bounded(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Adds one row, stamped now (UTC); returns its id.
pub async fn record(pool: &MySqlPool, entry: &AuditAction<'_>) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO audit_log (at, action, arguments, outcome, actor) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(Utc::now().naive_utc())
    .bind(bounded(entry.action, MAX_ACTION))
    .bind(bounded(entry.arguments, MAX_TEXT))
    .bind(bounded(entry.outcome, MAX_TEXT))
    .bind(bounded(entry.actor, MAX_ACTOR))
    .execute(pool)
    .await?;
    Ok(done.last_insert_id())
}

/// The latest `limit` rows at or after `since` (UTC), newest first.
pub async fn list(
    pool: &MySqlPool,
    since: Option<NaiveDateTime>,
    limit: u32,
) -> Result<Vec<AuditRow>> {
    let since = since.unwrap_or(chrono::DateTime::UNIX_EPOCH.naive_utc());
    let rows: Vec<(u64, NaiveDateTime, String, String, String, String)> = sqlx::query_as(
        "SELECT id, at, action, arguments, outcome, actor FROM audit_log \
         WHERE at >= ? ORDER BY id DESC LIMIT ?",
    )
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at, action, arguments, outcome, actor)| AuditRow {
            id,
            at,
            action,
            arguments,
            outcome,
            actor,
        })
        .collect())
}
