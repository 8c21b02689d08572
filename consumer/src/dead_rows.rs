//! The durable record of dead-lettered rows: written to MySQL before the `MULTI` that
//! dead-letters and acknowledges them (`workflow::finish`), so an import's dead count
//! survives `failed purge` of the dead-letter stream.

use oms_shared::queue::DeadLetter;
use oms_shared::store::dead_letters::DeadRow;

use crate::health::Service;
use crate::retry::backoff;
use crate::state::Shared;

/// Records the dead rows in MySQL (`dead_lettered_rows`, idempotent) before they are
/// dead-lettered and acknowledged: an import's dead count must survive `failed purge`.
/// Rows of undecodable entries (import 0) are not an import's. False when MySQL could not
/// be reached after a few tries: the entries then stay pending and come back.
pub async fn record(shared: &Shared, dead: &[DeadLetter]) -> bool {
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
        return true;
    }
    let mut attempt = 0u32;
    loop {
        match oms_shared::store::dead_letters::record(&shared.db, &rows).await {
            Ok(()) => {
                shared.health.up(Service::Mysql);
                return true;
            }
            Err(e) if attempt < 5 => {
                if e.is_transient() {
                    shared.health.down(Service::Mysql, &e);
                }
                attempt += 1;
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record dead rows; entries stay pending");
                return false;
            }
        }
    }
}
