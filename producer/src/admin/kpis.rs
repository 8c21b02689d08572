//! `producer kpis generate|show [--date YYYY-MM-DD]`: the daily, monthly, yearly and total
//!
//! The figures come from [`oms_reports::kpis`]; this module parses the arguments and renders.

use std::process::ExitCode;

use chrono::NaiveDate;
use oms_shared::config::ConnectionConfig;

use crate::report::{print_json, table};

use oms_reports::kpis::{generate, show, KpiReport};

#[derive(Debug, clap::Subcommand)]
pub enum KpisCommand {
    /// Recompute the day's, month's, year's and total KPIs from MySQL into Redis.
    Generate(DateArg),
    /// Print the KPI hashes of the day's periods as Redis holds them.
    Show(DateArg),
}

#[derive(Debug, clap::Args)]
pub struct DateArg {
    /// The KPI day (YYYY-MM-DD); default today, UTC.
    #[arg(long, value_parser = parse_date)]
    pub date: Option<NaiveDate>,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|e| format!("{s:?} is not a date YYYY-MM-DD: {e}"))
}

/// The report as an aligned table.
pub fn render(report: &KpiReport) -> String {
    let rows: Vec<Vec<String>> = report
        .periods
        .iter()
        .map(|p| {
            vec![
                p.period.to_string(),
                p.label.clone(),
                p.order_count.to_string(),
                p.revenue.clone(),
                p.average_order_value.clone(),
            ]
        })
        .collect();
    table(
        &["period", "label", "orders", "revenue", "avg order value"],
        &rows,
        &[2, 3, 4],
    )
}

pub async fn run(
    conn: &ConnectionConfig,
    cmd: KpisCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = match cmd {
        KpisCommand::Generate(a) => generate(conn, a.date).await?,
        KpisCommand::Show(a) => show(conn, a.date).await?,
    };
    if json {
        print_json(&report);
    } else {
        println!("{}", render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
