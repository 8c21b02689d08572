//! `producer import FILE|-`: validate a CSV file of orders and enqueue it on the orders
//! stream, in chunks, with bounded memory and backpressure.
//!
//! Data flow (one import):
//!
//! ```text
//!  source::prepare ── SHA-256 pass (stdin spooled to a temp file)
//!        │
//!  reader + validate::Columns ── header checked: a bad header refuses the file, nothing enqueued
//!        │
//!  resume line of earlier imports of the same file read; imports row created (id) in a
//!  transaction that reads the partition count under a shared lock: the layout used
//!        │  (heartbeat task: `imports.heartbeat_at` every 10 s while the import runs)
//!  scan workers (one per core, blocks of the file in parallel):
//!    reader → validate_row → row JSON tails ──Batch──┐
//!  scan thread (sequencer, file order): lines, duplicate order_ids, identities,
//!    chunks per partition, rejects → --rejects file ──Shipment──► enqueuer (async)
//!                                                         │  XADD pipelines (backpressure)
//!                                                         │  import_rejects, imports row
//!  progress::display (bar or log lines)                   ▼
//!                                             summary; `--wait`: follow until every order ends
//!                                             and its read-model updates reached Redis
//! ```
//!
//! SIGINT/SIGTERM stop the scan; what was read is flushed, the import is marked
//! `interrupted`, and importing the same file again resumes after the last enqueued line.
//!
//! `--json` prints an [`ImportReport`]:
//! ```json
//! {"import_id": 3, "file": "orders.csv", "sha256": "9f86…", "status": "finished",
//!  "rows": 1000, "enqueued": 990, "rejected": 10, "rejected_by_reason": {"invalid_email": 10},
//!  "duplicates": 0, "bytes": 123456, "elapsed_secs": 0.41, "rows_per_sec": 2439.0,
//!  "outcome": null}
//! ```
//! With `--wait`, `outcome` is `{"completed": 790, "failed": {"payment_declined": 200},
//! "failed_total": 200, "duplicates": 0, "dead": 0, "revenue": "12345.60", "done": true}`.

pub mod auto_lag;
pub mod blocks;
pub mod enqueue;
#[cfg(test)]
mod hostile;
pub mod line_set;
pub mod products_canonical;
pub mod progress;
pub mod reader;
pub mod rejects_file;
pub mod scan;
pub mod scan_block;
pub mod source;
pub mod validate;
mod wait;

pub use wait::wait_for_outcome;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use oms_shared::config::ConnectionConfig;
use oms_shared::deployment::{Deployment, PoolSizes};
use oms_shared::redis::keys::StreamKeys;
use oms_shared::store::imports::{self, ImportStatus};
use oms_shared::OmsError;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::report::{print_json, table};
use enqueue::{EnqueueError, EnqueueSettings, Enqueuer};
use oms_shared::redis::conn::ReplicaWait;
use progress::Progress;
use reader::{Limits, RecordReader};
use scan::{DataStart, ScanEnd, ScanSettings};
use validate::{Columns, HeaderError};

#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// CSV file of orders, or `-` for stdin.
    pub file: String,

    /// Rows per stream entry.
    #[arg(long, env = "IMPORT_CHUNK_SIZE", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub chunk_size: u64,

    /// Pause while more than this many rows wait unread in the stream (0: no limit).
    /// Without it: automatic, a quarter second of the consumers' measured throughput (at
    /// least 2,000, at most 1,000,000).
    #[arg(long, env = "IMPORT_MAX_LAG")]
    pub max_lag: Option<u64>,

    /// Follow the import until every enqueued order is completed, failed or dead-lettered
    /// and the read models (KPIs, leaderboard) hold them all, then print the outcome;
    /// exit 1 if any ended dead.
    #[arg(long)]
    pub wait: bool,

    /// With `--wait`: give up waiting after this many seconds (exit 1); default: no limit.
    #[arg(long, requires = "wait")]
    pub wait_timeout_secs: Option<u64>,

    /// Write rejected rows to this new CSV file (`line,reason,detail,raw`, mode 0600;
    /// cells a spreadsheet would read as formulas get a leading `'`).
    #[arg(long)]
    pub rejects: Option<std::path::PathBuf>,

    /// With `--rejects`: replace the file if it exists (a symlink is replaced, not followed).
    #[arg(long, requires = "rejects")]
    pub force: bool,

    /// Import rows already imported from this same file again, as new orders.
    #[arg(long)]
    pub new: bool,

    /// Count a row enqueued only once this many replicas hold it (`WAIT` after each
    /// pipeline); default 1 on a Redis Cluster, 0 on one Redis.
    #[arg(long, env = "IMPORT_MIN_REPLICAS")]
    pub min_replicas: Option<u32>,
}

/// What `producer import` reports.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub import_id: u64,
    pub file: String,
    pub sha256: String,
    /// `finished` or `interrupted`.
    pub status: &'static str,
    pub rows: u64,
    pub enqueued: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, i64>,
    pub duplicates: u64,
    pub bytes: u64,
    pub elapsed_secs: f64,
    pub rows_per_sec: f64,
    pub outcome: Option<ImportOutcome>,
}

/// How the import's orders ended (`--wait`).
#[derive(Debug, Clone, Serialize)]
pub struct ImportOutcome {
    pub completed: i64,
    pub failed: BTreeMap<String, i64>,
    pub failed_total: i64,
    pub duplicates: i64,
    pub dead: i64,
    pub revenue: String,
    /// False when `--wait-timeout-secs` ran out first.
    pub done: bool,
}

/// Channel capacity between the scan thread and the enqueuer, in shipments (of up to
/// 4,096 rows, about 0.7 MB each): the scan runs faster than Redis takes rows, so this is
/// what bounds the memory the scan can run ahead by.
const SHIPMENTS_IN_FLIGHT: usize = 8;

/// Runs an import to its end (or until `shutdown`); the library entry point tests use.
pub async fn import(
    conn: &ConnectionConfig,
    args: &ImportArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let file = args.file.clone();

    // 1. Hash (and spool stdin), then read the header: a bad file stops here. On a thread
    // of its own, not joined when a signal arrives: a read from a silent stdin pipe cannot
    // be interrupted, and the process must still stop at once (the spool has no name; the
    // kernel frees it at exit).
    if let Some(path) = &args.rejects {
        rejects_file::check_target(path, args.force)?;
    }
    let prepare_stop = Arc::new(AtomicBool::new(false));
    let (prepared_tx, prepared_rx) = tokio::sync::oneshot::channel();
    {
        let stop = prepare_stop.clone();
        std::thread::Builder::new()
            .name("import-source".into())
            .spawn(move || {
                let _ = prepared_tx.send(open_source(&file, &stop));
            })
            .context("cannot start the source thread")?;
    }
    // 2. Connections, while the source thread hashes; a bad file is reported first all the
    // same.
    let connecting = async {
        let Deployment {
            db,
            redis,
            keys: early_keys,
        } = Deployment::connect(conn, PoolSizes::COMMAND).await?;
        let epoch = {
            let mut c = redis.get().await?;
            // Refuse to enqueue into a Redis that lost the data MySQL recorded.
            oms_shared::redis::epoch::check(&db, &mut *c, &early_keys)
                .await?
                .require_intact()?
        };
        anyhow::Ok((db, redis, early_keys, epoch))
    };
    tokio::pin!(connecting, prepared_rx);
    let mut connected = None;
    let prepared = loop {
        tokio::select! {
            prepared = &mut prepared_rx => break prepared,
            c = &mut connecting, if connected.is_none() => connected = Some(c),
            _ = shutdown.cancelled() => {
                prepare_stop.store(true, Ordering::Relaxed);
                let name = if args.file == "-" { "stdin" } else { args.file.as_str() };
                anyhow::bail!("{name}: interrupted while reading it (nothing was enqueued)");
            }
        }
    };
    let (source, file_handle, data_start, columns) =
        prepared.context("the source thread failed")??;
    let (db, redis, early_keys, epoch) = match connected {
        Some(c) => c?,
        None => connecting.await?,
    };

    // 3. The imports row.
    // Only now that both servers answered: a failed connection leaves PATH untouched.
    let rejects_file = match &args.rejects {
        Some(path) => Some(rejects_file::create(path, args.force)?),
        None => None,
    };
    let already_imported_through = if args.new {
        0
    } else {
        imports::already_imported_through(&db, &source.sha256).await?
    };
    let (import_id, partitions) = imports::create_import(
        &db,
        &imports::NewImport {
            file_name: &source.name,
            file_sha256: &source.sha256,
            new_identities: args.new,
            resumed_after_line: already_imported_through,
        },
    )
    .await?;
    // The layout read with the row (`producer migrate --partitions P`): the one checked
    // while connecting unless a repartition committed in between; then its group and epoch.
    let keys = StreamKeys::for_layout(&conn.prefix, partitions, conn.is_cluster());
    let checked = async {
        if keys.partitions() == early_keys.partitions() {
            return anyhow::Ok(epoch);
        }
        let mut c = redis.get().await?;
        oms_shared::redis::queue::ensure_group(&mut *c, &keys).await?;
        Ok(oms_shared::redis::epoch::check(&db, &mut *c, &keys)
            .await?
            .require_intact()?)
    };
    let epoch = checked.await;
    if epoch.is_err() {
        let _ = imports::record_progress(
            &db,
            import_id,
            &Default::default(),
            ImportStatus::Interrupted,
        )
        .await;
    }
    let epoch = epoch.with_context(|| format!("import {import_id}"))?;
    let heartbeat = tokio::spawn(enqueue::heartbeat(db.clone(), import_id));
    let span = tracing::info_span!("import", import_id, file = %source.name);
    tracing::info!(parent: &span, sha256 = %source.sha256, bytes = source.size, already_imported_through, "import started");

    // 4. Scan threads → enqueuer.
    let progress = Arc::new(Progress::new(source.size));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel(SHIPMENTS_IN_FLIGHT);
    let scan_settings = ScanSettings {
        file_name: source.name.clone(),
        columns,
        chunk_size: args.chunk_size as usize,
        import_id,
        file_sha256: source.sha256.clone(),
        new_identities: args.new,
        already_imported_through,
        partitions: keys.partitions(),
        workers: scan::default_workers(),
        only_lines: None,
    };
    let scanner = {
        let (stop, progress) = (stop.clone(), progress.clone());
        let scan_span = span.clone();
        std::thread::Builder::new()
            .name("import-scan".into())
            .spawn(move || {
                let _entered = scan_span.enter();
                scan::scan(
                    &file_handle,
                    data_start,
                    &scan_settings,
                    rejects_file,
                    tx,
                    &stop,
                    &progress,
                )
            })
            .context("cannot start the scan thread")?
    };
    let shown = CancellationToken::new();
    let display = tokio::spawn(progress::display(progress.clone(), shown.clone()));
    let stopper = {
        let (stop, shutdown) = (stop.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            stop.store(true, Ordering::Relaxed);
        })
    };

    let mut enqueuer = Enqueuer::new(
        db.clone(),
        redis.clone(),
        keys.clone(),
        EnqueueSettings {
            import_id,
            chunk_size: args.chunk_size as usize,
            max_lag: args.max_lag,
            epoch,
            trace_parent: oms_shared::telemetry::traceparent_of(&span),
            replica_wait: ReplicaWait::new(args.min_replicas.unwrap_or(if conn.is_cluster() {
                1
            } else {
                0
            })),
        },
        progress.clone(),
    );
    let enqueued = enqueuer.run(rx, &shutdown).instrument(span.clone()).await;
    // The enqueuer dropped its receiver: a scan still sending sees it and stops.
    stop.store(true, Ordering::Relaxed);
    let scan_end = tokio::task::spawn_blocking(move || scanner.join())
        .await?
        .unwrap_or_else(|_| ScanEnd::Failed("the scan thread panicked".into()));
    stopper.abort();
    heartbeat.abort();
    shown.cancel();
    let _ = display.await;

    let failure: Option<anyhow::Error> = match (&enqueued, &scan_end) {
        (Err(EnqueueError::Failed(e)), _) => Some(anyhow::anyhow!("import {import_id}: {e}")),
        (Err(e @ EnqueueError::Repartitioned { .. }), _) => Some(anyhow::anyhow!(
            "{e} while importing {}: its rows would go to a stream no consumer reads",
            source.name
        )),
        (_, ScanEnd::Failed(msg)) => Some(anyhow::anyhow!("{msg}")),
        _ => None,
    };
    let finished = failure.is_none() && enqueued.is_ok() && scan_end == ScanEnd::Finished;
    let status = if finished {
        ImportStatus::Finished
    } else {
        ImportStatus::Interrupted
    };
    enqueuer
        .save(status)
        .await
        .with_context(|| format!("import {import_id}: cannot record its counts"))?;
    if let Some(e) = failure {
        if matches!(
            &enqueued,
            Err(EnqueueError::Failed(OmsError::RedisDataLost(_)))
        ) {
            return Err(e.context(format!(
                "import {import_id} stopped after line {}; run `producer recover {import_id}` \
                 (it re-enqueues the rows Redis lost), then import the same file again to resume",
                enqueuer.counts.enqueued_through_line
            )));
        }
        return Err(e.context(format!(
            "import {import_id} stopped after line {} (import the same file again to resume)",
            enqueuer.counts.enqueued_through_line
        )));
    }
    let counts = enqueuer.counts;
    let elapsed = started.elapsed().as_secs_f64();
    tracing::info!(parent: &span, rows = counts.rows_total, enqueued = counts.rows_enqueued, rejected = counts.rows_rejected, duplicates = counts.rows_duplicate, status = status.as_str(), "import ended");
    Ok(ImportReport {
        import_id,
        file: source.name.clone(),
        sha256: source.sha256.clone(),
        status: status.as_str(),
        rows: counts.rows_total,
        enqueued: counts.rows_enqueued,
        rejected: counts.rows_rejected,
        rejected_by_reason: imports::rejects_by_reason(&db, import_id)
            .await?
            .into_iter()
            .collect(),
        duplicates: counts.rows_duplicate,
        bytes: source.size,
        elapsed_secs: elapsed,
        rows_per_sec: counts.rows_total as f64 / elapsed.max(1e-6),
        outcome: None,
    })
}

/// Hashes `file` (spooling stdin), opens it for the import's pass and checks its header;
/// where the data rows start.
pub(crate) fn open_source(
    file: &str,
    stop: &AtomicBool,
) -> anyhow::Result<(source::Source, std::fs::File, DataStart, Columns)> {
    let source = source::prepare(file, stop)?;
    let file = source.open()?;
    let mut reader = RecordReader::new(&file, Limits::default());
    let header = reader
        .next_record()
        .with_context(|| format!("{}: cannot read", source.name))?
        .ok_or(HeaderError::Empty)
        .and_then(|h| Columns::from_header(&h))
        .map_err(|e| anyhow::anyhow!("{}: {e}", source.name))?;
    let data_start = DataStart {
        offset: reader.bytes_consumed(),
        line: reader.line(),
        size: source.size,
    };
    drop(reader);
    Ok((source, file, data_start, header))
}

/// Human-readable summary.
pub fn render(report: &ImportReport) -> String {
    let reasons = report
        .rejected_by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut rows = vec![
        vec!["rows".into(), report.rows.to_string(), String::new()],
        vec![
            "enqueued".into(),
            report.enqueued.to_string(),
            String::new(),
        ],
        vec!["rejected".into(), report.rejected.to_string(), reasons],
        vec![
            "duplicates".into(),
            report.duplicates.to_string(),
            if report.duplicates > 0 {
                "already imported from this file (--new imports them again)".into()
            } else {
                String::new()
            },
        ],
        vec![
            "elapsed".into(),
            format!("{:.2} s", report.elapsed_secs),
            format!("{:.0} rows/s", report.rows_per_sec),
        ],
    ];
    let mut out = format!(
        "import {} of {}: {}\n",
        report.import_id, report.file, report.status
    );
    if let Some(o) = &report.outcome {
        let failed = o
            .failed
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push(vec![
            "completed".into(),
            o.completed.to_string(),
            String::new(),
        ]);
        rows.push(vec!["failed".into(), o.failed_total.to_string(), failed]);
        rows.push(vec!["dead".into(), o.dead.to_string(), String::new()]);
        rows.push(vec!["revenue".into(), o.revenue.clone(), String::new()]);
        if !o.done {
            out.push_str("gave up waiting: some orders are still in flight\n");
        }
    }
    out.push_str(&table(&["", "count", "detail"], &rows, &[1]));
    out
}

pub async fn run(
    conn: &ConnectionConfig,
    args: ImportArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let shutdown =
        oms_shared::process::shutdown_on_signals("stopping the import after what was read");
    let mut report = import(conn, &args, shutdown.clone()).await?;
    let mut ok = report.status == ImportStatus::Finished.as_str();
    if args.wait && ok {
        let outcome = wait_for_outcome(
            conn,
            report.import_id,
            args.wait_timeout_secs.map(Duration::from_secs),
            &shutdown,
        )
        .await?;
        ok = outcome.done && outcome.dead == 0;
        report.outcome = Some(outcome);
    }
    if json {
        print_json(&report);
    } else {
        println!("{}", render(&report));
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
