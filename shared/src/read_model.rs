//! The Redis read models: KPI hashes and the customer leaderboard.
//!
//! Live updates are exactly once: the consumer commits completed orders to MySQL together
//! with a `read_model_outbox` row, then calls [`apply_outbox`], a Lua script that sets the
//! marker `readmodel:applied:<outbox id>` (NX, 7 days) and, only if the marker was new,
//! applies the increments in the same atomic step. A crash before the script leaves the
//! outbox row for the sweeper; a crash after it leaves a marker that makes the retry a
//! no-op. Once the outbox row is deleted, [`retire_markers`] cuts the marker's life to two
//! minutes. Rebuilds ([`write_kpis`], [`replace_leaderboard`]) overwrite from MySQL.

use std::sync::LazyLock;

use chrono::NaiveDate;
use redis::aio::ConnectionLike;

use crate::error::Result;
use crate::keys::StreamKeys;
use crate::kpi::{aggregate, CompletedOrder, KpiFigures};
use crate::money::Cents;

/// How long an applied-outbox marker is kept while its outbox row may still exist (a MySQL
/// outage delays the row's deletion); far longer than an outbox row can wait.
pub const MARKER_TTL_SECS: u64 = 7 * 24 * 3600;

/// How long a marker is kept once its outbox row is deleted: longer than any apply already
/// in flight can take (Redis calls time out after 30 s), so none can apply the row again.
pub const RETIRED_MARKER_TTL_SECS: u64 = 120;

/// KEYS: marker, N KPI hashes, leaderboard. ARGV: ttl, N, (count, cents) × N,
/// (email, cents) × M. Mirrors `KpiFigures::average_order_value` (half up).
const APPLY_SCRIPT: &str = r#"
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local function money(c) return string.format('%d.%02d', math.floor(c / 100), c % 100) end
local n = tonumber(ARGV[2])
local a = 3
for i = 1, n do
  local key = KEYS[i + 1]
  local count = redis.call('HINCRBY', key, 'order_count', ARGV[a])
  local cents = redis.call('HINCRBY', key, 'revenue_cents', ARGV[a + 1])
  local aov = 0
  if count > 0 then aov = math.floor((2 * cents + count) / (2 * count)) end
  redis.call('HSET', key, 'revenue', money(cents), 'average_order_value', money(aov))
  a = a + 2
end
local board = KEYS[n + 2]
while a <= #ARGV do
  redis.call('ZINCRBY', board, ARGV[a + 1], ARGV[a])
  a = a + 2
end
return 1
"#;

static APPLY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPLY_SCRIPT));

/// Applies one outbox batch to the KPI hashes and the leaderboard, at most once per
/// `outbox_id`. Returns false when it had already been applied.
pub async fn apply_outbox<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    outbox_id: u64,
    orders: &[CompletedOrder],
) -> Result<bool> {
    let delta = aggregate(keys, orders);
    let mut invocation = APPLY.prepare_invoke();
    invocation.key(keys.outbox_applied(outbox_id));
    for key in delta.kpis.keys() {
        invocation.key(key);
    }
    invocation.key(keys.leaderboard());
    invocation.arg(MARKER_TTL_SECS).arg(delta.kpis.len());
    for figures in delta.kpis.values() {
        invocation.arg(figures.order_count).arg(figures.revenue.0);
    }
    for (email, cents) in &delta.leaderboard {
        invocation.arg(email).arg(cents.0);
    }
    let applied: i64 = invocation.invoke_async(conn).await?;
    Ok(applied == 1)
}

/// Shortens the markers of outbox rows that are deleted to [`RETIRED_MARKER_TTL_SECS`], so
/// markers do not pile up in Redis (one per batch, otherwise kept for a week).
pub async fn retire_markers<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    outbox_ids: &[u64],
) -> Result<()> {
    if outbox_ids.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for id in outbox_ids {
        pipe.cmd("EXPIRE")
            .arg(keys.outbox_applied(*id))
            .arg(RETIRED_MARKER_TTL_SECS)
            .ignore();
    }
    pipe.query_async::<()>(conn).await?;
    Ok(())
}

/// Overwrites one KPI hash with figures rebuilt from MySQL.
pub async fn write_kpis<C: ConnectionLike>(
    conn: &mut C,
    key: &str,
    figures: &KpiFigures,
) -> Result<()> {
    let mut cmd = redis::cmd("HSET");
    cmd.arg(key);
    for (field, value) in figures.hash_fields() {
        cmd.arg(field).arg(value);
    }
    cmd.query_async::<()>(conn).await?;
    Ok(())
}

/// Reads one KPI hash; `None` when it does not exist or is unreadable.
pub async fn read_kpis<C: ConnectionLike>(conn: &mut C, key: &str) -> Result<Option<KpiFigures>> {
    let fields: std::collections::BTreeMap<String, String> =
        redis::cmd("HGETALL").arg(key).query_async(conn).await?;
    Ok(KpiFigures::from_hash(&fields))
}

/// Replaces the leaderboard atomically with `entries` (email, total spent), and stores the
/// same set as the day's snapshot.
pub async fn replace_leaderboard<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    entries: &[(String, Cents)],
    snapshot_day: NaiveDate,
) -> Result<()> {
    let board = keys.leaderboard();
    let staging = format!("{board}:rebuilding");
    let mut pipe = redis::pipe();
    pipe.atomic().del(&staging).ignore();
    for part in entries.chunks(1000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(&staging);
        for (email, cents) in part {
            cmd.arg(cents.0).arg(email);
        }
        pipe.add_command(cmd).ignore();
    }
    if entries.is_empty() {
        pipe.del(&board).ignore();
        pipe.del(keys.leaderboard_snapshot(snapshot_day)).ignore();
    } else {
        pipe.cmd("COPY")
            .arg(&staging)
            .arg(keys.leaderboard_snapshot(snapshot_day))
            .arg("REPLACE")
            .ignore();
        pipe.rename(&staging, &board).ignore();
    }
    pipe.query_async::<()>(conn).await?;
    Ok(())
}

/// The top `limit` of the leaderboard as (email, cents), highest first; 0 for all.
pub async fn read_leaderboard<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    limit: isize,
) -> Result<Vec<(String, Cents)>> {
    let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
        .arg(keys.leaderboard())
        .arg(0)
        .arg(limit - 1)
        .arg("WITHSCORES")
        .query_async(conn)
        .await?;
    // Scores are whole cents well below 2^53, so the conversion is exact.
    Ok(entries
        .into_iter()
        .map(|(e, s)| (e, Cents(s.round() as i64)))
        .collect())
}
