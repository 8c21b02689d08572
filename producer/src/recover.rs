//! `producer recover [IMPORT] [--file PATH]`: bring back what a store lost.
//!
//! When Redis lost its data (restarted without persistence: [`oms_shared::redis::epoch`]
//! says so), recovery
//! 1. gives Redis a new epoch (consumers, which stopped taking work, resume within a
//!    second) and the pause flag MySQL recorded;
//! 2. rebuilds every read model from MySQL and resets Redis's record of applied outbox
//!    rows to the same snapshot (`reconcile --fix`'s fenced rebuild, as after a MySQL
//!    that went back in time: the wiped record cannot tell which outbox rows the rebuilt
//!    values lack);
//!
//! and, in any case,
//! 3. re-enqueues, for each import (IMPORT, or every import with rows MySQL does not
//!    account for), exactly the rows of its lines that are neither in MySQL (an order, a
//!    duplicate the consumers found, a dead letter) nor in the stream, read again from the
//!    import's file, whose SHA-256 must be the import's. The same rows travel with the
//!    same identities, so running it twice, or while consumers run, processes nothing
//!    twice: a row enqueued again that was in fact processed meanwhile is a no-op.
//!
//! What MySQL accounts for is read *after* the stream (a row leaves the stream only after
//! its order is in MySQL), so a row is never taken for lost while it moves between them.
//! Lines after the import's `enqueued_through_line` were never enqueued: importing the
//! same file again resumes them (the report says so for an interrupted import).
//!
//! `--json` prints a [`RecoverReport`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use oms_shared::config::ConnectionConfig;
use oms_shared::deployment::{Deployment, PoolSizes};
use oms_shared::redis::conn::{RedisPool, ReplicaWait};
use oms_shared::redis::epoch::{self, EpochState};
use oms_shared::redis::keys::StreamKeys;
use oms_shared::store::imports::{self, RecoveryView};
use serde::Serialize;
use sqlx::MySqlPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::import::enqueue::retry;
use crate::import::line_set::LineSet;
use crate::import::progress::Progress;
use crate::import::scan::{self, ScanEnd, ScanSettings, Shipment};
use crate::report::{print_json, table};

#[derive(Debug, Clone, clap::Args)]
pub struct RecoverArgs {
    /// The import to recover; default: every import with rows MySQL does not account for.
    pub import: Option<u64>,

    /// The import's CSV file, when it is no longer where it was imported from (its
    /// SHA-256 must be the import's); only with IMPORT.
    #[arg(long, requires = "import")]
    pub file: Option<PathBuf>,

    /// Rows per stream entry of the rows enqueued again.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub chunk_size: u64,
}

/// What `recover` did.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    /// The new epoch, when Redis had lost its data.
    pub new_epoch: Option<String>,
    /// Why Redis was taken for having lost its data.
    pub redis_data_lost: Option<String>,
    /// The pause flag written back (when Redis had lost its data).
    pub paused: Option<bool>,
    /// Whether the read models were rebuilt from MySQL.
    pub read_models_rebuilt: bool,
    pub imports: Vec<ImportRecovery>,
}

/// One import's recovery.
#[derive(Debug, Clone, Serialize)]
pub struct ImportRecovery {
    pub import_id: u64,
    pub file: String,
    /// Lines checked: after `resumed_after_line`, through `enqueued_through_line`.
    pub lines_from: u64,
    pub lines_through: u64,
    /// Lines neither in MySQL nor in the stream (rejected rows among them are not
    /// enqueued).
    pub missing_lines: u64,
    /// Rows enqueued again.
    pub enqueued: u64,
    /// Set when lines after `lines_through` were never enqueued (an interrupted import).
    pub resume_hint: Option<String>,
}

pub async fn run(
    conn: &ConnectionConfig,
    args: RecoverArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let shutdown = oms_shared::process::shutdown_on_signals("stopping the recovery");
    let report = recover(conn, &args, &shutdown).await?;
    if json {
        print_json(&report);
    } else {
        println!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a recovery (tests call this directly).
pub async fn recover(
    conn: &ConnectionConfig,
    args: &RecoverArgs,
    shutdown: &CancellationToken,
) -> anyhow::Result<RecoverReport> {
    let Deployment { db, redis, keys } = Deployment::connect(conn, PoolSizes::COMMAND).await?;
    let mut report = RecoverReport {
        new_epoch: None,
        redis_data_lost: None,
        paused: None,
        read_models_rebuilt: false,
        imports: Vec::new(),
    };
    let epoch = {
        let mut rc = redis.get().await?;
        match epoch::check(&db, &mut *rc, &keys).await? {
            EpochState::Intact(epoch) => epoch,
            EpochState::Lost(loss) => {
                report.redis_data_lost = Some(loss.describe());
                let epoch = epoch::establish(&db, &mut *rc, &keys).await?;
                report.paused =
                    Some(oms_shared::redis::pause::reassert(&db, &mut *rc, &keys).await?);
                tracing::info!(%epoch, "Redis had lost its data: new epoch recorded");
                report.new_epoch = Some(epoch.clone());
                epoch
            }
        }
    };
    if report.new_epoch.is_some() {
        oms_reports::reconcile::rebuild_after_data_loss(conn)
            .await
            .context("rebuilding the read models from MySQL")?;
        report.read_models_rebuilt = true;
    }
    let imports = match args.import {
        Some(id) => vec![imports::recovery_view(&db, id)
            .await?
            .with_context(|| format!("import {id} not found"))?],
        None => imports::imports_with_unaccounted_rows(&db).await?,
    };
    let target = Target {
        db: &db,
        redis: &redis,
        keys: &keys,
        epoch: &epoch,
        wait: ReplicaWait::new(if conn.is_cluster() { 1 } else { 0 }),
        chunk_size: args.chunk_size as usize,
    };
    for view in imports {
        let one = recover_import(&target, &view, args.file.as_ref(), shutdown).await?;
        report.imports.push(one);
    }
    Ok(report)
}

/// Where rows go back to.
struct Target<'a> {
    db: &'a MySqlPool,
    redis: &'a RedisPool,
    keys: &'a StreamKeys,
    epoch: &'a str,
    wait: ReplicaWait,
    chunk_size: usize,
}

/// Finds an import's missing lines and enqueues their rows again from its file.
async fn recover_import(
    target: &Target<'_>,
    view: &RecoveryView,
    file: Option<&PathBuf>,
    shutdown: &CancellationToken,
) -> anyhow::Result<ImportRecovery> {
    let id = view.id;
    let mut missing = LineSet::all_between(view.resumed_after_line, view.enqueued_through_line);
    // The stream first, MySQL second: a row leaves the stream only once MySQL has it.
    {
        let mut rc = target.redis.get().await?;
        oms_shared::redis::queue::import_lines_in_stream(&mut *rc, target.keys, id, |l| {
            missing.remove(l)
        })
        .await?;
    }
    imports::accounted_lines(target.db, id, |l| missing.remove(l)).await?;
    let mut out = ImportRecovery {
        import_id: id,
        file: view.file_name.clone(),
        lines_from: view.resumed_after_line + 1,
        lines_through: view.enqueued_through_line,
        missing_lines: missing.len(),
        enqueued: 0,
        resume_hint: (view.status != "finished").then(|| {
            format!(
                "import {id} is {}: lines after {} were never enqueued; import {} again to resume",
                view.status, view.enqueued_through_line, view.file_name
            )
        }),
    };
    if missing.is_empty() {
        return Ok(out);
    }
    let path = file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| view.file_name.clone());
    out.enqueued = enqueue_lines(target, view, &path, Arc::new(missing), shutdown).await?;
    tracing::info!(
        import_id = id,
        missing = out.missing_lines,
        enqueued = out.enqueued,
        "rows enqueued again"
    );
    Ok(out)
}

/// Reads `path` (checking it is the import's file) and enqueues the valid rows of the
/// `wanted` lines under the import's id, with their original identities.
// Long on purpose: check the file's digest, then one pass over it that picks the wanted
// lines and enqueues them in chunks, with the counts the caller reports.
async fn enqueue_lines(
    target: &Target<'_>,
    view: &RecoveryView,
    path: &str,
    wanted: Arc<LineSet>,
    shutdown: &CancellationToken,
) -> anyhow::Result<u64> {
    let needed = || {
        format!(
            "import {} needs its file (SHA-256 {}): run `producer recover {} --file PATH`",
            view.id, view.file_sha256, view.id
        )
    };
    if path == "-" || path == "stdin" {
        anyhow::bail!("{} (it was read from stdin)", needed());
    }
    let (source, file, data_start, columns) = {
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            crate::import::open_source(&path, &AtomicBool::new(false))
        })
        .await?
        .with_context(needed)?
    };
    if source.sha256 != view.file_sha256 {
        anyhow::bail!(
            "{}: SHA-256 {} is not the import's; {}",
            source.name,
            source.sha256,
            needed()
        );
    }
    let settings = ScanSettings {
        file_name: source.name.clone(),
        columns,
        chunk_size: target.chunk_size,
        import_id: view.id,
        file_sha256: source.sha256.clone(),
        new_identities: view.new_identities,
        already_imported_through: 0,
        partitions: target.keys.partitions(),
        workers: scan::default_workers(),
        only_lines: Some(wanted),
    };
    let (tx, mut rx) = mpsc::channel::<Shipment>(4);
    let progress = Arc::new(Progress::new(source.size));
    let stop = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (stop, progress) = (stop.clone(), progress.clone());
        std::thread::Builder::new()
            .name("recover-scan".into())
            .spawn(move || scan::scan(&file, data_start, &settings, None, tx, &stop, &progress))
            .context("cannot start the scan thread")?
    };
    let mut enqueued = 0u64;
    let mut failure = None;
    while let Some(shipment) = rx.recv().await {
        if shipment.chunks.is_empty() {
            continue;
        }
        let sent = retry("XADD to the orders stream", shutdown, || {
            oms_shared::redis::queue::add_encoded_chunks_checked_on(
                target.redis,
                target.keys,
                view.id,
                &shipment.chunks,
                target.wait,
                target.epoch,
                None,
            )
        })
        .await;
        match sent {
            Ok(_) => enqueued += shipment.chunks.iter().map(|c| c.rows as u64).sum::<u64>(),
            Err(e) => {
                failure = Some(anyhow::anyhow!("import {}: {e}", view.id));
                break;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(rx);
    let end = tokio::task::spawn_blocking(move || scanner.join())
        .await?
        .unwrap_or_else(|_| ScanEnd::Failed("the scan thread panicked".into()));
    if let Some(e) = failure {
        return Err(e.context(format!(
            "{enqueued} rows were enqueued again; run the same recover again to finish"
        )));
    }
    if let ScanEnd::Failed(msg) = end {
        anyhow::bail!("{msg}");
    }
    Ok(enqueued)
}

/// Human-readable summary.
pub fn render(report: &RecoverReport) -> String {
    let mut out = Vec::new();
    match (&report.redis_data_lost, &report.new_epoch) {
        (Some(why), Some(epoch)) => {
            out.push(why.clone());
            out.push(format!(
                "recorded a new epoch {epoch}; pause flag {}; read models rebuilt from MySQL",
                if report.paused == Some(true) {
                    "set again (paused)"
                } else {
                    "clear (running)"
                }
            ));
        }
        _ => out.push("Redis holds the data MySQL recorded".into()),
    }
    if report.imports.is_empty() {
        out.push("no import has rows MySQL does not account for".into());
        return out.join("\n");
    }
    let rows: Vec<Vec<String>> = report
        .imports
        .iter()
        .map(|i| {
            vec![
                i.import_id.to_string(),
                i.file.clone(),
                format!("{}..{}", i.lines_from, i.lines_through),
                i.missing_lines.to_string(),
                i.enqueued.to_string(),
            ]
        })
        .collect();
    out.push(table(
        &["import", "file", "lines", "missing", "enqueued again"],
        &rows,
        &[0, 3, 4],
    ));
    for hint in report.imports.iter().filter_map(|i| i.resume_hint.as_ref()) {
        out.push(hint.clone());
    }
    out.join("\n")
}
