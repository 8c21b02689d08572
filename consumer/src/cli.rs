//! Entry point: parse and validate the configuration, install logging and signal
//! handlers, run [`crate::app::run`]. Exit 0 after a clean shutdown, 1 on failure, 2 on a
//! usage error.

use std::process::ExitCode;

use clap::Parser;
use oms_shared::process;

use crate::config::ConsumerConfig;

pub fn main() -> ExitCode {
    if let Err(code) = process::load_env_file() {
        return code;
    }
    let mut config = ConsumerConfig::parse();
    if let Some(port) = config.metrics_port {
        config.metrics_addr.set_port(port);
    }
    process::init_logging(config.conn.secrets(), &config.log_format, "consumer");
    if let Err(e) = config.validate() {
        return process::usage_error(&e);
    }
    process::run_to_exit(async {
        let shutdown = process::shutdown_on_signals("draining, then exiting");
        crate::app::run(config, shutdown).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
