//! Redis connections: one Redis (a deadpool of multiplexed connections) or a Redis Cluster
//! (`REDIS_URL` a comma-separated list of node URLs: one cluster connection, multiplexed
//! over one connection per node, shared by every task; it follows `MOVED`/`ASK`, refreshes
//! the slot map and reconnects after a failover by itself). Callers see one type either
//! way: [`RedisPool::get`] gives a [`RedisConnection`] that derefs to a [`RedisLink`],
//! which every command, pipeline and script runs on.
//!
//! [`write_and_wait`]: a pipeline followed by `WAIT numreplicas` on the same connection,
//! so the writes are on that many replicas before the caller relies on them.
//!
//! Every connection gets a 30 s response timeout: long enough for a blocking `XREADGROUP`
//! and a large pipeline, short enough that a dead server surfaces as an error and the
//! caller backs off and reconnects (deadpool drops broken connections on recycle).
//!
//! TLS (`rediss://`): the server certificate is verified against the public web PKI roots
//! compiled in (webpki-roots), or, when the environment variable `REDIS_CA_CERT` names a
//! PEM file, against the CA certificates in that file only (a private CA or a self-signed
//! server). Hostname verification stays on: the certificate must name the URL's host.

use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::config::{host_of, url_list};
use crate::error::{OmsError, Result};

/// Connections to one Redis (a pool) or to a Redis Cluster (one shared cluster connection).
#[derive(Clone)]
pub enum RedisPool {
    Single(Pool),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisPool::Single(p) => f.debug_tuple("Single").field(&p.status()).finish(),
            RedisPool::Cluster(_) => f.write_str("Cluster"),
        }
    }
}

impl RedisPool {
    /// A connection: from the pool (waiting up to its wait timeout), or a handle on the
    /// shared cluster connection.
    pub async fn get(&self) -> std::result::Result<RedisConnection, deadpool_redis::PoolError> {
        Ok(RedisConnection(match self {
            RedisPool::Single(pool) => RedisLink::Single(pool.get().await?),
            RedisPool::Cluster(conn) => RedisLink::Cluster(conn.clone()),
        }))
    }

    /// True on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisPool::Cluster(_))
    }
}

/// A connection handed out by [`RedisPool::get`]; `&mut *conn` is the [`RedisLink`].
pub struct RedisConnection(RedisLink);

impl std::ops::Deref for RedisConnection {
    type Target = RedisLink;
    fn deref(&self) -> &RedisLink {
        &self.0
    }
}

impl std::ops::DerefMut for RedisConnection {
    fn deref_mut(&mut self) -> &mut RedisLink {
        &mut self.0
    }
}

/// What commands run on: a pooled connection to one Redis, or the cluster connection.
pub enum RedisLink {
    Single(deadpool_redis::Connection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RedisLink::Single(c) => c.req_packed_command(cmd),
            RedisLink::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RedisLink::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisLink::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisLink::Single(c) => c.get_db(),
            RedisLink::Cluster(_) => 0,
        }
    }
}

impl RedisLink {
    /// `PING`: on a cluster, to one node (the client's default sends it to every node, so
    /// one node down in a failover would fail it).
    pub async fn ping(&mut self) -> redis::RedisResult<()> {
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        match self {
            RedisLink::Single(c) => redis::cmd("PING").query_async::<()>(&mut **c).await,
            RedisLink::Cluster(c) => c
                .route_command(
                    redis::cmd("PING"),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await
                .map(drop),
        }
    }

    /// Runs `cmd` on the primary that serves `slot` (e.g. a `SCAN` of one slot's keys on a
    /// cluster); on one Redis, runs it as is.
    pub async fn query_on_slot(&mut self, slot: u16, cmd: redis::Cmd) -> Result<redis::Value> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        match self {
            RedisLink::Single(c) => Ok(cmd.query_async(&mut **c).await?),
            RedisLink::Cluster(c) => Ok(c
                .route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                        slot,
                        SlotAddr::Master,
                    ))),
                )
                .await?),
        }
    }
}

/// How many replicas must hold a write before it counts (`WAIT`), and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout: Duration,
}

impl ReplicaWait {
    /// No waiting: a write counts once its primary answered.
    pub const NONE: ReplicaWait = ReplicaWait {
        replicas: 0,
        timeout: Duration::ZERO,
    };

    pub fn new(replicas: u32) -> ReplicaWait {
        ReplicaWait {
            replicas,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Runs `pipe` (its commands all on one slot), then, when `wait.replicas > 0`, `WAIT` in
/// the same round trip on the same connection, so it covers exactly these writes; fails
/// with [`OmsError::NotReplicated`] (transient) when fewer replicas acknowledged in time.
/// Returns the pipeline's replies (without the `WAIT`'s).
pub(crate) async fn write_and_wait<C: ConnectionLike>(
    conn: &mut C,
    mut pipe: redis::Pipeline,
    wait: ReplicaWait,
) -> Result<Vec<redis::Value>> {
    if wait.replicas == 0 {
        return Ok(pipe.query_async(conn).await?);
    }
    pipe.cmd("WAIT")
        .arg(wait.replicas)
        .arg(wait.timeout.as_millis() as u64);
    let mut replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let acked = match replies.pop() {
        Some(redis::Value::Int(n)) => n.max(0) as u32,
        _ => 0,
    };
    if acked < wait.replicas {
        return Err(OmsError::NotReplicated {
            wanted: wait.replicas,
            acked,
        });
    }
    Ok(replies)
}

/// Response timeout of every Redis command (blocking reads block for at most a few seconds).
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable naming a PEM file of the CA certificates that `rediss://` servers
/// are verified against, instead of the compiled-in public roots.
pub(crate) const CA_CERT_ENV: &str = "REDIS_CA_CERT";

/// The URL's connection info; for `rediss://` with [`CA_CERT_ENV`] set, trusting that CA.
fn connection_info(url: &str) -> Result<ConnectionInfo> {
    let info = url
        .into_connection_info()
        .map_err(|source| OmsError::RedisUnreachable {
            host: host_of(url),
            source,
        })?;
    let Some(ca_path) = std::env::var_os(CA_CERT_ENV) else {
        return Ok(info);
    };
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Ok(info);
    }
    let bad = |e: String| {
        OmsError::Config(format!(
            "{CA_CERT_ENV} {}: {e}",
            std::path::Path::new(&ca_path).display()
        ))
    };
    let pem = std::fs::read(&ca_path).map_err(|e| bad(e.to_string()))?;
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    let client =
        redis::Client::build_with_tls(info, certificates).map_err(|e| bad(e.to_string()))?;
    Ok(client.get_connection_info().clone())
}

/// Builds a pool of at most `max_size` connections to one Redis. Does not connect yet:
/// see [`ping`]. A cluster URL list connects at once: use [`connect`].
pub fn pool(url: &str, max_size: usize) -> Result<RedisPool> {
    let unreachable = |source| OmsError::RedisUnreachable {
        host: host_of(url),
        source,
    };
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let manager = Manager::new_with_config(connection_info(url)?, config).map_err(unreachable)?;
    Pool::builder(manager)
        .max_size(max_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map(RedisPool::Single)
        .map_err(|e| OmsError::Config(format!("Redis pool for {}: {e}", host_of(url))))
}

/// Connects to the Redis Cluster whose nodes (some of them: the rest is discovered) the
/// comma-separated `url` lists. Commands that meet a failover are retried by the client
/// (re-routing on `MOVED`/`ASK`, reconnecting) for a few seconds before an error reaches
/// the caller, who treats it as transient.
async fn connect_cluster(url: &str) -> Result<RedisPool> {
    let unreachable = |source| OmsError::RedisUnreachable {
        host: host_of(url),
        source,
    };
    let nodes = url_list(url)
        .into_iter()
        .map(connection_info)
        .collect::<Result<Vec<_>>>()?;
    let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(Duration::from_secs(5))
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(8)
        .min_retry_wait(100)
        .max_retry_wait(2_000);
    if let Some(ca_path) = std::env::var_os(CA_CERT_ENV) {
        if let Ok(pem) = std::fs::read(&ca_path) {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            });
        }
    }
    let client = builder.build().map_err(unreachable)?;
    let conn = client.get_async_connection().await.map_err(unreachable)?;
    Ok(RedisPool::Cluster(conn))
}

/// Builds the pool (or the cluster connection) and checks that Redis answers `PING`,
/// naming the host if not.
pub async fn connect(url: &str, max_size: usize) -> Result<RedisPool> {
    let pool = if crate::config::is_cluster_url(url) {
        connect_cluster(url).await?
    } else {
        pool(url, max_size)?
    };
    ping(&pool, url).await?;
    Ok(pool)
}

/// `PING` through the pool; any failure becomes [`OmsError::RedisUnreachable`].
pub async fn ping(pool: &RedisPool, url: &str) -> Result<()> {
    let host = host_of(url);
    let mut conn = pool.get().await.map_err(|e| match e {
        deadpool_redis::PoolError::Backend(source) => OmsError::RedisUnreachable {
            host: host.clone(),
            source,
        },
        other => OmsError::RedisUnreachable {
            host: host.clone(),
            source: redis::RedisError::from(std::io::Error::other(other.to_string())),
        },
    })?;
    conn.ping()
        .await
        .map_err(|source| OmsError::RedisUnreachable { host, source })
}
