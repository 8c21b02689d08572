//! Bounded reads of the stream by consumers: one Lua script ([`read_new_entries`],
//! [`claim_idle_entries`]) takes entries one at a time until a byte budget is reached and
//! sends an entry above [`MAX_ENTRY_BYTES`] as a cut-down stub: whatever was written to the
//! stream, what a consumer receives in one read is bounded.

use redis::aio::ConnectionLike;
use redis::Value;

use super::reply::{int, text};
use crate::error::Result;
use crate::order::rules::MAX_ENTRY_BYTES;
use crate::redis::keys::{StreamKeys, CONSUMER_GROUP};

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
    /// The partition whose stream holds it.
    pub partition: u16,
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
pub(crate) const READ_BUDGET_BYTES: usize = 2 * 1024 * 1024;

fn raw_entries(v: &Value, partition: u16) -> Vec<RawEntry> {
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
                partition,
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
    partition: u16,
    consumer: &str,
    max_entries: usize,
    claim: Option<(u64, &str)>,
) -> Result<(String, Vec<RawEntry>)> {
    let mut invocation = READ.prepare_invoke();
    invocation
        .key(keys.stream(partition))
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
    let entries = parts
        .get(1)
        .map(|v| raw_entries(v, partition))
        .unwrap_or_default();
    Ok((cursor, entries))
}

/// New entries of partition `partition` for `consumer` (`XREADGROUP ... >`, one at a
/// time), at most `max_entries` and about [`READ_BUDGET_BYTES`]; does not block (empty
/// when nothing is new).
pub async fn read_new_entries<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    partition: u16,
    consumer: &str,
    max_entries: usize,
) -> Result<Vec<RawEntry>> {
    Ok(
        run_read_script(conn, keys, partition, consumer, max_entries, None)
            .await?
            .1,
    )
}

/// Entries of partition `partition` idle for `min_idle_ms` claimed for `consumer`
/// (`XAUTOCLAIM` from `cursor`), with their delivery counts; returns the next cursor
/// (`0-0` when the scan of that partition is complete).
pub async fn claim_idle_entries<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    partition: u16,
    consumer: &str,
    min_idle_ms: u64,
    cursor: &str,
    max_entries: usize,
) -> Result<(String, Vec<RawEntry>)> {
    run_read_script(
        conn,
        keys,
        partition,
        consumer,
        max_entries,
        Some((min_idle_ms, cursor)),
    )
    .await
}
