//! Property tests of the CSV reader and the row validator against hostile input: whatever
//! the bytes, nothing panics, memory stays within the reader's limits, and every record is
//! either a valid row or a reject with one of SPEC's reason codes. Valid rows written by a
//! real CSV writer (quotes, commas, newlines, any Unicode, BOM, CRLF) come back intact with
//! the line where each record starts.

use proptest::prelude::*;

use super::reader::{Limits, RecordReader};
use super::validate::{validate_row, Columns, RejectReason};

const HEADER: &str = "customer_name,customer_email,products,order_id,order_date";

fn columns() -> Columns {
    let mut reader = RecordReader::new(HEADER.as_bytes(), Limits::default());
    Columns::from_header(&reader.next_record().unwrap().unwrap()).unwrap()
}

/// Bytes biased toward what breaks CSV and JSON parsers.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"[{\"sku\":\"A\",\"quantity\":1}]".to_vec()),
        Just(b"[[[[[[[[[[".to_vec()),
        Just(b"a@b.co".to_vec()),
        Just("Zoë 山田".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..200).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_give_rows_or_rejects_with_a_reason(data in hostile_bytes()) {
        let limits = Limits { max_record_bytes: 256, max_fields: 8, max_raw_bytes: 64 };
        let columns = columns();
        let mut reader = RecordReader::new(data.as_slice(), limits);
        let mut last_line = 0;
        let mut records = 0;
        while let Some(record) = reader.next_record().unwrap() {
            records += 1;
            // A lone CR ends a record but, like in csv_core, only LF counts as a new line.
            prop_assert!(record.line >= last_line.max(1), "lines never go back");
            last_line = record.line;
            prop_assert!(record.len() <= limits.max_fields);
            prop_assert!(record.raw.len() <= limits.max_raw_bytes);
            let total: usize = (0..record.len()).map(|i| record.field(i).unwrap().len()).sum();
            prop_assert!(total <= limits.max_record_bytes);
            if let Err(reject) = validate_row(&record, &columns) {
                prop_assert!(RejectReason::ALL.contains(&reject.reason));
                prop_assert!(!reject.detail.is_empty());
                prop_assert!(!reject.detail.contains('\n') || reject.detail.contains("\\n"),
                    "details stay on one line: {:?}", reject.detail);
            }
        }
        prop_assert!(records <= data.len());
        prop_assert_eq!(reader.bytes_consumed(), data.len() as u64);
    }
}

/// A customer name: any Unicode but NUL and surrounding white space, at most 255 chars.
fn name() -> impl Strategy<Value = String> {
    "[^\u{0}]{1,40}".prop_filter_map("trimmed name", |s| {
        let t = s.trim().to_string();
        (!t.is_empty()).then_some(t)
    })
}

fn row() -> impl Strategy<Value = (String, String, Vec<(String, u32)>)> {
    (
        name(),
        "[a-z0-9]{1,5}([._+-][a-z0-9]{1,5}){0,2}@[a-z0-9]{1,10}\\.[a-z]{2,6}",
        proptest::collection::vec(("[A-Za-z0-9 ,\"\\-]{1,20}", 1u32..=10_000), 1..5),
    )
        .prop_map(|(name, email, items)| {
            // Distinct skus (the validator sums repeats); trimmed-empty skus are invalid.
            let mut seen = std::collections::BTreeSet::new();
            let items: Vec<(String, u32)> = items
                .into_iter()
                .filter(|(sku, _)| !sku.trim().is_empty() && seen.insert(sku.clone()))
                .collect();
            (name, email, items)
        })
        .prop_filter("at least one item", |(_, _, items)| !items.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn rows_written_by_a_csv_writer_come_back_intact_on_their_lines(
        rows in proptest::collection::vec(row(), 0..20),
        crlf in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let mut writer = csv::WriterBuilder::new()
            .terminator(if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
            .from_writer(Vec::new());
        writer.write_record(HEADER.split(',')).unwrap();
        let mut expected_lines = Vec::new();
        let mut line = 2u64;
        for (i, (name, email, items)) in rows.iter().enumerate() {
            let products = serde_json::to_string(
                &items
                    .iter()
                    .map(|(sku, q)| serde_json::json!({"sku": sku, "quantity": q}))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            let order_id = format!("id-{i}");
            writer
                .write_record([name.as_str(), email, &products, &order_id, "2026-11-20"])
                .unwrap();
            expected_lines.push(line);
            // A record spans one line plus one per LF inside its fields.
            line += 1 + [name.as_str(), email.as_str(), products.as_str()]
                .iter()
                .map(|f| f.matches('\n').count() as u64)
                .sum::<u64>();
        }
        let mut data = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
        data.extend(writer.into_inner().unwrap());

        let columns = columns();
        let mut reader = RecordReader::new(data.as_slice(), Limits::default());
        reader.next_record().unwrap().unwrap();
        for (i, (name, email, items)) in rows.iter().enumerate() {
            let record = reader.next_record().unwrap().expect("a record per row");
            let row = validate_row(&record, &columns)
                .map_err(|r| TestCaseError::fail(format!("{r:?} for {name:?}")))?;
            prop_assert_eq!(row.customer_name, name.as_str());
            prop_assert_eq!(row.customer_email.as_ref(), email.as_str());
            let got: Vec<(String, u32)> =
                row.items.iter().map(|i| (i.sku.to_string(), i.quantity)).collect();
            prop_assert_eq!(&got, items);
            prop_assert_eq!(record.line, expected_lines[i], "line of row {}", i);
        }
        prop_assert!(reader.next_record().unwrap().is_none());
    }
}
