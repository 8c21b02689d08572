//! A deterministic order workload for the fault tests, and the figures every fault test
//! prints: orders run, faults injected, orders lost (must be 0), doubled (must be 0).
//!
//! The workload mixes the outcomes the checker must account for: completed orders,
//! `payment_declined`, `insufficient_stock` on a few scarce skus, and `unknown_sku`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use oms_shared::order::OrderRow;

use crate::{order_row, TestEnv};

/// Products and orders of one run.
pub struct Workload {
    /// (sku, price, stock)
    pub products: Vec<(String, String, i64)>,
    pub rows: Vec<OrderRow>,
    /// Prefix of every identity of this workload.
    pub tag: String,
}

impl Workload {
    /// `n` orders over `skus` plentiful skus plus 3 scarce ones (stock 40 each) and one
    /// unknown sku every 997 orders; customers `c<i % customers>@<tag>.example.com`.
    pub fn new(tag: &str, n: u64, skus: u32, customers: u64) -> Workload {
        let mut products: Vec<(String, String, i64)> = (0..skus)
            .map(|s| {
                let cents = 99 + (s as i64 * 137) % 4900;
                (
                    format!("F-{s:05}"),
                    format!("{}.{:02}", cents / 100, cents % 100),
                    1_000_000,
                )
            })
            .collect();
        for s in 0..3 {
            products.push((format!("SCARCE-{s}"), "12.50".into(), 40));
        }
        let rows = (0..n)
            .map(|i| {
                let a = format!("F-{:05}", (i * 7919) % u64::from(skus));
                let b = format!("F-{:05}", (i * 104_729 + 13) % u64::from(skus));
                let mut items: Vec<(String, u32)> = vec![(a.clone(), 1 + (i % 3) as u32)];
                if b != a {
                    items.push((b, 1));
                }
                if i % 50 == 7 {
                    items.push((format!("SCARCE-{}", i % 3), 1 + (i % 2) as u32));
                }
                if i % 997 == 5 {
                    items.push(("NO-SUCH-SKU".into(), 1));
                }
                let refs: Vec<(&str, u32)> = items.iter().map(|(s, q)| (s.as_str(), *q)).collect();
                order_row(
                    &format!("{tag}-{i}"),
                    i + 2,
                    &format!("c{}@{tag}.example.com", i % customers),
                    &refs,
                )
            })
            .collect();
        Workload {
            products,
            rows,
            tag: tag.to_string(),
        }
    }

    /// Inserts the catalog into `env` (in a few multi-row statements).
    pub async fn seed(&self, env: &TestEnv) {
        for part in self.products.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::MySql>::new(
                "INSERT INTO products (sku, name, price, stock_quantity) ",
            );
            q.push_values(part, |mut b, (sku, price, stock)| {
                b.push_bind(sku.clone())
                    .push_bind(format!("Product {sku}"))
                    .push_bind(price.clone())
                    .push_bind(*stock);
            });
            q.build().execute(&env.db).await.expect("insert products");
        }
    }

    pub fn identities(&self) -> BTreeSet<String> {
        self.rows
            .iter()
            .map(|r| r.identity.as_str().to_string())
            .collect()
    }

    /// The workload as an orders CSV for `producer import` (`order_id` gives each row its
    /// workload identity), in a temp file that lives as long as the returned guard.
    pub fn write_csv(&self) -> tempfile::NamedTempFile {
        self.csv_file(true)
    }

    /// The workload as an orders CSV without `order_id`: identities are `<sha256>:<line>`
    /// of the file (what `producer recover` must rebuild from the file itself).
    pub fn write_csv_without_order_ids(&self) -> tempfile::NamedTempFile {
        self.csv_file(false)
    }

    fn csv_file(&self, order_ids: bool) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::Builder::new()
            .suffix(".csv")
            .tempfile()
            .expect("temp csv");
        let mut out = std::io::BufWriter::new(f.as_file_mut());
        let id_column = if order_ids { "order_id," } else { "" };
        writeln!(out, "{id_column}customer_name,customer_email,products").expect("write csv");
        for row in &self.rows {
            let items: Vec<String> = row
                .items
                .iter()
                .map(|i| format!(r#"{{""sku"":""{}"",""quantity"":{}}}"#, i.sku, i.quantity))
                .collect();
            let id = if order_ids {
                format!("{},", row.identity.as_str())
            } else {
                String::new()
            };
            writeln!(
                out,
                "{id}{},{},\"[{}]\"",
                row.customer_name,
                row.customer_email,
                items.join(",")
            )
            .expect("write csv");
        }
        out.flush().expect("flush csv");
        drop(out);
        f
    }

    /// Initial stock per sku, for [`crate::invariants::violations`].
    pub fn initial_stock(&self) -> BTreeMap<String, i64> {
        self.products
            .iter()
            .map(|(sku, _, stock)| (sku.clone(), *stock))
            .collect()
    }
}

/// What one fault run did; printed with `eprintln!` so the report can quote it.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub scenario: String,
    pub orders: usize,
    pub faults: usize,
    pub fault_kind: String,
    pub completed: i64,
    pub failed: i64,
    pub dead_lettered: usize,
    pub lost: usize,
    pub doubled: i64,
    pub duration: Duration,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FIGURES {}: orders={} faults={} ({}) completed={} failed={} dead_lettered={} lost={} doubled={} duration={:.1}s",
            self.scenario,
            self.orders,
            self.faults,
            self.fault_kind,
            self.completed,
            self.failed,
            self.dead_lettered,
            self.lost,
            self.doubled,
            self.duration.as_secs_f64()
        )
    }
}

impl Figures {
    /// These figures with the outcome counts of `a` (orders = its expected identities)
    /// and the run's `duration`.
    pub fn counted(self, a: &crate::invariants::Accounting, duration: Duration) -> Figures {
        Figures {
            orders: a.expected,
            completed: a.completed,
            failed: a.failed,
            dead_lettered: a.dead_lettered,
            lost: a.lost,
            doubled: a.doubled,
            duration,
            ..self
        }
    }

    /// Prints the figures and asserts lost = 0 and doubled = 0.
    pub fn report(&self) {
        eprintln!("{self}");
        self.assert_clean();
    }

    /// Asserts lost = 0 and doubled = 0.
    pub fn assert_clean(&self) {
        assert_eq!(self.lost, 0, "orders lost: {self}");
        assert_eq!(self.doubled, 0, "orders doubled: {self}");
    }
}
