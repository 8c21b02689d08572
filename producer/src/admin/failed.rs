//! `producer failed list|retry|purge`: the dead-letter stream `P orders:dead`.
//!
//! The figures come from [`oms_reports::failed`]; this module parses the arguments and renders.

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

use crate::report::{print_json, table};

use oms_reports::failed::{list, purge, retry, FailedList, RetryTarget};

#[derive(Debug, clap::Subcommand)]
pub enum FailedCommand {
    /// List dead letters, oldest first.
    List {
        /// How many to show (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back on the orders stream: one id, or `all`.
    Retry {
        /// A dead-letter id (from `failed list`), or `all`.
        target: String,
    },
    /// Delete every dead letter.
    Purge,
}

/// Dead letters as an aligned table (errors cut to one line of 80 characters).
pub fn render_list(list: &FailedList) -> String {
    let rows: Vec<Vec<String>> = list
        .dead_letters
        .iter()
        .map(|d| {
            let error: String = d.error.replace(['\n', '\r'], " ");
            let error = if error.chars().count() > 80 {
                format!("{}…", error.chars().take(79).collect::<String>())
            } else {
                error
            };
            vec![
                d.id.clone(),
                d.import_id.to_string(),
                d.line.to_string(),
                d.identity.clone(),
                d.attempts.to_string(),
                d.consumer.clone(),
                d.failed_at.clone(),
                error,
            ]
        })
        .collect();
    let mut out = table(
        &[
            "id",
            "import",
            "line",
            "identity",
            "attempts",
            "consumer",
            "failed at",
            "error",
        ],
        &rows,
        &[1, 2, 4],
    );
    out.push_str(&format!(
        "\n{} of {} dead letters shown",
        list.dead_letters.len(),
        list.total
    ));
    out
}

pub async fn run(
    conn: &ConnectionConfig,
    cmd: FailedCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match cmd {
        FailedCommand::List { limit } => {
            let list = list(conn, limit).await?;
            if json {
                print_json(&list);
            } else {
                println!("{}", render_list(&list));
            }
            Ok(ExitCode::SUCCESS)
        }
        FailedCommand::Retry { target } => {
            let report = retry(conn, RetryTarget::parse(&target)).await?;
            if json {
                print_json(&report);
            } else {
                for r in &report.retried {
                    println!(
                        "retried {} (import {}, line {}, identity {}) as {}",
                        r.id, r.import_id, r.line, r.identity, r.entry_id
                    );
                }
                for k in &report.kept {
                    eprintln!("kept {}: {}", k.id, k.reason);
                }
                println!(
                    "{} retried, {} kept",
                    report.retried.len(),
                    report.kept.len()
                );
            }
            Ok(if report.kept.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        FailedCommand::Purge => {
            let purged = purge(conn).await?;
            if json {
                print_json(&serde_json::json!({ "purged": purged }));
            } else {
                println!("purged {purged} dead letters");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
