//! The end of a batch's deliveries on Redis: dead letters, acknowledgements and error notes
//! of one partition in one atomic pipeline (the partition's keys share one hash slot, so
//! this also holds on a cluster). The only place that writes `XACK`.

use super::dead_letters::{push_partition_dead_letters, DeadLetter};
use crate::redis::keys::{StreamKeys, CONSUMER_GROUP};

/// Longest error note kept per pending entry.
const MAX_NOTE_CHARS: usize = 2000;

/// The `MULTI` that dead-letters `dead`, acknowledges `ack` (forgetting their error notes)
/// and notes the last error of each entry of `pending` (left for a later delivery), all
/// on partition `partition`.
pub fn acknowledgement(
    keys: &StreamKeys,
    partition: u16,
    ack: &[String],
    dead: &[DeadLetter],
    pending: &[(String, String)],
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic();
    push_partition_dead_letters(&mut pipe, keys, partition, dead);
    if !ack.is_empty() {
        pipe.cmd("XACK")
            .arg(keys.stream(partition))
            .arg(CONSUMER_GROUP)
            .arg(ack)
            .ignore();
        pipe.cmd("HDEL")
            .arg(keys.partition_message_errors(partition))
            .arg(ack)
            .ignore();
    }
    for (id, error) in pending {
        pipe.cmd("HSET")
            .arg(keys.partition_message_errors(partition))
            .arg(id)
            .arg(error.chars().take(MAX_NOTE_CHARS).collect::<String>())
            .ignore();
    }
    pipe
}
