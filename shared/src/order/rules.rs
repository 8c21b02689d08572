//! The limits every order row and stream entry respects, and the one meaning of "same
//! customer". The producer's CSV validator and the consumer (which trusts nothing it reads
//! from the stream: anyone who can `XADD` can write an entry) apply these same functions.
//!
//! - **Same customer**: two emails name the same customer exactly when their
//!   [`normalize_email`] forms are the same bytes. MySQL compares `customers.email` with
//!   `utf8mb4_bin` (byte equality), so it never folds two spellings Rust keeps apart
//!   (`jose`/`josé`, `strasse`/`straße`, full-width letters, a soft hyphen, two emoji).
//! - **Entries**: at most [`MAX_ENTRY_BYTES`] of fields and [`MAX_ROWS_PER_ENTRY`] rows;
//!   the producer closes a chunk at [`CHUNK_CLOSE_BYTES`], so it never writes a bigger one.
//! - **Rows** ([`check_row`], through `OrderRow::check`): identity 1–128 characters, name 1–255, a well-formed email
//!   of at most 254, 1–100 items of distinct non-empty skus (≤ 64 characters), quantities
//!   1–10,000. The order's total must fit `orders.total` ([`MAX_ORDER_TOTAL`]).

use std::borrow::Cow;
use std::collections::HashSet;

use crate::money::Cents;

/// Longest identity stored (`orders.identity` is VARCHAR(128)).
pub const MAX_IDENTITY_CHARS: usize = 128;
pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_EMAIL_CHARS: usize = 254;
/// An `order_id` plus `:<import id>` (with `--new`) must fit `orders.identity` (128).
pub const MAX_ORDER_ID_CHARS: usize = 100;
pub const MAX_SKU_CHARS: usize = 64;
pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: u32 = 10_000;
/// Rows in one stream entry (the producer's `--chunk-size` maximum).
pub(crate) const MAX_ROWS_PER_ENTRY: usize = 10_000;
/// Bytes of one stream entry's field names and values; a bigger entry is never decoded.
pub const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;
/// The producer closes a chunk once its rows reach this size; one row is far below the
/// difference to [`MAX_ENTRY_BYTES`] (a row's fields are bounded above).
pub const CHUNK_CLOSE_BYTES: usize = 2 * 1024 * 1024;
/// Largest order total `orders.total` (DECIMAL(14,2)) holds.
pub(crate) const MAX_ORDER_TOTAL: Cents = Cents(99_999_999_999_999);

/// Why a row from the stream can never be processed: a code and a one-line detail. The
/// codes are SPEC's reject codes, plus `duplicate_sku` and `invalid_identity`, which the
/// producer never lets through (it sums duplicates, it derives identities).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct RowViolation {
    pub code: &'static str,
    pub detail: String,
}

fn violation(code: &'static str, detail: impl Into<String>) -> RowViolation {
    RowViolation {
        code,
        detail: detail.into(),
    }
}

/// The single rule for "same customer": the email, lower-cased (Unicode full lower case).
/// Borrowed when already in that form.
pub fn normalize_email(email: &str) -> Cow<'_, str> {
    // One pass over the bytes for the common case: ASCII without upper case.
    let plain = !email
        .bytes()
        .any(|b| b.is_ascii_uppercase() || !b.is_ascii());
    let already = plain
        || email.chars().all(|c| {
            let mut lower = c.to_lowercase();
            lower.next() == Some(c) && lower.next().is_none()
        });
    if already {
        Cow::Borrowed(email)
    } else {
        Cow::Owned(email.to_lowercase())
    }
}

/// A practical email check: `local@domain`, no white space or control characters, a
/// local part of 1–64 characters, a domain of dot-separated non-empty labels with a dot.
pub fn check_email(email: &str) -> Result<(), &'static str> {
    if plainly_valid_ascii_email(email.as_bytes()).is_some() {
        return Ok(());
    }
    check_email_rules(email)
}

/// [`check_email`], then [`normalize_email`]: the address in its one form, or why it is
/// not an address. One pass over the bytes in the common case.
pub fn checked_email(email: &str) -> Result<Cow<'_, str>, &'static str> {
    match plainly_valid_ascii_email(email.as_bytes()) {
        Some(false) => Ok(Cow::Borrowed(email)),
        Some(true) => Ok(Cow::Owned(email.to_ascii_lowercase())),
        None => check_email_rules(email).map(|()| normalize_email(email)),
    }
}

/// Byte classes of [`plainly_valid_ascii_email`].
const EMAIL_OTHER: u8 = 0;
/// White space, control characters, `<>()[]\,;:"`, and every non-ASCII byte (those go
/// to [`check_email_rules`]).
const EMAIL_NOT_PLAIN: u8 = 1;
const EMAIL_AT: u8 = 2;
const EMAIL_DOT: u8 = 3;
const EMAIL_DASH: u8 = 4;
const EMAIL_UPPER: u8 = 5;

const EMAIL_BYTE_CLASS: [u8; 256] = {
    let mut class = [EMAIL_OTHER; 256];
    let mut b = 0;
    while b < 256 {
        if b <= 0x20 || b >= 0x7f {
            class[b] = EMAIL_NOT_PLAIN;
        }
        b += 1;
    }
    let forbidden = b"<>()[]\\,;:\"";
    let mut i = 0;
    while i < forbidden.len() {
        class[forbidden[i] as usize] = EMAIL_NOT_PLAIN;
        i += 1;
    }
    class[b'@' as usize] = EMAIL_AT;
    class[b'.' as usize] = EMAIL_DOT;
    class[b'-' as usize] = EMAIL_DASH;
    let mut upper = b'A';
    while upper <= b'Z' {
        class[upper as usize] = EMAIL_UPPER;
        upper += 1;
    }
    class
};

/// `Some(has upper case)` when `email` is ASCII and meets every rule of
/// [`check_email_rules`], decided in one pass over its bytes (the common case, millions of
/// times per import). `None` means "not decided here": the rules then run as written,
/// and name what is wrong.
fn plainly_valid_ascii_email(email: &[u8]) -> Option<bool> {
    // `prev` is the byte before, or 0 at the start of the local part and of the domain.
    let (mut at, mut prev, mut domain_dots, mut upper) = (false, 0u8, 0usize, false);
    for (i, &b) in email.iter().enumerate() {
        match EMAIL_BYTE_CLASS[usize::from(b)] {
            EMAIL_NOT_PLAIN => return None,
            EMAIL_AT => {
                // One @, a local part of 1 to 64 bytes not ending with a dot.
                if at || i == 0 || i > 64 || prev == b'.' {
                    return None;
                }
                (at, prev) = (true, 0);
                continue;
            }
            // No part starts with a dot or holds "..", no domain label ends with -.
            EMAIL_DOT if prev == 0 || prev == b'.' || (at && prev == b'-') => return None,
            EMAIL_DOT if at => domain_dots += 1,
            // No domain label starts with -.
            EMAIL_DASH if at && (prev == 0 || prev == b'.') => return None,
            EMAIL_UPPER => upper = true,
            _ => {}
        }
        prev = b;
    }
    (at && domain_dots > 0 && !matches!(prev, 0 | b'.' | b'-')).then_some(upper)
}

/// [`check_email`]'s rules, in the order their errors are reported.
fn check_email_rules(email: &str) -> Result<(), &'static str> {
    let (local, domain) = email.rsplit_once('@').ok_or("no @")?;
    if local.is_empty() || (local.len() > 64 && local.chars().count() > 64) {
        return Err("the part before @ must be 1 to 64 characters");
    }
    if local.contains('@') {
        return Err("more than one @");
    }
    let forbidden = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '<' | '>' | '(' | ')' | '[' | ']' | '\\' | ',' | ';' | ':' | '"'
            )
    };
    let bad = if email.is_ascii() {
        email.bytes().any(|b| forbidden(char::from(b)))
    } else {
        email.chars().any(forbidden)
    };
    if bad {
        return Err("white space or a character not allowed in an address");
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err("misplaced dot before @");
    }
    if !domain.contains('.') || domain.split('.').any(|label| label.is_empty()) {
        return Err("the domain must be like example.com");
    }
    if domain
        .split('.')
        .any(|label| label.starts_with('-') || label.ends_with('-'))
    {
        return Err("a domain label starts or ends with -");
    }
    Ok(())
}

/// True when `s` has more than `max` characters (counts only when it could matter).
pub fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

/// One sku: not empty, at most [`MAX_SKU_CHARS`] characters, no NUL byte.
pub fn check_sku(sku: &str) -> Result<(), RowViolation> {
    if sku.trim().is_empty() {
        return Err(violation("invalid_products", "sku is missing or empty"));
    }
    if longer_than(sku, MAX_SKU_CHARS) {
        return Err(violation(
            "field_too_long",
            format!("sku is longer than {MAX_SKU_CHARS} characters"),
        ));
    }
    if sku.contains('\0') {
        return Err(violation("invalid_products", "sku holds a NUL byte"));
    }
    Ok(())
}

/// A quantity of one sku in one order: a whole number from 1 to [`MAX_QUANTITY`].
pub fn quantity_allowed(quantity: u64) -> bool {
    (1..=u64::from(MAX_QUANTITY)).contains(&quantity)
}

/// Checks a row read from the stream against every limit the producer enforces (see the
/// module documentation), given its fields (`items`: sku and quantity of each line; see
/// `OrderRow::check`). The email must already be in [`normalize_email`] form.
pub(crate) fn check_row<'a>(
    identity: &str,
    customer_name: &str,
    customer_email: &str,
    items: impl ExactSizeIterator<Item = (&'a str, u32)>,
) -> Result<(), RowViolation> {
    if identity.is_empty() || longer_than(identity, MAX_IDENTITY_CHARS) {
        return Err(violation(
            "invalid_identity",
            format!("identity must be 1 to {MAX_IDENTITY_CHARS} characters"),
        ));
    }
    if customer_name.trim().is_empty() || customer_email.is_empty() {
        return Err(violation(
            "missing_field",
            "customer name or email is empty",
        ));
    }
    if longer_than(customer_name, MAX_NAME_CHARS) {
        return Err(violation(
            "field_too_long",
            format!("customer_name is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if longer_than(customer_email, MAX_EMAIL_CHARS) {
        return Err(violation(
            "field_too_long",
            format!("customer_email is longer than {MAX_EMAIL_CHARS} characters"),
        ));
    }
    if customer_name.contains('\0') {
        return Err(violation("malformed_row", "customer_name holds a NUL byte"));
    }
    check_email(customer_email).map_err(|why| violation("invalid_email", why))?;
    if normalize_email(customer_email) != customer_email {
        return Err(violation(
            "invalid_email",
            "customer_email is not lower-cased",
        ));
    }
    let count = items.len();
    if count == 0 {
        return Err(violation("invalid_products", "the order has no item"));
    }
    if count > MAX_ITEMS {
        return Err(violation(
            "too_many_items",
            format!("{count} items, at most {MAX_ITEMS}"),
        ));
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(count);
    for (sku, quantity) in items {
        check_sku(sku)?;
        if !quantity_allowed(u64::from(quantity)) {
            return Err(violation(
                "invalid_quantity",
                format!(
                    "sku {}: quantity {} is not a whole number from 1 to {MAX_QUANTITY}",
                    sku, quantity
                ),
            ));
        }
        if !seen.insert(sku) {
            return Err(violation(
                "duplicate_sku",
                format!("sku {} appears twice (the producer sums them)", sku),
            ));
        }
    }
    Ok(())
}

/// `price × quantity` added to `total`, or `None` when it overflows or passes
/// [`MAX_ORDER_TOTAL`].
pub(crate) fn add_line(total: Cents, price: Cents, quantity: u32) -> Option<Cents> {
    price
        .checked_mul(i64::from(quantity))
        .and_then(|line| total.checked_add(line))
        .filter(|t| *t <= MAX_ORDER_TOTAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{OrderIdentity, OrderItem, OrderRow};

    fn row(email: &str, items: &[(&str, u32)]) -> OrderRow {
        OrderRow {
            identity: OrderIdentity::from_order_id("A-1"),
            line: 2,
            customer_name: "Ann".into(),
            customer_email: email.into(),
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

    fn code(r: &OrderRow) -> Option<&'static str> {
        r.check().err().map(|v| v.code)
    }

    #[test]
    fn a_valid_row_passes() {
        assert_eq!(code(&row("a@b.co", &[("A", 1), ("B", 10_000)])), None);
    }

    #[test]
    fn each_limit_has_its_code() {
        assert_eq!(code(&row("a@b.co", &[])), Some("invalid_products"));
        let many: Vec<(String, u32)> = (0..101).map(|i| (format!("S{i}"), 1)).collect();
        let many: Vec<(&str, u32)> = many.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        assert_eq!(code(&row("a@b.co", &many)), Some("too_many_items"));
        assert_eq!(code(&row("a@b.co", &[("A", 0)])), Some("invalid_quantity"));
        assert_eq!(
            code(&row("a@b.co", &[("A", 1_073_741_824)])),
            Some("invalid_quantity")
        );
        assert_eq!(
            code(&row("a@b.co", &[("A", 1), ("A", 1)])),
            Some("duplicate_sku")
        );
        assert_eq!(code(&row("a@b.co", &[("", 1)])), Some("invalid_products"));
        let long_sku = "S".repeat(65);
        assert_eq!(
            code(&row("a@b.co", &[(&long_sku, 1)])),
            Some("field_too_long")
        );
        assert_eq!(
            code(&row("not-an-email", &[("A", 1)])),
            Some("invalid_email")
        );
        assert_eq!(code(&row("Ann@b.co", &[("A", 1)])), Some("invalid_email"));
        let mut r = row("a@b.co", &[("A", 1)]);
        r.identity = OrderIdentity("x".repeat(129));
        assert_eq!(code(&r), Some("invalid_identity"));
        r.identity = OrderIdentity(String::new());
        assert_eq!(code(&r), Some("invalid_identity"));
        let mut r = row("a@b.co", &[("A", 1)]);
        r.customer_name = "n".repeat(256);
        assert_eq!(code(&r), Some("field_too_long"));
    }

    #[test]
    fn emails_are_lower_cased_once_and_nothing_else_is_folded() {
        assert_eq!(normalize_email("ANN@Example.COM"), "ann@example.com");
        assert!(matches!(normalize_email("ann@x.de"), Cow::Borrowed(_)));
        assert_eq!(normalize_email("JOSÉ@x.de"), "josé@x.de");
        assert_eq!(normalize_email("Ｊｏｓｅ@x.de"), "ｊｏｓｅ@x.de");
        // Distinct spellings stay distinct: no accent, width, ß or ignorable folding.
        for (a, b) in [
            ("jose@x.de", "josé@x.de"),
            ("strasse@x.de", "straße@x.de"),
            ("jose@x.de", "ｊｏｓｅ@x.de"),
            ("jose@x.de", "jo\u{ad}se@x.de"),
            ("😀@x.de", "😃@x.de"),
        ] {
            assert_ne!(normalize_email(a), normalize_email(b), "{a} vs {b}");
        }
        for e in ["josé@x.de", "ｊｏｓｅ@x.de", "İx@x.de"] {
            let once = normalize_email(e).into_owned();
            assert_eq!(normalize_email(&once), once.as_str(), "idempotent for {e}");
        }
    }

    #[test]
    fn totals_are_checked() {
        assert_eq!(add_line(Cents(100), Cents(250), 4), Some(Cents(1100)));
        // The case: 171,798,691.84 × 1,073,741,824 wrapped to 0.00 unchecked.
        assert_eq!(
            add_line(Cents::ZERO, Cents(17_179_869_184), 1_073_741_824),
            None
        );
        assert_eq!(add_line(Cents::ZERO, Cents(999_999_999_999), 10_000), None);
        assert_eq!(add_line(MAX_ORDER_TOTAL, Cents(1), 1), None);
        assert_eq!(add_line(Cents(i64::MAX), Cents(1), 1), None);
    }

    #[test]
    fn emails() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "josé@exämple.de",
        ] {
            assert_eq!(check_email(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "@b.co",
            "a@",
            "a@b",
            "a@.b.co",
            "a..b@c.de",
            "a@b@c.de",
            "a@-b.co",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_one_pass_email_check_accepts_exactly_what_the_rules_accept() {
        let at_the_limits = [
            format!("{}@b.co", "a".repeat(64)),
            format!("{}@b.co", "a".repeat(65)),
            "a-@b-c.d-e".to_string(),
            "a.b@c.d".to_string(),
            "a@b-.co".to_string(),
            "a@b.-co".to_string(),
            "a@b.co-".to_string(),
            "a@b.co.".to_string(),
            "a.@b.co".to_string(),
            ".a@b.co".to_string(),
            "a@b..co".to_string(),
            "a b@c.de".to_string(),
            "a\t@c.de".to_string(),
            "a\x7f@c.de".to_string(),
            "a\"@c.de".to_string(),
        ];
        for email in &at_the_limits {
            let fast = plainly_valid_ascii_email(email.as_bytes()).is_some();
            assert_eq!(fast, check_email_rules(email).is_ok(), "{email:?}");
        }
    }

    proptest::proptest! {
        /// On ASCII the one pass decides alone (it never sends a valid address to the slow
        /// path); on anything else it never accepts what the rules reject.
        #[test]
        fn the_one_pass_email_check_agrees_with_the_rules(
            email in "[aB.@\\-<:\" \t\x7féÉ]{0,12}|[a-zA-Z]{1,3}[.-]?[a-z]{0,3}@[a-zA-Z-]{0,3}[.][a-z.-]{0,4}"
        ) {
            let fast = plainly_valid_ascii_email(email.as_bytes()).is_some();
            let rules = check_email_rules(&email).is_ok();
            if email.is_ascii() {
                proptest::prop_assert_eq!(fast, rules);
            } else {
                proptest::prop_assert!(!fast || rules);
            }
            proptest::prop_assert_eq!(check_email(&email).is_ok(), rules);
            let normalized = rules.then(|| normalize_email(&email));
            proptest::prop_assert_eq!(checked_email(&email).ok(), normalized);
        }
    }
}
