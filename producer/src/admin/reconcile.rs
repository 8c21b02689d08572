//! `producer reconcile [--fix]`: compares every Redis read model with MySQL.
//!
//! The figures come from [`oms_reports::reconcile`]; this module parses the arguments and renders.

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

use crate::report::{print_json, table};

use oms_reports::reconcile::{reconcile_with, Drift, ReconcileReport};

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// Rewrite drifted read models from MySQL, then check again.
    #[arg(long)]
    pub fix: bool,
    /// Also compare MySQL's summaries (per-day KPI sums, per-import counters) with the
    /// orders: a scan of every order.
    #[arg(long)]
    pub deep: bool,
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn drift_table(drift: &[Drift]) -> String {
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    let rows: Vec<Vec<String>> = drift
        .iter()
        .map(|d| {
            vec![
                d.key.clone(),
                d.field.clone(),
                show(&d.redis),
                show(&d.mysql),
            ]
        })
        .collect();
    table(&["key", "field", "redis", "mysql"], &rows, &[])
}

/// The report as text: the drift table, what was fixed, the verdict.
pub fn render(report: &ReconcileReport) -> String {
    let mut out = Vec::new();
    if let Some(rewound) = &report.history_rewound {
        out.push(rewound.message());
    }
    if !report.drift.is_empty() {
        out.push(drift_table(&report.drift));
        out.push(plural(report.drift.len(), "difference"));
    }
    if let Some(drift) = report.summary_drift.as_ref().filter(|d| !d.is_empty()) {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        let rows: Vec<Vec<String>> = drift
            .iter()
            .map(|d| {
                vec![
                    d.table.to_string(),
                    d.key.clone(),
                    show(&d.summary),
                    show(&d.orders),
                ]
            })
            .collect();
        out.push(table(&["table", "key", "summary", "orders"], &rows, &[]));
        out.push(plural(drift.len(), "summary difference"));
    }
    if let Some(f) = &report.fixed {
        out.push(format!(
            "fixed: {} KPI hashes rewritten, {} deleted, leaderboard {}{}",
            f.kpi_hashes_rewritten,
            f.kpi_hashes_deleted,
            if f.leaderboard_rebuilt {
                "rebuilt"
            } else {
                "unchanged"
            },
            if f.applied_record_reset {
                ", applied record reset to MySQL's outbox sequence (consumers resume)"
            } else {
                ""
            }
        ));
        if let Some(remaining) = report.remaining.as_ref().filter(|r| !r.is_empty()) {
            out.push(drift_table(remaining));
            out.push(format!(
                "{} differences remain after the fix",
                remaining.len()
            ));
        }
    }
    if report.clean {
        out.push(format!(
            "clean: {} KPI hashes and {} leaderboard members match MySQL",
            report.kpi_hashes_checked, report.leaderboard_members_checked
        ));
    }
    out.join("\n")
}

pub async fn run(
    conn: &ConnectionConfig,
    args: ReconcileArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = reconcile_with(conn, args.fix, args.deep).await?;
    if json {
        print_json(&report);
    } else {
        println!("{}", render(&report));
    }
    if report.pending_outbox_rows > 0 {
        eprintln!(
            "warning: {} read-model updates are committed in MySQL but not yet applied to Redis; \
             reconcile is exact only when consumers are idle",
            report.pending_outbox_rows
        );
    }
    Ok(if report.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
