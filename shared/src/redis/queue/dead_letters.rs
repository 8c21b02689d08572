//! The dead-letter stream `P orders:dead`: rows that could not be processed after their
//! attempts, with the last error and the row (bounded: [`DeadLetter::bounded`]), until `failed retry` or `failed purge`.
//!
//! With partitions each partition has its own (`P orders:{N}:dead`, on its stream's slot,
//! so dead-lettering and acknowledging stay one `MULTI`); ids are then given qualified,
//! `N:ms-seq`, and listed in (partition, id) order.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::Value;

use super::reply::{pairs, text};
use crate::error::Result;
use crate::redis::keys::StreamKeys;

/// A row that could not be processed after its attempts, as kept in `orders:dead`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// Id of the entry in the dead-letter stream (empty before it is added).
    #[serde(default)]
    pub id: String,
    pub import_id: u64,
    pub line: u64,
    pub identity: String,
    /// The row as JSON ([`OrderRow`]), or the raw entry when it could not be decoded.
    pub row: String,
    pub error: String,
    pub attempts: u64,
    pub consumer: String,
    pub source_id: String,
    pub failed_at: String,
}

/// Largest row a dead letter keeps whole (any valid row is far smaller, so `failed retry`
/// puts it back as it was); a larger one keeps its first [`ROW_EXCERPT_BYTES`] and says
/// its full size, so one hostile entry cannot make every reading of the dead letters huge.
pub(crate) const MAX_KEPT_ROW_BYTES: usize = 64 * 1024;
/// What a dead letter keeps of a row over [`MAX_KEPT_ROW_BYTES`].
pub(crate) const ROW_EXCERPT_BYTES: usize = 1024;
/// Longest identity, error or consumer name a dead letter keeps (bytes).
pub(crate) const MAX_KEPT_FIELD_BYTES: usize = 1024;

/// The first `max` bytes of `text` (cut at a character boundary), with the full size
/// noted when cut.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [excerpt of {} bytes]", &text[..end], text.len())
}

impl DeadLetter {
    /// This letter within the bounds a dead letter keeps (see [`MAX_KEPT_ROW_BYTES`]).
    pub fn bounded(&self) -> DeadLetter {
        let row = if self.row.len() <= MAX_KEPT_ROW_BYTES {
            self.row.clone()
        } else {
            excerpt(&self.row, ROW_EXCERPT_BYTES)
        };
        DeadLetter {
            identity: excerpt(&self.identity, MAX_KEPT_FIELD_BYTES),
            row,
            error: excerpt(&self.error, MAX_KEPT_FIELD_BYTES),
            consumer: excerpt(&self.consumer, MAX_KEPT_FIELD_BYTES),
            ..self.clone()
        }
    }

    const FIELDS: [&'static str; 9] = [
        "import",
        "line",
        "identity",
        "row",
        "error",
        "attempts",
        "consumer",
        "source_id",
        "failed_at",
    ];

    fn to_fields(&self) -> [(&'static str, String); 9] {
        let values = [
            self.import_id.to_string(),
            self.line.to_string(),
            self.identity.clone(),
            self.row.clone(),
            self.error.clone(),
            self.attempts.to_string(),
            self.consumer.clone(),
            self.source_id.clone(),
            self.failed_at.clone(),
        ];
        let mut out: [(&'static str, String); 9] = Default::default();
        for (i, v) in values.into_iter().enumerate() {
            out[i] = (Self::FIELDS[i], v);
        }
        out
    }

    fn from_entry(id: &str, fields: &BTreeMap<String, Value>) -> DeadLetter {
        let get = |k: &str| fields.get(k).and_then(text).unwrap_or_default();
        DeadLetter {
            id: id.to_string(),
            import_id: get("import").parse().unwrap_or(0),
            line: get("line").parse().unwrap_or(0),
            identity: get("identity"),
            row: get("row"),
            error: get("error"),
            attempts: get("attempts").parse().unwrap_or(0),
            consumer: get("consumer"),
            source_id: get("source_id"),
            failed_at: get("failed_at"),
        }
    }
}

/// Adds `XADD orders:dead` commands for these rows to a pipeline (the caller acks the
/// source entry in the same `MULTI`, so a row is never both dead and pending): partition 0.
pub fn push_dead_letters(pipe: &mut redis::Pipeline, keys: &StreamKeys, letters: &[DeadLetter]) {
    push_partition_dead_letters(pipe, keys, 0, letters);
}

/// [`push_dead_letters`] to partition `partition`'s dead letters.
pub(crate) fn push_partition_dead_letters(
    pipe: &mut redis::Pipeline,
    keys: &StreamKeys,
    partition: u16,
    letters: &[DeadLetter],
) {
    for letter in letters {
        let letter = letter.bounded();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(keys.partition_dead_letters(partition)).arg("*");
        for (field, value) in letter.to_fields() {
            cmd.arg(field).arg(value);
        }
        pipe.add_command(cmd).ignore();
    }
}

/// A dead letter's id split into its partition and its id in that partition's stream:
/// `N:ms-seq` when partitioned, a plain `ms-seq` is partition 0. `None` when malformed
/// or naming a partition that does not exist.
pub(crate) fn split_dead_letter_id<'a>(keys: &StreamKeys, id: &'a str) -> Option<(u16, &'a str)> {
    let (partition, raw) = match id.split_once(':') {
        Some((p, raw)) => (p.parse::<u16>().ok()?, raw),
        None => (0, id),
    };
    (partition < keys.partitions().get()).then_some((partition, raw))
}

fn qualified(keys: &StreamKeys, partition: u16, id: String) -> String {
    if keys.is_partitioned() {
        format!("{partition}:{id}")
    } else {
        id
    }
}

/// Dead letters from `start` (inclusive; `(id` exclusive; `-` for the first), at most
/// `count`, in (partition, id) order.
pub async fn dead_letters<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    start: &str,
    count: usize,
) -> Result<Vec<DeadLetter>> {
    let (exclusive, from) = match start.strip_prefix('(') {
        Some(rest) => (true, rest),
        None => (false, start),
    };
    let (first_partition, first_start) = if from == "-" {
        (0, "-".to_string())
    } else {
        match split_dead_letter_id(keys, from) {
            Some((p, raw)) if exclusive => (p, format!("({raw}")),
            Some((p, raw)) => (p, raw.to_string()),
            None => return Ok(Vec::new()),
        }
    };
    let mut out = Vec::new();
    for partition in first_partition..keys.partitions().get() {
        if out.len() >= count {
            break;
        }
        let start = if partition == first_partition {
            first_start.clone()
        } else {
            "-".to_string()
        };
        let reply: Value = redis::cmd("XRANGE")
            .arg(keys.partition_dead_letters(partition))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count - out.len())
            .query_async(conn)
            .await?;
        let Value::Array(entries) = reply else {
            continue;
        };
        out.extend(entries.iter().filter_map(|e| match e {
            Value::Array(parts) if parts.len() == 2 => {
                let id = qualified(keys, partition, text(&parts[0])?);
                Some(DeadLetter::from_entry(&id, &pairs(&parts[1])))
            }
            _ => None,
        }));
    }
    Ok(out)
}

/// Every dead letter, paging through the stream.
pub async fn all_dead_letters<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<Vec<DeadLetter>> {
    let mut all = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page = dead_letters(conn, keys, &start, 1000).await?;
        let Some(last) = page.last() else { break };
        start = format!("({}", last.id);
        let full = page.len() == 1000;
        all.extend(page);
        if !full {
            break;
        }
    }
    Ok(all)
}

/// Number of dead letters over every partition.
pub async fn dead_letter_count<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<u64> {
    Ok(dead_letter_counts(conn, keys).await?.iter().sum())
}

/// Number of dead letters of each partition.
pub async fn dead_letter_counts<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
) -> Result<Vec<u64>> {
    let mut counts = Vec::new();
    for partition in keys.partitions().all() {
        let n: u64 = redis::cmd("XLEN")
            .arg(keys.partition_dead_letters(partition))
            .query_async(conn)
            .await?;
        counts.push(n);
    }
    Ok(counts)
}

/// Deletes these dead letters (after `failed retry` put their rows back on the stream).
pub async fn delete_dead_letters<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    ids: &[&str],
) -> Result<u64> {
    let mut deleted = 0;
    for partition in keys.partitions().all() {
        let mine: Vec<&str> = ids
            .iter()
            .filter_map(|id| split_dead_letter_id(keys, id))
            .filter(|(p, _)| *p == partition)
            .map(|(_, raw)| raw)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let n: u64 = redis::cmd("XDEL")
            .arg(keys.partition_dead_letters(partition))
            .arg(mine)
            .query_async(conn)
            .await?;
        deleted += n;
    }
    Ok(deleted)
}

/// Deletes every dead letter; returns how many there were (each partition's count and
/// deletion in one `MULTI`, so none added meanwhile is dropped uncounted).
pub async fn purge_dead_letters<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<u64> {
    let mut purged = 0;
    for partition in keys.partitions().all() {
        let key = keys.partition_dead_letters(partition);
        let (count, _): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(&key)
            .cmd("DEL")
            .arg(&key)
            .query_async(conn)
            .await?;
        purged += count;
    }
    Ok(purged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_rows_keep_an_excerpt_and_valid_rows_stay_whole() {
        let letter = DeadLetter {
            id: String::new(),
            import_id: 1,
            line: 2,
            identity: "é".repeat(2000),
            row: format!("{{\"name\":\"{}\"}}", "n".repeat(4 << 20)),
            error: "bad".into(),
            attempts: 3,
            consumer: "c".into(),
            source_id: "1-0".into(),
            failed_at: "t".into(),
        };
        let kept = letter.bounded();
        assert!(
            kept.row.len() < ROW_EXCERPT_BYTES + 64,
            "{}",
            kept.row.len()
        );
        assert!(kept
            .row
            .ends_with(&format!("[excerpt of {} bytes]", letter.row.len())));
        assert!(kept.identity.len() < MAX_KEPT_FIELD_BYTES + 64);
        assert!(kept.identity.starts_with("éé"));
        let small = DeadLetter {
            row: "x".repeat(MAX_KEPT_ROW_BYTES),
            identity: "A-1".into(),
            ..letter
        };
        assert_eq!(small.bounded(), small);
    }

    #[test]
    fn dead_letter_ids_name_their_partition() {
        use crate::redis::partition::PartitionCount;
        let one = StreamKeys::new("p:");
        assert_eq!(split_dead_letter_id(&one, "5-1"), Some((0, "5-1")));
        assert_eq!(split_dead_letter_id(&one, "1:5-1"), None);
        let p16 = StreamKeys::for_layout("p:", PartitionCount::new(16).unwrap(), true);
        assert_eq!(split_dead_letter_id(&p16, "15:5-1"), Some((15, "5-1")));
        assert_eq!(split_dead_letter_id(&p16, "16:5-1"), None);
        assert_eq!(split_dead_letter_id(&p16, "x:5-1"), None);
        assert_eq!(qualified(&p16, 3, "5-1".into()), "3:5-1");
        assert_eq!(qualified(&one, 0, "5-1".into()), "5-1");
    }

    #[test]
    fn dead_letter_fields_round_trip() {
        let letter = DeadLetter {
            id: "1-1".into(),
            import_id: 3,
            line: 9,
            identity: "abc:9".into(),
            row: "{}".into(),
            error: "boom".into(),
            attempts: 3,
            consumer: "c1".into(),
            source_id: "5-0".into(),
            failed_at: "2026-11-25T00:00:00Z".into(),
        };
        let fields: BTreeMap<String, Value> = letter
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.into_bytes())))
            .collect();
        assert_eq!(DeadLetter::from_entry("1-1", &fields), letter);
    }
}
