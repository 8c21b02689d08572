//! `kpi_days`: count and revenue of completed orders per KPI day, kept by the settle
//! transaction (see the migration `20261204000400_kpi_days.sql`). KPI rebuilds and
//! `reconcile` read the summary; `orders_by_day` recomputes it from orders (and archived
//! orders, which keep their days' sums here: `producer archive` never changes this table)
//! to verify it.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use sqlx::{MySql, MySqlExecutor, Transaction};

use crate::error::Result;
use crate::kpi::{CompletedOrder, KpiFigures};
use crate::money::Cents;
use crate::store::{rows_per_statement, value_tuples};

/// Adds completed orders to their days' rows, in ascending day order (every settle locks
/// its day rows in that order, then the outbox sequence: no deadlock between them).
/// Call it in the transaction that moves the orders to `completed`.
pub(crate) async fn add_completed(
    tx: &mut Transaction<'_, MySql>,
    completed: &[CompletedOrder],
) -> Result<()> {
    let mut per_day: BTreeMap<NaiveDate, KpiFigures> = BTreeMap::new();
    for order in completed {
        let f = per_day.entry(order.kpi_day).or_default();
        f.order_count += 1;
        f.revenue += order.total;
    }
    let days: Vec<(NaiveDate, KpiFigures)> = per_day.into_iter().collect();
    for part in days.chunks(rows_per_statement(3)) {
        let sql = format!(
            "INSERT INTO kpi_days (kpi_date, order_count, revenue_cents) VALUES {} \
             ON DUPLICATE KEY UPDATE order_count = order_count + VALUES(order_count), \
             revenue_cents = revenue_cents + VALUES(revenue_cents)",
            value_tuples(part.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for (day, f) in part {
            query = query.bind(*day).bind(f.order_count).bind(f.revenue.0);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn figures(rows: Vec<(NaiveDate, i64, i64)>) -> BTreeMap<NaiveDate, KpiFigures> {
    rows.into_iter()
        .map(|(day, count, cents)| {
            (
                day,
                KpiFigures {
                    order_count: count,
                    revenue: Cents(cents),
                },
            )
        })
        .collect()
}

/// The summary's rows with a day in `from..=to` (every row when both are `None`).
pub async fn summary_between<'c, E: MySqlExecutor<'c>>(
    db: E,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<BTreeMap<NaiveDate, KpiFigures>> {
    let rows: Vec<(NaiveDate, i64, i64)> = sqlx::query_as(
        "SELECT kpi_date, CAST(order_count AS SIGNED), revenue_cents FROM kpi_days \
         WHERE kpi_date >= COALESCE(?, '1000-01-01') AND kpi_date <= COALESCE(?, '9999-12-31') \
         ORDER BY kpi_date",
    )
    .bind(from)
    .bind(to)
    .fetch_all(db)
    .await?;
    Ok(figures(rows))
}

/// The same figures recomputed from orders, archived ones included (a scan of every
/// order and archived order): what the summary must equal.
pub async fn orders_by_day<'c, E: MySqlExecutor<'c>>(
    db: E,
) -> Result<BTreeMap<NaiveDate, KpiFigures>> {
    let rows: Vec<(NaiveDate, i64, i64)> = sqlx::query_as(
        "SELECT kpi_date, CAST(SUM(n) AS SIGNED), CAST(SUM(cents) AS SIGNED) FROM ( \
           SELECT kpi_date, COUNT(*) AS n, SUM(total) * 100 AS cents FROM orders \
           WHERE status = 'completed' AND kpi_date IS NOT NULL GROUP BY kpi_date \
           UNION ALL \
           SELECT kpi_date, COUNT(*), SUM(total) * 100 FROM archived_orders \
           WHERE status = 'completed' GROUP BY kpi_date \
         ) AS days GROUP BY kpi_date ORDER BY kpi_date",
    )
    .fetch_all(db)
    .await?;
    Ok(figures(rows))
}
