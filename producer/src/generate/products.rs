//! The products generator: catalog items, names, shelf prices (see the parent module).

use std::fmt::Write as _;
use std::io;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{csv_writer, ProductSpec};

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
pub(crate) fn write_products<W: io::Write>(out: W, spec: &ProductSpec) -> io::Result<()> {
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
