//! The chunk encoding of [`crate::order`], written by hand and in two parts, for the
//! producer's parallel scan.
//!
//! A row's JSON is `{"id":…,"ln":…` (its *head*: the identity and the line, which only the
//! sequencer knows: the file's hash, the import id, the line counted from the file's
//! start) followed by its *tail* `,"n":…,"e":…,"it":[…],"d":…}` (everything validation
//! produces, written by the scan workers in parallel). [`write_row_tail`] and
//! [`EncodedChunk::push_parts`] together write exactly the bytes `serde_json` writes for
//! an [`OrderRowRef`](crate::order::OrderRowRef) (tested below), without building the
//! identity string or going through serde per field.

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::order::{serialize_instant, EncodedChunk, OrderItemRef};

/// A row's identity, as the parts it is made of (see `OrderIdentity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityParts<'a> {
    /// `<order_id>`, or `<order_id>:<import>` for `--new` imports.
    OrderId {
        order_id: &'a str,
        new_import: Option<u64>,
    },
    /// `<sha256>:<line>`, or `<sha256>:<line>:<import>` for `--new` imports.
    Derived {
        file_sha256: &'a str,
        new_import: Option<u64>,
    },
}

/// True when no byte of `s` needs a JSON escape (`"`, `\`, below 0x20); eight bytes at a
/// time.
fn needs_no_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact as a yes/no answer: some byte of `v` is zero / below 0x20.
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let has_below_space = |v: u64| v.wrapping_sub(ONES * 0x20) & !v & HIGH != 0;
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        if has_below_space(v)
            || has_zero(v ^ (ONES * u64::from(b'"')))
            || has_zero(v ^ (ONES * u64::from(b'\\')))
        {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Appends `s` JSON-escaped, without quotes.
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    if needs_no_escape(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let start = out.len();
    serde_json::to_writer(&mut *out, s).expect("a str always serializes");
    // serde_json wrote `"…"`: keep what is between the quotes.
    out.pop();
    out.remove(start);
}

fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a row's tail: `,"n":…,"e":…,"it":[…]` and `,"d":…` when there is a date, then
/// the closing `}`.
pub fn write_row_tail(
    out: &mut Vec<u8>,
    customer_name: &str,
    customer_email: &str,
    items: &[OrderItemRef<'_>],
    order_date: Option<DateTime<Utc>>,
) {
    out.extend_from_slice(b",\"n\":\"");
    write_escaped(out, customer_name);
    out.extend_from_slice(b"\",\"e\":\"");
    write_escaped(out, customer_email);
    out.extend_from_slice(b"\",\"it\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"s\":\"");
        write_escaped(out, &item.sku);
        out.extend_from_slice(b"\",\"q\":");
        write_u64(out, u64::from(item.quantity));
        out.push(b'}');
    }
    out.push(b']');
    if let Some(t) = order_date {
        out.extend_from_slice(b",\"d\":");
        write_instant(out, t);
    }
    out.push(b'}');
}

/// An instant as chrono's serde writes it (`"2026-11-20T00:00:00Z"`).
fn write_instant(out: &mut Vec<u8>, instant: DateTime<Utc>) {
    let t = instant.naive_utc();
    if t.nanosecond() != 0 || !(0..=9999).contains(&t.year()) {
        let mut ser = serde_json::Serializer::new(&mut *out);
        serialize_instant(&Some(instant), &mut ser).expect("an instant always serializes");
        return;
    }
    let mut buf = *b"\"0000-00-00T00:00:00Z\"";
    let mut digits = |at: usize, width: usize, mut v: u32| {
        for b in buf[at..at + width].iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(1, 4, t.year() as u32);
    digits(6, 2, t.month());
    digits(9, 2, t.day());
    digits(12, 2, t.hour());
    digits(15, 2, t.minute());
    digits(18, 2, t.second());
    out.extend_from_slice(&buf);
}

impl EncodedChunk {
    /// Appends one row given its identity, its line and its tail ([`write_row_tail`]).
    pub fn push_parts(&mut self, identity: IdentityParts<'_>, line: u64, tail: &[u8]) {
        let out = &mut self.rows_json;
        out.push(if self.rows == 0 { b'[' } else { b',' });
        out.extend_from_slice(b"{\"id\":\"");
        let new_import = match identity {
            IdentityParts::OrderId {
                order_id,
                new_import,
            } => {
                write_escaped(out, order_id);
                new_import
            }
            IdentityParts::Derived {
                file_sha256,
                new_import,
            } => {
                write_escaped(out, file_sha256);
                out.push(b':');
                write_u64(out, line);
                new_import
            }
        };
        if let Some(import) = new_import {
            out.push(b':');
            write_u64(out, import);
        }
        out.extend_from_slice(b"\",\"ln\":");
        write_u64(out, line);
        out.extend_from_slice(tail);
        if self.rows == 0 {
            self.first_line = line;
        }
        self.last_line = line;
        self.rows += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::order::{OrderIdentity, OrderRowRef};

    #[test]
    fn escape_check_finds_every_byte_that_needs_one() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0u8..=255 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    let expected = b >= 0x20 && b != b'"' && b != b'\\';
                    assert_eq!(needs_no_escape(&s), expected, "{len} {at} {b}");
                }
            }
        }
    }

    #[test]
    fn parts_encode_exactly_like_serde() {
        let items = [
            OrderItemRef {
                sku: Cow::Borrowed("SKU-000001"),
                quantity: 2,
            },
            OrderItemRef {
                sku: Cow::Borrowed("we\"ird\\sku\n\u{1}"),
                quantity: 10_000,
            },
        ];
        let dates: [Option<DateTime<Utc>>; 4] = [
            None,
            Some("2026-11-20T00:00:00Z".parse().unwrap()),
            Some("2026-11-20T10:00:00.250Z".parse().unwrap()),
            Some("1000-01-01T23:59:59Z".parse().unwrap()),
        ];
        let identities = [
            (
                IdentityParts::OrderId {
                    order_id: "A-1",
                    new_import: None,
                },
                OrderIdentity::from_order_id("A-1"),
            ),
            (
                IdentityParts::OrderId {
                    order_id: "q\"uote\t",
                    new_import: Some(42),
                },
                OrderIdentity::from_order_id_for_import("q\"uote\t", 42),
            ),
            (
                IdentityParts::Derived {
                    file_sha256: "ab12",
                    new_import: None,
                },
                OrderIdentity::derived("ab12", 7, None),
            ),
            (
                IdentityParts::Derived {
                    file_sha256: "ab12",
                    new_import: Some(3),
                },
                OrderIdentity::derived("ab12", 7, Some(3)),
            ),
        ];
        let mut ours = EncodedChunk::new();
        let mut rows = Vec::new();
        for (parts, identity) in &identities {
            for date in dates {
                for (name, email) in [
                    ("Zoë \"Z\", Müller", "zoe@example.com"),
                    ("山田 太郎", "a\\b@x.y"),
                ] {
                    let mut tail = Vec::new();
                    write_row_tail(&mut tail, name, email, &items, date);
                    ours.push_parts(*parts, 7, &tail);
                    rows.push(
                        serde_json::to_vec(&OrderRowRef {
                            identity: identity.as_str(),
                            line: 7,
                            customer_name: name,
                            customer_email: email,
                            items: &items,
                            order_date: date,
                        })
                        .unwrap(),
                    );
                }
            }
        }
        let ours = ours.finish();
        let mut expected = b"[".to_vec();
        expected.extend(rows.join(&b","[..]));
        expected.push(b']');
        assert_eq!(
            String::from_utf8(ours.rows_json).unwrap(),
            String::from_utf8(expected).unwrap()
        );
        assert_eq!((ours.rows, ours.first_line, ours.last_line), (32, 7, 7));
    }
}
