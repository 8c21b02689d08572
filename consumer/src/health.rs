//! Readiness shared between the tasks: whether MySQL and Redis answered lately. Intake
//! stops taking work while not ready; `/readyz` reports it.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::READY;

#[derive(Debug, Default)]
pub struct Health {
    mysql_down: AtomicBool,
    redis_down: AtomicBool,
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
        !self.mysql_down.load(Ordering::SeqCst) && !self.redis_down.load(Ordering::SeqCst)
    }
}
