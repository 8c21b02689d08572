//! Phase 1, reserve: the batch's new orders written, their stock decided and taken, in one
//! transaction (see the parent module for the whole workflow).
//!
//! Statements per batch, whatever its size (each split only past 1,000 rows): one
//! identity lookup in `orders`, one in `archived_orders` for the identities not found
//! there (an archived order redelivered or imported again is not new), the customers'
//! lookup (and insert of the new ones), the price read and the rows' dead-letter records
//! before the transaction; then
//! one INSERT of the orders, one read of their ids, one `FOR UPDATE` of the products, one
//! stock UPDATE, one UPDATE failing the orders short of stock, one INSERT of the items,
//! the locked read of the rows' dead-letter records (`dead_letters::fence`: a row that a
//! later delivery dead-lettered meanwhile must not become an order), and the commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{NaiveDate, NaiveDateTime};
use sqlx::{MySql, MySqlPool, Transaction};

use super::customers::ensure_customers;
use super::stock::{
    adjust_stock, lock_products, price_order, product_catalog, take_stock, CatalogEntry,
    PricedOrder,
};
use super::{
    kpi_day, stored_order_date, BatchRow, FailureReason, ReservePhase, ReservedOrder, RowOutcome,
};
use crate::error::{OmsError, Result};
use crate::money::Cents;
use crate::store::dead_letters;
use crate::store::import_progress::ProgressDeltas;
use crate::store::{placeholders, rows_per_statement, value_tuples};

/// An order already in the database for an identity of the batch.
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

/// What the reserve transaction needs to know of the world outside the batch.
struct Snapshot<'s> {
    /// email → customer id.
    customers: &'s HashMap<String, u64>,
    /// sku → id and price.
    catalog: &'s HashMap<String, CatalogEntry>,
    /// The KPI day of orders without an `order_date` that end now.
    today: NaiveDate,
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
    // After `orders`: an order archived between the two reads is seen by the first.
    let unknown: BTreeSet<&str> = identities
        .iter()
        .copied()
        .filter(|i| !existing.contains_key(*i))
        .collect();
    let archived = archived_placements(pool, &unknown).await?;
    let placements: Vec<(u64, u64)> = rows.iter().map(|r| (r.import_id, r.row.line)).collect();
    let dead = dead_letters::recorded(pool, &placements).await?;
    let mut phase = ReservePhase {
        outcomes: vec![RowOutcome::AlreadyProcessed; rows.len()],
        reserved: Vec::new(),
    };
    let known = Known {
        existing: &existing,
        archived: &archived,
        dead: &dead,
    };
    let (new_rows, duplicates) = classify_rows(rows, &known, &mut phase);

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
        let snapshot = Snapshot {
            customers: &customers,
            catalog: &catalog,
            today,
        };
        insert_new_orders(&mut tx, rows, &new_rows, &snapshot, &mut phase).await?;
    }
    // After the writes: a later delivery may have dead-lettered these rows meanwhile.
    let written: Vec<(u64, u64)> = duplicates
        .iter()
        .chain(&new_rows)
        .map(|&i| (rows[i].import_id, rows[i].row.line))
        .collect();
    let dead_meanwhile = dead_letters::fence(&mut tx, &written).await?;
    if !dead_meanwhile.is_empty() {
        return Err(OmsError::Contention(format!(
            "{} rows were dead-lettered by a later delivery meanwhile; classifying again",
            dead_meanwhile.len()
        )));
    }
    tx.commit().await?;
    Ok(phase)
}

/// Where an archived order came from: (import id, line).
type Placement = (Option<u64>, Option<u64>);

/// What the database holds of the batch's rows, read before the transaction.
struct Known<'k> {
    /// Orders by identity.
    existing: &'k HashMap<String, ExistingOrder>,
    /// Archived (terminal) orders by identity.
    archived: &'k HashMap<String, Placement>,
    /// Rows (import id, line) recorded as dead-lettered.
    dead: &'k HashSet<(u64, u64)>,
}

/// Sorts the batch's rows against what the database holds: returns the indexes of new
/// rows and of duplicates, and notes in `phase` the redeliveries (rows already done or
/// dead-lettered, or `reserved` orders to settle again).
fn classify_rows(
    rows: &[BatchRow<'_>],
    known: &Known<'_>,
    phase: &mut ReservePhase,
) -> (Vec<usize>, Vec<usize>) {
    let Known {
        existing,
        archived,
        dead,
    } = known;
    let mut first_in_batch: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut new_rows: Vec<usize> = Vec::new();
    let mut duplicates: Vec<usize> = Vec::new();
    for (index, r) in rows.iter().enumerate() {
        let here = (r.import_id, r.row.line);
        let identity = r.row.identity.as_str();
        if dead.contains(&here) {
            // Its last delivery dead-lettered it while this one was at work.
            phase.outcomes[index] = RowOutcome::AlreadyProcessed;
            continue;
        }
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
        let placement = (Some(here.0), Some(here.1));
        match existing.get(identity) {
            None => match archived.get(identity) {
                None => new_rows.push(index),
                Some(at) if *at != placement => {
                    duplicates.push(index);
                    phase.outcomes[index] = RowOutcome::Duplicate;
                }
                Some(_) => phase.outcomes[index] = RowOutcome::AlreadyProcessed,
            },
            Some(e) if (e.import_id, e.line) != placement => {
                duplicates.push(index);
                phase.outcomes[index] = RowOutcome::Duplicate;
            }
            Some(e) if e.status == "reserved" => {
                phase.outcomes[index] = RowOutcome::Reserved;
                phase.reserved.push(ReservedOrder {
                    order_id: e.order_id,
                    import_id: here.0,
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
    (new_rows, duplicates)
}

async fn existing_orders(
    pool: &MySqlPool,
    identities: &BTreeSet<&str>,
) -> Result<HashMap<String, ExistingOrder>> {
    type Found = (
        u64,
        String,
        u64,
        String,
        String,
        Option<u64>,
        Option<u64>,
        i64,
        Option<NaiveDateTime>,
    );
    let mut found = HashMap::new();
    let identities: Vec<&str> = identities.iter().copied().collect();
    for part in identities.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT o.id, CAST(o.identity AS CHAR), o.customer_id, CAST(c.email AS CHAR), CAST(o.status AS CHAR), o.import_id, o.line, \
             CAST(o.total * 100 AS SIGNED), o.order_date \
             FROM orders o FORCE INDEX (uq_orders_identity) \
             JOIN customers c FORCE INDEX (PRIMARY) ON c.id = o.customer_id WHERE o.identity IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, Found>(&sql);
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

/// The (import id, line) of each archived order among `identities`
/// (`archived_orders`, by its unique identity).
async fn archived_placements(
    pool: &MySqlPool,
    identities: &BTreeSet<&str>,
) -> Result<HashMap<String, Placement>> {
    let mut found = HashMap::new();
    let identities: Vec<&str> = identities.iter().copied().collect();
    for part in identities.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT CAST(identity AS CHAR), import_id, line FROM archived_orders \
             FORCE INDEX (uq_archived_orders_identity) WHERE identity IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (String, Option<u64>, Option<u64>)>(&sql);
        for identity in part {
            query = query.bind(*identity);
        }
        for (identity, import_id, line) in query.fetch_all(pool).await? {
            found.insert(identity, (import_id, line));
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

/// Writes the new orders and their items, then reserves their stock. The hot product
/// rows are locked last, so they are held only for the stock decision and the commit.
// Long on purpose: the stock decision of one transaction in lock order (orders, ids, hot
// product rows last, decide, write), so the order of the locks is visible in one place.
async fn insert_new_orders(
    tx: &mut Transaction<'_, MySql>,
    rows: &[BatchRow<'_>],
    new_rows: &[usize],
    snapshot: &Snapshot<'_>,
    phase: &mut ReservePhase,
) -> Result<()> {
    if let Some(&i) = new_rows
        .iter()
        .find(|&&i| !snapshot.customers.contains_key(&rows[i].row.customer_email))
    {
        return Err(OmsError::Contention(format!(
            "customer {} not found after upsert",
            rows[i].row.customer_email
        )));
    }
    let priced: Vec<PricedOrder> = new_rows
        .iter()
        .map(|&i| price_order(rows[i].row, snapshot.catalog))
        .collect::<Result<_>>()?;
    insert_orders(tx, rows, new_rows, &priced, snapshot).await?;
    let order_ids = order_ids(tx, rows, new_rows).await?;

    // Stock: lock (products last: the hot rows), decide in batch order, all items or none.
    // Every known sku of the batch is locked, those of unknown-sku orders too (their items
    // reference them).
    let skus: BTreeSet<&str> = new_rows
        .iter()
        .flat_map(|&i| rows[i].row.items.iter().map(|it| it.sku.as_str()))
        .filter(|sku| snapshot.catalog.contains_key(*sku))
        .collect();
    let before = lock_products(tx, &skus).await?;
    let mut stock = before.clone();
    let mut short: Vec<u64> = Vec::new();
    // Each new order's counter: where it ends in this transaction.
    let mut progress = ProgressDeltas::default();
    for (&i, p) in new_rows.iter().zip(&priced) {
        let row = rows[i].row;
        let import_id = rows[i].import_id;
        let order_id = order_ids[row.identity.as_str()];
        let reason = if p.unknown_sku {
            Some(FailureReason::UnknownSku)
        } else if take_stock(&p.lines, &mut stock) {
            None
        } else {
            Some(FailureReason::InsufficientStock)
        };
        match reason {
            Some(r) => progress.add((import_id, "failed", r.as_str()), 1, Cents(0)),
            None => progress.add((import_id, "reserved", ""), 1, Cents(0)),
        }
        if p.unknown_sku {
            phase.outcomes[i] = RowOutcome::Failed(FailureReason::UnknownSku);
        } else if reason.is_none() {
            phase.outcomes[i] = RowOutcome::Reserved;
            phase.reserved.push(ReservedOrder {
                order_id,
                import_id,
                batch_index: i,
                identity: row.identity.as_str().to_string(),
                customer_id: snapshot.customers[&row.customer_email],
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
        snapshot.today,
    )
    .await?;
    insert_items(tx, rows, new_rows, &order_ids, snapshot.catalog).await?;
    progress.write(tx).await
}

/// One multi-row INSERT of the orders: `reserved`, or `failed` at once for an unknown
/// sku (with its KPI day: its `order_date`'s day, else today).
async fn insert_orders(
    tx: &mut Transaction<'_, MySql>,
    rows: &[BatchRow<'_>],
    new_rows: &[usize],
    priced: &[PricedOrder],
    snapshot: &Snapshot<'_>,
) -> Result<()> {
    const PARAMS: usize = 9;
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
    for part in pairs.chunks(rows_per_statement(PARAMS)) {
        let sql = format!(
            "INSERT INTO orders (identity, import_id, line, customer_id, status, failure_reason, total, order_date, kpi_date) VALUES {}",
            value_tuples(part.len(), PARAMS)
        );
        let mut query = sqlx::query(&sql);
        for (i, p) in part {
            let row = rows[*i].row;
            let order_date = row.order_date.map(stored_order_date);
            let (status, reason, kpi_date) = if p.unknown_sku {
                (
                    "failed",
                    Some(FailureReason::UnknownSku.as_str()),
                    Some(kpi_day(order_date, snapshot.today)),
                )
            } else {
                ("reserved", None, None)
            };
            query = query
                .bind(row.identity.as_str())
                .bind(rows[*i].import_id)
                .bind(row.line)
                .bind(snapshot.customers[&row.customer_email])
                .bind(status)
                .bind(reason)
                .bind(p.total.to_string())
                .bind(order_date)
                .bind(kpi_date);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// The ids of the orders just inserted, by identity (no RETURNING on MySQL).
async fn order_ids(
    tx: &mut Transaction<'_, MySql>,
    rows: &[BatchRow<'_>],
    new_rows: &[usize],
) -> Result<HashMap<String, u64>> {
    let identities: Vec<&str> = new_rows
        .iter()
        .map(|&i| rows[i].row.identity.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut order_ids: HashMap<String, u64> = HashMap::with_capacity(identities.len());
    for part in identities.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(identity AS CHAR) FROM orders FORCE INDEX (uq_orders_identity) WHERE identity IN ({})",
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
    match identities.iter().find(|i| !order_ids.contains_key(**i)) {
        Some(missing) => Err(OmsError::Inconsistent(format!(
            "order {missing} not found after insert"
        ))),
        None => Ok(order_ids),
    }
}

/// Items with their unit-price snapshot (NULL for an unknown sku), after the products are
/// locked: the foreign key check takes a shared lock on each product row, and taking it
/// before the exclusive one would let two batches deadlock upgrading it.
async fn insert_items(
    tx: &mut Transaction<'_, MySql>,
    rows: &[BatchRow<'_>],
    new_rows: &[usize],
    order_ids: &HashMap<String, u64>,
    catalog: &HashMap<String, CatalogEntry>,
) -> Result<()> {
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
            "UPDATE orders FORCE INDEX (PRIMARY) SET status = ?, failure_reason = ?, kpi_date = COALESCE(DATE(order_date), ?) \
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
