//! Where work comes from: new entries (`XREADGROUP ... >`) and entries left idle by any
//! consumer, dead or alive (`XAUTOCLAIM` after `--claim-idle-secs`).
//!
//! Both send [`Batch`]es into one bounded channel; a slot is reserved *before* reading, so
//! a consumer never holds more unprocessed entries than `--concurrency` batches. Both stop
//! when the shutdown token is cancelled, and pause while MySQL or Redis is down or the queue
//! is paused ([`crate::pause`]: nothing new is read or claimed).

use std::sync::Arc;
use std::time::Duration;

use oms_shared::keys::CONSUMER_GROUP;
use oms_shared::order::{decode_chunk, OrderChunk};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::Shared;
use crate::health::Service;
use crate::metrics::{CLAIMED, REDIS_DURATION};

/// One stream entry handed to a worker.
#[derive(Debug)]
pub struct Delivery {
    pub id: String,
    /// How many times the group has delivered it (1 for a first read).
    pub deliveries: u64,
    /// The decoded chunk, or why it could not be decoded (with the raw fields).
    pub body: Result<OrderChunk, MalformedEntry>,
}

#[derive(Debug, Clone)]
pub struct MalformedEntry {
    pub error: String,
    pub raw: String,
}

/// Entries processed together: their rows form one workflow batch.
#[derive(Debug)]
pub struct Batch {
    pub deliveries: Vec<Delivery>,
}

impl Batch {
    pub fn rows(&self) -> usize {
        self.deliveries
            .iter()
            .map(|d| d.body.as_ref().map(|c| c.rows.len()).unwrap_or(1))
            .sum()
    }
}

fn field_bytes(v: &Value) -> &[u8] {
    match v {
        Value::BulkString(b) => b,
        Value::SimpleString(s) => s.as_bytes(),
        _ => b"",
    }
}

fn to_delivery(entry: &StreamId, deliveries: u64) -> Delivery {
    let body = decode_chunk(
        &entry.id,
        entry.map.iter().map(|(k, v)| (k.as_str(), field_bytes(v))),
    )
    .map_err(|e| {
        let raw: std::collections::BTreeMap<&str, String> = entry
            .map
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    String::from_utf8_lossy(field_bytes(v))
                        .chars()
                        .take(4096)
                        .collect(),
                )
            })
            .collect();
        MalformedEntry {
            error: e.to_string(),
            raw: serde_json::to_string(&raw).unwrap_or_default(),
        }
    });
    Delivery {
        id: entry.id.clone(),
        deliveries,
        body,
    }
}

/// Exponential backoff from 100 ms to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

/// Sleeps `d` unless shutdown comes first; true when shutdown came.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Reads new entries until shutdown.
pub async fn read_new(shared: Arc<Shared>, tx: mpsc::Sender<Batch>, shutdown: CancellationToken) {
    let stream = shared.keys.orders();
    let batch_rows = shared.config.batch_size;
    let mut count = (batch_rows / 100).max(1);
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        if !shared.health.is_ready() {
            if sleep_or_shutdown(Duration::from_millis(200), &shutdown).await {
                break;
            }
            continue;
        }
        if shared.pause.is_paused() && shared.pause.wait_while_paused(&shutdown).await {
            break;
        }
        let permit = tokio::select! {
            permit = tx.reserve() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let started = std::time::Instant::now();
        let reply: Result<StreamReadReply, oms_shared::OmsError> = async {
            let mut conn = shared.redis.get().await?;
            Ok(redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(CONSUMER_GROUP)
                .arg(&shared.name)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(1000)
                .arg("STREAMS")
                .arg(&stream)
                .arg(">")
                .query_async(&mut *conn)
                .await?)
        }
        .await;
        metrics::histogram!(REDIS_DURATION, "op" => "read").record(started.elapsed().as_secs_f64());
        let reply = match reply {
            Ok(reply) => {
                failures = 0;
                shared.health.up(Service::Redis);
                reply
            }
            Err(e) => {
                drop(permit);
                if let oms_shared::OmsError::Redis(re) = &e {
                    if re.code() == Some("NOGROUP") {
                        if let Ok(mut conn) = shared.redis.get().await {
                            let _ = oms_shared::queue::ensure_group(&mut *conn, &shared.keys).await;
                        }
                        continue;
                    }
                }
                shared.health.down(Service::Redis, &e);
                failures += 1;
                if sleep_or_shutdown(backoff(failures), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let deliveries: Vec<Delivery> = reply
            .keys
            .iter()
            .flat_map(|k| k.ids.iter())
            .map(|entry| to_delivery(entry, 1))
            .collect();
        if deliveries.is_empty() {
            continue;
        }
        let batch = Batch { deliveries };
        // Aim the next read at `--batch-size` rows, whatever the producer's chunk size.
        let per_entry = (batch.rows() / batch.deliveries.len()).max(1);
        count = (batch_rows / per_entry).clamp(1, 1000);
        // A read that was blocked when the pause came can return new entries: hold them
        // until resume (they stay pending; at shutdown another consumer claims them).
        if shared.pause.is_paused() && shared.pause.wait_while_paused(&shutdown).await {
            break;
        }
        permit.send(batch);
    }
    tracing::debug!("reader stopped");
}

/// Claims entries idle for `--claim-idle-secs` from any consumer, until shutdown.
pub async fn claim_idle(shared: Arc<Shared>, tx: mpsc::Sender<Batch>, shutdown: CancellationToken) {
    let min_idle_ms = shared.config.claim_idle().as_millis() as u64;
    let every =
        (shared.config.claim_idle() / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        if sleep_or_shutdown(every, &shutdown).await {
            break;
        }
        if !shared.health.is_ready() || shared.pause.is_paused() {
            continue;
        }
        let mut cursor = "0-0".to_string();
        loop {
            let Ok(permit) = tx.reserve().await else {
                return;
            };
            let started = std::time::Instant::now();
            let claimed = claim_page(&shared, &cursor, min_idle_ms).await;
            metrics::histogram!(REDIS_DURATION, "op" => "claim")
                .record(started.elapsed().as_secs_f64());
            let (next, deliveries) = match claimed {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming idle entries failed");
                    break;
                }
            };
            if !deliveries.is_empty() {
                metrics::counter!(CLAIMED).increment(deliveries.len() as u64);
                tracing::info!(entries = deliveries.len(), "claimed idle entries");
                permit.send(Batch { deliveries });
            }
            if next == "0-0" || shutdown.is_cancelled() || shared.pause.is_paused() {
                break;
            }
            cursor = next;
        }
    }
    tracing::debug!("claimer stopped");
}

/// One `XAUTOCLAIM` page, with each entry's delivery count from `XPENDING`.
async fn claim_page(
    shared: &Shared,
    cursor: &str,
    min_idle_ms: u64,
) -> Result<(String, Vec<Delivery>), oms_shared::OmsError> {
    let stream = shared.keys.orders();
    let mut conn = shared.redis.get().await?;
    let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(&stream)
        .arg(CONSUMER_GROUP)
        .arg(&shared.name)
        .arg(min_idle_ms)
        .arg(cursor)
        .arg("COUNT")
        .arg(50)
        .query_async(&mut *conn)
        .await?;
    if !reply.deleted_ids.is_empty() {
        // Trimmed or deleted while pending: Redis already dropped them from the PEL.
        tracing::warn!(ids = ?reply.deleted_ids, "claimed entries no longer exist in the stream");
    }
    if reply.claimed.is_empty() {
        return Ok((reply.next_stream_id, Vec::new()));
    }
    let mut pipe = redis::pipe();
    for entry in &reply.claimed {
        pipe.cmd("XPENDING")
            .arg(&stream)
            .arg(CONSUMER_GROUP)
            .arg(&entry.id)
            .arg(&entry.id)
            .arg(1);
    }
    let pending: Vec<Vec<(String, String, u64, u64)>> = pipe.query_async(&mut *conn).await?;
    let deliveries = reply
        .claimed
        .iter()
        .zip(pending)
        .map(|(entry, info)| to_delivery(entry, info.first().map(|p| p.3).unwrap_or(1)))
        .collect();
    Ok((reply.next_stream_id, deliveries))
}
