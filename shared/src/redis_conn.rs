//! Redis connection pools (deadpool over multiplexed connections).
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
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::config::host_of;
use crate::error::{OmsError, Result};

pub type RedisPool = Pool;
pub type RedisConnection = deadpool_redis::Connection;

/// Response timeout of every Redis command (blocking reads block for at most a few seconds).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable naming a PEM file of the CA certificates that `rediss://` servers
/// are verified against, instead of the compiled-in public roots.
pub const CA_CERT_ENV: &str = "REDIS_CA_CERT";

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

/// Builds a pool of at most `max_size` connections. Does not connect yet: see [`ping`].
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
        .map_err(|e| OmsError::Config(format!("Redis pool for {}: {e}", host_of(url))))
}

/// Builds the pool and checks that Redis answers `PING`, naming the host if not.
pub async fn connect(url: &str, max_size: usize) -> Result<RedisPool> {
    let pool = pool(url, max_size)?;
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
    let _: String = redis::cmd("PING")
        .query_async(&mut *conn)
        .await
        .map_err(|source| OmsError::RedisUnreachable { host, source })?;
    Ok(())
}
