//! Readiness shared between the tasks: whether MySQL and Redis answered lately, and
//! whether MySQL went back in time ([`Rewound`]). Intake stops taking work while not
//! ready; `/readyz` reports it, through a [`ReadinessCache`] so that a flood of requests
//! costs the servers one check per second at most.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::{HISTORY_REWOUND, READY};

#[derive(Debug, Default)]
pub struct Health {
    mysql_down: AtomicBool,
    redis_down: AtomicBool,
    rewound: Mutex<Option<Rewound>>,
}

/// MySQL went back in time: its outbox sequence is below an id Redis applied under
/// `generation` of the applied record. Holds until that generation changes (the
/// operator's `producer reconcile --fix` resets the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewound {
    pub generation: u64,
    pub sequence: u64,
    pub applied: u64,
}

impl Rewound {
    pub fn error(&self) -> oms_shared::OmsError {
        oms_shared::OmsError::HistoryRewound {
            sequence: self.sequence,
            applied: self.applied,
        }
    }
}

/// The service whose state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Mysql,
    Redis,
}

impl Service {
    pub fn label(self) -> &'static str {
        match self {
            Service::Mysql => "mysql",
            Service::Redis => "redis",
        }
    }
}

impl Health {
    fn flag(&self, service: Service) -> &AtomicBool {
        match service {
            Service::Mysql => &self.mysql_down,
            Service::Redis => &self.redis_down,
        }
    }

    /// Records a failure; logs once when the service goes down.
    pub fn down(&self, service: Service, error: &dyn std::fmt::Display) {
        if !self.flag(service).swap(true, Ordering::SeqCst) {
            tracing::warn!(service = service.label(), %error, "lost connection, retrying with backoff");
        }
        metrics::gauge!(READY).set(0.0);
    }

    /// Records a success; counts a reconnection when the service was down.
    pub fn up(&self, service: Service) {
        if self.flag(service).swap(false, Ordering::SeqCst) {
            tracing::info!(service = service.label(), "connection restored");
            metrics::counter!(crate::metrics::RECONNECTS, "service" => service.label())
                .increment(1);
        }
        if self.is_ready() {
            metrics::gauge!(READY).set(1.0);
        }
    }

    pub fn is_ready(&self) -> bool {
        !self.mysql_down.load(Ordering::SeqCst)
            && !self.redis_down.load(Ordering::SeqCst)
            && self.rewound().is_none()
    }

    /// Whether MySQL went back in time (and the record was not reset since).
    pub fn rewound(&self) -> Option<Rewound> {
        *self.rewound.lock().expect("rewound lock")
    }

    /// Records that MySQL went back in time; logs one ERROR line when it is news.
    pub fn set_rewound(&self, rewound: Rewound) {
        let was = self.rewound.lock().expect("rewound lock").replace(rewound);
        metrics::gauge!(HISTORY_REWOUND).set(1.0);
        metrics::gauge!(READY).set(0.0);
        if was.is_none() {
            tracing::error!(
                sequence = rewound.sequence,
                applied = rewound.applied,
                "{}; settling and applying stopped until then",
                rewound.error()
            );
        }
    }

    /// The applied record was reset (a new generation): work may resume.
    pub fn clear_rewound(&self) {
        if self.rewound.lock().expect("rewound lock").take().is_some() {
            tracing::info!("the read-model record was reset (reconcile --fix): resuming");
            metrics::gauge!(HISTORY_REWOUND).set(0.0);
            if self.is_ready() {
                metrics::gauge!(READY).set(1.0);
            }
        }
    }
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Which service failed, and how.
    NotReady(String),
}

/// The last readiness check, reused for `ttl`; concurrent requests wait for one check.
#[derive(Debug)]
pub struct ReadinessCache {
    ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

impl ReadinessCache {
    pub fn new(ttl: Duration) -> Self {
        ReadinessCache {
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached answer if younger than the TTL, else `check()`'s (then cached).
    pub async fn get_or_check<F, Fut>(&self, check: F) -> Readiness
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Readiness>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return answer.clone();
            }
        }
        let answer = check().await;
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn readiness_is_checked_once_per_ttl() {
        let cache = ReadinessCache::new(Duration::from_millis(300));
        let checks = AtomicUsize::new(0);
        let check = || async {
            checks.fetch_add(1, Ordering::SeqCst);
            Readiness::Ready
        };
        for _ in 0..100 {
            assert_eq!(cache.get_or_check(check).await, Readiness::Ready);
        }
        assert_eq!(checks.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let down = cache
            .get_or_check(|| async { Readiness::NotReady("redis: down".into()) })
            .await;
        assert_eq!(down, Readiness::NotReady("redis: down".into()));
        assert_eq!(
            cache.get_or_check(check).await,
            down,
            "cached, not re-checked"
        );
        assert_eq!(checks.load(Ordering::SeqCst), 1);
    }
}
