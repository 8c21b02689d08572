//! Aggregates for the operator commands: KPIs, leaderboard, import progress, reconcile.
//!
//! Read-only queries over the tables the consumer writes. KPIs count `completed` orders by
//! their `kpi_date` (the KPI day), read from the per-day summary `kpi_days`; amounts come
//! back as integer cents.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sqlx::{MySqlExecutor, MySqlPool};

use crate::error::Result;
use crate::kpi::KpiFigures;
use crate::money::Cents;
use crate::store::kpi_days;

fn sum(days: &BTreeMap<NaiveDate, KpiFigures>) -> KpiFigures {
    let mut total = KpiFigures::default();
    for f in days.values() {
        total.order_count += f.order_count;
        total.revenue += f.revenue;
    }
    total
}

/// KPI figures of completed orders whose KPI day lies in `from..=to` (inclusive): the
/// per-day summary's rows of those days (`kpi_days`), not the orders.
pub async fn kpi_between<'c, E: MySqlExecutor<'c>>(
    pool: E,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<KpiFigures> {
    Ok(sum(
        &kpi_days::summary_between(pool, Some(from), Some(to)).await?
    ))
}

/// KPI figures of every completed order, summed from the per-day summary.
pub async fn kpi_total<'c, E: MySqlExecutor<'c>>(pool: E) -> Result<KpiFigures> {
    Ok(sum(&kpi_days::summary_between(pool, None, None).await?))
}

/// KPI figures per KPI day, for every day that has a completed order (the summary).
pub async fn kpi_by_day<'c, E: MySqlExecutor<'c>>(
    pool: E,
) -> Result<BTreeMap<NaiveDate, KpiFigures>> {
    kpi_days::summary_between(pool, None, None).await
}

/// Completed orders whose read-model update is committed in MySQL but not yet applied to
/// Redis (rows of `read_model_outbox`): while non-zero, Redis legitimately lags MySQL.
pub async fn pending_outbox_rows(pool: &MySqlPool) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM read_model_outbox")
        .fetch_one(pool)
        .await?;
    Ok(n)
}

/// A customer as the leaderboard shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaderboardCustomer {
    pub email: String,
    pub name: String,
    pub orders_count: i64,
    pub total_spent: Cents,
}

/// The leaderboard's members: every customer who spent something (`total_spent > 0`; a
/// customer with only free orders is not one), highest first, ties by email.
/// Accepts a pool or a [`super::outbox::Snapshot`] connection.
pub async fn leaderboard_customers<'c, E: MySqlExecutor<'c>>(
    pool: E,
) -> Result<Vec<LeaderboardCustomer>> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT CAST(email AS CHAR), name, CAST(orders_count AS SIGNED), CAST(total_spent * 100 AS SIGNED) \
         FROM customers WHERE total_spent > 0 ORDER BY total_spent DESC, email",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(email, name, orders_count, cents)| LeaderboardCustomer {
            email,
            name,
            orders_count,
            total_spent: Cents(cents),
        })
        .collect())
}

/// Name and order count of the given customers (by email), for showing the leaderboard.
pub async fn customers_by_email(
    pool: &MySqlPool,
    emails: &[String],
) -> Result<BTreeMap<String, (String, i64)>> {
    let mut found = BTreeMap::new();
    for part in emails.chunks(super::rows_per_statement(1)) {
        if part.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT CAST(email AS CHAR), name, CAST(orders_count AS SIGNED) FROM customers WHERE email IN ({})",
            super::placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
        for email in part {
            query = query.bind(email);
        }
        for (email, name, orders) in query.fetch_all(pool).await? {
            found.insert(email, (name, orders));
        }
    }
    Ok(found)
}

/// The `imports` row of one import, with the seconds elapsed since it was created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ImportRow {
    pub id: u64,
    pub file_name: String,
    pub status: String,
    pub rows_total: i64,
    pub rows_enqueued: i64,
    pub rows_rejected: i64,
    /// Rows the producer found already imported (not enqueued).
    pub rows_duplicate: i64,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// Milliseconds from `created_at` to now (server clock).
    pub age_ms: i64,
}

/// What the consumers did with one import's rows so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportOutcomes {
    pub completed: i64,
    /// Failed orders per reason code.
    pub failed: BTreeMap<String, i64>,
    /// Orders whose stock is reserved, payment not settled yet.
    pub reserved: i64,
    /// Rows the consumers found to be an identity already processed.
    pub duplicates: i64,
    /// Milliseconds from the import's creation to its latest terminal order (server clock).
    pub last_terminal_ms: Option<i64>,
}

/// The columns of an [`ImportRow`], from `imports` (add a `WHERE` / `ORDER BY`).
pub(crate) const IMPORT_ROW_SELECT: &str =
    "SELECT id, file_name, status, CAST(rows_total AS SIGNED) AS rows_total, \
     CAST(rows_enqueued AS SIGNED) AS rows_enqueued, \
     CAST(rows_rejected AS SIGNED) AS rows_rejected, \
     CAST(rows_duplicate AS SIGNED) AS rows_duplicate, \
     DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%s.%fZ') AS created_at, \
     DATE_FORMAT(finished_at, '%Y-%m-%dT%H:%i:%s.%fZ') AS finished_at, \
     CAST(TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3)) / 1000 AS SIGNED) AS age_ms \
     FROM imports";

/// One import's row, or `None` when there is no such import.
pub async fn import_row(pool: &MySqlPool, import_id: u64) -> Result<Option<ImportRow>> {
    Ok(sqlx::query_as(&format!("{IMPORT_ROW_SELECT} WHERE id = ?"))
        .bind(import_id)
        .fetch_optional(pool)
        .await?)
}

/// Order outcomes of one import, from its counters (`import_progress`, a few rows kept by
/// the reserve and settle transactions): constant time per poll, whatever the import's
/// size (`producer import --wait` and `status` poll it while the consumers write).
pub async fn import_outcomes(pool: &MySqlPool, import_id: u64) -> Result<ImportOutcomes> {
    let counters = crate::store::import_progress::import_counters(pool, import_id).await?;
    let mut outcomes = ImportOutcomes::default();
    for (status, reason, n, _, last) in counters {
        let terminal = match status.as_str() {
            "completed" => {
                outcomes.completed += n;
                true
            }
            "failed" => {
                let reason = if reason.is_empty() {
                    "unknown".to_string()
                } else {
                    reason
                };
                if n != 0 {
                    *outcomes.failed.entry(reason).or_default() += n;
                }
                true
            }
            "reserved" | "pending" => {
                outcomes.reserved += n;
                false
            }
            _ => false,
        };
        if terminal {
            outcomes.last_terminal_ms = outcomes.last_terminal_ms.max(last);
        }
    }
    let (duplicates,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM import_duplicates WHERE import_id = ?")
            .bind(import_id)
            .fetch_one(pool)
            .await?;
    outcomes.duplicates = duplicates;
    Ok(outcomes)
}
