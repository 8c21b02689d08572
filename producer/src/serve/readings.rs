//! Shared readings: a read answer is reused for [`FRESH`] (or longer when its handler says
//! so) by every client asking the same thing, and computed once at a time per key (the
//! first asker computes, the others wait for its answer: single flight). So any number of
//! dashboards and scripts costs at most one computation per report and key per second, and
//! consumers keep their throughput.
//!
//! The key is never the raw URI: each handler validates its parameters first and builds
//! the key from the canonical values (`imports?limit=50`), so `?limit=050`, `?bust=N` or a
//! reordered query cannot miss the cache (unknown parameters are refused before, see
//! [`super::openapi::documented_only`]). Errors are shared too (for [`FRESH`]), so a
//! failing report is not recomputed by each waiter in turn.
//!
//! Bounds: at most [`MAX_ENTRIES`] keys and [`MAX_TOTAL_BYTES`] of answers; an answer over
//! [`MAX_ANSWER_BYTES`] is served but not kept. Past either bound the cache is emptied.
//! Writes through the API empty the cache; a change made elsewhere (the CLI, consumers)
//! shows within [`FRESH`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;

/// How long an answer is reused unless its handler says otherwise.
pub const FRESH: Duration = Duration::from_secs(1);
/// Distinct keys kept at most.
pub const MAX_ENTRIES: usize = 512;
/// Bytes of answers kept at most (all keys together).
pub const MAX_TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// Largest answer kept.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A kept answer: the JSON body, or the error.
type Kept = Result<Bytes, ApiError>;

#[derive(Default)]
struct Entry {
    /// Held while the answer is computed: the single flight.
    flight: tokio::sync::Mutex<()>,
    answer: Mutex<Option<(Instant, Duration, Kept)>>,
}

impl Entry {
    fn fresh(&self) -> Option<Kept> {
        let answer = self.answer.lock().expect("reading lock");
        answer
            .as_ref()
            .filter(|(at, fresh, _)| at.elapsed() < *fresh)
            .map(|(_, _, kept)| kept.clone())
    }
}

#[derive(Default)]
struct Slots {
    entries: HashMap<String, Arc<Entry>>,
    bytes: usize,
}

/// The cache of answers by canonical key.
#[derive(Default)]
pub struct Readings {
    slots: Mutex<Slots>,
}

impl Readings {
    fn entry(&self, key: &str) -> Arc<Entry> {
        let mut slots = self.slots.lock().expect("readings lock");
        if slots.entries.len() >= MAX_ENTRIES && !slots.entries.contains_key(key) {
            *slots = Slots::default();
        }
        slots.entries.entry(key.to_string()).or_default().clone()
    }

    /// Keeps `kept` in `entry` if it is still the key's entry and the bytes fit.
    fn keep(&self, key: &str, entry: &Arc<Entry>, fresh: Duration, kept: Kept) {
        let size = kept.as_ref().map(Bytes::len).unwrap_or(0);
        if size > MAX_ANSWER_BYTES {
            return;
        }
        let mut slots = self.slots.lock().expect("readings lock");
        if !slots
            .entries
            .get(key)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            return;
        }
        let mut answer = entry.answer.lock().expect("reading lock");
        let before = answer
            .as_ref()
            .and_then(|(_, _, k)| k.as_ref().ok())
            .map(Bytes::len)
            .unwrap_or(0);
        slots.bytes = slots.bytes.saturating_sub(before);
        if slots.bytes + size > MAX_TOTAL_BYTES {
            // Over the budget: forget everything else (this entry stays).
            slots.entries.retain(|k, _| k == key);
            slots.bytes = 0;
        }
        slots.bytes += size;
        *answer = Some((Instant::now(), fresh, kept));
    }

    /// Bytes of answers kept now.
    pub fn kept_bytes(&self) -> usize {
        self.slots.lock().expect("readings lock").bytes
    }

    /// Keys kept now.
    pub fn kept_keys(&self) -> usize {
        self.slots.lock().expect("readings lock").entries.len()
    }

    /// The answer of `key`: a fresh kept one, or `compute`'s (once at a time per key), kept
    /// for [`FRESH`].
    pub async fn answer<T, F>(&self, key: String, compute: F) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<T, ApiError>>,
    {
        self.answer_for(key, async { compute.await.map(|v| (v, FRESH)) })
            .await
    }

    /// As [`Readings::answer`], `compute` saying how long its answer stays fresh.
    pub async fn answer_for<T, F>(&self, key: String, compute: F) -> Result<Response, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<(T, Duration), ApiError>>,
    {
        let entry = self.entry(&key);
        let _flight = entry.flight.lock().await;
        if let Some(kept) = entry.fresh() {
            return kept.map(json);
        }
        let (kept, fresh) = match compute.await {
            Ok((value, fresh)) => match serde_json::to_vec(&value) {
                Ok(body) => (Ok(Bytes::from(body)), fresh),
                Err(e) => (
                    Err(ApiError::from(anyhow::anyhow!("encoding an answer: {e}"))),
                    FRESH,
                ),
            },
            Err(e) => (Err(e), FRESH),
        };
        self.keep(&key, &entry, fresh, kept.clone());
        kept.map(json)
    }

    /// Forgets every answer (after a write).
    pub fn clear(&self) {
        *self.slots.lock().expect("readings lock") = Slots::default();
    }
}

fn json(body: Bytes) -> Response {
    let mut out = Response::new(Body::from(body));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out
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
    use axum::http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_misses_of_one_key_compute_once() {
        let readings = Arc::new(Readings::default());
        let computed = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (readings, computed) = (readings.clone(), computed.clone());
            tasks.push(tokio::spawn(async move {
                readings
                    .answer("k".into(), async {
                        computed.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(7u32)
                    })
                    .await
                    .map(|r| r.status())
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), StatusCode::OK);
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn errors_are_shared_and_big_answers_not_kept() {
        let readings = Readings::default();
        let computed = AtomicUsize::new(0);
        for _ in 0..3 {
            let e = readings
                .answer("e".into(), async {
                    computed.fetch_add(1, Ordering::SeqCst);
                    Err::<u32, _>(ApiError::bad_request("no"))
                })
                .await
                .unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        let big = "x".repeat(MAX_ANSWER_BYTES + 1);
        readings
            .answer("big".into(), async { Ok(big.clone()) })
            .await
            .unwrap();
        assert_eq!(readings.kept_bytes(), 0);
    }

    #[tokio::test]
    async fn the_kept_bytes_stay_within_the_budget() {
        let readings = Readings::default();
        let answer = "x".repeat(MAX_ANSWER_BYTES - 16);
        for i in 0..40 {
            readings
                .answer(format!("k{i}"), async { Ok(answer.clone()) })
                .await
                .unwrap();
            assert!(readings.kept_bytes() <= MAX_TOTAL_BYTES);
        }
        assert!(readings.kept_keys() <= MAX_TOTAL_BYTES / (MAX_ANSWER_BYTES - 16));
    }
}
