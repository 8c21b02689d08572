//! Entry point: parse and validate the configuration, install logging and signal
//! handlers, run [`crate::app::run`]. Exit 0 after a clean shutdown, 1 on failure, 2 on a
//! usage error.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerConfig;

pub fn main() -> ExitCode {
    if let Err(e) = oms_shared::env_file::load_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let mut config = ConsumerConfig::parse();
    if let Some(port) = config.metrics_port {
        config.metrics_addr.set_port(port);
    }
    oms_shared::telemetry::hide_secrets(config.conn.secrets());
    oms_shared::telemetry::init(&config.log_format);
    if let Err(e) = config.validate() {
        eprintln!("error: {}", oms_shared::telemetry::scrubbed(&e.to_string()));
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        spawn_signal_listener(shutdown.clone())?;
        crate::app::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: {}",
                oms_shared::telemetry::scrubbed(&oms_shared::error::one_line(e.as_ref()))
            );
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
fn spawn_signal_listener(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
    Ok(())
}
