//! Point lookups for the HTTP API: one order by identity (with its customer and items) and
//! the most recent imports. Every statement reads by primary or unique key, or the newest
//! rows of `imports` by primary key: none scans a table.

use sqlx::MySqlPool;

use crate::error::Result;
use crate::money::Cents;
use crate::store::reports::ImportRow;

/// One order as the orders table holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrderRecord {
    pub id: u64,
    pub identity: String,
    pub import_id: Option<u64>,
    pub line: Option<u64>,
    pub status: String,
    pub failure_reason: Option<String>,
    pub total: String,
    pub total_cents: i64,
    pub order_date: Option<String>,
    pub kpi_date: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub customer: OrderCustomer,
    pub items: Vec<OrderItemRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrderCustomer {
    pub email: String,
    pub name: String,
    pub orders_count: i64,
    pub total_spent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrderItemRecord {
    pub sku: String,
    pub quantity: i64,
    /// Null while the sku is unknown to the catalog.
    pub unit_price: Option<String>,
}

type OrderTuple = (
    u64,
    String,
    Option<u64>,
    Option<u64>,
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

/// The order with this identity, or `None`.
pub async fn order_by_identity(pool: &MySqlPool, identity: &str) -> Result<Option<OrderRecord>> {
    let row: Option<OrderTuple> = sqlx::query_as(
        "SELECT o.id, CAST(o.identity AS CHAR), o.import_id, o.line, CAST(o.status AS CHAR), \
         o.failure_reason, CAST(o.total * 100 AS SIGNED), \
         DATE_FORMAT(o.order_date, '%Y-%m-%dT%H:%i:%s'), DATE_FORMAT(o.kpi_date, '%Y-%m-%d'), \
         DATE_FORMAT(o.created_at, '%Y-%m-%dT%H:%i:%s.%fZ'), \
         DATE_FORMAT(o.updated_at, '%Y-%m-%dT%H:%i:%s.%fZ'), \
         CAST(c.email AS CHAR), c.name, CAST(c.orders_count AS SIGNED), CAST(c.total_spent * 100 AS SIGNED) \
         FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.identity = ?",
    )
    .bind(identity)
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let items: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT CAST(sku AS CHAR), CAST(quantity AS SIGNED), CAST(unit_price * 100 AS SIGNED) \
         FROM order_items WHERE order_id = ? ORDER BY id",
    )
    .bind(r.0)
    .fetch_all(pool)
    .await?;
    Ok(Some(OrderRecord {
        id: r.0,
        identity: r.1,
        import_id: r.2,
        line: r.3,
        status: r.4,
        failure_reason: r.5,
        total: Cents(r.6).to_string(),
        total_cents: r.6,
        order_date: r.7,
        kpi_date: r.8,
        created_at: r.9,
        updated_at: r.10,
        customer: OrderCustomer {
            email: r.11,
            name: r.12,
            orders_count: r.13,
            total_spent: Cents(r.14).to_string(),
        },
        items: items
            .into_iter()
            .map(|(sku, quantity, price)| OrderItemRecord {
                sku,
                quantity,
                unit_price: price.map(|p| Cents(p).to_string()),
            })
            .collect(),
    }))
}

/// The `limit` most recent imports, newest first.
pub async fn recent_imports(pool: &MySqlPool, limit: u32) -> Result<Vec<ImportRow>> {
    Ok(sqlx::query_as(&format!(
        "{} ORDER BY id DESC LIMIT ?",
        super::reports::IMPORT_ROW_SELECT
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The import whose `file_name` is exactly `name` (the newest), for the API's upload.
pub async fn import_id_by_file_name(pool: &MySqlPool, name: &str) -> Result<Option<u64>> {
    let row: Option<(u64,)> =
        sqlx::query_as("SELECT id FROM imports WHERE file_name = ? ORDER BY id DESC LIMIT 1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|r| r.0))
}
