//! Logging set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` gives one JSON
//! object per line, anything else human-readable text. Logs go to stderr, so reports on
//! stdout stay machine-readable.
//!
//! JSON lines carry the event's fields at the top level, `span` (the innermost span with
//! its fields, e.g. the consumer's `batch` span with its import ids) and `spans` (every
//! enclosing span, outermost first). Text lines print the span path before the message.
//! Colours only when stderr is a terminal, so files and journald get plain text.
//!
//! Every line goes through [`crate::config::scrub`] with the secrets given to
//! [`hide_secrets`] (the passwords of `DATABASE_URL` and `REDIS_URL`): whatever a driver
//! puts in an error, a password never reaches the log.

use std::io::{IsTerminal, Write};
use std::sync::RwLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Secrets blanked out of every log line and error line.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds `secrets` to those blanked out of logs and of [`scrubbed`] text.
pub fn hide_secrets(secrets: Vec<String>) {
    if let Ok(mut all) = SECRETS.write() {
        all.extend(secrets);
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
    }
}

/// `text` without any secret given to [`hide_secrets`] (for lines printed outside logs).
pub fn scrubbed(text: &str) -> String {
    match SECRETS.read() {
        Ok(secrets) if !secrets.is_empty() => crate::config::scrub(text, &secrets),
        _ => text.to_string(),
    }
}

/// Stderr, one buffered event at a time, scrubbed when the event ends.
struct ScrubbedStderr;

/// One event's bytes; written to stderr, scrubbed, on drop.
struct EventBuffer(Vec<u8>);

impl Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        let text = scrubbed(&String::from_utf8_lossy(&self.0));
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer(Vec::with_capacity(256))
    }
}

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init(log_format: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ScrubbedStderr);
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
