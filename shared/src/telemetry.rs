//! Logging set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` gives one JSON
//! object per line, anything else human-readable text. Logs go to stderr, so reports on
//! stdout stay machine-readable.
//!
//! JSON lines carry the event's fields at the top level, `span` (the innermost span with
//! its fields, e.g. the consumer's `batch` span with its import ids) and `spans` (every
//! enclosing span, outermost first). Text lines print the span path before the message.
//! Colours only when stderr is a terminal, so files and journald get plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init(log_format: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if log_format.eq_ignore_ascii_case("json") {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
