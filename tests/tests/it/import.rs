//! `producer import` against the real Redis and MariaDB: validation and line numbers,
//! header handling, stdin, chunking, re-import idempotence, backpressure and resumption.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use oms_shared::order::{decode_chunk, OrderRow};
use oms_tests::{binary, TestEnv};
use producer::import::{import, ImportArgs};
use redis::streams::StreamRangeReply;
use tokio_util::sync::CancellationToken;

pub(crate) fn args(path: &str) -> ImportArgs {
    ImportArgs {
        file: path.to_string(),
        chunk_size: 100,
        max_lag: Some(0),
        wait: false,
        wait_timeout_secs: None,
        rejects: None,
        force: false,
        new: false,
        min_replicas: None,
    }
}

/// `products` cell for one item.
fn item(sku: &str, quantity: u32) -> String {
    format!(r#""[{{""sku"":""{sku}"",""quantity"":{quantity}}}]""#)
}

/// Every entry of the orders stream, decoded: (rows per entry, all rows in order).
async fn stream_rows(env: &TestEnv) -> (Vec<usize>, Vec<OrderRow>) {
    let mut conn = env.redis_conn().await;
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(env.keys.orders())
        .arg("-")
        .arg("+")
        .query_async(&mut *conn)
        .await
        .expect("xrange");
    let mut sizes = Vec::new();
    let mut rows = Vec::new();
    for entry in reply.ids {
        let fields: Vec<(String, Vec<u8>)> = entry
            .map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    redis::from_redis_value(v.clone()).expect("bytes"),
                )
            })
            .collect();
        let chunk = decode_chunk(
            &entry.id,
            fields.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        )
        .expect("a valid chunk");
        sizes.push(chunk.rows.len());
        rows.extend(chunk.rows);
    }
    (sizes, rows)
}

async fn rejects(env: &TestEnv, import_id: u64) -> Vec<(u64, String)> {
    sqlx::query_as::<_, (u64, String)>(
        "SELECT line, reason FROM import_rejects WHERE import_id = ? ORDER BY line",
    )
    .bind(import_id)
    .fetch_all(&env.db)
    .await
    .expect("rejects")
}

#[tokio::test]
async fn every_reason_is_recorded_with_the_line_where_its_record_starts() {
    let env = TestEnv::new().await;
    let p = item("SKU-1", 1);
    // \u{feff}: BOM; CRLF line ends; a quoted newline makes line 3's record span 3-4.
    let csv = [
        "\u{feff}customer_name,customer_email,products,order_id,order_date".to_string(),
        format!("\"Smith, \"\"Jo\"\"\",JO@Example.com,{p},A-1,2026-11-20"), // 2 ok
        format!("\"Multi\nLine\",m@example.com,{p},A-2,"),                  // 3-4 ok
        format!(",x@example.com,{p},,"),                                    // 5 missing_field
        format!("n,not-an-email,{p},,"),                                    // 6 invalid_email
        "n,a@example.com,nope,,".to_string(),                               // 7 invalid_products
        format!("n,a@example.com,{},,", item("SKU-1", 0)),                  // 8 invalid_quantity
        format!(
            "n,a@example.com,\"[{}]\",,",
            vec![r#"{""sku"":""S"",""quantity"":1}"#; 101].join(",")
        ), // 9 too_many_items
        format!("{},a@example.com,{p},,", "N".repeat(300)),                 // 10 field_too_long
        format!("n,a@example.com,{p},,31/12/2026"),                         // 11 invalid_order_date
        format!("n,a@example.com,{p},A-1,"),                                // 12 duplicate_order_id
        "n,a@example.com".to_string(),                                      // 13 malformed_row
        format!("ok,ok@example.com,{p},A-3,2026-11-21T10:00:00Z"),          // 14 ok
    ]
    .join("\r\n");
    let file = env.file(&csv);
    let rejects_dir = tempfile::tempdir().unwrap();
    let rejects_csv = rejects_dir.path().join("rejects.csv");
    let mut a = args(file.path().to_str().unwrap());
    a.rejects = Some(rejects_csv.clone());
    let report = import(&env.config, &a, CancellationToken::new())
        .await
        .expect("import");

    assert_eq!((report.rows, report.enqueued, report.rejected), (12, 3, 9));
    let want: Vec<(u64, String)> = [
        (5, "missing_field"),
        (6, "invalid_email"),
        (7, "invalid_products"),
        (8, "invalid_quantity"),
        (9, "too_many_items"),
        (10, "field_too_long"),
        (11, "invalid_order_date"),
        (12, "duplicate_order_id"),
        (13, "malformed_row"),
    ]
    .iter()
    .map(|(l, r)| (*l, r.to_string()))
    .collect();
    assert_eq!(
        rejects(&env, report.import_id).await,
        want,
        "reasons by line"
    );
    assert_eq!(report.rejected_by_reason.len(), 9);
    let (_, rows) = stream_rows(&env).await;
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![2, 3, 14]);
    assert_eq!(rows[0].customer_name, "Smith, \"Jo\"");
    assert_eq!(rows[0].customer_email, "jo@example.com");
    assert_eq!(rows[0].identity.as_str(), "A-1");
    assert_eq!(rows[1].customer_name, "Multi\nLine");
    assert_eq!(
        rows[2].order_date.map(|d| d.to_rfc3339()),
        Some("2026-11-21T10:00:00+00:00".into())
    );

    let written = std::fs::read_to_string(&rejects_csv).unwrap();
    let mut reader = csv::Reader::from_reader(written.as_bytes());
    let lines: Vec<(String, String)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    assert_eq!(lines.len(), 9, "{written}");
    assert_eq!(lines[0], ("5".into(), "missing_field".into()));
    assert!(
        written.contains("\"n,a@example.com\""),
        "raw row kept: {written}"
    );
}

#[tokio::test]
async fn columns_are_found_in_any_order_and_case_and_extra_ones_are_ignored() {
    let env = TestEnv::new().await;
    let csv = format!(
        "Products,NOTE,Customer_Email,CUSTOMER_NAME\n{},hello,a@example.com,Ann\n",
        item("SKU-9", 3)
    );
    let file = env.file(&csv);
    let report = import(
        &env.config,
        &args(file.path().to_str().unwrap()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((report.enqueued, report.rejected), (1, 0));
    let (_, rows) = stream_rows(&env).await;
    assert_eq!(rows[0].customer_name, "Ann");
    assert_eq!(rows[0].items[0].sku, "SKU-9");
    assert_eq!(rows[0].items[0].quantity, 3);
    assert_eq!(
        rows[0].identity.as_str(),
        format!("{}:2", report.sha256),
        "without order_id, the identity is the file's hash and the line"
    );
}

#[tokio::test]
async fn header_only_file_imports_nothing_and_an_empty_file_is_refused() {
    let env = TestEnv::new().await;
    let header_only = env.file("customer_name,customer_email,products\n");
    let report = import(
        &env.config,
        &args(header_only.path().to_str().unwrap()),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.rows, report.enqueued, report.status),
        (0, 0, "finished")
    );

    let empty = env.file("");
    let err = import(
        &env.config,
        &args(empty.path().to_str().unwrap()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("header row is required"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_missing_required_column_refuses_the_file_before_anything_is_enqueued() {
    let env = TestEnv::new().await;
    let file = env.file(&format!("customer_name,products\nAnn,{}\n", item("A", 1)));
    let path = file.path().to_str().unwrap().to_string();
    let out = Command::new(binary("producer"))
        .args(["import", &path])
        .envs(env.env_vars())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(
        error_lines[0].contains(&path) && error_lines[0].contains("customer_email"),
        "{stderr}"
    );
    assert_eq!(env.scalar("SELECT COUNT(*) FROM imports").await, 0);
    let mut conn = env.redis_conn().await;
    let len: u64 = redis::cmd("XLEN")
        .arg(env.keys.orders())
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert_eq!(len, 0);

    let out = Command::new(binary("producer"))
        .args(["import", "/nonexistent/orders.csv"])
        .envs(env.env_vars())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: /nonexistent/orders.csv: cannot open"),
        "{stderr}"
    );
}

#[tokio::test]
async fn stdin_is_imported_like_a_file() {
    let env = TestEnv::new().await;
    let csv = format!(
        "customer_name,customer_email,products\nAnn,a@example.com,{}\nBob,b@example.com,{}\n",
        item("A", 1),
        item("B", 2)
    );
    let mut child = Command::new(binary("producer"))
        .args(["import", "-", "--json"])
        .envs(env.env_vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csv.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["file"], "-");
    assert_eq!(report["enqueued"], 2);
    let (_, rows) = stream_rows(&env).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM imports WHERE file_name = '-' AND rows_enqueued = 2")
            .await,
        1
    );
}

/// A file of `n` valid rows.
fn orders_csv(n: usize) -> String {
    let mut csv = String::from("customer_name,customer_email,products\n");
    for i in 0..n {
        csv.push_str(&format!("C{i},c{i}@example.com,{}\n", item("SKU-1", 1)));
    }
    csv
}

#[tokio::test]
async fn chunks_hold_chunk_size_rows_and_the_last_one_the_rest() {
    for (rows, chunk_size, want) in [
        (3usize, 1u64, vec![1, 1, 1]),
        (6, 3, vec![3, 3]),
        (7, 3, vec![3, 3, 1]),
        (2, 100, vec![2]),
    ] {
        let env = TestEnv::new().await;
        let file = env.file(&orders_csv(rows));
        let mut a = args(file.path().to_str().unwrap());
        a.chunk_size = chunk_size;
        let report = import(&env.config, &a, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(report.enqueued, rows as u64);
        let (sizes, decoded) = stream_rows(&env).await;
        assert_eq!(sizes, want, "{rows} rows in chunks of {chunk_size}");
        let lines: Vec<u64> = decoded.iter().map(|r| r.line).collect();
        assert_eq!(lines, (2..2 + rows as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn reimporting_a_file_enqueues_nothing_twice_and_new_imports_it_again() {
    let env = TestEnv::new().await;
    let file = env.file(&format!("{}bad row\n", orders_csv(5)));
    let path = file.path().to_str().unwrap();
    let first = import(&env.config, &args(path), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        (first.enqueued, first.rejected, first.duplicates),
        (5, 1, 0)
    );

    let again = import(&env.config, &args(path), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        (again.enqueued, again.rejected, again.duplicates),
        (0, 1, 5),
        "same file: every valid row is a duplicate, the bad row is rejected again"
    );
    assert_eq!(stream_rows(&env).await.1.len(), 5);

    let mut new = args(path);
    new.new = true;
    let fresh = import(&env.config, &new, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((fresh.enqueued, fresh.duplicates), (5, 0));
    let (_, rows) = stream_rows(&env).await;
    assert_eq!(rows.len(), 10);
    let identities: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.identity.as_str()).collect();
    assert_eq!(identities.len(), 10, "--new gives new identities");
    assert_eq!(
        env.scalar(&format!(
            "SELECT rows_duplicate FROM imports WHERE id = {}",
            again.import_id
        ))
        .await,
        5
    );
}

/// Spawns `producer import` with stderr lines forwarded to a channel.
fn spawn_import(
    env: &TestEnv,
    extra: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    oms_tests::procs::spawn_producer(env, &[&["import"], extra].concat())
}

/// Waits for a stderr line containing `needle`.
pub(crate) fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?} on stderr: {e}"),
        }
    }
}

async fn stream_length(env: &TestEnv) -> u64 {
    let mut conn = env.redis_conn().await;
    redis::cmd("XLEN")
        .arg(env.keys.orders())
        .query_async(&mut *conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn backpressure_holds_the_import_while_nothing_consumes_then_it_resumes() {
    let env = TestEnv::new().await;
    env.product("SKU-1", "1.00", 1_000_000).await;
    let file = env.file(&orders_csv(400));
    let path = file.path().to_str().unwrap().to_string();
    let (child, stderr) = spawn_import(
        &env,
        &[&path, "--chunk-size", "10", "--max-lag", "50", "--json"],
    );

    // No consumer: the import stops enqueueing at --max-lag (+ one pipeline of 1 chunk).
    wait_for_line(&stderr, "waiting: more rows unread than --max-lag");
    let held = stream_length(&env).await * 10;
    assert!((50..=60).contains(&held), "{held} rows in the stream");

    // A consumer drains; the import goes on and finishes with every row enqueued.
    drain_with_a_consumer(&env, child, 400).await;
}

/// Starts a consumer, waits for the held import `child` to finish with `n` rows enqueued
/// and for every order to be processed, then stops the consumer.
async fn drain_with_a_consumer(env: &TestEnv, child: std::process::Child, n: u64) {
    let (handle, token) = env.spawn_consumer(env.consumer_config());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["enqueued"], n);
    env.wait_until_processed(n as i64, Duration::from_secs(120))
        .await;
    token.cancel();
    handle.await.unwrap().unwrap();
}

/// Without `--max-lag` the limit is automatic (`producer::import::auto_lag`, whose unit
/// tests follow a throughput): with no consumer the import holds about the floor in the
/// stream and says it waits; a consumer then drains it and the import finishes.
#[tokio::test]
async fn without_max_lag_the_limit_is_automatic_and_the_import_waits_for_consumers() {
    use producer::import::auto_lag::AutoLag;
    let env = TestEnv::new().await;
    env.product("SKU-1", "1.00", 1_000_000).await;
    let n = 30_000;
    let file = env.file(&orders_csv(n));
    let path = file.path().to_str().unwrap().to_string();
    let (child, stderr) = oms_tests::procs::spawn_producer_unset(
        &env,
        &["import", &path, "--json"],
        &["IMPORT_MAX_LAG"],
    );
    let line = wait_for_line(&stderr, "waiting: more rows unread than --max-lag");
    assert!(line.contains("automatic=true"), "{line}");
    let held = stream_length(&env).await * 100;
    // The starting limit (the floor: no throughput is known), give or take one pipeline
    // (a quarter of the limit).
    let (low, high) = (AutoLag::FLOOR * 3 / 4, AutoLag::FLOOR * 5 / 4);
    assert!((low..=high).contains(&held), "{held} rows in the stream");

    // A consumer drains it; the import finishes with every row enqueued.
    drain_with_a_consumer(&env, child, n as u64).await;
}

#[tokio::test]
async fn an_interrupted_import_resumes_where_it_stopped() {
    let env = TestEnv::new().await;
    let file = env.file(&orders_csv(300));
    let path = file.path().to_str().unwrap().to_string();
    let (child, stderr) = spawn_import(&env, &[&path, "--chunk-size", "10", "--max-lag", "100"]);
    wait_for_line(&stderr, "waiting: more rows unread than --max-lag");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an interrupted import exits 1");
    let (id, status, enqueued, through): (u64, String, u64, u64) =
        sqlx::query_as("SELECT id, status, rows_enqueued, enqueued_through_line FROM imports")
            .fetch_one(&env.db)
            .await
            .unwrap();
    assert_eq!(status, "interrupted");
    assert_eq!(stream_length(&env).await * 10, enqueued);
    assert_eq!(through, enqueued + 1, "lines 2..=through are on the stream");

    let resumed = import(&env.config, &args(&path), CancellationToken::new())
        .await
        .unwrap();
    assert_ne!(resumed.import_id, id);
    assert_eq!(resumed.duplicates, enqueued);
    assert_eq!(resumed.enqueued, 300 - enqueued);
    let (_, rows) = stream_rows(&env).await;
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert_eq!(
        lines,
        (2..302).collect::<Vec<u64>>(),
        "every row once, in order"
    );
}

/// Peak RSS (VmHWM, kB) of a running process, polled until it exits.
fn peak_rss_kb(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    peak
}

/// Bytes free in the temp directory, from `df`.
fn free_temp_bytes() -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(std::env::temp_dir())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn pathological_files_are_rejected_in_bounded_memory() {
    use std::io::BufWriter;
    let env = TestEnv::new().await;
    // A 1 GiB line when the disk has room for it (3 GiB free), else 64 MiB (said so).
    let huge: u64 = std::env::var("OMS_TEST_HUGE_LINE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if free_temp_bytes() > 3 << 30 {
            1 << 30
        } else {
            64 << 20
        });
    eprintln!("pathological file: a {huge}-byte line");
    let file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    {
        let mut w = BufWriter::with_capacity(1 << 20, file.as_file());
        w.write_all(b"customer_name,customer_email,products\n")
            .unwrap();
        let block = vec![b'x'; 1 << 20];
        let mut left = huge;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            w.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
        w.write_all(b"\n").unwrap(); // line 2: one huge field
        w.write_all(&b",".repeat(1_000_000)).unwrap(); // line 3: a million columns
        w.write_all(b"\n").unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        writeln!(w, "n,a@example.com,{deep}").unwrap(); // line 4: JSON 100,000 deep
        w.write_all(b"Zo\xff\xfe,b@example.com,").unwrap(); // line 5: invalid UTF-8
        writeln!(w, "{}", item("SKU-1", 1)).unwrap();
        writeln!(w, "N\0UL,c@example.com,{}", item("SKU-1", 1)).unwrap(); // line 6: NUL
        writeln!(w, "Fine,d@example.com,{}", item("SKU-1", 1)).unwrap(); // line 7: valid
        w.flush().unwrap();
    }
    let path = file.path().to_str().unwrap().to_string();
    let mut child = Command::new(binary("producer"))
        .args(["import", &path, "--json"])
        .envs(env.env_vars())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peak_kb = peak_rss_kb(&mut child);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("peak RSS {} MB", peak_kb / 1024);
    assert!(peak_kb < 64 * 1024, "peak RSS {peak_kb} kB");
    assert_eq!(
        (report["rows"].as_u64(), report["enqueued"].as_u64()),
        (Some(6), Some(1))
    );
    let got = rejects(&env, report["import_id"].as_u64().unwrap()).await;
    let want: Vec<(u64, String)> = [
        (2, "field_too_long"),
        (3, "malformed_row"),
        (4, "field_too_long"),
        (5, "malformed_row"),
        (6, "malformed_row"),
    ]
    .iter()
    .map(|(l, r)| (*l, r.to_string()))
    .collect();
    assert_eq!(got, want);
    let (_, rows) = stream_rows(&env).await;
    assert_eq!((rows.len(), rows[0].line), (1, 7));
}

#[tokio::test]
async fn chunks_close_before_the_entry_size_consumers_accept() {
    use oms_shared::order::rules::{CHUNK_CLOSE_BYTES, MAX_ENTRY_BYTES};
    let env = TestEnv::new().await;
    let items: Vec<String> = (0..100)
        .map(|i| format!(r#"{{""sku"":""SKU-{i:06}"",""quantity"":1}}"#))
        .collect();
    let products = format!("\"[{}]\"", items.join(","));
    let mut csv = String::from("customer_name,customer_email,products\n");
    for i in 0..2_000 {
        csv.push_str(&format!("C{i},c{i}@example.com,{products}\n"));
    }
    let file = env.file(&csv);
    let mut a = args(file.path().to_str().unwrap());
    a.chunk_size = 10_000;
    let report = import(&env.config, &a, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.enqueued, 2_000);
    let mut conn = env.redis_conn().await;
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(env.keys.orders())
        .arg("-")
        .arg("+")
        .query_async(&mut *conn)
        .await
        .expect("xrange");
    assert!(reply.ids.len() >= 2, "5 MB of rows in more than one entry");
    for entry in &reply.ids {
        let bytes: usize = entry
            .map
            .iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        redis::Value::BulkString(b) => b.len(),
                        _ => 0,
                    }
            })
            .sum();
        assert!(bytes <= MAX_ENTRY_BYTES, "{bytes} bytes in {}", entry.id);
        assert!(bytes < CHUNK_CLOSE_BYTES + 64 * 1024, "{bytes} bytes");
    }
}
