//! Metric names and the Prometheus recorder. Names follow Prometheus conventions (base
//! units, `_total`, `_seconds`); labels have a handful of values each, never one per order,
//! customer, sku or import. [`METRICS`] describes every metric (kind, labels, help);
//! `ops/prometheus/metric-names.txt` lists the same table for operators, and a unit test
//! keeps the two equal.
//!
//! The queue gauges (`oms_stream_*`, `oms_dead_letters`) and `oms_import_rows_total` are
//! views of shared state (the stream, the `imports` table): every consumer reports the
//! same values, so dashboards and alerts aggregate them with `max`, never `sum`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use oms_shared::store::orders::FailureReason;

pub const ORDERS: &str = "oms_orders_total";
pub const ORDER_DURATION: &str = "oms_order_duration_seconds";
pub const MESSAGES: &str = "oms_messages_total";
pub const STREAM_LENGTH: &str = "oms_stream_length";
pub const STREAM_PENDING: &str = "oms_stream_pending";
pub const STREAM_LAG: &str = "oms_stream_lag";
pub const DEAD_LETTERS: &str = "oms_dead_letters";
pub const REVENUE_CENTS: &str = "oms_revenue_cents_total";
pub const IMPORT_ROWS: &str = "oms_import_rows_total";
pub const BATCH_ROWS: &str = "oms_batch_rows";
pub const BATCH_DURATION: &str = "oms_batch_duration_seconds";
pub const MYSQL_DURATION: &str = "oms_mysql_duration_seconds";
pub const REDIS_DURATION: &str = "oms_redis_duration_seconds";
pub const RETRIES: &str = "oms_retries_total";
pub const WRITE_CONFLICTS: &str = "oms_mysql_write_conflicts_total";
pub const RECONNECTS: &str = "oms_reconnects_total";
pub const CLAIMED: &str = "oms_claimed_messages_total";
pub const READY: &str = "oms_consumer_ready";
pub const IN_FLIGHT_ROWS: &str = "oms_consumer_in_flight_rows";
pub const CONSUMER_INFO: &str = "oms_consumer_info";
pub const START_TIME: &str = "oms_consumer_start_time_seconds";
pub const PAUSED: &str = "oms_consumer_paused";
pub const HISTORY_REWOUND: &str = "oms_mysql_history_rewound";
pub const REDIS_DATA_LOST: &str = "oms_redis_data_lost";

/// Every metric this consumer exports, for the dashboard test.
pub const ALL: &[&str] = &[
    ORDERS,
    ORDER_DURATION,
    MESSAGES,
    STREAM_LENGTH,
    STREAM_PENDING,
    STREAM_LAG,
    DEAD_LETTERS,
    REVENUE_CENTS,
    IMPORT_ROWS,
    BATCH_ROWS,
    BATCH_DURATION,
    MYSQL_DURATION,
    REDIS_DURATION,
    RETRIES,
    WRITE_CONFLICTS,
    RECONNECTS,
    CLAIMED,
    READY,
    IN_FLIGHT_ROWS,
    CONSUMER_INFO,
    START_TIME,
    PAUSED,
    HISTORY_REWOUND,
    REDIS_DATA_LOST,
];

/// The Prometheus type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word of a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric: its name, type, label names and help text.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// Latency buckets for one step (a transaction, a Redis round trip, a batch): 1 ms to 5 min.
const STEP_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// Enqueue-to-terminal buckets: 10 ms to 2 h (a backlog of a million rows takes a while),
/// 100 ms apart below 1.5 s, so a p99 near the 1 s target is read to within 0.1 s
/// (`histogram_quantile` interpolates inside one bucket).
const ORDER_SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5,
    2.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];
/// Rows per batch: up to `--batch-size` (1,000 by default, 10,000 at most).
const BATCH_ROW_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

/// Every metric with its type, labels and help; [`ALL`] in the same order.
pub const METRICS: &[Metric] = &[
    Metric {
        name: ORDERS,
        kind: Kind::Counter,
        labels: &["outcome", "reason"],
        help: "Orders that reached an outcome (completed, failed, duplicate), by outcome and failure reason",
    },
    Metric {
        name: ORDER_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds from enqueue to the order's terminal state",
    },
    Metric {
        name: MESSAGES,
        kind: Kind::Counter,
        labels: &["result"],
        help: "Stream entries handled, by result (acked, retried, dead)",
    },
    Metric {
        name: STREAM_LENGTH,
        kind: Kind::Gauge,
        labels: &[],
        help: "Entries in the orders stream (refreshed every 5 s; the same on every consumer)",
    },
    Metric {
        name: STREAM_PENDING,
        kind: Kind::Gauge,
        labels: &[],
        help: "Entries delivered to the group but not acknowledged (refreshed every 5 s)",
    },
    Metric {
        name: STREAM_LAG,
        kind: Kind::Gauge,
        labels: &[],
        help: "Entries not yet delivered to the group (refreshed every 5 s)",
    },
    Metric {
        name: DEAD_LETTERS,
        kind: Kind::Gauge,
        labels: &[],
        help: "Rows in the dead-letter stream (refreshed every 5 s)",
    },
    Metric {
        name: REVENUE_CENTS,
        kind: Kind::Counter,
        labels: &[],
        help: "Revenue of orders this consumer completed, in cents",
    },
    Metric {
        name: IMPORT_ROWS,
        kind: Kind::Counter,
        labels: &["result"],
        help: "Rows of all imports by result (enqueued, rejected, duplicate), read from MySQL every 5 s; the same on every consumer",
    },
    Metric {
        name: BATCH_ROWS,
        kind: Kind::Histogram,
        labels: &[],
        help: "Rows per processed batch",
    },
    Metric {
        name: BATCH_DURATION,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds to process one batch, acknowledgement included",
    },
    Metric {
        name: MYSQL_DURATION,
        kind: Kind::Histogram,
        labels: &["phase"],
        help: "Seconds per workflow transaction, by phase (reserve, settle)",
    },
    Metric {
        name: REDIS_DURATION,
        kind: Kind::Histogram,
        labels: &["op"],
        help: "Seconds per Redis operation, by operation (read, claim, read_model, ack)",
    },
    Metric {
        name: RETRIES,
        kind: Kind::Counter,
        labels: &[],
        help: "Transient errors (connection lost, deadlock, timeout) retried in process",
    },
    Metric {
        name: WRITE_CONFLICTS,
        kind: Kind::Counter,
        labels: &[],
        help: "Workflow transactions rolled back for a write conflict and retried: InnoDB \
               deadlocks and Galera certification failures (MySQL error 1213)",
    },
    Metric {
        name: RECONNECTS,
        kind: Kind::Counter,
        labels: &["service"],
        help: "Recoveries after a lost connection, by service (mysql, redis)",
    },
    Metric {
        name: CLAIMED,
        kind: Kind::Counter,
        labels: &[],
        help: "Entries claimed from idle consumers",
    },
    Metric {
        name: READY,
        kind: Kind::Gauge,
        labels: &[],
        help: "1 while Redis and MySQL answer, else 0",
    },
    Metric {
        name: IN_FLIGHT_ROWS,
        kind: Kind::Gauge,
        labels: &[],
        help: "Rows being processed by this consumer now",
    },
    Metric {
        name: CONSUMER_INFO,
        kind: Kind::Gauge,
        labels: &["consumer", "version"],
        help: "Always 1: the consumer's name in the group and its version",
    },
    Metric {
        name: START_TIME,
        kind: Kind::Gauge,
        labels: &[],
        help: "Unix time the consumer started, in seconds",
    },
    Metric {
        name: PAUSED,
        kind: Kind::Gauge,
        labels: &[],
        help: "1 while the queue is paused (producer queue pause): no new entries are read",
    },
    Metric {
        name: HISTORY_REWOUND,
        kind: Kind::Gauge,
        labels: &[],
        help: "1 while MySQL's outbox sequence is below an id Redis applied (MySQL restored from a backup or failed over to a lagging replica): nothing is settled or applied until `producer reconcile --fix`",
    },
    Metric {
        name: REDIS_DATA_LOST,
        kind: Kind::Gauge,
        labels: &[],
        help: "1 while Redis does not hold the data MySQL recorded (restarted without persistence?): no new entries are read until producer recover",
    },
];

/// The description of a metric by name.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// Buckets of each histogram.
fn buckets(name: &str) -> &'static [f64] {
    match name {
        ORDER_DURATION => ORDER_SECONDS,
        BATCH_ROWS => BATCH_ROW_BUCKETS,
        _ => STEP_SECONDS,
    }
}

/// The recorder builder: every histogram gets explicit buckets (without them the exporter
/// would render a summary).
fn builder() -> PrometheusBuilder {
    METRICS
        .iter()
        .filter(|m| m.kind == Kind::Histogram)
        .fold(PrometheusBuilder::new(), |b, m| {
            b.set_buckets_for_metric(Matcher::Full(m.name.into()), buckets(m.name))
                .expect("non-empty buckets")
        })
}

/// Installs the global recorder (once per process) and returns the handle that renders
/// `/metrics`. Later calls return the same handle, so consumers run in one process (tests)
/// all render the one registry their metrics go to.
pub fn install() -> PrometheusHandle {
    static GLOBAL: OnceLock<PrometheusHandle> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    initialise_series();
                }
                Err(_) => tracing::warn!(
                    "another metrics recorder is installed: /metrics will stay empty"
                ),
            }
            handle
        })
        .clone()
}

/// Publishes `oms_consumer_info` and the start time for the consumer named `name`.
pub fn announce_consumer(name: &str) {
    metrics::gauge!(CONSUMER_INFO, "consumer" => name.to_string(), "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics::gauge!(START_TIME).set(now);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for m in METRICS {
        match (m.kind, m.name.ends_with("_seconds")) {
            (Kind::Counter, _) => describe_counter!(m.name, m.help),
            (Kind::Gauge, _) => describe_gauge!(m.name, m.help),
            (Kind::Histogram, true) => describe_histogram!(m.name, Unit::Seconds, m.help),
            (Kind::Histogram, false) => describe_histogram!(m.name, m.help),
        }
    }
}

/// Creates every counter series that can be known in advance at zero, so `rate()` and
/// `increase()` see the first event and "no progress" alerts have a series to compare.
/// Histograms appear with their first observation.
fn initialise_series() {
    metrics::counter!(ORDERS, "outcome" => "completed", "reason" => "none").increment(0);
    metrics::counter!(ORDERS, "outcome" => "duplicate", "reason" => "none").increment(0);
    for reason in [
        FailureReason::UnknownSku,
        FailureReason::InsufficientStock,
        FailureReason::PaymentDeclined,
    ] {
        metrics::counter!(ORDERS, "outcome" => "failed", "reason" => reason.as_str()).increment(0);
    }
    for result in ["acked", "retried", "dead"] {
        metrics::counter!(MESSAGES, "result" => result).increment(0);
    }
    for service in ["mysql", "redis"] {
        metrics::counter!(RECONNECTS, "service" => service).increment(0);
    }
    for result in ["enqueued", "rejected", "duplicate"] {
        metrics::counter!(IMPORT_ROWS, "result" => result).increment(0);
    }
    metrics::counter!(REVENUE_CENTS).increment(0);
    metrics::counter!(RETRIES).increment(0);
    metrics::counter!(WRITE_CONFLICTS).increment(0);
    metrics::counter!(CLAIMED).increment(0);
    metrics::gauge!(IN_FLIGHT_ROWS).set(0.0);
    metrics::gauge!(HISTORY_REWOUND).set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Label names that would carry one value per order, customer, sku or import.
    const HIGH_CARDINALITY: &[&str] = &[
        "order",
        "order_id",
        "identity",
        "customer",
        "email",
        "sku",
        "import",
        "import_id",
        "line",
        "entry",
        "id",
    ];

    #[test]
    fn all_lists_the_described_metrics_in_order() {
        let described: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        assert_eq!(described, ALL);
        let unique: BTreeSet<&str> = ALL.iter().copied().collect();
        assert_eq!(unique.len(), ALL.len(), "a name is listed twice");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for m in METRICS {
            assert!(
                m.name.starts_with("oms_"),
                "{} lacks the oms_ prefix",
                m.name
            );
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{} is not snake_case",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters, and only counters, end in _total",
                m.name
            );
            for unit in ["_ms", "_milliseconds", "_minutes", "_hours"] {
                assert!(!m.name.contains(unit), "{} is not in base units", m.name);
            }
            for label in m.labels {
                assert!(
                    !HIGH_CARDINALITY.contains(label) || (m.name == CONSUMER_INFO),
                    "{} has the high-cardinality label {label}",
                    m.name
                );
            }
            assert!(!m.help.is_empty(), "{} has no help text", m.name);
        }
    }

    #[test]
    fn the_interface_document_lists_every_metric() {
        let doc = include_str!("../../docs/interface.md");
        for m in METRICS {
            let row = format!("| `{}` | {} |", m.name, m.kind.as_str());
            assert!(
                doc.contains(&row),
                "docs/interface.md has no row starting {row:?}"
            );
        }
    }

    #[test]
    fn metric_names_file_matches_the_table() {
        let text = include_str!("../../ops/prometheus/metric-names.txt");
        let listed: Vec<(String, String, String)> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                assert!(cols.len() >= 3, "metric-names.txt: short line {l:?}");
                (cols[0].into(), cols[1].into(), cols[2].into())
            })
            .collect();
        let expected: Vec<(String, String, String)> = METRICS
            .iter()
            .map(|m| {
                let labels = if m.labels.is_empty() {
                    "-".to_string()
                } else {
                    m.labels.join(",")
                };
                (m.name.into(), m.kind.as_str().into(), labels)
            })
            .collect();
        assert_eq!(
            listed, expected,
            "ops/prometheus/metric-names.txt (name kind labels) differs from METRICS"
        );
    }

    #[test]
    fn every_histogram_renders_as_a_histogram_with_help() {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            initialise_series();
            for m in METRICS {
                match m.kind {
                    Kind::Histogram => metrics::histogram!(m.name).record(0.5),
                    Kind::Gauge => metrics::gauge!(m.name).set(1.0),
                    Kind::Counter => metrics::counter!(m.name).increment(1),
                }
            }
        });
        let text = handle.render();
        for m in METRICS {
            assert!(
                text.contains(&format!("# TYPE {} {}\n", m.name, m.kind.as_str())),
                "{} is not rendered as a {}:\n{text}",
                m.name,
                m.kind.as_str()
            );
            assert!(
                text.contains(&format!("# HELP {} ", m.name)),
                "{} has no HELP line",
                m.name
            );
        }
        assert!(text.contains("oms_order_duration_seconds_bucket{le=\"7200\"} 1"));
        assert!(text.contains("oms_batch_rows_bucket{le=\"10000\"} 1"));
        assert!(text.contains("oms_orders_total{outcome=\"failed\",reason=\"payment_declined\"} 0"));
    }
}
