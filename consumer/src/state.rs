//! State shared by the consumer's tasks: one [`Shared`] per process, built by
//! [`crate::app::run`] and handed (in an `Arc`) to intake, workers, housekeeping, the pause
//! watcher and the HTTP endpoints. This module imports none of those tasks, so no module
//! of the consumer imports one that imports it back.

use std::sync::Mutex;

use oms_shared::order::payment::PaymentSimulator;
use oms_shared::redis::conn::{RedisPool, ReplicaWait};
use oms_shared::redis::keys::StreamKeys;
use oms_shared::redis::read_model::AppliedMark;
use sqlx::MySqlPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;
use crate::health::Health;
use crate::metrics::{PAUSED, REDIS_DATA_LOST};

/// What every task of the process shares.
pub struct Shared {
    pub config: ConsumerConfig,
    pub name: String,
    pub keys: StreamKeys,
    pub db: MySqlPool,
    pub redis: RedisPool,
    /// Replicas a read-model update must reach before its outbox row is deleted.
    pub replica_wait: ReplicaWait,
    pub payment: PaymentSimulator,
    pub health: Health,
    /// `P queue:paused` as last read, and whether Redis lost its data ([`crate::pause`]).
    pub pause: PauseFlag,
    applied_outbox: Mutex<Vec<u64>>,
    /// A lower bound of Redis's highest applied outbox id (and its generation), from the
    /// applies' replies and housekeeping's readings: each settle checks its new id
    /// against it.
    applied_mark: Mutex<AppliedMark>,
}

impl Shared {
    /// The state of a consumer that has connected to both servers; `paused` is the pause
    /// flag read at start (a consumer started while paused starts paused), `lost` what
    /// the epoch check at start found (a consumer started on a Redis that lost its data
    /// takes no work until `producer recover`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ConsumerConfig,
        name: String,
        keys: StreamKeys,
        db: MySqlPool,
        redis: RedisPool,
        payment: PaymentSimulator,
        paused: bool,
        lost: Option<String>,
    ) -> Self {
        Shared {
            replica_wait: config.replica_wait(),
            config,
            name,
            keys,
            db,
            redis,
            payment,
            health: Health::default(),
            pause: PauseFlag::new(paused, lost),
            applied_outbox: Mutex::new(Vec::new()),
            applied_mark: Mutex::new(AppliedMark::default()),
        }
    }

    /// Notes an outbox row whose batch reached Redis, for deletion by housekeeping.
    pub fn outbox_applied(&self, id: u64) {
        self.applied_outbox
            .lock()
            .expect("outbox list lock")
            .push(id);
    }

    /// The applied mark as last known.
    pub fn applied_mark(&self) -> AppliedMark {
        *self.applied_mark.lock().expect("applied mark lock")
    }

    /// Merges a reading of Redis's applied mark ([`AppliedMark::merge`]); returns the mark.
    pub fn note_applied_mark(&self, reading: AppliedMark) -> AppliedMark {
        let mut mark = self.applied_mark.lock().expect("applied mark lock");
        *mark = mark.merge(reading);
        *mark
    }

    pub fn take_applied_outbox(&self) -> Vec<u64> {
        std::mem::take(&mut *self.applied_outbox.lock().expect("outbox list lock"))
    }

    pub fn requeue_applied_outbox(&self, ids: Vec<u64>) {
        self.applied_outbox
            .lock()
            .expect("outbox list lock")
            .extend(ids);
    }
}

/// Whether intake may take work: not while the queue is paused, nor while Redis lacks
/// the data MySQL recorded (its epoch, [`oms_shared::redis::epoch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gate {
    paused: bool,
    /// Why Redis is taken for having lost its data, while it is.
    redis_lost: Option<String>,
}

impl Gate {
    fn closed(&self) -> bool {
        self.paused || self.redis_lost.is_some()
    }
}

/// Whether consumption is paused (as last read from Redis) or halted because Redis lost
/// its data.
#[derive(Debug)]
pub struct PauseFlag {
    tx: watch::Sender<Gate>,
}

impl PauseFlag {
    pub fn new(paused: bool, redis_lost: Option<String>) -> Self {
        metrics::gauge!(PAUSED).set(if paused { 1.0 } else { 0.0 });
        metrics::gauge!(REDIS_DATA_LOST).set(if redis_lost.is_some() { 1.0 } else { 0.0 });
        if let Some(why) = &redis_lost {
            tracing::error!("{why}; taking no work until then");
        }
        PauseFlag {
            tx: watch::Sender::new(Gate { paused, redis_lost }),
        }
    }

    /// True while intake must take no new work (paused, or Redis lost its data).
    pub fn is_paused(&self) -> bool {
        self.tx.borrow().closed()
    }

    /// Why Redis is taken for having lost its data, while it is.
    pub fn redis_lost(&self) -> Option<String> {
        self.tx.borrow().redis_lost.clone()
    }

    /// Records a new reading of the pause key; logs and updates the gauge on a change.
    pub fn set(&self, paused: bool) {
        let changed = self.tx.send_if_modified(|v| {
            let changed = v.paused != paused;
            v.paused = paused;
            changed
        });
        if changed {
            metrics::gauge!(PAUSED).set(if paused { 1.0 } else { 0.0 });
            if paused {
                tracing::info!("queue paused: reading no new entries, finishing held work");
            } else {
                tracing::info!("queue resumed");
            }
        }
    }

    /// Records a new epoch check; logs (once per change) and updates the gauge.
    pub fn set_redis_lost(&self, lost: Option<String>) {
        let changed = self.tx.send_if_modified(|v| {
            let changed = v.redis_lost.is_some() != lost.is_some();
            v.redis_lost = lost.clone();
            changed
        });
        if changed {
            metrics::gauge!(REDIS_DATA_LOST).set(if lost.is_some() { 1.0 } else { 0.0 });
            match lost {
                Some(why) => tracing::error!("{why}; taking no new work until then"),
                None => {
                    tracing::info!("Redis holds the recorded data again (recovered); taking work")
                }
            }
        }
    }

    /// Waits while paused or halted; true when `shutdown` came first.
    pub async fn wait_while_paused(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.tx.subscribe();
        tokio::select! {
            _ = rx.wait_for(|gate| !gate.closed()) => shutdown.is_cancelled(),
            _ = shutdown.cancelled() => true,
        }
    }
}
