//! The audit log: who did which operator action, when, with what arguments and outcome
//! (`producer audit`, `GET /api/audit`). Rows are written by the CLI and the API through
//! [`oms_shared::store::audit::record`]; [`AuditReport`] is what both read.
//!
//! `--json` / the API return `{"entries": [{"id", "at", "action", "arguments", "outcome",
//! "actor"}]}`, newest first; `at` is UTC, RFC 3339 with milliseconds.

use chrono::NaiveDateTime;
use serde::Serialize;
use sqlx::MySqlPool;

use crate::Result;

/// Rows returned when no limit is given.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most rows one call returns.
pub const MAX_LIMIT: u32 = 1000;

/// One recorded operator action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: u64,
    /// When (UTC, RFC 3339).
    pub at: String,
    /// `queue pause`, `failed retry`, `kpis generate`, `migrate`, ...
    pub action: String,
    /// The command line after `producer`, or `METHOD /path?query` for the API.
    pub arguments: String,
    /// `ok`, or `failed: <why>`.
    pub outcome: String,
    /// `user@host` (CLI) or `api:<token name or anonymous>@<peer address>` (API).
    pub actor: String,
}

/// The latest recorded actions, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditReport {
    pub entries: Vec<AuditEntry>,
}

/// Reads at most `limit` (capped at [`MAX_LIMIT`]) actions at or after `since` (UTC).
pub async fn audit_log(
    db: &MySqlPool,
    since: Option<NaiveDateTime>,
    limit: u32,
) -> Result<AuditReport> {
    let rows = oms_shared::store::audit::list(db, since, limit.clamp(1, MAX_LIMIT)).await?;
    Ok(AuditReport {
        entries: rows
            .into_iter()
            .map(|r| AuditEntry {
                id: r.id,
                at: r.at.and_utc().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                action: r.action,
                arguments: r.arguments,
                outcome: r.outcome,
                actor: r.actor,
            })
            .collect(),
    })
}

/// Parses `--since` / `?since=`: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (or with a space),
/// or RFC 3339 with an offset; naive times are UTC.
pub fn parse_since(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t);
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_times_and_offsets() {
        let day = parse_since("2026-12-04").unwrap();
        assert_eq!(day.to_string(), "2026-12-04 00:00:00");
        assert_eq!(
            parse_since("2026-12-04T10:30").unwrap().to_string(),
            "2026-12-04 10:30:00"
        );
        assert_eq!(
            parse_since("2026-12-04 10:30:05").unwrap().to_string(),
            "2026-12-04 10:30:05"
        );
        assert_eq!(
            parse_since("2026-12-04T10:30:05+02:00")
                .unwrap()
                .to_string(),
            "2026-12-04 08:30:05"
        );
        for bad in ["", "yesterday", "2026-13-01", "12/04/2026"] {
            assert!(parse_since(bad).is_none(), "{bad}");
        }
    }
}
