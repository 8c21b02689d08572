//! Live order counts for the operator API ([`oms_shared::redis::order_stats`]): after each workflow
//! run, the terminal outcomes go to Redis in one pipeline, best effort (a failure is logged
//! and the batch goes on: these counters feed charts, MySQL stays the source of truth).

use std::time::Duration;

use oms_shared::redis::order_stats::{self, Outcomes};
use oms_shared::store::orders::RowOutcome;

use crate::state::Shared;

/// Terminal outcomes among `outcomes` (completed and failed; duplicates are not orders).
pub fn terminal(outcomes: &[RowOutcome]) -> Outcomes {
    let mut out = Outcomes::default();
    for o in outcomes {
        match o {
            RowOutcome::Completed => out.completed += 1,
            RowOutcome::Failed(reason) => *out.failed.entry(reason.as_str()).or_default() += 1,
            _ => {}
        }
    }
    out
}

/// Adds the run's terminal outcomes to the live counters, giving up after a second.
pub async fn record(shared: &Shared, outcomes: &[RowOutcome]) {
    let counts = terminal(outcomes);
    if counts.is_empty() {
        return;
    }
    let now = chrono::Utc::now().timestamp();
    let write = async {
        let mut conn = shared.redis.get().await?;
        order_stats::record(&mut *conn, &shared.keys, now, &counts).await
    };
    match tokio::time::timeout(Duration::from_secs(1), write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "live order counts not updated"),
        Err(_) => tracing::debug!("live order counts not updated: timeout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_shared::store::orders::FailureReason;

    #[test]
    fn only_completed_and_failed_orders_count() {
        let o = terminal(&[
            RowOutcome::Completed,
            RowOutcome::Completed,
            RowOutcome::Failed(FailureReason::PaymentDeclined),
            RowOutcome::Duplicate,
            RowOutcome::AlreadyProcessed,
            RowOutcome::Reserved,
        ]);
        assert_eq!(o.completed, 2);
        assert_eq!(o.failed.get("payment_declined"), Some(&1));
        assert_eq!(o.failed_total(), 1);
    }
}
