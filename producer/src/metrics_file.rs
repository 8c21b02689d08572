//! The producer's metrics (`oms_import_rows_total{result}`), written as Prometheus text to
//! a file at the end of a command: a CLI run is too short to be scraped, so the file is
//! meant for node_exporter's textfile collector (`--metrics-file`).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder (once per process); without it metrics calls cost nothing.
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _ = metrics::set_global_recorder(recorder);
        metrics::describe_counter!(
            crate::import::IMPORT_ROWS,
            "Rows of imported files, by result (enqueued, rejected, duplicate)"
        );
        handle
    });
}

/// Writes the current metrics to `path` atomically (a temp file renamed over it).
pub fn write(path: &Path) -> anyhow::Result<()> {
    let Some(handle) = HANDLE.get() else {
        return Ok(());
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, handle.render())
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("--metrics-file {}: cannot write", path.display()))
}
