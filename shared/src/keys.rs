//! Every Redis key name of the system, in one place (SPEC "Redis keys").
//!
//! `P` is `OMS_PREFIX`. Nothing else in the code base formats a key.

use chrono::NaiveDate;

use crate::error::{OmsError, Result};

/// Characters that `SCAN MATCH` / `KEYS` read as a pattern: a prefix holding one would
/// make a scan of `P kpi:*` match other systems' keys.
pub const GLOB_CHARACTERS: [char; 5] = ['*', '?', '[', ']', '\\'];

/// Longest prefix accepted (key names stay short).
pub const MAX_PREFIX_LEN: usize = 128;

/// Checks `OMS_PREFIX`: non-empty, at most [`MAX_PREFIX_LEN`] bytes, no white space or
/// control character, none of the [`GLOB_CHARACTERS`].
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let bad = |why: &str| Err(OmsError::Config(format!("OMS_PREFIX {prefix:?} {why}")));
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return bad("must be 1 to 128 bytes long");
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must contain no white space or control character");
    }
    if let Some(c) = prefix.chars().find(|c| GLOB_CHARACTERS.contains(c)) {
        return bad(&format!(
            "must not contain {c:?}: * ? [ ] \\ are Redis pattern characters (a scan would reach other keys)"
        ));
    }
    Ok(())
}

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

    /// Pattern matching every KPI hash (for reconcile's scan). The prefix holds no
    /// pattern character ([`validate_prefix`]); still, check what a scan returns with
    /// [`StreamKeys::is_kpi_key`] before deleting it.
    pub fn kpi_pattern(&self) -> String {
        format!("{}kpi:*", self.prefix)
    }

    /// True when `key` is one of this prefix's KPI hashes (starts with `P kpi:` literally).
    pub fn is_kpi_key(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with("kpi:"))
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

    #[test]
    fn prefixes_with_pattern_characters_are_refused() {
        for ok in ["oms:", "team-a/oms:", "x"] {
            assert!(validate_prefix(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b:",
            "sec_review*",
            "a?:",
            "a[b]:",
            "a\\:",
            "a]:",
            "a\n",
        ] {
            let e = validate_prefix(bad).unwrap_err().to_string();
            assert!(e.contains("OMS_PREFIX"), "{bad}: {e}");
        }
        assert!(validate_prefix(&"p".repeat(129)).is_err());
    }

    #[test]
    fn only_keys_under_the_literal_prefix_are_kpi_keys() {
        let k = StreamKeys::new("sec:");
        assert!(k.is_kpi_key("sec:kpi:daily:2026-01-01"));
        assert!(!k.is_kpi_key("secOTHER:kpi:daily:2026-01-01"));
        assert!(!k.is_kpi_key("sec:leaderboard"));
        assert!(!k.is_kpi_key("other:sec:kpi:total"));
    }
}
