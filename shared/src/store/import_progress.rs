//! `import_progress`: per import, how many of its orders are in each status (and failure
//! reason), the revenue of the completed ones and when one last became terminal. The
//! reserve and settle transactions add their moves ([`ProgressDeltas`]) in the same
//! transaction as the status changes, so the counters equal the orders (`reconcile
//! --deep` and the tests' invariant checker compare them with [`progress_from_orders`]).

use std::collections::BTreeMap;

use sqlx::{MySql, MySqlExecutor, Transaction};

use crate::error::Result;
use crate::money::Cents;
use crate::store::rows_per_statement;

/// Shards of each counter (see the migration `20261204000401_import_progress.sql`).
const SHARDS: u8 = 8;

/// One counter: (import id, status, failure reason or "").
pub(crate) type ProgressKey = (u64, &'static str, &'static str);

/// Changes to the counters of one transaction: per counter, (orders, revenue cents).
#[derive(Debug, Default)]
pub(crate) struct ProgressDeltas(BTreeMap<ProgressKey, (i64, i64)>);

impl ProgressDeltas {
    /// `orders` more orders (negative: fewer) under `key`, with `revenue` (completed only).
    pub fn add(&mut self, key: ProgressKey, orders: i64, revenue: Cents) {
        let e = self.0.entry(key).or_default();
        e.0 += orders;
        e.1 += revenue.0;
    }

    /// One order moved from `from` to `to` (same import).
    pub fn moved(
        &mut self,
        import_id: u64,
        from: (&'static str, &'static str),
        to: (&'static str, &'static str),
        revenue: Cents,
    ) {
        self.add((import_id, from.0, from.1), -1, Cents(0));
        self.add((import_id, to.0, to.1), 1, revenue);
    }

    /// Writes the changes to one shard chosen at random (readers sum the shards), counters
    /// in key order (every writer locks them in that order). Counters of a terminal status
    /// record the time as their last terminal moment.
    pub async fn write(self, tx: &mut Transaction<'_, MySql>) -> Result<()> {
        let shard = rand::random::<u8>() % SHARDS;
        let rows: Vec<(ProgressKey, (i64, i64))> =
            self.0.into_iter().filter(|(_, d)| *d != (0, 0)).collect();
        for part in rows.chunks(rows_per_statement(7)) {
            let sql = format!(
                "INSERT INTO import_progress (import_id, status, reason, shard, orders, revenue_cents, last_terminal_at) \
                 VALUES {} ON DUPLICATE KEY UPDATE orders = orders + VALUES(orders), \
                 revenue_cents = revenue_cents + VALUES(revenue_cents), \
                 last_terminal_at = COALESCE(VALUES(last_terminal_at), last_terminal_at)",
                vec!["(?, ?, ?, ?, ?, ?, IF(?, NOW(3), NULL))"; part.len()].join(",")
            );
            let mut query = sqlx::query(&sql);
            for ((import_id, status, reason), (orders, cents)) in part {
                let terminal = *status == "completed" || *status == "failed";
                query = query
                    .bind(*import_id)
                    .bind(*status)
                    .bind(*reason)
                    .bind(shard)
                    .bind(*orders)
                    .bind(*cents)
                    .bind(terminal && *orders > 0);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

type CounterRow = (u64, String, String, i64, i64);

fn keyed(rows: Vec<CounterRow>) -> BTreeMap<(u64, String, String), (i64, i64)> {
    rows.into_iter()
        .map(|(i, s, r, n, c)| ((i, s, r), (n, c)))
        .collect()
}

/// One import's counters: (status, reason, orders, revenue cents, milliseconds from the
/// import's creation to its last terminal order).
pub(crate) async fn import_counters<'c, E: MySqlExecutor<'c>>(
    db: E,
    import_id: u64,
) -> Result<Vec<(String, String, i64, i64, Option<i64>)>> {
    Ok(sqlx::query_as(
        "SELECT p.status, p.reason, CAST(SUM(p.orders) AS SIGNED), \
         CAST(SUM(p.revenue_cents) AS SIGNED), \
         CAST(TIMESTAMPDIFF(MICROSECOND, MIN(i.created_at), MAX(p.last_terminal_at)) / 1000 AS SIGNED) \
         FROM import_progress p JOIN imports i ON i.id = p.import_id \
         WHERE p.import_id = ? GROUP BY p.status, p.reason ORDER BY p.status, p.reason",
    )
    .bind(import_id)
    .fetch_all(db)
    .await?)
}

/// Every counter (import id, status, reason) → (orders, revenue cents), zeros left out.
pub async fn all_counters<'c, E: MySqlExecutor<'c>>(
    db: E,
) -> Result<BTreeMap<(u64, String, String), (i64, i64)>> {
    let rows: Vec<CounterRow> = sqlx::query_as(
        "SELECT import_id, status, reason, CAST(SUM(orders) AS SIGNED), \
         CAST(SUM(revenue_cents) AS SIGNED) FROM import_progress \
         GROUP BY import_id, status, reason \
         HAVING SUM(orders) <> 0 OR SUM(revenue_cents) <> 0",
    )
    .fetch_all(db)
    .await?;
    Ok(keyed(rows))
}

/// The same counters recomputed from orders and archived orders (a scan of every order
/// with an import; archiving leaves the counters as they are).
pub async fn progress_from_orders<'c, E: MySqlExecutor<'c>>(
    db: E,
) -> Result<BTreeMap<(u64, String, String), (i64, i64)>> {
    let rows: Vec<CounterRow> = sqlx::query_as(
        "SELECT import_id, status, reason, CAST(SUM(n) AS SIGNED), CAST(SUM(cents) AS SIGNED) FROM ( \
           SELECT import_id, CAST(status AS CHAR) AS status, COALESCE(failure_reason, '') AS reason, \
           COUNT(*) AS n, IF(status = 'completed', SUM(total) * 100, 0) AS cents FROM orders \
           WHERE import_id IS NOT NULL GROUP BY import_id, status, failure_reason \
           UNION ALL \
           SELECT import_id, status, COALESCE(failure_reason, ''), COUNT(*), \
           IF(status = 'completed', SUM(total) * 100, 0) FROM archived_orders \
           WHERE import_id IS NOT NULL GROUP BY import_id, status, failure_reason \
         ) AS counters GROUP BY import_id, status, reason",
    )
    .fetch_all(db)
    .await?;
    Ok(keyed(rows))
}
