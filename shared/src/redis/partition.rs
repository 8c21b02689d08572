//! Which partition of the orders stream an order goes to.
//!
//! The stream can be split into `P` partitions (a property of the deployment, recorded by
//! `producer migrate --partitions P`). The producer routes each order by a hash of its
//! customer's normalised email, so one customer's orders stay in one partition and are
//! processed in file order. The hash is FNV-1a (64 bit): stable across versions, machines
//! and Rust releases (never `std`'s `DefaultHasher`, whose output may change).

/// The number of partitions of the stream: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionCount(u16);

impl PartitionCount {
    /// One partition: the stream of a single Redis, key names unchanged.
    pub const ONE: PartitionCount = PartitionCount(1);
    /// The largest partition count accepted.
    pub const MAX: u16 = 1024;

    /// `count` partitions, or `None` outside 1..=[`Self::MAX`].
    pub fn new(count: u16) -> Option<PartitionCount> {
        (1..=Self::MAX)
            .contains(&count)
            .then_some(PartitionCount(count))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// Partitions 0..count.
    pub fn all(self) -> impl Iterator<Item = u16> {
        0..self.0
    }
}

/// The partition (0-based) of an order whose customer has this normalised email.
pub fn partition_of(normalized_email: &str, partitions: PartitionCount) -> u16 {
    if partitions.0 == 1 {
        return 0;
    }
    (fnv1a64(normalized_email.as_bytes()) % u64::from(partitions.0)) as u16
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_is_always_zero() {
        assert_eq!(partition_of("a@example.com", PartitionCount::ONE), 0);
    }

    #[test]
    fn hash_is_stable_fnv1a() {
        // FNV-1a test vectors: "" and "a".
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn spreads_over_every_partition() {
        let p = PartitionCount::new(16).unwrap();
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[partition_of(&format!("customer{i}@example.com"), p) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn counts_out_of_range_are_refused() {
        assert!(PartitionCount::new(0).is_none());
        assert!(PartitionCount::new(PartitionCount::MAX + 1).is_none());
        assert_eq!(PartitionCount::new(16).unwrap().all().count(), 16);
    }
}
