//! `producer kpis generate|show [--date YYYY-MM-DD]`: the daily, monthly, yearly and total
//! KPIs of the day's periods.
//!
//! `generate` recomputes the four periods from one MySQL snapshot (completed orders by KPI
//! day) and writes their Redis hashes as a [`Rebuild`] fenced against the outbox, so it is
//! exact even while consumers run; `show` reads the hashes as they are.
//! Both use [`KpiFigures`], the same arithmetic as the consumers' live updates.
//!
//! `--json` prints a [`KpiReport`]:
//! ```json
//! {"date": "2026-03-07", "source": "mysql", "periods": [
//!   {"period": "daily", "label": "2026-03-07", "key": "oms:kpi:daily:2026-03-07",
//!    "order_count": 20, "revenue": "1234.50", "average_order_value": "61.73",
//!    "revenue_cents": 123450},
//!   {"period": "monthly", "label": "2026-03", ...}, {"period": "yearly", "label": "2026", ...},
//!   {"period": "total", "label": "all", ...}]}
//! ```
//! `source` is `mysql` for `generate`, `redis` for `show` (a missing hash shows zeros).

use crate::Result;
use chrono::{NaiveDate, Utc};
use oms_shared::config::ConnectionConfig;
use oms_shared::kpi::{KpiFigures, Period};
use oms_shared::redis::keys::ReadModelKeys;
use oms_shared::redis::read_model::{read_kpis, FencedRead, Rebuild};
use oms_shared::store::reports;
use serde::Serialize;
use sqlx::MySqlConnection;

/// One KPI period and its figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KpiPeriod {
    /// `daily`, `monthly`, `yearly` or `total`.
    pub period: &'static str,
    /// `2026-03-07`, `2026-03`, `2026` or `all`.
    pub label: String,
    pub key: String,
    pub order_count: i64,
    pub revenue: String,
    pub average_order_value: String,
    pub revenue_cents: i64,
}

impl KpiPeriod {
    fn new(period: Period, keys: &ReadModelKeys, day: NaiveDate, f: &KpiFigures) -> Self {
        KpiPeriod {
            period: period.name(),
            label: period.label(day),
            key: period.key(keys, day),
            order_count: f.order_count,
            revenue: f.revenue.to_string(),
            average_order_value: f.average_order_value().to_string(),
            revenue_cents: f.revenue.0,
        }
    }

    pub fn figures(&self) -> KpiFigures {
        KpiFigures {
            order_count: self.order_count,
            revenue: oms_shared::money::Cents(self.revenue_cents),
        }
    }
}

/// What `kpis generate` / `kpis show` print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KpiReport {
    pub date: NaiveDate,
    pub source: &'static str,
    pub periods: Vec<KpiPeriod>,
}

impl KpiReport {
    /// The figures of one period (a report holds every one of [`Period::ALL`]).
    pub fn period(&self, period: Period) -> &KpiPeriod {
        self.periods
            .iter()
            .find(|p| p.period == period.name())
            .expect("a KPI report holds every period")
    }
}

/// The four periods' figures computed from MySQL (a pool connection or a snapshot's).
pub async fn compute(
    db: &mut MySqlConnection,
    keys: &ReadModelKeys,
    day: NaiveDate,
) -> Result<KpiReport> {
    let mut periods = Vec::new();
    for period in Period::ALL {
        let figures = match period.days(day) {
            Some((first, last)) => reports::kpi_between(&mut *db, first, last).await?,
            None => reports::kpi_total(&mut *db).await?,
        };
        periods.push(KpiPeriod::new(period, keys, day, &figures));
    }
    Ok(KpiReport {
        date: day,
        source: "mysql",
        periods,
    })
}

/// `kpis generate`: recomputes the day's periods from one MySQL snapshot and writes them
/// to Redis as a rebuild fenced against the outbox (safe while consumers run: see
/// [`Rebuild`]). The report holds the snapshot's figures.
pub async fn generate(conn: &ConnectionConfig, date: Option<NaiveDate>) -> Result<KpiReport> {
    let day = date.unwrap_or_else(|| Utc::now().date_naive());
    let keys = conn.read_model_keys();
    let redis = crate::connect_redis(conn).await?;
    let pool = crate::connect_mysql(conn).await?;
    crate::refuse_if_rewound(&pool, &redis, &keys).await?;
    let FencedRead {
        rebuild,
        values: report,
        outbox,
    } = Rebuild::read(&redis, &keys, &pool, async |conn: &mut MySqlConnection| {
        compute(conn, &keys, day).await
    })
    .await?;
    let mut rc = redis.get().await?;
    let targets: Vec<(String, KpiFigures, bool)> = report
        .periods
        .iter()
        .map(|p| (p.key.clone(), p.figures(), false))
        .collect();
    rebuild
        .finish_kpis(&mut *rc, &outbox, &targets)
        .await
        .map_err(|e| crate::ReportError::During {
            what: format!("writing the KPIs of {day}"),
            source: Box::new(e.into()),
        })?;
    pool.close().await;
    Ok(report)
}

/// `kpis show`: the day's periods as Redis holds them (zeros for a missing hash).
pub async fn show(conn: &ConnectionConfig, date: Option<NaiveDate>) -> Result<KpiReport> {
    let day = date.unwrap_or_else(|| Utc::now().date_naive());
    let keys = conn.read_model_keys();
    let redis = crate::connect_redis(conn).await?;
    show_from(&redis, &keys, day).await
}

/// [`show`] over an open pool (the HTTP API's entry point).
pub async fn show_from(
    redis: &oms_shared::redis::conn::RedisPool,
    keys: &ReadModelKeys,
    day: NaiveDate,
) -> Result<KpiReport> {
    let mut rc = redis.get().await?;
    let mut periods = Vec::new();
    for period in Period::ALL {
        let f = read_kpis(&mut *rc, &period.key(keys, day))
            .await?
            .unwrap_or_default();
        periods.push(KpiPeriod::new(period, keys, day, &f));
    }
    Ok(KpiReport {
        date: day,
        source: "redis",
        periods,
    })
}
