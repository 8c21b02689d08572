//! The orders generator: Zipf-skewed skus and customers, item counts, quantities, dates
//! (see the parent module).

use std::fmt::Write as _;
use std::io;

use chrono::{Datelike, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

use super::customers::customer;
use super::{
    csv_writer, invalid, OrderSpec, CUSTOMER_ZIPF_EXPONENT, MAX_SKU_DRAWS, ORDERS_PER_CUSTOMER,
    SKU_ZIPF_EXPONENT,
};

/// Number of items in an order: 1–5, fewer more likely (40/25/17/10/8 %).
fn item_count(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..100u32) {
        0..40 => 1,
        40..65 => 2,
        65..82 => 3,
        82..92 => 4,
        _ => 5,
    }
}

/// Quantity of one item: 1–5, mostly 1 (70/15/8/4/3 %).
fn quantity(rng: &mut impl Rng) -> u32 {
    match rng.random_range(0..100u32) {
        0..70 => 1,
        70..85 => 2,
        85..93 => 3,
        93..97 => 4,
        _ => 5,
    }
}

/// Draws a Zipf rank in `1..=n` (clamped against float rounding) and returns it 0-based.
fn zipf_index(rng: &mut impl Rng, zipf: &Zipf<f64>, n: u64) -> u64 {
    (zipf.sample(rng) as u64).clamp(1, n) - 1
}

/// `x -> (a·x + b) mod n` with `gcd(a, n) = 1`: a bijection of `0..n`.
struct AffinePermutation {
    a: u128,
    b: u128,
    n: u128,
}

impl AffinePermutation {
    fn new(rng: &mut impl Rng, n: u64) -> Self {
        fn gcd(mut x: u64, mut y: u64) -> u64 {
            while y != 0 {
                (x, y) = (y, x % y);
            }
            x
        }
        let a = loop {
            let a = rng.random_range(1..=n);
            if gcd(a, n) == 1 {
                break a;
            }
        };
        let b = rng.random_range(0..n);
        AffinePermutation {
            a: a.into(),
            b: b.into(),
            n: n.into(),
        }
    }

    fn apply(&self, x: u64) -> u64 {
        ((self.a * u128::from(x) + self.b) % self.n) as u64
    }
}

/// Writes the orders CSV (`customer_name,customer_email,products,order_date`) described by
/// `spec`.
///
/// # Errors
/// `InvalidInput` when there are orders but no products, or when the date window leaves the
/// years 1–9999 (checked before anything is written); otherwise whatever writing to `out`
/// returns.
// Long on purpose: one loop whose order of random draws *is* the output (determinism);
// splitting it would hide that order across functions.
pub(crate) fn write_orders<W: io::Write>(out: W, spec: &OrderSpec) -> io::Result<()> {
    if spec.count > 0 && spec.products == 0 {
        return Err(invalid("generate orders: --products must be at least 1"));
    }
    let span = spec.days.max(1) - 1; // days before end_date
    let first_day = spec
        .end_date
        .checked_sub_days(chrono::Days::new(span.into()))
        .filter(|d| d.year() >= 1 && spec.end_date.year() <= 9999)
        .ok_or_else(|| invalid("generate orders: date window outside the years 1-9999"))?;
    let first_day = first_day.num_days_from_ce();

    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x6f72_6465_7273_2121); // "orders!!"
    let mut w = csv_writer(out);
    w.write_record(["customer_name", "customer_email", "products", "order_date"])?;
    if spec.count == 0 {
        return w.flush();
    }

    // Popularity rank -> sku number: a seeded shuffle, so the hot skus are not always the
    // lowest numbers. 4 bytes per product.
    let products = u64::from(spec.products);
    let mut by_rank: Vec<u32> = (1..=spec.products).collect();
    by_rank.shuffle(&mut rng);
    let sku_zipf = Zipf::new(products as f64, SKU_ZIPF_EXPONENT).expect("n >= 1, s >= 0");

    let pool = (spec.count / ORDERS_PER_CUSTOMER).max(1);
    let customer_zipf = Zipf::new(pool as f64, CUSTOMER_ZIPF_EXPONENT).expect("n >= 1, s >= 0");
    // Activity rank -> customer number: a seeded affine bijection of 0..pool, so the busiest
    // customers differ between seeds without a table.
    let customers = AffinePermutation::new(&mut rng, pool);

    let max_items = usize::try_from(products).unwrap_or(usize::MAX).min(5);
    let (mut name, mut email, mut json, mut date) =
        (String::new(), String::new(), String::new(), String::new());
    let mut chosen = [0u32; 5];
    for _ in 0..spec.count {
        let rank = zipf_index(&mut rng, &customer_zipf, pool);
        customer(customers.apply(rank) + 1, &mut name, &mut email);

        let wanted = item_count(&mut rng).min(max_items);
        let mut len = 0;
        let mut draws = 0;
        // Distinct skus; after MAX_SKU_DRAWS collisions (tiny catalogs) settle for fewer.
        while len < wanted && (len == 0 || draws < MAX_SKU_DRAWS) {
            draws += 1;
            let n = by_rank[zipf_index(&mut rng, &sku_zipf, products) as usize];
            if !chosen[..len].contains(&n) {
                chosen[len] = n;
                len += 1;
            }
        }
        json.clear();
        json.push('[');
        for (i, n) in chosen[..len].iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            let q = quantity(&mut rng);
            write!(json, r#"{{"sku":"SKU-{n:06}","quantity":{q}}}"#).expect("write to String");
        }
        json.push(']');

        let offset = if span == 0 {
            0
        } else {
            rng.random_range(0..=span)
        };
        // Within the checked window, so the conversion cannot fail.
        let day = NaiveDate::from_num_days_from_ce_opt(first_day + offset as i32)
            .expect("date inside the checked window");
        date.clear();
        write!(
            date,
            "{:04}-{:02}-{:02}",
            day.year(),
            day.month(),
            day.day()
        )
        .expect("write to String");

        w.write_record([&name, &email, &json, &date])?;
    }
    w.flush()
}
