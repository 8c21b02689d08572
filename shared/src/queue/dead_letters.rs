//! The dead-letter stream `P orders:dead`: rows that could not be processed after their
//! attempts, with the last error and the whole row, until `failed retry` or `failed purge`.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::Value;

use super::reply::{pairs, text};
use crate::error::Result;
use crate::keys::StreamKeys;

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

impl DeadLetter {
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
/// source entry in the same `MULTI`, so a row is never both dead and pending).
pub fn push_dead_letters(pipe: &mut redis::Pipeline, keys: &StreamKeys, letters: &[DeadLetter]) {
    for letter in letters {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(keys.dead_letters()).arg("*");
        for (field, value) in letter.to_fields() {
            cmd.arg(field).arg(value);
        }
        pipe.add_command(cmd).ignore();
    }
}

/// Dead letters from `start` (inclusive, `-` for the first), at most `count`.
pub async fn dead_letters<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    start: &str,
    count: usize,
) -> Result<Vec<DeadLetter>> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(keys.dead_letters())
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(entries) = reply else {
        return Ok(Vec::new());
    };
    Ok(entries
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if parts.len() == 2 => {
                Some(DeadLetter::from_entry(&text(&parts[0])?, &pairs(&parts[1])))
            }
            _ => None,
        })
        .collect())
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

/// Number of dead letters.
pub async fn dead_letter_count<C: ConnectionLike>(conn: &mut C, keys: &StreamKeys) -> Result<u64> {
    Ok(redis::cmd("XLEN")
        .arg(keys.dead_letters())
        .query_async(conn)
        .await?)
}

/// Deletes these dead letters (after `failed retry` put their rows back on the stream).
pub async fn delete_dead_letters<C: ConnectionLike>(
    conn: &mut C,
    keys: &StreamKeys,
    ids: &[&str],
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(redis::cmd("XDEL")
        .arg(keys.dead_letters())
        .arg(ids)
        .query_async(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
