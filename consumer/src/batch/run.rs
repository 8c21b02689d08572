//! The workflow of a batch's rows (reserve, settle, apply to the read models) and its
//! in-process retries: transient errors are retried with backoff while the entries stay
//! claimed, for `--claim-idle-secs` during an outage, else for a patience the caller gives.

use std::time::{Duration, Instant};

use oms_shared::error::FailureClass;
use oms_shared::redis::queue;
use oms_shared::store::orders::{reserve_stock, settle_payments_checked, BatchRow, RowOutcome};
use oms_shared::{OmsError, Result};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::DRAIN_ATTEMPTS;
use crate::batch_traces::{phase_span, Phase, RunLabels};
use crate::health::{Rewound, Service};
use crate::metrics::{MYSQL_DURATION, REDIS_DURATION, RETRIES, REVENUE_CENTS, WRITE_CONFLICTS};
use crate::state::Shared;
use oms_shared::retry::{sleep_or_shutdown, RetryPolicy};

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
    crate::housekeeping::stall_point("OMS_TEST_STOP_BEFORE_SETTLE");

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
            oms_shared::redis::read_model::apply_outbox_replicated(
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
                    crate::housekeeping::stall_point("OMS_TEST_STOP_AFTER_APPLY");
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
/// likewise when MySQL's sequence, read now (after Redis, as the rule wants; a causal read
/// on Galera), is no longer behind: the settle's id came from a Galera node that had not
/// yet applied the latest writesets (that transaction would have failed certification).
/// Else MySQL went back in time: recorded in `health` (intake stops; housekeeping
/// resumes when the record is reset) and the batch's entries stay pending.
async fn confirm_rewind(shared: &Shared, sequence: u64) -> OmsError {
    let cached = shared.applied_mark();
    let reading = async {
        let mut conn = shared.redis.get().await?;
        oms_shared::redis::read_model::read_applied_mark(&mut *conn, &shared.keys).await
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
    let applied = reading.applied_max.max(cached.applied_max);
    let sequence = match oms_shared::store::outbox::last_id(&shared.db).await {
        Ok(now) if !oms_shared::store::outbox::history_rewound(now, applied) => {
            return OmsError::Contention(format!(
                "the outbox sequence read {sequence} below the applied id {applied}, \
                 but is {now} now (a lagging node); settling again"
            ));
        }
        Ok(now) => now.min(sequence),
        Err(e) => return e,
    };
    let rewound = Rewound {
        generation: reading.generation,
        sequence,
        applied,
    };
    shared.health.set_rewound(rewound);
    rewound.error()
}

/// Errors after which a batch's entries are left pending as they are, to be delivered
/// again later: a transient error at shutdown or while a server is unreachable, and
/// MySQL gone back in time (nothing may settle until the operator's fix).
pub(super) fn leaves_pending(e: &OmsError, shutdown: &CancellationToken) -> bool {
    matches!(e, OmsError::HistoryRewound { .. })
        || e.class() == FailureClass::Outage
        || (e.is_transient() && shutdown.is_cancelled())
}

/// Runs the workflow, retrying transient errors with backoff while keeping `ids` claimed:
/// for `--claim-idle-secs` while a server is unreachable, else for `patience`, and for
/// [`DRAIN_ATTEMPTS`] tries once shutdown has begun. Returns the last error.
pub(super) async fn run_with_retry(
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
                if e.is_write_conflict() {
                    metrics::counter!(WRITE_CONFLICTS).increment(1);
                }
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
                let wait = RetryPolicy::CONSUMER.wait(attempt + 1);
                if shutdown.is_cancelled() {
                    drain_attempts += 1;
                    if drain_attempts > DRAIN_ATTEMPTS {
                        return Err(e);
                    }
                    tokio::time::sleep(wait.min(Duration::from_millis(500))).await;
                } else {
                    sleep_or_shutdown(wait, shutdown).await;
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
pub(super) async fn keep_claimed(shared: &Shared, partition: u16, ids: &[&str]) {
    let Ok(mut conn) = shared.redis.get().await else {
        return;
    };
    let _ = queue::keep_claimed(&mut *conn, &shared.keys, partition, &shared.name, ids).await;
}

/// Revenue of orders committed as completed.
fn record_revenue(cents: i64) {
    if cents > 0 {
        metrics::counter!(REVENUE_CENTS).increment(cents as u64);
    }
}
