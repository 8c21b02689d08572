//! The orders stream and its consumer group: the one module that speaks the stream
//! protocol (`XADD`, `XREADGROUP`, `XAUTOCLAIM`, `XCLAIM`, `XPENDING`, `XINFO`, `XTRIM`,
//! `XDEL` of dead letters); everything else calls it.
//!
//! - this file: creating the group, enqueueing chunks, group statistics (length, pending,
//!   lag, consumers, pending entries), keeping entries claimed, safe trimming;
//! - [`read`]: the bounded reads and claims of consumers (one Lua script);
//! - [`dead_letters`]: the dead-letter stream.
//!
//! Trimming never removes an entry that is still pending or not yet delivered: the cut-off
//! is the smaller of the oldest pending id and the group's last-delivered id + 1
//! (`XTRIM MINID`). Nothing is ever `XDEL`eted from the orders stream, so the group's `lag`
//! stays known (backpressure and autoscalers read it).

mod dead_letters;
mod read;
mod reply;

pub use dead_letters::*;
pub use read::*;

use redis::aio::ConnectionLike;
use redis::Value;

use reply::{int, pairs, text};

use crate::error::Result;
use crate::keys::{StreamKeys, CONSUMER_GROUP};
use crate::order::{EncodedChunk, OrderRow, CHUNK_VERSION};

/// Creates the consumer group (and the stream) if missing, reading from the beginning.
pub async fn ensure_group<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<()> {
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.orders())
        .arg(CONSUMER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Appends one entry per chunk in one pipelined round trip; returns the entry ids.
pub async fn add_chunks<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[&[OrderRow]],
) -> Result<Vec<String>> {
    let encoded: Vec<EncodedChunk> = chunks
        .iter()
        .map(|rows| EncodedChunk {
            rows_json: serde_json::to_vec(rows).expect("order rows always serialize"),
            rows: rows.len(),
            first_line: rows.first().map(|r| r.line).unwrap_or(0),
            last_line: rows.last().map(|r| r.line).unwrap_or(0),
            partition: 0,
        })
        .collect();
    add_encoded_chunks(conn, keys, import_id, &encoded).await
}

/// Appends one entry per encoded chunk (fields `v`, `import`, `rows`) in one pipelined
/// round trip; returns the entry ids.
pub async fn add_encoded_chunks<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[EncodedChunk],
) -> Result<Vec<String>> {
    let stream = keys.orders();
    let import = import_id.to_string();
    let mut pipe = redis::pipe();
    for chunk in chunks {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("v")
            .arg(CHUNK_VERSION)
            .arg("import")
            .arg(&import)
            .arg("rows")
            .arg(&chunk.rows_json);
    }
    Ok(pipe.query_async(conn).await?)
}

/// One consumer of the group, as `XINFO CONSUMERS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

/// The stream and group figures `status`, backpressure and the gauges need.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupStats {
    pub length: u64,
    pub pending: u64,
    /// Entries not yet delivered to the group; `None` when Redis cannot tell (< 7.0, or
    /// after an XDEL in the middle), then [`GroupStats::backlog`] falls back to the length.
    pub lag: Option<u64>,
    pub last_delivered_id: String,
    pub consumers: u64,
    pub oldest_pending_id: Option<String>,
}

impl GroupStats {
    /// Entries waiting: lag when known, else the whole length (conservative).
    pub fn backlog(&self) -> u64 {
        self.lag.unwrap_or(self.length)
    }
}

/// Length, pending, lag and consumers of the `workers` group (zeros if none exists yet).
pub async fn group_stats<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<GroupStats> {
    let stream = keys.orders();
    let (length, groups): (u64, Value) = redis::pipe()
        .cmd("XLEN")
        .arg(&stream)
        .cmd("XINFO")
        .arg("GROUPS")
        .arg(&stream)
        .ignore_errors()
        .query_async::<(Value, Value)>(conn)
        .await
        .map(|(len, groups)| (int(&len).unwrap_or(0), groups))?;
    let mut stats = GroupStats {
        length,
        ..GroupStats::default()
    };
    let Value::Array(groups) = groups else {
        return Ok(stats);
    };
    let Some(group) = groups
        .iter()
        .map(pairs)
        .find(|g| g.get("name").and_then(text).as_deref() == Some(CONSUMER_GROUP))
    else {
        return Ok(stats);
    };
    stats.pending = group.get("pending").and_then(int).unwrap_or(0);
    stats.consumers = group.get("consumers").and_then(int).unwrap_or(0);
    stats.lag = group.get("lag").and_then(int);
    stats.last_delivered_id = group
        .get("last-delivered-id")
        .and_then(text)
        .unwrap_or_else(|| "0-0".into());
    if stats.pending > 0 {
        let summary: Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(CONSUMER_GROUP)
            .query_async(conn)
            .await?;
        if let Value::Array(parts) = summary {
            stats.oldest_pending_id = parts.get(1).and_then(text);
        }
    }
    Ok(stats)
}

/// Consumers of the group with their pending counts and idle times.
pub async fn consumers<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<Vec<ConsumerInfo>> {
    let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys.orders())
        .arg(CONSUMER_GROUP)
        .query_async(conn)
        .await;
    let Ok(Value::Array(items)) = reply else {
        return Ok(Vec::new());
    };
    Ok(items
        .iter()
        .map(pairs)
        .map(|c| ConsumerInfo {
            name: c.get("name").and_then(text).unwrap_or_default(),
            pending: c.get("pending").and_then(int).unwrap_or(0),
            idle_ms: c.get("idle").and_then(int).unwrap_or(0),
        })
        .collect())
}

/// Stream ids compare as (milliseconds, sequence).
pub fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The id right after `id`: `5-3` → `5-4`.
fn next_id(id: &str) -> Option<String> {
    let (ms, seq) = parse_stream_id(id)?;
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms + 1),
    })
}

/// The MINID below which every entry is acknowledged: the oldest pending id, or the
/// entry after the last delivered one when nothing is pending. Pure, for testing.
pub fn safe_trim_minid(stats: &GroupStats) -> Option<String> {
    let after_delivered = next_id(&stats.last_delivered_id)?;
    match &stats.oldest_pending_id {
        Some(pending) if parse_stream_id(pending)? < parse_stream_id(&after_delivered)? => {
            Some(pending.clone())
        }
        _ => Some(after_delivered),
    }
}

/// Trims acknowledged entries (`XTRIM MINID ~`); returns how many were removed.
pub async fn trim_acknowledged<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<u64> {
    let stats = group_stats(conn, keys).await?;
    if stats.last_delivered_id.is_empty() || stats.last_delivered_id == "0-0" {
        return Ok(0);
    }
    let Some(minid) = safe_trim_minid(&stats) else {
        return Ok(0);
    };
    let removed: u64 = redis::cmd("XTRIM")
        .arg(keys.orders())
        .arg("MINID")
        .arg("~")
        .arg(minid)
        .query_async(conn)
        .await?;
    Ok(removed)
}

/// One entry of the group's pending list (`XPENDING` extended form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    pub id: String,
    pub consumer: String,
    pub idle_ms: u64,
    pub deliveries: u64,
}

/// The first `count` pending entries of the group, oldest first.
pub async fn pending_entries<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    count: usize,
) -> Result<Vec<PendingEntry>> {
    let reply: Value = redis::cmd("XPENDING")
        .arg(keys.orders())
        .arg(CONSUMER_GROUP)
        .arg("-")
        .arg("+")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(list) = reply else {
        return Ok(Vec::new());
    };
    Ok(list
        .iter()
        .filter_map(|e| match e {
            Value::Array(f) if f.len() >= 4 => Some(PendingEntry {
                id: text(&f[0])?,
                consumer: text(&f[1])?,
                idle_ms: int(&f[2])?,
                deliveries: int(&f[3])?,
            }),
            _ => None,
        })
        .collect())
}

/// `XCLAIM … JUSTID` of `ids` to `consumer` itself: resets their idle time without
/// counting a delivery, so other consumers do not claim entries it is still working on.
pub async fn keep_claimed<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    consumer: &str,
    ids: &[&str],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let _: Vec<String> = redis::cmd("XCLAIM")
        .arg(keys.orders())
        .arg(CONSUMER_GROUP)
        .arg(consumer)
        .arg(0)
        .arg(ids)
        .arg("JUSTID")
        .query_async(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(last: &str, oldest: Option<&str>) -> GroupStats {
        GroupStats {
            last_delivered_id: last.into(),
            oldest_pending_id: oldest.map(String::from),
            ..GroupStats::default()
        }
    }

    #[test]
    fn trim_stops_at_the_oldest_pending_entry() {
        assert_eq!(
            safe_trim_minid(&stats("100-5", Some("90-1"))).as_deref(),
            Some("90-1")
        );
    }

    #[test]
    fn trim_never_passes_undelivered_entries() {
        assert_eq!(
            safe_trim_minid(&stats("100-5", None)).as_deref(),
            Some("100-6")
        );
        assert_eq!(
            safe_trim_minid(&stats("100-18446744073709551615", None)).as_deref(),
            Some("101-0")
        );
    }

    #[test]
    fn stream_ids_compare_numerically() {
        assert!(parse_stream_id("9-0").unwrap() < parse_stream_id("10-0").unwrap());
        assert!(parse_stream_id("10-2").unwrap() < parse_stream_id("10-10").unwrap());
        assert_eq!(parse_stream_id("junk"), None);
    }
}
