//! Command-line interface: one [`Cli`] parsed from flags with env fallbacks, validated at
//! start, then dispatched to the command modules. Exit codes: 0 success, 1 failure, 2 usage.
//!
//! Each command module owns its `Args` and a `run` function returning an [`ExitCode`];
//! errors get their context here, at the edge, and are printed as one line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use oms_shared::config::ConnectionConfig;
use oms_shared::process;

use crate::admin::{audit, failed, kpis, leaderboard, queue, reconcile, status};
use crate::generate::command as generate_cmd;
use crate::{catalog, import, serve};

#[derive(Debug, Parser)]
#[command(
    name = "producer",
    version,
    about = "oms operator CLI: import orders, manage the catalog, inspect the queue"
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: ConnectionConfig,

    /// `text` or `json` (one JSON object per log line).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,

    /// Print reports as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if missing and apply the embedded migrations (idempotent);
    /// record the stream's partition count.
    Migrate(crate::partitions::MigrateArgs),
    /// The product catalog.
    #[command(subcommand)]
    Products(catalog::ProductsCommand),
    /// Write synthetic CSV data to stdout.
    #[command(subcommand)]
    Generate(generate_cmd::GenerateCommand),
    /// Validate a CSV file of orders and enqueue it.
    Import(import::ImportArgs),
    /// Queue depth, pending, lag, consumers, dead letters; an import's progress.
    Status(status::StatusArgs),
    /// The dead-letter stream.
    #[command(subcommand)]
    Failed(failed::FailedCommand),
    /// Daily, monthly, yearly and total KPIs.
    #[command(subcommand)]
    Kpis(kpis::KpisCommand),
    /// The customer leaderboard.
    #[command(subcommand)]
    Leaderboard(leaderboard::LeaderboardCommand),
    /// Compare every Redis read model with MySQL; exit 1 on drift.
    Reconcile(reconcile::ReconcileArgs),
    /// Bring back what a store lost: a new epoch for a Redis that lost its data, the
    /// read models rebuilt, and the rows of imports that are neither in MySQL nor in the
    /// stream enqueued again from their files.
    Recover(crate::recover::RecoverArgs),
    /// Pause or resume every consumer.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Move terminal orders of KPI days before a date, with their items, out of the hot
    /// tables: to a zstd-compressed CSV file, or deleted.
    Archive(crate::archive::ArchiveArgs),
    /// The audit log: who paused, retried, purged, rebuilt, migrated or recovered, and when.
    Audit(audit::AuditArgs),
    /// The HTTP API and the live dashboard.
    Serve(serve::ServeArgs),
}

/// Parses the command line, runs the command, maps errors to one line and an exit code.
pub fn main() -> ExitCode {
    if let Err(code) = process::load_env_file() {
        return code;
    }
    let cli = Cli::parse();
    process::init_logging(cli.conn.secrets(), &cli.log_format, "producer");
    if let Err(e) = cli.conn.validate() {
        return process::usage_error(&e);
    }
    process::run_to_exit(run(cli))
}

/// Runs one parsed command and records it in the audit log when it is an operator action.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let action = cli.command.audit_action();
    let conn = cli.conn.clone();
    let result = dispatch(cli).await;
    if let Some(action) = action {
        crate::audit_trail::record_cli(&conn, action, &result).await;
    }
    result
}

impl Command {
    /// The audit-log name of this command when it is an operator action (it changes the
    /// queue, the dead letters, a read model, the schema, the epoch or the orders kept);
    /// `None` for reads and imports.
    pub fn audit_action(&self) -> Option<&'static str> {
        use crate::admin::{failed::FailedCommand, kpis::KpisCommand};
        use crate::admin::{leaderboard::LeaderboardCommand, queue::QueueCommand};
        Some(match self {
            Command::Migrate(_) => "migrate",
            Command::Recover(_) => "recover",
            Command::Archive(_) => "archive",
            Command::Queue(QueueCommand::Pause) => "queue pause",
            Command::Queue(QueueCommand::Resume) => "queue resume",
            Command::Failed(FailedCommand::Retry { .. }) => "failed retry",
            Command::Failed(FailedCommand::Purge) => "failed purge",
            Command::Kpis(KpisCommand::Generate(_)) => "kpis generate",
            Command::Leaderboard(LeaderboardCommand::Update(_)) => "leaderboard update",
            Command::Reconcile(args) if args.fix => "reconcile --fix",
            _ => return None,
        })
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let conn = &cli.conn;
    let json = cli.json;
    match cli.command {
        Command::Migrate(args) => migrate(conn, args, json).await,
        Command::Products(cmd) => catalog::run(conn, cmd, json).await,
        Command::Generate(cmd) => generate_cmd::run(cmd),
        Command::Import(args) => import::run(conn, args, json).await,
        Command::Status(args) => status::run(conn, args, json).await,
        Command::Failed(cmd) => failed::run(conn, cmd, json).await,
        Command::Kpis(cmd) => kpis::run(conn, cmd, json).await,
        Command::Leaderboard(cmd) => leaderboard::run(conn, cmd, json).await,
        Command::Reconcile(args) => reconcile::run(conn, args, json).await,
        Command::Queue(cmd) => queue::run(conn, cmd, json).await,
        Command::Recover(args) => crate::recover::run(conn, args, json).await,
        Command::Archive(args) => crate::archive::run(conn, args, json).await,
        Command::Serve(args) => serve::run(conn, args).await,
        Command::Audit(args) => audit::run(conn, args, json).await,
    }
}

async fn migrate(
    conn: &ConnectionConfig,
    args: crate::partitions::MigrateArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let report = oms_shared::db::migrate(&conn.database_url).await?;
    let partitions = crate::partitions::record(conn, args.partitions).await?;
    if json {
        crate::report::print_json(&serde_json::json!({
            "database": report.database,
            "database_created": report.database_created,
            "applied": report.applied,
            "partitions": partitions.partitions,
            "partitions_changed": partitions.changed,
        }));
    } else {
        if report.database_created {
            println!("created database {}", report.database);
        }
        if report.applied.is_empty() {
            println!("database {} is up to date", report.database);
        }
        for m in &report.applied {
            println!("applied migration {m}");
        }
        if partitions.changed {
            println!(
                "the orders stream now has {} partitions",
                partitions.partitions
            );
        } else {
            println!("the orders stream has {} partitions", partitions.partitions);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    const INTERFACE: &str = include_str!("../../docs/interface.md");

    /// Every command path (`producer failed retry`) and every long flag of the CLI, walked
    /// from clap's own definition.
    fn commands_and_flags(
        cmd: &clap::Command,
        path: &str,
        out: &mut Vec<String>,
        flags: &mut Vec<String>,
    ) {
        for arg in cmd.get_arguments() {
            if let Some(long) = arg.get_long() {
                if long != "help" && long != "version" {
                    flags.push(format!("--{long}"));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let sub_path = format!("{path} {}", sub.get_name());
            out.push(sub_path.clone());
            commands_and_flags(sub, &sub_path, out, flags);
        }
    }

    #[test]
    fn the_interface_document_names_every_command_and_flag() {
        let (mut commands, mut flags) = (Vec::new(), Vec::new());
        commands_and_flags(&Cli::command(), "producer", &mut commands, &mut flags);
        assert!(commands.len() > 10, "walked too few commands: {commands:?}");
        for c in &commands {
            assert!(
                INTERFACE.contains(&format!("`{c}")),
                "docs/interface.md does not document `{c}`"
            );
        }
        for f in &flags {
            assert!(
                INTERFACE.contains(f.as_str()),
                "docs/interface.md does not document the flag {f}"
            );
        }
    }
}
