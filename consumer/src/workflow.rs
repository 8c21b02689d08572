//! Processing one batch: the order workflow for its rows, then acknowledgements.
//!
//! 1. Entries that cannot be decoded are dead-lettered at once (no retry can fix them).
//! 2. All rows run through [`run_workflow`]: reserve (tx 1), settle (tx 2), read models.
//!    Transient errors (connection lost, deadlock, timeout) are retried in process with
//!    backoff for up to `--claim-idle-secs`, keeping the entries claimed (`XCLAIM JUSTID`
//!    resets their idle time without counting a delivery).
//! 3. Any other error isolates the poison: each entry alone, then each row alone, so
//!    healthy rows complete (identities make re-runs no-ops). Entries whose rows all ended
//!    are acknowledged; an entry with a failing row stays pending for a later delivery, or
//!    after `--max-attempts` deliveries its failing rows go to `orders:dead` and it is
//!    acknowledged, in one `MULTI` with the `XACK`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_shared::keys::CONSUMER_GROUP;
use oms_shared::order::OrderRow;
use oms_shared::queue::{parse_stream_id, push_dead_letters, DeadLetter};
use oms_shared::store::orders::{reserve_stock, settle_payments, BatchRow, RowOutcome};
use oms_shared::{OmsError, Result};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::Shared;
use crate::health::Service;
use crate::intake::{backoff, sleep_or_shutdown, Batch, Delivery};
use crate::metrics::{
    BATCH_DURATION, BATCH_ROWS, DEAD_LETTERS, IN_FLIGHT_ROWS, MESSAGES, MYSQL_DURATION, ORDERS,
    ORDER_DURATION, REDIS_DURATION, RETRIES, REVENUE_CENTS,
};

/// What one run of the workflow did to the rows it was given.
#[derive(Debug, Default)]
pub struct WorkflowReport {
    pub outcomes: Vec<RowOutcome>,
}

/// Runs both transactions for `rows`, then applies the completed orders to the read
/// models. The read-model step never fails the batch: its outbox row stays in MySQL for
/// the sweeper.
pub async fn run_workflow(shared: &Shared, rows: &[BatchRow<'_>]) -> Result<WorkflowReport> {
    let started = Instant::now();
    let today = chrono::Utc::now().date_naive();
    let reserved = reserve_stock(&shared.db, rows, today).await?;
    metrics::histogram!(MYSQL_DURATION, "phase" => "reserve")
        .record(started.elapsed().as_secs_f64());

    let started = Instant::now();
    let settled = settle_payments(&shared.db, &reserved.reserved, &shared.payment, today).await?;
    metrics::histogram!(MYSQL_DURATION, "phase" => "settle")
        .record(started.elapsed().as_secs_f64());

    record_revenue(settled.completed.iter().map(|o| o.total.0).sum());
    let mut outcomes = reserved.outcomes;
    for (index, outcome) in settled.outcomes {
        outcomes[index] = outcome;
    }
    crate::live_stats::record(shared, &outcomes).await;
    if let Some(outbox_id) = settled.outbox_id {
        let started = Instant::now();
        let applied = async {
            let mut conn = shared.redis.get().await?;
            oms_shared::read_model::apply_outbox(
                &mut *conn,
                &shared.keys,
                outbox_id,
                &settled.completed,
            )
            .await
        }
        .await;
        metrics::histogram!(REDIS_DURATION, "op" => "read_model")
            .record(started.elapsed().as_secs_f64());
        match applied {
            Ok(_) => shared.outbox_applied(outbox_id),
            Err(e) => {
                tracing::warn!(outbox_id, error = %e, "read models not updated now; the outbox sweeper will")
            }
        }
    }
    Ok(WorkflowReport { outcomes })
}

/// Runs the workflow, retrying transient errors with backoff while keeping `ids` claimed.
/// Gives up after `--claim-idle-secs`, returning the last error.
async fn run_with_retry(
    shared: &Shared,
    rows: &[BatchRow<'_>],
    ids: &[&str],
    shutdown: &CancellationToken,
) -> Result<WorkflowReport> {
    let started = Instant::now();
    let budget = shared.config.claim_idle();
    let mut last_touch = Instant::now();
    let mut attempt = 0u32;
    loop {
        match run_workflow(shared, rows).await {
            Ok(report) => {
                shared.health.up(Service::Mysql);
                return Ok(report);
            }
            Err(e) if e.is_transient() => {
                if matches!(e, OmsError::Sql(_) | OmsError::MysqlUnreachable { .. })
                    && !is_contention(&e)
                {
                    shared.health.down(Service::Mysql, &e);
                }
                metrics::counter!(RETRIES).increment(1);
                attempt += 1;
                tracing::debug!(attempt, error = %e, "transient error, retrying");
                if started.elapsed() >= budget {
                    return Err(e);
                }
                // During a drain, keep retrying: `--shutdown-timeout-secs` bounds it.
                if shutdown.is_cancelled() {
                    tokio::time::sleep(backoff(attempt).min(Duration::from_millis(500))).await;
                } else {
                    sleep_or_shutdown(backoff(attempt), shutdown).await;
                }
                if last_touch.elapsed() >= budget / 3 {
                    keep_claimed(shared, ids).await;
                    last_touch = Instant::now();
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deadlocks and duplicate-key races say nothing about the server's health.
fn is_contention(e: &OmsError) -> bool {
    match e {
        OmsError::Sql(sqlx::Error::Database(db)) => {
            let code = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            matches!(code, Some(1205 | 1213 | 1062))
        }
        _ => false,
    }
}

/// `XCLAIM ... JUSTID` to ourselves: resets idle time without counting a delivery, so
/// other consumers do not take entries this one is still working on.
async fn keep_claimed(shared: &Shared, ids: &[&str]) {
    if ids.is_empty() {
        return;
    }
    let Ok(mut conn) = shared.redis.get().await else {
        return;
    };
    let mut cmd = redis::cmd("XCLAIM");
    cmd.arg(shared.keys.orders())
        .arg(CONSUMER_GROUP)
        .arg(&shared.name)
        .arg(0)
        .arg(ids)
        .arg("JUSTID");
    let _: redis::RedisResult<Vec<String>> = cmd.query_async(&mut *conn).await;
}

/// The rows of a batch, each with the index of the delivery it came from.
fn batch_rows(deliveries: &[Delivery]) -> Vec<(usize, BatchRow<'_>)> {
    deliveries
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.body.as_ref().ok().map(|c| (i, c)))
        .flat_map(|(i, chunk)| {
            chunk.rows.iter().map(move |row| {
                (
                    i,
                    BatchRow {
                        import_id: chunk.import_id,
                        row,
                    },
                )
            })
        })
        .collect()
}

/// What to do with each delivery once its rows have run.
#[derive(Debug, Default)]
struct Settlement {
    ack: Vec<String>,
    dead: Vec<DeadLetter>,
    /// Entries left pending, with their last error.
    retry: Vec<(String, String)>,
}

/// Processes one batch end to end (see the module documentation).
pub async fn process_batch(shared: Arc<Shared>, batch: Batch, shutdown: CancellationToken) {
    let started = Instant::now();
    let total_rows = batch.rows();
    metrics::histogram!(BATCH_ROWS).record(total_rows as f64);
    metrics::gauge!(IN_FLIGHT_ROWS).increment(total_rows as f64);
    let imports: Vec<u64> = {
        let mut v: Vec<u64> = batch
            .deliveries
            .iter()
            .filter_map(|d| d.body.as_ref().ok().map(|c| c.import_id))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let span = tracing::info_span!("batch", consumer = %shared.name, rows = total_rows, entries = batch.deliveries.len(), imports = ?imports);
    async {
        let mut settlement = Settlement::default();
        for d in &batch.deliveries {
            if let Err(bad) = &d.body {
                tracing::warn!(entry = %d.id, error = %bad.error, "malformed entry dead-lettered");
                settlement
                    .dead
                    .push(dead_letter(&shared, d, None, &bad.raw, &bad.error));
                settlement.ack.push(d.id.clone());
            }
        }
        let rows = batch_rows(&batch.deliveries);
        if !rows.is_empty() {
            let workflow_rows: Vec<BatchRow> = rows.iter().map(|(_, r)| *r).collect();
            let ids: Vec<&str> = batch
                .deliveries
                .iter()
                .filter(|d| d.body.is_ok())
                .map(|d| d.id.as_str())
                .collect();
            match run_with_retry(&shared, &workflow_rows, &ids, &shutdown).await {
                Ok(report) => {
                    record_outcomes(&report.outcomes, &batch.deliveries, &rows);
                    settlement.ack.extend(ids.iter().map(|s| s.to_string()));
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "batch left pending after transient errors");
                    settlement
                        .retry
                        .extend(ids.iter().map(|id| (id.to_string(), e.to_string())));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "batch failed; isolating the failing rows");
                    isolate(
                        &shared,
                        &batch.deliveries,
                        &rows,
                        &shutdown,
                        &mut settlement,
                    )
                    .await;
                }
            }
        }
        finish(&shared, &settlement).await;
    }
    .instrument(span)
    .await;
    metrics::gauge!(IN_FLIGHT_ROWS).decrement(total_rows as f64);
    metrics::histogram!(BATCH_DURATION).record(started.elapsed().as_secs_f64());
}

/// Runs each delivery alone, then each row of a failing delivery alone.
async fn isolate(
    shared: &Shared,
    deliveries: &[Delivery],
    rows: &[(usize, BatchRow<'_>)],
    shutdown: &CancellationToken,
    settlement: &mut Settlement,
) {
    for (index, delivery) in deliveries.iter().enumerate() {
        if delivery.body.is_err() {
            continue;
        }
        let own: Vec<(usize, BatchRow)> = rows
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(i, r)| (*i, *r))
            .collect();
        let own_rows: Vec<BatchRow> = own.iter().map(|(_, r)| *r).collect();
        let ids = [delivery.id.as_str()];
        match run_with_retry(shared, &own_rows, &ids, shutdown).await {
            Ok(report) => {
                record_outcomes(&report.outcomes, deliveries, &own);
                settlement.ack.push(delivery.id.clone());
                continue;
            }
            Err(e) if e.is_transient() => {
                settlement.retry.push((delivery.id.clone(), e.to_string()));
                continue;
            }
            Err(_) => {}
        }
        let mut failing: Vec<(&OrderRow, String)> = Vec::new();
        let mut transient: Option<String> = None;
        for (i, row) in &own {
            let single = [*row];
            match run_with_retry(shared, &single, &ids, shutdown).await {
                Ok(report) => record_outcomes(&report.outcomes, deliveries, &[(*i, *row)]),
                Err(e) if e.is_transient() => transient = Some(e.to_string()),
                Err(e) => {
                    tracing::warn!(entry = %delivery.id, line = row.row.line, identity = %row.row.identity, error = %e, "row failed");
                    failing.push((row.row, e.to_string()));
                }
            }
        }
        if let Some(error) = transient {
            settlement.retry.push((delivery.id.clone(), error));
        } else if failing.is_empty() {
            settlement.ack.push(delivery.id.clone());
        } else if delivery.deliveries >= shared.config.max_attempts {
            let import_id = delivery.body.as_ref().map(|c| c.import_id).unwrap_or(0);
            for (row, error) in failing {
                let row_json = serde_json::to_string(row).unwrap_or_default();
                settlement.dead.push(dead_letter(
                    shared,
                    delivery,
                    Some((import_id, row)),
                    &row_json,
                    &error,
                ));
            }
            settlement.ack.push(delivery.id.clone());
        } else {
            let error = failing
                .iter()
                .map(|(r, e)| format!("line {}: {e}", r.line))
                .collect::<Vec<_>>()
                .join("; ");
            settlement.retry.push((delivery.id.clone(), error));
        }
    }
}

fn dead_letter(
    shared: &Shared,
    delivery: &Delivery,
    row: Option<(u64, &OrderRow)>,
    raw: &str,
    error: &str,
) -> DeadLetter {
    DeadLetter {
        id: String::new(),
        import_id: row.map(|(i, _)| i).unwrap_or(0),
        line: row.map(|(_, r)| r.line).unwrap_or(0),
        identity: row.map(|(_, r)| r.identity.to_string()).unwrap_or_default(),
        row: raw.to_string(),
        error: error.chars().take(2000).collect(),
        attempts: delivery.deliveries,
        consumer: shared.name.clone(),
        source_id: delivery.id.clone(),
        failed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// Dead letters, acknowledgements and error notes in one atomic pipeline.
async fn finish(shared: &Shared, s: &Settlement) {
    if s.ack.is_empty() && s.dead.is_empty() && s.retry.is_empty() {
        return;
    }
    let keys = &shared.keys;
    let mut pipe = redis::pipe();
    pipe.atomic();
    push_dead_letters(&mut pipe, keys, &s.dead);
    if !s.ack.is_empty() {
        pipe.cmd("XACK")
            .arg(keys.orders())
            .arg(CONSUMER_GROUP)
            .arg(&s.ack)
            .ignore();
        pipe.cmd("HDEL")
            .arg(keys.message_errors())
            .arg(&s.ack)
            .ignore();
    }
    for (id, error) in &s.retry {
        pipe.cmd("HSET")
            .arg(keys.message_errors())
            .arg(id)
            .arg(error.chars().take(2000).collect::<String>())
            .ignore();
    }
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let result: Result<()> = async {
            let mut conn = shared.redis.get().await?;
            pipe.query_async::<()>(&mut *conn).await?;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                shared.health.up(Service::Redis);
                break;
            }
            Err(e) if attempt < 5 => {
                shared.health.down(Service::Redis, &e);
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => {
                // Entries stay pending and are claimed again later; effects are idempotent.
                tracing::error!(error = %e, "could not acknowledge; entries stay pending");
                return;
            }
        }
    }
    metrics::histogram!(REDIS_DURATION, "op" => "ack").record(started.elapsed().as_secs_f64());
    let dead_entries: usize = s
        .dead
        .iter()
        .map(|d| d.source_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    metrics::counter!(MESSAGES, "result" => "acked")
        .increment((s.ack.len() - dead_entries.min(s.ack.len())) as u64);
    metrics::counter!(MESSAGES, "result" => "dead").increment(dead_entries as u64);
    metrics::counter!(MESSAGES, "result" => "retried").increment(s.retry.len() as u64);
    if !s.dead.is_empty() {
        metrics::gauge!(DEAD_LETTERS).increment(s.dead.len() as f64);
    }
}

/// Counts outcomes and the enqueue-to-terminal latency of terminal rows.
fn record_outcomes(
    outcomes: &[RowOutcome],
    deliveries: &[Delivery],
    owners: &[(usize, BatchRow<'_>)],
) {
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
    let mut enqueued_at: HashMap<usize, u64> = HashMap::new();
    for ((owner, row), outcome) in owners.iter().zip(outcomes) {
        let key = match outcome {
            RowOutcome::Completed => ("completed", "none"),
            RowOutcome::Failed(reason) => ("failed", reason.as_str()),
            RowOutcome::Duplicate => ("duplicate", "none"),
            RowOutcome::Reserved | RowOutcome::AlreadyProcessed => continue,
        };
        tracing::debug!(import_id = row.import_id, line = row.row.line, identity = %row.row.identity, outcome = key.0, reason = key.1, "order finished");
        *counts.entry(key).or_default() += 1;
        let at = *enqueued_at.entry(*owner).or_insert_with(|| {
            parse_stream_id(&deliveries[*owner].id)
                .map(|(ms, _)| ms)
                .unwrap_or(now_ms)
        });
        if key.0 != "duplicate" {
            metrics::histogram!(ORDER_DURATION)
                .record(Duration::from_millis(now_ms.saturating_sub(at)).as_secs_f64());
        }
    }
    for ((outcome, reason), n) in counts {
        metrics::counter!(ORDERS, "outcome" => outcome, "reason" => reason).increment(n);
    }
}

/// Revenue of orders committed as completed.
fn record_revenue(cents: i64) {
    if cents > 0 {
        metrics::counter!(REVENUE_CENTS).increment(cents as u64);
    }
}
