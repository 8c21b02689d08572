//! `producer leaderboard update|show [--limit N]`: the customers who spent the most.
//!
//! The figures come from [`oms_reports::leaderboard`]; this module parses the arguments and renders.

use std::process::ExitCode;

use oms_shared::config::ConnectionConfig;

use crate::report::{print_json, table};

use oms_reports::leaderboard::{show, update, LeaderboardReport};

#[derive(Debug, clap::Subcommand)]
pub enum LeaderboardCommand {
    /// Rebuild the leaderboard from MySQL, keep today's snapshot, print the top N.
    Update(LimitArg),
    /// Print the top N of the leaderboard as Redis holds it.
    Show(LimitArg),
}

#[derive(Debug, clap::Args)]
pub struct LimitArg {
    /// How many customers to print (0: all).
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

/// The top N as an aligned table.
pub fn render(report: &LeaderboardReport) -> String {
    let rows: Vec<Vec<String>> = report
        .top
        .iter()
        .map(|e| {
            vec![
                e.rank.to_string(),
                e.name.clone(),
                e.email.clone(),
                e.orders_count.to_string(),
                e.total_spent.clone(),
            ]
        })
        .collect();
    table(
        &["rank", "name", "email", "orders", "total spent"],
        &rows,
        &[0, 3, 4],
    )
}

pub async fn run(
    conn: &ConnectionConfig,
    cmd: LeaderboardCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = match cmd {
        LeaderboardCommand::Update(a) => update(conn, a.limit).await?,
        LeaderboardCommand::Show(a) => show(conn, a.limit).await?,
    };
    if json {
        print_json(&report);
    } else {
        println!("{}", render(&report));
        match &report.snapshot_key {
            Some(snapshot) => println!(
                "{} customers ranked in {}, snapshot {}",
                report.customers, report.key, snapshot
            ),
            None => println!("{} customers ranked in {}", report.customers, report.key),
        }
    }
    Ok(ExitCode::SUCCESS)
}
