//! The decision that ends one decoded delivery once its rows ran: acknowledge it, dead-letter
//! its unfinished rows (and acknowledge it), or leave it pending for a later delivery.
//! [`verdict`] is the rule, pure and unit-tested; [`settle`] applies it to a delivery.

use tokio_util::sync::CancellationToken;

use super::{dead_letter, Settlement, Standing};
use crate::intake::Delivery;
use crate::state::Shared;

/// Where one delivery stands, as far as the rule is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryStanding {
    /// Rows that did not end.
    pub unfinished: usize,
    /// Of those, rows no retry can make succeed (they break a rule of the input).
    pub hopeless: usize,
    /// How many times the group has delivered the entry, this delivery included.
    pub deliveries: u64,
    /// `--max-attempts`.
    pub max_attempts: u64,
    /// No delivery may count as the last one now: shutdown has begun (another consumer
    /// takes the entry over), or MySQL went back in time (nothing may settle until the
    /// operator's fix).
    pub holding: bool,
}

/// What ends the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every row ended.
    Acknowledge,
    /// The unfinished rows go to the dead letters; the entry is acknowledged with them.
    DeadLetterUnfinished,
    /// The entry stays pending, to be delivered again.
    LeavePending,
}

/// The rule: acknowledged when every row ended; the unfinished rows dead-lettered when none
/// of them can ever succeed (at any delivery, even holding) or at the last delivery (unless
/// holding); else left pending.
pub fn verdict(s: DeliveryStanding) -> Verdict {
    let last_delivery = s.deliveries >= s.max_attempts;
    if s.unfinished == 0 {
        Verdict::Acknowledge
    } else if s.hopeless == s.unfinished || (last_delivery && !s.holding) {
        Verdict::DeadLetterUnfinished
    } else {
        Verdict::LeavePending
    }
}

/// Applies [`verdict`] to one decoded delivery, adding it to `settlement`.
pub(super) fn settle(
    shared: &Shared,
    delivery: &Delivery,
    standing: Standing<'_>,
    shutdown: &CancellationToken,
    settlement: &mut Settlement,
) {
    let unfinished = standing.unfinished;
    let standing = DeliveryStanding {
        unfinished: unfinished.len(),
        hopeless: unfinished.iter().filter(|u| u.never).count(),
        deliveries: delivery.deliveries,
        max_attempts: shared.config.max_attempts,
        holding: shutdown.is_cancelled() || shared.health.rewound().is_some(),
    };
    match verdict(standing) {
        Verdict::Acknowledge => settlement.ack.push(delivery.id.clone()),
        Verdict::DeadLetterUnfinished => {
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
        }
        Verdict::LeavePending => {
            let error = unfinished
                .iter()
                .map(|u| format!("line {}: {}", u.row.line, u.error))
                .collect::<Vec<_>>()
                .join("; ");
            settlement.retry.push((delivery.id.clone(), error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(unfinished: usize, hopeless: usize, deliveries: u64) -> DeliveryStanding {
        DeliveryStanding {
            unfinished,
            hopeless,
            deliveries,
            max_attempts: 3,
            holding: false,
        }
    }

    #[test]
    fn a_delivery_whose_rows_all_ended_is_acknowledged_whatever_its_count() {
        for deliveries in 1..=5 {
            let s = standing(0, 0, deliveries);
            assert_eq!(verdict(s), Verdict::Acknowledge);
            assert_eq!(
                verdict(DeliveryStanding { holding: true, ..s }),
                Verdict::Acknowledge
            );
        }
    }

    #[test]
    fn rows_that_can_never_succeed_are_dead_lettered_at_the_first_delivery_even_holding() {
        let s = standing(2, 2, 1);
        assert_eq!(verdict(s), Verdict::DeadLetterUnfinished);
        assert_eq!(
            verdict(DeliveryStanding { holding: true, ..s }),
            Verdict::DeadLetterUnfinished
        );
    }

    #[test]
    fn a_retryable_row_keeps_its_delivery_pending_until_the_last_delivery() {
        assert_eq!(verdict(standing(1, 0, 1)), Verdict::LeavePending);
        assert_eq!(verdict(standing(1, 0, 2)), Verdict::LeavePending);
        // With a hopeless row beside it, the whole delivery waits for the last one.
        assert_eq!(verdict(standing(2, 1, 2)), Verdict::LeavePending);
        assert_eq!(verdict(standing(1, 0, 3)), Verdict::DeadLetterUnfinished);
        assert_eq!(verdict(standing(2, 1, 3)), Verdict::DeadLetterUnfinished);
        // Claimed again past the limit (a consumer died at its last delivery).
        assert_eq!(verdict(standing(1, 0, 7)), Verdict::DeadLetterUnfinished);
    }

    #[test]
    fn while_holding_no_delivery_counts_as_the_last_one() {
        let s = DeliveryStanding {
            holding: true,
            ..standing(1, 0, 3)
        };
        assert_eq!(verdict(s), Verdict::LeavePending);
        let s = DeliveryStanding {
            holding: true,
            ..standing(3, 1, 9)
        };
        assert_eq!(verdict(s), Verdict::LeavePending);
    }

    #[test]
    fn one_attempt_allowed_means_the_first_delivery_is_the_last() {
        let s = DeliveryStanding {
            max_attempts: 1,
            ..standing(1, 0, 1)
        };
        assert_eq!(verdict(s), Verdict::DeadLetterUnfinished);
    }
}
