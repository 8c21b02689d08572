//! The rules of the orders CSV (SPEC "Orders CSV"), as pure functions over one record.
//!
//! [`Columns::from_header`] finds the columns (case-insensitive, any order, extra columns
//! ignored) or refuses the file; [`validate_row`] turns one record into a [`ValidRow`]
//! borrowed from it, or a [`Reject`] with its reason code. Checks run in a fixed order, so
//! a row breaking several rules always gets the same reason:
//!
//! 1. `malformed_row`: field count differs from the header's, invalid UTF-8 or a NUL byte
//!    in a column we read, or a record too long or too wide to read;
//! 2. `missing_field`: `customer_name`, `customer_email` or `products` empty;
//! 3. `field_too_long`: name > 255, email > 254, order_id > 100 characters, products
//!    > 16 KiB, a sku > 64 characters;
//! 4. `invalid_email`, 5. `invalid_order_date`, 6. `invalid_products` (not a JSON array
//!    of objects with a non-empty string `sku`, or empty), `too_many_items` (> 100),
//!    `invalid_quantity` (not a whole number 1–10000, also once summed per sku);
//! 7. `duplicate_order_id` is decided by the caller, which sees the whole file.
//!
//! Fields are trimmed of surrounding white space; the email is lower-cased (customers are
//! found by email case-insensitively).

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use oms_shared::order::OrderItemRef;

use super::products_canonical::ProductItems;
use super::reader::{Oversize, Record};

// The limits and the email rules are shared with the consumer, which checks every row it
// reads from the stream against the same ones.
pub use oms_shared::order::rules::{
    check_email, MAX_EMAIL_CHARS, MAX_ITEMS, MAX_NAME_CHARS, MAX_ORDER_ID_CHARS, MAX_QUANTITY,
    MAX_SKU_CHARS,
};
use oms_shared::order::rules::{check_sku, checked_email, longer_than, quantity_allowed};
pub const MAX_PRODUCTS_BYTES: usize = 16 * 1024;
/// Columns a header may have.
pub const MAX_COLUMNS: usize = 1024;

/// SPEC's reject reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    MissingField,
    InvalidEmail,
    InvalidProducts,
    InvalidQuantity,
    TooManyItems,
    FieldTooLong,
    InvalidOrderDate,
    DuplicateOrderId,
    MalformedRow,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        RejectReason::MissingField,
        RejectReason::InvalidEmail,
        RejectReason::InvalidProducts,
        RejectReason::InvalidQuantity,
        RejectReason::TooManyItems,
        RejectReason::FieldTooLong,
        RejectReason::InvalidOrderDate,
        RejectReason::DuplicateOrderId,
        RejectReason::MalformedRow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MissingField => "missing_field",
            RejectReason::InvalidEmail => "invalid_email",
            RejectReason::InvalidProducts => "invalid_products",
            RejectReason::InvalidQuantity => "invalid_quantity",
            RejectReason::TooManyItems => "too_many_items",
            RejectReason::FieldTooLong => "field_too_long",
            RejectReason::InvalidOrderDate => "invalid_order_date",
            RejectReason::DuplicateOrderId => "duplicate_order_id",
            RejectReason::MalformedRow => "malformed_row",
        }
    }
}

/// Why a row was rejected: the code and a one-line detail naming the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Reject {
    Reject {
        reason,
        detail: detail.into(),
    }
}

/// Where the columns are, by header position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub customer_name: usize,
    pub customer_email: usize,
    pub products: usize,
    pub order_id: Option<usize>,
    pub order_date: Option<usize>,
    /// Every header name, as written (for error details).
    pub names: Vec<String>,
}

/// Why a header refuses the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file is empty: a header row is required")]
    Empty,
    #[error("line 1: the header is not valid UTF-8")]
    NotUtf8,
    #[error("line 1: the header is too long or has more than {MAX_COLUMNS} columns")]
    TooLarge,
    #[error("line 1: required column {0} is missing (the header has: {1})")]
    MissingColumn(&'static str, String),
    #[error("line 1: column {0} appears twice")]
    DuplicateColumn(String),
}

impl Columns {
    /// Finds the columns in a header record.
    pub fn from_header(header: &Record<'_>) -> Result<Columns, HeaderError> {
        if header.oversize.is_some() {
            return Err(HeaderError::TooLarge);
        }
        let mut names = Vec::with_capacity(header.len());
        for i in 0..header.len() {
            let raw = header.field(i).unwrap_or_default();
            let name = std::str::from_utf8(raw).map_err(|_| HeaderError::NotUtf8)?;
            names.push(name.trim().to_string());
        }
        let find = |wanted: &str| -> Result<Option<usize>, HeaderError> {
            let mut found = names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.eq_ignore_ascii_case(wanted));
            let first = found.next().map(|(i, _)| i);
            if found.next().is_some() {
                return Err(HeaderError::DuplicateColumn(wanted.to_string()));
            }
            Ok(first)
        };
        let required = |wanted: &'static str| -> Result<usize, HeaderError> {
            find(wanted)?.ok_or_else(|| HeaderError::MissingColumn(wanted, names.join(",")))
        };
        Ok(Columns {
            customer_name: required("customer_name")?,
            customer_email: required("customer_email")?,
            products: required("products")?,
            order_id: find("order_id")?,
            order_date: find("order_date")?,
            names: names.clone(),
        })
    }

    fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("?")
    }
}

/// A row that passed every rule, borrowed from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRow<'a> {
    pub customer_name: &'a str,
    /// Lower-cased.
    pub customer_email: Cow<'a, str>,
    pub order_id: Option<&'a str>,
    /// Distinct skus, in order of first appearance, quantities summed.
    pub items: ProductItems<'a>,
    pub order_date: Option<DateTime<Utc>>,
}

/// A record's data checked once for every field: UTF-8 and free of NUL bytes.
struct RecordText<'a> {
    /// The whole data as text, when it is UTF-8 and holds no NUL byte.
    plain: Option<&'a str>,
}

impl<'a> RecordText<'a> {
    fn new(record: &Record<'a>) -> Self {
        let data = record.data();
        let plain = std::str::from_utf8(data)
            .ok()
            .filter(|_| !data.contains(&0));
        RecordText { plain }
    }
}

/// `s.trim()`, without decoding a character when both ends are visible ASCII (the
/// common case).
fn trimmed(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Text of column `i`, trimmed; a malformed-row reject when it is not UTF-8 or holds NUL.
fn text<'a>(
    record: &Record<'a>,
    whole: &RecordText<'a>,
    columns: &Columns,
    i: usize,
) -> Result<&'a str, Reject> {
    // The common case: a field of data already checked (its range may still split a
    // character between two fields, which `get` refuses; the field's own check then runs).
    if let Some(s) = whole
        .plain
        .zip(record.field_range(i))
        .and_then(|(all, range)| all.get(range))
    {
        return Ok(trimmed(s));
    }
    let raw = record.field(i).unwrap_or_default();
    let s = std::str::from_utf8(raw).map_err(|e| {
        reject(
            RejectReason::MalformedRow,
            format!(
                "column {}: invalid UTF-8 at byte {}",
                columns.name(i),
                e.valid_up_to()
            ),
        )
    })?;
    if s.contains('\0') {
        return Err(reject(
            RejectReason::MalformedRow,
            format!("column {}: NUL byte", columns.name(i)),
        ));
    }
    Ok(s.trim())
}

/// Validates one data record (see the module documentation for the order of the rules).
// Long on purpose: the column checks in the documented order (docs/interface.md, CSV
// rules), a few lines each, so the first error reported is the documented one.
pub fn validate_row<'a>(record: &Record<'a>, columns: &Columns) -> Result<ValidRow<'a>, Reject> {
    match record.oversize {
        Some(Oversize::TooLong { column }) => {
            return Err(reject(
                RejectReason::FieldTooLong,
                format!(
                    "record too long to read (in column {})",
                    columns.name(column)
                ),
            ))
        }
        Some(Oversize::TooManyFields) => {
            return Err(reject(
                RejectReason::MalformedRow,
                format!("more fields than the header's {}", columns.names.len()),
            ))
        }
        None => {}
    }
    if record.len() != columns.names.len() {
        return Err(reject(
            RejectReason::MalformedRow,
            format!(
                "{} fields where the header has {}",
                record.len(),
                columns.names.len()
            ),
        ));
    }
    let whole = RecordText::new(record);
    let name = text(record, &whole, columns, columns.customer_name)?;
    let email = text(record, &whole, columns, columns.customer_email)?;
    let products = text(record, &whole, columns, columns.products)?;
    let order_id = match columns.order_id {
        Some(i) => Some(text(record, &whole, columns, i)?).filter(|s| !s.is_empty()),
        None => None,
    };
    let order_date = match columns.order_date {
        Some(i) => Some(text(record, &whole, columns, i)?).filter(|s| !s.is_empty()),
        None => None,
    };

    for (value, column) in [
        (name, "customer_name"),
        (email, "customer_email"),
        (products, "products"),
    ] {
        if value.is_empty() {
            return Err(reject(
                RejectReason::MissingField,
                format!("column {column} is empty"),
            ));
        }
    }
    let too_long = |column: &str, max: usize, unit: &str| {
        reject(
            RejectReason::FieldTooLong,
            format!("column {column} is longer than {max} {unit}"),
        )
    };
    if longer_than(name, MAX_NAME_CHARS) {
        return Err(too_long("customer_name", MAX_NAME_CHARS, "characters"));
    }
    if longer_than(email, MAX_EMAIL_CHARS) {
        return Err(too_long("customer_email", MAX_EMAIL_CHARS, "characters"));
    }
    if order_id.is_some_and(|id| longer_than(id, MAX_ORDER_ID_CHARS)) {
        return Err(too_long("order_id", MAX_ORDER_ID_CHARS, "characters"));
    }
    if products.len() > MAX_PRODUCTS_BYTES {
        return Err(too_long("products", MAX_PRODUCTS_BYTES, "bytes"));
    }
    let customer_email = checked_email(email).map_err(|why| {
        reject(
            RejectReason::InvalidEmail,
            format!("customer_email {email:?}: {why}"),
        )
    })?;
    let order_date = match order_date {
        Some(text) => Some(parse_order_date(text).ok_or_else(|| {
            reject(
                RejectReason::InvalidOrderDate,
                format!("order_date {text:?} is not YYYY-MM-DD or RFC 3339"),
            )
        })?),
        None => None,
    };
    let items = parse_products(products)?;
    Ok(ValidRow {
        customer_name: name,
        customer_email,
        order_id,
        items,
        order_date,
    })
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339 (converted to UTC); years 1000–9999 (MySQL's
/// DATETIME range).
pub fn parse_order_date(text: &str) -> Option<DateTime<Utc>> {
    let instant = if let Some(date) = strict_ymd(text) {
        date.and_hms_opt(0, 0, 0)?.and_utc()
    } else if text.len() == 10 {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0)?
            .and_utc()
    } else {
        DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc)
    };
    use chrono::Datelike;
    (1000..=9999).contains(&instant.year()).then_some(instant)
}

/// `DDDD-DD-DD` read without chrono's format parser (the common case, millions of times);
/// `None` when the text is not exactly that shape or not a date (chrono then decides).
fn strict_ymd(text: &str) -> Option<NaiveDate> {
    let b: &[u8; 10] = text.as_bytes().try_into().ok()?;
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    NaiveDate::from_ymd_opt(
        i32::try_from(number(&b[0..4])?).ok()?,
        number(&b[5..7])?,
        number(&b[8..10])?,
    )
}

/// One element of the `products` array as written; anything else in it is ignored.
#[derive(serde::Deserialize)]
struct ProductEntry<'a> {
    #[serde(borrow, default)]
    sku: Option<Cow<'a, str>>,
    #[serde(default)]
    quantity: Option<serde_json::Value>,
}

/// Parses and checks `products`: distinct skus in order of first appearance, quantities
/// summed per sku. Skus stay borrowed from the record unless written with JSON escapes.
pub fn parse_products(text: &str) -> Result<ProductItems<'_>, Reject> {
    match super::products_canonical::canonical_products(text) {
        Some(items) => Ok(items),
        None => parse_products_serde(text),
    }
}

/// [`parse_products`] through serde: any JSON, every error named.
pub(super) fn parse_products_serde(text: &str) -> Result<ProductItems<'_>, Reject> {
    let invalid = |detail: String| reject(RejectReason::InvalidProducts, detail);
    let entries: Vec<ProductEntry> = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "products is not a JSON array of {{\"sku\",\"quantity\"}}: {e}"
        ))
    })?;
    if entries.is_empty() {
        return Err(invalid("products has no item".into()));
    }
    if entries.len() > MAX_ITEMS {
        return Err(reject(
            RejectReason::TooManyItems,
            format!("products has {} items, at most {MAX_ITEMS}", entries.len()),
        ));
    }
    let mut items: Vec<(Cow<str>, u64)> = Vec::with_capacity(entries.len());
    for (n, entry) in entries.into_iter().enumerate() {
        let position = n + 1;
        let sku = entry.sku.unwrap_or_default();
        if let Err(v) = check_sku(&sku) {
            let reason = if v.code == "field_too_long" {
                RejectReason::FieldTooLong
            } else {
                RejectReason::InvalidProducts
            };
            return Err(reject(reason, format!("item {position}: {}", v.detail)));
        }
        let quantity = entry
            .quantity
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .filter(|q| quantity_allowed(*q))
            .ok_or_else(|| {
                let shown = entry
                    .quantity
                    .as_ref()
                    .map(|v| v.to_string().chars().take(40).collect::<String>())
                    .unwrap_or_else(|| "missing".into());
                reject(
                    RejectReason::InvalidQuantity,
                    format!("item {position} ({sku}): quantity {shown} is not a whole number from 1 to {MAX_QUANTITY}"),
                )
            })?;
        match items.iter_mut().find(|(s, _)| *s == sku) {
            Some((_, total)) => *total += quantity,
            None => items.push((sku, quantity)),
        }
    }
    if let Some((sku, total)) = items.iter().find(|(_, q)| !quantity_allowed(*q)) {
        return Err(reject(
            RejectReason::InvalidQuantity,
            format!("sku {sku}: quantities sum to {total}, more than {MAX_QUANTITY}"),
        ));
    }
    Ok(items
        .into_iter()
        .map(|(sku, quantity)| OrderItemRef {
            sku,
            quantity: quantity as u32,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::reader::{Limits, RecordReader};
    use super::*;

    /// Name, email and (sku, quantity) items of a valid row.
    type Checked = (String, String, Vec<(String, u32)>);

    /// Validates the data row of `header\nrow`.
    fn check(header: &str, row: &str) -> Result<Checked, RejectReason> {
        let text = format!("{header}\n{row}\n");
        let mut reader = RecordReader::new(text.as_bytes(), Limits::default());
        let columns = Columns::from_header(&reader.next_record().unwrap().unwrap()).unwrap();
        reader.set_max_fields(columns.names.len() + 1);
        let record = reader.next_record().unwrap().unwrap();
        validate_row(&record, &columns)
            .map(|v| {
                (
                    v.customer_name.to_string(),
                    v.customer_email.to_string(),
                    v.items
                        .iter()
                        .map(|i| (i.sku.to_string(), i.quantity))
                        .collect(),
                )
            })
            .map_err(|r| r.reason)
    }

    const H: &str = "customer_name,customer_email,products";

    #[test]
    fn a_good_row_is_trimmed_lowercased_and_summed() {
        let got = check(
            H,
            r#" Zoë Müller ,ZOE@Example.COM,"[{""sku"":""A"",""quantity"":2},{""sku"":""B"",""quantity"":1},{""sku"":""A"",""quantity"":3}]""#,
        )
        .unwrap();
        assert_eq!(got.0, "Zoë Müller");
        assert_eq!(got.1, "zoe@example.com");
        assert_eq!(got.2, vec![("A".into(), 5), ("B".into(), 1)]);
    }

    #[test]
    fn each_reason_code() {
        use RejectReason::*;
        let p = r#""[{""sku"":""A"",""quantity"":1}]""#;
        let hd = format!("{H},order_date");
        let cases: Vec<(&str, String, RejectReason)> = vec![
            (H, format!(",a@b.co,{p}"), MissingField),
            (H, "n,a@b.co,".into(), MissingField),
            (H, format!("n,not-an-email,{p}"), InvalidEmail),
            (H, format!("n,a@b,{p}"), InvalidEmail),
            (H, format!("n,a b@c.de,{p}"), InvalidEmail),
            (H, "n,a@b.co,not json".into(), InvalidProducts),
            (H, "n,a@b.co,[]".into(), InvalidProducts),
            (H, r#"n,a@b.co,"[{""quantity"":1}]""#.into(), InvalidProducts),
            (H, r#"n,a@b.co,"{""sku"":""A""}""#.into(), InvalidProducts),
            (H, r#"n,a@b.co,"[{""sku"":""A"",""quantity"":0}]""#.into(), InvalidQuantity),
            (H, r#"n,a@b.co,"[{""sku"":""A"",""quantity"":1.5}]""#.into(), InvalidQuantity),
            (H, r#"n,a@b.co,"[{""sku"":""A"",""quantity"":""2""}]""#.into(), InvalidQuantity),
            (H, r#"n,a@b.co,"[{""sku"":""A"",""quantity"":10001}]""#.into(), InvalidQuantity),
            (H, r#"n,a@b.co,"[{""sku"":""A""}]""#.into(), InvalidQuantity),
            (
                H,
                r#"n,a@b.co,"[{""sku"":""A"",""quantity"":6000},{""sku"":""A"",""quantity"":6000}]""#.into(),
                InvalidQuantity,
            ),
            (
                H,
                format!(
                    "n,a@b.co,\"[{}]\"",
                    vec![r#"{""sku"":""A"",""quantity"":1}"#; 101].join(",")
                ),
                TooManyItems,
            ),
            (H, format!("{},a@b.co,{p}", "x".repeat(256)), FieldTooLong),
            (
                H,
                format!(r#"n,a@b.co,"[{{""sku"":""{}"",""quantity"":1}}]""#, "S".repeat(65)),
                FieldTooLong,
            ),
            (
                &hd,
                format!("n,a@b.co,{p},2026-02-30"),
                InvalidOrderDate,
            ),
            (
                &hd,
                format!("n,a@b.co,{p},yesterday"),
                InvalidOrderDate,
            ),
            (H, format!("n,a@b.co,{p},extra"), MalformedRow),
            (H, "n,a@b.co".into(), MalformedRow),
            (H, format!("n\0,a@b.co,{p}"), MalformedRow),
        ];
        for (header, row, want) in cases {
            assert_eq!(check(header, &row).map(|_| ()), Err(want), "{row}");
        }
    }

    #[test]
    fn invalid_utf8_is_a_malformed_row() {
        let text = b"customer_name,customer_email,products\nZo\xff,a@b.co,\"[{\"\"sku\"\":\"\"A\"\",\"\"quantity\"\":1}]\"\n";
        let mut reader = RecordReader::new(&text[..], Limits::default());
        let columns = Columns::from_header(&reader.next_record().unwrap().unwrap()).unwrap();
        let record = reader.next_record().unwrap().unwrap();
        let err = validate_row(&record, &columns).unwrap_err();
        assert_eq!(err.reason, RejectReason::MalformedRow);
        assert!(err.detail.contains("customer_name"), "{}", err.detail);
    }

    /// Each field is checked on its own whatever the record's data as a whole is: a
    /// character split over two fields, or a NUL in a column no rule reads.
    #[test]
    fn fields_are_text_on_their_own() {
        let validate = |text: &[u8]| {
            let mut reader = RecordReader::new(text, Limits::default());
            let columns = Columns::from_header(&reader.next_record().unwrap().unwrap()).unwrap();
            reader.set_max_fields(columns.names.len() + 1);
            let record = reader.next_record().unwrap().unwrap();
            validate_row(&record, &columns).map(|v| v.customer_name.to_string())
        };
        let p = b"\"[{\"\"sku\"\":\"\"A\"\",\"\"quantity\"\":1}]\"";
        // "é" is C3 A9: the name ends with its first byte and the email starts with its
        // second, so the record's data is UTF-8 but neither field is.
        let split = [
            &b"customer_name,customer_email,products\nZo\xc3,\xa9a@b.co,"[..],
            p,
            b"\n",
        ]
        .concat();
        let err = validate(&split).unwrap_err();
        assert_eq!(err.reason, RejectReason::MalformedRow);
        assert!(err.detail.contains("customer_name"), "{}", err.detail);
        let unread_nul = [
            &b"customer_name,customer_email,products,note\nZo,a@b.co,"[..],
            p,
            b",x\0y\n",
        ]
        .concat();
        assert_eq!(validate(&unread_nul), Ok("Zo".to_string()));
        let email_nul = [
            &b"customer_name,customer_email,products\nZo,a\0@b.co,"[..],
            p,
            b"\n",
        ]
        .concat();
        let err = validate(&email_nul).unwrap_err();
        assert_eq!(err.reason, RejectReason::MalformedRow);
        assert!(err.detail.contains("customer_email"), "{}", err.detail);
        let spaced = [
            &b"customer_name,customer_email,products\n \tZo\xc2\xa0,a@b.co,"[..],
            p,
            b"\n",
        ]
        .concat();
        assert_eq!(validate(&spaced), Ok("Zo".to_string()));
    }

    #[test]
    fn deeply_nested_json_is_rejected_not_overflowed() {
        let deep = format!(
            "[{{\"sku\":\"A\",\"quantity\":{}1{}}}]",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_products(&deep).is_err());
    }

    #[test]
    fn header_columns_are_found_case_insensitively_in_any_order() {
        let text = "Products, extra ,ORDER_ID,Customer_Email,customer_name\n";
        let mut reader = RecordReader::new(text.as_bytes(), Limits::default());
        let c = Columns::from_header(&reader.next_record().unwrap().unwrap()).unwrap();
        assert_eq!(
            (
                c.products,
                c.order_id,
                c.customer_email,
                c.customer_name,
                c.order_date
            ),
            (0, Some(2), 3, 4, None)
        );
        let mut reader = RecordReader::new(&b"customer_name,products\n"[..], Limits::default());
        let err = Columns::from_header(&reader.next_record().unwrap().unwrap()).unwrap_err();
        assert!(matches!(
            err,
            HeaderError::MissingColumn("customer_email", _)
        ));
    }

    #[test]
    fn order_dates() {
        assert_eq!(
            parse_order_date("2026-11-20").unwrap().to_rfc3339(),
            "2026-11-20T00:00:00+00:00"
        );
        assert_eq!(
            parse_order_date("2026-11-20T23:30:00-05:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-21T04:30:00+00:00"
        );
        assert!(parse_order_date("0999-01-01").is_none());
        assert!(parse_order_date("2026-13-01").is_none());
    }
}
