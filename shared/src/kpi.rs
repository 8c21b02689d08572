//! KPI arithmetic, the single definition used by the live updates (mirrored in the Lua
//! script of [`crate::redis::read_model`]), by `kpis generate` and by `reconcile`.
//!
//! A KPI hash holds `revenue` ("1234.50"), `order_count`, `average_order_value` ("61.73",
//! half-up) and `revenue_cents` (the exact integer the others derive from).

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::money::Cents;
use crate::redis::keys::ReadModelKeys;

/// Count and revenue of completed orders over one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiFigures {
    pub order_count: i64,
    pub revenue: Cents,
}

impl KpiFigures {
    /// Revenue / count rounded half up to the cent; zero when there is no order.
    pub fn average_order_value(&self) -> Cents {
        if self.order_count <= 0 {
            return Cents::ZERO;
        }
        let n = i128::from(self.order_count);
        let c = i128::from(self.revenue.0);
        Cents(((2 * c + n) / (2 * n)) as i64)
    }

    pub fn add(&mut self, order_total: Cents) {
        self.order_count += 1;
        self.revenue += order_total;
    }

    /// The hash fields, as written to Redis.
    pub fn hash_fields(&self) -> [(&'static str, String); 4] {
        [
            ("revenue", self.revenue.to_string()),
            ("order_count", self.order_count.to_string()),
            (
                "average_order_value",
                self.average_order_value().to_string(),
            ),
            ("revenue_cents", self.revenue.0.to_string()),
        ]
    }

    /// Reads a KPI hash back; `None` when a field is missing or unreadable.
    pub(crate) fn from_hash(fields: &BTreeMap<String, String>) -> Option<KpiFigures> {
        let order_count = fields.get("order_count")?.parse().ok()?;
        let revenue = match fields.get("revenue_cents") {
            Some(c) => Cents(c.parse().ok()?),
            None => fields.get("revenue")?.parse().ok()?,
        };
        Some(KpiFigures {
            order_count,
            revenue,
        })
    }
}

/// The periods a KPI hash covers. Every completed order counts in one of each: its KPI
/// day's, that day's month's and year's, and the total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Monthly,
    Yearly,
    Total,
}

impl Period {
    /// In the order reports print them.
    pub const ALL: [Period; 4] = [
        Period::Daily,
        Period::Monthly,
        Period::Yearly,
        Period::Total,
    ];

    /// The name reports and the API use (`daily`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
            Period::Total => "total",
        }
    }

    /// The period of `day` as printed: `2026-03-07`, `2026-03`, `2026`, `all`.
    pub fn label(self, day: NaiveDate) -> String {
        match self {
            Period::Daily => day.format("%Y-%m-%d").to_string(),
            Period::Monthly => day.format("%Y-%m").to_string(),
            Period::Yearly => day.format("%Y").to_string(),
            Period::Total => "all".to_string(),
        }
    }

    /// The Redis hash of the period of `day`.
    pub fn key(self, keys: &ReadModelKeys, day: NaiveDate) -> String {
        match self {
            Period::Daily => keys.kpi_daily(day),
            Period::Monthly => keys.kpi_monthly(day),
            Period::Yearly => keys.kpi_yearly(day),
            Period::Total => keys.kpi_total(),
        }
    }

    /// First and last KPI day of the period of `day`; `None` for the total (every day).
    pub fn days(self, day: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a valid date");
        match self {
            Period::Daily => Some((day, day)),
            Period::Monthly => {
                let next = if day.month() == 12 {
                    ymd(day.year() + 1, 1, 1)
                } else {
                    ymd(day.year(), day.month() + 1, 1)
                };
                Some((ymd(day.year(), day.month(), 1), next.pred_opt()?))
            }
            Period::Yearly => Some((ymd(day.year(), 1, 1), ymd(day.year(), 12, 31))),
            Period::Total => None,
        }
    }
}

/// The four KPI hashes an order of `day` counts in: daily, monthly, yearly, total.
pub fn kpi_keys_for_day(keys: &ReadModelKeys, day: NaiveDate) -> [String; 4] {
    Period::ALL.map(|p| p.key(keys, day))
}

/// A completed order as the read models see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedOrder {
    #[serde(rename = "d")]
    pub kpi_day: NaiveDate,
    #[serde(rename = "e")]
    pub email: String,
    #[serde(rename = "c")]
    pub total: Cents,
}

/// What a batch of completed orders adds to Redis: per KPI hash, per leaderboard member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadModelDelta {
    pub kpis: BTreeMap<String, KpiFigures>,
    pub leaderboard: BTreeMap<String, Cents>,
}

/// Sums completed orders into one delta per key, so a batch costs one script call.
pub fn aggregate(keys: &ReadModelKeys, orders: &[CompletedOrder]) -> ReadModelDelta {
    let mut delta = ReadModelDelta::default();
    for order in orders {
        for key in kpi_keys_for_day(keys, order.kpi_day) {
            delta.kpis.entry(key).or_default().add(order.total);
        }
        *delta.leaderboard.entry(order.email.clone()).or_default() += order.total;
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_period_covers_its_days() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let day = d(2024, 2, 10);
        assert_eq!(Period::Daily.days(day), Some((day, day)));
        assert_eq!(
            Period::Monthly.days(day),
            Some((d(2024, 2, 1), d(2024, 2, 29)))
        );
        assert_eq!(
            Period::Monthly.days(d(2025, 12, 31)),
            Some((d(2025, 12, 1), d(2025, 12, 31)))
        );
        assert_eq!(
            Period::Yearly.days(d(2025, 6, 1)),
            Some((d(2025, 1, 1), d(2025, 12, 31)))
        );
        assert_eq!(Period::Total.days(day), None);
        let labels: Vec<String> = Period::ALL.iter().map(|p| p.label(day)).collect();
        assert_eq!(labels, ["2024-02-10", "2024-02", "2024", "all"]);
    }

    #[test]
    fn average_rounds_half_up() {
        let f = |count, cents| {
            KpiFigures {
                order_count: count,
                revenue: Cents(cents),
            }
            .average_order_value()
        };
        assert_eq!(f(0, 0), Cents(0));
        assert_eq!(f(2, 3), Cents(2)); // 1.5 cents → 2
        assert_eq!(f(3, 100), Cents(33));
        assert_eq!(f(3, 200), Cents(67));
        assert_eq!(f(20, 123450), Cents(6173)); // 61.725 → 61.73
    }

    #[test]
    fn hash_fields_match_the_spec_format() {
        let k = KpiFigures {
            order_count: 20,
            revenue: Cents(123450),
        };
        let fields: BTreeMap<_, _> = k
            .hash_fields()
            .into_iter()
            .map(|(a, b)| (a.to_string(), b))
            .collect();
        assert_eq!(fields["revenue"], "1234.50");
        assert_eq!(fields["order_count"], "20");
        assert_eq!(fields["average_order_value"], "61.73");
        assert_eq!(KpiFigures::from_hash(&fields), Some(k));
    }

    #[test]
    fn aggregate_sums_per_period_and_customer() {
        let keys = ReadModelKeys::new("p:", false);
        let d1 = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        let d2 = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        let orders = [
            CompletedOrder {
                kpi_day: d1,
                email: "a@x".into(),
                total: Cents(1000),
            },
            CompletedOrder {
                kpi_day: d1,
                email: "b@x".into(),
                total: Cents(250),
            },
            CompletedOrder {
                kpi_day: d2,
                email: "a@x".into(),
                total: Cents(5),
            },
        ];
        let delta = aggregate(&keys, &orders);
        assert_eq!(
            delta.kpis["p:kpi:daily:2026-01-31"],
            KpiFigures {
                order_count: 2,
                revenue: Cents(1250)
            }
        );
        assert_eq!(
            delta.kpis["p:kpi:monthly:2026-02"],
            KpiFigures {
                order_count: 1,
                revenue: Cents(5)
            }
        );
        assert_eq!(
            delta.kpis["p:kpi:yearly:2026"],
            KpiFigures {
                order_count: 3,
                revenue: Cents(1255)
            }
        );
        assert_eq!(
            delta.kpis["p:kpi:total"],
            KpiFigures {
                order_count: 3,
                revenue: Cents(1255)
            }
        );
        assert_eq!(delta.leaderboard["a@x"], Cents(1005));
        assert_eq!(delta.kpis.len(), 6); // 2 days, 2 months, 1 year, total
    }
}
