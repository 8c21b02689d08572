//! Where work comes from: new entries (`XREADGROUP ... >`) and entries left idle by any
//! consumer, dead or alive (`XAUTOCLAIM` after `--claim-idle-secs`).
//!
//! Entries are untrusted: both go through `queue`'s bounded read (a byte budget per read,
//! an entry above `MAX_ENTRY_BYTES` arrives as a stub and is never decoded), and
//! [`decode_chunk`] refuses empty or oversized chunks; such a delivery is malformed and the
//! workflow dead-letters it at once.
//!
//! With several partitions, the reader takes each read from the next partition in turn
//! (a consumer reads every partition; an idle pause only after a whole round found
//! nothing), and the claimer scans every partition; a batch holds entries of one
//! partition, so its acknowledgements are one `MULTI` on one slot.
//!
//! Both send [`Batch`]es into one bounded channel; a slot is reserved *before* reading, so
//! a consumer never holds more unprocessed entries than `--concurrency` batches. Both stop
//! when the shutdown token is cancelled, and pause while MySQL or Redis is down or the queue
//! is paused ([`crate::pause`]: nothing new is read or claimed).

use std::sync::Arc;
use std::time::Duration;

use oms_shared::order::rules::MAX_ENTRY_BYTES;
use oms_shared::order::{decode_chunk, OrderChunk};
use oms_shared::redis::queue::RawEntry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::Service;
use crate::metrics::{CLAIMED, REDIS_DURATION};
use crate::state::Shared;
use oms_shared::retry::{sleep_or_shutdown, RetryPolicy};

/// One stream entry handed to a worker.
#[derive(Debug)]
pub struct Delivery {
    /// The partition whose stream holds it.
    pub partition: u16,
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
    /// The partition of every delivery of the batch.
    pub partition: u16,
    pub deliveries: Vec<Delivery>,
}

impl Batch {
    /// The highest delivery count of its entries (1: all are on their first delivery).
    pub fn attempt(&self) -> u64 {
        self.deliveries
            .iter()
            .map(|d| d.deliveries)
            .max()
            .unwrap_or(1)
    }

    pub fn rows(&self) -> usize {
        self.deliveries
            .iter()
            .map(|d| d.body.as_ref().map(|c| c.rows.len()).unwrap_or(1))
            .sum()
    }
}

/// A delivery from an entry as read: decoded, or malformed with its fields as JSON (an
/// entry above `MAX_ENTRY_BYTES` was never sent whole: its stub is kept).
fn to_delivery(entry: RawEntry) -> Delivery {
    let decoded = if entry.oversize {
        Err(format!(
            "malformed stream message {}: the entry is {} bytes, more than {MAX_ENTRY_BYTES}",
            entry.id, entry.size
        ))
    } else {
        decode_chunk(
            &entry.id,
            entry.fields.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        )
        .map_err(|e| e.to_string())
    };
    let body = decoded.map_err(|error| {
        let raw: std::collections::BTreeMap<&str, std::borrow::Cow<str>> = entry
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v)))
            .collect();
        MalformedEntry {
            error,
            raw: serde_json::to_string(&raw).unwrap_or_default(),
        }
    });
    Delivery {
        partition: entry.partition,
        id: entry.id,
        deliveries: entry.deliveries,
        body,
    }
}

/// Longest pause between two reads while the stream has nothing new.
const IDLE_POLL_MAX: Duration = Duration::from_millis(100);

/// Reads new entries until shutdown.
// Long on purpose: the read loop with its pause, backpressure, reconnect and shutdown
// branches side by side, so every way out of it is seen at once.
pub async fn read_new(shared: Arc<Shared>, tx: mpsc::Sender<Batch>, shutdown: CancellationToken) {
    let batch_rows = shared.config.batch_size;
    let mut count = (batch_rows / 100).max(1);
    let mut failures = 0u32;
    let mut idle = Duration::ZERO;
    let partitions = shared.keys.partitions().get();
    // Consumers start their rounds at different partitions.
    let mut next_partition = (std::process::id() % u32::from(partitions)) as u16;
    let mut empty_reads = 0u16;
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
        let partition = next_partition;
        next_partition = (next_partition + 1) % partitions;
        let started = std::time::Instant::now();
        let reply: Result<Vec<RawEntry>, oms_shared::OmsError> = async {
            let mut conn = shared.redis.get().await?;
            oms_shared::redis::queue::read_new_entries(
                &mut *conn,
                &shared.keys,
                partition,
                &shared.name,
                count,
            )
            .await
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
                    if re.code() == Some("NOGROUP") || re.to_string().contains("NOGROUP") {
                        if let Ok(mut conn) = shared.redis.get().await {
                            let _ =
                                oms_shared::redis::queue::ensure_group(&mut *conn, &shared.keys)
                                    .await;
                        }
                        continue;
                    }
                }
                shared.health.down(Service::Redis, &e);
                failures += 1;
                if sleep_or_shutdown(RetryPolicy::CONSUMER.wait(failures + 1), &shutdown).await {
                    break;
                }
                continue;
            }
        };
        let deliveries: Vec<Delivery> = reply.into_iter().map(to_delivery).collect();
        if deliveries.is_empty() {
            // The read does not block (it runs in a script): poll, more slowly while idle
            // (once a whole round of partitions had nothing).
            drop(permit);
            empty_reads += 1;
            if empty_reads < partitions {
                continue;
            }
            empty_reads = 0;
            idle = (idle * 2).clamp(Duration::from_millis(5), IDLE_POLL_MAX);
            if sleep_or_shutdown(idle, &shutdown).await {
                break;
            }
            continue;
        }
        idle = Duration::ZERO;
        empty_reads = 0;
        let batch = Batch {
            partition,
            deliveries,
        };
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
        for partition in shared.keys.partitions().all() {
            if !claim_partition(&shared, &tx, &shutdown, partition, min_idle_ms).await {
                return;
            }
            if shutdown.is_cancelled() || shared.pause.is_paused() {
                break;
            }
        }
    }
    tracing::debug!("claimer stopped");
}

/// Claims the idle entries of one partition, page by page; false when the channel closed.
async fn claim_partition(
    shared: &Shared,
    tx: &mpsc::Sender<Batch>,
    shutdown: &CancellationToken,
    partition: u16,
    min_idle_ms: u64,
) -> bool {
    {
        let mut cursor = "0-0".to_string();
        loop {
            let Ok(permit) = tx.reserve().await else {
                return false;
            };
            let started = std::time::Instant::now();
            let claimed = claim_page(shared, partition, &cursor, min_idle_ms).await;
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
                tracing::info!(
                    entries = deliveries.len(),
                    partition,
                    "claimed idle entries"
                );
                permit.send(Batch {
                    partition,
                    deliveries,
                });
            }
            if next == "0-0" || shutdown.is_cancelled() || shared.pause.is_paused() {
                break;
            }
            cursor = next;
        }
    }
    true
}

/// One page of claimed entries (each with its delivery count), and the next cursor.
async fn claim_page(
    shared: &Shared,
    partition: u16,
    cursor: &str,
    min_idle_ms: u64,
) -> Result<(String, Vec<Delivery>), oms_shared::OmsError> {
    let mut conn = shared.redis.get().await?;
    let (next, entries) = oms_shared::redis::queue::claim_idle_entries(
        &mut *conn,
        &shared.keys,
        partition,
        &shared.name,
        min_idle_ms,
        cursor,
        50,
    )
    .await?;
    Ok((next, entries.into_iter().map(to_delivery).collect()))
}
