//! Shared readings: a successful `GET /api/...` answer is reused for [`FRESH`] by every
//! client asking the same path and query, and computed once at a time (the first asker
//! computes, the others wait for its answer). So any number of dashboards and scripts costs
//! at most one computation per report per second, and consumers keep their throughput.
//! Writes through the API empty the cache; a change made elsewhere (the CLI, consumers)
//! shows within [`FRESH`]. Order lookups (`/api/orders/{identity}`) are not shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;

/// How long an answer is reused.
pub const FRESH: Duration = Duration::from_secs(1);
/// Distinct paths kept at most (emptied past this).
const MAX_ENTRIES: usize = 512;
/// Largest answer kept.
const MAX_BYTES: usize = 8 * 1024 * 1024;

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Response<Bytes>)>>>;

/// The cache of answers by path and query.
#[derive(Default)]
pub struct Readings {
    slots: Mutex<HashMap<String, Slot>>,
}

impl Readings {
    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().expect("readings lock");
        if slots.len() >= MAX_ENTRIES && !slots.contains_key(key) {
            slots.clear();
        }
        slots.entry(key.to_string()).or_default().clone()
    }

    /// Forgets every answer (after a write).
    pub fn clear(&self) {
        self.slots.lock().expect("readings lock").clear();
    }
}

fn shareable(req: &Request) -> bool {
    let path = req.uri().path();
    let lookup = path.starts_with("/api/orders/")
        && path != "/api/orders/stats"
        && path != "/api/orders/throughput";
    req.method() == Method::GET && path.starts_with("/api/") && !lookup
}

fn rebuild(cached: &Response<Bytes>) -> Response {
    let mut out = Response::new(Body::from(cached.body().clone()));
    *out.status_mut() = cached.status();
    *out.headers_mut() = cached.headers().clone();
    out
}

/// Middleware of the read routes.
pub async fn share(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !shareable(&req) {
        return next.run(req).await;
    }
    let key = req.uri().to_string();
    let slot = state.readings().slot(&key);
    let mut held = slot.lock().await;
    if let Some((at, cached)) = held.as_ref() {
        if at.elapsed() < FRESH {
            return rebuild(cached);
        }
    }
    let response = next.run(req).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, MAX_BYTES).await {
        Ok(bytes) => {
            let cached = Response::from_parts(parts, bytes);
            let out = rebuild(&cached);
            *held = Some((Instant::now(), cached));
            out
        }
        Err(e) => axum::response::IntoResponse::into_response(super::error::ApiError::from(
            anyhow::anyhow!("reading an answer: {e}"),
        )),
    }
}

/// Middleware of the write routes: a successful write empties the cache.
pub async fn forget_after_write(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let response = next.run(req).await;
    if response.status().is_success() {
        state.readings().clear();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn reports_are_shared_order_lookups_and_writes_are_not() {
        assert!(shareable(&req(Method::GET, "/api/queue")));
        assert!(shareable(&req(Method::GET, "/api/orders/stats")));
        assert!(shareable(&req(Method::GET, "/api/leaderboard?limit=5")));
        assert!(!shareable(&req(Method::GET, "/api/orders/A-17")));
        assert!(!shareable(&req(Method::POST, "/api/queue/pause")));
        assert!(!shareable(&req(Method::GET, "/")));
    }
}
