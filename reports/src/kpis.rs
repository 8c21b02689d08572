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
use chrono::{Datelike, NaiveDate, Utc};
use oms_shared::config::ConnectionConfig;
use oms_shared::keys::StreamKeys;
use oms_shared::kpi::KpiFigures;
use oms_shared::read_model::{read_kpis, Rebuild};
use oms_shared::store::outbox::Snapshot;
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
    fn new(period: &'static str, label: String, key: String, f: &KpiFigures) -> Self {
        KpiPeriod {
            period,
            label,
            key,
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

/// First and last day of the day's month and year.
fn month_range(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = day.with_day(1).expect("day 1 exists");
    let next = if day.month() == 12 {
        NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
    }
    .expect("valid month");
    (first, next.pred_opt().expect("valid day"))
}

fn year_range(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    (
        NaiveDate::from_ymd_opt(day.year(), 1, 1).expect("valid"),
        NaiveDate::from_ymd_opt(day.year(), 12, 31).expect("valid"),
    )
}

/// (period, label, key) of the four KPI hashes a day counts in.
fn periods_of(keys: &StreamKeys, day: NaiveDate) -> [(&'static str, String, String); 4] {
    [
        (
            "daily",
            day.format("%Y-%m-%d").to_string(),
            keys.kpi_daily(day),
        ),
        (
            "monthly",
            day.format("%Y-%m").to_string(),
            keys.kpi_monthly(day),
        ),
        ("yearly", day.format("%Y").to_string(), keys.kpi_yearly(day)),
        ("total", "all".to_string(), keys.kpi_total()),
    ]
}

/// The four periods' figures computed from MySQL (a pool connection or a snapshot's).
pub async fn compute(
    db: &mut MySqlConnection,
    keys: &StreamKeys,
    day: NaiveDate,
) -> Result<KpiReport> {
    let (m0, m1) = month_range(day);
    let (y0, y1) = year_range(day);
    let figures = [
        reports::kpi_between(&mut *db, day, day).await?,
        reports::kpi_between(&mut *db, m0, m1).await?,
        reports::kpi_between(&mut *db, y0, y1).await?,
        reports::kpi_total(&mut *db).await?,
    ];
    let periods = periods_of(keys, day)
        .into_iter()
        .zip(figures.iter())
        .map(|((period, label, key), f)| KpiPeriod::new(period, label, key, f))
        .collect();
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
    let mut rc = redis.get().await?;
    let rebuild = Rebuild::begin(&redis, &keys).await?;
    let read = async {
        let mut snapshot = Snapshot::begin(&pool).await?;
        let report = compute(snapshot.conn(), &keys, day).await?;
        let outbox = snapshot.outbox().await?;
        snapshot.finish().await?;
        Ok::<_, crate::ReportError>((report, outbox))
    }
    .await;
    let (report, outbox) = match read {
        Ok(read) => read,
        Err(e) => {
            let _ = rebuild.abandon(&mut *rc).await;
            return Err(e);
        }
    };
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
    redis: &oms_shared::redis_conn::RedisPool,
    keys: &StreamKeys,
    day: NaiveDate,
) -> Result<KpiReport> {
    let mut rc = redis.get().await?;
    let mut periods = Vec::new();
    for (period, label, key) in periods_of(keys, day) {
        let f = read_kpis(&mut *rc, &key).await?.unwrap_or_default();
        periods.push(KpiPeriod::new(period, label, key, &f));
    }
    Ok(KpiReport {
        date: day,
        source: "redis",
        periods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_and_year_ranges() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(month_range(d(2024, 2, 10)), (d(2024, 2, 1), d(2024, 2, 29)));
        assert_eq!(
            month_range(d(2025, 12, 31)),
            (d(2025, 12, 1), d(2025, 12, 31))
        );
        assert_eq!(year_range(d(2025, 6, 1)), (d(2025, 1, 1), d(2025, 12, 31)));
    }
}
