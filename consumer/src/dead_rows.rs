//! The durable record of dead-lettered rows: written to MySQL before the `MULTI` that
//! dead-letters and acknowledges them (`batch::finish`), so an import's dead count
//! survives `failed purge` of the dead-letter stream. Rows that ended after all (an
//! earlier holder committed them and an outage swallowed its answer) are found in the
//! same step and are not dead-lettered: no row is ever both done and dead.

use std::collections::HashSet;

use oms_shared::queue::DeadLetter;
use oms_shared::store::dead_letters::DeadRow;

use crate::health::Service;
use crate::state::Shared;
use oms_shared::retry::RetryPolicy;

/// Records the dead rows in MySQL (`dead_lettered_rows`, idempotent) before they are
/// dead-lettered and acknowledged: an import's dead count must survive `failed purge`.
/// Returns the rows (import id, line) that ended after all, which the caller must not
/// dead-letter; they are not recorded. Rows of undecodable entries (import 0) are not an
/// import's. `None` when MySQL could not be reached after a few tries: the entries then
/// stay pending and come back.
pub async fn record(shared: &Shared, dead: &[DeadLetter]) -> Option<HashSet<(u64, u64)>> {
    let rows: Vec<DeadRow<'_>> = dead
        .iter()
        .filter(|d| d.import_id != 0)
        .map(|d| DeadRow {
            import_id: d.import_id,
            line: d.line,
            identity: &d.identity,
        })
        .collect();
    if rows.is_empty() {
        return Some(HashSet::new());
    }
    let mark_down = |e: &oms_shared::OmsError, _| {
        if e.is_transient() {
            shared.health.down(Service::Mysql, e);
        }
    };
    let recorded = RetryPolicy::FEW_TRIES
        .run(None, mark_down, || ended_and_record(shared, &rows))
        .await;
    match recorded {
        Ok(ended) => {
            shared.health.up(Service::Mysql);
            Some(ended)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record dead rows; entries stay pending");
            None
        }
    }
}

/// Finds the rows that ended after all, then records the others.
async fn ended_and_record(
    shared: &Shared,
    rows: &[DeadRow<'_>],
) -> oms_shared::Result<HashSet<(u64, u64)>> {
    let ended = oms_shared::store::dead_letters::ended(&shared.db, rows).await?;
    if !ended.is_empty() {
        tracing::info!(
            rows = ended.len(),
            "rows to dead-letter had ended after all (an earlier delivery committed them): acknowledged, not dead-lettered"
        );
    }
    let dead: Vec<DeadRow<'_>> = rows
        .iter()
        .filter(|r| !ended.contains(&(r.import_id, r.line)))
        .cloned()
        .collect();
    oms_shared::store::dead_letters::record(&shared.db, &dead).await?;
    Ok(ended)
}
