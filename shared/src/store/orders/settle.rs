//! Phase 2, settle: the payment decision applied to the batch's `reserved` orders, in one
//! transaction (see the parent module for the whole workflow).
//!
//! Statements per batch: one UPDATE moving every order (guarded by `status = 'reserved'`),
//! one UPDATE of the customers' totals, for declined orders one read of their items, one
//! `FOR UPDATE` of their products and one stock UPDATE, one upsert of the KPI days'
//! sums (`kpi_days`), the outbox's two statements, and the commit. Usually every order is still `reserved` and the guarded UPDATE moves them
//! all: nothing is read first. When another consumer settled some meanwhile (a redelivery
//! racing the first run), the count tells, the transaction is rolled back, and it runs
//! again locking the orders first to see which are left.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use sqlx::{MySql, MySqlPool, Transaction};

use super::customers::grow_customer_totals;
use super::stock::{adjust_stock, lock_products};
use super::{kpi_day, FailureReason, ReservedOrder, RowOutcome, SettlePhase};
use crate::error::{OmsError, Result};
use crate::kpi::CompletedOrder;
use crate::money::Cents;
use crate::order::payment::PaymentSimulator;
use crate::store::import_progress::ProgressDeltas;
use crate::store::{placeholders, rows_per_statement};

/// Phase 2. See the module documentation. `today` is the UTC day, the KPI day of orders
/// without an `order_date`.
pub async fn settle_payments(
    pool: &MySqlPool,
    reserved: &[ReservedOrder],
    payment: &PaymentSimulator,
    today: NaiveDate,
) -> Result<SettlePhase> {
    settle_payments_checked(pool, reserved, payment, today, 0).await
}

/// [`settle_payments`], checked against `applied_max`, a lower bound of the highest
/// outbox id Redis applied: if the outbox id this transaction takes is not above it,
/// MySQL went back in time; the transaction is rolled back and the error is
/// [`OmsError::HistoryRewound`] (see `store::outbox::insert_row`).
pub async fn settle_payments_checked(
    pool: &MySqlPool,
    reserved: &[ReservedOrder],
    payment: &PaymentSimulator,
    today: NaiveDate,
    applied_max: u64,
) -> Result<SettlePhase> {
    if reserved.is_empty() {
        return Ok(SettlePhase::default());
    }
    if let Some(phase) = settle_once(pool, reserved, payment, today, false, applied_max).await? {
        return Ok(phase);
    }
    settle_once(pool, reserved, payment, today, true, applied_max)
        .await?
        .ok_or_else(|| OmsError::Inconsistent("orders changed status under their row locks".into()))
}

/// One settle transaction. With `lock_first`, the orders are locked and only those still
/// `reserved` are settled; without, all are expected to be: `None` (rolled back) when
/// some were not.
// Long on purpose: one transaction's statements in the order they must run (lock, pay,
// move, customer totals, stock release, KPI days, counters, outbox): split, the lock
// order would be hidden.
async fn settle_once(
    pool: &MySqlPool,
    reserved: &[ReservedOrder],
    payment: &PaymentSimulator,
    today: NaiveDate,
    lock_first: bool,
    applied_max: u64,
) -> Result<Option<SettlePhase>> {
    let mut tx = pool.begin().await?;
    let orders: Vec<&ReservedOrder> = if lock_first {
        let still = lock_still_reserved(&mut tx, reserved).await?;
        reserved
            .iter()
            .filter(|r| still.contains(&r.order_id))
            .collect()
    } else {
        reserved.iter().collect()
    };
    let mut approved: Vec<&ReservedOrder> = Vec::new();
    let mut declined: Vec<&ReservedOrder> = Vec::new();
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    // The payment decisions, in a span of their own (a child of the caller's `settle`).
    let decisions = tracing::info_span!(
        "payment",
        approved = tracing::field::Empty,
        declined = tracing::field::Empty
    );
    decisions.in_scope(|| {
        for order in orders.into_iter().filter(|o| seen.insert(o.order_id)) {
            if payment.approves(&crate::order::OrderIdentity(order.identity.clone())) {
                approved.push(order);
            } else {
                declined.push(order);
            }
        }
    });
    decisions.record("approved", approved.len());
    decisions.record("declined", declined.len());
    drop(decisions);
    let moved = move_orders(&mut tx, &approved, &declined, today).await?;
    if moved != seen.len() as u64 {
        tx.rollback().await?;
        return Ok(None);
    }
    grow_customer_totals(&mut tx, &approved).await?;
    let mut phase = SettlePhase {
        completed: approved
            .iter()
            .map(|o| CompletedOrder {
                kpi_day: kpi_day(o.order_date, today),
                email: o.email.clone(),
                total: o.total,
            })
            .collect(),
        ..SettlePhase::default()
    };
    // Hot rows last: the products, held only for the release and the commit; then the
    // completed orders' KPI days (`kpi_days`, in day order) and the imports' counters
    // (`import_progress`, in key order); then the outbox sequence (see
    // `store::outbox`), held only for the commit.
    release_stock(&mut tx, &declined).await?;
    crate::store::kpi_days::add_completed(&mut tx, &phase.completed).await?;
    let mut progress = ProgressDeltas::default();
    for o in &approved {
        progress.moved(o.import_id, ("reserved", ""), ("completed", ""), o.total);
    }
    for o in &declined {
        let reason = FailureReason::PaymentDeclined.as_str();
        progress.moved(o.import_id, ("reserved", ""), ("failed", reason), Cents(0));
    }
    progress.write(&mut tx).await?;
    if !phase.completed.is_empty() {
        let payload = serde_json::to_string(&phase.completed).expect("completed orders serialize");
        match crate::store::outbox::insert_row(&mut tx, &payload, applied_max).await {
            Ok(id) => phase.outbox_id = Some(id),
            Err(e @ OmsError::HistoryRewound { .. }) => {
                tx.rollback().await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
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
    Ok(Some(phase))
}

/// Locks the orders (by id, the global order) and returns those still `reserved`.
async fn lock_still_reserved(
    tx: &mut Transaction<'_, MySql>,
    reserved: &[ReservedOrder],
) -> Result<BTreeSet<u64>> {
    let ids: Vec<u64> = reserved
        .iter()
        .map(|r| r.order_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut still_reserved = BTreeSet::new();
    for part in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id FROM orders WHERE id IN ({}) AND status = 'reserved' ORDER BY id FOR UPDATE",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64,)>(&sql);
        for id in part {
            query = query.bind(*id);
        }
        still_reserved.extend(
            query
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(|(id,)| id),
        );
    }
    Ok(still_reserved)
}

/// Moves the approved orders to `completed` and the declined ones to `failed`
/// (`payment_declined`), only those still `reserved`, in one UPDATE per 1,000 orders (rows
/// locked in id order). Returns how many moved.
async fn move_orders(
    tx: &mut Transaction<'_, MySql>,
    approved: &[&ReservedOrder],
    declined: &[&ReservedOrder],
    today: NaiveDate,
) -> Result<u64> {
    let declined_ids: BTreeSet<u64> = declined.iter().map(|o| o.order_id).collect();
    let ids: Vec<u64> = approved
        .iter()
        .chain(declined)
        .map(|o| o.order_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut moved = 0;
    for part in ids.chunks(rows_per_statement(3)) {
        let failed: Vec<u64> = part
            .iter()
            .copied()
            .filter(|id| declined_ids.contains(id))
            .collect();
        let (status, reason) = if failed.is_empty() {
            ("'completed'".to_string(), "NULL".to_string())
        } else {
            let list = placeholders(failed.len());
            (
                format!("IF(id IN ({list}), 'failed', 'completed')"),
                format!("IF(id IN ({list}), 'payment_declined', NULL)"),
            )
        };
        let sql = format!(
            "UPDATE orders FORCE INDEX (PRIMARY) SET status = {status}, failure_reason = {reason}, \
             kpi_date = COALESCE(DATE(order_date), ?) WHERE id IN ({}) AND status = 'reserved'",
            placeholders(part.len())
        );
        let mut query = sqlx::query(&sql);
        for id in failed.iter().chain(&failed) {
            query = query.bind(*id);
        }
        query = query.bind(today);
        for id in part {
            query = query.bind(*id);
        }
        moved += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(moved)
}

/// Gives the declined orders' stock back: their items summed per product, the products
/// locked in sku order, one UPDATE.
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
