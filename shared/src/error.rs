//! Typed errors of the shared crate.
//!
//! Binaries add context at their edges (with `anyhow`); here errors say *what* failed and
//! *where* (host, key, table), and [`OmsError::is_transient`] tells the consumer whether a
//! retry can help (connection lost, deadlock, timeout) or the input itself is at fault.

use thiserror::Error;

pub type Result<T, E = OmsError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum OmsError {
    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("cannot reach MySQL at {host}: {source}")]
    MysqlUnreachable {
        host: String,
        #[source]
        source: sqlx::Error,
    },

    /// A Galera node that answers but does not serve queries: it left the primary
    /// component (`wsrep_ready` is not `ON`), or is still joining.
    #[error("MySQL node {host} does not serve queries: {reason}")]
    MysqlNodeNotReady { host: String, reason: String },

    #[error("cannot reach Redis at {host}: {source}")]
    RedisUnreachable {
        host: String,
        #[source]
        source: redis::RedisError,
    },

    #[error("database {database} is not migrated (run `producer migrate`): {detail}")]
    NotMigrated { database: String, detail: String },

    #[error("MySQL error: {0}")]
    Sql(#[from] sqlx::Error),

    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),

    #[error("Redis pool error: {0}")]
    RedisPool(#[from] deadpool_redis::PoolError),
    #[error(
        "Redis write not replicated: WAIT saw {acked} of {wanted} replicas acknowledge it in time"
    )]
    NotReplicated { wanted: u32, acked: u32 },

    #[error("malformed stream message {id}: {reason}")]
    MalformedMessage { id: String, reason: String },

    /// An order that can never be processed as sent (its total overflows, it breaks a
    /// limit): dead-lettered at once, never retried.
    #[error("order {identity} cannot be processed: {reason}")]
    InvalidOrder { identity: String, reason: String },

    #[error("inconsistent data: {0}")]
    Inconsistent(String),

    /// MySQL went back in time: its outbox sequence is below an outbox id Redis has
    /// applied (restored from a backup, failed over to a lagging replica). Neither
    /// transient nor the input's fault: the work waits (entries stay pending) until the
    /// operator's `producer reconcile --fix` resets Redis's applied record.
    #[error(
        "MySQL went back in time: its outbox sequence is {sequence} but Redis applied up to \
         {applied} (restored from a backup or failed over to a lagging replica?); \
         run `producer reconcile --fix`"
    )]
    HistoryRewound { sequence: u64, applied: u64 },

    /// A race with another consumer that a retry resolves.
    #[error("contention: {0}")]
    Contention(String),

    #[error("invalid amount {0:?}: expected a decimal with at most 2 decimals")]
    InvalidAmount(String),

    /// Redis does not hold the data MySQL recorded (see `redis::epoch`): nothing is added
    /// to it until `producer recover` runs. Not transient: waiting does not bring it back.
    #[error("{0}")]
    RedisDataLost(String),
}

/// What a caller should do with an error: the one classification every retry loop reads
/// (batches, rows, acknowledgements, intake, enqueue, `--wait`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// A server is unreachable or its connection was lost: wait for it (saying so) without
    /// spending the row's attempts.
    Outage,
    /// Worth trying again soon: deadlock, lock wait, contention, a replica not yet caught up.
    Transient,
    /// Retrying will not help by itself (wrong credentials, an unmigrated database, an
    /// invariant broken): retried up to the attempt limit, then dead-lettered or reported.
    Permanent,
    /// The input itself breaks a rule: dead-lettered at its first delivery.
    Invalid,
}

impl OmsError {
    /// The class of this error (see [`FailureClass`]).
    pub fn class(&self) -> FailureClass {
        let transient = match self {
            OmsError::InvalidOrder { .. } => return FailureClass::Invalid,
            OmsError::Sql(e) if sql_error_is_unknown_import(e) => return FailureClass::Invalid,
            // Wrong credentials do not heal by waiting: say so and stop.
            OmsError::MysqlUnreachable { source, .. } => !sql_error_is_access_denied(source),
            OmsError::RedisUnreachable { source, .. } => !redis_error_is_access_denied(source),
            OmsError::RedisPool(_)
            | OmsError::Contention(_)
            | OmsError::NotReplicated { .. }
            | OmsError::MysqlNodeNotReady { .. } => true,
            OmsError::Redis(e) => redis_error_is_transient(e),
            OmsError::Sql(e) => sql_error_is_transient(e),
            _ => false,
        };
        let outage = match self {
            OmsError::MysqlUnreachable { .. }
            | OmsError::MysqlNodeNotReady { .. }
            | OmsError::RedisUnreachable { .. }
            | OmsError::RedisPool(_)
            | OmsError::Redis(_) => true,
            OmsError::Sql(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                ) || mysql_error_number(e) == Some(WSREP_NOT_READY)
            }
            _ => false,
        };
        match (transient, outage) {
            (false, _) => FailureClass::Permanent,
            (true, true) => FailureClass::Outage,
            (true, false) => FailureClass::Transient,
        }
    }

    /// True when the same operation may succeed if tried again later: an [`Outage`] or a
    /// [`Transient`] error. False for errors caused by the data or the setup.
    ///
    /// [`Outage`]: FailureClass::Outage
    /// [`Transient`]: FailureClass::Transient
    pub fn is_transient(&self) -> bool {
        matches!(self.class(), FailureClass::Outage | FailureClass::Transient)
    }

    /// True for a transaction MySQL rolled back because it conflicted with another's
    /// writes: an InnoDB deadlock, or a Galera certification failure (a writeset of another
    /// node touched the same rows first), both reported as 1213. The retry usually succeeds.
    pub fn is_write_conflict(&self) -> bool {
        matches!(self, OmsError::Sql(e) if mysql_error_number(e) == Some(DEADLOCK))
    }

    /// True when no retry can ever make the operation succeed: the input itself breaks a
    /// rule ([`FailureClass::Invalid`]). Such a row is dead-lettered at its first delivery.
    pub fn never_succeeds(&self) -> bool {
        self.class() == FailureClass::Invalid
    }
}

/// The foreign key of `orders.import_id` (migrations/20261125000001_schema.sql): named in
/// MySQL's 1452 error when an order's import does not exist.
pub(crate) const FK_ORDERS_IMPORT: &str = "fk_orders_import";

/// The order's import id is not in `imports` (1452 on `fk_orders_import`): an entry
/// written for another database, or for an import MySQL no longer has. No retry creates
/// the import, so such a row is dead-lettered at once (`failed retry` puts it back).
pub(crate) fn sql_error_is_unknown_import(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number())
                == Some(1452)
                && db.message().contains(FK_ORDERS_IMPORT)
        }
        _ => false,
    }
}

/// An error and its causes on one line, `context: cause: root cause`, skipping a cause
/// whose text its parent already shows (thiserror messages often embed their source).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string().replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Access denied (1044, 1045, 1698): the credentials or grants are wrong.
pub(crate) fn sql_error_is_access_denied(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(
            db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number()),
            Some(1044 | 1045 | 1698)
        ),
        _ => false,
    }
}

/// Redis errors a retry can cure: lost or refused connections, timeouts, a server still
/// loading, and what a Redis Cluster answers around a failover or a resharding: `MOVED`,
/// `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY` (a write that reached a
/// primary just demoted), no connection to a slot's node yet, and a `MULTI` aborted
/// because one of its commands met one of these.
pub(crate) fn redis_error_is_transient(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_cluster_error()
    {
        return true;
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly,
        )
        | ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(ServerErrorKind::ExecAbort) => {
            let text = e.to_string();
            [
                "MOVED",
                "ASK",
                "TRYAGAIN",
                "CLUSTERDOWN",
                "READONLY",
                "MASTERDOWN",
            ]
            .iter()
            .any(|code| text.contains(code))
        }
        _ => false,
    }
}

/// Wrong password or user, or an ACL that forbids a command or key.
pub(crate) fn redis_error_is_access_denied(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Deadlock, and what Galera reports for a transaction that failed certification or was
/// aborted by a conflicting writeset of another node.
pub(crate) const DEADLOCK: u16 = 1213;

/// `ER_UNKNOWN_COM_ERROR` as Galera uses it: "WSREP has not yet prepared node for
/// application use" (the node left the primary component or is still joining).
pub(crate) const WSREP_NOT_READY: u16 = 1047;

/// The server's error number of `e`, when MySQL sent one.
pub(crate) fn mysql_error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

/// MySQL error codes that a retry can cure: deadlock or Galera certification failure
/// (1213), lock wait timeout (1205), server gone / lost connection, read-only during
/// failover, too many connections, a Galera node not serving queries (1047: the pool moves
/// to another node), and duplicate key (1062): two consumers inserting the same identity
/// at once; the retry finds the order and treats it as already processed.
pub(crate) fn sql_error_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(_) => matches!(
            mysql_error_number(e),
            Some(
                1062 | 1205
                    | DEADLOCK
                    | WSREP_NOT_READY
                    | 1040
                    | 1053
                    | 2006
                    | 2013
                    | 1290
                    | 1927
                    | 4031
            )
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_keeps_each_cause_once() {
        let io = std::io::Error::other("Connection refused");
        let err = OmsError::RedisUnreachable {
            host: "h:1".into(),
            source: redis::RedisError::from(io),
        };
        let line = one_line(&err);
        assert!(line.starts_with("cannot reach Redis at h:1: "), "{line}");
        assert_eq!(line.matches("Connection refused").count(), 1, "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn wrong_credentials_are_not_transient() {
        let refused = OmsError::RedisUnreachable {
            host: "h:1".into(),
            source: redis::RedisError::from(std::io::Error::other("refused")),
        };
        assert!(refused.is_transient());
        let denied = OmsError::RedisUnreachable {
            host: "h:1".into(),
            source: redis::RedisError::from((
                redis::ErrorKind::AuthenticationFailed,
                "Password authentication failed",
            )),
        };
        assert!(!denied.is_transient());
        assert_eq!(denied.class(), FailureClass::Permanent);
    }

    #[test]
    fn each_class_has_its_errors() {
        let lost = OmsError::RedisUnreachable {
            host: "h:1".into(),
            source: redis::RedisError::from(std::io::Error::other("refused")),
        };
        assert_eq!(lost.class(), FailureClass::Outage);
        let io = OmsError::Sql(sqlx::Error::Io(std::io::Error::other("reset")));
        assert_eq!(io.class(), FailureClass::Outage);
        assert_eq!(
            OmsError::Contention("x".into()).class(),
            FailureClass::Transient
        );
        let not_replicated = OmsError::NotReplicated {
            wanted: 1,
            acked: 0,
        };
        assert_eq!(not_replicated.class(), FailureClass::Transient);
        assert_eq!(
            OmsError::Inconsistent("x".into()).class(),
            FailureClass::Permanent
        );
        let invalid = OmsError::InvalidOrder {
            identity: "a".into(),
            reason: "b".into(),
        };
        assert_eq!(invalid.class(), FailureClass::Invalid);
        assert!(invalid.never_succeeds() && !invalid.is_transient());
    }
}
