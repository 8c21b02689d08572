//! The read-model outbox (`read_model_outbox`, `read_model_sequence`): completed orders
//! waiting to reach Redis, and the MySQL snapshots the rebuilds fence against it.
//!
//! **Ids in commit order, without gaps.** [`insert_row`] takes the next id from the one
//! row of `read_model_sequence` (`UPDATE ... LAST_INSERT_ID(last_id + 1)`), as the last
//! statement of the settle transaction. The row lock is held until that transaction ends,
//! so a second transaction gets id n + 1 only after the one holding n committed (or rolled
//! back, which gives n back). Hence: every id up to the sequence's value is committed, and
//! a MySQL snapshot holds exactly the rows `1..=through` ([`OutboxSnapshot::through`]).
//! The lock is held only for the commit itself (hot rows last, as everywhere).
//!
//! Rows are deleted only once applied to Redis, so an id below every row left, and not
//! above the sequence, was applied: [`applied_floor`], the watermark Redis trims its record
//! of applied ids with.

use sqlx::mysql::MySqlConnection;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, MySql, MySqlPool, Transaction};

use crate::error::{OmsError, Result};
use crate::store::{placeholders, rows_per_statement};

const NEXT_ID: &str =
    "UPDATE read_model_sequence SET last_id = LAST_INSERT_ID(last_id + 1) WHERE id = 1";
const INSERT: &str = "INSERT INTO read_model_outbox (id, payload) VALUES (?, ?)";

/// Writes one outbox row in `tx` and returns its id (the next of the sequence). Call it as
/// the last statement before the commit: it locks the sequence row until then.
///
/// `applied_max` is a lower bound of the highest outbox id Redis has applied (0 when
/// unknown). In a sane world every applied id is committed, so at most the sequence, and
/// the id handed out now is above it; when it is not, MySQL went back in time: the error
/// is [`OmsError::HistoryRewound`] and the caller must roll `tx` back.
pub(crate) async fn insert_row(
    tx: &mut Transaction<'_, MySql>,
    payload: &str,
    applied_max: u64,
) -> Result<u64> {
    let next = sqlx::query(NEXT_ID).execute(&mut **tx).await?;
    if next.rows_affected() != 1 {
        return Err(OmsError::Inconsistent(
            "read_model_sequence has no row 1 (run `producer migrate`)".into(),
        ));
    }
    // The OK packet carries LAST_INSERT_ID(expr) on MySQL 8 and MariaDB; asking is the
    // fallback should a server leave it out.
    let id = match next.last_insert_id() {
        0 => {
            let (id,): (u64,) = sqlx::query_as("SELECT LAST_INSERT_ID()")
                .fetch_one(&mut **tx)
                .await?;
            id
        }
        id => id,
    };
    let sequence = id.saturating_sub(1);
    if history_rewound(sequence, applied_max) {
        return Err(OmsError::HistoryRewound {
            sequence,
            applied: applied_max,
        });
    }
    sqlx::query(INSERT)
        .bind(id)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Pure rule of the rewind detection: MySQL's outbox sequence (read after, or taken in the
/// same transaction as, the reading of Redis's `applied_max`) below an id Redis applied.
/// Never true in a sane world: every applied id was committed first, so is at most the
/// sequence, and the sequence only grows.
pub fn history_rewound(sequence: u64, applied_max: u64) -> bool {
    sequence < applied_max
}

/// Deletes applied outbox rows.
pub async fn delete_rows(pool: &MySqlPool, ids: &[u64]) -> Result<()> {
    for part in ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "DELETE FROM read_model_outbox WHERE id IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query(&sql);
        for id in part {
            query = query.bind(*id);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// Outbox rows older than `?` seconds: their batch's consumer may have died before
/// applying them. Returns (id, payload).
const STALE: &str = "SELECT id, payload FROM read_model_outbox \
     WHERE created_at < NOW(3) - INTERVAL ? SECOND ORDER BY id LIMIT ?";

/// Outbox rows left behind (older than `min_age_secs`), oldest first.
pub async fn stale_rows(
    pool: &MySqlPool,
    min_age_secs: u64,
    limit: u32,
) -> Result<Vec<(u64, String)>> {
    Ok(sqlx::query_as(STALE)
        .bind(min_age_secs)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// Outbox rows in an id range, whatever their age: what a stopping consumer applies
/// before it exits. Returns (id, payload), lowest id first.
const ROWS_BETWEEN: &str = "SELECT id, payload FROM read_model_outbox \
     WHERE id > ? AND id <= ? ORDER BY id LIMIT ?";

/// Up to `limit` outbox rows with `after < id <= through`, not deleted yet (some may be
/// applied already, their deletion still to come). Page through a range by passing the
/// last id seen as `after`.
pub async fn rows_between(
    pool: &MySqlPool,
    after: u64,
    through: u64,
    limit: u32,
) -> Result<Vec<(u64, String)>> {
    Ok(sqlx::query_as(ROWS_BETWEEN)
        .bind(after)
        .bind(through)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

/// The highest outbox id handed out so far (every id up to it is committed).
pub async fn last_id(pool: &MySqlPool) -> Result<u64> {
    let (id,): (u64,) = sqlx::query_as("SELECT last_id FROM read_model_sequence WHERE id = 1")
        .fetch_one(pool)
        .await?;
    Ok(id)
}

/// Ids of the outbox rows still present up to `through` (applied or not yet).
pub async fn ids_through(pool: &MySqlPool, through: u64) -> Result<Vec<u64>> {
    let rows: Vec<(u64,)> =
        sqlx::query_as("SELECT id FROM read_model_outbox WHERE id <= ? ORDER BY id")
            .bind(through)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// One statement, so one read view: the sequence's value and the lowest id left.
const FLOOR: &str = "SELECT s.last_id, (SELECT MIN(o.id) FROM read_model_outbox o) \
     FROM read_model_sequence s WHERE s.id = 1";

/// An id such that every outbox row up to it has been applied to Redis (see the module
/// documentation): the row before the lowest one left, at most the sequence's value.
pub async fn applied_floor(pool: &MySqlPool) -> Result<u64> {
    let (last, lowest): (u64, Option<u64>) = sqlx::query_as(FLOOR).fetch_one(pool).await?;
    Ok(floor_of(last, lowest))
}

/// Pure rule of [`applied_floor`].
pub(crate) fn floor_of(last_id: u64, lowest_left: Option<u64>) -> u64 {
    match lowest_left {
        Some(lowest) => last_id.min(lowest.saturating_sub(1)),
        None => last_id,
    }
}

/// What a MySQL snapshot holds of the outbox: every row up to `through` is in it, and
/// `rows` are those of them not yet deleted (id, payload) — some applied, some not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxSnapshot {
    pub through: u64,
    pub rows: Vec<(u64, String)>,
}

/// A REPEATABLE READ transaction opened `WITH CONSISTENT SNAPSHOT`: every query run on
/// [`Snapshot::conn`] sees the same instant, the outbox included ([`Snapshot::outbox`]).
/// Dropped without [`Snapshot::finish`], its connection is closed, not reused.
pub(crate) struct Snapshot {
    conn: PoolConnection<MySql>,
    open: bool,
}

impl Snapshot {
    pub async fn begin(pool: &MySqlPool) -> Result<Snapshot> {
        // `open` from the start: a failure half-way closes the session instead of leaving
        // a pending isolation level or transaction to the pool's next user.
        let mut snapshot = Snapshot {
            conn: pool.acquire().await?,
            open: true,
        };
        // Plain text protocol (a `&str`), not prepared statements: MySQL 8 does not
        // prepare every transaction-control statement.
        let conn: &mut MySqlConnection = &mut snapshot.conn;
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .await?;
        conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await?;
        Ok(snapshot)
    }

    /// The connection to run the snapshot's queries on.
    pub fn conn(&mut self) -> &mut MySqlConnection {
        &mut self.conn
    }

    /// The outbox as this snapshot sees it.
    pub async fn outbox(&mut self) -> Result<OutboxSnapshot> {
        let (through,): (u64,) =
            sqlx::query_as("SELECT last_id FROM read_model_sequence WHERE id = 1")
                .fetch_one(&mut *self.conn)
                .await?;
        let rows: Vec<(u64, String)> =
            sqlx::query_as("SELECT id, payload FROM read_model_outbox ORDER BY id")
                .fetch_all(&mut *self.conn)
                .await?;
        Ok(OutboxSnapshot { through, rows })
    }

    /// Ends the (read-only) transaction; the connection goes back to the pool.
    pub async fn finish(mut self) -> Result<()> {
        let conn: &mut MySqlConnection = &mut self.conn;
        conn.execute("COMMIT").await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if self.open {
            // Still inside the transaction: never hand that session to someone else.
            self.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_below_the_lowest_row_left_and_at_most_the_sequence() {
        assert_eq!(floor_of(10, None), 10);
        assert_eq!(floor_of(10, Some(4)), 3);
        assert_eq!(floor_of(10, Some(1)), 0);
        assert_eq!(floor_of(0, None), 0);
    }

    #[test]
    fn history_is_rewound_only_below_an_applied_id() {
        // Sequence 10 (the next id is 11), Redis applied up to 20: ids 11..=20 would be
        // handed out again and skipped by Redis.
        assert!(history_rewound(10, 20));
        assert!(history_rewound(19, 20));
        // Every applied id committed: never rewound, whatever Redis lost.
        assert!(!history_rewound(20, 20));
        assert!(!history_rewound(25, 20));
        assert!(!history_rewound(0, 0));
        assert!(!history_rewound(7, 0));
    }
}
