//! Every Redis key name of the system, in one place (SPEC "Redis keys").
//!
//! `P` is `OMS_PREFIX`. Nothing else in the code base formats a key.

use chrono::NaiveDate;

/// The consumer group every consumer joins.
pub const CONSUMER_GROUP: &str = "workers";

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct StreamKeys {
    prefix: String,
}

impl StreamKeys {
    pub fn new(prefix: &str) -> Self {
        StreamKeys {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P orders`: the stream of order chunks, group `workers`.
    pub fn orders(&self) -> String {
        format!("{}orders", self.prefix)
    }

    /// `P orders:dead`: dead letters, one row each, with last error and attempts.
    pub fn dead_letters(&self) -> String {
        format!("{}orders:dead", self.prefix)
    }

    /// `P orders:errors`: hash, stream entry id → last error, while the entry is pending.
    pub fn message_errors(&self) -> String {
        format!("{}orders:errors", self.prefix)
    }

    pub fn kpi_daily(&self, day: NaiveDate) -> String {
        format!("{}kpi:daily:{}", self.prefix, day.format("%Y-%m-%d"))
    }

    pub fn kpi_monthly(&self, day: NaiveDate) -> String {
        format!("{}kpi:monthly:{}", self.prefix, day.format("%Y-%m"))
    }

    pub fn kpi_yearly(&self, day: NaiveDate) -> String {
        format!("{}kpi:yearly:{}", self.prefix, day.format("%Y"))
    }

    pub fn kpi_total(&self) -> String {
        format!("{}kpi:total", self.prefix)
    }

    /// Pattern matching every KPI hash (for reconcile's scan).
    pub fn kpi_pattern(&self) -> String {
        format!("{}kpi:*", self.prefix)
    }

    /// `P leaderboard`: member customer email, score total spent in cents.
    pub fn leaderboard(&self) -> String {
        format!("{}leaderboard", self.prefix)
    }

    /// `P leaderboard:YYYY-MM-DD`: the snapshot `leaderboard update` took that day.
    pub fn leaderboard_snapshot(&self, day: NaiveDate) -> String {
        format!("{}leaderboard:{}", self.prefix, day.format("%Y-%m-%d"))
    }

    /// `P readmodel:applied_through`: every outbox id up to this one reached Redis.
    pub fn outbox_applied_through(&self) -> String {
        format!("{}readmodel:applied_through", self.prefix)
    }

    /// `P readmodel:applied`: sorted set of the outbox ids above `applied_through` that
    /// reached Redis (member and score: the id).
    pub fn outbox_applied_above(&self) -> String {
        format!("{}readmodel:applied", self.prefix)
    }

    /// `P readmodel:rebuild`: the lease of the one rebuild in progress (its token).
    pub fn rebuild_lease(&self) -> String {
        format!("{}readmodel:rebuild", self.prefix)
    }

    /// `P readmodel:rebuild:log`: outbox batches applied while a rebuild holds the lease.
    pub fn rebuild_log(&self) -> String {
        format!("{}readmodel:rebuild:log", self.prefix)
    }

    /// `P readmodel:rebuild:board:<token>`: the leaderboard a rebuild is staging.
    pub fn rebuild_staging(&self, token: &str) -> String {
        format!("{}readmodel:rebuild:board:{}", self.prefix, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_spec() {
        let k = StreamKeys::new("oms:");
        let d = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
        assert_eq!(k.orders(), "oms:orders");
        assert_eq!(k.dead_letters(), "oms:orders:dead");
        assert_eq!(k.kpi_daily(d), "oms:kpi:daily:2026-03-07");
        assert_eq!(k.kpi_monthly(d), "oms:kpi:monthly:2026-03");
        assert_eq!(k.kpi_yearly(d), "oms:kpi:yearly:2026");
        assert_eq!(k.kpi_total(), "oms:kpi:total");
        assert_eq!(k.leaderboard(), "oms:leaderboard");
        assert_eq!(k.leaderboard_snapshot(d), "oms:leaderboard:2026-03-07");
    }
}
