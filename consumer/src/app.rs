//! Wiring and lifecycle of one consumer process.
//!
//! [`run`] connects (waiting with backoff while MySQL or Redis is unreachable), refuses an
//! unmigrated database, joins the group, then runs intake, `--concurrency` workers,
//! housekeeping and the HTTP endpoints until `shutdown` is cancelled.
//!
//! Shutdown path, in order:
//! 1. `shutdown` cancelled (SIGTERM/SIGINT in `cli`, or a test);
//! 2. intake stops reading and claiming, and drops its senders;
//! 3. workers finish the batches already received (each ends acknowledged, dead-lettered
//!    or left pending for another consumer) and exit when the channel is empty;
//! 4. housekeeping deletes the last applied outbox rows, then applies and deletes every
//!    committed outbox row still in MySQL, whatever its age (one a consumer killed between
//!    commit and apply left behind), so the read models are final once the last consumer
//!    has stopped; the HTTP server stops;
//! 5. if step 3 takes longer than `--shutdown-timeout-secs`, the batches still running are
//!    aborted and we exit anyway (step 4 gets at most 5 s more): entries still held stay
//!    pending and are claimed by other consumers (effects are idempotent).

use std::sync::Arc;
use std::time::Duration;

use oms_shared::deployment;
use oms_shared::redis::conn::RedisPool;
use oms_shared::redis::keys::StreamKeys;
use oms_shared::retry::{self, RetryPolicy};
use oms_shared::OmsError;
use sqlx::MySqlPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::intake::Batch;

use crate::state::Shared;

/// How long the last duties (applied outbox rows, applying the committed ones left,
/// closing connections) may take at exit; what is left then waits for another
/// consumer's sweeper.
const FINAL_CLEANUP: Duration = Duration::from_secs(5);

/// Runs a start-up step until it succeeds, retrying the errors `retryable` accepts (saying
/// so) with [`RetryPolicy::CONNECT`]; any other error is returned. `None` at shutdown.
async fn until_done<T, F, Fut>(
    shutdown: &CancellationToken,
    retryable: fn(&OmsError) -> bool,
    step: F,
) -> Result<Option<T>, OmsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OmsError>>,
{
    let policy = RetryPolicy::CONNECT.retry_if(retryable);
    let warn = |e: &OmsError, wait| tracing::warn!("{e}; retrying in {wait:?}");
    retry::none_at_shutdown(policy.run(Some(shutdown), warn, step).await)
}

/// Connects to MySQL, retrying while it is unreachable (saying so), until `shutdown`;
/// then refuses an unmigrated database ([`deployment::open_mysql`]).
async fn connect_mysql(
    config: &ConsumerConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<MySqlPool>> {
    let conn = &config.conn;
    let unreachable = |e: &OmsError| {
        matches!(
            e,
            OmsError::MysqlUnreachable { .. } | OmsError::MysqlNodeNotReady { .. }
        ) && e.is_transient()
    };
    let size = config.concurrency as u32 + 4;
    Ok(until_done(shutdown, unreachable, || deployment::open_mysql(conn, size)).await?)
}

/// Connects to Redis and joins the group ([`deployment::open_redis`]), retrying while
/// Redis is unreachable.
async fn connect_redis(
    config: &ConsumerConfig,
    keys: &StreamKeys,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<RedisPool>> {
    let size = config.concurrency + 4;
    Ok(until_done(shutdown, OmsError::is_transient, || {
        deployment::open_redis(&config.conn, keys, size)
    })
    .await?)
}

/// Whether the queue is paused, and the Redis data loss to report, if any (recording the
/// deployment's first Redis epoch when no process has yet).
async fn startup_state(
    db: &MySqlPool,
    redis: &RedisPool,
    keys: &StreamKeys,
) -> Result<(bool, Option<String>), OmsError> {
    let mut conn = redis.get().await?;
    let paused = oms_shared::redis::pause::is_paused(&mut *conn, keys).await?;
    let lost = match oms_shared::redis::epoch::check(db, &mut *conn, keys).await? {
        oms_shared::redis::epoch::EpochState::Intact(_) => None,
        oms_shared::redis::epoch::EpochState::Lost(loss) => Some(loss.describe()),
    };
    Ok((paused, lost))
}

/// Runs one consumer until `shutdown` is cancelled and the drain is over.
// Long on purpose: the whole start-up and shutdown path of the daemon, read top to bottom
// in one place (which task starts when, and what each waits for on the way out).
pub async fn run(config: ConsumerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    config.validate().map_err(|e| anyhow::anyhow!(e))?;
    let name = config.consumer_name();
    let payment = config.payment().map_err(|e| anyhow::anyhow!(e))?;

    let Some(db) = connect_mysql(&config, &shutdown).await? else {
        return Ok(());
    };
    // The partition count recorded by `producer migrate --partitions P`.
    let keys: StreamKeys = deployment::stream_keys(&db, &config.conn).await?;
    tracing::info!(
        partitions = keys.partitions().get(),
        cluster = keys.is_cluster(),
        "stream layout"
    );
    let Some(redis) = connect_redis(&config, &keys, &shutdown).await? else {
        return Ok(());
    };
    let metrics = crate::metrics::install();
    metrics::gauge!(crate::metrics::READY).set(1.0);
    // Two processes starting at once on two Galera nodes both record the first Redis epoch:
    // one loses certification (1213) and retries here rather than exiting.
    let Some((paused, lost)) = until_done(&shutdown, OmsError::is_transient, || {
        startup_state(&db, &redis, &keys)
    })
    .await?
    else {
        return Ok(());
    };
    if paused {
        tracing::info!("starting paused (producer queue resume to start reading)");
    }

    let shared = Arc::new(Shared::new(
        config,
        name.clone(),
        keys,
        db,
        redis,
        payment,
        paused,
        lost,
    ));
    let rest = CancellationToken::new();
    let http = crate::http::serve(
        shared.config.metrics_addr,
        metrics,
        shared.clone(),
        rest.clone(),
    )
    .await?;
    tracing::info!(
        consumer = %name,
        concurrency = shared.config.concurrency,
        batch_size = shared.config.batch_size,
        metrics_addr = %shared.config.metrics_addr,
        "consumer started"
    );

    let (tx, rx) = mpsc::channel::<Batch>(shared.config.concurrency);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let reader = tokio::spawn(crate::intake::read_new(
        shared.clone(),
        tx.clone(),
        shutdown.clone(),
    ));
    let claimer = tokio::spawn(crate::intake::claim_idle(
        shared.clone(),
        tx,
        shutdown.clone(),
    ));
    let housekeeping = tokio::spawn(crate::housekeeping::run(shared.clone(), rest.clone()));
    let pause_watch = tokio::spawn(crate::pause::watch(shared.clone(), rest.clone()));
    let workers: Vec<_> = (0..shared.config.concurrency)
        .map(|_| {
            let (shared, rx, shutdown) = (shared.clone(), rx.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    let batch = rx.lock().await.recv().await;
                    match batch {
                        Some(batch) => {
                            crate::batch::process_batch(shared.clone(), batch, shutdown.clone())
                                .await
                        }
                        None => break,
                    }
                }
            })
        })
        .collect();

    shutdown.cancelled().await;
    tracing::info!("shutting down: no new work; finishing what is held");
    let held: Vec<tokio::task::AbortHandle> = [&reader, &claimer]
        .into_iter()
        .chain(workers.iter())
        .map(|task| task.abort_handle())
        .collect();
    let drain = async {
        let _ = reader.await;
        let _ = claimer.await;
        for w in workers {
            let _ = w.await;
        }
    };
    let timeout = Duration::from_secs(shared.config.shutdown_timeout_secs);
    if tokio::time::timeout(timeout, drain).await.is_err() {
        tracing::warn!(
            ?timeout,
            "shutdown timeout: entries still held stay pending for other consumers"
        );
        // A batch stuck on a frozen server must not keep the process alive.
        held.iter().for_each(tokio::task::AbortHandle::abort);
    }
    rest.cancel();
    let last_duties = async {
        let _ = housekeeping.await;
        let _ = pause_watch.await;
        let _ = http.await;
        shared.db.close().await;
    };
    if tokio::time::timeout(FINAL_CLEANUP, last_duties)
        .await
        .is_err()
    {
        tracing::warn!("MySQL did not answer during the final clean-up; exiting anyway");
    }
    tracing::info!("consumer stopped");
    Ok(())
}
