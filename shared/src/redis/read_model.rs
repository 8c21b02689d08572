//! The Redis read models: KPI hashes and the customer leaderboard, kept exactly equal to
//! MySQL by live increments and by rebuilds that may run at any moment.
//!
//! **Live increments, exactly once.** The consumer commits completed orders to MySQL with
//! a `read_model_outbox` row (ids in commit order, without gaps: see `store::outbox`),
//! then calls [`apply_outbox`]: one Lua script that checks the row is not applied yet,
//! applies its increments and records it as applied, atomically. Redis remembers applied
//! rows as `applied_through` (every id up to it) plus the sorted set of applied ids above
//! it; the set shrinks as the gaps below it close, and [`trim_applied`] raises
//! `applied_through` to a watermark read from MySQL ([`crate::store::outbox::applied_floor`]).
//! No record expires, so an apply arriving after a stall of any length is a no-op, and the
//! memory is bounded by the rows applied since the oldest unapplied one.
//!
//! **Rebuilds fenced against the outbox.** A rebuild ([`Rebuild`]) takes a lease
//! ([`Rebuild::begin`]); while it exists, every apply also appends its increments to the
//! rebuild log. Then it opens one MySQL snapshot and reads, from that snapshot, the new
//! values and the outbox (`through`: every row up to it is in the values; `rows`: those
//! not deleted yet). Last, one Lua script ([`Rebuild::finish_kpis`],
//! [`Rebuild::finish_leaderboard`]) writes value − (rows of the snapshot not applied yet:
//! their apply is still to come) + (logged applies of rows above `through`: applied but
//! not in the snapshot), and ends the lease. ARCHITECTURE.md "Exactly-once read models"
//! argues why each outbox row then counts exactly once.
//!
//! **MySQL going back in time.** Redis also keeps `applied_max` (the highest id applied)
//! and a `generation`. A MySQL restored from a backup, or a lagging replica promoted,
//! would hand out ids Redis records as applied, and the apply would skip them. Every
//! applied id was committed, so a sequence below `applied_max` proves the rewind
//! ([`AppliedMark`], `store::outbox::history_rewound`); `reconcile --fix` then rebuilds
//! everything and resets the record in one script ([`Rebuild::finish_with_reset`]),
//! incrementing the generation.
//!
//! Leaderboard rule: its members are the customers whose `total_spent` is above zero (a
//! free order adds no member); both the live path and the rebuilds apply it.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use redis::aio::ConnectionLike;
use serde::Serialize;

use crate::error::{OmsError, Result};
use crate::kpi::{aggregate, CompletedOrder, KpiFigures};
use crate::money::Cents;
use crate::redis::conn::{write_and_wait, RedisConnection, RedisPool, ReplicaWait};
use crate::redis::keys::ReadModelKeys;
use crate::store::outbox::{OutboxSnapshot, Snapshot};
use sqlx::{MySqlConnection, MySqlPool};

/// How long a rebuild's lease lasts unless renewed. The rebuilding process renews it
/// every third of it ([`Rebuild::begin`] starts a renewal task), so a rebuild that is slow
/// but running keeps its fence for as long as it works; a process that stops (frozen,
/// killed) stops renewing, loses the lease within this time and writes nothing.
pub(crate) const REBUILD_LEASE: Duration = Duration::from_secs(60);

/// The lease actually used: [`REBUILD_LEASE`], or `OMS_REBUILD_LEASE_MS` (tests shorten
/// it to hold a rebuild past it in seconds rather than minutes).
pub fn rebuild_lease() -> Duration {
    std::env::var("OMS_REBUILD_LEASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms >= 30)
        .map_or(REBUILD_LEASE, Duration::from_millis)
}

/// Lua helpers shared by the scripts: money formatting (half-up average, as
/// `KpiFigures::average_order_value`) and the applied-row record.
const LUA_COMMON: &str = r#"
local function money(c) return string.format('%d.%02d', math.floor(c / 100), c % 100) end
local function write_kpi(key, count, cents)
  local aov = 0
  if count > 0 then aov = math.floor((2 * cents + count) / (2 * count)) end
  redis.call('HSET', key, 'order_count', string.format('%d', count),
    'revenue_cents', string.format('%d', cents), 'revenue', money(cents),
    'average_order_value', money(aov))
end
local function id_str(id) return string.format('%d', id) end
"#;

/// KEYS: applied_through, applied set, rebuild lease, rebuild log, applied_max,
/// generation, N KPI hashes, leaderboard. ARGV: outbox id, N, (count, cents) × N,
/// (email, cents) × M. Returns {applied (1) or already applied (0), generation,
/// applied_max}.
const APPLY_BODY: &str = r#"
local id = tonumber(ARGV[1])
local through = tonumber(redis.call('GET', KEYS[1]) or '0')
local generation = tonumber(redis.call('GET', KEYS[6]) or '0')
local max = tonumber(redis.call('GET', KEYS[5]) or '0')
if id <= through or redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  -- A write all the same, so that a WAIT after it also covers the earlier apply (made
  -- by another client that may have died before its own WAIT).
  redis.call('SET', KEYS[1], id_str(through))
  return {0, generation, max}
end
if id > max then
  max = id
  redis.call('SET', KEYS[5], id_str(max))
end
local logging = redis.call('EXISTS', KEYS[3]) == 1
local kpis, board = {}, {}
local n = tonumber(ARGV[2])
local a = 3
for i = 1, n do
  local key = KEYS[i + 6]
  local count = redis.call('HINCRBY', key, 'order_count', ARGV[a])
  local cents = redis.call('HINCRBY', key, 'revenue_cents', ARGV[a + 1])
  write_kpi(key, count, cents)
  if logging then kpis[key] = {ARGV[a], ARGV[a + 1]} end
  a = a + 2
end
local lb = KEYS[n + 7]
while a <= #ARGV do
  if tonumber(ARGV[a + 1]) ~= 0 then redis.call('ZINCRBY', lb, ARGV[a + 1], ARGV[a]) end
  if logging then board[ARGV[a]] = ARGV[a + 1] end
  a = a + 2
end
if logging then
  redis.call('RPUSH', KEYS[4], cjson.encode({i = ARGV[1], k = kpis, b = board}))
end
if id == through + 1 then
  through = id
  while redis.call('ZSCORE', KEYS[2], id_str(through + 1)) do
    through = through + 1
    redis.call('ZREM', KEYS[2], id_str(through))
  end
  redis.call('SET', KEYS[1], id_str(through))
else
  redis.call('ZADD', KEYS[2], id, ARGV[1])
end
return {1, generation, max}
"#;

/// KEYS: applied_through, applied set, generation. ARGV: floor (every id up to it is
/// applied), the generation read before the floor. A floor read under another
/// generation (before a reset) is ignored: returns -1.
const TRIM_BODY: &str = r#"
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[2]) then return -1 end
local through = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if floor > through then through = floor end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', through)
while redis.call('ZSCORE', KEYS[2], id_str(through + 1)) do
  through = through + 1
  redis.call('ZREM', KEYS[2], id_str(through))
end
redis.call('SET', KEYS[1], id_str(through))
return through
"#;

/// KEYS: lease, log. ARGV: token, lease ms.
const BEGIN_SCRIPT: &str = r#"
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('DEL', KEYS[2])
return 1
"#;

/// KEYS: lease. ARGV: token, lease ms. Extends the lease if it is still ours.
const RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#;

/// KEYS: lease, log. ARGV: token. Ends the lease if it is still ours.
const ABANDON_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
"#;

/// KEYS: lease, log, applied_through, applied set, leaderboard, staging, snapshot key,
/// applied_max, generation, T KPI hashes. ARGV: token, through, board ('1' to rebuild
/// the leaderboard), reset ('1' to reset the applied record to the snapshot), T,
/// (count, cents, delete-when-zero) × T, R, R outbox entries (JSON, as logged).
const FINISH_BODY: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('OMS_LEASE_LOST the rebuild lease expired before its write')
end
local snap = tonumber(ARGV[2])
local board_on = ARGV[3] == '1'
local reset = ARGV[4] == '1'
local t = tonumber(ARGV[5])
local fig, del = {}, {}
local a = 6
for i = 1, t do
  local key = KEYS[9 + i]
  fig[key] = {tonumber(ARGV[a]), tonumber(ARGV[a + 1])}
  del[key] = ARGV[a + 2] == '1'
  a = a + 3
end
local through = tonumber(redis.call('GET', KEYS[3]) or '0')
-- A reset makes every row of the snapshot applied (its values count them all), so none
-- is subtracted; the record of the history that went away counts for nothing.
local function applied(id)
  return reset or id <= through or redis.call('ZSCORE', KEYS[4], id_str(id))
end
local function adjust(e, sign)
  for key, v in pairs(e.k) do
    local f = fig[key]
    if f then
      f[1] = f[1] + sign * tonumber(v[1])
      f[2] = f[2] + sign * tonumber(v[2])
    end
  end
  if board_on then
    for email, c in pairs(e.b) do
      local d = sign * tonumber(c)
      if d ~= 0 then redis.call('ZINCRBY', KEYS[6], d, email) end
    end
  end
end
local r = tonumber(ARGV[a])
a = a + 1
for i = 1, r do
  local e = cjson.decode(ARGV[a])
  a = a + 1
  if not applied(tonumber(e.i)) then adjust(e, -1) end
end
local logged_above = {}
for _, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local e = cjson.decode(raw)
  if tonumber(e.i) > snap then
    adjust(e, 1)
    table.insert(logged_above, tonumber(e.i))
  end
end
if reset then
  -- Applied from now on: every id of the snapshot, and the rows above it applied (and
  -- logged) during the lease; nothing else. A new generation tells consumers.
  redis.call('DEL', KEYS[4])
  local max = snap
  for _, id in ipairs(logged_above) do
    redis.call('ZADD', KEYS[4], id, id_str(id))
    if id > max then max = id end
  end
  local upto = snap
  while redis.call('ZSCORE', KEYS[4], id_str(upto + 1)) do
    upto = upto + 1
    redis.call('ZREM', KEYS[4], id_str(upto))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', upto)
  redis.call('SET', KEYS[3], id_str(upto))
  redis.call('SET', KEYS[8], id_str(max))
  redis.call('INCR', KEYS[9])
end
for key, f in pairs(fig) do
  if del[key] and f[1] == 0 and f[2] == 0 then
    redis.call('DEL', key)
  else
    write_kpi(key, f[1], f[2])
  end
end
if board_on then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '0')
  if redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('RENAME', KEYS[6], KEYS[5])
    redis.call('PERSIST', KEYS[5])
    redis.call('COPY', KEYS[5], KEYS[7], 'REPLACE')
  else
    redis.call('DEL', KEYS[5], KEYS[7])
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"#;

static APPLY_SOURCE: LazyLock<String> = LazyLock::new(|| format!("{LUA_COMMON}{APPLY_BODY}"));
static APPLY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(&APPLY_SOURCE));
static TRIM: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{LUA_COMMON}{TRIM_BODY}")));
static BEGIN: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(BEGIN_SCRIPT));
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(RENEW_SCRIPT));
static ABANDON: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ABANDON_SCRIPT));
static FINISH: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(&format!("{LUA_COMMON}{FINISH_BODY}")));

/// What Redis says of its record of applied outbox rows: `applied_max`, the highest id
/// applied under `generation` (incremented by each reset of the record, 0 before any).
/// A consumer keeps the highest reading of the current generation as a lower bound of
/// Redis's `applied_max` ([`AppliedMark::merge`]), and checks each new outbox id against
/// it ([`AppliedMark::rewound_by`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedMark {
    pub generation: u64,
    pub applied_max: u64,
}

impl AppliedMark {
    /// The mark after a new reading: the higher `applied_max` within one generation; a
    /// reading of another generation replaces it (a reset lowered `applied_max` on
    /// purpose, or Redis lost its record: either way the old bound no longer holds).
    pub fn merge(self, reading: AppliedMark) -> AppliedMark {
        if reading.generation != self.generation {
            reading
        } else {
            AppliedMark {
                generation: self.generation,
                applied_max: self.applied_max.max(reading.applied_max),
            }
        }
    }

    /// Whether MySQL handing out the outbox id `new_id` proves it went back in time.
    pub fn rewound_by(&self, new_id: u64) -> bool {
        crate::store::outbox::history_rewound(new_id.saturating_sub(1), self.applied_max)
    }
}

/// What one apply did: whether it applied the row now (false: it had been already) and
/// the mark Redis returned with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub now: bool,
    pub mark: AppliedMark,
}

/// Applies one outbox batch to the KPI hashes and the leaderboard, at most once per
/// `outbox_id`, whenever it comes.
pub async fn apply_outbox<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    outbox_id: u64,
    orders: &[CompletedOrder],
) -> Result<Applied> {
    apply_outbox_replicated(conn, keys, outbox_id, orders, ReplicaWait::NONE).await
}

/// [`apply_outbox`], then `WAIT` for `wait.replicas` replicas on the same connection (the
/// script and the `WAIT` in one pipeline): when it returns, the increments (or, for a
/// batch applied before, the record that it was) are on that many replicas, so the
/// outbox row may leave MySQL; a failover cannot lose them any more.
pub async fn apply_outbox_replicated<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    outbox_id: u64,
    orders: &[CompletedOrder],
    wait: ReplicaWait,
) -> Result<Applied> {
    let delta = aggregate(keys, orders);
    let mut script_keys = vec![
        keys.outbox_applied_through(),
        keys.outbox_applied_above(),
        keys.rebuild_lease(),
        keys.rebuild_log(),
        keys.outbox_applied_max(),
        keys.outbox_generation(),
    ];
    script_keys.extend(delta.kpis.keys().cloned());
    script_keys.push(keys.leaderboard());
    use redis::ToRedisArgs;
    let mut args: Vec<Vec<u8>> = Vec::new();
    args.extend(outbox_id.to_redis_args());
    args.extend(delta.kpis.len().to_redis_args());
    for figures in delta.kpis.values() {
        args.extend(figures.order_count.to_redis_args());
        args.extend(figures.revenue.0.to_redis_args());
    }
    for (email, cents) in &delta.leaderboard {
        args.extend(email.to_redis_args());
        args.extend(cents.0.to_redis_args());
    }
    let reply: (i64, u64, u64) = if wait.replicas == 0 {
        let mut invocation = APPLY.prepare_invoke();
        for key in &script_keys {
            invocation.key(key);
        }
        for arg in &args {
            invocation.arg(arg.as_slice());
        }
        invocation.invoke_async(conn).await?
    } else {
        let mut pipe = redis::pipe();
        let cmd = pipe
            .cmd("EVAL")
            .arg(APPLY_SOURCE.as_str())
            .arg(script_keys.len())
            .arg(&script_keys);
        for arg in &args {
            cmd.arg(arg.as_slice());
        }
        let replies = write_and_wait(conn, pipe, wait).await?;
        match replies.first() {
            Some(value) => {
                redis::from_redis_value(value.clone()).map_err(|e| OmsError::Redis(e.into()))?
            }
            None => {
                return Err(OmsError::Inconsistent(
                    "the read-model script returned nothing".into(),
                ))
            }
        }
    };
    Ok(Applied {
        now: reply.0 == 1,
        mark: AppliedMark {
            generation: reply.1,
            applied_max: reply.2,
        },
    })
}

/// Redis's applied mark and MySQL's outbox sequence, read in that order: in a sane world
/// every id applied when Redis is read was committed by then, so is at most the sequence
/// read after it, and [`HistoryReading::rewound`] never fires wrongly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryReading {
    pub mark: AppliedMark,
    pub sequence: u64,
}

impl HistoryReading {
    /// Reads Redis first, then MySQL (see the type's documentation).
    pub async fn read<C: ConnectionLike>(
        conn: &mut C,
        keys: &ReadModelKeys,
        pool: &sqlx::MySqlPool,
    ) -> Result<HistoryReading> {
        let mark = read_applied_mark(conn, keys).await?;
        let sequence = crate::store::outbox::last_id(pool).await?;
        Ok(HistoryReading { mark, sequence })
    }

    /// [`OmsError::HistoryRewound`] when MySQL went back in time.
    pub fn rewound(&self) -> Option<OmsError> {
        crate::store::outbox::history_rewound(self.sequence, self.mark.applied_max).then_some(
            OmsError::HistoryRewound {
                sequence: self.sequence,
                applied: self.mark.applied_max,
            },
        )
    }
}

/// Redis's [`AppliedMark`] now.
pub async fn read_applied_mark<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
) -> Result<AppliedMark> {
    let (generation, applied_max): (Option<u64>, Option<u64>) = redis::pipe()
        .get(keys.outbox_generation())
        .get(keys.outbox_applied_max())
        .query_async(conn)
        .await?;
    Ok(AppliedMark {
        generation: generation.unwrap_or(0),
        applied_max: applied_max.unwrap_or(0),
    })
}

/// Whether outbox row `outbox_id` has reached Redis.
pub async fn is_applied<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    outbox_id: u64,
) -> Result<bool> {
    let (through, score): (Option<u64>, Option<f64>) = redis::pipe()
        .get(keys.outbox_applied_through())
        .zscore(keys.outbox_applied_above(), outbox_id)
        .query_async(conn)
        .await?;
    Ok(through.unwrap_or(0) >= outbox_id || score.is_some())
}

/// Raises `applied_through` to `floor` (every outbox id up to it is applied, from
/// [`crate::store::outbox::applied_floor`]) and drops the set's members up to it.
/// `generation` is the record's generation read *before* the floor: if a reset came in
/// between, the floor belongs to the history that went away and nothing changes.
/// Returns the new `applied_through`, or `None` when the generation had changed.
pub async fn trim_applied<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
    floor: u64,
    generation: u64,
) -> Result<Option<u64>> {
    let through: i64 = TRIM
        .key(keys.outbox_applied_through())
        .key(keys.outbox_applied_above())
        .key(keys.outbox_generation())
        .arg(floor)
        .arg(generation)
        .invoke_async(conn)
        .await?;
    Ok(u64::try_from(through).ok())
}

/// One outbox row as the rebuild script reads it (the format the apply script logs).
#[derive(Debug, Serialize)]
struct OutboxEntry {
    i: String,
    k: BTreeMap<String, [String; 2]>,
    b: BTreeMap<String, String>,
}

fn outbox_entry(keys: &ReadModelKeys, id: u64, payload: &str) -> Result<String> {
    let orders: Vec<CompletedOrder> = serde_json::from_str(payload)
        .map_err(|e| OmsError::Inconsistent(format!("outbox row {id} is unreadable: {e}")))?;
    let delta = aggregate(keys, &orders);
    let entry = OutboxEntry {
        i: id.to_string(),
        k: delta
            .kpis
            .iter()
            .map(|(key, f)| {
                (
                    key.clone(),
                    [f.order_count.to_string(), f.revenue.0.to_string()],
                )
            })
            .collect(),
        b: delta
            .leaderboard
            .iter()
            .map(|(email, c)| (email.clone(), c.0.to_string()))
            .collect(),
    };
    Ok(serde_json::to_string(&entry).expect("outbox entry serializes"))
}

/// A rebuild of read models from a MySQL snapshot, fenced against the outbox (see the
/// module documentation). Only one runs at a time; [`Rebuild::begin`] waits for the lease.
/// While it exists, a task renews its lease; the finish script still checks the lease is
/// this rebuild's, so a rebuild whose process stopped past the lease writes nothing.
pub struct Rebuild {
    token: String,
    keys: ReadModelKeys,
    lease: Duration,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for Rebuild {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Steps 1 and 2 of a fenced rebuild done ([`Rebuild::read`]): the lease is held, and
/// `values` and `outbox` were read in one MySQL snapshot. Finish with one of
/// [`Rebuild::finish_kpis`], [`Rebuild::finish_leaderboard`], [`Rebuild::finish`],
/// [`Rebuild::finish_with_reset`].
pub struct FencedRead<T> {
    pub rebuild: Rebuild,
    pub values: T,
    pub outbox: OutboxSnapshot,
}

impl Rebuild {
    /// Steps 1 and 2 of every fenced rebuild, in their order: takes the lease
    /// ([`Rebuild::begin`]), then runs `read` and reads the outbox in one MySQL snapshot.
    /// A failed read gives the lease back at once.
    pub async fn read<T, E>(
        redis: &RedisPool,
        keys: &ReadModelKeys,
        pool: &MySqlPool,
        read: impl AsyncFnOnce(&mut MySqlConnection) -> std::result::Result<T, E>,
    ) -> std::result::Result<FencedRead<T>, E>
    where
        E: From<OmsError>,
    {
        let rebuild = Rebuild::begin(redis, keys).await?;
        let taken = async {
            let mut snapshot = Snapshot::begin(pool).await?;
            let values = read(snapshot.conn()).await?;
            let outbox = snapshot.outbox().await?;
            snapshot.finish().await?;
            Ok::<_, E>((values, outbox))
        }
        .await;
        match taken {
            Ok((values, outbox)) => Ok(FencedRead {
                rebuild,
                values,
                outbox,
            }),
            Err(e) => {
                if let Ok(mut conn) = redis.get().await {
                    let _ = rebuild.abandon(&mut *conn).await;
                }
                Err(e)
            }
        }
    }

    /// Takes the rebuild lease, waiting up to the lease ([`rebuild_lease`]) for another
    /// rebuild to end, and starts renewing it every third of the lease on a connection of
    /// its own from `redis`. Take the MySQL snapshot only after this returns.
    pub async fn begin(redis: &RedisPool, keys: &ReadModelKeys) -> Result<Rebuild> {
        let lease = rebuild_lease();
        let token = format!("{:016x}", rand::random::<u64>());
        let started = Instant::now();
        let mut conn = redis.get().await?;
        loop {
            let taken: i64 = BEGIN
                .key(keys.rebuild_lease())
                .key(keys.rebuild_log())
                .arg(&token)
                .arg(lease.as_millis() as u64)
                .invoke_async(&mut *conn)
                .await?;
            if taken == 1 {
                break;
            }
            if started.elapsed() > lease {
                return Err(OmsError::Contention(format!(
                    "another rebuild has held {} for over {} ms",
                    keys.rebuild_lease(),
                    lease.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let renewal = tokio::spawn(renew(conn, keys.rebuild_lease(), token.clone(), lease));
        Ok(Rebuild {
            token,
            keys: keys.clone(),
            lease,
            renewal,
        })
    }

    /// Ends the lease without writing anything (the rebuild failed half-way).
    pub(crate) async fn abandon<C: ConnectionLike>(self, conn: &mut C) -> Result<()> {
        self.renewal.abort();
        ABANDON
            .key(self.keys.rebuild_lease())
            .key(self.keys.rebuild_log())
            .arg(&self.token)
            .invoke_async::<i64>(conn)
            .await?;
        Ok(())
    }

    /// The finish script's invocation.
    fn invocation(
        &self,
        outbox: &OutboxSnapshot,
        staging: &str,
        snapshot_day: NaiveDate,
        kpis: &[(String, KpiFigures, bool)],
        board: bool,
        reset: bool,
    ) -> Result<redis::ScriptInvocation<'static>> {
        let keys = &self.keys;
        let mut inv = FINISH.prepare_invoke();
        inv.key(keys.rebuild_lease())
            .key(keys.rebuild_log())
            .key(keys.outbox_applied_through())
            .key(keys.outbox_applied_above())
            .key(keys.leaderboard())
            .key(staging)
            .key(keys.leaderboard_snapshot(snapshot_day))
            .key(keys.outbox_applied_max())
            .key(keys.outbox_generation());
        for (key, _, _) in kpis {
            inv.key(key);
        }
        inv.arg(&self.token)
            .arg(outbox.through)
            .arg(if board { "1" } else { "0" })
            .arg(if reset { "1" } else { "0" })
            .arg(kpis.len());
        for (_, f, delete_when_zero) in kpis {
            inv.arg(f.order_count)
                .arg(f.revenue.0)
                .arg(if *delete_when_zero { "1" } else { "0" });
        }
        inv.arg(outbox.rows.len());
        for (id, payload) in &outbox.rows {
            inv.arg(outbox_entry(keys, *id, payload)?);
        }
        Ok(inv)
    }

    /// Writes KPI hashes rebuilt from the snapshot `outbox` comes from: (key, figures,
    /// delete the hash when it ends up all zeros), and ends the lease.
    pub async fn finish_kpis<C: ConnectionLike>(
        self,
        conn: &mut C,
        outbox: &OutboxSnapshot,
        kpis: &[(String, KpiFigures, bool)],
    ) -> Result<()> {
        self.finish(conn, outbox, kpis, None).await
    }

    /// Replaces the leaderboard with `entries` (email, total spent) from the snapshot
    /// `outbox` comes from, stores it as the `snapshot_day` snapshot, and ends the lease.
    pub async fn finish_leaderboard<C: ConnectionLike>(
        self,
        conn: &mut C,
        outbox: &OutboxSnapshot,
        entries: &[(String, Cents)],
        snapshot_day: NaiveDate,
    ) -> Result<()> {
        self.finish(conn, outbox, &[], Some((entries, snapshot_day)))
            .await
    }

    /// Both at once, in one script: the KPI hashes `kpis` and, if given, the leaderboard.
    pub async fn finish<C: ConnectionLike>(
        self,
        conn: &mut C,
        outbox: &OutboxSnapshot,
        kpis: &[(String, KpiFigures, bool)],
        board: Option<(&[(String, Cents)], NaiveDate)>,
    ) -> Result<()> {
        self.write(conn, outbox, kpis, board, false).await
    }

    /// [`Rebuild::finish`] after MySQL went back in time, in the same script: the record
    /// of applied rows is reset to the snapshot (`applied_through` := its `through`, the
    /// set := the rows above it applied during the lease, `applied_max` := the highest
    /// of those) and the generation incremented. `kpis` and `board` must be *every*
    /// read-model key: no pending row of the snapshot is subtracted (the reset makes them
    /// applied), so a key left out would miss them for good.
    pub async fn finish_with_reset<C: ConnectionLike>(
        self,
        conn: &mut C,
        outbox: &OutboxSnapshot,
        kpis: &[(String, KpiFigures, bool)],
        board: (&[(String, Cents)], NaiveDate),
    ) -> Result<()> {
        self.write(conn, outbox, kpis, Some(board), true).await
    }

    async fn write<C: ConnectionLike>(
        self,
        conn: &mut C,
        outbox: &OutboxSnapshot,
        kpis: &[(String, KpiFigures, bool)],
        board: Option<(&[(String, Cents)], NaiveDate)>,
        reset: bool,
    ) -> Result<()> {
        slow_rebuild_point().await;
        let staging = self.keys.rebuild_staging(&self.token);
        let day = board.map_or_else(|| chrono::Utc::now().date_naive(), |(_, d)| d);
        if let Some((entries, _)) = board {
            // The staging set is private to this rebuild: filled before the script, which
            // adjusts it to the outbox and renames it over the leaderboard.
            let mut pipe = redis::pipe();
            pipe.del(&staging).ignore();
            for part in entries.chunks(1000) {
                let mut cmd = redis::cmd("ZADD");
                cmd.arg(&staging);
                for (email, cents) in part {
                    cmd.arg(cents.0).arg(email);
                }
                pipe.add_command(cmd).ignore();
            }
            pipe.pexpire(&staging, self.lease.as_millis() as i64)
                .ignore();
            pipe.query_async::<()>(conn).await?;
        }
        let inv = self.invocation(outbox, &staging, day, kpis, board.is_some(), reset)?;
        let written = inv.invoke_async::<i64>(conn).await;
        self.renewal.abort();
        written.map_err(|e| lease_lost(e, self.lease))?;
        Ok(())
    }
}

/// Test hook for the lease tests: with `OMS_TEST_REBUILD_BUSY_MS` set, a rebuild works
/// that long more before its write, as a rebuild over a large database would: the process
/// runs (and renews its lease) all the while.
async fn slow_rebuild_point() {
    if let Some(ms) = std::env::var("OMS_TEST_REBUILD_BUSY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        tracing::warn!(ms, "holding the rebuild before its write (test hook)");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The renewal task: extends the lease every third of it while it is still ours; ends
/// when it is not (expired while the process was stopped, or ended by the finish).
async fn renew(mut conn: RedisConnection, lease_key: String, token: String, lease: Duration) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let renewed: redis::RedisResult<i64> = RENEW
            .key(&lease_key)
            .arg(&token)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut *conn)
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(lease = %lease_key, "the rebuild lease is no longer ours; its write will be refused");
                return;
            }
            // A failed renewal is retried on the next tick; the lease may still hold.
            Err(e) => {
                tracing::warn!(lease = %lease_key, error = %e, "could not renew the rebuild lease")
            }
        }
    }
}

fn lease_lost(e: redis::RedisError, lease: Duration) -> OmsError {
    if e.to_string().contains("OMS_LEASE_LOST") {
        OmsError::Contention(format!(
            "the rebuild lost its {} ms lease (its process stopped renewing it for that \
             long); nothing was written, run it again",
            lease.as_millis()
        ))
    } else {
        e.into()
    }
}

/// Reads one KPI hash; `None` when it does not exist or is unreadable.
pub async fn read_kpis<C: ConnectionLike>(conn: &mut C, key: &str) -> Result<Option<KpiFigures>> {
    let fields: std::collections::BTreeMap<String, String> =
        redis::cmd("HGETALL").arg(key).query_async(conn).await?;
    Ok(KpiFigures::from_hash(&fields))
}

/// The top `limit` of the leaderboard as (email, cents), highest first; 0 for all.
pub async fn read_leaderboard<C: ConnectionLike>(
    conn: &mut C,
    keys: &ReadModelKeys,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(generation: u64, applied_max: u64) -> AppliedMark {
        AppliedMark {
            generation,
            applied_max,
        }
    }

    #[test]
    fn a_new_id_not_above_the_applied_mark_proves_a_rewind() {
        let h = mark(0, 20);
        // Sequence 10 restored: the next ids 11..=20 were applied in the old history.
        assert!(h.rewound_by(11));
        assert!(h.rewound_by(20));
        assert!(!h.rewound_by(21));
        // Nothing known yet: never a rewind.
        assert!(!AppliedMark::default().rewound_by(1));
    }

    #[test]
    fn the_mark_grows_within_a_generation_and_is_replaced_by_another() {
        let h = mark(3, 20);
        assert_eq!(h.merge(mark(3, 15)), mark(3, 20), "an older reading");
        assert_eq!(h.merge(mark(3, 25)), mark(3, 25));
        // A reset to sequence 10: the old bound must go, else id 11 would look rewound.
        let after_reset = h.merge(mark(4, 10));
        assert_eq!(after_reset, mark(4, 10));
        assert!(!after_reset.rewound_by(11));
        // Redis lost its record (generation back to 0): the reading replaces the mark.
        assert_eq!(h.merge(mark(0, 0)), mark(0, 0));
    }
}
