//! The orders stream and its consumer group: creation, enqueueing, group statistics
//! (length, pending, lag), safe trimming and the dead-letter stream.
//!
//! Trimming never removes an entry that is still pending or not yet delivered: the cut-off
//! is the smaller of the oldest pending id and the group's last-delivered id + 1
//! (`XTRIM MINID`). Nothing is ever `XDEL`eted from the orders stream, so the group's `lag`
//! stays known (backpressure and autoscalers read it).

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::Value;

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

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// Field/value pairs of a RESP2 flat array or a RESP3 map.
fn pairs(v: &Value) -> BTreeMap<String, Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| Some((text(&kv[0])?, kv.get(1)?.clone())))
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v.clone())))
            .collect(),
        _ => BTreeMap::new(),
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

/// A row that could not be processed after its attempts, as kept in `orders:dead`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Id of the entry in the dead-letter stream (empty before it is added).
    #[serde(default)]
    pub id: String,
    pub import_id: u64,
    pub line: u64,
    pub identity: String,
    /// The row as JSON ([`OrderRow`]), or the raw entry when it could not be decoded.
    pub row: String,
    pub error: String,
    pub attempts: u64,
    pub consumer: String,
    pub source_id: String,
    pub failed_at: String,
}

impl DeadLetter {
    const FIELDS: [&'static str; 9] = [
        "import",
        "line",
        "identity",
        "row",
        "error",
        "attempts",
        "consumer",
        "source_id",
        "failed_at",
    ];

    fn to_fields(&self) -> [(&'static str, String); 9] {
        let values = [
            self.import_id.to_string(),
            self.line.to_string(),
            self.identity.clone(),
            self.row.clone(),
            self.error.clone(),
            self.attempts.to_string(),
            self.consumer.clone(),
            self.source_id.clone(),
            self.failed_at.clone(),
        ];
        let mut out: [(&'static str, String); 9] = Default::default();
        for (i, v) in values.into_iter().enumerate() {
            out[i] = (Self::FIELDS[i], v);
        }
        out
    }

    fn from_entry(id: &str, fields: &BTreeMap<String, Value>) -> DeadLetter {
        let get = |k: &str| fields.get(k).and_then(text).unwrap_or_default();
        DeadLetter {
            id: id.to_string(),
            import_id: get("import").parse().unwrap_or(0),
            line: get("line").parse().unwrap_or(0),
            identity: get("identity"),
            row: get("row"),
            error: get("error"),
            attempts: get("attempts").parse().unwrap_or(0),
            consumer: get("consumer"),
            source_id: get("source_id"),
            failed_at: get("failed_at"),
        }
    }
}

/// Adds `XADD orders:dead` commands for these rows to a pipeline (the caller acks the
/// source entry in the same `MULTI`, so a row is never both dead and pending).
pub fn push_dead_letters(pipe: &mut redis::Pipeline, keys: &StreamKeys, letters: &[DeadLetter]) {
    for letter in letters {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(keys.dead_letters()).arg("*");
        for (field, value) in letter.to_fields() {
            cmd.arg(field).arg(value);
        }
        pipe.add_command(cmd).ignore();
    }
}

/// Dead letters from `start` (inclusive, `-` for the first), at most `count`.
pub async fn dead_letters<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    start: &str,
    count: usize,
) -> Result<Vec<DeadLetter>> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(keys.dead_letters())
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(entries) = reply else {
        return Ok(Vec::new());
    };
    Ok(entries
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if parts.len() == 2 => {
                Some(DeadLetter::from_entry(&text(&parts[0])?, &pairs(&parts[1])))
            }
            _ => None,
        })
        .collect())
}

/// Every dead letter, paging through the stream.
pub async fn all_dead_letters<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<Vec<DeadLetter>> {
    let mut all = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page = dead_letters(conn, keys, &start, 1000).await?;
        let Some(last) = page.last() else { break };
        start = format!("({}", last.id);
        let full = page.len() == 1000;
        all.extend(page);
        if !full {
            break;
        }
    }
    Ok(all)
}

/// Number of dead letters.
pub async fn dead_letter_count<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<u64> {
    Ok(redis::cmd("XLEN")
        .arg(keys.dead_letters())
        .query_async(conn)
        .await?)
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

    #[test]
    fn dead_letter_fields_round_trip() {
        let letter = DeadLetter {
            id: "1-1".into(),
            import_id: 3,
            line: 9,
            identity: "abc:9".into(),
            row: "{}".into(),
            error: "boom".into(),
            attempts: 3,
            consumer: "c1".into(),
            source_id: "5-0".into(),
            failed_at: "2026-11-25T00:00:00Z".into(),
        };
        let fields: BTreeMap<String, Value> = letter
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.into_bytes())))
            .collect();
        assert_eq!(DeadLetter::from_entry("1-1", &fields), letter);
    }
}
