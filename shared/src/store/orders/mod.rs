//! The order workflow's SQL: two committed phases per batch of orders.
//!
//! **Reserve** ([`reserve_stock`], `reserve.rs`): for each row whose identity is new, find
//! or create the customer (autocommit statements before the transaction: a customer row is
//! harmless on its own, `customers.rs`), read the prices, then in one transaction write the
//! orders (`reserved`, or `failed` with `unknown_sku`), lock the batch's products, decide in
//! memory which orders get their stock (all items or none, in batch order, `stock.rs`),
//! write the stock decrements, fail the others (`insufficient_stock`) and insert the items
//! with the unit-price snapshot.
//!
//! **Settle** ([`settle_payments`], `settle.rs`): for the orders still `reserved`, ask the
//! payment simulator; approved orders become `completed` and grow their customer's totals,
//! declined ones become `failed` and give their stock back; the completed orders are
//! written to `read_model_outbox` in the same transaction. One transaction.
//!
//! A crash between the phases leaves orders `reserved`; the redelivered message finds them
//! and settles them (the payment decision is deterministic per identity). Lock order is
//! fixed everywhere: orders (by id), then customers (by email), then products (by sku), so
//! concurrent batches' transactions do not deadlock on each other; the hot rows (products)
//! are locked last in each transaction, so they are held for the shortest time. (The
//! autocommit customer INSERT before a reserve can still lose a deadlock to a settle, about
//! once per 100,000 orders, before and after this layout: it is transient and retried.)
//!
//! Cost per order is what bounds throughput (the database is the bottleneck, see
//! docs/performance.md): every statement is multi-row, customer and stock changes are
//! summed per batch, and no statement runs per order.
//!
//! Every multi-row statement names its index (`FORCE INDEX`). A batch's IN list often
//! covers much of a small table (a catalog of 1,000 products, a few thousand customers),
//! or a table whose statistics are stale (a fresh one), and the optimizer then prefers a
//! full index scan. Under REPEATABLE READ, a full scan in an UPDATE locks *every* row it
//! reads, not just the ones it changes, until the commit. That serialises concurrent
//! batches on rows they do not touch and reads the whole table per batch. Measured with
//! `log_queries_not_using_indexes` over 20,000 orders: the customers UPDATE examined the
//! whole table 20 times (65,030 rows), the stock UPDATEs the whole catalog 40 times.

mod customers;
mod reserve;
mod settle;
mod stock;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike, Utc};

use crate::kpi::CompletedOrder;
use crate::money::Cents;
use crate::order::OrderRow;

pub use reserve::reserve_stock;
pub use settle::{settle_payments, settle_payments_checked};

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
    /// The import the order came from (its `import_progress` counters move with it).
    pub import_id: u64,
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

/// `order_date` as the `DATETIME(0)` column stores it: whole seconds, truncated. MySQL 8
/// would round 23:59:59.6 up to the next day where MariaDB truncates; binding the
/// truncated value makes both store the same instant, and the KPI day is computed from it.
pub(crate) fn stored_order_date(date: DateTime<Utc>) -> NaiveDateTime {
    let naive = date.naive_utc();
    naive.with_nanosecond(0).unwrap_or(naive)
}

/// The KPI day of an order: its `order_date`'s day, else `today` (the day it ends).
fn kpi_day(order_date: Option<NaiveDateTime>, today: NaiveDate) -> NaiveDate {
    order_date.map(|d| d.date()).unwrap_or(today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_date_is_truncated_to_the_second_like_mariadb_stores_it() {
        let d: DateTime<Utc> = "2026-03-07T23:59:59.6Z".parse().unwrap();
        let stored = stored_order_date(d);
        assert_eq!(stored.to_string(), "2026-03-07 23:59:59");
        assert_eq!(stored.date().to_string(), "2026-03-07");
    }

    #[test]
    fn the_kpi_day_is_the_order_date_else_today() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let d: DateTime<Utc> = "2026-03-07T23:59:59Z".parse().unwrap();
        assert_eq!(
            kpi_day(Some(stored_order_date(d)), today).to_string(),
            "2026-03-07"
        );
        assert_eq!(kpi_day(None, today), today);
    }
}
