//! The parallel scan gives exactly what one reader going through the file gives: the same
//! chunks (bytes, rows, lines), rejects, counts and `--rejects` file, whatever the block
//! size and the number of workers, on files made to break it (quoted newlines across
//! block ends, CR, CRLF, blank lines, unterminated quotes, oversize records, duplicate
//! order ids).

use std::io::{Seek, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::import::reader::{Limits, RecordReader};

/// Everything a scan hands on.
#[derive(Debug, PartialEq, Eq)]
struct Output {
    chunks: Vec<(String, usize, u64, u64)>,
    rejects: Vec<(u64, &'static str, String)>,
    rows: u64,
    duplicates: u64,
    through_line: u64,
    /// Each shipment's `through_line` and the first lines of its chunks.
    shipments: Vec<(u64, Vec<u64>)>,
    rejects_file: String,
    end: String,
}

fn scan_file(content: &[u8], block_bytes: u64, workers: usize, id_column: bool) -> Output {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(content).unwrap();
    file.rewind().unwrap();
    let mut reader = RecordReader::new(&file, Limits::default());
    let columns = Columns::from_header(&reader.next_record().unwrap().unwrap()).unwrap();
    assert_eq!(columns.order_id.is_some(), id_column);
    let (data_start, first_line) = (reader.bytes_consumed(), reader.line());
    drop(reader);
    let dir = tempfile::tempdir().unwrap();
    let rejects_path = dir.path().join("rejects.csv");
    let rejects_file = super::super::rejects_file::create(&rejects_path, false).unwrap();
    let settings = ScanSettings {
        file_name: "test.csv".into(),
        columns,
        chunk_size: 7,
        import_id: 5,
        file_sha256: "ab".into(),
        new_identities: false,
        already_imported_through: 40,
        partitions: PartitionCount::ONE,
        workers,
        only_lines: None,
    };
    let (tx, mut rx) = mpsc::channel(2);
    let size = content.len() as u64;
    let progress = Progress::new(size);
    let stop = AtomicBool::new(false);
    let layout = Layout::new(data_start, size, block_bytes);
    let mut out = Output {
        chunks: vec![],
        rejects: vec![],
        rows: 0,
        duplicates: 0,
        through_line: 0,
        shipments: vec![],
        rejects_file: String::new(),
        end: String::new(),
    };
    std::thread::scope(|s| {
        let scanner = s.spawn(|| {
            scan_layout(
                &file,
                layout,
                first_line,
                &settings,
                Some(rejects_file),
                tx,
                &stop,
                &progress,
            )
        });
        while let Some(shipment) = rx.blocking_recv() {
            let firsts = shipment.chunks.iter().map(|c| c.first_line).collect();
            out.shipments.push((shipment.through_line, firsts));
            for c in shipment.chunks {
                let json = String::from_utf8(c.rows_json).unwrap();
                out.chunks.push((json, c.rows, c.first_line, c.last_line));
            }
            for r in shipment.rejects {
                out.rejects.push((r.line, r.reason, r.detail));
            }
            out.rows += shipment.rows_read;
            out.duplicates += shipment.duplicates;
            out.through_line = out.through_line.max(shipment.through_line);
        }
        out.end = format!("{:?}", scanner.join().unwrap());
    });
    out.rejects_file = std::fs::read_to_string(&rejects_path).unwrap();
    out
}

/// A file of `rows` rows meant to break block boundaries.
fn hostile_file(seed: u64, rows: usize, id_column: bool) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    if rng.random_bool(0.3) {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    out.extend_from_slice(b"customer_name,customer_email,products,order_date");
    out.extend_from_slice(if id_column { b",order_id\r\n" } else { b"\n\n" });
    for i in 0..rows {
        let name = match rng.random_range(0..10) {
            0 => format!(
                "\"Multi\n{}line {i}\"",
                "x\n".repeat(rng.random_range(0..20))
            ),
            1 => format!("\"Quote \"\"{i}\"\", Jr.\""),
            2 => "\"unterminated".to_string(),
            3 => "x".repeat(if rng.random_bool(0.1) { 70_000 } else { 300 }),
            _ => format!("Name {i}"),
        };
        let email = match rng.random_range(0..12) {
            0 => "bad-email".to_string(),
            1 => format!("UPPER{}@Example.com", i % 13),
            _ => format!("user{}@example.com", i % 17),
        };
        let products = match rng.random_range(0..12) {
            0 => "notjson".to_string(),
            1 => "\"[{\"\"sku\"\":\"\"A\"\"}]\"".to_string(),
            _ => format!(
                "\"[{{\"\"sku\"\":\"\"SKU-{}\"\",\"\"quantity\"\":{}}}]\"",
                rng.random_range(1..9),
                rng.random_range(1..4)
            ),
        };
        let date = [
            "2026-10-17",
            "",
            "2026-02-30",
            "2026-10-17T10:00:00.5+02:00",
        ][rng.random_range(0..4)];
        let mut fields = vec![name, email, products, date.to_string()];
        if id_column {
            fields.push(match rng.random_range(0..4) {
                0 => String::new(),
                1 => format!("ORD-{}", i % 9),
                _ => format!("ORD-{i}"),
            });
        }
        if rng.random_bool(0.03) {
            fields.pop();
        }
        out.extend_from_slice(fields.join(",").as_bytes());
        let end: &[u8] = [&b"\n"[..], b"\r\n", b"\r", b"\n\n", b"\r\n\r\n"][rng.random_range(0..5)];
        out.extend_from_slice(end);
    }
    out
}

#[test]
fn any_blocks_and_workers_give_the_single_reader_result() {
    for seed in 0..8 {
        let id_column = seed % 2 == 0;
        let content = hostile_file(seed, 120, id_column);
        let single = scan_file(&content, u64::MAX / 4, 1, id_column);
        assert_eq!(single.end, "Finished");
        assert!(single.rows > 0 && !single.chunks.is_empty(), "seed {seed}");
        for (block_bytes, workers) in [(3, 2), (61, 3), (500, 2), (4096, 4)] {
            let parallel = scan_file(&content, block_bytes, workers, id_column);
            assert!(
                parallel == single,
                "seed {seed}, blocks of {block_bytes} bytes, {workers} workers:\n{parallel:#?}\nvs\n{single:#?}"
            );
        }
    }
}

#[test]
fn an_unterminated_quote_at_the_start_reads_to_the_end() {
    let mut content = b"customer_name,customer_email,products\n\"open,".to_vec();
    for i in 0..2_000 {
        content.extend_from_slice(format!("n{i},e{i}@x.io,[]\n").as_bytes());
    }
    let single = scan_file(&content, u64::MAX / 4, 1, false);
    let parallel = scan_file(&content, 256, 2, false);
    assert_eq!(parallel, single);
    assert_eq!((single.rows, single.rejects.len()), (1, 1));
}

#[test]
fn a_shipment_never_counts_rows_still_in_an_open_chunk() {
    let mut content = b"customer_name,customer_email,products\n".to_vec();
    for i in 0..10_000 {
        let products = r#""[{""sku"":""S"",""quantity"":1}]""#;
        content.extend_from_slice(format!("n{i},e{i}@x.io,{products}\n").as_bytes());
    }
    let out = scan_file(&content, 4096, 2, false);
    assert_eq!((out.end.as_str(), out.rows), ("Finished", 10_000));
    assert!(out.shipments.len() >= 3, "{:?}", out.shipments.len());
    // Every chunk shipped later starts after what an earlier shipment accounted for.
    for (i, (through, _)) in out.shipments.iter().enumerate() {
        for (_, later) in &out.shipments[i + 1..] {
            assert!(later.iter().all(|first| first > through), "shipment {i}");
        }
    }
    assert_eq!(out.shipments.last().unwrap().0, 10_001);
}
