//! Processing one batch: the order workflow for its rows, then acknowledgements.
//!
//! Every entry ends acknowledged within `--max-attempts` deliveries, whatever goes wrong:
//!
//! 1. Entries that cannot be decoded (malformed, oversized, empty, unknown version) and rows
//!    that break a limit of `order_rules` are dead-lettered at once with their reason: no
//!    retry can fix them.
//! 2. The other rows run through [`run_workflow`]: reserve (tx 1), settle (tx 2), read
//!    models. Transient errors are retried in process with backoff, keeping the entries
//!    claimed (`XCLAIM JUSTID` resets their idle time without counting a delivery): while
//!    MySQL or Redis is unreachable for up to `--claim-idle-secs`, otherwise (deadlock,
//!    contention, a read-only server) for [`BATCH_PATIENCE`].
//! 3. If the batch still fails, the poison is isolated: each entry alone, then each row
//!    alone (each for [`ROW_PATIENCE`]), so healthy rows complete (identities make re-runs
//!    no-ops). An entry whose rows all ended is acknowledged. Rows that can never succeed
//!    (an overflowing total) are dead-lettered at once. Rows failing otherwise leave the
//!    entry pending for a later delivery; at its `--max-attempts`-th delivery they go to
//!    `orders:dead` with their last error, transient or not, and the entry is acknowledged,
//!    in one `MULTI` with the `XACK`. Dead rows are first recorded in MySQL
//!    (`dead_lettered_rows`, what an import's dead count is read from), and in that step
//!    MySQL is asked whether they ended after all: a row an earlier holder committed
//!    while an outage swallowed the answer is acknowledged, never dead-lettered too
//!    ([`crate::dead_rows`]).
//! 4. After shutdown began, a transient error gets [`DRAIN_ATTEMPTS`] more tries, then the
//!    entries stay pending for another consumer (no attempt is spent, nothing is dead).
//! 5. When MySQL went back in time (`OmsError::HistoryRewound`: the settle's new outbox id
//!    is not above what Redis applied), the batch's entries stay pending as they are, and
//!    no delivery counts as the last one until the applied record is reset
//!    ([`crate::housekeeping::check_history`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_shared::error::FailureClass;
use oms_shared::keys::CONSUMER_GROUP;
use oms_shared::order::OrderRow;
use oms_shared::queue::{self, parse_stream_id, push_partition_dead_letters, DeadLetter};
use oms_shared::store::orders::{reserve_stock, settle_payments_checked, BatchRow, RowOutcome};
use oms_shared::untrusted_text::Visible;
use oms_shared::{OmsError, Result};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch_traces::{batch_span, phase_span, Phase, RunLabels};
use crate::health::{Rewound, Service};
use crate::intake::{Batch, Delivery};
use crate::metrics::{
    BATCH_DURATION, BATCH_ROWS, DEAD_LETTERS, IN_FLIGHT_ROWS, MESSAGES, MYSQL_DURATION, ORDERS,
    ORDER_DURATION, REDIS_DURATION, RETRIES, REVENUE_CENTS,
};
use crate::retry::{backoff, sleep_or_shutdown};
use crate::state::Shared;

/// How long a batch retries a transient error while the servers answer (deadlock,
/// contention, a read-only server) before its rows are tried apart.
pub const BATCH_PATIENCE: Duration = Duration::from_secs(10);
/// How long one entry, or one row, alone retries a transient error while isolating.
pub const ROW_PATIENCE: Duration = Duration::from_secs(2);
/// Tries a transient error still gets once shutdown has begun.
pub const DRAIN_ATTEMPTS: u32 = 5;

/// What one run of the workflow did to the rows it was given.
#[derive(Debug, Default)]
pub struct WorkflowReport {
    pub outcomes: Vec<RowOutcome>,
}

/// Runs both transactions for `rows`, then applies the completed orders to the read
/// models. The read-model step never fails the batch: its outbox row stays in MySQL for
/// the sweeper. Each phase runs in its span ([`crate::batch_traces`]), labelled `run`.
// Long on purpose: the three phases (reserve, settle, apply) in the order they run, each
// with its span and its timing, so the whole path of a batch reads top to bottom.
pub async fn run_workflow(
    shared: &Shared,
    rows: &[BatchRow<'_>],
    run: RunLabels,
) -> Result<WorkflowReport> {
    if let Some(rewound) = shared.health.rewound() {
        return Err(rewound.error());
    }
    let started = Instant::now();
    let today = chrono::Utc::now().date_naive();
    crate::housekeeping::stall_point("OMS_TEST_STOP_BEFORE_RESERVE");
    let reserved = reserve_stock(&shared.db, rows, today)
        .instrument(phase_span(Phase::Reserve, rows, run))
        .await?;
    metrics::histogram!(MYSQL_DURATION, "phase" => "reserve")
        .record(started.elapsed().as_secs_f64());

    let started = Instant::now();
    let applied_max = shared.applied_mark().applied_max;
    let settled = match settle_payments_checked(
        &shared.db,
        &reserved.reserved,
        &shared.payment,
        today,
        applied_max,
    )
    .instrument(phase_span(Phase::Settle, rows, run))
    .await
    {
        Ok(settled) => settled,
        Err(OmsError::HistoryRewound { sequence, .. }) => {
            return Err(confirm_rewind(shared, sequence).await)
        }
        Err(e) => return Err(e),
    };
    metrics::histogram!(MYSQL_DURATION, "phase" => "settle")
        .record(started.elapsed().as_secs_f64());

    record_revenue(settled.completed.iter().map(|o| o.total.0).sum());
    let mut outcomes = reserved.outcomes;
    for (index, outcome) in settled.outcomes {
        outcomes[index] = outcome;
    }
    crate::live_stats::record(shared, &outcomes).await;
    if let Some(outbox_id) = settled.outbox_id {
        crate::housekeeping::stall_point("OMS_TEST_STOP_BEFORE_APPLY");
        let started = Instant::now();
        let span = phase_span(Phase::Apply, rows, run);
        span.record("outbox_id", outbox_id);
        let applied = async {
            let mut conn = shared.redis.get().await?;
            oms_shared::read_model::apply_outbox_replicated(
                &mut *conn,
                &shared.keys,
                outbox_id,
                &settled.completed,
                shared.replica_wait,
            )
            .await
        }
        .instrument(span)
        .await;
        metrics::histogram!(REDIS_DURATION, "op" => "read_model")
            .record(started.elapsed().as_secs_f64());
        match applied {
            Ok(applied) => {
                shared.note_applied_mark(applied.mark);
                // Already applied: in a sane world by a sweeper (which deletes the row
                // itself); after MySQL went back in time, by the history that went away.
                // Either way the row stays for the sweeper, which applies it after the
                // reset if it must.
                if applied.now {
                    shared.outbox_applied(outbox_id);
                }
            }
            Err(e) => {
                tracing::warn!(outbox_id, error = %e, "read models not updated now; the outbox sweeper will")
            }
        }
    }
    Ok(WorkflowReport { outcomes })
}

/// The settle found its new outbox id not above the cached applied mark. Confirms it
/// against Redis's record now: if the record's generation changed (a reset raced with
/// the cached mark), the mark is refreshed and the error is transient (settle again);
/// else MySQL went back in time: recorded in `health` (intake stops; housekeeping
/// resumes when the record is reset) and the batch's entries stay pending.
async fn confirm_rewind(shared: &Shared, sequence: u64) -> OmsError {
    let cached = shared.applied_mark();
    let reading = async {
        let mut conn = shared.redis.get().await?;
        oms_shared::read_model::read_applied_mark(&mut *conn, &shared.keys).await
    }
    .await;
    let reading = match reading {
        Ok(reading) => reading,
        Err(e) => return e,
    };
    shared.note_applied_mark(reading);
    if reading.generation != cached.generation {
        return OmsError::Contention(
            "the read-model record was reset meanwhile; settling again".into(),
        );
    }
    let rewound = Rewound {
        generation: reading.generation,
        sequence,
        applied: reading.applied_max.max(cached.applied_max),
    };
    shared.health.set_rewound(rewound);
    rewound.error()
}

/// Errors after which a batch's entries are left pending as they are, to be delivered
/// again later: a transient error at shutdown or while a server is unreachable, and
/// MySQL gone back in time (nothing may settle until the operator's fix).
fn leaves_pending(e: &OmsError, shutdown: &CancellationToken) -> bool {
    matches!(e, OmsError::HistoryRewound { .. })
        || e.class() == FailureClass::Outage
        || (e.is_transient() && shutdown.is_cancelled())
}

/// Runs the workflow, retrying transient errors with backoff while keeping `ids` claimed:
/// for `--claim-idle-secs` while a server is unreachable, else for `patience`, and for
/// [`DRAIN_ATTEMPTS`] tries once shutdown has begun. Returns the last error.
async fn run_with_retry(
    shared: &Shared,
    run: RunLabels,
    rows: &[BatchRow<'_>],
    ids: &[&str],
    shutdown: &CancellationToken,
    patience: Duration,
) -> Result<WorkflowReport> {
    let partition = run.partition;
    let started = Instant::now();
    let claim_idle = shared.config.claim_idle();
    let mut last_touch = Instant::now();
    let mut attempt = 0u32;
    let mut drain_attempts = 0u32;
    loop {
        let run = RunLabels {
            retry: attempt,
            ..run
        };
        match run_workflow(shared, rows, run).await {
            Ok(report) => {
                shared.health.up(Service::Mysql);
                return Ok(report);
            }
            Err(e) if e.is_transient() => {
                let outage = e.class() == FailureClass::Outage;
                if outage && matches!(e, OmsError::Sql(_) | OmsError::MysqlUnreachable { .. }) {
                    shared.health.down(Service::Mysql, &e);
                }
                metrics::counter!(RETRIES).increment(1);
                attempt += 1;
                tracing::debug!(attempt, error = %e, "transient error, retrying");
                let limit = if outage {
                    claim_idle
                } else {
                    patience.min(claim_idle)
                };
                if started.elapsed() >= limit {
                    return Err(e);
                }
                if shutdown.is_cancelled() {
                    drain_attempts += 1;
                    if drain_attempts > DRAIN_ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff(attempt).min(Duration::from_millis(500))).await;
                } else {
                    sleep_or_shutdown(backoff(attempt), shutdown).await;
                }
                if last_touch.elapsed() >= claim_idle / 3 {
                    keep_claimed(shared, partition, ids).await;
                    last_touch = Instant::now();
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Keeps `ids` claimed by this consumer ([`queue::keep_claimed`]) so that others do not
/// take entries it is still working on; best effort (a failure only risks a redelivery).
async fn keep_claimed(shared: &Shared, partition: u16, ids: &[&str]) {
    let Ok(mut conn) = shared.redis.get().await else {
        return;
    };
    let _ = queue::keep_claimed(&mut *conn, &shared.keys, partition, &shared.name, ids).await;
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

/// A row of a delivery that has not ended, and why.
struct Unfinished<'a> {
    row: &'a OrderRow,
    error: String,
    /// No retry can make it succeed: dead-lettered at once.
    never: bool,
}

/// Where one delivery stands after its rows ran.
#[derive(Default)]
struct Standing<'a> {
    unfinished: Vec<Unfinished<'a>>,
}

/// Processes one batch end to end (see the module documentation).
pub async fn process_batch(shared: Arc<Shared>, batch: Batch, shutdown: CancellationToken) {
    let started = Instant::now();
    let total_rows = batch.rows();
    metrics::histogram!(BATCH_ROWS).record(total_rows as f64);
    metrics::gauge!(IN_FLIGHT_ROWS).increment(total_rows as f64);
    let span = batch_span(&batch, &shared.name);
    async {
        let mut settlement = Settlement::default();
        let mut standings: Vec<Standing> = batch.deliveries.iter().map(|_| Standing::default()).collect();
        for d in &batch.deliveries {
            if let Err(bad) = &d.body {
                tracing::warn!(entry = %d.id, error = %bad.error, "malformed entry dead-lettered");
                settlement
                    .dead
                    .push(dead_letter(&shared, d, None, &bad.raw, &bad.error));
                settlement.ack.push(d.id.clone());
            }
        }
        // Rows breaking a limit never run; the others do.
        let mut rows: Vec<(usize, BatchRow)> = Vec::new();
        for (i, row) in batch_rows(&batch.deliveries) {
            match row.row.check() {
                Ok(()) => rows.push((i, row)),
                Err(v) => {
                    tracing::warn!(entry = %batch.deliveries[i].id, line = row.row.line, identity = %Visible(&row.row.identity), error = %Visible(&v), "row refused");
                    standings[i].unfinished.push(Unfinished {
                        row: row.row,
                        error: format!("invalid row: {v}"),
                        never: true,
                    });
                }
            }
        }
        if !rows.is_empty() {
            let workflow_rows: Vec<BatchRow> = rows.iter().map(|(_, r)| *r).collect();
            let ids: Vec<&str> = batch
                .deliveries
                .iter()
                .filter(|d| d.body.is_ok())
                .map(|d| d.id.as_str())
                .collect();
            let run = RunLabels {
                partition: batch.partition,
                attempt: batch.attempt(),
                retry: 0,
            };
            match run_with_retry(&shared, run, &workflow_rows, &ids, &shutdown, BATCH_PATIENCE).await {
                Ok(report) => record_outcomes(&report.outcomes, &batch.deliveries, &rows),
                Err(e) if leaves_pending(&e, &shutdown) => {
                    tracing::warn!(error = %e, "batch left pending");
                    for (i, r) in &rows {
                        standings[*i].unfinished.push(Unfinished { row: r.row, error: e.to_string(), never: false });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "batch failed; isolating the failing rows");
                    isolate(&shared, &batch.deliveries, &rows, &shutdown, &mut standings).await;
                }
            }
        }
        for (d, standing) in batch.deliveries.iter().zip(standings) {
            if d.body.is_ok() {
                settle(&shared, d, standing, &shutdown, &mut settlement);
            }
        }
        finish(&shared, batch.partition, settlement).await;
    }
    .instrument(span)
    .await;
    metrics::gauge!(IN_FLIGHT_ROWS).decrement(total_rows as f64);
    metrics::histogram!(BATCH_DURATION).record(started.elapsed().as_secs_f64());
}

/// Decides one decoded delivery: acknowledged when all its rows ended; its unfinished rows
/// dead-lettered when none can ever succeed or at its last attempt; else left pending.
fn settle(
    shared: &Shared,
    delivery: &Delivery,
    standing: Standing<'_>,
    shutdown: &CancellationToken,
    settlement: &mut Settlement,
) {
    let unfinished = standing.unfinished;
    // While MySQL is rewound, nothing can settle: no attempt counts as a last one.
    let holding = shutdown.is_cancelled() || shared.health.rewound().is_some();
    let last_attempt = delivery.deliveries >= shared.config.max_attempts;
    let only_hopeless = unfinished.iter().all(|u| u.never);
    if unfinished.is_empty() {
        settlement.ack.push(delivery.id.clone());
    } else if only_hopeless || (last_attempt && !holding) {
        let import_id = delivery.body.as_ref().map(|c| c.import_id).unwrap_or(0);
        for u in unfinished {
            let row_json = serde_json::to_string(u.row).unwrap_or_default();
            settlement.dead.push(dead_letter(
                shared,
                delivery,
                Some((import_id, u.row)),
                &row_json,
                &u.error,
            ));
        }
        settlement.ack.push(delivery.id.clone());
    } else {
        let error = unfinished
            .iter()
            .map(|u| format!("line {}: {}", u.row.line, u.error))
            .collect::<Vec<_>>()
            .join("; ");
        settlement.retry.push((delivery.id.clone(), error));
    }
}

/// Runs each delivery alone, then each row of a failing delivery alone, noting in
/// `standings` the rows that did not end. Stops trying once a server is unreachable or
/// shutdown has begun: the rest stays unfinished with that error.
// Long on purpose: the two levels of isolation (delivery, then row) and their stop
// conditions (outage, shutdown) read as one procedure.
async fn isolate<'a>(
    shared: &Shared,
    deliveries: &'a [Delivery],
    rows: &[(usize, BatchRow<'a>)],
    shutdown: &CancellationToken,
    standings: &mut [Standing<'a>],
) {
    let mut stop: Option<String> = None;
    let partition = deliveries.first().map(|d| d.partition).unwrap_or(0);
    // Every entry of the batch stays claimed while any part of it runs: another consumer
    // must not take one over while its turn is still to come.
    let ids: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.body.is_ok())
        .map(|d| d.id.as_str())
        .collect();
    let mut last_touch = Instant::now();
    let touch_every = shared.config.claim_idle() / 3;
    for (index, delivery) in deliveries.iter().enumerate() {
        if delivery.body.is_err() {
            continue;
        }
        let own: Vec<(usize, BatchRow)> = rows
            .iter()
            .filter(|(i, _)| *i == index)
            .map(|(i, r)| (*i, *r))
            .collect();
        if own.is_empty() {
            continue;
        }
        if let Some(error) = &stop {
            for (_, r) in &own {
                standings[index].unfinished.push(Unfinished {
                    row: r.row,
                    error: error.clone(),
                    never: false,
                });
            }
            continue;
        }
        let own_rows: Vec<BatchRow> = own.iter().map(|(_, r)| *r).collect();
        if last_touch.elapsed() >= touch_every {
            keep_claimed(shared, partition, &ids).await;
            last_touch = Instant::now();
        }
        let run = RunLabels {
            partition,
            attempt: delivery.deliveries,
            retry: 0,
        };
        let entry_span = tracing::info_span!("isolate_entry", entry = %delivery.id);
        match run_with_retry(shared, run, &own_rows, &ids, shutdown, ROW_PATIENCE)
            .instrument(entry_span)
            .await
        {
            Ok(report) => {
                record_outcomes(&report.outcomes, deliveries, &own);
                continue;
            }
            Err(e) if leaves_pending(&e, shutdown) => {
                stop = Some(e.to_string());
                for (_, r) in &own {
                    standings[index].unfinished.push(Unfinished {
                        row: r.row,
                        error: e.to_string(),
                        never: false,
                    });
                }
                continue;
            }
            Err(_) => {}
        }
        for (i, row) in &own {
            if let Some(error) = &stop {
                standings[index].unfinished.push(Unfinished {
                    row: row.row,
                    error: error.clone(),
                    never: false,
                });
                continue;
            }
            let single = [*row];
            if last_touch.elapsed() >= touch_every {
                keep_claimed(shared, partition, &ids).await;
                last_touch = Instant::now();
            }
            let row_span = tracing::info_span!("isolate_row", line = row.row.line, identity = %row.row.identity);
            match run_with_retry(shared, run, &single, &ids, shutdown, ROW_PATIENCE)
                .instrument(row_span)
                .await
            {
                Ok(report) => record_outcomes(&report.outcomes, deliveries, &[(*i, *row)]),
                Err(e) => {
                    tracing::warn!(entry = %delivery.id, line = row.row.line, identity = %Visible(&row.row.identity), error = %Visible(&e), "row failed");
                    if leaves_pending(&e, shutdown) {
                        stop = Some(e.to_string());
                    }
                    standings[index].unfinished.push(Unfinished {
                        row: row.row,
                        error: e.to_string(),
                        never: e.never_succeeds(),
                    });
                }
            }
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

/// Dead letters, acknowledgements and error notes of one partition's batch in one atomic
/// pipeline (the partition's keys share one slot).
async fn finish(shared: &Shared, partition: u16, mut s: Settlement) {
    if s.ack.is_empty() && s.dead.is_empty() && s.retry.is_empty() {
        return;
    }
    if !s.dead.is_empty() {
        crate::housekeeping::stall_point("OMS_TEST_STOP_BEFORE_DEAD_LETTERS");
    }
    let Some(ended) = crate::dead_rows::record(shared, &s.dead).await else {
        return;
    };
    // Their delivery is acknowledged all the same: its other rows are dead, these done.
    s.dead
        .retain(|d| d.import_id == 0 || !ended.contains(&(d.import_id, d.line)));
    let keys = &shared.keys;
    let mut pipe = redis::pipe();
    pipe.atomic();
    push_partition_dead_letters(&mut pipe, keys, partition, &s.dead);
    if !s.ack.is_empty() {
        pipe.cmd("XACK")
            .arg(keys.stream(partition))
            .arg(CONSUMER_GROUP)
            .arg(&s.ack)
            .ignore();
        pipe.cmd("HDEL")
            .arg(keys.partition_message_errors(partition))
            .arg(&s.ack)
            .ignore();
    }
    for (id, error) in &s.retry {
        pipe.cmd("HSET")
            .arg(keys.partition_message_errors(partition))
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
        if shared.keys.is_partitioned() {
            metrics::gauge!(DEAD_LETTERS, "partition" => partition.to_string())
                .increment(s.dead.len() as f64);
        } else {
            metrics::gauge!(DEAD_LETTERS).increment(s.dead.len() as f64);
        }
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
        tracing::debug!(import_id = row.import_id, line = row.row.line, identity = %Visible(&row.row.identity), outcome = key.0, reason = key.1, "order finished");
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
