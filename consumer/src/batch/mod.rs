//! Processing one batch: the order workflow for its rows, then acknowledgements.
//!
//! Where each step lives: [`run`] (the workflow and its in-process retries),
//! [`isolate`] (poison isolation), [`settle`] (the pure decision per delivery), [`finish`]
//! (dead rows recorded in MySQL, then one atomic acknowledgement through
//! `oms_shared::redis::queue::acknowledgement`).
//!
//! Every entry ends acknowledged within `--max-attempts` deliveries, whatever goes wrong:
//!
//! 1. Entries that cannot be decoded (malformed, oversized, empty, unknown version) and rows
//!    that break a limit of `order::rules` are dead-lettered at once with their reason: no
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
//!    while an outage swallowed the answer is acknowledged, never dead-lettered too, and
//!    an entry with an order an earlier holder reserved stays pending for the next
//!    delivery to settle ([`crate::dead_rows`]). That step and the reserve exclude each
//!    other (`store::dead_letters`): an earlier holder still at work cannot create an
//!    order for a row dead-lettered meanwhile.
//! 4. After shutdown began, a transient error gets [`DRAIN_ATTEMPTS`] more tries, then the
//!    entries stay pending for another consumer (no attempt is spent, nothing is dead).
//! 5. When MySQL went back in time (`OmsError::HistoryRewound`: the settle's new outbox id
//!    is not above what Redis applied), the batch's entries stay pending as they are, and

mod finish;
mod isolate;
mod run;
mod settle;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_shared::order::OrderRow;
use oms_shared::redis::queue::{parse_stream_id, DeadLetter};
use oms_shared::store::orders::{BatchRow, RowOutcome};
use oms_shared::untrusted_text::Visible;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch_traces::{batch_span, RunLabels};
use crate::intake::{Batch, Delivery};
use crate::metrics::{BATCH_DURATION, BATCH_ROWS, IN_FLIGHT_ROWS, ORDERS, ORDER_DURATION};
use crate::state::Shared;

use finish::finish;
use isolate::isolate;
use run::{leaves_pending, run_with_retry};
use settle::settle;

/// How long a batch retries a transient error while the servers answer (deadlock,
/// contention, a read-only server) before its rows are tried apart.
pub const BATCH_PATIENCE: Duration = Duration::from_secs(10);
/// How long one entry, or one row, alone retries a transient error while isolating.
pub const ROW_PATIENCE: Duration = Duration::from_secs(2);
/// Tries a transient error still gets once shutdown has begun.
pub const DRAIN_ATTEMPTS: u32 = 5;

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
pub(crate) struct Settlement {
    ack: Vec<String>,
    dead: Vec<DeadLetter>,
    /// Entries left pending, with their last error.
    retry: Vec<(String, String)>,
}

/// A row of a delivery that has not ended, and why.
pub(crate) struct Unfinished<'a> {
    row: &'a OrderRow,
    error: String,
    /// No retry can make it succeed: dead-lettered at once.
    never: bool,
}

/// Where one delivery stands after its rows ran.
#[derive(Default)]
pub(crate) struct Standing<'a> {
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
