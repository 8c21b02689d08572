//! `producer leaderboard update|show [--limit N]`: the customers who spent the most.
//!
//! `update` rebuilds the sorted set `P leaderboard` (member email, score cents) from
//! `customers.total_spent` (customers with `total_spent > 0`) in one MySQL snapshot, as a
//! [`Rebuild`] fenced against the outbox (exact even while consumers run), stores the same
//! set as today's snapshot `P leaderboard:YYYY-MM-DD` (UTC), and prints the top N
//! (default 10, 0 for all) of the snapshot. `show` prints the top N as Redis holds it.
//!
//! `--json` prints a [`LeaderboardReport`]:
//! ```json
//! {"source": "mysql", "key": "oms:leaderboard",
//!  "snapshot_key": "oms:leaderboard:2026-03-07", "customers": 1234,
//!  "top": [{"rank": 1, "name": "Ann", "email": "ann@example.com", "orders_count": 3,
//!           "total_spent": "120.50", "total_spent_cents": 12050}]}
//! ```
//! `snapshot_key` is null for `show`; `customers` is the number of members ranked.
//! Ties rank like Redis does (`ZREVRANGE`: equal scores by email, descending).

use crate::Result;
use chrono::{NaiveDate, Utc};
use oms_shared::config::ConnectionConfig;
use oms_shared::money::Cents;
use oms_shared::redis::keys::ReadModelKeys;
use oms_shared::redis::read_model::{read_leaderboard, FencedRead, Rebuild};
use oms_shared::store::reports::{self, LeaderboardCustomer};
use serde::Serialize;
use sqlx::MySqlConnection;

/// One ranked customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LeaderboardEntry {
    pub rank: usize,
    pub name: String,
    pub email: String,
    pub orders_count: i64,
    pub total_spent: String,
    pub total_spent_cents: i64,
}

/// What `leaderboard update` / `show` print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LeaderboardReport {
    /// `mysql` (update) or `redis` (show).
    pub source: &'static str,
    pub key: String,
    pub snapshot_key: Option<String>,
    pub customers: usize,
    pub top: Vec<LeaderboardEntry>,
}

/// Sorts like `ZREVRANGE`: score descending, then member descending (byte order).
pub fn redis_order(customers: &mut [LeaderboardCustomer]) {
    customers.sort_by(|a, b| {
        b.total_spent
            .cmp(&a.total_spent)
            .then_with(|| b.email.as_bytes().cmp(a.email.as_bytes()))
    });
}

/// Rebuilds the leaderboard and the `day` snapshot from MySQL; returns the top `limit`.
pub async fn update_on(
    conn: &ConnectionConfig,
    limit: usize,
    day: NaiveDate,
) -> Result<LeaderboardReport> {
    let keys = conn.read_model_keys();
    let redis = crate::connect_redis(conn).await?;
    let pool = crate::connect_mysql(conn).await?;
    crate::refuse_if_rewound(&pool, &redis, &keys).await?;
    let read = Rebuild::read(&redis, &keys, &pool, async |conn: &mut MySqlConnection| {
        Ok::<_, crate::ReportError>(reports::leaderboard_customers(conn).await?)
    })
    .await;
    pool.close().await;
    let FencedRead {
        rebuild,
        values: mut customers,
        outbox,
    } = read?;
    let mut rc = redis.get().await?;
    redis_order(&mut customers);
    let entries: Vec<(String, Cents)> = customers
        .iter()
        .map(|c| (c.email.clone(), c.total_spent))
        .collect();
    rebuild
        .finish_leaderboard(&mut *rc, &outbox, &entries, day)
        .await?;
    let shown = if limit == 0 { customers.len() } else { limit };
    Ok(LeaderboardReport {
        source: "mysql",
        key: keys.leaderboard(),
        snapshot_key: Some(keys.leaderboard_snapshot(day)),
        customers: customers.len(),
        top: customers
            .iter()
            .take(shown)
            .enumerate()
            .map(|(i, c)| LeaderboardEntry {
                rank: i + 1,
                name: c.name.clone(),
                email: c.email.clone(),
                orders_count: c.orders_count,
                total_spent: c.total_spent.to_string(),
                total_spent_cents: c.total_spent.0,
            })
            .collect(),
    })
}

/// `leaderboard update`: [`update_on`] today (UTC).
pub async fn update(conn: &ConnectionConfig, limit: usize) -> Result<LeaderboardReport> {
    update_on(conn, limit, Utc::now().date_naive()).await
}

/// `leaderboard show`: the top `limit` in Redis, with names and order counts from MySQL.
pub async fn show(conn: &ConnectionConfig, limit: usize) -> Result<LeaderboardReport> {
    let keys = conn.read_model_keys();
    let redis = crate::connect_redis(conn).await?;
    let pool = crate::connect_mysql(conn).await?;
    let report = show_from(&redis, &pool, &keys, limit, None).await;
    pool.close().await;
    report
}

/// [`show`] over open pools, of the live board or (with `snapshot`) that day's snapshot
/// (the HTTP API's entry point).
pub async fn show_from(
    redis: &oms_shared::redis::conn::RedisPool,
    pool: &sqlx::MySqlPool,
    keys: &ReadModelKeys,
    limit: usize,
    snapshot: Option<NaiveDate>,
) -> Result<LeaderboardReport> {
    let key = match snapshot {
        Some(day) => keys.leaderboard_snapshot(day),
        None => keys.leaderboard(),
    };
    let mut rc = redis.get().await?;
    let customers: u64 = redis::cmd("ZCARD").arg(&key).query_async(&mut *rc).await?;
    let top = match snapshot {
        None => read_leaderboard(&mut *rc, keys, limit as isize).await?,
        Some(_) => {
            let entries: Vec<(String, f64)> = redis::cmd("ZREVRANGE")
                .arg(&key)
                .arg(0)
                .arg(limit as isize - 1)
                .arg("WITHSCORES")
                .query_async(&mut *rc)
                .await?;
            entries
                .into_iter()
                .map(|(e, s)| (e, Cents(s.round() as i64)))
                .collect()
        }
    };
    drop(rc);
    let emails: Vec<String> = top.iter().map(|(e, _)| e.clone()).collect();
    let names = reports::customers_by_email(pool, &emails).await?;
    Ok(LeaderboardReport {
        source: "redis",
        key,
        snapshot_key: None,
        customers: customers as usize,
        top: top
            .into_iter()
            .enumerate()
            .map(|(i, (email, cents))| {
                let (name, orders_count) = names.get(&email).cloned().unwrap_or_default();
                LeaderboardEntry {
                    rank: i + 1,
                    name,
                    email,
                    orders_count,
                    total_spent: cents.to_string(),
                    total_spent_cents: cents.0,
                }
            })
            .collect(),
    })
}
