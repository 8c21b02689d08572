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

    /// `P queue:paused`: present (value `1`) while consumers must not read new entries.
    pub fn queue_paused(&self) -> String {
        format!("{}queue:paused", self.prefix)
    }

    /// `P stats:orders:<unix minute>`: hash of the orders that ended in that minute
    /// (`completed`, `failed`, `failed:<reason>`, and per second `s<ss>:completed`,
    /// `s<ss>:failed`); expires after two hours.
    pub fn order_stats_minute(&self, unix_minute: i64) -> String {
        format!("{}stats:orders:{}", self.prefix, unix_minute)
    }

    /// `P stats:failed`: hash, failure reason → orders failed with it (live counter).
    pub fn failed_by_reason(&self) -> String {
        format!("{}stats:failed", self.prefix)
    }

    /// `P readmodel:applied:<outbox id>`: marker that one outbox batch reached Redis.
    pub fn outbox_applied(&self, outbox_id: u64) -> String {
        format!("{}readmodel:applied:{}", self.prefix, outbox_id)
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
        assert_eq!(k.queue_paused(), "oms:queue:paused");
        assert_eq!(
            k.order_stats_minute(29_000_000),
            "oms:stats:orders:29000000"
        );
        assert_eq!(k.failed_by_reason(), "oms:stats:failed");
    }
}
