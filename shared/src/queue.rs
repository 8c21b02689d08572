//! The orders stream and its consumer group: creation, enqueueing, group statistics
//! (length, pending, lag), safe trimming and the dead-letter stream.
//!
//! Trimming never removes an entry that is still pending or not yet delivered: the cut-off
//! is the smaller of the oldest pending id and the group's last-delivered id + 1
//! (`XTRIM MINID`). Nothing is ever `XDEL`eted from the orders stream, so the group's `lag`
//! stays known (backpressure and autoscalers read it).
//!
//! Consumers read entries through one Lua script ([`read_new_entries`],
//! [`claim_idle_entries`]) that takes them one at a time until a byte budget is reached and
//! sends an entry above [`MAX_ENTRY_BYTES`] as a cut-down stub: whatever was written to the
//! stream, what a consumer receives in one read is bounded.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::Value;

use crate::error::Result;
use crate::keys::{StreamKeys, CONSUMER_GROUP};
use crate::order::{EncodedChunk, OrderRow, CHUNK_VERSION};
use crate::order_rules::MAX_ENTRY_BYTES;

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

/// KEYS: orders stream. ARGV: group, consumer, max entries, byte budget, max entry bytes,
/// mode (`new` or `claim`), min idle ms, cursor. Returns {cursor, entries}, each entry
/// {id, deliveries, size, oversize, fields}; an oversize entry's first 8 fields, each cut
/// to 1 KiB. Claims read each entry's delivery count from `XPENDING`.
const READ_SCRIPT: &str = r#"
local group, consumer = ARGV[1], ARGV[2]
local max_entries, budget, max_entry = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local claim = ARGV[6] == 'claim'
local cursor = ARGV[8]
local out, bytes, steps = {}, 0, 0
while #out < max_entries and bytes < budget and steps < 10 * max_entries do
  steps = steps + 1
  local entry, deliveries
  if claim then
    local r = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, ARGV[7], cursor, 'COUNT', 1)
    cursor = r[1]
    entry = r[2][1]
    if entry and entry[2] then
      local p = redis.call('XPENDING', KEYS[1], group, entry[1], entry[1], 1)
      deliveries = (p[1] and p[1][4]) or 1
    end
  else
    local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', KEYS[1], '>')
    if not r then break end
    entry = r[1][2][1]
    deliveries = 1
  end
  if entry and entry[2] then
    local fields = entry[2]
    local size = 0
    for i = 1, #fields do size = size + #fields[i] end
    local oversize = 0
    if size > max_entry then
      oversize = 1
      local cut = {}
      for i = 1, math.min(#fields, 8) do cut[i] = string.sub(fields[i], 1, 1024) end
      fields = cut
      bytes = bytes + 8192
    else
      bytes = bytes + size
    end
    out[#out + 1] = {entry[1], deliveries, size, oversize, fields}
  end
  if claim and cursor == '0-0' then break end
end
return {cursor, out}
"#;

static READ: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(READ_SCRIPT));

/// One stream entry as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub id: String,
    /// How many times the group has delivered it (1 for a first read).
    pub deliveries: u64,
    /// Bytes of its field names and values, as stored in the stream.
    pub size: u64,
    /// Above [`MAX_ENTRY_BYTES`]: `fields` holds only a cut-down start of the entry.
    pub oversize: bool,
    pub fields: Vec<(String, Vec<u8>)>,
}

/// Bytes of entries one read returns at most, beyond the last entry taken: entries are
/// taken while the total is below it, so a reply holds at most this plus one entry.
pub const READ_BUDGET_BYTES: usize = 2 * 1024 * 1024;

fn raw_entries(v: &Value) -> Vec<RawEntry> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let Value::Array(parts) = e else { return None };
            let [id, deliveries, size, oversize, fields] = parts.as_slice() else {
                return None;
            };
            let fields = match fields {
                Value::Array(f) => f
                    .chunks(2)
                    .filter_map(|kv| {
                        let value = match kv.get(1)? {
                            Value::BulkString(b) => b.clone(),
                            other => text(other)?.into_bytes(),
                        };
                        Some((text(&kv[0])?, value))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some(RawEntry {
                id: text(id)?,
                deliveries: int(deliveries).unwrap_or(1),
                size: int(size).unwrap_or(0),
                oversize: int(oversize) == Some(1),
                fields,
            })
        })
        .collect()
}

async fn run_read_script<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    consumer: &str,
    max_entries: usize,
    claim: Option<(u64, &str)>,
) -> Result<(String, Vec<RawEntry>)> {
    let mut invocation = READ.prepare_invoke();
    invocation
        .key(keys.orders())
        .arg(CONSUMER_GROUP)
        .arg(consumer)
        .arg(max_entries.max(1))
        .arg(READ_BUDGET_BYTES)
        .arg(MAX_ENTRY_BYTES)
        .arg(if claim.is_some() { "claim" } else { "new" })
        .arg(claim.map(|c| c.0).unwrap_or(0))
        .arg(claim.map(|c| c.1).unwrap_or("0-0"));
    let reply: Value = invocation.invoke_async(conn).await?;
    let Value::Array(parts) = reply else {
        return Ok(("0-0".into(), Vec::new()));
    };
    let cursor = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
    let entries = parts.get(1).map(raw_entries).unwrap_or_default();
    Ok((cursor, entries))
}

/// New entries for `consumer` (`XREADGROUP ... >`, one at a time), at most `max_entries`
/// and about [`READ_BUDGET_BYTES`]; does not block (empty when nothing is new).
pub async fn read_new_entries<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    consumer: &str,
    max_entries: usize,
) -> Result<Vec<RawEntry>> {
    Ok(run_read_script(conn, keys, consumer, max_entries, None)
        .await?
        .1)
}

/// Entries idle for `min_idle_ms` claimed for `consumer` (`XAUTOCLAIM` from `cursor`), with
/// their delivery counts; returns the next cursor (`0-0` when the scan is complete).
pub async fn claim_idle_entries<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    consumer: &str,
    min_idle_ms: u64,
    cursor: &str,
    max_entries: usize,
) -> Result<(String, Vec<RawEntry>)> {
    run_read_script(
        conn,
        keys,
        consumer,
        max_entries,
        Some((min_idle_ms, cursor)),
    )
    .await
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
