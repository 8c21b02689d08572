//! `producer import`: not built yet (Producer issue).

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// CSV file of orders, or `-` for stdin.
    pub file: String,
}

pub async fn run(
    _conn: &ConnectionConfig,
    _args: ImportArgs,
    _json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("producer import is not built yet")
}
