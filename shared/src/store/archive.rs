//! Retention (`producer archive`): terminal orders whose KPI day is before a cutoff leave
//! `orders` and `order_items` in bounded batches, each one short transaction (see the
//! migration `20261204000600_archive.sql` for the tables that stay behind).
//!
//! A run walks the candidates ([`ArchiveScan`]): without a lock, the (KPI day, id) of
//! orders with `kpi_date` before the cutoff, read from index `idx_orders_kpi_date` alone in
//! large chunks, each after where the last one ended (orders still `reserved` have no KPI
//! day and are never in its range), each chunk sorted by id and cut into batches.
//!
//! One batch (`take_batch`), in a transaction: its orders locked by id (`FOR UPDATE`,
//! ascending: the workflow's lock order) and re-checked (terminal, before the cutoff),
//! their customers and items read (plain reads: nothing else changes a terminal order), one
//! `archived_orders` row each, their completed items added to `archived_product_sales` (in
//! key order), the items then the orders deleted.
//!
//! The caller gets the batch with its transaction still open ([`ArchiveBatch`]): it writes
//! the orders wherever they go (the archive file, synced) and only then commits, so an
//! order is never gone from MySQL before it is in the file. Dropping the batch rolls back.
//!
//! Nothing of the workflow waits long on a batch: the rows it locks are terminal (only a
//! settle racing a redelivery re-reads such a row, and waits for one batch at most), the
//! customers, products, `kpi_days` and `import_progress` are not touched (they already hold
//! the archived orders' sums), and the transaction holds at most `batch_size` orders.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, NaiveDateTime};
use sqlx::{MySql, MySqlPool, Transaction};

use crate::error::{OmsError, Result};
use crate::money::Cents;
use crate::store::{placeholders, rows_per_statement, value_tuples};

/// Most orders one batch may hold (`--batch-size`).
pub(crate) const MAX_BATCH: usize = 10_000;

/// One item of an archived order, as `order_items` held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedItem {
    pub sku: String,
    /// `None` for an sku the catalog did not know (the order failed `unknown_sku`).
    pub product_id: Option<u64>,
    pub quantity: u32,
    /// The unit price when the order was placed; `None` for an unknown sku.
    pub unit_price: Option<Cents>,
}

/// One archived order with its customer and items: everything its rows held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedOrder {
    /// `orders.id` (kept as `archived_orders.id`).
    pub id: u64,
    pub identity: String,
    pub import_id: Option<u64>,
    pub line: Option<u64>,
    pub customer_id: u64,
    pub customer_email: String,
    pub customer_name: String,
    /// `completed` or `failed`.
    pub status: String,
    pub failure_reason: Option<String>,
    pub total: Cents,
    /// UTC, whole seconds.
    pub order_date: Option<NaiveDateTime>,
    pub kpi_date: NaiveDate,
    /// UTC.
    pub created_at: NaiveDateTime,
    /// UTC: when the order ended.
    pub updated_at: NaiveDateTime,
    /// In `order_items.id` order.
    pub items: Vec<ArchivedItem>,
}

/// One batch moved out of the hot tables, its transaction still open: [`commit`] it once
/// the orders are kept elsewhere; dropped, it rolls back and nothing moved.
///
/// [`commit`]: ArchiveBatch::commit
pub struct ArchiveBatch {
    tx: Transaction<'static, MySql>,
    /// The batch's orders, by id.
    pub orders: Vec<ArchivedOrder>,
}

impl ArchiveBatch {
    /// Items in the batch.
    pub fn item_count(&self) -> usize {
        self.orders.iter().map(|o| o.items.len()).sum()
    }

    /// Makes the move final.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// Candidates one query reads from `idx_orders_kpi_date` (ids and days only: 16 MB at most
/// in memory); a chunk is taken in id order, so its batches walk `orders` and `order_items`
/// once, page after page.
pub(crate) const SCAN_CHUNK: usize = 1_000_000;

/// A run's walk through the terminal orders before a cutoff ([`ArchiveScan::next_batch`]).
///
/// Candidates come from `idx_orders_kpi_date` in chunks, each read after the (KPI day, id)
/// where the last one ended (keyset: never past the rows already deleted, which stay
/// delete-marked in the index until purge removes them); each chunk is moved in id order,
/// `batch_size` orders per batch. An order that ends while the walk is past its day is
/// found by the next pass: the walk starts over from the first day whenever a pass moved
/// anything, and the run ends after a pass that moved nothing.
pub struct ArchiveScan {
    before: NaiveDate,
    batch_size: usize,
    /// The current chunk's ids, ascending; `next` is the first not yet taken.
    pending: Vec<u64>,
    next: usize,
    /// The last (KPI day, id) read in this pass; `None` at its start.
    cursor: Option<(NaiveDate, u64)>,
    moved_in_pass: bool,
}

impl ArchiveScan {
    /// A walk through the terminal orders before `before`, `batch_size` orders a batch
    /// (clamped to 1..=[`MAX_BATCH`]).
    pub fn new(before: NaiveDate, batch_size: usize) -> Self {
        ArchiveScan {
            before,
            batch_size: batch_size.clamp(1, MAX_BATCH),
            pending: Vec::new(),
            next: 0,
            cursor: None,
            moved_in_pass: false,
        }
    }

    /// The next batch, moved inside an open transaction; `None` when a whole pass found
    /// nothing left to move. A batch may be empty when a concurrent run took its orders
    /// first: ask again.
    pub async fn next_batch(&mut self, pool: &MySqlPool) -> Result<Option<ArchiveBatch>> {
        while self.next == self.pending.len() {
            if !self.read_chunk(pool).await? {
                return Ok(None);
            }
        }
        let end = (self.next + self.batch_size).min(self.pending.len());
        let batch = take_batch(pool, self.before, &self.pending[self.next..end]).await?;
        self.next = end;
        self.moved_in_pass |= !batch.orders.is_empty();
        Ok(Some(batch))
    }

    /// Reads the next chunk of candidates into `pending`; at the end of a pass, starts the
    /// next one if this one moved anything. `false`: nothing is left.
    async fn read_chunk(&mut self, pool: &MySqlPool) -> Result<bool> {
        let chunk = candidates(pool, self.before, self.cursor, SCAN_CHUNK).await?;
        if let Some(&last) = chunk.last() {
            self.cursor = Some(last);
            self.pending = chunk.into_iter().map(|(_, id)| id).collect();
            self.pending.sort_unstable();
            self.next = 0;
            return Ok(true);
        }
        let again = self.moved_in_pass;
        self.cursor = None;
        self.moved_in_pass = false;
        Ok(again)
    }
}

/// Up to `limit` (KPI day, id) of orders with a KPI day before `before`, after `after`, in
/// index order. Only `idx_orders_kpi_date` is read (no status: an order gets its KPI day
/// when it ends, and [`take_batch`] re-checks it under lock).
async fn candidates(
    pool: &MySqlPool,
    before: NaiveDate,
    after: Option<(NaiveDate, u64)>,
    limit: usize,
) -> Result<Vec<(NaiveDate, u64)>> {
    const SELECT: &str = "SELECT kpi_date, id FROM orders FORCE INDEX (idx_orders_kpi_date) \
                          WHERE kpi_date < ?";
    const ORDER: &str = "ORDER BY kpi_date, id LIMIT ?";
    let rows = match after {
        None => {
            sqlx::query_as(&format!("{SELECT} {ORDER}"))
                .bind(before)
                .bind(limit as u64)
                .fetch_all(pool)
                .await?
        }
        Some((day, id)) => {
            let sql = format!("{SELECT} AND (kpi_date > ? OR (kpi_date = ? AND id > ?)) {ORDER}");
            sqlx::query_as(&sql)
                .bind(before)
                .bind(day)
                .bind(day)
                .bind(id)
                .bind(limit as u64)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows)
}

/// Moves the orders of `ids` (ascending) that are still terminal and before the cutoff,
/// inside an open transaction.
async fn take_batch(pool: &MySqlPool, before: NaiveDate, ids: &[u64]) -> Result<ArchiveBatch> {
    let mut tx = pool.begin().await?;
    let mut orders = lock_orders(&mut tx, ids, before).await?;
    if !orders.is_empty() {
        add_customers(&mut tx, &mut orders).await?;
        add_items(&mut tx, &mut orders).await?;
        insert_archived(&mut tx, &orders).await?;
        add_product_sales(&mut tx, &orders).await?;
        delete_orders(&mut tx, &orders).await?;
    }
    Ok(ArchiveBatch { tx, orders })
}

type LockedRow = (
    u64,
    String,
    Option<u64>,
    Option<u64>,
    u64,
    String,
    Option<String>,
    i64,
    Option<NaiveDateTime>,
    NaiveDate,
    NaiveDateTime,
    NaiveDateTime,
);

/// Locks the orders of `ids` (ascending) that are still terminal and before the cutoff.
async fn lock_orders(
    tx: &mut Transaction<'static, MySql>,
    ids: &[u64],
    before: NaiveDate,
) -> Result<Vec<ArchivedOrder>> {
    let mut orders = Vec::with_capacity(ids.len());
    // One placeholder more than the ids (the cutoff): far below the limit.
    for part in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(identity AS CHAR), import_id, line, customer_id, CAST(status AS CHAR), \
             failure_reason, CAST(total * 100 AS SIGNED), order_date, kpi_date, created_at, updated_at \
             FROM orders WHERE id IN ({}) AND status IN ('completed','failed') AND kpi_date < ? \
             ORDER BY id FOR UPDATE",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, LockedRow>(&sql);
        for id in part {
            query = query.bind(*id);
        }
        for r in query.bind(before).fetch_all(&mut **tx).await? {
            orders.push(ArchivedOrder {
                id: r.0,
                identity: r.1,
                import_id: r.2,
                line: r.3,
                customer_id: r.4,
                customer_email: String::new(),
                customer_name: String::new(),
                status: r.5,
                failure_reason: r.6,
                total: Cents(r.7),
                order_date: r.8,
                kpi_date: r.9,
                created_at: r.10,
                updated_at: r.11,
                items: Vec::new(),
            });
        }
    }
    Ok(orders)
}

/// Fills in each order's customer email and name (a plain read: no customer row is locked).
async fn add_customers(
    tx: &mut Transaction<'static, MySql>,
    orders: &mut [ArchivedOrder],
) -> Result<()> {
    let mut ids: Vec<u64> = orders.iter().map(|o| o.customer_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut customers: HashMap<u64, (String, String)> = HashMap::with_capacity(ids.len());
    for part in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(email AS CHAR), name FROM customers WHERE id IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, String, String)>(&sql);
        for id in part {
            query = query.bind(*id);
        }
        for (id, email, name) in query.fetch_all(&mut **tx).await? {
            customers.insert(id, (email, name));
        }
    }
    for order in orders.iter_mut() {
        let Some((email, name)) = customers.get(&order.customer_id) else {
            return Err(OmsError::Inconsistent(format!(
                "order {} references customer {}, which does not exist",
                order.id, order.customer_id
            )));
        };
        order.customer_email.clone_from(email);
        order.customer_name.clone_from(name);
    }
    Ok(())
}

/// Fills in each order's items, in `order_items.id` order.
async fn add_items(
    tx: &mut Transaction<'static, MySql>,
    orders: &mut [ArchivedOrder],
) -> Result<()> {
    let index: HashMap<u64, usize> = orders.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
    let ids: Vec<u64> = orders.iter().map(|o| o.id).collect();
    for part in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT order_id, product_id, CAST(sku AS CHAR), quantity, CAST(unit_price * 100 AS SIGNED) \
             FROM order_items WHERE order_id IN ({}) ORDER BY order_id, id",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, Option<u64>, String, u32, Option<i64>)>(&sql);
        for id in part {
            query = query.bind(*id);
        }
        for (order_id, product_id, sku, quantity, unit_price) in query.fetch_all(&mut **tx).await? {
            orders[index[&order_id]].items.push(ArchivedItem {
                sku,
                product_id,
                quantity,
                unit_price: unit_price.map(Cents),
            });
        }
    }
    Ok(())
}

/// One `archived_orders` row per order: what recognises the identity and counts the
/// order once it has left `orders`.
async fn insert_archived(
    tx: &mut Transaction<'static, MySql>,
    orders: &[ArchivedOrder],
) -> Result<()> {
    const PARAMS: usize = 9;
    for part in orders.chunks(rows_per_statement(PARAMS)) {
        let sql = format!(
            "INSERT INTO archived_orders (id, identity, import_id, line, customer_id, status, \
             failure_reason, total, kpi_date) VALUES {}",
            value_tuples(part.len(), PARAMS)
        );
        let mut query = sqlx::query(&sql);
        for o in part {
            query = query
                .bind(o.id)
                .bind(o.identity.as_str())
                .bind(o.import_id)
                .bind(o.line)
                .bind(o.customer_id)
                .bind(o.status.as_str())
                .bind(o.failure_reason.as_deref())
                .bind(o.total.to_string())
                .bind(o.kpi_date);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Units and revenue of the completed orders' items per (KPI day, product).
pub(crate) fn product_sales(orders: &[ArchivedOrder]) -> BTreeMap<(NaiveDate, u64), (i64, Cents)> {
    let mut sales: BTreeMap<(NaiveDate, u64), (i64, Cents)> = BTreeMap::new();
    for order in orders.iter().filter(|o| o.status == "completed") {
        for item in &order.items {
            let (Some(product_id), Some(price)) = (item.product_id, item.unit_price) else {
                continue;
            };
            let e = sales.entry((order.kpi_date, product_id)).or_default();
            e.0 += i64::from(item.quantity);
            e.1 += Cents(price.0 * i64::from(item.quantity));
        }
    }
    sales
}

/// Adds the batch's completed sales to `archived_product_sales`, rows in key order (two
/// runs at once lock them in the same order).
async fn add_product_sales(
    tx: &mut Transaction<'static, MySql>,
    orders: &[ArchivedOrder],
) -> Result<()> {
    let rows: Vec<((NaiveDate, u64), (i64, Cents))> = product_sales(orders).into_iter().collect();
    for part in rows.chunks(rows_per_statement(4)) {
        let sql = format!(
            "INSERT INTO archived_product_sales (kpi_date, product_id, units, revenue_cents) VALUES {} \
             ON DUPLICATE KEY UPDATE units = units + VALUES(units), \
             revenue_cents = revenue_cents + VALUES(revenue_cents)",
            value_tuples(part.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for ((day, product_id), (units, revenue)) in part {
            query = query
                .bind(*day)
                .bind(*product_id)
                .bind(*units)
                .bind(revenue.0);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes the items, then the orders (the items reference them).
async fn delete_orders(
    tx: &mut Transaction<'static, MySql>,
    orders: &[ArchivedOrder],
) -> Result<()> {
    let ids: Vec<u64> = orders.iter().map(|o| o.id).collect();
    for table in ["order_items WHERE order_id", "orders WHERE id"] {
        let mut deleted = 0;
        for part in ids.chunks(rows_per_statement(1)) {
            let sql = format!("DELETE FROM {table} IN ({})", placeholders(part.len()));
            let mut query = sqlx::query(&sql);
            for id in part {
                query = query.bind(*id);
            }
            deleted += query.execute(&mut **tx).await?.rows_affected();
        }
        let expected = if table.starts_with("orders") {
            ids.len()
        } else {
            orders.iter().map(|o| o.items.len()).sum()
        };
        if deleted != expected as u64 {
            return Err(OmsError::Inconsistent(format!(
                "archiving deleted {deleted} rows of {table}, expected {expected}"
            )));
        }
    }
    Ok(())
}

type ArchivedTuple = (
    u64,
    Option<u64>,
    Option<u64>,
    String,
    Option<String>,
    i64,
    String,
    String,
);

/// The archived order with this identity: (id, import id, line, status, failure reason,
/// total, KPI day, archived at), for the API's order lookup.
pub async fn archived_order_by_identity(
    pool: &MySqlPool,
    identity: &str,
) -> Result<Option<ArchivedOrderRecord>> {
    let row: Option<ArchivedTuple> = sqlx::query_as(
        "SELECT id, import_id, line, status, failure_reason, CAST(total * 100 AS SIGNED), \
             DATE_FORMAT(kpi_date, '%Y-%m-%d'), DATE_FORMAT(archived_at, '%Y-%m-%dT%H:%i:%s.%fZ') \
             FROM archived_orders WHERE identity = ?",
    )
    .bind(identity)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| ArchivedOrderRecord {
        id: r.0,
        import_id: r.1,
        line: r.2,
        status: r.3,
        failure_reason: r.4,
        total: Cents(r.5).to_string(),
        total_cents: r.5,
        kpi_date: r.6,
        archived_at: r.7,
    }))
}

/// What `archived_orders` keeps of an order (the rest is in the archive file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArchivedOrderRecord {
    /// The order's id in `orders` (and the archive file's `order_id`).
    pub id: u64,
    pub import_id: Option<u64>,
    pub line: Option<u64>,
    /// `completed` or `failed`.
    pub status: String,
    pub failure_reason: Option<String>,
    pub total: String,
    pub total_cents: i64,
    pub kpi_date: String,
    pub archived_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: &str, day: u32, items: Vec<ArchivedItem>) -> ArchivedOrder {
        let at = NaiveDate::from_ymd_opt(2026, 1, day)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        ArchivedOrder {
            id: 1,
            identity: "x".into(),
            import_id: None,
            line: None,
            customer_id: 1,
            customer_email: "a@b.c".into(),
            customer_name: "A".into(),
            status: status.into(),
            failure_reason: None,
            total: Cents(0),
            order_date: None,
            kpi_date: at.date(),
            created_at: at,
            updated_at: at,
            items,
        }
    }

    fn item(product_id: Option<u64>, quantity: u32, cents: Option<i64>) -> ArchivedItem {
        ArchivedItem {
            sku: "S".into(),
            product_id,
            quantity,
            unit_price: cents.map(Cents),
        }
    }

    #[test]
    fn product_sales_count_completed_orders_of_known_products_per_day() {
        let orders = vec![
            order(
                "completed",
                1,
                vec![item(Some(7), 2, Some(150)), item(None, 1, None)],
            ),
            order("completed", 1, vec![item(Some(7), 1, Some(150))]),
            order("completed", 2, vec![item(Some(7), 1, Some(200))]),
            order("failed", 1, vec![item(Some(7), 5, Some(150))]),
        ];
        let sales = product_sales(&orders);
        let day = |d| NaiveDate::from_ymd_opt(2026, 1, d).unwrap();
        assert_eq!(sales.len(), 2);
        assert_eq!(sales[&(day(1), 7)], (3, Cents(450)));
        assert_eq!(sales[&(day(2), 7)], (1, Cents(200)));
    }
}
