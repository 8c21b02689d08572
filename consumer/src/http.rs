//! `/metrics`, `/healthz` and `/readyz` on `--metrics-addr`.
//!
//! `/readyz` pings Redis and MySQL on each request (with a short timeout), so it says 200
//! only when both answer now.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;

#[derive(Clone)]
struct HttpState {
    metrics: PrometheusHandle,
    shared: Arc<Shared>,
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
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(HttpState { metrics, shared });
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server stopped");
        }
    }))
}

async fn render_metrics(State(state): State<HttpState>) -> String {
    state.metrics.render()
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    let shared = &state.shared;
    let check = async {
        let mut conn = shared
            .redis
            .get()
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut *conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        sqlx::query("SELECT 1")
            .execute(&shared.db)
            .await
            .map_err(|e| format!("mysql: {e}"))?;
        Ok::<(), String>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: timeout\n".into(),
        ),
    }
}
