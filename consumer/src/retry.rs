//! The consumer's retry policy, in one place: exponential backoff, sleeps that end at
//! shutdown, and the one loop that (re)connects while a server is unreachable.

use std::future::Future;
use std::time::Duration;

use oms_shared::OmsError;
use tokio_util::sync::CancellationToken;

/// Exponential backoff from 100 ms to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

/// Sleeps `d` unless shutdown comes first; true when shutdown came.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.cancelled() => true,
    }
}

/// Runs `connect` until it succeeds, retrying the errors `retryable` accepts (saying so)
/// with a backoff of at least 1 s; any other error is returned. `None` when `shutdown`
/// came first.
pub async fn until_connected<T, F, Fut>(
    shutdown: &CancellationToken,
    retryable: fn(&OmsError) -> bool,
    mut connect: F,
) -> Result<Option<T>, OmsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OmsError>>,
{
    let mut attempt = 0;
    loop {
        match connect().await {
            Ok(value) => return Ok(Some(value)),
            Err(e) if retryable(&e) => {
                attempt += 1;
                let wait = backoff(attempt).max(Duration::from_secs(1));
                tracing::warn!("{e}; retrying in {wait:?}");
                if sleep_or_shutdown(wait, shutdown).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_100_ms_to_5_s() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert!(backoff(3) < backoff(4));
        assert_eq!(backoff(6), Duration::from_secs(5));
        assert_eq!(backoff(60), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn until_connected_retries_what_it_may_and_returns_the_rest() {
        let shutdown = CancellationToken::new();
        let mut calls = 0;
        let got = until_connected(
            &shutdown,
            |_| true,
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 2 {
                        Err(OmsError::Contention("not yet".into()))
                    } else {
                        Ok(n)
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(got, Some(2));
        let refused = until_connected(
            &shutdown,
            |_| false,
            || async { Err::<(), _>(OmsError::Contention("no".into())) },
        )
        .await;
        assert!(refused.is_err());
        shutdown.cancel();
        let stopped = until_connected(
            &shutdown,
            |_| true,
            || async { Err::<(), _>(OmsError::Contention("down".into())) },
        )
        .await
        .unwrap();
        assert_eq!(stopped, None);
    }
}
