//! The orders stream and its consumer group: the one module that speaks the stream
//! protocol (`XADD`, `XREADGROUP`, `XAUTOCLAIM`, `XCLAIM`, `XPENDING`, `XINFO`, `XTRIM`,
//! `XDEL` of dead letters); everything else calls it.
//!
//! - this file: creating the group, enqueueing chunks, group statistics (length, pending,
//!   lag, consumers, pending entries), keeping entries claimed, safe trimming;
//!
//! **Partitions.** The stream is `keys.partitions()` streams (see `keys`); each has its
//! own `workers` group. Enqueueing routes each chunk to its partition (one pipeline per
//! partition: a cluster pipeline stays on one slot); statistics, consumers, pending
//! entries and dead letters are summed or merged over the partitions here, so callers see
//! one queue, with the per-partition figures beside the sums ([`GroupStats::partitions`]).
//! - [`read`]: the bounded reads and claims of consumers (one Lua script);
//! - [`dead_letters`]: the dead-letter stream.
//!
//! Trimming never removes an entry that is still pending or not yet delivered: the cut-off
//! is the smaller of the oldest pending id and the group's last-delivered id + 1
//! (`XTRIM MINID`). Nothing is ever `XDEL`eted from the orders stream, so the group's `lag`
//! stays known (backpressure and autoscalers read it).

mod acknowledge;
mod dead_letters;
mod read;
mod reply;

pub use acknowledge::acknowledgement;
pub use dead_letters::{
    all_dead_letters, dead_letter_count, dead_letter_counts, dead_letters, delete_dead_letters,
    purge_dead_letters, push_dead_letters, DeadLetter,
};
pub use read::{claim_idle_entries, read_new_entries, RawEntry};

use redis::aio::ConnectionLike;
use redis::Value;

use reply::{int, pairs, text};

use crate::error::{OmsError, Result};
use crate::order::rules::normalize_email;
use crate::order::{EncodedChunk, OrderRow, CHUNK_VERSION};
use crate::redis::conn::{write_and_wait, RedisPool, ReplicaWait};
use crate::redis::keys::{StreamKeys, CONSUMER_GROUP};
use crate::redis::partition::partition_of;

/// Creates the consumer group (and the stream) of every partition if missing, reading
/// from the beginning.
pub async fn ensure_group<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<()> {
    for partition in keys.partitions().all() {
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.stream(partition))
            .arg(CONSUMER_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Appends the rows as entries, each chunk split by partition (the hash of each row's
/// customer email), one pipelined round trip per partition; returns the entry ids.
pub async fn add_chunks<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[&[OrderRow]],
) -> Result<Vec<String>> {
    add_chunks_replicated(conn, keys, import_id, chunks, ReplicaWait::NONE).await
}

/// [`add_chunks`], each partition's pipeline followed by `WAIT` (see
/// [`add_encoded_chunks_replicated`]).
pub async fn add_chunks_replicated<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[&[OrderRow]],
    wait: ReplicaWait,
) -> Result<Vec<String>> {
    let mut encoded: Vec<EncodedChunk> = Vec::new();
    for rows in chunks {
        for partition in keys.partitions().all() {
            let part: Vec<&OrderRow> = rows
                .iter()
                .filter(|r| {
                    partition_of(&normalize_email(&r.customer_email), keys.partitions())
                        == partition
                })
                .collect();
            if part.is_empty() {
                continue;
            }
            encoded.push(EncodedChunk {
                rows_json: serde_json::to_vec(&part).expect("order rows always serialize"),
                rows: part.len(),
                first_line: part.first().map(|r| r.line).unwrap_or(0),
                last_line: part.last().map(|r| r.line).unwrap_or(0),
                partition,
            });
        }
    }
    add_encoded_chunks_replicated(conn, keys, import_id, &encoded, wait).await
}

/// Appends one entry per encoded chunk (fields `v`, `import`, `rows`) to its partition,
/// one pipelined round trip per partition, returning the entry ids in chunk order; each
/// partition's pipeline followed by `WAIT` for
/// `wait.replicas` replicas on the same connection: when it returns, every entry is on a
/// primary and that many of its replicas. An error may come after some entries were
/// added; adding them again is harmless (consumers process an identity once).
pub async fn add_encoded_chunks_replicated<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[EncodedChunk],
    wait: ReplicaWait,
) -> Result<Vec<String>> {
    add_to_partitions(conn, keys, import_id, chunks, wait, None).await
}

/// The `XADD`s of every partition, one pipeline each (see
/// [`add_encoded_chunks_replicated`]); with `checked`, each partition's entries are added
/// by one script that first checks the partition's epoch key ([`crate::redis::epoch`]).
async fn add_to_partitions<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[EncodedChunk],
    wait: ReplicaWait,
    checked: Option<CheckedAdd<'_>>,
) -> Result<Vec<String>> {
    let epoch = checked.map(|c| c.epoch);
    check_partitions(keys, chunks)?;
    let import = import_id.to_string();
    let mut ids = vec![String::new(); chunks.len()];
    for partition in keys.partitions().all() {
        let Some((mine, pipe)) = partition_pipeline(keys, partition, &import, chunks, checked)
        else {
            continue;
        };
        let replies = write_and_wait(conn, pipe, wait)
            .await
            .map_err(|e| epoch_error(e, keys, partition, epoch))?;
        for (&i, id) in mine.iter().zip(entry_ids(&replies, epoch.is_some())) {
            ids[i] = id;
        }
    }
    Ok(ids)
}

/// The entry ids of a partition's pipeline: one reply per `XADD`, or the checked
/// script's one array.
fn entry_ids(replies: &[Value], checked: bool) -> Vec<String> {
    let replies = match (checked, replies.first()) {
        (true, Some(Value::Array(ids))) => ids.as_slice(),
        _ => replies,
    };
    replies
        .iter()
        .map(|r| text(r).unwrap_or_default())
        .collect()
}

/// The checked script's refusal as [`OmsError::RedisDataLost`]; other errors unchanged.
fn epoch_error(e: OmsError, keys: &StreamKeys, partition: u16, epoch: Option<&str>) -> OmsError {
    match (&e, epoch) {
        (OmsError::Redis(re), Some(expected)) if re.code() == Some(EPOCH_REFUSAL) => {
            let found = re.detail().unwrap_or("missing").trim().to_string();
            let found = (found != "missing").then_some(found);
            OmsError::RedisDataLost(
                crate::redis::epoch::DataLoss {
                    expected: expected.to_string(),
                    keys: vec![(keys.stream_epoch(partition), found)],
                }
                .describe(),
            )
        }
        _ => e,
    }
}

/// What the import's checked `XADD`s carry beyond the chunks: the epoch the script checks
/// and the import span's W3C `traceparent` written into each entry (none: no field).
#[derive(Debug, Clone, Copy)]
struct CheckedAdd<'a> {
    epoch: &'a str,
    trace_parent: Option<&'a str>,
}

/// The error code of [`CHECKED_XADD`]'s refusal.
const EPOCH_REFUSAL: &str = "OMSEPOCH";

/// Adds a partition's chunks only if its epoch key holds the expected epoch, atomically:
/// entries are never added to a Redis that lost the data they belong with.
/// KEYS: stream, epoch key. ARGV: epoch, chunk version, import id, `traceparent` (empty:
/// none, and no field is written), then each chunk's rows.
const CHECKED_XADD: &str = r#"
local epoch = redis.call('GET', KEYS[2])
if epoch ~= ARGV[1] then
  return redis.error_reply('OMSEPOCH ' .. (epoch or 'missing'))
end
local ids = {}
local traced = ARGV[4] ~= ''
for i = 5, #ARGV do
  if traced then
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'v', ARGV[2], 'import', ARGV[3], 'rows', ARGV[i], 'traceparent', ARGV[4])
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'v', ARGV[2], 'import', ARGV[3], 'rows', ARGV[i])
  end
end
return ids
"#;

/// [`add_encoded_chunks_replicated`] over `pool`, each partition's entries added only while its epoch key
/// holds `epoch` (else [`OmsError::RedisDataLost`], nothing added to that partition): the
/// import's path, so that rows are never counted enqueued into a Redis that lost its data.
/// With `trace_parent` (the import span's W3C `traceparent`), each entry also carries it
/// in a field `traceparent`, the parent of the consumers' spans.
pub async fn add_encoded_chunks_checked_on(
    pool: &RedisPool,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[EncodedChunk],
    wait: ReplicaWait,
    epoch: &str,
    trace_parent: Option<&str>,
) -> Result<Vec<String>> {
    let checked = CheckedAdd {
        epoch,
        trace_parent,
    };
    add_on(pool, keys, import_id, chunks, wait, Some(checked)).await
}

/// Over `pool`: on a cluster the partitions' pipelines (each with its `WAIT`) run at once
/// over the shared cluster connection, so a pipeline of chunks costs about one round trip
/// per node instead of one per partition; on one Redis, one after the other on one pooled
/// connection.
async fn add_on(
    pool: &RedisPool,
    keys: &StreamKeys,
    import_id: u64,
    chunks: &[EncodedChunk],
    wait: ReplicaWait,
    checked: Option<CheckedAdd<'_>>,
) -> Result<Vec<String>> {
    let RedisPool::Cluster(cluster) = pool else {
        let mut conn = pool.get().await?;
        return add_to_partitions(&mut *conn, keys, import_id, chunks, wait, checked).await;
    };
    check_partitions(keys, chunks)?;
    let import = import_id.to_string();
    let epoch = checked.map(|c| c.epoch);
    let jobs = keys.partitions().all().filter_map(|partition| {
        let (mine, pipe) = partition_pipeline(keys, partition, &import, chunks, checked)?;
        let mut conn = cluster.clone();
        Some(async move {
            let replies = write_and_wait(&mut conn, pipe, wait)
                .await
                .map_err(|e| epoch_error(e, keys, partition, epoch))?;
            Ok::<_, OmsError>((mine, replies))
        })
    });
    let mut ids = vec![String::new(); chunks.len()];
    for (mine, replies) in futures_util::future::try_join_all(jobs).await? {
        for (&i, id) in mine.iter().zip(entry_ids(&replies, epoch.is_some())) {
            ids[i] = id;
        }
    }
    Ok(ids)
}

/// Refuses chunks routed to a partition the stream does not have.
fn check_partitions(keys: &StreamKeys, chunks: &[EncodedChunk]) -> Result<()> {
    match chunks
        .iter()
        .find(|c| c.partition >= keys.partitions().get())
    {
        Some(stray) => Err(OmsError::Config(format!(
            "a chunk for partition {} of a stream of {} partitions",
            stray.partition,
            keys.partitions().get()
        ))),
        None => Ok(()),
    }
}

/// The `XADD`s of `partition`'s chunks as one pipeline (with `checked`: one
/// [`CHECKED_XADD`] script), with the chunks' indexes; `None` when no chunk is for that
/// partition.
fn partition_pipeline(
    keys: &StreamKeys,
    partition: u16,
    import: &str,
    chunks: &[EncodedChunk],
    checked: Option<CheckedAdd<'_>>,
) -> Option<(Vec<usize>, redis::Pipeline)> {
    let mine: Vec<usize> = (0..chunks.len())
        .filter(|&i| chunks[i].partition == partition)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let stream = keys.stream(partition);
    let mut pipe = redis::pipe();
    if let Some(checked) = checked {
        let script = pipe
            .cmd("EVAL")
            .arg(CHECKED_XADD)
            .arg(2)
            .arg(&stream)
            .arg(keys.stream_epoch(partition))
            .arg(checked.epoch)
            .arg(CHUNK_VERSION)
            .arg(import)
            .arg(checked.trace_parent.unwrap_or(""));
        for &i in &mine {
            script.arg(&chunks[i].rows_json);
        }
        return Some((mine, pipe));
    }
    for &i in &mine {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("v")
            .arg(CHUNK_VERSION)
            .arg("import")
            .arg(import)
            .arg("rows")
            .arg(&chunks[i].rows_json);
    }
    Some((mine, pipe))
}

/// One consumer of the group, as `XINFO CONSUMERS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

/// One partition's figures, beside the sums of [`GroupStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionStats {
    pub partition: u16,
    pub length: u64,
    pub pending: u64,
    pub lag: Option<u64>,
    pub consumers: u64,
}

/// The stream and group figures `status`, backpressure and the gauges need: sums over
/// the partitions (lag: unknown if unknown for one of them; consumers: the most any
/// partition has; ids: the latest delivered and the oldest pending of any partition).
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
    /// Each partition's figures (one entry with one partition).
    pub partitions: Vec<PartitionStats>,
}

impl GroupStats {
    /// Entries waiting: lag when known, else the whole length (conservative).
    pub fn backlog(&self) -> u64 {
        self.lag.unwrap_or(self.length)
    }
}

/// Length, pending, lag and consumers of the `workers` group summed over the partitions
/// (zeros if none exists yet), with each partition's figures.
pub async fn group_stats<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<GroupStats> {
    let mut total = GroupStats {
        lag: Some(0),
        last_delivered_id: "0-0".into(),
        ..GroupStats::default()
    };
    for partition in keys.partitions().all() {
        let one = partition_group_stats(conn, keys, partition).await?;
        total.length += one.length;
        total.pending += one.pending;
        total.lag = match (total.lag, one.lag) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        total.consumers = total.consumers.max(one.consumers);
        if parse_stream_id(&one.last_delivered_id) > parse_stream_id(&total.last_delivered_id) {
            total.last_delivered_id = one.last_delivered_id.clone();
        }
        total.oldest_pending_id = match (total.oldest_pending_id.take(), one.oldest_pending_id) {
            (Some(a), Some(b)) => Some(if parse_stream_id(&b) < parse_stream_id(&a) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        };
        total.partitions.push(PartitionStats {
            partition,
            length: one.length,
            pending: one.pending,
            lag: one.lag,
            consumers: one.consumers,
        });
    }
    Ok(total)
}

/// Length, pending, lag and consumers of one partition's group (`partitions` left empty).
pub async fn partition_group_stats<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    partition: u16,
) -> Result<GroupStats> {
    let stream = keys.stream(partition);
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
        last_delivered_id: "0-0".into(),
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

/// Consumers of the group with their pending counts (summed over partitions) and idle
/// times (the shortest of any partition), by name.
pub async fn consumers<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<Vec<ConsumerInfo>> {
    let mut all: Vec<ConsumerInfo> = Vec::new();
    for partition in keys.partitions().all() {
        let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(keys.stream(partition))
            .arg(CONSUMER_GROUP)
            .query_async(conn)
            .await;
        let items = match reply {
            Ok(Value::Array(items)) => items,
            Ok(_) => continue,
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("no such key") => {
                continue
            }
            Err(e) if crate::error::redis_error_is_transient(&e) => return Err(e.into()),
            Err(_) => continue,
        };
        for c in items.iter().map(pairs) {
            let info = ConsumerInfo {
                name: c.get("name").and_then(text).unwrap_or_default(),
                pending: c.get("pending").and_then(int).unwrap_or(0),
                idle_ms: c.get("idle").and_then(int).unwrap_or(0),
            };
            match all.iter_mut().find(|k| k.name == info.name) {
                Some(known) => {
                    known.pending += info.pending;
                    known.idle_ms = known.idle_ms.min(info.idle_ms);
                }
                None => all.push(info),
            }
        }
    }
    Ok(all)
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
pub(crate) fn safe_trim_minid(stats: &GroupStats) -> Option<String> {
    let after_delivered = next_id(&stats.last_delivered_id)?;
    match &stats.oldest_pending_id {
        Some(pending) if parse_stream_id(pending)? < parse_stream_id(&after_delivered)? => {
            Some(pending.clone())
        }
        _ => Some(after_delivered),
    }
}

/// Trims acknowledged entries of every partition (`XTRIM MINID ~`); returns how many
/// were removed.
pub async fn trim_acknowledged<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<u64> {
    let mut removed = 0;
    for partition in keys.partitions().all() {
        let stats = partition_group_stats(conn, keys, partition).await?;
        if stats.last_delivered_id.is_empty() || stats.last_delivered_id == "0-0" {
            continue;
        }
        let Some(minid) = safe_trim_minid(&stats) else {
            continue;
        };
        let n: u64 = redis::cmd("XTRIM")
            .arg(keys.stream(partition))
            .arg("MINID")
            .arg("~")
            .arg(minid)
            .query_async(conn)
            .await?;
        removed += n;
    }
    Ok(removed)
}

/// One entry of the group's pending list (`XPENDING` extended form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The partition whose stream holds it.
    pub partition: u16,
    pub id: String,
    pub consumer: String,
    pub idle_ms: u64,
    pub deliveries: u64,
}

/// The first `count` pending entries of the group over every partition, oldest first.
pub async fn pending_entries<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    count: usize,
) -> Result<Vec<PendingEntry>> {
    let mut all = Vec::new();
    for partition in keys.partitions().all() {
        let reply: Value = redis::cmd("XPENDING")
            .arg(keys.stream(partition))
            .arg(CONSUMER_GROUP)
            .arg("-")
            .arg("+")
            .arg(count)
            .query_async(conn)
            .await?;
        let Value::Array(list) = reply else {
            continue;
        };
        all.extend(list.iter().filter_map(|e| match e {
            Value::Array(f) if f.len() >= 4 => Some(PendingEntry {
                partition,
                id: text(&f[0])?,
                consumer: text(&f[1])?,
                idle_ms: int(&f[2])?,
                deliveries: int(&f[3])?,
            }),
            _ => None,
        }));
    }
    all.sort_by_key(|e| parse_stream_id(&e.id));
    all.truncate(count);
    Ok(all)
}

/// `XCLAIM … JUSTID` of `ids` to `consumer` itself: resets their idle time without
/// counting a delivery, so other consumers do not claim entries it is still working on.
pub async fn keep_claimed<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    partition: u16,
    consumer: &str,
    ids: &[&str],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let _: Vec<String> = redis::cmd("XCLAIM")
        .arg(keys.stream(partition))
        .arg(CONSUMER_GROUP)
        .arg(consumer)
        .arg(0)
        .arg(ids)
        .arg("JUSTID")
        .query_async(conn)
        .await?;
    Ok(())
}

/// Calls `line` with the line of every row of `import_id` that an entry of the stream
/// still holds (any partition; unread, pending or acknowledged but not trimmed), reading
/// the stream in pages of [`LINES_PAGE`] entries: `producer recover` does not enqueue
/// these again. Entries of other imports are skipped without decoding their rows.
pub async fn import_lines_in_stream<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    import_id: u64,
    mut line: impl FnMut(u64),
) -> Result<()> {
    let wanted = import_id.to_string();
    for partition in keys.partitions().all() {
        let stream = keys.stream(partition);
        let mut start = "-".to_string();
        loop {
            let reply: Value = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(LINES_PAGE)
                .query_async(conn)
                .await?;
            let Value::Array(entries) = reply else { break };
            let mut last = None;
            for entry in &entries {
                let Value::Array(parts) = entry else { continue };
                let (Some(id), Some(fields)) = (parts.first().and_then(text), parts.get(1)) else {
                    continue;
                };
                let fields = pairs(fields);
                if fields.get("import").and_then(text).as_deref() == Some(wanted.as_str()) {
                    let raw: Vec<(&str, Vec<u8>)> = fields
                        .iter()
                        .filter_map(|(k, v)| Some((k.as_str(), text(v)?.into_bytes())))
                        .collect();
                    let borrowed = raw.iter().map(|(k, v)| (*k, v.as_slice()));
                    if let Ok(chunk) = crate::order::decode_chunk(&id, borrowed) {
                        chunk.rows.iter().for_each(|r| line(r.line));
                    }
                }
                last = Some(id);
            }
            match last {
                Some(id) if entries.len() == LINES_PAGE => start = format!("({id}"),
                _ => break,
            }
        }
    }
    Ok(())
}

/// Entries read per `XRANGE` by [`import_lines_in_stream`].
const LINES_PAGE: usize = 200;

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
