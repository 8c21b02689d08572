//! `producer queue pause|resume`: stop every consumer reading new entries, or start again.
//!
//! The figures come from [`oms_reports::pause`]; this module parses the arguments and renders.

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

use crate::report::print_json;

use oms_reports::pause::set_paused;

#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Every consumer stops reading new entries within 1 s (held work is finished).
    Pause,
    /// Every consumer starts reading again within 1 s.
    Resume,
}

pub async fn run(
    conn: &ConnectionConfig,
    cmd: QueueCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let keys = conn.read_model_keys();
    let db = oms_reports::connect_mysql(conn).await?;
    let redis = oms_reports::connect_redis(conn).await?;
    let report = set_paused(&db, &redis, &keys, matches!(cmd, QueueCommand::Pause)).await?;
    if json {
        print_json(&report);
    } else {
        let now = if report.paused { "paused" } else { "running" };
        let before = if report.was_paused {
            "paused"
        } else {
            "running"
        };
        println!("queue {now} (was {before})");
    }
    Ok(ExitCode::SUCCESS)
}
