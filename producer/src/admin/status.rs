//! `producer status`: not built yet (Operator commands issue).

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {}

pub async fn run(
    _conn: &ConnectionConfig,
    _args: StatusArgs,
    _json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("producer status is not built yet")
}
