//! The generators' determinism and distributions.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::*;

/// The sku of product number `n`: `sku(1) == "SKU-000001"` (more digits past 999,999).
pub fn sku(n: u32) -> String {
    format!("SKU-{n:06}")
}

fn end() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, 15).unwrap()
}

fn orders_spec(count: u64, products: u32, seed: u64, days: u32) -> OrderSpec {
    OrderSpec {
        count,
        products,
        seed,
        days,
        end_date: end(),
    }
}

fn orders(spec: &OrderSpec) -> Vec<u8> {
    let mut out = Vec::new();
    write_orders(&mut out, spec).unwrap();
    out
}

fn products(spec: &ProductSpec) -> Vec<u8> {
    let mut out = Vec::new();
    write_products(&mut out, spec).unwrap();
    out
}

#[derive(serde::Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
}

/// Parses an orders CSV back: (name, email, items, date) per row.
fn parse_orders(bytes: &[u8]) -> Vec<(String, String, Vec<Item>, NaiveDate)> {
    let mut r = csv::Reader::from_reader(bytes);
    assert_eq!(
        r.headers().unwrap(),
        vec!["customer_name", "customer_email", "products", "order_date"]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), 4);
            let items: Vec<Item> = serde_json::from_str(&rec[2]).unwrap();
            let date = NaiveDate::parse_from_str(&rec[3], "%Y-%m-%d").unwrap();
            assert_eq!(&rec[3], date.format("%Y-%m-%d").to_string());
            (rec[0].to_string(), rec[1].to_string(), items, date)
        })
        .collect()
}

fn sku_number(s: &str) -> u32 {
    let digits = s.strip_prefix("SKU-").unwrap();
    assert_eq!(digits.len(), 6, "{s}");
    digits.parse().unwrap()
}

#[test]
fn sku_is_zero_padded() {
    assert_eq!(sku(1), "SKU-000001");
    assert_eq!(sku(42), "SKU-000042");
    assert_eq!(sku(999_999), "SKU-999999");
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let spec = orders_spec(2_000, 500, 7, 30);
    assert_eq!(orders(&spec), orders(&spec));
    assert_ne!(orders(&spec), orders(&OrderSpec { seed: 8, ..spec }));

    let p = ProductSpec {
        count: 500,
        stock: 100,
        seed: 7,
    };
    assert_eq!(products(&p), products(&p));
    assert_ne!(products(&p), products(&ProductSpec { seed: 8, ..p }));
}

#[test]
fn orders_parse_back_and_respect_the_rules() {
    let spec = orders_spec(20_000, 1_000, 1, 30);
    let bytes = orders(&spec);
    let rows = parse_orders(&bytes);
    assert_eq!(rows.len(), 20_000);

    let first = end() - chrono::Days::new(29);
    let mut dates = HashSet::new();
    let mut item_counts = [0usize; 6];
    let mut names_by_email: HashMap<&str, &str> = HashMap::new();
    for (name, email, items, date) in &rows {
        assert!((1..=5).contains(&items.len()), "{} items", items.len());
        item_counts[items.len()] += 1;
        let skus: HashSet<&str> = items.iter().map(|i| i.sku.as_str()).collect();
        assert_eq!(skus.len(), items.len(), "duplicate sku in an order");
        for item in items {
            assert!((1..=10_000).contains(&item.quantity));
            assert!((1..=5).contains(&item.quantity));
            assert!((1..=1_000).contains(&sku_number(&item.sku)));
        }
        assert!((first..=end()).contains(date), "{date}");
        dates.insert(*date);

        let (local, domain) = email.split_once('@').unwrap();
        assert_eq!(domain, "example.com");
        assert!(
            local
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.'),
            "{email}"
        );
        assert!(!name.is_empty());
        // One customer number, one name.
        assert_eq!(*names_by_email.entry(email).or_insert(name), name);
    }
    assert_eq!(dates.len(), 30, "every day of the window is used");
    assert!(item_counts[1..].iter().all(|&c| c > 0), "{item_counts:?}");

    // Customers repeat: the pool is 4,000, drawn with skew.
    let distinct = names_by_email.len();
    assert!(
        distinct <= 4_000 && distinct < rows.len() / 5 + 1,
        "{distinct}"
    );
    assert!(distinct > 500, "{distinct}");

    // Some names are non-ASCII, some fields needed quoting (a comma or a quote in them).
    assert!(rows.iter().any(|r| !r.0.is_ascii()));
    assert!(rows.iter().any(|r| r.0.contains("Smith, Jr.")));
    assert!(rows.iter().any(|r| r.0.contains('\'')));
    assert!(rows.iter().any(|r| r.0.contains('"')));
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.lines().any(|l| l.starts_with('"')));
}

#[test]
fn sku_popularity_is_skewed() {
    let rows = parse_orders(&orders(&orders_spec(20_000, 1_000, 3, 30)));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for item in rows.iter().flat_map(|r| &r.2) {
        *counts.entry(item.sku.clone()).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let mut sorted: Vec<usize> = counts.into_values().collect();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let top10: usize = sorted.iter().take(10).sum();
    let share = top10 as f64 / total as f64;
    println!(
        "top-10 share of {total} item occurrences: {:.1} %",
        share * 100.0
    );
    // Uniform would give about 1 %; Zipf(1.1) gives about 45 %.
    assert!(share > 0.25, "top-10 share {share}");
    // The hot skus are shuffled, not just SKU-000001..SKU-000010.
    assert!(sorted.len() > 500, "long tail: {} skus seen", sorted.len());
}

#[test]
fn date_window_edges() {
    for days in [0, 1] {
        let rows = parse_orders(&orders(&orders_spec(200, 10, 5, days)));
        assert!(rows.iter().all(|r| r.3 == end()));
    }
    let rows = parse_orders(&orders(&orders_spec(2_000, 10, 5, 2)));
    let dates: HashSet<NaiveDate> = rows.iter().map(|r| r.3).collect();
    assert_eq!(dates, HashSet::from([end(), end().pred_opt().unwrap()]));

    let bad = OrderSpec {
        end_date: NaiveDate::from_ymd_opt(1, 1, 5).unwrap(),
        ..orders_spec(1, 1, 1, 10)
    };
    let err = write_orders(Vec::new(), &bad).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn tiny_catalogs_and_empty_outputs() {
    // One product: every order has exactly that one sku.
    let rows = parse_orders(&orders(&orders_spec(100, 1, 9, 7)));
    assert!(rows
        .iter()
        .all(|r| r.2.len() == 1 && r.2[0].sku == "SKU-000001"));
    // Five products: orders of five distinct items are still possible.
    let rows = parse_orders(&orders(&orders_spec(2_000, 5, 9, 7)));
    assert!(rows.iter().any(|r| r.2.len() == 5));

    assert_eq!(
        orders(&orders_spec(0, 0, 1, 1)),
        b"customer_name,customer_email,products,order_date\n"
    );
    let err = write_orders(Vec::new(), &orders_spec(1, 0, 1, 1)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let p = ProductSpec {
        count: 0,
        stock: 1,
        seed: 1,
    };
    assert_eq!(products(&p), b"sku,name,price,stock_quantity\n");
}

#[test]
fn products_parse_back() {
    let spec = ProductSpec {
        count: 2_000,
        stock: 250,
        seed: 11,
    };
    let bytes = products(&spec);
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(
        r.headers().unwrap(),
        vec!["sku", "name", "price", "stock_quantity"]
    );
    let mut n = 0;
    let mut names = HashSet::new();
    let (mut non_ascii, mut comma, mut quote) = (false, false, false);
    for rec in r.records() {
        let rec = rec.unwrap();
        n += 1;
        assert_eq!(&rec[0], sku(n));
        let name = &rec[1];
        non_ascii |= !name.is_ascii();
        comma |= name.contains(',');
        quote |= name.contains('"');
        names.insert(name.to_string());

        // ^\d+\.\d\d$ and 0.50 ..= 999.99
        let price = &rec[2];
        let (units, cents) = price.split_once('.').unwrap();
        assert!(
            !units.is_empty() && units.bytes().all(|b| b.is_ascii_digit()),
            "{price}"
        );
        assert!(
            cents.len() == 2 && cents.bytes().all(|b| b.is_ascii_digit()),
            "{price}"
        );
        let total: u32 = units.parse::<u32>().unwrap() * 100 + cents.parse::<u32>().unwrap();
        assert!((50..=99_999).contains(&total), "{price}");

        assert_eq!(&rec[3], "250");
    }
    assert_eq!(n, 2_000);
    assert!(non_ascii && comma && quote);
    assert!(names.len() > 500, "varied names: {}", names.len());
    assert!(
        bytes.windows(2).any(|w| w == b",\""),
        "some fields are quoted"
    );
}

/// `cargo test --release -p producer generate -- --ignored --nocapture`
#[test]
#[ignore = "benchmark, run in release mode"]
fn bench_one_million_orders() {
    let spec = OrderSpec {
        count: 1_000_000,
        products: 10_000,
        seed: 42,
        days: 365,
        end_date: end(),
    };
    let start = Instant::now();
    write_orders(io::sink(), &spec).unwrap();
    let orders_time = start.elapsed();

    let start = Instant::now();
    let mut bytes = CountingSink(0);
    write_orders(&mut bytes, &spec).unwrap();
    println!(
        "1,000,000 orders: {orders_time:.2?} to io::sink ({} MB), again {:.2?}",
        bytes.0 / 1_000_000,
        start.elapsed()
    );

    let start = Instant::now();
    let p = ProductSpec {
        count: 999_999,
        stock: 100,
        seed: 42,
    };
    write_products(io::sink(), &p).unwrap();
    println!("999,999 products: {:.2?}", start.elapsed());
}

struct CountingSink(usize);

impl io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
