//! Observability end to end: a consumer binary's `/metrics` scraped by a real Prometheus
//! (Debian package `prometheus`) that also evaluates `ops/prometheus/alerts.yml`; promtool's
//! lint of the exposition; the Prometheus configuration and alert rule tests; JSON logs with
//! the batch span and one event per order; the Grafana dashboard's queries checked against
//! the metrics the consumer exports.
//!
//! prometheus and promtool must be installed (`bash ops/prometheus/install.sh`, which
//! `ops/test.sh` runs): the tests that need them fail, naming the missing tool, otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consumer::metrics::{self as oms_metrics, Kind};
use oms_tests::{binary, order_row, wait_for, TestEnv};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(60);

/// The repository root (the tests crate lives in `tests/`).
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Path of an external tool on PATH, or a failure that says how to install it.
pub(crate) fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed (not on PATH): run `bash ops/prometheus/install.sh` \
                 (Debian package `prometheus`, which ships prometheus and promtool); \
                 ops/test.sh does it in CI"
            )
        })
}

/// A loopback port nobody listens on right now (outside the ephemeral range, see
/// [`oms_tests::servers::free_port`]).
pub(crate) fn free_port() -> u16 {
    oms_tests::servers::free_local_port()
}

/// One HTTP/1.0 response.
pub(crate) struct Response {
    pub(crate) status: u16,
    headers: String,
    pub(crate) body: String,
}

/// `GET http://{addr}{path}`; `None` when the server does not answer (yet).
pub(crate) async fn http_get(addr: &str, path: &str) -> Option<Response> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some(Response {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_string(),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A consumer binary whose stderr (JSON logs) is collected line by line.
struct ConsumerProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ConsumerProcess {
    fn spawn(env: &TestEnv, name: &str, rust_log: &str, extra: &[&str]) -> ConsumerProcess {
        let mut child = Command::new(binary("consumer"))
            .args(["--name", name, "--metrics-addr", "127.0.0.1:0"])
            .args(extra)
            .envs(env.env_vars())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the consumer binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lines").push(line);
            }
        });
        ConsumerProcess {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lines").clone()
    }

    /// The address `/metrics` really listens on, from the consumer's JSON log.
    async fn metrics_addr(&self) -> String {
        wait_for(
            "the consumer's `serving /metrics` log line",
            DEADLINE,
            || async {
                self.lines().iter().find_map(|line| {
                    let event: Value = serde_json::from_str(line).ok()?;
                    event["message"]
                        .as_str()?
                        .starts_with("serving /metrics")
                        .then(|| event["addr"].as_str().map(str::to_string))?
                })
            },
        )
        .await
    }

    /// SIGTERM, then waits for a clean exit (status 0) and for the end of its log.
    async fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let child = &mut self.child;
        let exit = wait_for("the consumer to exit after SIGTERM", DEADLINE, || {
            let polled = child.try_wait().expect("poll the consumer");
            async move { polled }
        })
        .await;
        assert!(exit.success(), "consumer exited with {exit} after SIGTERM");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("log reader thread");
        }
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` with `args(addr)` on a free loopback port until its `GET /-/ready`
/// answers 200 (Prometheus, Alertmanager); stderr goes to `log_path`. The free port may be
/// taken between the probe and the server's bind: then it tries again with another one.
pub(crate) async fn spawn_until_ready(
    program: &Path,
    log_path: &Path,
    args: impl Fn(&str) -> Vec<String>,
) -> (Child, String) {
    for attempt in 1..=3 {
        let log = std::fs::File::create(log_path).expect("log file");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(program)
            .args(args(&addr))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let started = wait_for("the server to be ready", DEADLINE, || {
            let exited = child.try_wait().expect("poll the server");
            let addr = addr.clone();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                let ready = http_get(&addr, "/-/ready").await?;
                (ready.status == 200).then_some(Ok(()))
            }
        })
        .await;
        match started {
            Ok(()) => return (child, addr),
            Err(status) => {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                assert!(
                    attempt < 3 && log.contains("address already in use"),
                    "{} exited with {status}:\n{log}",
                    program.display()
                );
            }
        }
    }
    unreachable!("the loop returns or panics")
}

/// A Prometheus server on a free loopback port with its own temp dir; killed on drop.
struct PrometheusServer {
    child: Child,
    addr: String,
    /// Configuration, targets, data and log; removed on drop.
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping the targets listed in `targets/*.json` of its temp dir
    /// (file-based discovery, like `ops/prometheus/prometheus.yml`) every second, with the
    /// project's alert rules loaded.
    async fn start(consumer_addr: &str) -> PrometheusServer {
        let prometheus = tool("prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("targets")).expect("targets dir");
        std::fs::write(
            dir.path().join("targets/consumer.json"),
            serde_json::json!([{ "targets": [consumer_addr], "labels": { "env": "test" } }])
                .to_string(),
        )
        .expect("write the targets file");
        let alerts = repo_root().join("ops/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {alerts}\n\
             scrape_configs:\n  - job_name: oms-consumer\n    file_sd_configs:\n      \
             - files: ['{targets}/*.json']\n        refresh_interval: 1s\n",
            alerts = alerts.display(),
            targets = dir.path().join("targets").display(),
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let (child, addr) =
            spawn_until_ready(&prometheus, &dir.path().join("prometheus.log"), |addr| {
                vec![
                    format!("--config.file={}", config_path.display()),
                    format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                    format!("--web.listen-address={addr}"),
                    "--log.level=warn".into(),
                ]
            })
            .await;
        PrometheusServer {
            child,
            addr,
            _dir: dir,
        }
    }

    /// `/api/v1/query` → the result vector as (labels, value) pairs; `None` on any error.
    async fn query(&self, promql: &str) -> Option<Vec<(BTreeMap<String, String>, f64)>> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let response = http_get(&self.addr, &path).await?;
        let json: Value = serde_json::from_str(&response.body).ok()?;
        if json["status"] != "success" {
            return None;
        }
        json["data"]["result"]
            .as_array()?
            .iter()
            .map(|sample| {
                let labels = sample["metric"]
                    .as_object()?
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect::<Option<BTreeMap<_, _>>>()?;
                let value = sample["value"][1].as_str()?.parse().ok()?;
                Some((labels, value))
            })
            .collect()
    }

    /// Waits until `promql` returns one sample for which `accept` holds; returns its value.
    async fn await_value(&self, promql: &str, accept: impl Fn(f64) -> bool) -> f64 {
        wait_for(
            &format!("Prometheus to answer {promql}"),
            DEADLINE,
            || async {
                let result = self.query(promql).await?;
                match result.as_slice() {
                    [(_, value)] if accept(*value) => Some(*value),
                    _ => None,
                }
            },
        )
        .await
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of a Prometheus text exposition (labels without escapes).
fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").expect("label=\"value\"");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            Sample {
                name,
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// Sum of the samples named `name` whose labels include `labels`.
fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// The series names Prometheus stores for the consumer's metrics (histograms as
/// `_bucket`, `_sum` and `_count`).
fn expected_series_names() -> BTreeSet<String> {
    oms_metrics::METRICS
        .iter()
        .flat_map(|m| match m.kind {
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{}{suffix}", m.name))
                .collect::<Vec<_>>(),
            _ => vec![m.name.to_string()],
        })
        .collect()
}

#[tokio::test]
async fn prometheus_scrapes_the_consumer_and_promtool_accepts_its_metrics() {
    let promtool = tool("promtool");
    tool("prometheus");
    let env = TestEnv::new().await;
    env.product("OBS-A", "12.50", 1_000).await;
    env.product("OBS-EMPTY", "3.00", 0).await;
    let import = env.import_row().await;
    // What the producer records for an import; the consumer exports the sums.
    sqlx::query(
        "UPDATE imports SET rows_total = 15, rows_enqueued = 12, rows_rejected = 3 WHERE id = ?",
    )
    .bind(import)
    .execute(&env.db)
    .await
    .expect("record the import's counts");
    let mut rows = Vec::new();
    for i in 0..8u64 {
        let email = format!("buyer{i}@example.com");
        rows.push(order_row(
            &format!("obs-{i}"),
            i + 2,
            &email,
            &[("OBS-A", 2)],
        ));
    }
    rows.push(order_row("obs-8", 10, "x@example.com", &[("OBS-EMPTY", 1)]));
    rows.push(order_row("obs-9", 11, "y@example.com", &[("OBS-EMPTY", 1)]));
    rows.push(order_row(
        "obs-10",
        12,
        "z@example.com",
        &[("NO-SUCH-SKU", 1)],
    ));
    rows.push(order_row(
        "obs-11",
        13,
        "z@example.com",
        &[("NO-SUCH-SKU", 1)],
    ));

    // The first entry is read by a consumer that then vanishes: the real consumer must
    // claim it after --claim-idle-secs (oms_claimed_messages_total).
    env.enqueue(import, &rows[..1], 1).await;
    let mut conn = env.redis_conn().await;
    let _ = oms_shared::redis::queue::read_new_entries(
        &mut *conn,
        &env.keys,
        0,
        "vanished-consumer",
        10,
    )
    .await
    .expect("read as a consumer that vanishes");
    env.enqueue(import, &rows[1..], 4).await;
    // A malformed entry is dead-lettered at once (oms_dead_letters, result="dead").
    let _: String = redis::cmd("XADD")
        .arg(env.keys.orders())
        .arg("*")
        .arg("bogus")
        .arg("1")
        .query_async(&mut *conn)
        .await
        .expect("xadd a malformed entry");
    drop(conn);

    let mut consumer = ConsumerProcess::spawn(
        &env,
        "obs-scraped",
        "info",
        &["--claim-idle-secs", "1", "--payment-success-rate", "1"],
    );
    let addr = consumer.metrics_addr().await;
    env.wait_until_processed(rows.len() as i64, DEADLINE).await;

    let healthz = http_get(&addr, "/healthz").await.expect("/healthz answers");
    assert_eq!(healthz.status, 200, "/healthz: {}", healthz.body);
    let readyz = http_get(&addr, "/readyz").await.expect("/readyz answers");
    assert_eq!(readyz.status, 200, "/readyz: {}", readyz.body);

    // Every metric of METRICS is exported with its type, and the counters add up. The
    // queue gauges are refreshed every 5 s, hence the wait.
    let metrics = wait_for(
        "/metrics with every metric and the dead letter",
        DEADLINE,
        || async {
            let response = http_get(&addr, "/metrics").await?;
            let samples = parse_exposition(&response.body);
            let complete = oms_metrics::METRICS.iter().all(|m| {
                response
                    .body
                    .contains(&format!("# TYPE {} {}\n", m.name, m.kind.as_str()))
            });
            let refreshed = total(&samples, oms_metrics::DEAD_LETTERS, &[]) == 1.0
                && total(
                    &samples,
                    oms_metrics::IMPORT_ROWS,
                    &[("result", "enqueued")],
                ) == 12.0
                && total(
                    &samples,
                    oms_metrics::IMPORT_ROWS,
                    &[("result", "rejected")],
                ) == 3.0
                && total(&samples, oms_metrics::STREAM_PENDING, &[]) == 0.0
                && total(&samples, oms_metrics::STREAM_LAG, &[]) == 0.0
                && total(&samples, oms_metrics::STREAM_LENGTH, &[]) >= 1.0;
            (complete && refreshed).then_some(response)
        },
    )
    .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .headers
            .contains("content-type: text/plain; version=0.0.4"),
        "content type of /metrics: {}",
        metrics.headers
    );
    let samples = parse_exposition(&metrics.body);
    let orders = |labels: &[(&str, &str)]| total(&samples, oms_metrics::ORDERS, labels);
    assert_eq!(orders(&[("outcome", "completed")]), 8.0);
    assert_eq!(orders(&[("reason", "insufficient_stock")]), 2.0);
    assert_eq!(orders(&[("reason", "unknown_sku")]), 2.0);
    assert_eq!(orders(&[("reason", "payment_declined")]), 0.0);
    assert_eq!(
        total(&samples, oms_metrics::REVENUE_CENTS, &[]),
        8.0 * 2.0 * 1250.0
    );
    assert_eq!(
        total(&samples, oms_metrics::MESSAGES, &[("result", "dead")]),
        1.0
    );
    assert!(total(&samples, oms_metrics::CLAIMED, &[]) >= 1.0);
    assert_eq!(
        total(&samples, "oms_order_duration_seconds_count", &[]),
        12.0
    );
    assert!(total(&samples, "oms_batch_rows_count", &[]) >= 1.0);
    assert!(
        total(
            &samples,
            "oms_mysql_duration_seconds_count",
            &[("phase", "reserve")]
        ) >= 1.0
    );
    assert!(
        total(
            &samples,
            "oms_redis_duration_seconds_count",
            &[("op", "claim")]
        ) >= 1.0
    );
    assert_eq!(
        total(
            &samples,
            oms_metrics::CONSUMER_INFO,
            &[("consumer", "obs-scraped")]
        ),
        1.0
    );
    assert_eq!(total(&samples, oms_metrics::READY, &[]), 1.0);

    // promtool's linter accepts the exposition as it is.
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool check metrics");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.body.as_bytes())
        .expect("feed promtool");
    let checked = check.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && report.trim().is_empty(),
        "promtool check metrics found problems:\n{report}"
    );

    // A real Prometheus discovers the consumer from a targets file, scrapes it, stores
    // every series, and evaluates the project's alert rules against them.
    let prometheus = PrometheusServer::start(&addr).await;
    prometheus
        .await_value(r#"up{job="oms-consumer"}"#, |v| v == 1.0)
        .await;
    let expected = expected_series_names();
    let stored = wait_for("every consumer series in Prometheus", DEADLINE, || async {
        let result = prometheus
            .query(r#"count by (__name__) ({__name__=~"oms_.+", job="oms-consumer"})"#)
            .await?;
        let names: BTreeSet<String> = result
            .into_iter()
            .filter_map(|(labels, _)| labels.get("__name__").cloned())
            .collect();
        names.is_superset(&expected).then_some(names)
    })
    .await;
    assert_eq!(
        stored, expected,
        "Prometheus stores series the metric table does not describe"
    );
    prometheus
        .await_value(
            r#"sum(oms_orders_total{job="oms-consumer",outcome="failed"})"#,
            |v| v == 4.0,
        )
        .await;
    prometheus
        .await_value(
            r#"max(oms_dead_letters{job="oms-consumer",env="test"})"#,
            |v| v == 1.0,
        )
        .await;
    prometheus
        .await_value(
            r#"histogram_quantile(0.99, sum by (le) (oms_order_duration_seconds_bucket{job="oms-consumer"}))"#,
            |v| v > 0.0,
        )
        .await;
    // The dead letter makes OmsDeadLetters pending (it fires after `for: 1m`).
    prometheus
        .await_value(
            r#"count(ALERTS{alertname="OmsDeadLetters",job="oms-consumer"})"#,
            |v| v == 1.0,
        )
        .await;

    consumer.terminate().await;
}

#[tokio::test]
async fn json_logs_carry_the_batch_span_and_one_event_per_order() {
    let env = TestEnv::new().await;
    env.product("LOG-A", "5.00", 100).await;
    let import = env.import_row().await;
    let rows: Vec<_> = (0..6u64)
        .map(|i| {
            order_row(
                &format!("log-{i}"),
                i + 2,
                &format!("l{i}@example.com"),
                &[("LOG-A", 1)],
            )
        })
        .collect();
    env.enqueue(import, &rows, 3).await;
    let mut consumer = ConsumerProcess::spawn(
        &env,
        "obs-logs",
        "info,consumer=debug",
        &["--payment-success-rate", "1"],
    );
    env.wait_until_processed(rows.len() as i64, DEADLINE).await;
    consumer.terminate().await;

    let lines = consumer.lines();
    let events: Vec<Value> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let event: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(event.is_object(), "not a JSON object: {l}");
            assert!(
                event["timestamp"].is_string() && event["level"].is_string(),
                "{l}"
            );
            event
        })
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    for expected in ["consumer started", "consumer stopped"] {
        assert!(
            messages.contains(&expected),
            "no `{expected}` event in {messages:?}"
        );
    }

    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "order finished")
        .collect();
    let identities: BTreeSet<&str> = finished
        .iter()
        .filter_map(|e| e["identity"].as_str())
        .collect();
    let expected: BTreeSet<String> = (0..6).map(|i| format!("log-{i}")).collect();
    assert_eq!(
        identities,
        expected.iter().map(String::as_str).collect(),
        "one `order finished` event per order, with its identity"
    );
    for event in &finished {
        assert_eq!(event["level"], "DEBUG", "{event}");
        assert_eq!(event["import_id"].as_u64(), Some(import), "{event}");
        assert_eq!(event["outcome"], "completed", "{event}");
        let span = &event["span"];
        assert_eq!(
            span["name"], "batch",
            "the event is inside the batch span: {event}"
        );
        assert_eq!(span["consumer"], "obs-logs", "{event}");
        assert!(
            span["imports"]
                .as_str()
                .is_some_and(|ids| ids.contains(&import.to_string())),
            "the batch span names its import ids: {event}"
        );
        assert!(
            event["spans"].as_array().is_some_and(|s| !s.is_empty()),
            "the span list is present: {event}"
        );
    }
}

#[test]
fn prometheus_config_and_alert_rules_pass_promtool() {
    let promtool = tool("promtool");
    let dir = repo_root().join("ops/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "config", "prometheus.compose.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Words of PromQL that are not metric names.
const PROMQL_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    // Aggregation operators, which may be followed by `by (...)` instead of `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Metric names a PromQL expression selects: identifiers outside strings, label matchers
/// `{...}`, ranges `[...]` and label lists (`by (...)` etc.), not followed by `(`.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let (mut i, mut braces, mut brackets) = (0, 0usize, 0usize);
    let mut label_list_next = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '[' => brackets += 1,
            ']' => brackets = brackets.saturating_sub(1),
            '(' if label_list_next => {
                // Skip the label list of by/without/on/ignoring/group_left/group_right.
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                label_list_next = false;
            }
            _ => {}
        }
        let starts_identifier = c.is_ascii_alphabetic() || c == '_' || c == ':';
        let after_number_or_dollar = i > 0
            && (chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '$' || chars[i - 1] == '.');
        if starts_identifier && !after_number_or_dollar {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let is_call = chars.get(next) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if PROMQL_KEYWORDS.contains(&lower.as_str()) {
                label_list_next = matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
            } else if braces == 0 && brackets == 0 && !is_call {
                names.push(word);
            }
            continue;
        }
        i += 1;
    }
    names
}

/// Whether the consumer (or Prometheus itself, for `up`) exports a series named `name`.
fn is_exported(name: &str) -> bool {
    if name == "up" || oms_metrics::ALL.contains(&name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(oms_metrics::metric)
            .is_some_and(|m| m.kind == Kind::Histogram)
    })
}

/// Every query of a dashboard (panel targets, nested panels of rows, variables), with
/// where it was found; panics on a malformed panel.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], ids: &mut BTreeSet<u64>, out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("").to_string();
            assert!(!title.is_empty(), "a panel without a title: {panel}");
            let id = panel["id"].as_u64().expect("a numeric panel id");
            assert!(ids.insert(id), "panel id {id} is used twice");
            for key in ["h", "w", "x", "y"] {
                assert!(
                    panel["gridPos"][key].is_u64(),
                    "panel {title:?} lacks gridPos.{key}"
                );
            }
            if panel["type"] != "row" {
                let targets = panel["targets"].as_array();
                assert!(
                    targets.is_some_and(|t| !t.is_empty()),
                    "panel {title:?} has no query"
                );
                for target in targets.into_iter().flatten() {
                    let expr = target["expr"].as_str().expect("a PromQL expr");
                    out.push((format!("panel {title:?}"), expr.to_string()));
                }
            }
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, ids, out);
            }
        }
    }
    let mut out = Vec::new();
    let panels = dashboard["panels"].as_array().expect("a panels array");
    walk(panels, &mut BTreeSet::new(), &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .expect("a variable query");
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _)| selector)
                .unwrap_or(query);
            out.push((format!("variable {}", variable["name"]), inner.to_string()));
        }
    }
    out
}

#[test]
fn metric_names_finds_the_selected_metrics_only() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.95, sum by (phase, le) (rate(oms_mysql_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#
        ),
        ["oms_mysql_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            r#"(time() - oms_consumer_start_time_seconds) * on (instance) group_left (consumer, version) oms_consumer_info / 3600"#
        ),
        ["oms_consumer_start_time_seconds", "oms_consumer_info"]
    );
    assert_eq!(
        metric_names(r#"max(oms_stream_lag) > 1e3 and up{job="a"} == 0"#),
        ["oms_stream_lag", "up"]
    );
    assert!(!is_exported("oms_orders_count"));
    assert!(!is_exported("oms_stream_lag_bucket"));
    assert!(is_exported("oms_batch_rows_bucket"));
}

#[test]
fn dashboard_queries_name_only_exported_metrics() {
    let path = repo_root().join("ops/grafana/dashboards/oms.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    assert!(
        dashboard.get("__inputs").is_none(),
        "a provisioned dashboard cannot have __inputs (it would not load as is)"
    );

    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "only {} queries", queries.len());
    let mut referenced = BTreeSet::new();
    for (place, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: `{expr}` names no metric");
        for name in names {
            assert!(
                is_exported(&name),
                "{place}: `{expr}` uses {name}, which the consumer does not export"
            );
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| oms_metrics::metric(b).is_some())
                })
                .unwrap_or(&name)
                .to_string();
            referenced.insert(base);
        }
    }
    for required in [
        oms_metrics::ORDERS,
        oms_metrics::ORDER_DURATION,
        oms_metrics::MESSAGES,
        oms_metrics::STREAM_LENGTH,
        oms_metrics::STREAM_PENDING,
        oms_metrics::STREAM_LAG,
        oms_metrics::DEAD_LETTERS,
        oms_metrics::REVENUE_CENTS,
        oms_metrics::BATCH_ROWS,
        oms_metrics::MYSQL_DURATION,
        oms_metrics::REDIS_DURATION,
    ] {
        assert!(referenced.contains(required), "no panel shows {required}");
    }
    assert!(
        queries
            .iter()
            .any(|(_, e)| e.contains("by (instance)") && e.contains("oms_messages_total")),
        "no per-consumer throughput panel"
    );
}
