//! `producer kpis`: not built yet (Operator commands issue).

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

#[derive(Debug, clap::Subcommand)]
pub enum KpisCommand {}

pub async fn run(
    _conn: &ConnectionConfig,
    _cmd: KpisCommand,
    _json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("producer kpis is not built yet")
}
