//! `producer leaderboard`: not built yet (Operator commands issue).

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

#[derive(Debug, clap::Subcommand)]
pub enum LeaderboardCommand {}

pub async fn run(
    _conn: &ConnectionConfig,
    _cmd: LeaderboardCommand,
    _json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("producer leaderboard is not built yet")
}
