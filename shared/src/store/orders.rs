//! The order workflow's SQL: two committed phases per batch of orders.
//!
//! **Reserve** ([`reserve_stock`]): for each row whose identity is new, find or create the
//! customer (autocommit statements before the transaction: a customer row is harmless on
//! its own), read the prices, then in one transaction write the orders (`reserved`, or
//! `failed` with `unknown_sku`) and their items with the unit-price snapshot, and last lock
//! the batch's products, decide in memory which orders get their stock (all items or
//! none, in batch order), write the stock decrements and fail the others
//! (`insufficient_stock`).
//!
//! **Settle** ([`settle_payments`]): for the orders still `reserved`, ask the payment
//! simulator; approved orders become `completed` and grow their customer's totals,
//! declined ones become `failed` and give their stock back; the completed orders are
//! written to `read_model_outbox` in the same transaction. One transaction.
//!
//! A crash between the phases leaves orders `reserved`; the redelivered message finds them
//! and settles them (the payment decision is deterministic per identity). Lock order is
//! fixed everywhere: orders (by id), then customers (by email), then products (by sku),
//! so concurrent consumers never deadlock on each other's batches; the hot rows (products)
//! are locked last in each transaction, so they are held for the shortest time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike, Utc};
use sqlx::{MySql, MySqlPool, Transaction};

use crate::error::{OmsError, Result};
use crate::kpi::CompletedOrder;
use crate::money::Cents;
use crate::order::OrderRow;
use crate::order_rules::{add_line, MAX_ORDER_TOTAL};
use crate::payment::PaymentSimulator;
use crate::store::{placeholders, rows_per_statement, value_tuples};

/// Why an order failed (SPEC reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureReason {
    UnknownSku,
    InsufficientStock,
    PaymentDeclined,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::UnknownSku => "unknown_sku",
            FailureReason::InsufficientStock => "insufficient_stock",
            FailureReason::PaymentDeclined => "payment_declined",
        }
    }
}

/// What happened to one row of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    /// Stock reserved; the settle phase decides the rest.
    Reserved,
    Completed,
    Failed(FailureReason),
    /// The identity was already processed for another row (another import or line).
    Duplicate,
    /// This very row was already processed (a redelivery): nothing to do.
    AlreadyProcessed,
}

/// A row to process with the import it came from.
#[derive(Debug, Clone, Copy)]
pub struct BatchRow<'a> {
    pub import_id: u64,
    pub row: &'a OrderRow,
}

/// An order in state `reserved`, waiting for its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedOrder {
    pub order_id: u64,
    /// Index of the row in the batch given to [`reserve_stock`].
    pub batch_index: usize,
    pub identity: String,
    pub customer_id: u64,
    pub email: String,
    pub total: Cents,
    pub order_date: Option<NaiveDateTime>,
}

/// Result of the reserve phase: one outcome per row, and the orders to settle.
#[derive(Debug, Default)]
pub struct ReservePhase {
    pub outcomes: Vec<RowOutcome>,
    pub reserved: Vec<ReservedOrder>,
}

/// Result of the settle phase.
#[derive(Debug, Default)]
pub struct SettlePhase {
    /// (batch index, outcome) of every order settled now.
    pub outcomes: Vec<(usize, RowOutcome)>,
    pub completed: Vec<CompletedOrder>,
    /// The outbox row holding `completed`, to apply to Redis.
    pub outbox_id: Option<u64>,
}

struct ExistingOrder {
    order_id: u64,
    customer_id: u64,
    email: String,
    status: String,
    import_id: Option<u64>,
    line: Option<u64>,
    total: Cents,
    order_date: Option<NaiveDateTime>,
}

/// A product as the reserve phase sees it: its id and price (read without a lock).
#[derive(Debug, Clone, Copy)]
struct CatalogEntry {
    id: u64,
    price: Cents,
}

/// Phase 1. See the module documentation. `today` is the KPI day of orders failing now
/// without an `order_date`.
pub async fn reserve_stock(
    pool: &MySqlPool,
    rows: &[BatchRow<'_>],
    today: NaiveDate,
) -> Result<ReservePhase> {
    let identities: BTreeSet<&str> = rows.iter().map(|r| r.row.identity.as_str()).collect();
    let existing = existing_orders(pool, &identities).await?;

    let mut phase = ReservePhase {
        outcomes: vec![RowOutcome::AlreadyProcessed; rows.len()],
        reserved: Vec::new(),
    };
    let mut first_in_batch: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut new_rows: Vec<usize> = Vec::new();
    let mut duplicates: Vec<usize> = Vec::new();
    for (index, r) in rows.iter().enumerate() {
        let here = (r.import_id, r.row.line);
        let identity = r.row.identity.as_str();
        if let Some(first) = first_in_batch.get(identity) {
            phase.outcomes[index] = if *first == here {
                RowOutcome::AlreadyProcessed
            } else {
                duplicates.push(index);
                RowOutcome::Duplicate
            };
            continue;
        }
        first_in_batch.insert(identity, here);
        match existing.get(identity) {
            None => new_rows.push(index),
            Some(e) if (e.import_id, e.line) != (Some(here.0), Some(here.1)) => {
                duplicates.push(index);
                phase.outcomes[index] = RowOutcome::Duplicate;
            }
            Some(e) if e.status == "reserved" => {
                phase.outcomes[index] = RowOutcome::Reserved;
                phase.reserved.push(ReservedOrder {
                    order_id: e.order_id,
                    batch_index: index,
                    identity: identity.to_string(),
                    customer_id: e.customer_id,
                    email: e.email.clone(),
                    total: e.total,
                    order_date: e.order_date,
                });
            }
            Some(_) => phase.outcomes[index] = RowOutcome::AlreadyProcessed,
        }
    }

    // Customers and prices are settled before the transaction, without holding locks:
    // a customer row is harmless if the orders' transaction then rolls back.
    let (customers, catalog) = if new_rows.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        let skus: BTreeSet<&str> = new_rows
            .iter()
            .flat_map(|&i| rows[i].row.items.iter().map(|it| it.sku.as_str()))
            .collect();
        (
            ensure_customers(pool, rows, &new_rows).await?,
            product_catalog(pool, &skus).await?,
        )
    };

    let mut tx = pool.begin().await?;
    record_duplicates(&mut tx, rows, &duplicates).await?;
    if !new_rows.is_empty() {
        insert_new_orders(
            &mut tx, rows, &new_rows, &customers, &catalog, today, &mut phase,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(phase)
}

async fn existing_orders(
    pool: &MySqlPool,
    identities: &BTreeSet<&str>,
) -> Result<HashMap<String, ExistingOrder>> {
    let mut found = HashMap::new();
    let identities: Vec<&str> = identities.iter().copied().collect();
    for part in identities.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT o.id, CAST(o.identity AS CHAR), o.customer_id, CAST(c.email AS CHAR), CAST(o.status AS CHAR), o.import_id, o.line, \
             CAST(o.total * 100 AS SIGNED), o.order_date \
             FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.identity IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<
            _,
            (
                u64,
                String,
                u64,
                String,
                String,
                Option<u64>,
                Option<u64>,
                i64,
                Option<NaiveDateTime>,
            ),
        >(&sql);
        for identity in part {
            query = query.bind(*identity);
        }
        for (order_id, identity, customer_id, email, status, import_id, line, total, order_date) in
            query.fetch_all(pool).await?
        {
            found.insert(
                identity,
                ExistingOrder {
                    order_id,
                    customer_id,
                    email,
                    status,
                    import_id,
                    line,
                    total: Cents(total),
                    order_date,
                },
            );
        }
    }
    Ok(found)
}

async fn record_duplicates(
    tx: &mut Transaction<'_, MySql>,
    rows: &[BatchRow<'_>],
    duplicates: &[usize],
) -> Result<()> {
    for part in duplicates.chunks(rows_per_statement(3)) {
        let sql = format!(
            "INSERT INTO import_duplicates (import_id, line, identity) VALUES {} \
             ON DUPLICATE KEY UPDATE identity = identity",
            value_tuples(part.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for &i in part {
            query = query
                .bind(rows[i].import_id)
                .bind(rows[i].row.line)
                .bind(rows[i].row.identity.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Finds or creates every customer of the rows (autocommit statements, in email order);
/// returns email → id. Customers are never deleted, so the ids stay valid.
async fn ensure_customers(
    pool: &MySqlPool,
    rows: &[BatchRow<'_>],
    indexes: &[usize],
) -> Result<HashMap<String, u64>> {
    let mut by_email: BTreeMap<&str, &str> = BTreeMap::new();
    for &i in indexes {
        let row = rows[i].row;
        by_email
            .entry(row.customer_email.as_str())
            .or_insert(row.customer_name.as_str());
    }
    let mut missing: Vec<(&str, &str)> = by_email.into_iter().collect();
    let mut ids = HashMap::with_capacity(missing.len());
    customer_ids(pool, &missing, &mut ids).await?;
    missing.retain(|(email, _)| !ids.contains_key(*email));
    // A concurrent insert of the same new customer may be rolled back (deadlock victim)
    // while ours waits on its row: InnoDB then reports a duplicate and inserts nothing.
    // Whatever is still missing after the insert is inserted again.
    for _round in 0..3 {
        if missing.is_empty() {
            return Ok(ids);
        }
        insert_customers(pool, &missing).await?;
        customer_ids(pool, &missing, &mut ids).await?;
        missing.retain(|(email, _)| !ids.contains_key(*email));
    }
    match missing.first() {
        None => Ok(ids),
        Some((email, _)) => Err(OmsError::Contention(format!(
            "customer {email} vanished after insert (concurrent rollback); retrying"
        ))),
    }
}

/// Adds the ids of the given customers (email, name) that exist to `ids`.
async fn customer_ids(
    pool: &MySqlPool,
    customers: &[(&str, &str)],
    ids: &mut HashMap<String, u64>,
) -> Result<()> {
    for part in customers.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(email AS CHAR) FROM customers WHERE email IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, String)>(&sql);
        for (email, _) in part {
            query = query.bind(*email);
        }
        // `customers.email` is utf8mb4_bin: the email comes back as the very bytes sent.
        for (id, email) in query.fetch_all(pool).await? {
            ids.insert(email, id);
        }
    }
    Ok(())
}

/// `INSERT … ON DUPLICATE KEY UPDATE id = id` of (email, name), in email order.
async fn insert_customers(pool: &MySqlPool, customers: &[(&str, &str)]) -> Result<()> {
    for part in customers.chunks(rows_per_statement(2)) {
        let sql = format!(
            "INSERT INTO customers (email, name) VALUES {} ON DUPLICATE KEY UPDATE id = id",
            value_tuples(part.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (email, name) in part {
            query = query.bind(*email).bind(*name);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// Id and price of the given skus (a plain read: prices are snapshotted into the items).
async fn product_catalog(
    pool: &MySqlPool,
    skus: &BTreeSet<&str>,
) -> Result<HashMap<String, CatalogEntry>> {
    let skus: Vec<&str> = skus.iter().copied().collect();
    let mut catalog = HashMap::with_capacity(skus.len());
    for part in skus.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(sku AS CHAR), CAST(price * 100 AS SIGNED) FROM products WHERE sku IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, String, i64)>(&sql);
        for sku in part {
            query = query.bind(*sku);
        }
        for (id, sku, price) in query.fetch_all(pool).await? {
            catalog.insert(
                sku,
                CatalogEntry {
                    id,
                    price: Cents(price),
                },
            );
        }
    }
    Ok(catalog)
}

/// Locks the given products (in sku order, the global lock order) and returns id → stock.
async fn lock_products(
    tx: &mut Transaction<'_, MySql>,
    skus: &BTreeSet<&str>,
) -> Result<HashMap<u64, i64>> {
    let skus: Vec<&str> = skus.iter().copied().collect();
    let mut stock = HashMap::with_capacity(skus.len());
    for part in skus.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(stock_quantity AS SIGNED) FROM products \
             WHERE sku IN ({}) ORDER BY sku FOR UPDATE",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, i64)>(&sql);
        for sku in part {
            query = query.bind(*sku);
        }
        for (id, quantity) in query.fetch_all(&mut **tx).await? {
            stock.insert(id, quantity);
        }
    }
    Ok(stock)
}

/// `UPDATE products SET stock_quantity = stock_quantity + delta` for each (id, delta).
async fn adjust_stock(tx: &mut Transaction<'_, MySql>, deltas: &BTreeMap<u64, i64>) -> Result<()> {
    let deltas: Vec<(u64, i64)> = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(k, v)| (*k, *v))
        .collect();
    for part in deltas.chunks(rows_per_statement(3)) {
        let sql = format!(
            "UPDATE products SET stock_quantity = stock_quantity + CASE id {} END WHERE id IN ({})",
            "WHEN ? THEN ? ".repeat(part.len()),
            placeholders(part.len())
        );
        let mut query = sqlx::query(&sql);
        for (id, delta) in part {
            query = query.bind(*id).bind(*delta);
        }
        for (id, _) in part {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// An order priced from the catalog snapshot, before its stock is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PricedOrder {
    total: Cents,
    /// (product id, quantity) of every item; empty when a sku is unknown.
    lines: Vec<(u64, i64)>,
    unknown_sku: bool,
}

/// Pure rule: the order's total, and whether a sku is unknown (which fails the order
/// before its stock is looked at). A total that overflows or does not fit `orders.total`
/// is an [`OmsError::InvalidOrder`]: the row can never be processed.
fn price_order(row: &OrderRow, catalog: &HashMap<String, CatalogEntry>) -> Result<PricedOrder> {
    let mut total = Cents::ZERO;
    let mut lines = Vec::with_capacity(row.items.len());
    let mut unknown_sku = false;
    for item in &row.items {
        match catalog.get(&item.sku) {
            Some(p) => {
                total = add_line(total, p.price, item.quantity).ok_or_else(|| {
                    OmsError::InvalidOrder {
                        identity: row.identity.to_string(),
                        reason: format!(
                            "total_overflow: the total passes {MAX_ORDER_TOTAL} at sku {} ({} × {})",
                            item.sku, p.price, item.quantity
                        ),
                    }
                })?;
                lines.push((p.id, i64::from(item.quantity)));
            }
            None => unknown_sku = true,
        }
    }
    if unknown_sku {
        lines.clear();
    }
    Ok(PricedOrder {
        total,
        lines,
        unknown_sku,
    })
}

/// Pure rule: takes every product's quantity from `stock`, or nothing when one lacks it.
/// Lines of the same product are summed first (a forged row may repeat a sku).
fn take_stock(lines: &[(u64, i64)], stock: &mut HashMap<u64, i64>) -> bool {
    let mut wanted: BTreeMap<u64, i64> = BTreeMap::new();
    for (id, quantity) in lines {
        *wanted.entry(*id).or_default() += quantity;
    }
    let enough = wanted
        .iter()
        .all(|(id, quantity)| stock.get(id).copied().unwrap_or(0) >= *quantity);
    if enough {
        for (id, quantity) in wanted {
            *stock.entry(id).or_insert(0) -= quantity;
        }
    }
    enough
}

/// Writes the new orders and their items, then reserves their stock. The hot product
/// rows are locked last, so they are held only for the stock decision and the commit.
#[allow(clippy::too_many_arguments)]
async fn insert_new_orders(
    tx: &mut Transaction<'_, MySql>,
    rows: &[BatchRow<'_>],
    new_rows: &[usize],
    customers: &HashMap<String, u64>,
    catalog: &HashMap<String, CatalogEntry>,
    today: NaiveDate,
    phase: &mut ReservePhase,
) -> Result<()> {
    if let Some(&i) = new_rows
        .iter()
        .find(|&&i| !customers.contains_key(&rows[i].row.customer_email))
    {
        return Err(OmsError::Contention(format!(
            "customer {} not found after upsert",
            rows[i].row.customer_email
        )));
    }
    let priced: Vec<PricedOrder> = new_rows
        .iter()
        .map(|&i| price_order(rows[i].row, catalog))
        .collect::<Result<_>>()?;

    // Orders: `reserved`, or `failed` at once for an unknown sku (no RETURNING on MySQL:
    // ids are read back by identity).
    let order_params = 9;
    // In customer email order: the foreign key check takes a shared lock on each customer
    // row, and the settle phase locks customers in email order.
    let mut pairs: Vec<(usize, &PricedOrder)> =
        new_rows.iter().copied().zip(priced.iter()).collect();
    pairs.sort_by(|a, b| {
        rows[a.0]
            .row
            .customer_email
            .cmp(&rows[b.0].row.customer_email)
    });
    for part in pairs.chunks(rows_per_statement(order_params)) {
        let sql = format!(
            "INSERT INTO orders (identity, import_id, line, customer_id, status, failure_reason, total, order_date, kpi_date) VALUES {}",
            value_tuples(part.len(), order_params)
        );
        let mut query = sqlx::query(&sql);
        for (i, p) in part {
            let row = rows[*i].row;
            let order_date = row.order_date.map(stored_order_date);
            let (status, reason, kpi_date) = if p.unknown_sku {
                (
                    "failed",
                    Some(FailureReason::UnknownSku.as_str()),
                    Some(order_date.map(|d| d.date()).unwrap_or(today)),
                )
            } else {
                ("reserved", None, None)
            };
            query = query
                .bind(row.identity.as_str())
                .bind(rows[*i].import_id)
                .bind(row.line)
                .bind(customers[&row.customer_email])
                .bind(status)
                .bind(reason)
                .bind(p.total.to_string())
                .bind(order_date)
                .bind(kpi_date);
        }
        query.execute(&mut **tx).await?;
    }
    let identities: Vec<&str> = new_rows
        .iter()
        .map(|&i| rows[i].row.identity.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut order_ids: HashMap<String, u64> = HashMap::with_capacity(identities.len());
    for part in identities.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(identity AS CHAR) FROM orders WHERE identity IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, String)>(&sql);
        for identity in part {
            query = query.bind(*identity);
        }
        for (id, identity) in query.fetch_all(&mut **tx).await? {
            order_ids.insert(identity, id);
        }
    }
    if let Some(&i) = new_rows
        .iter()
        .find(|&&i| !order_ids.contains_key(rows[i].row.identity.as_str()))
    {
        return Err(OmsError::Inconsistent(format!(
            "order {} not found after insert",
            rows[i].row.identity
        )));
    }

    // Stock: lock (products last: the hot rows), decide in batch order, all items or none.
    // Every known sku of the batch is locked, those of unknown-sku orders too (their items
    // reference them).
    let skus: BTreeSet<&str> = new_rows
        .iter()
        .flat_map(|&i| rows[i].row.items.iter().map(|it| it.sku.as_str()))
        .filter(|sku| catalog.contains_key(*sku))
        .collect();
    let before = lock_products(tx, &skus).await?;
    let mut stock = before.clone();
    let mut short: Vec<u64> = Vec::new();
    for (&i, p) in new_rows.iter().zip(&priced) {
        let row = rows[i].row;
        let order_id = order_ids[row.identity.as_str()];
        if p.unknown_sku {
            phase.outcomes[i] = RowOutcome::Failed(FailureReason::UnknownSku);
        } else if take_stock(&p.lines, &mut stock) {
            phase.outcomes[i] = RowOutcome::Reserved;
            phase.reserved.push(ReservedOrder {
                order_id,
                batch_index: i,
                identity: row.identity.as_str().to_string(),
                customer_id: customers[&row.customer_email],
                email: row.customer_email.clone(),
                total: p.total,
                order_date: row.order_date.map(stored_order_date),
            });
        } else {
            phase.outcomes[i] = RowOutcome::Failed(FailureReason::InsufficientStock);
            short.push(order_id);
        }
    }
    let deltas: BTreeMap<u64, i64> = stock
        .iter()
        .map(|(id, after)| (*id, after - before[id]))
        .collect();
    adjust_stock(tx, &deltas).await?;
    set_status_by_id(
        tx,
        &short,
        "failed",
        Some(FailureReason::InsufficientStock),
        today,
    )
    .await?;

    // Items with their unit-price snapshot (NULL for an unknown sku), after the products are
    // locked: the foreign key check takes a shared lock on each product row, and taking it
    // before the exclusive one would let two batches deadlock upgrading it.
    let items: Vec<(u64, Option<&CatalogEntry>, &str, u32)> = new_rows
        .iter()
        .flat_map(|&i| {
            let order_id = order_ids[rows[i].row.identity.as_str()];
            rows[i]
                .row
                .items
                .iter()
                .map(move |it| (order_id, catalog.get(&it.sku), it.sku.as_str(), it.quantity))
        })
        .collect();
    for part in items.chunks(rows_per_statement(5)) {
        let sql = format!(
            "INSERT INTO order_items (order_id, product_id, sku, quantity, unit_price) VALUES {}",
            value_tuples(part.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for (order_id, product, sku, quantity) in part {
            query = query
                .bind(*order_id)
                .bind(product.map(|p| p.id))
                .bind(*sku)
                .bind(*quantity)
                .bind(product.map(|p| p.price.to_string()));
        }
        query.execute(&mut **tx).await?;
    }

    Ok(())
}

/// Phase 2. See the module documentation. `today` is the UTC day, the KPI day of orders
/// without an `order_date`.
pub async fn settle_payments(
    pool: &MySqlPool,
    reserved: &[ReservedOrder],
    payment: &PaymentSimulator,
    today: NaiveDate,
) -> Result<SettlePhase> {
    let mut phase = SettlePhase::default();
    if reserved.is_empty() {
        return Ok(phase);
    }
    let mut tx = pool.begin().await?;

    // Lock the orders and keep those still reserved (another consumer may have settled some).
    let ids: BTreeSet<u64> = reserved.iter().map(|r| r.order_id).collect();
    let mut still_reserved: BTreeSet<u64> = BTreeSet::new();
    let ids: Vec<u64> = ids.into_iter().collect();
    for part in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(status AS CHAR) FROM orders WHERE id IN ({}) ORDER BY id FOR UPDATE",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, String)>(&sql);
        for id in part {
            query = query.bind(*id);
        }
        for (id, status) in query.fetch_all(&mut *tx).await? {
            if status == "reserved" {
                still_reserved.insert(id);
            }
        }
    }

    let mut approved: Vec<&ReservedOrder> = Vec::new();
    let mut declined: Vec<&ReservedOrder> = Vec::new();
    for order in reserved
        .iter()
        .filter(|r| still_reserved.remove(&r.order_id))
    {
        if payment.approves(&crate::order::OrderIdentity(order.identity.clone())) {
            approved.push(order);
        } else {
            declined.push(order);
        }
    }

    let ids = |orders: &[&ReservedOrder]| orders.iter().map(|o| o.order_id).collect::<Vec<u64>>();
    set_status_by_id(&mut tx, &ids(&approved), "completed", None, today).await?;
    set_status_by_id(
        &mut tx,
        &ids(&declined),
        "failed",
        Some(FailureReason::PaymentDeclined),
        today,
    )
    .await?;
    grow_customer_totals(&mut tx, &approved).await?;

    phase.completed = approved
        .iter()
        .map(|o| CompletedOrder {
            kpi_day: o.order_date.map(|d| d.date()).unwrap_or(today),
            email: o.email.clone(),
            total: o.total,
        })
        .collect();
    // Hot rows last: the products, held only for the release and the commit; then the
    // outbox sequence (see `store::outbox`), held only for the commit.
    release_stock(&mut tx, &declined).await?;
    if !phase.completed.is_empty() {
        let payload = serde_json::to_string(&phase.completed).expect("completed orders serialize");
        phase.outbox_id = Some(super::outbox::insert_row(&mut tx, &payload).await?);
    }
    tx.commit().await?;

    phase.outcomes = approved
        .iter()
        .map(|o| (o.batch_index, RowOutcome::Completed))
        .chain(declined.iter().map(|o| {
            (
                o.batch_index,
                RowOutcome::Failed(FailureReason::PaymentDeclined),
            )
        }))
        .collect();
    Ok(phase)
}

async fn grow_customer_totals(
    tx: &mut Transaction<'_, MySql>,
    approved: &[&ReservedOrder],
) -> Result<()> {
    let mut per_customer: BTreeMap<&str, (u64, Cents, i64)> = BTreeMap::new();
    for o in approved {
        let entry = per_customer
            .entry(o.email.as_str())
            .or_insert((o.customer_id, Cents::ZERO, 0));
        entry.1 += o.total;
        entry.2 += 1;
    }
    let rows: Vec<(&str, (u64, Cents, i64))> = per_customer.into_iter().collect();
    for part in rows.chunks(rows_per_statement(6)) {
        // Lock in email order first (the order phase 1 uses), then update by id.
        let lock = format!(
            "SELECT id FROM customers WHERE email IN ({}) FOR UPDATE",
            placeholders(part.len())
        );
        let mut query = sqlx::query(&lock);
        for (email, _) in part {
            query = query.bind(*email);
        }
        query.fetch_all(&mut **tx).await?;

        let sql = format!(
            "UPDATE customers SET total_spent = total_spent + CASE id {} END, \
             orders_count = orders_count + CASE id {} END WHERE id IN ({})",
            "WHEN ? THEN CAST(? AS DECIMAL(14,2)) ".repeat(part.len()),
            "WHEN ? THEN ? ".repeat(part.len()),
            placeholders(part.len())
        );
        let mut query = sqlx::query(&sql);
        for (_, (id, spent, _)) in part {
            query = query.bind(*id).bind(spent.to_string());
        }
        for (_, (id, _, count)) in part {
            query = query.bind(*id).bind(*count);
        }
        for (_, (id, _, _)) in part {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn release_stock(tx: &mut Transaction<'_, MySql>, declined: &[&ReservedOrder]) -> Result<()> {
    if declined.is_empty() {
        return Ok(());
    }
    let mut per_product: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let ids: Vec<u64> = declined.iter().map(|o| o.order_id).collect();
    for part in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT i.product_id, CAST(p.sku AS CHAR), CAST(i.quantity AS SIGNED) FROM order_items i \
             JOIN products p ON p.id = i.product_id WHERE i.order_id IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, String, i64)>(&sql);
        for id in part {
            query = query.bind(*id);
        }
        for (product_id, sku, quantity) in query.fetch_all(&mut **tx).await? {
            per_product.entry(sku).or_insert((product_id, 0)).1 += quantity;
        }
    }
    let skus: BTreeSet<&str> = per_product.keys().map(String::as_str).collect();
    lock_products(tx, &skus).await?;
    let deltas: BTreeMap<u64, i64> = per_product.values().copied().collect();
    adjust_stock(tx, &deltas).await
}

/// Moves orders to their final `status` (and reason), setting their KPI day: the day of
/// `order_date`, else `today`.
async fn set_status_by_id(
    tx: &mut Transaction<'_, MySql>,
    ids: &[u64],
    status: &str,
    reason: Option<FailureReason>,
    today: NaiveDate,
) -> Result<()> {
    for part in ids.chunks(rows_per_statement(1) - 3) {
        let sql = format!(
            "UPDATE orders SET status = ?, failure_reason = ?, kpi_date = COALESCE(DATE(order_date), ?) \
             WHERE id IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query(&sql)
            .bind(status)
            .bind(reason.map(FailureReason::as_str))
            .bind(today);
        for id in part {
            query = query.bind(*id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `order_date` as the `DATETIME(0)` column stores it: whole seconds, truncated. MySQL 8
/// would round 23:59:59.6 up to the next day where MariaDB truncates; binding the
/// truncated value makes both store the same instant, and the KPI day is computed from it.
pub fn stored_order_date(date: DateTime<Utc>) -> NaiveDateTime {
    let naive = date.naive_utc();
    naive.with_nanosecond(0).unwrap_or(naive)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{OrderIdentity, OrderItem};

    fn row(items: &[(&str, u32)]) -> OrderRow {
        OrderRow {
            identity: OrderIdentity::from_order_id("x"),
            line: 2,
            customer_name: "n".into(),
            customer_email: "e@x".into(),
            items: items
                .iter()
                .map(|(s, q)| OrderItem {
                    sku: s.to_string(),
                    quantity: *q,
                })
                .collect(),
            order_date: None,
        }
    }

    fn catalog() -> HashMap<String, CatalogEntry> {
        HashMap::from([
            (
                "A".to_string(),
                CatalogEntry {
                    id: 1,
                    price: Cents(250),
                },
            ),
            (
                "B".to_string(),
                CatalogEntry {
                    id: 2,
                    price: Cents(1000),
                },
            ),
        ])
    }

    #[test]
    fn reserves_all_items_or_none() {
        let catalog = catalog();
        let mut stock = HashMap::from([(1, 5), (2, 1)]);
        let p = price_order(&row(&[("A", 2), ("B", 1)]), &catalog).unwrap();
        assert_eq!(p.total, Cents(1500));
        assert!(take_stock(&p.lines, &mut stock));
        assert_eq!(stock, HashMap::from([(1, 3), (2, 0)]));
        // B is now exhausted: the next order gets nothing, not even A.
        let p = price_order(&row(&[("A", 1), ("B", 1)]), &catalog).unwrap();
        assert!(!take_stock(&p.lines, &mut stock));
        assert_eq!(stock, HashMap::from([(1, 3), (2, 0)]));
    }

    #[test]
    fn order_date_is_truncated_to_the_second_like_mariadb_stores_it() {
        let d: DateTime<Utc> = "2026-03-07T23:59:59.6Z".parse().unwrap();
        let stored = stored_order_date(d);
        assert_eq!(stored.to_string(), "2026-03-07 23:59:59");
        assert_eq!(stored.date().to_string(), "2026-03-07");
    }

    #[test]
    fn unknown_sku_fails_before_stock_is_looked_at() {
        let p = price_order(&row(&[("A", 1), ("NOPE", 1)]), &catalog()).unwrap();
        assert!(p.unknown_sku);
        assert_eq!(p.total, Cents(250));
        assert!(p.lines.is_empty(), "nothing to reserve");
    }

    #[test]
    fn an_overflowing_total_is_an_invalid_order() {
        let mut catalog = catalog();
        catalog.insert(
            "BIG".into(),
            CatalogEntry {
                id: 3,
                price: Cents(17_179_869_184),
            },
        );
        let err = price_order(&row(&[("BIG", 1_073_741_824)]), &catalog).unwrap_err();
        assert!(err.never_succeeds(), "{err}");
        assert!(err.to_string().contains("total_overflow"), "{err}");
        let err = price_order(&row(&[("BIG", 10_000)]), &catalog).unwrap_err();
        assert!(err.never_succeeds(), "does not fit DECIMAL(14,2): {err}");
    }

    #[test]
    fn a_repeated_product_is_checked_against_its_summed_quantity() {
        let mut stock = HashMap::from([(1, 3)]);
        assert!(!take_stock(&[(1, 2), (1, 2)], &mut stock));
        assert_eq!(stock, HashMap::from([(1, 3)]));
        assert!(take_stock(&[(1, 2), (1, 1)], &mut stock));
        assert_eq!(stock, HashMap::from([(1, 0)]));
    }
}
