//! Riding out an outage of Redis or MySQL in the commands that follow progress (`import
//! --wait`, `status --watch`): a transient error (a server restarting, refusing, timing
//! out) is retried with backoff, saying once per outage "waiting for Redis (…)" or
//! "waiting for MySQL (…)" and once "… is back"; any other error ends the command. The
//! pools reconnect by themselves (sqlx tests a connection before lending it, deadpool
//! pings it), so retrying the same call is enough.

use std::future::Future;
use std::time::{Duration, Instant};

use oms_reports::ReportError;
use oms_shared::retry::RetryPolicy;
use oms_shared::OmsError;
use tokio_util::sync::CancellationToken;

/// How long a reading waits for a MySQL connection before it counts as an outage.
const MYSQL_ACQUIRE: Duration = Duration::from_secs(2);

/// The pools and key names of a reader that rides out outages: MySQL with a short acquire
/// timeout (an outage is said within seconds), Redis, and the recorded layout: the steps of
/// [`oms_shared::deployment`] with that one difference.
pub async fn reader_pools(
    conn: &oms_shared::config::ConnectionConfig,
) -> anyhow::Result<(
    sqlx::MySqlPool,
    oms_shared::redis::conn::RedisPool,
    oms_shared::redis::keys::StreamKeys,
)> {
    let db =
        oms_shared::db::connect_with_acquire_timeout(&conn.database_url, 2, MYSQL_ACQUIRE).await?;
    oms_shared::db::ensure_migrated(&db, &conn.database_url).await?;
    let redis = oms_shared::redis::conn::connect(&conn.redis_url, 2).await?;
    // No group is ensured: a reader writes nothing to Redis.
    let keys = oms_shared::deployment::stream_keys(&db, conn).await?;
    Ok((db, redis, keys))
}

/// Which server an error says is unavailable, if it is a transient error at all.
pub fn unavailable_server(error: &anyhow::Error) -> Option<&'static str> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<OmsError>() {
            return oms_server(e);
        }
        cause.downcast_ref::<ReportError>().and_then(report_server)
    })
}

fn oms_server(e: &OmsError) -> Option<&'static str> {
    if !e.is_transient() {
        return None;
    }
    Some(match e {
        OmsError::RedisUnreachable { .. }
        | OmsError::Redis(_)
        | OmsError::RedisPool(_)
        | OmsError::NotReplicated { .. } => "Redis",
        _ => "MySQL",
    })
}

fn report_server(e: &ReportError) -> Option<&'static str> {
    match e {
        ReportError::Oms(e) => oms_server(e),
        ReportError::During { source, .. } => report_server(source),
        _ => None,
    }
}

/// The waits between tries during an outage: 250 ms doubling to 5 s.
const OUTAGE_BACKOFF: RetryPolicy =
    RetryPolicy::backoff(Duration::from_millis(250), Duration::from_secs(5));

/// The outage under way, if any: what was said, and how long to wait next.
#[derive(Debug, Default)]
pub struct Outages {
    down: Option<&'static str>,
    attempt: u32,
}

impl Outages {
    /// A transient `error`: says so once per outage and returns how long to wait before
    /// the next try (250 ms doubling to 5 s); None for any other error.
    pub fn down(&mut self, error: &anyhow::Error) -> Option<Duration> {
        let server = unavailable_server(error)?;
        if self.down != Some(server) {
            if let Some(before) = self.down {
                tracing::info!("{before} is back");
            }
            tracing::warn!(
                "waiting for {server} ({}); going on when it is back",
                oms_shared::error::one_line(error.as_ref())
            );
            self.down = Some(server);
        }
        self.attempt += 1;
        let wait = OUTAGE_BACKOFF.wait(self.attempt);
        Some(wait)
    }

    /// A call succeeded: an outage under way is over.
    pub fn up(&mut self) {
        if let Some(server) = self.down.take() {
            tracing::info!("{server} is back");
        }
        self.attempt = 0;
    }

    /// The server of the outage under way.
    pub fn server(&self) -> Option<&'static str> {
        self.down
    }
}

/// Runs `op` until it succeeds, riding out transient errors (see [`Outages`]). `None`
/// when `deadline` passed or `shutdown` came during an outage; other errors are returned.
pub async fn ride_out<T, F, Fut>(
    outages: &mut Outages,
    deadline: Option<Instant>,
    shutdown: &CancellationToken,
    mut op: F,
) -> anyhow::Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    loop {
        match op().await {
            Ok(value) => {
                outages.up();
                return Ok(Some(value));
            }
            Err(e) => {
                let Some(mut wait) = outages.down(&e) else {
                    return Err(e);
                };
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    wait = wait.min(left);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_name_their_server_and_others_none() {
        let redis = anyhow::Error::new(OmsError::Redis(redis::RedisError::from(
            std::io::Error::other("Connection refused"),
        )));
        assert_eq!(unavailable_server(&redis), Some("Redis"));
        let mysql = anyhow::Error::new(ReportError::Oms(OmsError::Sql(sqlx::Error::PoolTimedOut)))
            .context("reading");
        assert_eq!(unavailable_server(&mysql), Some("MySQL"));
        let bad = anyhow::Error::new(OmsError::Config("no".into()));
        assert_eq!(unavailable_server(&bad), None);
        let mut outages = Outages::default();
        assert_eq!(outages.down(&bad), None);
        assert_eq!(outages.down(&redis), Some(Duration::from_millis(250)));
        assert_eq!(outages.down(&redis), Some(Duration::from_millis(500)));
        assert_eq!(outages.server(), Some("Redis"));
        outages.up();
        assert_eq!(outages.server(), None);
    }
}
