//! Synthetic data generator behind `producer generate products` and `producer generate orders`.
//!
//! Both generators stream CSV to any `io::Write` with flat memory (one reused buffer per
//! field, no vector of rows) and are deterministic: the same spec, seed included, gives
//! byte-identical output (the RNG is `ChaCha8Rng`, seeded from a value derived from the seed).
//!
//! **Products** (`sku,name,price,stock_quantity`): skus `SKU-000001` … `SKU-<count>`, names
//! built from a base item, an optional qualifier and a variant (`Organic Café Crème 250g`,
//! `Kühlschrank-Magnet – Grün`, `Gaming Monitor 27"`, `T-Shirt, Size M`), so some are
//! non-ASCII and some carry commas or quotes that the CSV writer has to quote. The price is
//! a whole number of cents from 0.50 to 999.99 within the base item's range, written with
//! exactly two decimals (never a float); the stock is the spec's.
//!
//! **Orders** (`customer_name,customer_email,products,order_date`): `products` is a JSON array
//! `[{"sku":"SKU-000042","quantity":2},…]` of 1–5 items with distinct skus and quantities 1–5
//! (mostly 1). Skus come from `1..=products` with Zipf popularity (exponent 1.1) over a
//! seeded shuffle of the catalog, so a few hot skus take a large share of the items (about
//! 45 % for the top 10 of 1,000). Customers come from a pool of `max(1, count / 5)`
//! numbered customers, also Zipf-skewed (exponent 0.6, over a seeded permutation of the
//! pool), so customers repeat. A customer's name and email are a pure function of the
//! customer number, not of the seed: names mix cultures and scripts (`José Álvarez`,
//! `Zoë Müller`, `Łukasz Wójcik`, `山田 太郎`, `Seán O'Brien`, `John Smith, Jr.`), and the
//! email is the name's lower-case ASCII transliteration plus the number
//! (`jose.alvarez.123@example.com`), so one customer number is one customer across files.
//! `order_date` (`YYYY-MM-DD`) is uniform over the `days` days ending at `end_date`
//! (`days` 0 or 1: every order on `end_date`).
//!
//! Determinism holds for a given build and platform; the Zipf sampler uses `f64` `powf`/`exp`,
//! whose last bits are not guaranteed identical across platforms' math libraries.

use std::io;

use chrono::NaiveDate;

pub(crate) mod command;
mod customers;
mod orders;
mod products;
#[cfg(test)]
mod tests;

pub(crate) use orders::write_orders;
pub(crate) use products::write_products;

/// What `write_products` generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProductSpec {
    /// Number of products: skus `SKU-000001` … `SKU-<count>`.
    pub count: u32,
    /// `stock_quantity` of every product.
    pub stock: u32,
    pub seed: u64,
}

/// What `write_orders` generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderSpec {
    /// Number of order rows.
    pub count: u64,
    /// Skus are drawn from `SKU-000001` … `SKU-<products>`; must be at least 1 when `count > 0`.
    pub products: u32,
    pub seed: u64,
    /// Width of the date window, in days, ending at (and including) `end_date`.
    pub days: u32,
    pub end_date: NaiveDate,
}

/// Zipf exponent of sku popularity.
const SKU_ZIPF_EXPONENT: f64 = 1.1;
/// Zipf exponent of customer activity (milder: the top customer has well under 1 % of orders).
const CUSTOMER_ZIPF_EXPONENT: f64 = 0.6;
/// One customer per this many orders in the pool.
const ORDERS_PER_CUSTOMER: u64 = 5;
/// Draws tried to find a not-yet-used sku for an order before settling for fewer items.
const MAX_SKU_DRAWS: u32 = 64;
/// The csv writer's own buffer: the output is written in chunks this large.
const WRITE_BUFFER: usize = 64 * 1024;

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn csv_writer<W: io::Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .buffer_capacity(WRITE_BUFFER)
        .from_writer(out)
}

// ---------------------------------------------------------------------------------------------
