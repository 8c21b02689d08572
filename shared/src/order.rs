//! Orders as they travel from the producer to the consumer.
//!
//! The producer validates a CSV row into an [`OrderRow`] and packs up to `--chunk-size` of
//! them into one stream entry ([`encode_chunk`]); the consumer reads them back with
//! [`decode_chunk`]. Each row carries its [`OrderIdentity`] and its line in the file, so
//! outcomes are tracked per row even though delivery is per chunk.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, Result};

/// Version of the chunk encoding, written in every entry's `v` field.
pub const CHUNK_VERSION: &str = "1";

/// An order's identity: its `order_id` when the file has one, else the file's SHA-256 and
/// the row's line (and the import id when imported with `--new`). Unique in `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderIdentity(pub String);

impl OrderIdentity {
    /// Longest identity stored (`orders.identity` is VARCHAR(128)).
    pub const MAX_LEN: usize = 128;

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
    /// Lower-cased: customers are found by email case-insensitively.
    #[serde(rename = "e")]
    pub customer_email: String,
    #[serde(rename = "it")]
    pub items: Vec<OrderItem>,
    /// The order's date from the file, if any (KPI day), as a UTC instant.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub order_date: Option<DateTime<Utc>>,
}

/// A decoded stream entry: one import's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChunk {
    pub import_id: u64,
    pub rows: Vec<OrderRow>,
}

/// The fields of a stream entry for these rows: `v`, `import`, `rows` (JSON array).
pub fn encode_chunk(import_id: u64, rows: &[OrderRow]) -> [(&'static str, String); 3] {
    let rows_json = serde_json::to_string(rows).expect("order rows always serialize");
    [
        ("v", CHUNK_VERSION.to_string()),
        ("import", import_id.to_string()),
        ("rows", rows_json),
    ]
}

/// Reads a stream entry's fields back; `id` only names the entry in errors.
pub fn decode_chunk<'a, I>(id: &str, fields: I) -> Result<OrderChunk>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let malformed = |reason: String| OmsError::MalformedMessage {
        id: id.to_string(),
        reason,
    };
    let (mut version, mut import, mut rows) = (None, None, None);
    for (name, value) in fields {
        match name {
            "v" => version = Some(value),
            "import" => import = Some(value),
            "rows" => rows = Some(value),
            _ => {}
        }
    }
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
    let rows: Vec<OrderRow> =
        serde_json::from_slice(rows.ok_or_else(|| malformed("missing field rows".into()))?)
            .map_err(|e| malformed(format!("rows are not valid JSON order rows: {e}")))?;
    Ok(OrderChunk { import_id, rows })
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
        let fields = encode_chunk(7, &rows);
        let decoded = decode_chunk("1-0", fields.iter().map(|(k, v)| (*k, v.as_bytes()))).unwrap();
        assert_eq!(decoded, OrderChunk { import_id: 7, rows });
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
