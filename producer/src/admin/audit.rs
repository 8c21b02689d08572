//! `producer audit [--since DATETIME] [--limit N]`: the latest operator actions, newest
//! first, as a table or `--json` ([`oms_reports::audit::AuditReport`]).

use std::process::ExitCode;

use anyhow::Context;
use oms_shared::config::ConnectionConfig;

use crate::report::{print_json, table};

use oms_reports::audit::{audit_log, parse_since, AuditReport, DEFAULT_LIMIT};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only actions at or after this time (UTC): `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]`, or
    /// RFC 3339 with an offset.
    #[arg(long)]
    pub since: Option<String>,
    /// How many actions to show (at most 1000).
    #[arg(long, default_value_t = DEFAULT_LIMIT)]
    pub limit: u32,
}

/// The actions as an aligned table.
pub fn render(report: &AuditReport) -> String {
    let rows: Vec<Vec<String>> = report
        .entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.at.clone(),
                e.actor.clone(),
                e.action.clone(),
                e.outcome.replace(['\n', '\r'], " "),
                e.arguments.clone(),
            ]
        })
        .collect();
    table(
        &["id", "at", "actor", "action", "outcome", "arguments"],
        &rows,
        &[0],
    )
}

pub async fn run(conn: &ConnectionConfig, args: AuditArgs, json: bool) -> anyhow::Result<ExitCode> {
    let since = match &args.since {
        Some(s) => Some(parse_since(s).with_context(|| {
            format!("--since {s:?}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or RFC 3339")
        })?),
        None => None,
    };
    let db = oms_reports::connect_mysql(conn).await?;
    let report = audit_log(&db, since, args.limit).await?;
    if json {
        print_json(&report);
    } else {
        println!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
