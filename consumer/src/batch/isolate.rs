//! Poison isolation: when a batch fails as a whole, each delivery is run alone, then each
//! row of a failing delivery alone, so healthy rows complete and only the failing ones
//! stay unfinished (identities make the re-runs no-ops).

use std::time::Instant;

use oms_shared::store::orders::BatchRow;
use oms_shared::untrusted_text::Visible;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::run::{keep_claimed, leaves_pending, run_with_retry};
use super::{record_outcomes, Standing, Unfinished, ROW_PATIENCE};
use crate::batch_traces::RunLabels;
use crate::intake::Delivery;
use crate::state::Shared;

/// Runs each delivery alone, then each row of a failing delivery alone, noting in
/// `standings` the rows that did not end. Stops trying once a server is unreachable or
/// shutdown has begun: the rest stays unfinished with that error.
// Long on purpose: the two levels of isolation (delivery, then row) and their stop
// conditions (outage, shutdown) read as one procedure.
pub(super) async fn isolate<'a>(
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
