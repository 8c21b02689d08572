//! What an import shows while it runs: a progress bar (bytes, rows, rows/s) on a terminal,
//! a plain log line every few seconds otherwise. The scan thread and the enqueuer only
//! bump atomic counters; [`display`] reads them on its own schedule.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

/// Counters shared by the scan thread, the enqueuer and the display.
#[derive(Debug)]
pub struct Progress {
    pub total_bytes: u64,
    pub started: Instant,
    bytes: AtomicU64,
    rows: AtomicU64,
    enqueued: AtomicU64,
    rejected: AtomicU64,
    /// Rows waiting unread while the enqueuer holds back (0: not waiting).
    waiting_for: AtomicU64,
}

impl Progress {
    pub fn new(total_bytes: u64) -> Self {
        Progress {
            total_bytes,
            started: Instant::now(),
            bytes: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            waiting_for: AtomicU64::new(0),
        }
    }

    /// The scan read `rows` more rows and is at byte `bytes`.
    pub fn scanned(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn enqueued(&self, rows: u64) {
        self.enqueued.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn rejected(&self, rows: u64) {
        self.rejected.fetch_add(rows, Ordering::Relaxed);
    }

    /// Backpressure: `unread` rows wait for consumers (0 when it lifts).
    pub fn waiting(&self, unread: u64) {
        self.waiting_for.store(unread, Ordering::Relaxed);
    }

    fn rows_per_sec(&self, rows: u64) -> f64 {
        rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    fn message(&self) -> String {
        let rows = self.rows.load(Ordering::Relaxed);
        let mut msg = format!(
            "{rows} rows ({:.0}/s), {} enqueued, {} rejected",
            self.rows_per_sec(rows),
            self.enqueued.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        );
        let waiting = self.waiting_for.load(Ordering::Relaxed);
        if waiting > 0 {
            msg.push_str(&format!(" - waiting for consumers: {waiting} rows unread"));
        }
        msg
    }
}

/// Shows progress until `stop`; a bar on a terminal, else a log line every 5 s.
pub async fn display(progress: std::sync::Arc<Progress>, stop: CancellationToken) {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(
            Some(progress.total_bytes),
            ProgressDrawTarget::stderr_with_hz(10),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        loop {
            bar.set_position(progress.bytes.load(Ordering::Relaxed));
            bar.set_message(progress.message());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.cancelled() => break,
            }
        }
        bar.finish_and_clear();
    } else {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.cancelled() => break,
            }
            let bytes = progress.bytes.load(Ordering::Relaxed);
            tracing::info!(
                "import progress: {} ({}/{} bytes)",
                progress.message(),
                bytes,
                progress.total_bytes
            );
        }
    }
}
