//! `producer failed`: not built yet (Operator commands issue).

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

#[derive(Debug, clap::Subcommand)]
pub enum FailedCommand {}

pub async fn run(
    _conn: &ConnectionConfig,
    _cmd: FailedCommand,
    _json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("producer failed is not built yet")
}
