//! The nodes a `DATABASE_URL` names (`mysql://u:p@h1:3306,h2:3306,h3:3306/oms`, a Galera
//! cluster), which one a pool uses, and moving to another when that one stops serving.
//!
//! A pool talks to one node at a time: the first of the list that answers and is ready
//! (a Galera node is ready while `wsrep_ready` is `ON`). With more than one node, a
//! watcher task checks the pool's node every second on a connection of its own; when the
//! node does not answer within [`CHECK_TIMEOUT`] or says it does not serve queries (it
//! left the primary component), the watcher points the pool at the next ready node of the
//! list ([`sqlx::Pool::set_connect_options`]) and the pool stops handing out connections
//! opened before the move. Statements in flight on the old node fail with a lost
//! connection or 1047, which every caller already retries (`error::sql_error_is_transient`);
//! the retry gets a connection to the new node. The pool stays on the new node while it
//! serves (no moving back: that would only add switches).
//!
//! Galera sessions get causal reads (`schema::CAUSAL_READS`): see ARCHITECTURE.md,
//! "MySQL high availability", for why the outbox and the rebuild fence rely on them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool};
use sqlx::ConnectOptions;

use crate::config::host_of;
use crate::error::{OmsError, Result};
use crate::store::schema;

/// How often the watcher checks the node its pool uses.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long connecting to a node, or asking it whether it is ready, may take before the
/// node counts as not answering.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// When a pool last moved to another node: connections older than that were opened to
/// the node it left, and are closed instead of handed out.
#[derive(Debug, Default)]
pub struct LastMove(Mutex<Option<Instant>>);

impl LastMove {
    fn record(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// True when a connection of `age` was opened after the last move (or there was none).
    pub(crate) fn admits(&self, age: Duration) -> bool {
        match *self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(moved) => age < moved.elapsed(),
            None => true,
        }
    }
}

/// True when the server behind `conn` is a Galera node.
pub(crate) async fn is_galera(
    conn: &mut MySqlConnection,
) -> std::result::Result<bool, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(schema::WSREP_ON)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some_and(|(_, value)| value.eq_ignore_ascii_case("ON")))
}

/// Session settings of a Galera node: causal reads. A no-op elsewhere.
pub(crate) async fn prepare_session(
    conn: &mut MySqlConnection,
) -> std::result::Result<(), sqlx::Error> {
    if is_galera(conn).await? {
        sqlx::query(schema::CAUSAL_READS)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `Some(why)` when the node behind `conn` answers but does not serve queries (a Galera
/// node whose `wsrep_ready` is not `ON`); `None` when it serves (any non-Galera server).
async fn not_ready(conn: &mut MySqlConnection) -> std::result::Result<Option<String>, sqlx::Error> {
    if !is_galera(conn).await? {
        return Ok(None);
    }
    let row: Option<(String, String)> = sqlx::query_as(schema::WSREP_READY)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some((_, value)) if value.eq_ignore_ascii_case("ON") => None,
        Some((_, value)) => Some(format!(
            "wsrep_ready is {value}: the node is not in the cluster's primary component"
        )),
        None => Some("the node reports no wsrep_ready".into()),
    })
}

fn timed_out(url: &str) -> OmsError {
    OmsError::MysqlUnreachable {
        host: host_of(url),
        source: sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {CHECK_TIMEOUT:?}"),
        )),
    }
}

/// A connection to the node of `url` (one node), checked ready; `unreachable` turns a
/// connection error into the error to report.
async fn open_ready(
    url: &str,
    options: &MySqlConnectOptions,
    unreachable: fn(&str, sqlx::Error) -> OmsError,
) -> Result<MySqlConnection> {
    let mut conn = options.connect().await.map_err(|e| unreachable(url, e))?;
    match not_ready(&mut conn).await {
        Ok(None) => Ok(conn),
        Ok(Some(reason)) => Err(OmsError::MysqlNodeNotReady {
            host: host_of(url),
            reason,
        }),
        Err(e) => Err(unreachable(url, e)),
    }
}

/// [`open_ready`] within [`CHECK_TIMEOUT`]: a node that does not answer is skipped.
async fn open_ready_in_time(
    url: &str,
    options: &MySqlConnectOptions,
    unreachable: fn(&str, sqlx::Error) -> OmsError,
) -> Result<MySqlConnection> {
    tokio::time::timeout(CHECK_TIMEOUT, open_ready(url, options, unreachable))
        .await
        .unwrap_or_else(|_| Err(timed_out(url)))
}

/// The first node of `nodes`, from index `start` on and wrapping around, that answers and
/// is ready: its index and a connection to it. Fails with the first node's error when
/// none is, or at once with an error no other node would cure (an unmigrated database,
/// wrong credentials). A single node is given all the time it takes (as without a list).
pub(crate) async fn first_ready(
    nodes: &[(String, MySqlConnectOptions)],
    start: usize,
    unreachable: fn(&str, sqlx::Error) -> OmsError,
) -> Result<(usize, MySqlConnection)> {
    let mut first_error = None;
    for step in 0..nodes.len() {
        let index = (start + step) % nodes.len();
        let (url, options) = &nodes[index];
        let opened = if nodes.len() > 1 {
            open_ready_in_time(url, options, unreachable).await
        } else {
            open_ready(url, options, unreachable).await
        };
        match opened {
            Ok(conn) => return Ok((index, conn)),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                if nodes.len() > 1 {
                    tracing::warn!(node = %host_of(url), error = %e, "MySQL node not usable");
                }
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| OmsError::Config("DATABASE_URL names no host".into())))
}

/// Keeps `pool` on a node that serves, checking its node every [`CHECK_EVERY`] (see the
/// module comment). Returns when the pool is closed.
pub async fn watch(
    pool: MySqlPool,
    nodes: Vec<(String, MySqlConnectOptions)>,
    mut current: usize,
    last_move: Arc<LastMove>,
    unreachable: fn(&str, sqlx::Error) -> OmsError,
) {
    let mut checker: Option<MySqlConnection> = None;
    let mut said_none_ready = false;
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        if pool.is_closed() {
            return;
        }
        let (url, options) = &nodes[current];
        let problem = match checker.as_mut() {
            Some(conn) => match tokio::time::timeout(CHECK_TIMEOUT, not_ready(conn)).await {
                Ok(Ok(None)) => None,
                Ok(Ok(Some(reason))) => Some(reason),
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {CHECK_TIMEOUT:?}")),
            },
            None => match open_ready_in_time(url, options, unreachable).await {
                Ok(conn) => {
                    checker = Some(conn);
                    None
                }
                Err(e) => Some(e.to_string()),
            },
        };
        let Some(problem) = problem else {
            said_none_ready = false;
            continue;
        };
        checker = None;
        let others: Vec<(String, MySqlConnectOptions)> = (1..nodes.len())
            .map(|step| nodes[(current + step) % nodes.len()].clone())
            .collect();
        match first_ready(&others, 0, unreachable).await {
            Ok((offset, conn)) => {
                let next = (current + 1 + offset) % nodes.len();
                pool.set_connect_options(nodes[next].1.clone());
                last_move.record();
                tracing::warn!(
                    from = %host_of(url),
                    to = %host_of(&nodes[next].0),
                    reason = %problem,
                    "MySQL node stopped serving; moved to another node"
                );
                current = next;
                checker = Some(conn);
                said_none_ready = false;
            }
            Err(e) if !said_none_ready => {
                tracing::error!(node = %host_of(url), reason = %problem, error = %e,
                    "MySQL node stopped serving and no other node is ready; retrying");
                said_none_ready = true;
            }
            Err(_) => {}
        }
    }
}
