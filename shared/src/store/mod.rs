//! Every SQL statement of the system lives below this module, grouped by table family.
//!
//! SQL is written for both MySQL 8 and MariaDB 10.6+ (no `RETURNING`, no `VALUES ... AS`
//! aliases). Money goes in as decimal strings and comes out as `CAST(x * 100 AS SIGNED)`
//! cents. Multi-row statements are split by [`rows_per_statement`] so that no prepared
//! statement exceeds MySQL's 65,535 placeholders.
//!
//! `sku` and `identity` are `utf8mb4_bin` (exact, case-sensitive); sqlx reports such
//! columns as VARBINARY, so they are selected as `CAST(col AS CHAR)` to decode as String.

pub mod archive;
pub mod audit;
pub mod catalog;
pub mod db;
pub mod dead_letters;
pub mod import_progress;
pub mod imports;
pub mod kpi_days;
pub mod lookup;
pub mod mysql_nodes;
pub mod orders;
pub mod outbox;
pub mod partition_fence;
pub mod reports;
pub mod schema;
pub mod settings;

/// `SELECT 1`: whether the server answers now (health probes, `/readyz`).
pub async fn ping(pool: &sqlx::MySqlPool) -> crate::error::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// Placeholders MySQL accepts in one prepared statement.
pub(crate) const MAX_PLACEHOLDERS: usize = 65_535;

/// How many rows of `params_per_row` placeholders fit one statement (capped at 1,000 rows
/// to keep statements and lock sets small).
pub(crate) fn rows_per_statement(params_per_row: usize) -> usize {
    (MAX_PLACEHOLDERS / params_per_row.max(1)).clamp(1, 1_000)
}

/// `(?,?,?),(?,?,?)` for `rows` rows of `cols` placeholders.
pub(crate) fn value_tuples(rows: usize, cols: usize) -> String {
    let tuple = format!("({})", vec!["?"; cols].join(","));
    vec![tuple; rows].join(",")
}

/// `?,?,?` for an `IN (...)` list of `n` items.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_stay_under_the_placeholder_limit() {
        for cols in [1, 5, 8, 70, 65_535, 100_000] {
            assert!(rows_per_statement(cols) * cols <= MAX_PLACEHOLDERS || cols > MAX_PLACEHOLDERS);
            assert!(rows_per_statement(cols) >= 1);
        }
        assert_eq!(value_tuples(2, 3), "(?,?,?),(?,?,?)");
        assert_eq!(placeholders(3), "?,?,?");
    }
}
