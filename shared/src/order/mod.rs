//! Orders as they travel from the producer to the consumer.
//!
//! The producer validates a CSV row into an [`OrderRowRef`] (borrowed from the record) and
//! packs up to `--chunk-size` of them into one stream entry ([`EncodedChunk`], written by
//! `queue::add_encoded_chunks_replicated` as fields `v`, `import`, `rows`, and `traceparent` when the
//! import is traced: [`crate::trace_context`]); the consumer reads them
//! back as [`OrderRow`]s with [`decode_chunk`]. Each row carries its [`OrderIdentity`] and its line in the file, so
//! outcomes are tracked per row even though delivery is per chunk.

//!
//! Submodules: [`json`] (the chunk encoding written in two parts, fast, for the producer's
//! scan), [`rules`] (the limits of rows and entries, and the one email rule), [`payment`]
//! (the deterministic payment simulator).

pub mod json;
pub mod payment;
pub mod rules;

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, Result};
use crate::order::rules::{normalize_email, RowViolation, MAX_ENTRY_BYTES, MAX_ROWS_PER_ENTRY};

/// Version of the chunk encoding, written in every entry's `v` field.
pub(crate) const CHUNK_VERSION: &str = "1";

/// An order's identity: its `order_id` when the file has one, else the file's SHA-256 and
/// the row's line (and the import id when imported with `--new`). Unique in `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderIdentity(pub String);

impl OrderIdentity {
    pub fn from_order_id(order_id: &str) -> Self {
        OrderIdentity(order_id.to_string())
    }

    /// `<sha256>:<line>`, or `<sha256>:<line>:<import>` for `--new` imports.
    pub fn derived(file_sha256: &str, line: u64, new_import: Option<u64>) -> Self {
        match new_import {
            Some(import_id) => OrderIdentity(format!("{file_sha256}:{line}:{import_id}")),
            None => OrderIdentity(format!("{file_sha256}:{line}")),
        }
    }

    /// An `order_id` imported with `--new`: `<order_id>:<import>`, a new identity per import.
    pub fn from_order_id_for_import(order_id: &str, import_id: u64) -> Self {
        OrderIdentity(format!("{order_id}:{import_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One product line of an order. The same sku never appears twice in one row (the
/// producer sums them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    #[serde(rename = "s")]
    pub sku: String,
    #[serde(rename = "q")]
    pub quantity: u32,
}

/// A validated order row, as carried in a stream chunk (short field names keep chunks small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRow {
    #[serde(rename = "id")]
    pub identity: OrderIdentity,
    /// Line where the record starts in the imported file (header is line 1).
    #[serde(rename = "ln")]
    pub line: u64,
    #[serde(rename = "n")]
    pub customer_name: String,
    /// In [`normalize_email`] form (lower-cased): the customer's key, compared byte for byte.
    #[serde(rename = "e")]
    pub customer_email: String,
    #[serde(rename = "it")]
    pub items: Vec<OrderItem>,
    /// The order's date from the file, if any (KPI day), as a UTC instant.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub order_date: Option<DateTime<Utc>>,
}

impl OrderRow {
    /// Checks the row against every limit the producer enforces
    /// ([`rules::check_row`]): what a consumer does before trusting a stream entry.
    pub fn check(&self) -> Result<(), RowViolation> {
        rules::check_row(
            self.identity.as_str(),
            &self.customer_name,
            &self.customer_email,
            self.items.iter().map(|i| (i.sku.as_str(), i.quantity)),
        )
    }
}

/// An [`OrderItem`] borrowed from the CSV record it was validated from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderItemRef<'a> {
    /// Borrowed unless the CSV spelled it with JSON escapes.
    #[serde(rename = "s")]
    pub sku: Cow<'a, str>,
    #[serde(rename = "q")]
    pub quantity: u32,
}

/// An [`OrderRow`] borrowed from the CSV record: the producer encodes it straight into a
/// chunk without copying its strings. Serializes exactly as `OrderRow` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRowRef<'a> {
    #[serde(rename = "id")]
    pub identity: &'a str,
    #[serde(rename = "ln")]
    pub line: u64,
    #[serde(rename = "n")]
    pub customer_name: &'a str,
    #[serde(rename = "e")]
    pub customer_email: &'a str,
    #[serde(rename = "it")]
    pub items: &'a [OrderItemRef<'a>],
    #[serde(
        rename = "d",
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_instant"
    )]
    pub order_date: Option<DateTime<Utc>>,
}

/// Writes an instant as chrono's serde does (`2026-11-20T00:00:00Z`), without going
/// through its general formatter for whole seconds (the producer writes millions).
pub(crate) fn serialize_instant<S: serde::Serializer>(
    instant: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use chrono::{Datelike, Timelike};
    match instant {
        Some(t) if t.nanosecond() == 0 && (0..=9999).contains(&t.year()) => {
            let mut buf = [0u8; 20];
            let digits = |buf: &mut [u8], mut v: u32| {
                for b in buf.iter_mut().rev() {
                    *b = b'0' + (v % 10) as u8;
                    v /= 10;
                }
            };
            digits(&mut buf[0..4], t.year() as u32);
            digits(&mut buf[5..7], t.month());
            digits(&mut buf[8..10], t.day());
            digits(&mut buf[11..13], t.hour());
            digits(&mut buf[14..16], t.minute());
            digits(&mut buf[17..19], t.second());
            buf[4] = b'-';
            buf[7] = b'-';
            buf[10] = b'T';
            buf[13] = b':';
            buf[16] = b':';
            buf[19] = b'Z';
            serializer.serialize_str(std::str::from_utf8(&buf).expect("ASCII digits"))
        }
        other => other.serialize(serializer),
    }
}

/// The `rows` field of one stream entry, built row by row (a JSON array of rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChunk {
    pub rows_json: Vec<u8>,
    pub rows: usize,
    /// Lines of the first and last row in the chunk.
    pub first_line: u64,
    pub last_line: u64,
    /// The stream partition its rows belong to (`partition::partition_of` their email).
    pub partition: u16,
}

impl EncodedChunk {
    pub fn new() -> Self {
        EncodedChunk::for_partition(0)
    }

    /// An empty chunk for rows of partition `partition`.
    pub fn for_partition(partition: u16) -> Self {
        EncodedChunk {
            rows_json: Vec::with_capacity(32 * 1024),
            rows: 0,
            first_line: 0,
            last_line: 0,
            partition,
        }
    }

    /// Appends one row.
    pub fn push(&mut self, row: &OrderRowRef<'_>) {
        self.rows_json
            .push(if self.rows == 0 { b'[' } else { b',' });
        serde_json::to_writer(&mut self.rows_json, row).expect("order rows always serialize");
        if self.rows == 0 {
            self.first_line = row.line;
        }
        self.last_line = row.line;
        self.rows += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The finished JSON array (an empty chunk is `[]`).
    pub fn finish(mut self) -> EncodedChunk {
        if self.rows == 0 {
            self.rows_json.push(b'[');
        }
        self.rows_json.push(b']');
        self
    }
}

impl Default for EncodedChunk {
    fn default() -> Self {
        EncodedChunk::new()
    }
}

/// A decoded stream entry: one import's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChunk {
    pub import_id: u64,
    pub rows: Vec<OrderRow>,
    /// The W3C `traceparent` of the import that enqueued it (its span's context), when
    /// the import was traced and the field is valid; entries written before traces, or
    /// without them, have none.
    pub trace_parent: Option<String>,
}

/// Reads a stream entry's fields back; `id` only names the entry in errors. An entry
/// without rows, with more than [`MAX_ROWS_PER_ENTRY`] or more than [`MAX_ENTRY_BYTES`]
/// is malformed; emails come back in [`normalize_email`] form. A `traceparent` field that
/// is not a valid W3C `traceparent` is ignored (tracing never costs an order).
pub fn decode_chunk<'a, I>(id: &str, fields: I) -> Result<OrderChunk>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let malformed = |reason: String| OmsError::MalformedMessage {
        id: id.to_string(),
        reason,
    };
    let (mut version, mut import, mut rows, mut trace_parent) = (None, None, None, None);
    for (name, value) in fields {
        match name {
            "v" => version = Some(value),
            "import" => import = Some(value),
            "rows" => rows = Some(value),
            crate::trace_context::TRACEPARENT => trace_parent = Some(value),
            _ => {}
        }
    }
    let trace_parent = trace_parent
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| crate::trace_context::is_valid(v))
        .map(str::to_string);
    match version {
        Some(v) if v == CHUNK_VERSION.as_bytes() => {}
        Some(v) => {
            return Err(malformed(format!(
                "unknown version {:?}",
                String::from_utf8_lossy(v)
            )))
        }
        None => return Err(malformed("missing field v".into())),
    }
    let import_id = import
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| malformed("missing or non-numeric field import".into()))?;
    let rows = rows.ok_or_else(|| malformed("missing field rows".into()))?;
    if rows.len() > MAX_ENTRY_BYTES {
        return Err(malformed(format!(
            "rows are {} bytes, more than {MAX_ENTRY_BYTES}",
            rows.len()
        )));
    }
    let mut rows: Vec<OrderRow> = serde_json::from_slice(rows)
        .map_err(|e| malformed(format!("rows are not valid JSON order rows: {e}")))?;
    if rows.is_empty() {
        return Err(malformed("the entry holds no rows".into()));
    }
    if rows.len() > MAX_ROWS_PER_ENTRY {
        return Err(malformed(format!(
            "{} rows, more than {MAX_ROWS_PER_ENTRY} per entry",
            rows.len()
        )));
    }
    // The one rule for "same customer", whatever wrote the entry.
    for row in &mut rows {
        if let Cow::Owned(lower) = normalize_email(&row.customer_email) {
            row.customer_email = lower;
        }
    }
    Ok(OrderChunk {
        import_id,
        rows,
        trace_parent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: u64) -> OrderRow {
        OrderRow {
            identity: OrderIdentity::derived("ab", line, None),
            line,
            customer_name: "Zoë \"Z\", Müller".into(),
            customer_email: "zoe@example.com".into(),
            items: vec![OrderItem {
                sku: "SKU-000001".into(),
                quantity: 2,
            }],
            order_date: Some("2026-11-20T00:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn chunk_round_trips() {
        let rows = vec![row(2), row(3)];
        let json = serde_json::to_vec(&rows).unwrap();
        let fields = [
            ("v", CHUNK_VERSION.as_bytes()),
            ("import", b"7".as_slice()),
            ("rows", json.as_slice()),
        ];
        let decoded = decode_chunk("1-0", fields).unwrap();
        assert_eq!(
            decoded,
            OrderChunk {
                import_id: 7,
                rows,
                trace_parent: None
            },
            "an entry without a traceparent (written before traces) decodes as before"
        );
    }

    #[test]
    fn a_traceparent_field_travels_and_a_bad_one_is_ignored() {
        let json = serde_json::to_vec(&[row(2)]).unwrap();
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for (value, expected) in [
            (good, Some(good.to_string())),
            ("00-not-a-trace-01", None),
            ("", None),
        ] {
            let fields = [
                ("v", CHUNK_VERSION.as_bytes()),
                ("import", b"7".as_slice()),
                ("rows", json.as_slice()),
                ("traceparent", value.as_bytes()),
            ];
            let decoded = decode_chunk("1-0", fields).expect("decodes whatever the field holds");
            assert_eq!(decoded.trace_parent, expected, "{value:?}");
            assert_eq!(decoded.rows.len(), 1);
        }
    }

    #[test]
    fn borrowed_rows_encode_exactly_like_owned_rows() {
        let owned = vec![row(2), row(3)];
        let mut chunk = EncodedChunk::new();
        for r in &owned {
            let items: Vec<OrderItemRef> = r
                .items
                .iter()
                .map(|i| OrderItemRef {
                    sku: Cow::Borrowed(&i.sku),
                    quantity: i.quantity,
                })
                .collect();
            chunk.push(&OrderRowRef {
                identity: r.identity.as_str(),
                line: r.line,
                customer_name: &r.customer_name,
                customer_email: &r.customer_email,
                items: &items,
                order_date: r.order_date,
            });
        }
        let chunk = chunk.finish();
        assert_eq!((chunk.rows, chunk.first_line, chunk.last_line), (2, 2, 3));
        assert_eq!(
            chunk.rows_json,
            serde_json::to_vec(&owned).unwrap(),
            "same bytes as the owned encoding"
        );
        let fields = [
            ("v", CHUNK_VERSION.as_bytes()),
            ("import", b"4".as_slice()),
            ("rows", chunk.rows_json.as_slice()),
        ];
        assert_eq!(decode_chunk("1-0", fields).unwrap().rows, owned);
        assert_eq!(EncodedChunk::new().finish().rows_json, b"[]");
    }

    #[test]
    fn instants_serialize_like_chrono() {
        for text in [
            "2026-11-20T00:00:00Z",
            "1999-01-02T03:04:05Z",
            "2026-11-20T10:00:00.250Z",
        ] {
            let t: DateTime<Utc> = text.parse().unwrap();
            let mut ours = serde_json::Serializer::new(Vec::new());
            serialize_instant(&Some(t), &mut ours).unwrap();
            assert_eq!(ours.into_inner(), serde_json::to_vec(&t).unwrap(), "{text}");
        }
    }

    #[test]
    fn malformed_chunks_are_named() {
        let err =
            decode_chunk("5-1", [("v", b"1".as_slice()), ("import", b"x".as_slice())]).unwrap_err();
        assert!(err.to_string().contains("5-1"), "{err}");
        let err = decode_chunk("5-2", [("v", b"9".as_slice())]).unwrap_err();
        assert!(err.to_string().contains("unknown version"), "{err}");
        let err = decode_chunk(
            "5-3",
            [
                ("v", b"1".as_slice()),
                ("import", b"1".as_slice()),
                ("rows", b"[{".as_slice()),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = decode_chunk(
            "5-4",
            [
                ("v", b"1".as_slice()),
                ("import", b"1".as_slice()),
                ("rows", b"[]".as_slice()),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("no rows"), "{err}");
    }

    #[test]
    fn decoded_emails_are_normalized() {
        let mut r = row(2);
        r.customer_email = "ZOE@Example.com".into();
        let json = serde_json::to_vec(&[r]).unwrap();
        let fields = [
            ("v", CHUNK_VERSION.as_bytes()),
            ("import", b"7".as_slice()),
            ("rows", json.as_slice()),
        ];
        let decoded = decode_chunk("1-0", fields).unwrap();
        assert_eq!(decoded.rows[0].customer_email, "zoe@example.com");
    }

    #[test]
    fn identities() {
        assert_eq!(OrderIdentity::derived("f00", 12, None).as_str(), "f00:12");
        assert_eq!(
            OrderIdentity::derived("f00", 12, Some(3)).as_str(),
            "f00:12:3"
        );
        assert_eq!(OrderIdentity::from_order_id("A-1").as_str(), "A-1");
    }
}
