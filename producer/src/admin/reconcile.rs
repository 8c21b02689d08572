//! `producer reconcile`: not built yet (Operator commands issue).

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {}

pub async fn run(
    _conn: &ConnectionConfig,
    _args: ReconcileArgs,
    _json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::bail!("producer reconcile is not built yet")
}
