//! Traces end to end: the real `producer` and `consumer` processes export their spans over
//! OTLP/HTTP to a real receiver ([`OtlpReceiver`], protobuf decoded), and the span tree
//! is what an operator would follow: the import span, the consumer's batch span as its
//! child (the `traceparent` carried in the stream entry), the workflow's phases under it;
//! a redelivered entry's batch in a trace of its own, linked to the import.

use std::process::Command;
use std::time::Duration;

use oms_tests::otlp_receiver::{render_trace, OtlpReceiver, ReceivedSpan};
use oms_tests::procs::{ConsumerProc, ConsumerSpec, LogDir};
use oms_tests::{binary, wait_for, TestEnv};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(60);

/// The variables that turn traces on, every span sampled, exported within ~100 ms.
fn otel_env(receiver: &OtlpReceiver) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_TRACES_SAMPLER", "always_on".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]
}

/// The one span named `name` whose attribute `oms.order.identity` lists `identity` and
/// whose `oms.attempt` is `attempt`.
fn batch_of<'a>(
    spans: &'a [ReceivedSpan],
    identity: &str,
    attempt: i64,
) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| {
        s.name == "batch"
            && s.attr("oms.attempt") == &json!(attempt)
            && s.attr("oms.order.identity") == &json!([identity])
    })
}

/// An integer attribute: `tracing` fields of type u64 arrive as decimal strings (OTLP has
/// no unsigned type), the `oms.*` attributes as integers.
fn int(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The child of `parent` named `name`.
fn child<'a>(
    spans: &'a [ReceivedSpan],
    parent: &ReceivedSpan,
    name: &str,
) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| {
        s.name == name && s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id
    })
}

/// A batch span with its reserve, settle (payment inside) and apply spans, all received.
fn complete_batch<'a>(
    spans: &'a [ReceivedSpan],
    identity: &str,
    attempt: i64,
) -> Option<&'a ReceivedSpan> {
    let batch = batch_of(spans, identity, attempt)?;
    let settle = child(spans, batch, "settle")?;
    (child(spans, batch, "reserve").is_some()
        && child(spans, settle, "payment").is_some()
        && child(spans, batch, "apply").is_some())
    .then_some(batch)
}

#[tokio::test]
async fn an_orders_journey_is_one_trace_and_a_redelivery_links_to_it() {
    let env = TestEnv::new().await;
    env.product("SKU-T", "4.50", 100).await;
    let receiver = OtlpReceiver::start();
    let item = r#""[{""sku"":""SKU-T"",""quantity"":2}]""#;
    // One row per entry: T-1 is read by a consumer that dies (redelivered), T-2 is not.
    let file = env.file(&format!(
        "customer_name,customer_email,products,order_id\n\
         Ann,ann@example.com,{item},T-1\n\
         Bob,bob@example.com,{item},T-2\n"
    ));

    // 1. The import, traced.
    let out = Command::new(binary("producer"))
        .arg("import")
        .arg(file.path())
        .args(["--chunk-size", "1"])
        .envs(env.env_vars())
        .envs(otel_env(&receiver))
        .env("RUST_LOG", "warn") // quiet logs; the spans are exported all the same
        .output()
        .expect("run producer import");
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let import_id = env.scalar("SELECT MAX(id) FROM imports").await;

    // 2. A consumer reads T-1's entry and dies: it stays pending, delivered once.
    let mut conn = env.redis_conn().await;
    let ghost = oms_shared::redis::queue::read_new_entries(&mut *conn, &env.keys, 0, "ghost", 1)
        .await
        .expect("ghost read");
    drop(conn);
    assert_eq!(ghost.len(), 1);
    let traceparent = ghost[0]
        .fields
        .iter()
        .find(|(k, _)| k == "traceparent")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("the entry carries no traceparent: {:?}", ghost[0].fields));

    // 3. A traced consumer: T-2 on its first delivery, T-1 claimed after 1 s (delivery 2).
    let logs = LogDir::new();
    let mut spec = ConsumerSpec::new(
        &env,
        "traced",
        &["--claim-idle-secs", "1", "--payment-success-rate", "1"],
    );
    for (k, v) in otel_env(&receiver) {
        spec = spec.with_env(k, &v);
    }
    spec = spec.with_env("RUST_LOG", "warn");
    let mut consumer = ConsumerProc::spawn(&spec, &logs);
    env.wait_until_processed(2, DEADLINE).await;

    // 4. The spans, as the receiver decoded them.
    let spans = wait_for(
        "the import span and both batches with their phases",
        DEADLINE,
        || {
            let spans = receiver.spans();
            let ready = spans.iter().any(|s| s.name == "import")
                && complete_batch(&spans, "T-2", 1).is_some()
                && complete_batch(&spans, "T-1", 2).is_some();
            async move { ready.then_some(spans) }
        },
    )
    .await;
    let status = consumer.terminate(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", consumer.log());

    let import = spans.iter().find(|s| s.name == "import").unwrap();
    let tree = render_trace(&spans, &import.trace_id);
    let first = complete_batch(&spans, "T-2", 1).unwrap();
    let retry = complete_batch(&spans, "T-1", 2).unwrap();
    let retry_tree = render_trace(&spans, &retry.trace_id);
    eprintln!("the import's trace:\n{tree}\nthe redelivery's trace:\n{retry_tree}");

    // The import span: the producer's root, its context the entries' traceparent.
    assert_eq!(import.service, "producer");
    assert_eq!(import.parent_span_id, "", "{tree}");
    assert_eq!(int(import.attr("import_id")), Some(import_id));
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", import.trace_id, import.span_id),
        "the entry carries the import span's context"
    );

    // First delivery: one trace, the batch a child of the import span.
    assert_eq!(first.service, "consumer");
    assert_eq!(first.trace_id, import.trace_id, "{tree}");
    assert_eq!(first.parent_span_id, import.span_id, "{tree}");
    assert!(first.links.is_empty(), "{:?}", first.links);
    let labels = |s: &ReceivedSpan, attempt: i64, identity: &str| {
        assert_eq!(
            s.attr("oms.import_id"),
            &json!(import_id),
            "{}: {s:?}",
            s.name
        );
        assert_eq!(s.attr("oms.partition"), &json!(0), "{}", s.name);
        assert_eq!(s.attr("oms.attempt"), &json!(attempt), "{}", s.name);
        assert_eq!(
            s.attr("oms.order.identity"),
            &json!([identity]),
            "{}",
            s.name
        );
    };
    labels(first, 1, "T-2");
    let settle = child(&spans, first, "settle").unwrap();
    for phase in [
        child(&spans, first, "reserve").unwrap(),
        settle,
        child(&spans, first, "apply").unwrap(),
    ] {
        assert_eq!(phase.trace_id, import.trace_id, "{tree}");
        labels(phase, 1, "T-2");
        assert_eq!(phase.attr("oms.retry"), &json!(0));
        assert!(
            phase.start_unix_nano >= first.start_unix_nano
                && phase.end_unix_nano <= first.end_unix_nano,
            "{} inside the batch: {tree}",
            phase.name
        );
    }
    let payment = child(&spans, settle, "payment").unwrap();
    assert_eq!(
        (int(payment.attr("approved")), int(payment.attr("declined"))),
        (Some(1), Some(0))
    );
    assert!(int(child(&spans, first, "apply").unwrap().attr("outbox_id")).is_some());

    // Redelivery: a trace of its own, linked (not parented) to the import span.
    assert_ne!(retry.trace_id, import.trace_id, "{retry_tree}");
    assert_eq!(retry.parent_span_id, "", "{retry_tree}");
    let link = retry
        .links
        .iter()
        .find(|l| l.trace_id == import.trace_id && l.span_id == import.span_id)
        .unwrap_or_else(|| panic!("no link to the import span: {:?}", retry.links));
    assert_eq!(
        link.attributes.get("oms.link"),
        Some(&Value::from("redelivery"))
    );
    labels(retry, 2, "T-1");
    for name in ["reserve", "settle", "apply"] {
        labels(child(&spans, retry, name).unwrap(), 2, "T-1");
    }
    // No consumer span of T-1 joined the import's trace: its only delivery that ran was
    // the redelivery.
    assert!(
        !spans
            .iter()
            .any(|s| s.trace_id == import.trace_id
                && s.attr("oms.order.identity") == &json!(["T-1"])),
        "{tree}"
    );
}
