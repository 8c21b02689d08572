//! Every Redis key name of the system, in one place (SPEC "Redis keys").
//!
//! `P` is `OMS_PREFIX`. Nothing else in the code base formats a key.
//!
//! **Layouts.** On one Redis with one partition (the default) the names are the SPEC's:
//! `P orders`, `P orders:dead`, `P kpi:total`, … With `P` partitions (`producer migrate
//! --partitions P`) or on a Redis Cluster, the stream is split and names carry hash tags
//! (the part in braces is what a cluster hashes to pick the slot):
//!
//! - partition `N` (0-based): `P orders:{N}` (stream, group `workers`), `P orders:{N}:dead`
//!   (its dead letters), `P orders:{N}:errors` (its entries' last errors): one slot per
//!   partition, so the `MULTI` that acknowledges an entry and dead-letters its rows stays
//!   on one node, and the partitions spread over the cluster's nodes;
//! - on a cluster, every other key (KPI hashes, leaderboards, the applied-outbox record,
//!   the rebuild lease, log and staging board, the pause flag, the live order counts) is
//!   `P {rm}:` + its usual name (`P {rm}:kpi:total`, `P {rm}:leaderboard`): one slot, so
//!   the exactly-once read-model scripts and pipelines stay single-slot.
//!
//! On one Redis with `P` > 1 only the stream keys change (`P orders:{N}` …): the read
//! models keep their SPEC names.

use chrono::NaiveDate;

use crate::error::{OmsError, Result};
use crate::redis::partition::PartitionCount;

/// The hash tag of the read models' slot on a cluster.
pub(crate) const READ_MODEL_TAG: &str = "{rm}";

/// Characters that `SCAN MATCH` / `KEYS` read as a pattern: a prefix holding one would
/// make a scan of `P kpi:*` match other systems' keys.
pub(crate) const GLOB_CHARACTERS: [char; 5] = ['*', '?', '[', ']', '\\'];

/// Longest prefix accepted (key names stay short).
pub(crate) const MAX_PREFIX_LEN: usize = 128;

/// Checks `OMS_PREFIX`: non-empty, at most [`MAX_PREFIX_LEN`] bytes, no white space or
/// control character, none of the [`GLOB_CHARACTERS`].
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
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

/// On a cluster the prefix must hold no `{` or `}`: a hash tag in it would put every key
/// on one slot (and break the layout's tags).
pub(crate) fn validate_cluster_prefix(prefix: &str) -> Result<()> {
    if prefix.contains(['{', '}']) {
        return Err(OmsError::Config(format!(
            "OMS_PREFIX {prefix:?} must not contain {{ or }} on a Redis Cluster (hash tags are the key layout's)"
        )));
    }
    Ok(())
}

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of its hash tag, or of the whole key
/// without one, modulo 16384), as the cluster computes it.
pub fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then_some(&rest[..close])
        })
        .unwrap_or(bytes);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The consumer group every consumer joins.
pub const CONSUMER_GROUP: &str = "workers";

/// Names of the keys that are not the stream's, under one prefix: the read models (KPI
/// hashes, leaderboard, the applied-outbox record, the rebuild fence), the pause flag and
/// the live counters. They do not depend on the partition count, so commands that touch
/// only them (`kpis`, `leaderboard`, `reconcile`, `queue pause`) build these from the
/// configuration alone (`ConnectionConfig::read_model_keys`), and cannot name a stream.
/// On a cluster they all share one hash slot (`{rm}`), so one script may touch them all.
#[derive(Debug, Clone)]
pub struct ReadModelKeys {
    prefix: String,
    /// `P` on one Redis, `P {rm}:` on a cluster: the start of every key here.
    model_prefix: String,
    cluster: bool,
}

impl ReadModelKeys {
    /// The read-model keys under `prefix`, on a Redis Cluster when `cluster`.
    pub fn new(prefix: &str, cluster: bool) -> Self {
        ReadModelKeys {
            prefix: prefix.to_string(),
            model_prefix: if cluster {
                format!("{prefix}{READ_MODEL_TAG}:")
            } else {
                prefix.to_string()
            },
            cluster,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The cluster slot of every read-model key.
    pub fn read_model_slot(&self) -> u16 {
        hash_slot(&self.kpi_total())
    }

    /// `P readmodel:epoch`: the epoch of the Redis data of the read models, the pause flag
    /// and the live counters ([`crate::redis::epoch`]).
    pub(crate) fn read_model_epoch(&self) -> String {
        format!("{}readmodel:epoch", self.model_prefix)
    }

    pub fn kpi_daily(&self, day: NaiveDate) -> String {
        format!("{}kpi:daily:{}", self.model_prefix, day.format("%Y-%m-%d"))
    }

    pub fn kpi_monthly(&self, day: NaiveDate) -> String {
        format!("{}kpi:monthly:{}", self.model_prefix, day.format("%Y-%m"))
    }

    pub fn kpi_yearly(&self, day: NaiveDate) -> String {
        format!("{}kpi:yearly:{}", self.model_prefix, day.format("%Y"))
    }

    pub fn kpi_total(&self) -> String {
        format!("{}kpi:total", self.model_prefix)
    }

    /// Pattern matching every KPI hash (for reconcile's scan). The prefix holds no
    /// pattern character ([`validate_prefix`]); still, check what a scan returns with
    /// [`ReadModelKeys::is_kpi_key`] before deleting it.
    pub fn kpi_pattern(&self) -> String {
        format!("{}kpi:*", self.model_prefix)
    }

    /// True when `key` is one of this prefix's KPI hashes (starts with `P kpi:` literally).
    pub fn is_kpi_key(&self, key: &str) -> bool {
        key.strip_prefix(self.model_prefix.as_str())
            .is_some_and(|rest| rest.starts_with("kpi:"))
    }

    /// `P leaderboard`: member customer email, score total spent in cents.
    pub fn leaderboard(&self) -> String {
        format!("{}leaderboard", self.model_prefix)
    }

    /// `P leaderboard:YYYY-MM-DD`: the snapshot `leaderboard update` took that day.
    pub fn leaderboard_snapshot(&self, day: NaiveDate) -> String {
        format!(
            "{}leaderboard:{}",
            self.model_prefix,
            day.format("%Y-%m-%d")
        )
    }

    /// `P readmodel:applied_through`: every outbox id up to this one reached Redis.
    pub fn outbox_applied_through(&self) -> String {
        format!("{}readmodel:applied_through", self.model_prefix)
    }

    /// `P readmodel:applied`: sorted set of the outbox ids above `applied_through` that
    /// reached Redis (member and score: the id).
    pub fn outbox_applied_above(&self) -> String {
        format!("{}readmodel:applied", self.model_prefix)
    }

    /// `P readmodel:applied_max`: the highest outbox id ever applied (under the current
    /// generation). In a sane world it is at most MySQL's outbox sequence; above it, MySQL
    /// went back in time (restored from a backup, failed over to a lagging replica).
    pub(crate) fn outbox_applied_max(&self) -> String {
        format!("{}readmodel:applied_max", self.model_prefix)
    }

    /// `P readmodel:generation`: which reset of the applied record this is (an integer,
    /// incremented by `reconcile --fix` when it resets the record after a rewound MySQL).
    pub(crate) fn outbox_generation(&self) -> String {
        format!("{}readmodel:generation", self.model_prefix)
    }

    /// `P readmodel:rebuild`: the lease of the one rebuild in progress (its token).
    pub fn rebuild_lease(&self) -> String {
        format!("{}readmodel:rebuild", self.model_prefix)
    }

    /// `P readmodel:rebuild:log`: outbox batches applied while a rebuild holds the lease.
    pub(crate) fn rebuild_log(&self) -> String {
        format!("{}readmodel:rebuild:log", self.model_prefix)
    }

    /// `P readmodel:rebuild:board:<token>`: the leaderboard a rebuild is staging.
    pub(crate) fn rebuild_staging(&self, token: &str) -> String {
        format!("{}readmodel:rebuild:board:{}", self.model_prefix, token)
    }

    /// `P queue:paused`: present (value `1`) while consumers must not read new entries.
    pub fn queue_paused(&self) -> String {
        format!("{}queue:paused", self.model_prefix)
    }

    /// `P stats:orders:<unix minute>`: hash of the orders that ended in that minute
    /// (`completed`, `failed`, `failed:<reason>`, and per second `s<ss>:completed`,
    /// `s<ss>:failed`) and the lag last sampled in it (`lag`); expires after 24 hours.
    pub fn order_stats_minute(&self, unix_minute: i64) -> String {
        format!("{}stats:orders:{}", self.model_prefix, unix_minute)
    }

    /// `P stats:failed`: hash, failure reason → orders failed with it (live counter).
    pub fn failed_by_reason(&self) -> String {
        format!("{}stats:failed", self.model_prefix)
    }
}

/// Every key name under one prefix, for one stream layout (partitions, cluster or not):
/// the streams of [`StreamKeys::stream`] and, through [`StreamKeys::read_models`] (or
/// `Deref`), the [`ReadModelKeys`].
#[derive(Debug, Clone)]
pub struct StreamKeys {
    models: ReadModelKeys,
    partitions: PartitionCount,
    /// Stream keys carry a partition tag (more than one partition, or a cluster).
    tagged: bool,
}

/// A `StreamKeys` names the read-model keys too: `keys.kpi_total()` reads as it says, and
/// a `&StreamKeys` goes wherever a `&ReadModelKeys` is asked for.
impl std::ops::Deref for StreamKeys {
    type Target = ReadModelKeys;

    fn deref(&self) -> &ReadModelKeys {
        &self.models
    }
}

impl StreamKeys {
    /// One Redis, one partition: the SPEC's names.
    pub fn new(prefix: &str) -> Self {
        StreamKeys::for_layout(prefix, PartitionCount::ONE, false)
    }

    /// `partitions` partitions, on a Redis Cluster when `cluster`.
    pub fn for_layout(prefix: &str, partitions: PartitionCount, cluster: bool) -> Self {
        StreamKeys {
            models: ReadModelKeys::new(prefix, cluster),
            partitions,
            tagged: cluster || partitions.get() > 1,
        }
    }

    /// The same prefix and cluster flag with another partition count.
    pub fn with_partitions(&self, partitions: PartitionCount) -> Self {
        StreamKeys::for_layout(&self.models.prefix, partitions, self.models.cluster)
    }

    /// The keys that are not the stream's.
    pub fn read_models(&self) -> &ReadModelKeys {
        &self.models
    }

    pub fn partitions(&self) -> PartitionCount {
        self.partitions
    }

    /// True when stream keys carry partition tags (ids of dead letters are then
    /// qualified with their partition, `N:ms-seq`).
    pub fn is_partitioned(&self) -> bool {
        self.tagged
    }

    /// The stream of partition `partition`: `P orders`, or `P orders:{N}`; group `workers`.
    pub fn stream(&self, partition: u16) -> String {
        if self.tagged {
            format!("{}orders:{{{partition}}}", self.models.prefix)
        } else {
            format!("{}orders", self.models.prefix)
        }
    }

    /// Dead letters of a partition (`P orders:dead`, or `P orders:{N}:dead`), one row
    /// each, with last error and attempts.
    pub(crate) fn partition_dead_letters(&self, partition: u16) -> String {
        format!("{}:dead", self.stream(partition))
    }

    /// Hash, stream entry id → last error, while the entry is pending (`P orders:errors`,
    /// or `P orders:{N}:errors`).
    pub fn partition_message_errors(&self, partition: u16) -> String {
        format!("{}:errors", self.stream(partition))
    }

    /// `P orders:epoch` (or `P orders:{N}:epoch`): the epoch of the Redis data this
    /// partition's stream belongs to, on the stream's slot ([`crate::redis::epoch`]).
    pub(crate) fn stream_epoch(&self, partition: u16) -> String {
        format!("{}:epoch", self.stream(partition))
    }

    /// The stream of partition 0: the only one with one partition.
    pub fn orders(&self) -> String {
        self.stream(0)
    }

    /// Dead letters of partition 0: the only ones with one partition.
    pub fn dead_letters(&self) -> String {
        self.partition_dead_letters(0)
    }

    /// Entry errors of partition 0: the only ones with one partition.
    pub fn message_errors(&self) -> String {
        self.partition_message_errors(0)
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
        assert_eq!(k.stream_epoch(0), "oms:orders:epoch");
        assert_eq!(k.read_model_epoch(), "oms:readmodel:epoch");
    }

    #[test]
    fn partitioned_and_cluster_names_carry_hash_tags() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 7).unwrap();
        let p16 = PartitionCount::new(16).unwrap();
        let single = StreamKeys::for_layout("oms:", p16, false);
        assert_eq!(single.stream(7), "oms:orders:{7}");
        assert_eq!(single.partition_dead_letters(7), "oms:orders:{7}:dead");
        assert_eq!(single.partition_message_errors(7), "oms:orders:{7}:errors");
        assert_eq!(single.kpi_total(), "oms:kpi:total");
        let cluster = StreamKeys::for_layout("oms:", p16, true);
        assert_eq!(cluster.stream(0), "oms:orders:{0}");
        assert_eq!(cluster.kpi_daily(d), "oms:{rm}:kpi:daily:2026-03-07");
        assert_eq!(cluster.leaderboard(), "oms:{rm}:leaderboard");
        assert_eq!(cluster.queue_paused(), "oms:{rm}:queue:paused");
        assert!(cluster.is_kpi_key("oms:{rm}:kpi:total"));
        assert!(!cluster.is_kpi_key("oms:kpi:total"));
        // A partition's keys share a slot; every read-model key shares one slot.
        let slot = hash_slot(&cluster.stream(5));
        assert_eq!(hash_slot(&cluster.partition_dead_letters(5)), slot);
        assert_eq!(hash_slot(&cluster.partition_message_errors(5)), slot);
        assert_eq!(hash_slot(&cluster.stream_epoch(5)), slot);
        let rm = cluster.read_model_slot();
        for key in [
            cluster.leaderboard(),
            cluster.kpi_daily(d),
            cluster.outbox_applied_through(),
            cluster.outbox_applied_max(),
            cluster.outbox_generation(),
            cluster.read_model_epoch(),
            cluster.rebuild_staging("t"),
            cluster.order_stats_minute(1),
        ] {
            assert_eq!(hash_slot(&key), rm, "{key}");
        }
        // Known slots (redis-cli CLUSTER KEYSLOT): "123456789" is 12739.
        assert_eq!(hash_slot("123456789"), 12739);
        assert_eq!(hash_slot("a{123456789}b"), 12739);
        assert!(validate_cluster_prefix("a{b}:").is_err());
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
