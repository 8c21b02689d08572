//! `producer reconcile [--fix]`: compares every Redis read model with MySQL.
//!
//! KPI hashes: every hash that exists in Redis (`SCAN P kpi:*`) and every period that has
//! completed orders in MySQL (daily for each KPI day, monthly, yearly, total). Each of
//! `order_count`, `revenue_cents`, `revenue` and `average_order_value` must equal what
//! [`KpiFigures::hash_fields`] gives for MySQL's figures. A hash without a MySQL
//! counterpart is fine only if it is all zeros (as `kpis generate` writes for an empty day).
//! Leaderboard: every customer with `total_spent > 0` must be a member with score
//! `total_spent` in cents, and there must be no other member.
//!
//! Any difference is printed (key, field, Redis value, MySQL value) and the exit code is 1.
//! `--fix` rewrites each drifted hash from MySQL, deletes drifted hashes that have no MySQL
//! counterpart, rebuilds the leaderboard when it drifted (which also refreshes today's
//! snapshot), then checks again: exit 0 if clean.
//!
//! **Consumers.** The comparison is exact only while consumers are idle: a batch is
//! committed in MySQL before its increments reach Redis (via `read_model_outbox`), so a
//! running system shows transient drift, reported with `pending_outbox_rows`. `--fix` is
//! safe at any moment: it rewrites from a fresh MySQL snapshot as a rebuild fenced against
//! the outbox ([`Rebuild`]), so no live increment is lost or doubled; its second check may
//! still show the transient drift of a running system.
//!
//! **MySQL gone back in time.** When MySQL's outbox sequence is below the highest outbox
//! id Redis applied (`history_rewound`: MySQL restored from a backup, or failed over to a
//! lagging replica), Redis's record of applied rows belongs to a history that went away:
//! new orders would get ids it records as applied and never be counted. `reconcile` then
//! says so and exits 1, even if no value differs yet. `--fix` rebuilds *every* read model
//! from one MySQL snapshot and, in the same fenced script, resets the record to that
//! snapshot with a new generation ([`Rebuild::finish_with_reset`]); consumers, which
//! stopped when they saw the rewind, resume by themselves.
//!
//! **MySQL's summaries.** The KPI figures come from `kpi_days` (per-day sums kept by the
//! settle transaction), so a check reads a few hundred rows, not the orders. `--deep` also
//! compares `kpi_days` and the imports' counters (`import_progress`) with the orders (a
//! scan of every order) and lists each difference in `summary_drift` (exit 1); it fixes
//! none of them.
//!
//! `--json` prints a [`ReconcileReport`]:
//! ```json
//! {"clean": false, "kpi_hashes_checked": 7, "leaderboard_members_checked": 3,
//!  "pending_outbox_rows": 0, "history_rewound": null,
//!  "drift": [{"key": "oms:kpi:daily:2026-03-07", "field": "order_count",
//!             "redis": "99", "mysql": "2"},
//!            {"key": "oms:leaderboard", "field": "ann@example.com",
//!             "redis": "100", "mysql": "12050"}],
//!  "fixed": null, "remaining": null}
//! ```
//! `redis`/`mysql` are null where the value is absent (missing field or member, no MySQL
//! counterpart). Leaderboard values are cents. With `--fix`, `fixed` is
//! `{"kpi_hashes_rewritten": n, "kpi_hashes_deleted": n, "leaderboard_rebuilt": bool,
//! "applied_record_reset": bool}` and `remaining` the drift found by the second check;
//! `clean` describes the final state. `history_rewound` is
//! `{"sequence": S, "applied_max": H}` when the first check found S < H, else null.

use std::collections::{BTreeMap, BTreeSet};

use crate::Result;
use chrono::Utc;
use oms_shared::config::ConnectionConfig;
use oms_shared::kpi::{kpi_keys_for_day, KpiFigures};
use oms_shared::money::Cents;
use oms_shared::redis::conn::{RedisLink, RedisPool};
use oms_shared::redis::keys::ReadModelKeys;
use oms_shared::redis::read_model::{read_leaderboard, FencedRead, HistoryReading, Rebuild};
use oms_shared::store::reports;
use serde::Serialize;
use sqlx::{MySqlConnection, MySqlPool};

/// One value that differs between Redis and MySQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub key: String,
    /// A KPI hash field, or the customer email for the leaderboard.
    pub field: String,
    pub redis: Option<String>,
    pub mysql: Option<String>,
}

/// What `--fix` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FixSummary {
    pub kpi_hashes_rewritten: usize,
    pub kpi_hashes_deleted: usize,
    pub leaderboard_rebuilt: bool,
    /// Redis's record of applied outbox rows was reset to MySQL's (new generation).
    pub applied_record_reset: bool,
}

/// MySQL went back in time: its outbox `sequence` is below `applied_max`, the highest
/// outbox id Redis applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HistoryRewound {
    pub sequence: u64,
    pub applied_max: u64,
}

impl HistoryRewound {
    /// The one line that says it, with the fix.
    pub fn message(&self) -> String {
        oms_shared::OmsError::HistoryRewound {
            sequence: self.sequence,
            applied: self.applied_max,
        }
        .to_string()
    }
}

/// What `reconcile` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    pub clean: bool,
    pub kpi_hashes_checked: usize,
    pub leaderboard_members_checked: usize,
    pub pending_outbox_rows: i64,
    /// Found by the first check; `--fix` resets the record (see `fixed`).
    pub history_rewound: Option<HistoryRewound>,
    pub drift: Vec<Drift>,
    pub fixed: Option<FixSummary>,
    pub remaining: Option<Vec<Drift>>,
    /// With `--deep`: where a MySQL summary differs from the orders it sums (none when
    /// they agree); absent without `--deep`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_drift: Option<Vec<SummaryDrift>>,
}

/// One row of a MySQL summary (`kpi_days`, `import_progress`) that differs from what the
/// orders say: `summary` and `orders` are "count/revenue cents", null where absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SummaryDrift {
    pub table: &'static str,
    pub key: String,
    pub summary: Option<String>,
    pub orders: Option<String>,
}

fn summary_drift<K: Ord + Clone + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    table: &'static str,
    summary: &BTreeMap<K, V>,
    orders: &BTreeMap<K, V>,
    show: impl Fn(&V) -> String,
) -> Vec<SummaryDrift> {
    let keys: BTreeSet<&K> = summary.keys().chain(orders.keys()).collect();
    keys.into_iter()
        .filter(|k| summary.get(*k) != orders.get(*k))
        .map(|k| SummaryDrift {
            table,
            key: format!("{k:?}"),
            summary: summary.get(k).map(&show),
            orders: orders.get(k).map(&show),
        })
        .collect()
}

/// `--deep`: the per-day KPI sums and the imports' counters against the orders (a scan of
/// every order: minutes at tens of millions). Empty when they agree.
pub async fn check_summaries(pool: &MySqlPool) -> Result<Vec<SummaryDrift>> {
    use oms_shared::store::{import_progress, kpi_days};
    let mut drift = summary_drift(
        "kpi_days",
        &kpi_days::summary_between(pool, None, None).await?,
        &kpi_days::orders_by_day(pool).await?,
        |f| format!("{}/{}", f.order_count, f.revenue.0),
    );
    drift.extend(summary_drift(
        "import_progress",
        &import_progress::all_counters(pool).await?,
        &import_progress::progress_from_orders(pool).await?,
        |(n, c)| format!("{n}/{c}"),
    ));
    Ok(drift)
}

/// MySQL's view of the read models.
struct Expected {
    kpis: BTreeMap<String, KpiFigures>,
    leaderboard: Vec<(String, Cents)>,
}

struct Check {
    drift: Vec<Drift>,
    /// Every KPI hash compared (in Redis or with MySQL figures).
    kpi_keys: Vec<String>,
    rewound: Option<HistoryRewound>,
    kpi_hashes_checked: usize,
    leaderboard_members_checked: usize,
}

async fn expected(db: &mut MySqlConnection, keys: &ReadModelKeys) -> Result<Expected> {
    let mut kpis: BTreeMap<String, KpiFigures> = BTreeMap::new();
    for (day, f) in reports::kpi_by_day(&mut *db).await? {
        for key in kpi_keys_for_day(keys, day) {
            let e = kpis.entry(key).or_default();
            e.order_count += f.order_count;
            e.revenue += f.revenue;
        }
    }
    let leaderboard = reports::leaderboard_customers(&mut *db)
        .await?
        .into_iter()
        .map(|c| (c.email, c.total_spent))
        .collect();
    Ok(Expected { kpis, leaderboard })
}

/// Keys matching `pattern` on the node serving `slot` (on a cluster every read-model key
/// is on one slot, so one node holds them all).
async fn scan_keys(conn: &mut RedisLink, slot: u16, pattern: &str) -> Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut found = Vec::new();
    loop {
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply = conn.query_on_slot(slot, scan).await?;
        let (next, batch): (u64, Vec<String>) =
            redis::from_redis_value(reply).map_err(|e| oms_shared::OmsError::Redis(e.into()))?;
        found.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Drift of one KPI hash against MySQL's figures (`None`: no MySQL counterpart).
pub fn kpi_drift(
    key: &str,
    redis: &BTreeMap<String, String>,
    mysql: Option<&KpiFigures>,
) -> Vec<Drift> {
    // Without a MySQL counterpart, an absent field counts as zero.
    let want = mysql.copied().unwrap_or_default();
    want.hash_fields()
        .into_iter()
        .filter(|(field, value)| match redis.get(*field) {
            Some(got) => got != value,
            None => mysql.is_some(),
        })
        .map(|(field, value)| Drift {
            key: key.to_string(),
            field: field.to_string(),
            redis: redis.get(field).cloned(),
            mysql: mysql.map(|_| value),
        })
        .collect()
}

/// Drift of the leaderboard: (email, cents) in Redis against MySQL.
pub fn leaderboard_drift(
    key: &str,
    redis: &[(String, Cents)],
    mysql: &[(String, Cents)],
) -> Vec<Drift> {
    let r: BTreeMap<&str, Cents> = redis.iter().map(|(e, c)| (e.as_str(), *c)).collect();
    let m: BTreeMap<&str, Cents> = mysql.iter().map(|(e, c)| (e.as_str(), *c)).collect();
    let emails: BTreeSet<&str> = r.keys().chain(m.keys()).copied().collect();
    emails
        .into_iter()
        .filter(|e| r.get(e) != m.get(e))
        .map(|e| Drift {
            key: key.to_string(),
            field: e.to_string(),
            redis: r.get(e).map(|c| c.0.to_string()),
            mysql: m.get(e).map(|c| c.0.to_string()),
        })
        .collect()
}

async fn check(pool: &MySqlPool, redis: &RedisPool, keys: &ReadModelKeys) -> Result<Check> {
    let mut rc = redis.get().await?;
    let history = HistoryReading::read(&mut *rc, keys, pool).await?;
    let rewound = history.rewound().map(|_| HistoryRewound {
        sequence: history.sequence,
        applied_max: history.mark.applied_max,
    });
    let expected = expected(&mut *pool.acquire().await?, keys).await?;
    // Only keys under the literal prefix: `fix` may delete what is checked here.
    let mut all: BTreeSet<String> = scan_keys(&mut rc, keys.read_model_slot(), &keys.kpi_pattern())
        .await?
        .into_iter()
        .filter(|k| keys.is_kpi_key(k))
        .collect();
    all.extend(expected.kpis.keys().cloned());
    let all: Vec<String> = all.into_iter().collect();
    let mut drift = Vec::new();
    for part in all.chunks(500) {
        let mut pipe = redis::pipe();
        for key in part {
            pipe.cmd("HGETALL").arg(key);
        }
        let hashes: Vec<BTreeMap<String, String>> = pipe.query_async(&mut *rc).await?;
        for (key, hash) in part.iter().zip(hashes) {
            drift.extend(kpi_drift(key, &hash, expected.kpis.get(key)));
        }
    }
    let board = read_leaderboard(&mut *rc, keys, 0).await?;
    drift.extend(leaderboard_drift(
        &keys.leaderboard(),
        &board,
        &expected.leaderboard,
    ));
    Ok(Check {
        drift,
        kpi_hashes_checked: all.len(),
        kpi_keys: all,
        rewound,
        leaderboard_members_checked: board.len().max(expected.leaderboard.len()),
    })
}

/// Rewrites the drifted KPI hashes and, if it drifted, the leaderboard, as one rebuild
/// fenced against the outbox: the values come from a fresh MySQL snapshot taken under the
/// rebuild lease (not from `check`'s reading, which live updates may already have passed).
// Long on purpose: lease, snapshot, rewrite and fence check of one rebuild, in the order
// that keeps it exact against live consumers.
async fn fix(
    pool: &MySqlPool,
    redis: &RedisPool,
    keys: &ReadModelKeys,
    check: &Check,
    reset_record: bool,
) -> Result<FixSummary> {
    let board = keys.leaderboard();
    let reset = reset_record || check.rewound.is_some();
    let mut drifted: BTreeSet<&str> = check
        .drift
        .iter()
        .filter(|d| d.key != board)
        .map(|d| d.key.as_str())
        .collect();
    let board_drifted = reset || check.drift.iter().any(|d| d.key == board);
    if reset {
        // The reset leaves no snapshot row pending: every read model must be rebuilt.
        drifted.extend(check.kpi_keys.iter().map(String::as_str));
    }
    let mut summary = FixSummary::default();
    if drifted.is_empty() && !board_drifted {
        return Ok(summary);
    }
    let FencedRead {
        rebuild,
        values: now,
        outbox,
    } = Rebuild::read(redis, keys, pool, async |conn: &mut MySqlConnection| {
        expected(conn, keys).await
    })
    .await?;
    let mut rc = redis.get().await?;
    let mut targets = Vec::new();
    let mut drifted: BTreeSet<String> = drifted.into_iter().map(str::to_string).collect();
    if reset {
        // Days that got orders since the first check are in the snapshot too.
        drifted.extend(now.kpis.keys().cloned());
    }
    for key in drifted.iter().map(String::as_str) {
        match now.kpis.get(key) {
            Some(figures) => {
                targets.push((key.to_string(), *figures, false));
                summary.kpi_hashes_rewritten += 1;
            }
            None if !keys.is_kpi_key(key) => {
                return Err(crate::ReportError::Refused(format!(
                    "refusing to delete {key}: not a KPI hash under the prefix"
                )));
            }
            None => {
                // No MySQL counterpart: deleted (unless live updates land in it meanwhile).
                targets.push((key.to_string(), KpiFigures::default(), true));
                summary.kpi_hashes_deleted += 1;
            }
        }
    }
    let today = Utc::now().date_naive();
    if reset {
        rebuild
            .finish_with_reset(
                &mut *rc,
                &outbox,
                &targets,
                (now.leaderboard.as_slice(), today),
            )
            .await?;
        summary.applied_record_reset = true;
    } else {
        let entries = board_drifted.then_some((now.leaderboard.as_slice(), today));
        rebuild.finish(&mut *rc, &outbox, &targets, entries).await?;
    }
    summary.leaderboard_rebuilt = board_drifted;
    Ok(summary)
}

/// Compares the read models with MySQL and, with `fix`, repairs them and checks again.
pub async fn reconcile(conn: &ConnectionConfig, fix_drift: bool) -> Result<ReconcileReport> {
    run(conn, Repair::drift_if(fix_drift), false).await
}

/// After Redis lost its data (`producer recover`): rebuilds *every* read model and resets
/// Redis's record of applied outbox rows to one MySQL snapshot, as for a MySQL that went
/// back in time. The record in a wiped Redis says nothing of what the read models hold:
/// an outbox row applied to the Redis that went away, and deleted from MySQL only after
/// the snapshot, would otherwise be subtracted from the rebuilt values as "not applied
/// yet" and never applied again.
pub async fn rebuild_after_data_loss(conn: &ConnectionConfig) -> Result<ReconcileReport> {
    run(conn, Repair::ResetRecord, false).await
}

/// What a reconcile repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    /// Compare only.
    Nothing,
    /// Rewrite what drifted (and reset the record if MySQL went back in time).
    Drift,
    /// Rewrite every read model and reset the record, drift or not.
    ResetRecord,
}

impl Repair {
    fn drift_if(fix: bool) -> Repair {
        if fix {
            Repair::Drift
        } else {
            Repair::Nothing
        }
    }
}

/// [`reconcile`]; with `deep`, also compares MySQL's summaries (`kpi_days`,
/// `import_progress`) with the orders (`--deep`; reported, never fixed).
pub async fn reconcile_with(
    conn: &ConnectionConfig,
    fix_drift: bool,
    deep: bool,
) -> Result<ReconcileReport> {
    run(conn, Repair::drift_if(fix_drift), deep).await
}

async fn run(conn: &ConnectionConfig, repair: Repair, deep: bool) -> Result<ReconcileReport> {
    let keys = conn.read_model_keys();
    let redis = crate::connect_redis(conn).await?;
    let pool = crate::connect_mysql(conn).await?;
    let pending_outbox_rows = reports::pending_outbox_rows(&pool).await?;
    let first = check(&pool, &redis, &keys).await?;
    let mut report = ReconcileReport {
        clean: first.drift.is_empty() && first.rewound.is_none(),
        kpi_hashes_checked: first.kpi_hashes_checked,
        leaderboard_members_checked: first.leaderboard_members_checked,
        pending_outbox_rows,
        history_rewound: first.rewound,
        drift: first.drift.clone(),
        fixed: None,
        remaining: None,
        summary_drift: None,
    };
    if deep {
        let drift = check_summaries(&pool).await?;
        report.clean &= drift.is_empty();
        report.summary_drift = Some(drift);
    }
    let reset_record = repair == Repair::ResetRecord;
    if reset_record || (repair == Repair::Drift && !report.clean) {
        report.fixed = Some(fix(&pool, &redis, &keys, &first, reset_record).await?);
        let second = check(&pool, &redis, &keys).await?;
        report.clean = second.drift.is_empty()
            && second.rewound.is_none()
            && report.summary_drift.as_ref().is_none_or(Vec::is_empty);
        report.remaining = Some(second.drift);
    }
    pool.close().await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn kpi_drift_names_each_wrong_field() {
        let f = KpiFigures {
            order_count: 2,
            revenue: Cents(1005),
        };
        let good = hash(&[
            ("order_count", "2"),
            ("revenue_cents", "1005"),
            ("revenue", "10.05"),
            ("average_order_value", "5.03"),
        ]);
        assert!(kpi_drift("k", &good, Some(&f)).is_empty());
        let mut bad = good.clone();
        bad.insert("order_count".into(), "3".into());
        let d = kpi_drift("k", &bad, Some(&f));
        assert_eq!(d.len(), 1);
        assert_eq!(
            (
                d[0].field.as_str(),
                d[0].redis.as_deref(),
                d[0].mysql.as_deref()
            ),
            ("order_count", Some("3"), Some("2"))
        );
        assert_eq!(kpi_drift("k", &BTreeMap::new(), Some(&f)).len(), 4);
    }

    #[test]
    fn a_zero_hash_without_orders_is_not_drift() {
        let zero = hash(&[
            ("order_count", "0"),
            ("revenue_cents", "0"),
            ("revenue", "0.00"),
            ("average_order_value", "0.00"),
        ]);
        assert!(kpi_drift("k", &zero, None).is_empty());
        assert!(kpi_drift("k", &BTreeMap::new(), None).is_empty());
        let stray = hash(&[("order_count", "1")]);
        assert!(!kpi_drift("k", &stray, None).is_empty());
    }

    #[test]
    fn leaderboard_drift_finds_wrong_missing_and_extra_members() {
        let redis = vec![("a".to_string(), Cents(5)), ("x".to_string(), Cents(1))];
        let mysql = vec![("a".to_string(), Cents(6)), ("b".to_string(), Cents(2))];
        let d = leaderboard_drift("lb", &redis, &mysql);
        let fields: Vec<_> = d.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["a", "b", "x"]);
        assert_eq!(d[1].redis, None);
        assert_eq!(d[2].mysql, None);
    }
}
