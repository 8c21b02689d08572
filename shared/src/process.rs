//! Process start-up and exit, the same for both binaries: the `OMS_ENV_FILE` settings,
//! logging with the connection secrets hidden, the async runtime, the SIGTERM/SIGINT
//! listener that starts a graceful shutdown, and the exit codes.
//!
//! Exit codes: 0 success, 1 failure ([`ExitCode::FAILURE`]), 2 usage error
//! ([`usage_error`]: a bad flag, setting or environment file). Every error is printed as
//! one line, `error: ...`, with the secrets of the connection URLs scrubbed.

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// The exit code of a usage error (a bad flag, setting or environment file).
pub(crate) const USAGE_EXIT_CODE: u8 = 2;

/// Prints `error: <e>` (secrets scrubbed) and returns the usage exit code, 2.
pub fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {}", crate::telemetry::scrubbed(&e.to_string()));
    ExitCode::from(USAGE_EXIT_CODE)
}

/// Loads `OMS_ENV_FILE` into the environment (before the flags are parsed, so its values
/// act as env fallbacks); a bad file is a usage error.
pub fn load_env_file() -> Result<(), ExitCode> {
    crate::env_file::load_from_env().map_err(|e| usage_error(&e))
}

/// Installs logging (`LOG_FORMAT`), hiding these secrets from every line, and traces
/// when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`service_name`: the default `service.name`;
/// see `telemetry`).
pub fn init_logging(secrets: Vec<String>, log_format: &str, service_name: &str) {
    crate::telemetry::hide_secrets(secrets);
    crate::telemetry::init_for_service(log_format, service_name);
}

/// Runs `main` on a multi-threaded runtime and maps its outcome to the exit code: its own
/// code on success, 1 with the error on one line otherwise. Then, outside the runtime,
/// exports the spans still buffered ([`crate::telemetry::shutdown_traces`]).
pub fn run_to_exit<F, E>(main: F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, E>>,
    E: AsRef<dyn std::error::Error + Send + Sync + 'static>,
{
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
    let code = match runtime.block_on(main) {
        Ok(code) => code,
        Err(e) => {
            let error: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!(
                "error: {}",
                crate::telemetry::scrubbed(&crate::error::one_line(error))
            );
            ExitCode::FAILURE
        }
    };
    crate::telemetry::shutdown_traces();
    code
}

/// A token cancelled on the first SIGTERM or SIGINT (Ctrl-C), logging `what` (e.g.
/// "stopping the import after what was read"). Must be called inside the runtime.
///
/// The handlers are registered before this returns, not in the task that waits for them:
/// a signal that arrives while the process starts (before that task first runs) would
/// otherwise meet the default action, or be lost where the parent ignores SIGINT (as a
/// non-interactive shell does for its background commands).
pub fn shutdown_on_signals(what: &'static str) -> CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let cancel = token.clone();
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    tokio::spawn(async move {
        let wait = |registered: std::io::Result<tokio::signal::unix::Signal>| async move {
            match registered {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(interrupt) => tracing::info!("SIGINT received: {what}"),
            _ = wait(terminate) => tracing::info!("SIGTERM received: {what}"),
        }
        cancel.cancel();
    });
    token
}
