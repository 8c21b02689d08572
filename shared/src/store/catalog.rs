//! The product catalog: upsert by sku, list.

use sqlx::MySqlPool;

use crate::error::Result;
use crate::money::Cents;
use crate::store::{rows_per_statement, value_tuples};

/// A catalog row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price: Cents,
    pub stock_quantity: i64,
}

/// Inserts new skus and overwrites name, price and stock of existing ones. Returns the
/// number of rows given (MySQL's affected-rows count double-counts updates).
pub async fn upsert_products(pool: &MySqlPool, products: &[Product]) -> Result<u64> {
    let mut tx = pool.begin().await?;
    for part in products.chunks(rows_per_statement(4)) {
        let sql = format!(
            "INSERT INTO products (sku, name, price, stock_quantity) VALUES {} \
             ON DUPLICATE KEY UPDATE name = VALUES(name), price = VALUES(price), \
             stock_quantity = VALUES(stock_quantity)",
            value_tuples(part.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for p in part {
            query = query
                .bind(&p.sku)
                .bind(&p.name)
                .bind(p.price.to_string())
                .bind(p.stock_quantity);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(products.len() as u64)
}

/// The whole catalog ordered by sku.
pub async fn list_products(pool: &MySqlPool) -> Result<Vec<Product>> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT CAST(sku AS CHAR), name, CAST(price * 100 AS SIGNED), CAST(stock_quantity AS SIGNED) FROM products ORDER BY sku",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(sku, name, price, stock_quantity)| Product {
            sku,
            name,
            price: Cents(price),
            stock_quantity,
        })
        .collect())
}
