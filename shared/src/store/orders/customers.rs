//! Customers in the workflow: found or created before the reserve transaction (autocommit
//! statements: a customer row is harmless on its own), and their totals grown by the
//! settle phase, once per customer per batch.

use std::collections::{BTreeMap, HashMap};

use sqlx::{MySql, MySqlPool, Transaction};

use super::{BatchRow, ReservedOrder};
use crate::error::{OmsError, Result};
use crate::money::Cents;
use crate::store::{placeholders, rows_per_statement, value_tuples};

/// Finds or creates every customer of the rows (autocommit statements, in email order);
/// returns email → id. Customers are never deleted, so the ids stay valid.
pub(super) async fn ensure_customers(
    pool: &MySqlPool,
    rows: &[BatchRow<'_>],
    indexes: &[usize],
) -> Result<HashMap<String, u64>> {
    let mut by_email: BTreeMap<&str, &str> = BTreeMap::new();
    for &i in indexes {
        let row = rows[i].row;
        by_email
            .entry(row.customer_email.as_str())
            .or_insert(row.customer_name.as_str());
    }
    let mut missing: Vec<(&str, &str)> = by_email.into_iter().collect();
    let mut ids = HashMap::with_capacity(missing.len());
    customer_ids(pool, &missing, &mut ids).await?;
    missing.retain(|(email, _)| !ids.contains_key(*email));
    // A concurrent insert of the same new customer may be rolled back (deadlock victim)
    // while ours waits on its row: InnoDB then reports a duplicate and inserts nothing.
    // Whatever is still missing after the insert is inserted again.
    for _round in 0..3 {
        if missing.is_empty() {
            return Ok(ids);
        }
        insert_customers(pool, &missing).await?;
        customer_ids(pool, &missing, &mut ids).await?;
        missing.retain(|(email, _)| !ids.contains_key(*email));
    }
    match missing.first() {
        None => Ok(ids),
        Some((email, _)) => Err(OmsError::Contention(format!(
            "customer {email} vanished after insert (concurrent rollback); retrying"
        ))),
    }
}

/// Adds the ids of the given customers (email, name) that exist to `ids`.
async fn customer_ids(
    pool: &MySqlPool,
    customers: &[(&str, &str)],
    ids: &mut HashMap<String, u64>,
) -> Result<()> {
    for part in customers.chunks(rows_per_statement(1)) {
        // FORCE INDEX: a long IN list over a small table is otherwise read by a table scan.
        let sql = format!(
            "SELECT id, CAST(email AS CHAR) FROM customers FORCE INDEX (uq_customers_email) WHERE email IN ({})",
            placeholders(part.len())
        );
        let mut query = sqlx::query_as::<_, (u64, String)>(&sql);
        for (email, _) in part {
            query = query.bind(*email);
        }
        // `customers.email` is utf8mb4_bin: the email comes back as the very bytes sent.
        for (id, email) in query.fetch_all(pool).await? {
            ids.insert(email, id);
        }
    }
    Ok(())
}

/// `INSERT … ON DUPLICATE KEY UPDATE id = id` of (email, name), in email order.
async fn insert_customers(pool: &MySqlPool, customers: &[(&str, &str)]) -> Result<()> {
    for part in customers.chunks(rows_per_statement(2)) {
        let sql = format!(
            "INSERT INTO customers (email, name) VALUES {} ON DUPLICATE KEY UPDATE id = id",
            value_tuples(part.len(), 2)
        );
        let mut query = sqlx::query(&sql);
        for (email, name) in part {
            query = query.bind(*email).bind(*name);
        }
        query.execute(pool).await?;
    }
    Ok(())
}

/// Adds the approved orders' totals and counts to their customers: one UPDATE per 1,000
/// customers, summed per customer. It reaches the rows through the email index, so it
/// locks them in email order, the order every phase locks customers in (the reserve
/// phase's foreign-key checks follow it too); no separate `SELECT … FOR UPDATE`.
pub(super) async fn grow_customer_totals(
    tx: &mut Transaction<'_, MySql>,
    approved: &[&ReservedOrder],
) -> Result<()> {
    let mut per_customer: BTreeMap<&str, (u64, Cents, i64)> = BTreeMap::new();
    for o in approved {
        let entry = per_customer
            .entry(o.email.as_str())
            .or_insert((o.customer_id, Cents::ZERO, 0));
        entry.1 += o.total;
        entry.2 += 1;
    }
    let rows: Vec<(&str, (u64, Cents, i64))> = per_customer.into_iter().collect();
    for part in rows.chunks(rows_per_statement(5)) {
        let sql = format!(
            "UPDATE customers FORCE INDEX (uq_customers_email) SET total_spent = total_spent + CASE id {} END, \
             orders_count = orders_count + CASE id {} END WHERE email IN ({})",
            "WHEN ? THEN CAST(? AS DECIMAL(14,2)) ".repeat(part.len()),
            "WHEN ? THEN ? ".repeat(part.len()),
            placeholders(part.len())
        );
        let mut query = sqlx::query(&sql);
        for (_, (id, spent, _)) in part {
            query = query.bind(*id).bind(spent.to_string());
        }
        for (_, (id, _, count)) in part {
            query = query.bind(*id).bind(*count);
        }
        for (email, _) in part {
            query = query.bind(*email);
        }
        let updated = query.execute(&mut **tx).await?.rows_affected();
        if updated != part.len() as u64 {
            return Err(OmsError::Inconsistent(format!(
                "{updated} of {} customers updated (a customer row is missing)",
                part.len()
            )));
        }
    }
    Ok(())
}
