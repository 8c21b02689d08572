//! Alert delivery end to end: a real Prometheus evaluates a lag alert on a real consumer's
//! metrics and sends it to a real Alertmanager running `ops/prometheus/alertmanager.yml`
//! (its webhook URL pointed at a listener in this test, its batching delays shortened),
//! which POSTs the firing alert and then its resolution.
//!
//! The lag grows while the consumer is paused and an import enqueues; the project's
//! `OmsQueueLagGrowing` deliberately ignores a paused queue and waits 15 minutes, so the
//! test loads its own rule, `OmsConsumerLagHigh` (lag above 20 entries for 2 s).

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::{binary, order_row, wait_for, TestEnv};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::observability::{repo_root, spawn_until_ready, tool};

const DEADLINE: Duration = Duration::from_secs(60);

const LAG_RULE: &str = r#"groups:
  - name: oms-test
    rules:
      - alert: OmsConsumerLagHigh
        expr: sum by (job) (max by (job, partition) (oms_stream_lag{job="oms-consumer"})) > 20
        for: 2s
        labels:
          severity: warning
        annotations:
          summary: "oms queue lag is {{ $value }} entries"
"#;

/// A server process on a free loopback port with its own temp dir; killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `program` with `args(addr, dir)` until it is ready.
    async fn start(
        program: &str,
        dir: tempfile::TempDir,
        args: impl Fn(&str, &Path) -> Vec<String>,
    ) -> Server {
        let (child, addr) =
            spawn_until_ready(&tool(program), &dir.path().join("server.log"), |addr| {
                args(addr, dir.path())
            })
            .await;
        Server {
            child,
            addr,
            _dir: dir,
        }
    }
}

/// The shipped Alertmanager configuration, delivering to `webhook` without batching delays.
fn alertmanager_config(webhook: &str) -> String {
    let shipped = std::fs::read_to_string(repo_root().join("ops/prometheus/alertmanager.yml"))
        .expect("read ops/prometheus/alertmanager.yml");
    let mut config = shipped.clone();
    for (from, to) in [
        ("http://127.0.0.1:9099/oms-alerts", webhook),
        ("group_wait: 30s", "group_wait: 1s"),
        ("group_interval: 5m", "group_interval: 1s"),
    ] {
        assert!(
            config.contains(from),
            "alertmanager.yml no longer has `{from}`"
        );
        config = config.replace(from, to);
    }
    config
}

/// A webhook receiver: every POSTed JSON body, in order of arrival.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 8192];
                // Read the head, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break body.to_string();
                    }
                };
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                if let Ok(json) = serde_json::from_str::<Value>(&body) {
                    sink.lock().expect("webhook payloads").push(json);
                }
            });
        }
    });
    (url, received)
}

/// The first payload received with `status` naming `alert`.
async fn payload(received: &Mutex<Vec<Value>>, status: &str, alert: &str) -> Value {
    wait_for(
        &format!("a {status} {alert} at the webhook"),
        DEADLINE,
        || async {
            received.lock().expect("payloads").iter().find_map(|p| {
                let names_it = p["alerts"]
                    .as_array()?
                    .iter()
                    .any(|a| a["labels"]["alertname"] == alert && a["status"] == status);
                (p["status"] == status && names_it).then(|| p.clone())
            })
        },
    )
    .await
}

fn set_paused(env: &TestEnv, paused: bool) {
    let out = Command::new(binary("producer"))
        .args(["queue", if paused { "pause" } else { "resume" }])
        .envs(env.env_vars())
        .output()
        .expect("run producer queue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_alert_reaches_a_webhook_and_resolves() {
    let env = TestEnv::new().await;
    env.product("AL-A", "2.00", 100_000).await;
    // The queue is paused before the consumer starts (it starts paused): a read already
    // in progress when a pause is seen would deliver entries and hold them pending, which
    // is not lag.
    set_paused(&env, true);
    let logs = LogDir::new();
    let consumer = ConsumerProc::spawn(&ConsumerSpec::new(&env, "alerting-c", &[]), &logs);
    let consumer_addr = consumer.metrics_addr(DEADLINE).await;

    let (hook_url, received) = webhook().await;
    let am_dir = tempfile::tempdir().expect("temp dir");
    let am_config = am_dir.path().join("alertmanager.yml");
    std::fs::write(&am_config, alertmanager_config(&hook_url)).expect("write alertmanager.yml");
    let alertmanager = Server::start("prometheus-alertmanager", am_dir, |addr, dir| {
        vec![
            format!("--config.file={}", am_config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ]
    })
    .await;

    let prom_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(prom_dir.path().join("rules.yml"), LAG_RULE).expect("write rules");
    let prom_config = prom_dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n\
             scrape_configs:\n  - job_name: oms-consumer\n    static_configs:\n      \
             - targets: ['{consumer_addr}']\n",
            rules = prom_dir.path().join("rules.yml").display(),
            am = alertmanager.addr,
        ),
    )
    .expect("write prometheus.yml");
    let _prometheus = Server::start("prometheus", prom_dir, |addr, dir| {
        vec![
            format!("--config.file={}", prom_config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
            "--rules.alert.resend-delay=1s".into(),
            "--log.level=warn".into(),
        ]
    })
    .await;

    // The consumers read nothing; an import enqueues 60 entries: the lag grows.
    let import = env.import_row().await;
    let rows: Vec<_> = (0..60u64)
        .map(|i| {
            order_row(
                &format!("al-{i}"),
                i + 2,
                &format!("al{i}@example.com"),
                &[("AL-A", 1)],
            )
        })
        .collect();
    env.enqueue(import, &rows, 1).await;

    let firing = payload(&received, "firing", "OmsConsumerLagHigh").await;
    eprintln!("firing payload: {firing:#}");
    assert_eq!(firing["receiver"], "oms-webhook");
    assert_eq!(firing["groupLabels"]["alertname"], "OmsConsumerLagHigh");
    assert_eq!(firing["commonLabels"]["severity"], "warning");

    // The consumers read again, the lag drains, the alert resolves.
    set_paused(&env, false);
    env.wait_until_processed(60, DEADLINE).await;
    let resolved = payload(&received, "resolved", "OmsConsumerLagHigh").await;
    eprintln!("resolved payload: {resolved:#}");
    assert_eq!(
        resolved["alerts"][0]["labels"],
        firing["alerts"][0]["labels"]
    );
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    drop(consumer);
}
