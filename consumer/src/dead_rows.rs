//! The durable record of dead-lettered rows: written to MySQL before the `MULTI` that
//! dead-letters and acknowledges them (`batch::finish`), so an import's dead count
//! survives `failed purge` of the dead-letter stream. Rows that ended after all (an
//! earlier holder committed them and an outage swallowed its answer) are found in the
//! same step and are not dead-lettered, and an entry with a row an earlier delivery
//! reserved stays pending: no row is ever both an order and dead
//! (`oms_shared::store::dead_letters::record_unless_ended` excludes the reserve).

use oms_shared::redis::queue::DeadLetter;
use oms_shared::store::dead_letters::{DeadRow, DeadRowFates};

use crate::health::Service;
use crate::state::Shared;
use oms_shared::retry::RetryPolicy;

/// Records the dead rows in MySQL (`dead_lettered_rows`) before they are dead-lettered
/// and acknowledged: an import's dead count must survive `failed purge`. In the same
/// transaction, rows that ended after all are found (the caller acknowledges them and
/// does not dead-letter them), and entries with a row an earlier delivery reserved (the
/// caller leaves them pending; their next delivery settles it); neither is recorded.
/// Rows of undecodable entries (import 0) are not an import's. `None` when MySQL could
/// not be reached after a few tries: the entries then stay pending and come back.
pub async fn record(shared: &Shared, dead: &[DeadLetter]) -> Option<DeadRowFates> {
    let rows: Vec<DeadRow<'_>> = dead
        .iter()
        .filter(|d| d.import_id != 0)
        .map(|d| DeadRow {
            import_id: d.import_id,
            line: d.line,
            identity: &d.identity,
            entry: &d.source_id,
        })
        .collect();
    if rows.is_empty() {
        return Some(DeadRowFates::default());
    }
    let mark_down = |e: &oms_shared::OmsError, _| {
        if e.is_transient() {
            shared.health.down(Service::Mysql, e);
        }
    };
    let recorded = RetryPolicy::FEW_TRIES
        .run(None, mark_down, || {
            oms_shared::store::dead_letters::record_unless_ended(&shared.db, &rows)
        })
        .await;
    match recorded {
        Ok(fates) => {
            shared.health.up(Service::Mysql);
            if !fates.ended.is_empty() {
                tracing::info!(
                    rows = fates.ended.len(),
                    "rows to dead-letter had ended after all (an earlier delivery committed them): acknowledged, not dead-lettered"
                );
            }
            if !fates.unsettled_entries.is_empty() {
                tracing::info!(
                    entries = fates.unsettled_entries.len(),
                    "rows to dead-letter have orders an earlier delivery reserved: their entries stay pending, the next delivery settles them"
                );
            }
            Some(fates)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record dead rows; entries stay pending");
            None
        }
    }
}
