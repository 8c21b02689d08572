//! `producer status [IMPORT] [--watch] [--json]`: the queue, and one import's progress.
//!
//! The figures come from [`oms_reports::status`]; this module parses the arguments and renders.
//! `--watch` rides out Redis and MySQL outages (`crate::outage`), at start too.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use oms_shared::config::ConnectionConfig;
use tokio_util::sync::CancellationToken;

use crate::outage::{ride_out, Outages};

use crate::report::{print_json, table};

use oms_reports::status::{Sample, StatusReport, StatusSource};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// An import id: show its progress too.
    pub import: Option<u64>,

    /// Refresh until Ctrl-C.
    #[arg(long)]
    pub watch: bool,

    /// Seconds between refreshes with `--watch`.
    #[arg(long, default_value_t = 2.0, value_parser = parse_interval)]
    pub interval: f64,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} must be a number of seconds within 0.1 and 3600"
        )),
    }
}

/// `1234` → `1.2s`, `185000` → `3m05s`.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// The report as text.
// Long on purpose: one section per part of the report (stream, consumers, import), in the
// order they are printed.
pub fn render(report: &StatusReport) -> String {
    let s = &report.stream;
    let mut out = Vec::new();
    out.push(format!("stream {} (group {})", s.key, s.group));
    let rows = vec![vec![
        s.length.to_string(),
        s.pending.to_string(),
        s.lag.map_or("unknown".into(), |l| l.to_string()),
        s.consumers.len().to_string(),
        s.dead_letters.to_string(),
    ]];
    out.push(table(
        &["length", "pending", "lag", "consumers", "dead letters"],
        &rows,
        &[0, 1, 2, 3, 4],
    ));
    if s.partitions.len() > 1 {
        let rows: Vec<Vec<String>> = s
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.partition.to_string(),
                    p.key.clone(),
                    p.length.to_string(),
                    p.pending.to_string(),
                    p.lag.map_or("unknown".into(), |l| l.to_string()),
                    p.dead_letters.to_string(),
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(
            &[
                "partition",
                "key",
                "length",
                "pending",
                "lag",
                "dead letters",
            ],
            &rows,
            &[0, 2, 3, 4, 5],
        ));
    }
    if let Some(why) = &s.redis_data_lost {
        out.push(format!("ALERT: {why}"));
    }
    if let Some(p) = &s.oldest_pending {
        out.push(format!(
            "oldest pending: {} on {}, idle {}, {} deliveries",
            p.id,
            p.consumer,
            human_duration(p.idle_ms),
            p.deliveries
        ));
    }
    if !s.consumers.is_empty() {
        let rows: Vec<Vec<String>> = s
            .consumers
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.pending.to_string(),
                    human_duration(c.idle_ms),
                ]
            })
            .collect();
        out.push(String::new());
        out.push(table(&["consumer", "pending", "idle"], &rows, &[1, 2]));
    }
    if let Some(i) = &report.import {
        out.push(String::new());
        out.push(format!(
            "import {} ({}, {}{})",
            i.id,
            i.file_name,
            i.status,
            if i.done { ", done" } else { "" }
        ));
        let rows = vec![vec![
            i.rows.to_string(),
            i.enqueued.to_string(),
            i.rejected.to_string(),
            i.duplicates.to_string(),
            i.completed.to_string(),
            i.failed_total.to_string(),
            i.dead.to_string(),
            i.in_flight.to_string(),
            i.rate_per_sec.map_or("-".into(), |r| format!("{r:.1}")),
            i.eta_secs
                .map_or("-".into(), |e| human_duration((e * 1000.0) as u64)),
        ]];
        out.push(table(
            &[
                "rows",
                "enqueued",
                "rejected",
                "duplicates",
                "completed",
                "failed",
                "dead",
                "in flight",
                "rate/s",
                "eta",
            ],
            &rows,
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ));
        if let Some(why) = &i.lost_reason {
            out.push(format!("LOST: {why}"));
        }
        if !i.failed.is_empty() {
            let reasons: Vec<String> = i.failed.iter().map(|(r, n)| format!("{r} {n}")).collect();
            out.push(format!("failed: {}", reasons.join(", ")));
        }
    }
    out.join("\n")
}

pub async fn run(
    conn: &ConnectionConfig,
    args: StatusArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !args.watch {
        let source = StatusSource::connect(conn, args.import.is_some()).await?;
        let report = source.report(args.import, None).await?;
        if json {
            print_json(&report);
        } else {
            println!("{}", render(&report));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let interval = Duration::from_secs_f64(args.interval);
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut previous: Option<Sample> = None;
    // One listener for the whole loop: a Ctrl-C while reading (or waiting for a server)
    // is not lost.
    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
    }
    // Outages of Redis or MySQL are ridden out, at start too: said once, then it goes on.
    let mut outages = Outages::default();
    let Some(source) = ride_out(&mut outages, None, &stop, || async move {
        let (db, redis, keys) = crate::outage::reader_pools(conn).await?;
        Ok(StatusSource::from_pools(keys, redis, Some(db)))
    })
    .await?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let source = &source;
    loop {
        let import = args.import;
        let Some(report) = ride_out(&mut outages, None, &stop, || async move {
            Ok(source.report(import, previous).await?)
        })
        .await?
        else {
            return Ok(ExitCode::SUCCESS);
        };
        previous = report.import.as_ref().map(|i| Sample {
            terminal: i.terminal,
            at: Instant::now(),
        });
        if json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            if interactive {
                print!("\x1b[2J\x1b[H");
            }
            println!(
                "{}\n\n(refreshing every {:.1}s, Ctrl-C to stop)",
                render(&report),
                args.interval
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(15), "15ms");
        assert_eq!(human_duration(1234), "1.2s");
        assert_eq!(human_duration(185_000), "3m05s");
        assert_eq!(human_duration(7_260_000), "2h01m");
    }
}
