//! `/metrics`, `/healthz` and `/readyz` on `--metrics-addr`.
//!
//! `/healthz` says 200 while the process serves (liveness). `/readyz` says 503 while MySQL
//! went back in time (read live, with the numbers and the fix), else pings Redis and MySQL
//! (with a short timeout) at most once a second, whatever the request rate: answers are
//! cached for [`READY_CACHE`] ([`crate::health::ReadinessCache`]). `/metrics` is the
//! Prometheus text format. The server logs the address it really bound (`--metrics-addr
//! 127.0.0.1:0` picks a free port), and runs the recorder's upkeep every few seconds so
//! histogram samples never pile up when nobody scrapes.
//!
//! The port is served by [`oms_shared::http_server::serve`], which bounds connections and
//! time (64 connections, 5 s for a request head or between requests, 10 s per request).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::health::{Readiness, ReadinessCache};
use crate::state::Shared;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How long a `/readyz` answer is reused.
pub const READY_CACHE: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct HttpState {
    metrics: PrometheusHandle,
    shared: Arc<Shared>,
    readiness: Arc<ReadinessCache>,
}

/// Binds the listener now (so a taken port fails at start) and serves until `shutdown`.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: PrometheusHandle,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --metrics-addr {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    crate::metrics::announce_consumer(&shared.name);
    tracing::info!(addr = %bound, consumer = %shared.name, "serving /metrics, /healthz and /readyz");
    tokio::spawn(upkeep(metrics.clone(), shutdown.clone()));
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(HttpState {
            metrics,
            shared,
            readiness: Arc::new(ReadinessCache::new(READY_CACHE)),
        });
    Ok(tokio::spawn(oms_shared::http_server::serve(
        listener,
        app,
        oms_shared::http_server::HttpLimits::default(),
        shutdown,
    )))
}

async fn render_metrics(
    State(state): State<HttpState>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        state.metrics.render(),
    )
}

/// Runs the recorder's upkeep until `shutdown`.
async fn upkeep(metrics: PrometheusHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => metrics.run_upkeep(),
            _ = shutdown.cancelled() => break,
        }
    }
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    let shared = state.shared.clone();
    let answer = state
        .readiness
        .get_or_check(|| async move { check_ready(&shared).await })
        .await;
    if let Some(rewound) = state.shared.health.rewound() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", rewound.error()),
        );
    }
    if let Some(why) = state.shared.pause.redis_lost() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        );
    }
    match answer {
        // The pause flag is read live (not cached): it must show within a second.
        Readiness::Ready if state.shared.pause.is_paused() => {
            (StatusCode::OK, "ready, paused\n".into())
        }
        Readiness::Ready => (StatusCode::OK, "ready\n".into()),
        Readiness::NotReady(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Pings Redis and MySQL now, within 2 s.
async fn check_ready(shared: &Shared) -> Readiness {
    let check = async {
        let mut conn = shared
            .redis
            .get()
            .await
            .map_err(|e| format!("redis: {e}"))?;
        conn.ping().await.map_err(|e| format!("redis: {e}"))?;
        oms_shared::store::ping(&shared.db)
            .await
            .map_err(|e| format!("mysql: {e}"))?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => Readiness::Ready,
        Ok(Err(e)) => Readiness::NotReady(e),
        Err(_) => Readiness::NotReady("timeout".into()),
    }
}
