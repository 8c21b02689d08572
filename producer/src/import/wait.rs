//! `import --wait`: follows an import until every order has ended and the read models
//! hold them, riding out Redis and MySQL outages (`crate::outage`).

use std::time::{Duration, Instant};

use oms_shared::config::ConnectionConfig;
use oms_shared::redis::keys::StreamKeys;
use oms_shared::redis::read_model;
use oms_shared::store::imports;
use oms_shared::store::outbox;
use tokio_util::sync::CancellationToken;

use super::ImportOutcome;
use crate::outage::{ride_out, Outages};
use oms_reports::status::StatusSource;

/// Polls the import's progress until every enqueued order has ended and every read-model
/// update committed by then has reached Redis (or `timeout`): when it returns `done`, KPIs,
/// leaderboard and `reconcile` reflect the whole import. Rides out Redis and MySQL
/// outages (`crate::outage`): it says what it waits for and goes on when the server is
/// back, with no limit but `timeout`.
// Long on purpose: one polling loop whose every exit (done, lost data, timeout, outage
// message) is visible together.
pub async fn wait_for_outcome(
    conn: &ConnectionConfig,
    import_id: u64,
    timeout: Option<Duration>,
    shutdown: &CancellationToken,
) -> anyhow::Result<ImportOutcome> {
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut outages = Outages::default();
    let gave_up = |outages: &Outages| {
        anyhow::anyhow!(
            "import {import_id}: gave up waiting while {} is unavailable",
            outages.server().unwrap_or("a server")
        )
    };
    let connected = ride_out(&mut outages, deadline, shutdown, || async move {
        let (db, redis, keys) = crate::outage::reader_pools(conn).await?;
        let source = StatusSource::from_pools(keys.clone(), redis.clone(), Some(db.clone()));
        anyhow::Ok((source, db, redis, keys))
    })
    .await?;
    let Some((source, db, redis, keys)) = connected else {
        return Err(gave_up(&outages));
    };
    let mut last_log = Instant::now();
    // Once every order has ended: the outbox id every read-model update of the import is
    // at or below (ids are handed out in commit order).
    let mut outbox_through: Option<u64> = None;
    let (source, db, redis, keys) = (&source, &db, &redis, &keys);
    loop {
        let reading = ride_out(&mut outages, deadline, shutdown, || async move {
            let mut s = source.import(import_id, None).await?;
            if let Some(why) = &s.lost_reason {
                // Rows lost with Redis's data: not an outage, no retry brings them back.
                anyhow::bail!("import {import_id}: {why}");
            }
            let mut through = outbox_through;
            if s.done {
                let t = match through {
                    Some(t) => t,
                    None => *through.insert(outbox::last_id(db).await?),
                };
                s.done = read_models_final(db, redis, keys, t).await?;
            }
            anyhow::Ok((s, through))
        })
        .await?;
        let Some((s, through)) = reading else {
            return Err(gave_up(&outages));
        };
        outbox_through = through;
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        if s.done || timed_out || shutdown.is_cancelled() {
            // After a timeout, an outage gets 10 s more for this last reading.
            let last_chance = deadline.map(|d| d.max(Instant::now()) + Duration::from_secs(10));
            let revenue = ride_out(&mut outages, last_chance, shutdown, || async move {
                Ok(imports::import_revenue(db, import_id).await?)
            })
            .await?
            .ok_or_else(|| gave_up(&outages))?;
            return Ok(ImportOutcome {
                completed: s.completed,
                failed: s.failed,
                failed_total: s.failed_total,
                duplicates: s.duplicates,
                dead: s.dead,
                revenue: revenue.to_string(),
                done: s.done,
            });
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            tracing::info!(
                import_id,
                in_flight = s.in_flight,
                completed = s.completed,
                failed = s.failed_total,
                dead = s.dead,
                "waiting for the import's orders"
            );
            last_log = Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// True when every outbox row up to `through` has reached Redis (rows left by a consumer
/// that died are applied by the sweeper of another within about half a minute).
async fn read_models_final(
    db: &sqlx::MySqlPool,
    redis: &oms_shared::redis::conn::RedisPool,
    keys: &StreamKeys,
    through: u64,
) -> anyhow::Result<bool> {
    let mut rc = redis.get().await?;
    for id in outbox::ids_through(db, through).await? {
        if !read_model::is_applied(&mut *rc, keys, id).await? {
            return Ok(false);
        }
    }
    Ok(true)
}
