//! Metric names and the Prometheus recorder. Names follow Prometheus conventions (base
//! units, `_total`, `_seconds`); labels have a handful of values each, never one per order,
//! customer, sku or import. `ops/prometheus/metric-names.txt` lists the same names.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const ORDERS: &str = "oms_orders_total";
pub const ORDER_DURATION: &str = "oms_order_duration_seconds";
pub const MESSAGES: &str = "oms_messages_total";
pub const STREAM_LENGTH: &str = "oms_stream_length";
pub const STREAM_PENDING: &str = "oms_stream_pending";
pub const STREAM_LAG: &str = "oms_stream_lag";
pub const DEAD_LETTERS: &str = "oms_dead_letters";
pub const REVENUE_CENTS: &str = "oms_revenue_cents_total";
pub const BATCH_ROWS: &str = "oms_batch_rows";
pub const BATCH_DURATION: &str = "oms_batch_duration_seconds";
pub const MYSQL_DURATION: &str = "oms_mysql_duration_seconds";
pub const REDIS_DURATION: &str = "oms_redis_duration_seconds";
pub const RETRIES: &str = "oms_retries_total";
pub const RECONNECTS: &str = "oms_reconnects_total";
pub const CLAIMED: &str = "oms_claimed_messages_total";
pub const READY: &str = "oms_consumer_ready";
pub const IN_FLIGHT_ROWS: &str = "oms_consumer_in_flight_rows";

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
    BATCH_ROWS,
    BATCH_DURATION,
    MYSQL_DURATION,
    REDIS_DURATION,
    RETRIES,
    RECONNECTS,
    CLAIMED,
    READY,
    IN_FLIGHT_ROWS,
];

/// Installs the global recorder (once per process) and returns the handle that renders
/// `/metrics`. Later calls return a handle to a fresh, unregistered recorder so tests that
/// run several consumers in one process still get a handle.
pub fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(BATCH_ROWS.into()),
                &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0],
            )
        })
        .expect("valid buckets");
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_ok() {
        describe();
    }
    handle
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        ORDERS,
        "Orders that reached an outcome, by outcome and reason"
    );
    describe_histogram!(
        ORDER_DURATION,
        Unit::Seconds,
        "Time from enqueue to terminal state"
    );
    describe_counter!(
        MESSAGES,
        "Stream entries handled, by result (acked, retried, dead)"
    );
    describe_gauge!(STREAM_LENGTH, "Entries in the orders stream");
    describe_gauge!(STREAM_PENDING, "Entries delivered but not acknowledged");
    describe_gauge!(STREAM_LAG, "Entries not yet delivered to the group");
    describe_gauge!(DEAD_LETTERS, "Rows in the dead-letter stream");
    describe_counter!(REVENUE_CENTS, "Revenue of completed orders, in cents");
    describe_histogram!(BATCH_ROWS, "Rows per processed batch");
    describe_histogram!(BATCH_DURATION, Unit::Seconds, "Time to process one batch");
    describe_histogram!(
        MYSQL_DURATION,
        Unit::Seconds,
        "Duration of a workflow transaction, by phase"
    );
    describe_histogram!(
        REDIS_DURATION,
        Unit::Seconds,
        "Duration of Redis operations, by operation"
    );
    describe_counter!(RETRIES, "Transient errors retried in process");
    describe_counter!(RECONNECTS, "Recoveries after a lost connection, by service");
    describe_counter!(CLAIMED, "Entries claimed from idle consumers");
    describe_gauge!(READY, "1 when Redis and MySQL answer");
    describe_gauge!(IN_FLIGHT_ROWS, "Rows being processed by this consumer");
}
