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

use std::fmt::Write as _;
use std::io;

use chrono::{Datelike, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

/// What `write_products` generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSpec {
    /// Number of products: skus `SKU-000001` … `SKU-<count>`.
    pub count: u32,
    /// `stock_quantity` of every product.
    pub stock: u32,
    pub seed: u64,
}

/// What `write_orders` generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSpec {
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

/// The sku of product number `n`: `sku(1) == "SKU-000001"` (more digits past 999,999).
pub fn sku(n: u32) -> String {
    format!("SKU-{n:06}")
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

fn csv_writer<W: io::Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .buffer_capacity(WRITE_BUFFER)
        .from_writer(out)
}

// ---------------------------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------------------------

/// The kinds of catalog items; each has its own qualifiers and variants.
#[derive(Clone, Copy)]
enum Kind {
    Food,
    Drink,
    Apparel,
    Screen,
    Electronics,
    Home,
    Toy,
}

impl Kind {
    fn qualifiers(self) -> &'static [&'static str] {
        match self {
            Kind::Food | Kind::Drink => &["", "", "Organic ", "Artisan ", "Fair-Trade ", "Bio "],
            Kind::Apparel => &["", "", "Classic ", "Slim-Fit ", "Merino ", "Vintage "],
            Kind::Screen => &["", "IPS ", "4K ", "Gaming ", "Ultra-Wide "],
            Kind::Electronics => &["", "", "Pro ", "Compact ", "Wireless "],
            Kind::Home => &["", "", "Nordic ", "Handmade ", "Vintage "],
            Kind::Toy => &["", "", "Wooden ", "Deluxe ", "Mini "],
        }
    }

    fn variants(self) -> &'static [&'static str] {
        match self {
            Kind::Food => &[" 100g", " 250g", " 500g", " 1kg", ", 2 × 250g"],
            Kind::Drink => &[" 250ml", " 500ml", " 1L", ", 6-pack", " 0,75L"],
            Kind::Apparel => &[
                ", Size S",
                ", Size M",
                ", Size L",
                ", Size XL",
                " (Navy)",
                " (Bordeaux)",
            ],
            Kind::Screen => &[" 24\"", " 27\"", " 32\"", " 34\" Curved"],
            Kind::Electronics | Kind::Home => &[
                "",
                " – Black",
                " – White",
                " – Grün",
                " (Rosé Gold)",
                ", Set of 2",
            ],
            Kind::Toy => &["", " Junior", ", Ages 3+", ", \"Limited Edition\""],
        }
    }
}

/// Base items: name, kind, price range in cents (inclusive, within 50..=99_999).
const BASES: &[(&str, Kind, u32, u32)] = &[
    ("Café Crème", Kind::Food, 349, 1_899),
    ("Earl Grey Tea", Kind::Food, 299, 1_499),
    ("Jalapeño Salsa", Kind::Food, 199, 699),
    ("Pâté de Campagne", Kind::Food, 249, 999),
    ("Crème Brûlée Mix", Kind::Food, 199, 799),
    ("Dark Chocolate 70%", Kind::Food, 149, 899),
    ("Peanut Butter, Crunchy", Kind::Food, 249, 899),
    ("Muesli", Kind::Food, 199, 799),
    ("Basmati Rice", Kind::Food, 149, 1_299),
    ("Smørrebrød Rye Bread", Kind::Food, 249, 699),
    ("Dulce de Leche", Kind::Food, 299, 899),
    ("Lebkuchen", Kind::Food, 199, 1_199),
    ("Açaí Powder", Kind::Food, 699, 2_999),
    ("Matcha Powder", Kind::Food, 999, 4_999),
    ("Chewing Gum", Kind::Food, 50, 299),
    ("Apple Juice", Kind::Drink, 99, 599),
    ("Mineral Water", Kind::Drink, 50, 499),
    ("Kombucha", Kind::Drink, 249, 1_299),
    ("Oat Milk", Kind::Drink, 149, 899),
    ("Piña Colada Mix", Kind::Drink, 399, 1_499),
    ("Horchata", Kind::Drink, 249, 999),
    ("T-Shirt", Kind::Apparel, 999, 3_999),
    ("Hoodie", Kind::Apparel, 2_999, 8_999),
    ("Rain Jacket", Kind::Apparel, 4_999, 24_999),
    ("Wool Socks", Kind::Apparel, 799, 2_499),
    ("Chino Trousers", Kind::Apparel, 3_999, 9_999),
    ("Beanie", Kind::Apparel, 999, 3_499),
    ("Lederhosen", Kind::Apparel, 9_999, 39_999),
    ("Monitor", Kind::Screen, 12_999, 99_999),
    ("Bluetooth Speaker", Kind::Electronics, 1_999, 29_999),
    (
        "Noise-Cancelling Headphones",
        Kind::Electronics,
        4_999,
        44_999,
    ),
    ("Mechanical Keyboard", Kind::Electronics, 3_999, 24_999),
    ("USB-C Charger 65W", Kind::Electronics, 1_499, 6_999),
    ("Smart Plug", Kind::Electronics, 999, 3_999),
    ("E-Reader", Kind::Electronics, 7_999, 29_999),
    ("Kühlschrank-Magnet", Kind::Home, 99, 699),
    ("Espresso Cup", Kind::Home, 499, 2_499),
    ("Cast-Iron Skillet", Kind::Home, 1_999, 8_999),
    ("Throw Pillow", Kind::Home, 1_499, 5_999),
    ("Crème Brûlée Torch", Kind::Home, 1_499, 4_999),
    ("Scented Candle \"Forêt\"", Kind::Home, 799, 3_999),
    ("Bamboo Cutting Board", Kind::Home, 999, 4_499),
    ("Duvet Cover, 200×200", Kind::Home, 2_999, 14_999),
    ("Garden Hose 25m", Kind::Home, 1_999, 7_999),
    ("Jigsaw Puzzle 1000 pcs", Kind::Toy, 999, 3_999),
    ("Train Set", Kind::Toy, 1_999, 14_999),
    ("Plush Bear \"Knut\"", Kind::Toy, 999, 4_999),
    ("Building Blocks", Kind::Toy, 1_499, 19_999),
    ("Yo-Yo", Kind::Toy, 199, 1_499),
];

fn pick<T: Copy>(rng: &mut impl Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// A price in cents within `min..=max`, ending in .99 most of the time like a real shelf.
fn price_cents(rng: &mut impl Rng, min: u32, max: u32) -> u32 {
    let cents = rng.random_range(min..=max);
    let shelf = cents / 100 * 100 + 99;
    if rng.random_bool(0.6) && (min..=max).contains(&shelf) {
        shelf
    } else {
        cents
    }
}

/// Writes the products CSV (`sku,name,price,stock_quantity`) described by `spec`.
///
/// # Errors
/// Whatever writing to `out` returns.
pub fn write_products<W: io::Write>(out: W, spec: &ProductSpec) -> io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x7072_6f64_7563_7473); // "products"
    let mut w = csv_writer(out);
    w.write_record(["sku", "name", "price", "stock_quantity"])?;

    let stock = spec.stock.to_string();
    let (mut sku_buf, mut name, mut price) = (String::new(), String::new(), String::new());
    for n in 1..=spec.count {
        let (base, kind, min, max) = pick(&mut rng, BASES);
        name.clear();
        name.push_str(pick(&mut rng, kind.qualifiers()));
        name.push_str(base);
        name.push_str(pick(&mut rng, kind.variants()));

        let cents = price_cents(&mut rng, min, max);
        price.clear();
        write!(price, "{}.{:02}", cents / 100, cents % 100).expect("write to String");

        sku_buf.clear();
        write!(sku_buf, "SKU-{n:06}").expect("write to String");
        w.write_record([&sku_buf, &name, &price, &stock])?;
    }
    w.flush()
}

// ---------------------------------------------------------------------------------------------
// Customers
// ---------------------------------------------------------------------------------------------

/// A name part and its lower-case ASCII transliteration for the email.
type Part = (&'static str, &'static str);

struct Culture {
    given: &'static [Part],
    family: &'static [Part],
    /// Family name first (`山田 太郎`).
    family_first: bool,
}

const WESTERN_GIVEN: &[Part] = &[
    ("José", "jose"),
    ("Zoë", "zoe"),
    ("Łukasz", "lukasz"),
    ("Anna", "anna"),
    ("Björn", "bjorn"),
    ("François", "francois"),
    ("Søren", "soren"),
    ("Mary", "mary"),
    ("John", "john"),
    ("Emma", "emma"),
    ("Liam", "liam"),
    ("Olivia", "olivia"),
    ("Noah", "noah"),
    ("Chloé", "chloe"),
    ("Ramón", "ramon"),
    ("Małgorzata", "malgorzata"),
    ("Jürgen", "jurgen"),
    ("Siobhán", "siobhan"),
    ("Seán", "sean"),
    ("Ingrid", "ingrid"),
    ("Mohammed", "mohammed"),
    ("Fatima", "fatima"),
    ("Priya", "priya"),
    ("Hélène", "helene"),
    ("Dmitri", "dmitri"),
    ("Agnieszka", "agnieszka"),
    ("Çağla", "cagla"),
    ("Øystein", "oystein"),
    ("Renée", "renee"),
    ("Michael", "michael"),
    ("Sarah", "sarah"),
    ("David", "david"),
    ("Laura", "laura"),
    ("Sofía", "sofia"),
    ("Robert \"Bob\"", "bob"),
];

const WESTERN_FAMILY: &[Part] = &[
    ("Álvarez", "alvarez"),
    ("Müller", "muller"),
    ("Wójcik", "wojcik"),
    ("O'Brien", "obrien"),
    ("Smith, Jr.", "smith"),
    ("García", "garcia"),
    ("Núñez", "nunez"),
    ("Schröder", "schroder"),
    ("Dvořák", "dvorak"),
    ("Kowalski", "kowalski"),
    ("Johansson", "johansson"),
    ("Østergaard", "ostergaard"),
    ("Lefèvre", "lefevre"),
    ("D'Angelo", "dangelo"),
    ("McAllister", "mcallister"),
    ("van der Berg", "vanderberg"),
    ("Nguyễn", "nguyen"),
    ("Yılmaz", "yilmaz"),
    ("Brown", "brown"),
    ("Johnson", "johnson"),
    ("Williams", "williams"),
    ("Taylor", "taylor"),
    ("Martin", "martin"),
    ("Rossi", "rossi"),
    ("Novák", "novak"),
    ("Horváth", "horvath"),
    ("Sánchez", "sanchez"),
    ("Gonçalves", "goncalves"),
    ("Patel", "patel"),
    ("Cohen", "cohen"),
    ("Ivanov", "ivanov"),
    ("Lindqvist", "lindqvist"),
    ("Nowak", "nowak"),
    ("Jones", "jones"),
];

const CULTURES: &[Culture] = &[
    Culture {
        given: WESTERN_GIVEN,
        family: WESTERN_FAMILY,
        family_first: false,
    },
    Culture {
        given: &[
            ("太郎", "taro"),
            ("花子", "hanako"),
            ("健", "ken"),
            ("美咲", "misaki"),
            ("翔太", "shota"),
        ],
        family: &[
            ("山田", "yamada"),
            ("佐藤", "sato"),
            ("鈴木", "suzuki"),
            ("田中", "tanaka"),
            ("高橋", "takahashi"),
        ],
        family_first: true,
    },
    Culture {
        given: &[
            ("伟", "wei"),
            ("芳", "fang"),
            ("秀英", "xiuying"),
            ("明", "ming"),
        ],
        family: &[
            ("王", "wang"),
            ("李", "li"),
            ("张", "zhang"),
            ("陈", "chen"),
        ],
        family_first: true,
    },
    Culture {
        given: &[("민준", "minjun"), ("서연", "seoyeon"), ("지호", "jiho")],
        family: &[("김", "kim"), ("이", "lee"), ("박", "park")],
        family_first: true,
    },
];

/// SplitMix64: a fixed, seed-independent scramble of the customer number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes customer `n`'s display name and email into the (cleared) buffers.
fn customer(n: u64, name: &mut String, email: &mut String) {
    let h = mix(n);
    // 85 % western names, 5 % each Japanese, Chinese, Korean.
    let culture = match h % 100 {
        0..85 => &CULTURES[0],
        85..90 => &CULTURES[1],
        90..95 => &CULTURES[2],
        _ => &CULTURES[3],
    };
    let h = h / 100;
    let given = culture.given[(h % culture.given.len() as u64) as usize];
    let h = h / culture.given.len() as u64;
    let family = culture.family[(h % culture.family.len() as u64) as usize];

    name.clear();
    let (first, second) = if culture.family_first {
        (family.0, given.0)
    } else {
        (given.0, family.0)
    };
    name.push_str(first);
    name.push(' ');
    name.push_str(second);

    email.clear();
    write!(email, "{}.{}.{n}@example.com", given.1, family.1).expect("write to String");
}

// ---------------------------------------------------------------------------------------------
// Orders
// ---------------------------------------------------------------------------------------------

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
pub fn write_orders<W: io::Write>(out: W, spec: &OrderSpec) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::time::Instant;

    use super::*;

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
}
