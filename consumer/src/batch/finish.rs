//! The end of a batch: dead rows recorded in MySQL (those that ended after all dropped,
//! entries with a reserved order left pending, [`crate::dead_rows`]), then dead letters, acknowledgements and error notes in one
//! atomic pipeline ([`queue::acknowledgement`]), retried a few times while Redis is down.

use std::time::Instant;

use oms_shared::redis::queue;
use oms_shared::Result;

use super::Settlement;
use crate::health::Service;
use crate::metrics::{DEAD_LETTERS, MESSAGES, REDIS_DURATION};
use crate::state::Shared;
use oms_shared::retry::RetryPolicy;

/// Dead letters, acknowledgements and error notes of one partition's batch in one atomic
/// pipeline (the partition's keys share one slot).
pub(super) async fn finish(shared: &Shared, partition: u16, mut s: Settlement) {
    if s.ack.is_empty() && s.dead.is_empty() && s.retry.is_empty() {
        return;
    }
    if !s.dead.is_empty() {
        crate::housekeeping::stall_point("OMS_TEST_STOP_BEFORE_DEAD_LETTERS");
    }
    let Some(fates) = crate::dead_rows::record(shared, &s.dead).await else {
        return;
    };
    // Rows that ended: their delivery is acknowledged all the same (its other rows dead).
    s.dead
        .retain(|d| d.import_id == 0 || !fates.ended.contains(&(d.import_id, d.line)));
    // Entries with a reserved order stay pending whole: their next delivery settles it.
    if !fates.unsettled_entries.is_empty() {
        let held = &fates.unsettled_entries;
        s.dead.retain(|d| !held.contains(&d.source_id));
        s.ack.retain(|id| !held.contains(id));
        s.retry.extend(held.iter().map(|id| {
            (
                id.clone(),
                "an earlier delivery reserved an order of this entry; the next one settles it"
                    .to_string(),
            )
        }));
    }
    let pipe = queue::acknowledgement(&shared.keys, partition, &s.ack, &s.dead, &s.retry);
    let started = Instant::now();
    let acknowledge = || async {
        let mut conn = shared.redis.get().await?;
        pipe.query_async::<()>(&mut *conn).await?;
        Result::<()>::Ok(())
    };
    let mark_down = |e: &oms_shared::OmsError, _| shared.health.down(Service::Redis, e);
    match RetryPolicy::FEW_TRIES
        .run(None, mark_down, acknowledge)
        .await
    {
        Ok(()) => shared.health.up(Service::Redis),
        Err(e) => {
            // Entries stay pending and are claimed again later; effects are idempotent.
            tracing::error!(error = %e, "could not acknowledge; entries stay pending");
            return;
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
