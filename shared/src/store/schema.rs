//! Server-level SQL: database creation and the migrations bookkeeping.

pub(crate) const DATABASE_EXISTS: &str =
    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?";

pub(crate) const APPLIED_MIGRATIONS: &str =
    "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version";

/// `name` must have passed [`crate::config::database_name`] (letters, digits, `_`, `$`).
pub(crate) fn create_database(name: &str) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )
}

pub fn drop_database(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS `{name}`")
}

/// Every session of the pool runs at READ COMMITTED (both MySQL 8 and MariaDB accept it).
pub(crate) const READ_COMMITTED: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// A session whose client vanished (host cut off, process frozen) is closed by the server
/// after this long idle, releasing the row locks of its open transaction; our transactions
/// never wait on the client for more than a second. Both MySQL 8 and MariaDB accept it.
pub(crate) const IDLE_SESSION_TIMEOUT: &str = "SET SESSION wait_timeout = 60";

/// MariaDB only (MySQL 8 has no such variable; the error is ignored): an idle session
/// *inside a transaction* is closed after 10 s, so its locks go sooner.
pub(crate) const IDLE_TRANSACTION_TIMEOUT: &str = "SET SESSION idle_transaction_timeout = 10";

/// Whether the server is a Galera node: `wsrep_on` is `ON` (MariaDB without Galera says
/// `OFF`; MySQL 8 returns no row).
pub(crate) const WSREP_ON: &str = "SHOW VARIABLES LIKE 'wsrep_on'";

/// A Galera node serves queries while `wsrep_ready` is `ON` (it is in the primary
/// component and synced).
pub(crate) const WSREP_READY: &str = "SHOW GLOBAL STATUS LIKE 'wsrep_ready'";

/// Causal reads on a Galera node: before each read (`SELECT`, `SHOW`, `BEGIN`/`START
/// TRANSACTION`, so also a consistent snapshot), the node waits until it has applied every
/// writeset the cluster certified before the read began. A read then sees every commit
/// acknowledged to any client before it, on any node, as on one server (ARCHITECTURE.md,
/// "MySQL high availability").
pub(crate) const CAUSAL_READS: &str = "SET SESSION wsrep_sync_wait = 1";
