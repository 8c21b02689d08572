//! Server-level SQL: database creation and the migrations bookkeeping.

pub const DATABASE_EXISTS: &str =
    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?";

pub const APPLIED_MIGRATIONS: &str =
    "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version";

/// `name` must have passed [`crate::config::database_name`] (letters, digits, `_`, `$`).
pub fn create_database(name: &str) -> String {
    format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )
}

pub fn drop_database(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS `{name}`")
}

/// Every session of the pool runs at READ COMMITTED (both MySQL 8 and MariaDB accept it).
pub const READ_COMMITTED: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";
