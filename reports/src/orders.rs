//! Order reports of the HTTP API: live order statistics and "where is my order".
//!
//! [`stats`] never scans the orders table. It reads what is already aggregated in Redis:
//! - completed orders and revenue: the `P kpi:total` read model (exact, exactly-once);
//! - failed orders by reason and completed/failed per minute and per second: the live
//!   counters the consumers keep ([`oms_shared::redis::order_stats`]; best effort, see there);
//! - queued, in-flight and dead entries: the stream's group figures and `XLEN` of the
//!   dead letters.
//!
//! [`lookup`] reads one order by its unique identity (with its customer and items; an
//! order `producer archive` moved out of `orders` answers `archived` with what
//! `archived_orders` keeps) and, unless it has ended, looks for it among the group's pending entries (at most
//! [`PENDING_SEARCH`], prefiltered by a byte search before decoding) and the dead letters
//! (at most [`DEAD_SEARCH`]).

use std::collections::BTreeMap;

use crate::Result;
use oms_shared::order::decode_chunk;
use oms_shared::redis::conn::RedisPool;
use oms_shared::redis::keys::StreamKeys;
use oms_shared::redis::order_stats::{self, Throughput};
use oms_shared::redis::queue::{self, DeadLetter};
use oms_shared::redis::read_model::read_kpis;
use oms_shared::store::archive::{archived_order_by_identity, ArchivedOrderRecord};
use oms_shared::store::lookup::{self, OrderRecord};
use redis::Value;
use serde::Serialize;
use sqlx::MySqlPool;

/// Pending entries searched for an in-flight order: the oldest ones, where an order that
/// does not end is (each consumer holds a few entries at a time). Bounds the cost of one
/// lookup of an unknown identity (the API's worst case) to this many `XRANGE`s.
pub const PENDING_SEARCH: usize = 200;
/// Dead letters searched for a dead order (each at most a few KiB: the rows they keep are
/// bounded, see `DeadLetter::bounded`).
pub const DEAD_SEARCH: usize = 1_000;

/// What `GET /api/orders/stats` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderStats {
    /// Completed orders (the `kpi:total` read model).
    pub completed: i64,
    pub revenue: String,
    pub revenue_cents: i64,
    pub average_order_value: String,
    /// Failed orders by reason (live counters).
    pub failed: BTreeMap<String, u64>,
    pub failed_total: u64,
    /// Rows in the dead-letter stream.
    pub dead_letters: u64,
    /// Stream entries (chunks of rows) delivered but not acknowledged.
    pub pending_entries: u64,
    /// Stream entries not yet delivered (null when Redis cannot tell).
    pub queued_entries: Option<u64>,
    /// Completed and failed per minute over the last hour, oldest first (61 minutes,
    /// the current one last and partial).
    #[schema(value_type = Vec<Object>)]
    pub per_minute: Vec<Throughput>,
}

/// Live order statistics (see the module documentation for where each figure comes from).
pub async fn stats(redis: &RedisPool, keys: &StreamKeys, now_secs: i64) -> Result<OrderStats> {
    let mut rc = redis.get().await?;
    let total = read_kpis(&mut *rc, &keys.kpi_total())
        .await?
        .unwrap_or_default();
    let failed = order_stats::failed_by_reason(&mut *rc, keys).await?;
    let minute = now_secs.div_euclid(60);
    let minutes = order_stats::read_minutes(&mut *rc, keys, minute - 60, minute).await?;
    let group = queue::group_stats(&mut *rc, keys).await?;
    let dead_letters = queue::dead_letter_count(&mut *rc, keys).await?;
    Ok(OrderStats {
        completed: total.order_count,
        revenue: total.revenue.to_string(),
        revenue_cents: total.revenue.0,
        average_order_value: total.average_order_value().to_string(),
        failed_total: failed.values().sum(),
        failed,
        dead_letters,
        pending_entries: group.pending,
        queued_entries: group.lag,
        per_minute: minutes.iter().map(|m| m.per_minute()).collect(),
    })
}

/// Completed and failed per second over the last `window_secs` (the dashboard's chart).
pub async fn throughput(
    redis: &RedisPool,
    keys: &StreamKeys,
    now_secs: i64,
    window_secs: i64,
) -> Result<Vec<Throughput>> {
    let mut rc = redis.get().await?;
    let first = (now_secs - window_secs + 1).div_euclid(60);
    let minutes = order_stats::read_minutes(&mut *rc, keys, first, now_secs.div_euclid(60)).await?;
    Ok(order_stats::per_second_window(
        &minutes,
        now_secs,
        window_secs,
    ))
}

/// Per-minute completed, failed and lag over the last `minutes` (at most 24 h) ending with
/// the minute of `now_secs`, oldest first (the dashboard's history).
pub async fn history(
    redis: &RedisPool,
    keys: &StreamKeys,
    now_secs: i64,
    minutes: i64,
) -> Result<Vec<order_stats::HistoryPoint>> {
    let mut rc = redis.get().await?;
    let last = now_secs.div_euclid(60);
    Ok(order_stats::read_history(&mut *rc, keys, last - minutes + 1, last).await?)
}

/// A pending stream entry that holds the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InFlight {
    pub entry_id: String,
    pub consumer: String,
    pub idle_ms: u64,
    pub deliveries: u64,
    /// The last error noted for the entry, if a delivery failed.
    pub last_error: Option<String>,
}

/// What `GET /api/orders/{identity}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderLookup {
    pub identity: String,
    /// `completed`, `failed`, `reserved`, `pending` (from MySQL), `in_flight` (on the
    /// stream, not in MySQL yet), `dead`, or `archived` (moved out of `orders` by
    /// `producer archive`: see `archived`).
    pub state: String,
    /// The orders row with customer and items; null while only the stream knows it, and
    /// once archived.
    #[schema(value_type = Option<Object>)]
    pub order: Option<OrderRecord>,
    /// What `archived_orders` keeps of an archived order (id, import and line, status,
    /// reason, total, KPI day, when it was archived); its items and customer are in the
    /// archive file. Null unless `state` is `archived`.
    #[schema(value_type = Option<Object>)]
    pub archived: Option<ArchivedOrderRecord>,
    pub in_flight: Option<InFlight>,
    #[schema(value_type = Option<Object>)]
    pub dead_letter: Option<DeadLetter>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Whether an entry's fields hold a row of this identity (byte prefilter, then decode).
fn entry_holds(entry_id: &str, fields: &[Value], identity: &str) -> bool {
    let needle = identity.as_bytes();
    let raw: Vec<(String, Vec<u8>)> = fields
        .chunks(2)
        .filter_map(|kv| match kv {
            [k, Value::BulkString(v)] => Some((text(k)?, v.clone())),
            _ => None,
        })
        .collect();
    let mentions = raw
        .iter()
        .any(|(_, v)| v.windows(needle.len().max(1)).any(|w| w == needle));
    if !mentions {
        return false;
    }
    decode_chunk(
        entry_id,
        raw.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
    )
    .map(|c| c.rows.iter().any(|r| r.identity.as_str() == identity))
    .unwrap_or(false)
}

/// The pending entry holding `identity`, if any among the first [`PENDING_SEARCH`].
async fn find_pending(
    redis: &RedisPool,
    keys: &StreamKeys,
    identity: &str,
) -> Result<Option<InFlight>> {
    let mut rc = redis.get().await?;
    let mut entries: Vec<(u16, String, String, u64, u64)> =
        queue::pending_entries(&mut *rc, keys, PENDING_SEARCH)
            .await?
            .into_iter()
            .map(|p| (p.partition, p.id, p.consumer, p.idle_ms, p.deliveries))
            .collect();
    // One pipeline per partition and page: a cluster pipeline stays on one slot.
    entries.sort_by_key(|e| e.0);
    for group in entries.chunk_by(|a, b| a.0 == b.0) {
        let partition = group[0].0;
        for page in group.chunks(100) {
            let mut pipe = redis::pipe();
            for (_, id, ..) in page {
                pipe.cmd("XRANGE")
                    .arg(keys.stream(partition))
                    .arg(id)
                    .arg(id);
            }
            let replies: Vec<Value> = pipe.query_async(&mut *rc).await?;
            for ((_, id, consumer, idle_ms, deliveries), reply) in page.iter().zip(replies) {
                let Value::Array(found) = reply else { continue };
                let holds = found.iter().any(|e| match e {
                    Value::Array(parts) if parts.len() == 2 => match &parts[1] {
                        Value::Array(fields) => entry_holds(id, fields, identity),
                        _ => false,
                    },
                    _ => false,
                });
                if holds {
                    let last_error: Option<String> = redis::cmd("HGET")
                        .arg(keys.partition_message_errors(partition))
                        .arg(id)
                        .query_async(&mut *rc)
                        .await?;
                    return Ok(Some(InFlight {
                        entry_id: id.clone(),
                        consumer: consumer.clone(),
                        idle_ms: *idle_ms,
                        deliveries: *deliveries,
                        last_error,
                    }));
                }
            }
        }
    }
    Ok(None)
}

/// The dead letter of `identity`, if any among the first [`DEAD_SEARCH`].
async fn find_dead(
    redis: &RedisPool,
    keys: &StreamKeys,
    identity: &str,
) -> Result<Option<DeadLetter>> {
    let mut rc = redis.get().await?;
    let mut start = "-".to_string();
    let mut seen = 0;
    while seen < DEAD_SEARCH {
        let page = queue::dead_letters(&mut *rc, keys, &start, 500).await?;
        seen += page.len();
        let Some(last) = page.last() else { break };
        start = format!("({}", last.id);
        let full = page.len() == 500;
        if let Some(found) = page.into_iter().find(|d| d.identity == identity) {
            return Ok(Some(found));
        }
        if !full {
            break;
        }
    }
    Ok(None)
}

/// Where the order with this identity is; `None` when nothing knows it.
pub async fn lookup(
    redis: &RedisPool,
    db: &MySqlPool,
    keys: &StreamKeys,
    identity: &str,
) -> Result<Option<OrderLookup>> {
    let order = lookup::order_by_identity(db, identity).await?;
    // After `orders`: an order archived between the two reads is found by the first.
    let archived = match order {
        Some(_) => None,
        None => archived_order_by_identity(db, identity).await?,
    };
    if let Some(archived) = archived {
        return Ok(Some(OrderLookup {
            identity: identity.to_string(),
            state: "archived".to_string(),
            order: None,
            archived: Some(archived),
            in_flight: None,
            dead_letter: None,
        }));
    }
    let ended = order
        .as_ref()
        .is_some_and(|o| o.status == "completed" || o.status == "failed");
    let (in_flight, dead_letter) = if ended {
        (None, None)
    } else {
        (
            find_pending(redis, keys, identity).await?,
            find_dead(redis, keys, identity).await?,
        )
    };
    let state = match (&order, &in_flight, &dead_letter) {
        (Some(o), _, _) if ended => o.status.clone(),
        (_, _, Some(_)) => "dead".to_string(),
        (Some(o), _, _) => o.status.clone(),
        (None, Some(_), _) => "in_flight".to_string(),
        (None, None, None) => return Ok(None),
    };
    Ok(Some(OrderLookup {
        identity: identity.to_string(),
        state,
        order,
        archived: None,
        in_flight,
        dead_letter,
    }))
}
