//! A real OTLP/HTTP receiver for the trace tests (and `otlp-sink`, the benchmark's
//! collector): an HTTP/1 server on `127.0.0.1:0`, on a thread and runtime of its own, that
//! decodes each `POST /v1/traces` body as an OTLP `ExportTraceServiceRequest` (protobuf,
//! the `opentelemetry-proto` types with prost) and answers an empty
//! `ExportTraceServiceResponse`, as a collector does.
//!
//! The tests point `OTEL_EXPORTER_OTLP_ENDPOINT` of the real `producer` and `consumer`
//! processes at [`OtlpReceiver::endpoint`], then wait (with a deadline) for the spans
//! they need in [`OtlpReceiver::spans`], flattened to [`ReceivedSpan`]s: ids as lower-case
//! hex, attributes as JSON values, the service name of the resource that sent them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::Value;

/// The largest request body accepted (a batch of 512 spans is far below it).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One span as received, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource that sent it.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: BTreeMap<String, Value>,
    pub links: Vec<ReceivedLink>,
}

/// A link of a [`ReceivedSpan`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedLink {
    pub trace_id: String,
    pub span_id: String,
    pub attributes: BTreeMap<String, Value>,
}

impl ReceivedSpan {
    /// The attribute `key`, or JSON null.
    pub fn attr(&self, key: &str) -> &Value {
        self.attributes.get(key).unwrap_or(&Value::Null)
    }
}

/// What the server thread shares with its owner.
#[derive(Default)]
struct Received {
    /// Kept spans (none when counting only).
    spans: Mutex<Vec<ReceivedSpan>>,
    count: AtomicU64,
    requests: AtomicU64,
}

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Received>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OtlpReceiver {
    /// A receiver on an ephemeral loopback port that keeps every span.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_on("127.0.0.1:0".parse().expect("addr"), true)
    }

    /// A receiver on `addr`; with `keep` false it only counts spans (`otlp-sink`).
    pub fn start_on(addr: SocketAddr, keep: bool) -> OtlpReceiver {
        let listener = std::net::TcpListener::bind(addr).expect("bind the OTLP receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Received::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = received.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                runtime.block_on(serve(listener, shared, keep, stopped));
            })
            .expect("start the OTLP receiver thread");
        OtlpReceiver {
            addr,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT` (exporters append `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span kept so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().expect("spans").clone()
    }

    /// Spans received so far (kept or not).
    pub fn span_count(&self) -> u64 {
        self.received.count.load(Ordering::Relaxed)
    }

    /// Export requests received so far.
    pub fn request_count(&self) -> u64 {
        self.received.requests.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    received: Arc<Received>,
    keep: bool,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = &mut stopped => return,
        };
        let received = received.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let received = received.clone();
                async move { Ok::<_, Infallible>(answer(request, &received, keep).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Decodes one export request and records its spans.
async fn answer(
    request: Request<Incoming>,
    received: &Received,
    keep: bool,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/v1/traces" {
        return status(StatusCode::NOT_FOUND);
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return status(StatusCode::BAD_REQUEST);
    };
    let spans = flatten(export);
    received.requests.fetch_add(1, Ordering::Relaxed);
    received
        .count
        .fetch_add(spans.len() as u64, Ordering::Relaxed);
    if keep {
        received.spans.lock().expect("spans").extend(spans);
    }
    let mut response = Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

/// The spans of an export request, each with its resource's `service.name`.
pub fn flatten(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = attributes(
            &resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        let service = resource
            .get("service.name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            out.push(ReceivedSpan {
                service: service.clone(),
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                start_unix_nano: span.start_time_unix_nano,
                end_unix_nano: span.end_time_unix_nano,
                attributes: attributes(&span.attributes),
                links: span
                    .links
                    .iter()
                    .map(|l| ReceivedLink {
                        trace_id: hex(&l.trace_id),
                        span_id: hex(&l.span_id),
                        attributes: attributes(&l.attributes),
                    })
                    .collect(),
            });
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, Value> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(json).unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn json(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.as_str()),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => {
            Value::Object(attributes(&kv.values).into_iter().collect())
        }
        Some(any_value::Value::BytesValue(b)) => Value::from(hex(b)),
        _ => Value::Null,
    }
}

/// The spans of `trace_id` as an indented tree (children under their parent, by start
/// time), with the oms attributes and links: what a trace viewer would show.
pub fn render_trace(spans: &[ReceivedSpan], trace_id: &str) -> String {
    let in_trace: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let mut out = String::new();
    let mut roots: Vec<&ReceivedSpan> = in_trace
        .iter()
        .copied()
        .filter(|s| !in_trace.iter().any(|p| p.span_id == s.parent_span_id))
        .collect();
    roots.sort_by_key(|s| s.start_unix_nano);
    for root in roots {
        render_span(&in_trace, root, 0, &mut out);
    }
    out
}

fn render_span(spans: &[&ReceivedSpan], span: &ReceivedSpan, depth: usize, out: &mut String) {
    use std::fmt::Write;
    let attrs: Vec<String> = span
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        out,
        "{}{} [{}] span {} parent {} ({:.1} ms) {}",
        "  ".repeat(depth),
        span.name,
        span.service,
        span.span_id,
        if span.parent_span_id.is_empty() {
            "-"
        } else {
            &span.parent_span_id
        },
        span.end_unix_nano.saturating_sub(span.start_unix_nano) as f64 / 1e6,
        attrs.join(" ")
    );
    for link in &span.links {
        let _ = writeln!(
            out,
            "{}  ↪ link to trace {} span {} {:?}",
            "  ".repeat(depth),
            link.trace_id,
            link.span_id,
            link.attributes
        );
    }
    let mut children: Vec<&&ReceivedSpan> = spans
        .iter()
        .filter(|c| c.parent_span_id == span.span_id)
        .collect();
    children.sort_by_key(|c| c.start_unix_nano);
    for child in children {
        render_span(spans, child, depth + 1, out);
    }
}
