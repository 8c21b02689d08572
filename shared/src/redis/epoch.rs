//! Whether Redis still holds the data MySQL believes it holds: the *epoch*.
//!
//! MySQL is the source of truth, but the stream's unprocessed entries, the dead letters,
//! the applied-outbox record, the read models and the pause flag live only in Redis. A
//! Redis restarted without persistence (or failed over to an empty replica, or swapped
//! for another server under the same `REDIS_URL`) comes back empty, and before this
//! module nothing noticed: imports showed their lost rows "in flight" for ever.
//!
//! The epoch is a random token written next to each partition's stream
//! (`P orders:epoch`, on the stream's slot) and next to the read models
//! (`P readmodel:epoch`), and recorded in MySQL (`settings.redis_epoch`). Data written
//! under one epoch is either all there or gone with its key: a Redis that lost the keys
//! lost the epoch too. So:
//! - [`check`] compares them: every key holding MySQL's epoch is [`EpochState::Intact`];
//!   a missing or different key is [`EpochState::Lost`] — nothing is done about it
//!   silently: the import refuses to add entries (its `XADD`s are checked against the
//!   epoch in the same script, [`crate::redis::queue`]), consumers stop taking work, and every
//!   status surface says so, naming `producer recover`;
//! - the first process of a deployment (no epoch recorded in MySQL) creates it;
//! - [`establish`] writes a new epoch after the operator's `producer recover`, which also
//!   re-enqueues the lost rows from the import's file and rebuilds the read models.

use rand::Rng;
use redis::aio::ConnectionLike;
use sqlx::MySqlPool;

use crate::error::{OmsError, Result};
use crate::redis::keys::StreamKeys;
use crate::store::settings;

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EpochState {
    /// Every epoch key holds the epoch MySQL recorded.
    Intact(String),
    /// Redis does not hold the data MySQL recorded.
    Lost(DataLoss),
}

/// A Redis that lost (or never had) the data of MySQL's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLoss {
    /// The epoch MySQL recorded.
    pub expected: String,
    /// The keys that do not hold it, with what they hold.
    pub keys: Vec<(String, Option<String>)>,
}

impl DataLoss {
    /// The one line every surface shows.
    pub fn describe(&self) -> String {
        let (key, found) = self
            .keys
            .first()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .unwrap_or(("?", None));
        let what = match found {
            None => format!("{key} is missing"),
            Some(other) => format!("{key} holds epoch {other}"),
        };
        let more = match self.keys.len() {
            0 | 1 => String::new(),
            n => format!(" (and {} more keys)", n - 1),
        };
        format!(
            "Redis lost its data: MySQL recorded epoch {} but {what}{more} \
             (restarted without persistence, failed over to an empty replica, or REDIS_URL \
             names another server); run `producer recover`",
            self.expected
        )
    }
}

impl EpochState {
    pub fn is_lost(&self) -> bool {
        matches!(self, EpochState::Lost(_))
    }

    /// `Err(OmsError::RedisDataLost)` when lost.
    pub fn require_intact(self) -> Result<String> {
        match self {
            EpochState::Intact(epoch) => Ok(epoch),
            EpochState::Lost(loss) => Err(OmsError::RedisDataLost(loss.describe())),
        }
    }
}

/// Every epoch key of the layout: one per partition, then the read models'.
pub(crate) fn epoch_keys(keys: &StreamKeys) -> Vec<String> {
    let mut all: Vec<String> = keys
        .partitions()
        .all()
        .map(|p| keys.stream_epoch(p))
        .collect();
    all.push(keys.read_model_epoch());
    all
}

/// A new random epoch: 16 hex digits.
pub fn new_epoch() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Reads every epoch key (one `GET` each: on a cluster they live on different slots).
async fn read_keys<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for key in epoch_keys(keys) {
        let value: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
        out.push((key, value));
    }
    Ok(out)
}

/// The keys of `found` that do not hold `expected`.
pub(crate) fn mismatches(
    expected: &str,
    found: Vec<(String, Option<String>)>,
) -> Vec<(String, Option<String>)> {
    found
        .into_iter()
        .filter(|(_, v)| v.as_deref() != Some(expected))
        .collect()
}

/// Compares Redis's epoch keys with MySQL's record. A deployment without a record yet
/// (its first process, or one upgraded from a version without epochs) gets one: Redis's
/// if it has one, else a new one, written with `SET NX` so that processes starting at once
/// agree.
pub async fn check<C: ConnectionLike>(
    db: &MySqlPool,
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<EpochState> {
    let expected = match settings::redis_epoch(db).await? {
        Some(e) => e,
        None => create_first(db, conn, keys).await?,
    };
    compare(conn, keys, expected).await
}

/// Compares Redis's epoch keys with `expected` (the consumer's cached MySQL record).
pub async fn compare<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    expected: String,
) -> Result<EpochState> {
    let wrong = mismatches(&expected, read_keys(conn, keys).await?);
    Ok(if wrong.is_empty() {
        EpochState::Intact(expected)
    } else {
        EpochState::Lost(DataLoss {
            expected,
            keys: wrong,
        })
    })
}

/// The first epoch of a deployment: Redis's read-model key wins if set, then every key
/// missing one gets it (`SET NX`), then MySQL records it unless another process did first.
async fn create_first<C: ConnectionLike>(
    db: &MySqlPool,
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<String> {
    let candidate = new_epoch();
    let rm = keys.read_model_epoch();
    let _: Option<String> = redis::cmd("SET")
        .arg(&rm)
        .arg(&candidate)
        .arg("NX")
        .query_async(conn)
        .await?;
    let winner: Option<String> = redis::cmd("GET").arg(&rm).query_async(conn).await?;
    let winner = winner.unwrap_or(candidate);
    write_missing(conn, keys, &winner).await?;
    let recorded = settings::record_first_redis_epoch(db, &winner).await?;
    tracing::info!(epoch = %recorded, "recorded the epoch of the Redis data");
    Ok(recorded)
}

/// Writes a new epoch to every key of the layout, then records it in MySQL (a crash in
/// between leaves them different: still reported lost, and `recover` runs again).
pub async fn establish<C: ConnectionLike>(
    db: &MySqlPool,
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<String> {
    let epoch = new_epoch();
    for key in epoch_keys(keys) {
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(&epoch)
            .query_async(conn)
            .await?;
    }
    settings::record_redis_epoch(db, &epoch).await?;
    Ok(epoch)
}

/// Writes the recorded epoch to the keys of a new layout (after `migrate --partitions`
/// created new partitions' streams).
pub async fn extend_to<C: ConnectionLike>(
    db: &MySqlPool,
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<()> {
    let Some(epoch) = settings::redis_epoch(db).await? else {
        return Ok(());
    };
    write_missing(conn, keys, &epoch).await
}

/// Writes `epoch` to every epoch key of the layout that holds none (`SET NX`).
async fn write_missing<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    epoch: &str,
) -> Result<()> {
    for key in epoch_keys(keys) {
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(epoch)
            .arg("NX")
            .query_async(conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_without_the_epoch_are_mismatches() {
        let found = vec![
            ("a".to_string(), Some("e1".to_string())),
            ("b".to_string(), None),
            ("c".to_string(), Some("e0".to_string())),
        ];
        let wrong = mismatches("e1", found);
        assert_eq!(
            wrong,
            vec![("b".into(), None), ("c".into(), Some("e0".into()))]
        );
        let loss = DataLoss {
            expected: "e1".into(),
            keys: wrong,
        };
        let line = loss.describe();
        assert!(line.contains("b is missing"), "{line}");
        assert!(line.contains("and 1 more"), "{line}");
        assert!(line.contains("producer recover"), "{line}");
        assert_eq!(new_epoch().len(), 16);
    }
}
