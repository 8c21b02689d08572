//! The one retry policy of the system, as a value: which errors are retried (a predicate,
//! by default [`OmsError::is_transient`], i.e. [`FailureClass`] Outage or Transient), how
//! long to wait between tries (exponential backoff between a floor and a ceiling), and
//! when to give up (after a number of retries, after a time budget, or never), with waits
//! that end at shutdown. Every loop that tries an operation again is a [`RetryPolicy`] and
//! its [`RetryPolicy::run`]: the consumer's start-up, dead-row records and
//! acknowledgements, the producer's enqueue; the loops that keep their own state (the
//! consumer's batch retries and intake, `--wait`'s outage reader) take their waits from
//! [`RetryPolicy::wait`].
//!
//! [`FailureClass`]: crate::error::FailureClass

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::OmsError;

/// When a [`RetryPolicy`] stops retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// After this many retries (so `n + 1` tries in all).
    After(u32),
    /// Once this long has passed since the first try.
    Budget(Duration),
    /// Never: only success, an error not retried or shutdown end the loop.
    Never,
}

/// Why [`RetryPolicy::run`] returned without a value.
#[derive(Debug)]
pub enum Stopped {
    /// The last error: not retryable, or the policy gave up.
    GaveUp(OmsError),
    /// Shutdown came while waiting to try again.
    Shutdown,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::GaveUp(e) => write!(f, "{e}"),
            Stopped::Shutdown => f.write_str("stopped by shutdown"),
        }
    }
}

/// What is retried, how long to wait, when to give up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    first_wait: Duration,
    max_wait: Duration,
    min_wait: Duration,
    give_up: GiveUp,
    retry_if: fn(&OmsError) -> bool,
}

impl RetryPolicy {
    /// Transient errors, retried for ever, waiting `first_wait` doubling to `max_wait`.
    pub const fn backoff(first_wait: Duration, max_wait: Duration) -> Self {
        RetryPolicy {
            first_wait,
            max_wait,
            min_wait: Duration::ZERO,
            give_up: GiveUp::Never,
            retry_if: OmsError::is_transient,
        }
    }

    /// The consumer's backoff: 100 ms doubling to 5 s, transient errors, for ever.
    pub const CONSUMER: RetryPolicy =
        RetryPolicy::backoff(Duration::from_millis(100), Duration::from_secs(5));

    /// (Re)connecting to a server at start-up: the consumer's backoff, at least 1 s apart.
    pub const CONNECT: RetryPolicy = RetryPolicy::CONSUMER.at_least(Duration::from_secs(1));

    /// A short step that must not wait long (recording dead rows, acknowledging): any
    /// error, 5 retries with the consumer's backoff (about 3 s in all); the entries stay
    /// pending and come back if it still fails.
    pub const FEW_TRIES: RetryPolicy = RetryPolicy::CONSUMER
        .give_up(GiveUp::After(5))
        .retry_if(|_| true);

    /// The same policy, giving up as `give_up` says.
    pub const fn give_up(self, give_up: GiveUp) -> Self {
        RetryPolicy { give_up, ..self }
    }

    /// The same policy, retrying the errors `retry_if` accepts.
    pub const fn retry_if(self, retry_if: fn(&OmsError) -> bool) -> Self {
        RetryPolicy { retry_if, ..self }
    }

    /// The same policy, waiting at least `min_wait` between tries.
    pub const fn at_least(self, min_wait: Duration) -> Self {
        RetryPolicy { min_wait, ..self }
    }

    /// The wait after the `failures`th failure in a row (1 for the first; 0 counts as 1):
    /// `first_wait` doubling, within `min_wait..=max_wait`. Pure.
    pub fn wait(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.first_wait
            .saturating_mul(1 << doublings)
            .min(self.max_wait)
            .max(self.min_wait)
    }

    /// True when an error may be retried after `failures` failures in a row that began at
    /// `started`. Pure but for the clock.
    pub fn retries(&self, error: &OmsError, failures: u32, started: Instant) -> bool {
        (self.retry_if)(error)
            && match self.give_up {
                GiveUp::After(n) => failures <= n,
                GiveUp::Budget(budget) => started.elapsed() < budget,
                GiveUp::Never => true,
            }
    }

    /// Runs `op` until it succeeds, the policy gives up, or `shutdown` (when given) comes
    /// while waiting. Before each wait `on_retry(error, wait)` is told, to log or to mark
    /// a server down.
    pub async fn run<T, F, Fut>(
        &self,
        shutdown: Option<&CancellationToken>,
        mut on_retry: impl FnMut(&OmsError, Duration),
        mut op: F,
    ) -> Result<T, Stopped>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, OmsError>>,
    {
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    failures += 1;
                    if !self.retries(&e, failures, started) {
                        return Err(Stopped::GaveUp(e));
                    }
                    let wait = self.wait(failures);
                    on_retry(&e, wait);
                    match shutdown {
                        Some(token) if sleep_or_shutdown(wait, token).await => {
                            return Err(Stopped::Shutdown)
                        }
                        Some(_) => {}
                        None => tokio::time::sleep(wait).await,
                    }
                }
            }
        }
    }
}

/// [`RetryPolicy::run`]'s result with shutdown as `None`, for a caller that just stops
/// at shutdown.
pub fn none_at_shutdown<T>(result: Result<T, Stopped>) -> Result<Option<T>, OmsError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Stopped::Shutdown) => Ok(None),
        Err(Stopped::GaveUp(e)) => Err(e),
    }
}

/// Sleeps `d` unless shutdown comes first; true when shutdown came.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_to_the_ceiling_above_the_floor() {
        let p = RetryPolicy::CONSUMER;
        assert_eq!(p.wait(0), Duration::from_millis(100));
        assert_eq!(p.wait(1), Duration::from_millis(100));
        assert_eq!(p.wait(2), Duration::from_millis(200));
        assert!(p.wait(4) < p.wait(5));
        assert_eq!(p.wait(7), Duration::from_secs(5));
        assert_eq!(p.wait(u32::MAX), Duration::from_secs(5));
        assert_eq!(RetryPolicy::CONNECT.wait(1), Duration::from_secs(1));
        assert_eq!(RetryPolicy::CONNECT.wait(9), Duration::from_secs(5));
    }

    #[test]
    fn what_is_retried_and_for_how_long() {
        let transient = OmsError::Contention("busy".into());
        let permanent = OmsError::Config("wrong".into());
        let now = Instant::now();
        assert!(RetryPolicy::CONSUMER.retries(&transient, 1_000, now));
        assert!(!RetryPolicy::CONSUMER.retries(&permanent, 1, now));
        assert!(RetryPolicy::FEW_TRIES.retries(&permanent, 5, now));
        assert!(!RetryPolicy::FEW_TRIES.retries(&permanent, 6, now));
        let budget = RetryPolicy::CONSUMER.give_up(GiveUp::Budget(Duration::from_secs(60)));
        assert!(budget.retries(&transient, 50, now));
        let long_ago = now - Duration::from_secs(61);
        assert!(!budget.retries(&transient, 1, long_ago));
    }

    #[tokio::test]
    async fn run_retries_what_it_may_gives_up_and_stops_at_shutdown() {
        let ms = Duration::from_millis;
        let quick = RetryPolicy::backoff(ms(1), ms(2));
        let shutdown = CancellationToken::new();
        let mut calls = 0;
        let mut told = Vec::new();
        let got = quick
            .run(
                Some(&shutdown),
                |_, wait| told.push(wait),
                || {
                    calls += 1;
                    let n = calls;
                    async move {
                        if n < 3 {
                            Err(OmsError::Contention("not yet".into()))
                        } else {
                            Ok(n)
                        }
                    }
                },
            )
            .await
            .unwrap();
        assert_eq!(got, 3);
        assert_eq!(told, [ms(1), ms(2)]);

        let mut tries = 0;
        let few = quick.give_up(GiveUp::After(5)).retry_if(|_| true);
        let refused = few
            .run(
                None,
                |_, _| {},
                || {
                    tries += 1;
                    async { Err::<(), _>(OmsError::Config("no".into())) }
                },
            )
            .await;
        assert!(matches!(refused, Err(Stopped::GaveUp(OmsError::Config(_)))));
        assert_eq!(tries, 6, "one try and five retries");

        shutdown.cancel();
        let stopped = RetryPolicy::CONNECT
            .run(
                Some(&shutdown),
                |_, _| {},
                || async { Err::<(), _>(OmsError::Contention("down".into())) },
            )
            .await;
        assert!(matches!(stopped, Err(Stopped::Shutdown)));
    }
}
