//! Products in the workflow: the price snapshot read before the reserve transaction, the
//! row locks (in sku order, the global lock order for products), the stock deltas, and
//! the pure rules that price an order and take its stock (all items or none).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{MySql, MySqlPool, Transaction};

use crate::error::{OmsError, Result};
use crate::money::Cents;
use crate::order::rules::{add_line, MAX_ORDER_TOTAL};
use crate::order::OrderRow;
use crate::store::{placeholders, rows_per_statement};

/// A product as the reserve phase sees it: its id and price (read without a lock).
#[derive(Debug, Clone, Copy)]
pub(super) struct CatalogEntry {
    pub(super) id: u64,
    pub(super) price: Cents,
}

/// Id and price of the given skus (a plain read: prices are snapshotted into the items).
pub(super) async fn product_catalog(
    pool: &MySqlPool,
    skus: &BTreeSet<&str>,
) -> Result<HashMap<String, CatalogEntry>> {
    let skus: Vec<&str> = skus.iter().copied().collect();
    let mut catalog = HashMap::with_capacity(skus.len());
    for part in skus.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(sku AS CHAR), CAST(price * 100 AS SIGNED) FROM products FORCE INDEX (uq_products_sku) WHERE sku IN ({})",
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
/// `FORCE INDEX`: when a batch names a large part of a small catalog the optimizer would
/// scan the table, and a locking scan waits on every product row another consumer holds,
/// not only on these (and reads the whole catalog per batch).
pub(super) async fn lock_products(
    tx: &mut Transaction<'_, MySql>,
    skus: &BTreeSet<&str>,
) -> Result<HashMap<u64, i64>> {
    let skus: Vec<&str> = skus.iter().copied().collect();
    let mut stock = HashMap::with_capacity(skus.len());
    for part in skus.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT id, CAST(stock_quantity AS SIGNED) FROM products FORCE INDEX (uq_products_sku) \
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
pub(super) async fn adjust_stock(
    tx: &mut Transaction<'_, MySql>,
    deltas: &BTreeMap<u64, i64>,
) -> Result<()> {
    let deltas: Vec<(u64, i64)> = deltas
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(k, v)| (*k, *v))
        .collect();
    for part in deltas.chunks(rows_per_statement(3)) {
        let sql = format!(
            "UPDATE products FORCE INDEX (PRIMARY) SET stock_quantity = stock_quantity + CASE id {} END WHERE id IN ({})",
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
pub(super) struct PricedOrder {
    pub(super) total: Cents,
    /// (product id, quantity) of every item; empty when a sku is unknown.
    pub(super) lines: Vec<(u64, i64)>,
    pub(super) unknown_sku: bool,
}

/// Pure rule: the order's total, and whether a sku is unknown (which fails the order
/// before its stock is looked at). A total that overflows or does not fit `orders.total`
/// is an [`OmsError::InvalidOrder`]: the row can never be processed.
pub(super) fn price_order(
    row: &OrderRow,
    catalog: &HashMap<String, CatalogEntry>,
) -> Result<PricedOrder> {
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
pub(super) fn take_stock(lines: &[(u64, i64)], stock: &mut HashMap<u64, i64>) -> bool {
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
