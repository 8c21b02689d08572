//! `producer products import|list`: the catalog CSV `sku,name,price,stock_quantity`.
//!
//! Rows are validated like orders: a bad row is rejected with its line and a reason code
//! (`missing_field`, `field_too_long`, `invalid_price`, `invalid_stock`, `duplicate_sku`,
//! `malformed_row`) and the import goes on. Valid rows are upserted by sku in batches.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use oms_shared::config::ConnectionConfig;
use oms_shared::money::Cents;
use oms_shared::store::catalog::{list_products, upsert_products, Product};
use serde::Serialize;

use crate::report::{print_json, table};

#[derive(Debug, Subcommand)]
pub enum ProductsCommand {
    /// Upsert the catalog from a CSV file `sku,name,price,stock_quantity`.
    Import {
        /// CSV file, or `-` for stdin.
        file: String,
    },
    /// Print the catalog.
    List,
}

/// A catalog row that was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogReject {
    pub line: u64,
    pub reason: &'static str,
    pub detail: String,
}

const MAX_SKU: usize = 64;
const MAX_NAME: usize = 255;
const MAX_STOCK: i64 = i32::MAX as i64;
const MAX_PRICE: Cents = Cents(999_999_999_999);

/// Pure rule for one catalog record (fields by header position).
pub fn validate_product(
    sku: Option<&str>,
    name: Option<&str>,
    price: Option<&str>,
    stock: Option<&str>,
) -> Result<Product, (&'static str, String)> {
    let field = |v: Option<&str>, col: &str| -> Result<String, (&'static str, String)> {
        match v.map(str::trim) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(("missing_field", format!("column {col} is empty"))),
        }
    };
    let sku = field(sku, "sku")?;
    let name = field(name, "name")?;
    let price_text = field(price, "price")?;
    let stock_text = field(stock, "stock_quantity")?;
    if sku.chars().count() > MAX_SKU {
        return Err((
            "field_too_long",
            format!("sku is longer than {MAX_SKU} characters"),
        ));
    }
    if name.chars().count() > MAX_NAME {
        return Err((
            "field_too_long",
            format!("name is longer than {MAX_NAME} characters"),
        ));
    }
    let price: Cents = price_text
        .parse()
        .ok()
        .filter(|c: &Cents| *c >= Cents::ZERO && *c <= MAX_PRICE)
        .ok_or_else(|| {
            (
                "invalid_price",
                format!("price {price_text:?} is not an amount like 12.34"),
            )
        })?;
    let stock_quantity: i64 = stock_text
        .parse()
        .ok()
        .filter(|s| (0..=MAX_STOCK).contains(s))
        .ok_or_else(|| {
            (
                "invalid_stock",
                format!(
                    "stock_quantity {stock_text:?} is not a whole number from 0 to {MAX_STOCK}"
                ),
            )
        })?;
    Ok(Product {
        sku,
        name,
        price,
        stock_quantity,
    })
}

/// What `products import` did.
#[derive(Debug, Default, Serialize)]
pub struct CatalogImportReport {
    pub file: String,
    pub rows: u64,
    pub upserted: u64,
    pub rejected: Vec<CatalogReject>,
}

/// Reads, validates and upserts a catalog file; `-` is stdin.
// Long on purpose: read, validate, upsert in one pass over the file, each reject named
// with its line where it is found.
pub async fn import_catalog(
    pool: &sqlx::MySqlPool,
    file: &str,
) -> anyhow::Result<CatalogImportReport> {
    let reader: Box<dyn std::io::Read> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?)
    };
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let headers = csv
        .headers()
        .with_context(|| format!("{file}: cannot read the header"))?
        .clone();
    let position = |name: &str| {
        headers.iter().position(|h| {
            h.trim()
                .trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case(name)
        })
    };
    let columns: Vec<Option<usize>> = ["sku", "name", "price", "stock_quantity"]
        .iter()
        .map(|c| position(c))
        .collect();
    if let Some(missing) = ["sku", "name", "price", "stock_quantity"]
        .iter()
        .zip(&columns)
        .find(|(_, p)| p.is_none())
    {
        anyhow::bail!("{file}: line 1: required column {} is missing", missing.0);
    }
    let mut report = CatalogImportReport {
        file: file.to_string(),
        ..Default::default()
    };
    let mut batch: Vec<Product> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = csv.position().line();
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                report.rows += 1;
                report.rejected.push(CatalogReject {
                    line,
                    reason: "malformed_row",
                    detail: e.to_string(),
                });
                if e.is_io_error() {
                    return Err(
                        anyhow::Error::new(e).context(format!("{file}: line {line}: read error"))
                    );
                }
                continue;
            }
        }
        report.rows += 1;
        let get = |i: usize| columns[i].and_then(|p| record.get(p));
        match validate_product(get(0), get(1), get(2), get(3)) {
            Ok(p) if !seen.insert(p.sku.clone()) => report.rejected.push(CatalogReject {
                line,
                reason: "duplicate_sku",
                detail: format!("sku {} appears earlier in the file", p.sku),
            }),
            Ok(p) => batch.push(p),
            Err((reason, detail)) => report.rejected.push(CatalogReject {
                line,
                reason,
                detail,
            }),
        }
        if batch.len() >= 1000 {
            report.upserted += upsert_products(pool, &batch).await?;
            batch.clear();
        }
    }
    report.upserted += upsert_products(pool, &batch).await?;
    Ok(report)
}

pub async fn run(
    conn: &ConnectionConfig,
    cmd: ProductsCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let pool = oms_shared::deployment::open_mysql(conn, 2).await?;
    match cmd {
        ProductsCommand::Import { file } => {
            let report = import_catalog(&pool, &file).await?;
            if json {
                print_json(&report);
            } else {
                for r in &report.rejected {
                    eprintln!(
                        "{}: line {}: {}: {}",
                        report.file, r.line, r.reason, r.detail
                    );
                }
                println!(
                    "{}: {} rows, {} upserted, {} rejected",
                    report.file,
                    report.rows,
                    report.upserted,
                    report.rejected.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ProductsCommand::List => {
            let products = list_products(&pool).await?;
            if json {
                print_json(&products);
            } else {
                let rows: Vec<Vec<String>> = products
                    .iter()
                    .map(|p| {
                        vec![
                            p.sku.clone(),
                            p.name.clone(),
                            p.price.to_string(),
                            p.stock_quantity.to_string(),
                        ]
                    })
                    .collect();
                println!(
                    "{}",
                    table(&["sku", "name", "price", "stock"], &rows, &[2, 3])
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_product() {
        let p = validate_product(Some("SKU-1"), Some("Café"), Some("12.5"), Some("10")).unwrap();
        assert_eq!(
            p,
            Product {
                sku: "SKU-1".into(),
                name: "Café".into(),
                price: Cents(1250),
                stock_quantity: 10
            }
        );
    }

    #[test]
    fn each_rule_has_its_reason() {
        let reason = |s, n, p, q| validate_product(s, n, p, q).unwrap_err().0;
        let long_sku = "x".repeat(65);
        assert_eq!(
            reason(None, Some("n"), Some("1"), Some("1")),
            "missing_field"
        );
        assert_eq!(
            reason(Some(" "), Some("n"), Some("1"), Some("1")),
            "missing_field"
        );
        assert_eq!(
            reason(Some(&long_sku), Some("n"), Some("1"), Some("1")),
            "field_too_long"
        );
        assert_eq!(
            reason(Some("s"), Some("n"), Some("1.234"), Some("1")),
            "invalid_price"
        );
        assert_eq!(
            reason(Some("s"), Some("n"), Some("-1"), Some("1")),
            "invalid_price"
        );
        assert_eq!(
            reason(Some("s"), Some("n"), Some("1"), Some("-1")),
            "invalid_stock"
        );
        assert_eq!(
            reason(Some("s"), Some("n"), Some("1"), Some("1.5")),
            "invalid_stock"
        );
    }
}
