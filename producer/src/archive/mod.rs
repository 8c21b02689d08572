//! `producer archive --before DATE (--to FILE.csv.zst | --delete) [--batch-size N]`:
//! moves terminal orders (completed, failed) whose KPI day is before DATE, with their
//! items, out of `orders` and `order_items`, batch by batch, while consumers run.
//!
//! Each batch is one short transaction ([`oms_shared::store::archive::ArchiveScan`]): its
//! orders are written to the archive file ([`file`]) and synced before it commits. With
//! `--delete` they are dropped without a file (the flag is the explicit choice). Either
//! way `archived_orders` keeps each identity (a redelivered or re-imported archived order
//! is a duplicate, never processed again) and the figures every check needs, and the read
//! models (Redis KPIs, leaderboard, `kpi_days`, customer totals) do not change.
//!
//! SIGINT/SIGTERM stop the run after the batch in hand: the file is finished with what was
//! archived and the exit code is 1. A complete run records DATE as
//! `settings.archived_before`; the audit log records every run (`cli::Command::audit_action`).

pub mod file;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use oms_shared::config::ConnectionConfig;
use oms_shared::money::Cents;
use oms_shared::store::{archive, settings};
use serde::Serialize;

use crate::report::print_json;

use self::file::{ArchiveFile, FinishedFile};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["to", "delete"])))]
pub struct ArchiveArgs {
    /// Archive terminal orders whose KPI day is before this day (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub before: NaiveDate,
    /// Write the archived orders to this new file: zstd-compressed CSV, one row per order
    /// with its items as JSON.
    #[arg(long, value_name = "FILE.csv.zst")]
    pub to: Option<PathBuf>,
    /// Drop the archived orders without writing them anywhere.
    #[arg(long)]
    pub delete: bool,
    /// Orders per batch (one short transaction each), 1 to 10,000.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("{s:?} is not a date YYYY-MM-DD: {e}"))
}

/// What one run did (`--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveReport {
    /// `--before`.
    pub before: String,
    /// The archive file, null with `--delete`.
    pub file: Option<PathBuf>,
    /// Its compressed size.
    pub file_bytes: Option<u64>,
    pub orders: u64,
    pub completed: u64,
    pub failed: u64,
    pub items: u64,
    /// Revenue of the archived completed orders ("1234.50").
    pub revenue: String,
    pub batches: u64,
    pub elapsed_ms: u64,
    /// Stopped by a signal before every order was archived.
    pub interrupted: bool,
}

/// Running totals of a run.
#[derive(Default)]
struct Totals {
    orders: u64,
    completed: u64,
    failed: u64,
    items: u64,
    revenue: Cents,
    batches: u64,
}

impl Totals {
    fn add(&mut self, orders: &[archive::ArchivedOrder]) {
        self.batches += 1;
        for o in orders {
            self.orders += 1;
            self.items += o.items.len() as u64;
            if o.status == "completed" {
                self.completed += 1;
                self.revenue += o.total;
            } else {
                self.failed += 1;
            }
        }
    }
}

pub async fn run(
    conn: &ConnectionConfig,
    args: ArchiveArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = archive(conn, &args).await?;
    if json {
        print_json(&report);
    } else {
        let to = match (&report.file, report.file_bytes) {
            (Some(path), Some(bytes)) => format!("to {} ({bytes} bytes)", path.display()),
            _ => "deleted, no file".to_string(),
        };
        println!(
            "archived {} orders ({} completed, revenue {}; {} failed) and {} items with a KPI day before {} in {} batches, {to}{}",
            report.orders,
            report.completed,
            report.revenue,
            report.failed,
            report.items,
            report.before,
            report.batches,
            if report.interrupted {
                "; interrupted: run it again to archive the rest"
            } else {
                ""
            }
        );
    }
    Ok(if report.interrupted {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the archive: batches until none is left or a signal came. The library entry of
/// the command (tests call it).
pub async fn archive(conn: &ConnectionConfig, args: &ArchiveArgs) -> anyhow::Result<ArchiveReport> {
    let started = Instant::now();
    let db = oms_reports::connect_mysql(conn).await?;
    // Created only once MySQL answered and is migrated.
    let mut file = args.to.as_deref().map(ArchiveFile::create).transpose()?;
    let shutdown =
        oms_shared::process::shutdown_on_signals("stopping the archive after the current batch");
    let mut totals = Totals::default();
    let mut scan = archive::ArchiveScan::new(args.before, args.batch_size as usize);
    let mut interrupted = false;
    loop {
        if shutdown.is_cancelled() {
            interrupted = true;
            break;
        }
        let Some(batch) = scan
            .next_batch(&db)
            .await
            .with_context(|| format!("archiving batch {}", totals.batches + 1))?
        else {
            break;
        };
        if let Some(file) = file.as_mut() {
            file.write_batch(&batch.orders)?;
        }
        totals.add(&batch.orders);
        batch.commit().await.with_context(|| match &file {
            Some(f) => format!(
                "committing batch {} (its orders stay in MySQL; {} may hold them too)",
                totals.batches,
                f.partial_path().display()
            ),
            None => format!("committing batch {}", totals.batches),
        })?;
        if totals.batches % 100 == 0 {
            tracing::info!(
                orders = totals.orders,
                batches = totals.batches,
                "archiving"
            );
        }
    }
    let finished: Option<FinishedFile> = file.map(ArchiveFile::finish).transpose()?;
    if !interrupted {
        settings::record_archived_before(&db, args.before).await?;
    }
    Ok(ArchiveReport {
        before: args.before.format("%Y-%m-%d").to_string(),
        file: finished.as_ref().map(|f| f.path.clone()),
        file_bytes: finished.map(|f| f.bytes),
        orders: totals.orders,
        completed: totals.completed,
        failed: totals.failed,
        items: totals.items,
        revenue: totals.revenue.to_string(),
        batches: totals.batches,
        elapsed_ms: started.elapsed().as_millis() as u64,
        interrupted,
    })
}
