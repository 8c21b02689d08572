//! `producer serve [--addr 127.0.0.1:8080]`: the JSON API and the live dashboard.
//!
//! One server over the same Redis and MySQL as the CLI; every report comes from the same
//! library function as the CLI's command (`oms_reports::*::*_from`, `StatusSource`), so the
//! figures are the CLI's `--json` figures. Routes are in [`api`], the OpenAPI document
//! (generated from the handlers' annotations) in [`openapi`], the page in [`dashboard`].
//!
//! Bounds: request bodies 64 KiB except the CSV upload (`--upload-limit-mb`, streamed to
//! a temp file, at most [`UPLOADS_AT_ONCE`] at a time); every request gets
//! `--request-timeout-secs` (the upload `--upload-timeout-secs`); responses carry a strict
//! CSP (`default-src 'self'`), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//! no-referrer`, `X-Frame-Options: DENY` and `Cache-Control: no-store`. The server binds
//! 127.0.0.1 unless `--addr` says otherwise; see [`auth`] for tokens. Read answers are
//! shared between clients for a second ([`readings`]). Per client: a request rate (429 +
//! `Retry-After`) and a Host allow-list ([`guard`]), at most `--max-connections-per-client`
//! connections, answers whose writing stalls for 10 s cut off (`oms_shared::http_server`),
//! uploads slower than [`MIN_UPLOAD_BYTES`] per [`UPLOAD_RATE_WINDOW`] refused (408).

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod guard;
pub mod openapi;
pub mod readings;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue, StatusCode};
use axum::Router;
use oms_shared::config::ConnectionConfig;
use oms_shared::deployment::{Deployment, PoolSizes};
use oms_shared::redis::conn::RedisPool;
use oms_shared::redis::keys::StreamKeys;
use sqlx::MySqlPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use auth::{ApiToken, AuthConfig};

/// CSV uploads running at once; more answer 429.
pub const UPLOADS_AT_ONCE: usize = 2;
/// Body bound of every request but the upload.
pub const BODY_LIMIT: usize = 64 * 1024;
/// An upload must bring at least [`MIN_UPLOAD_BYTES`] in every window of this length (a
/// client trickling bytes cannot hold an upload slot for the whole upload timeout).
pub const UPLOAD_RATE_WINDOW: Duration = Duration::from_secs(10);
/// See [`UPLOAD_RATE_WINDOW`]: 64 KiB per 10 s.
pub const MIN_UPLOAD_BYTES: u64 = 64 * 1024;
/// Where uploads are spooled: a directory of the system's temp dir, emptied at start (a
/// server killed mid-upload leaves its spool behind).
pub const SPOOL_DIR: &str = "oms-producer-uploads";

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (use 0.0.0.0:PORT to serve other hosts).
    #[arg(long, env = "OMS_API_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Largest CSV upload accepted by `POST /api/imports`, in MiB.
    #[arg(long, env = "OMS_API_UPLOAD_LIMIT_MB", default_value_t = 1024)]
    pub upload_limit_mb: u64,

    /// Time limit of a request, in seconds.
    #[arg(long, env = "OMS_API_REQUEST_TIMEOUT_SECS", default_value_t = 15)]
    pub request_timeout_secs: u64,

    /// Time limit of a CSV upload (receiving the body), in seconds.
    #[arg(long, env = "OMS_API_UPLOAD_TIMEOUT_SECS", default_value_t = 600)]
    pub upload_timeout_secs: u64,

    /// Requests per second one client address may make without the token (0: no limit).
    #[arg(long, env = "OMS_API_RATE_LIMIT_PER_SEC", default_value_t = 20)]
    pub rate_limit_per_sec: u32,

    /// Requests one client address may make at once above its rate.
    #[arg(long, env = "OMS_API_RATE_LIMIT_BURST", default_value_t = 40)]
    pub rate_limit_burst: u32,

    /// Requests per second with the token (0: no limit).
    #[arg(long, env = "OMS_API_TOKEN_RATE_LIMIT_PER_SEC", default_value_t = 0)]
    pub token_rate_limit_per_sec: u32,

    /// Connections one client address may hold at once.
    #[arg(long, env = "OMS_API_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 64)]
    pub max_connections_per_client: usize,

    /// A host name the server answers for besides IP addresses and localhost (repeat for
    /// more; comma-separated in the env).
    #[arg(
        long = "allowed-host",
        env = "OMS_API_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
}

/// A boolean setting of the environment: `1|true|yes|on` or `0|false|no|off` (any case;
/// unset or empty is `false`); anything else is an error, never a silent `false`.
pub fn env_flag(name: &str) -> anyhow::Result<bool> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{name}: not UTF-8"),
        Ok(v) => parse_flag(&v).ok_or_else(|| {
            anyhow::anyhow!("{name}={v:?}: expected 1, true, yes, on, 0, false, no or off")
        }),
    }
}

/// See [`env_flag`]. Pure.
pub fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "" | "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Everything the server's bounds and authorization depend on.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub auth: AuthConfig,
    pub upload_limit: u64,
    pub request_timeout: Duration,
    pub upload_timeout: Duration,
    pub rate: guard::RateSettings,
    pub max_connections_per_client: usize,
    /// Host names answered besides IP literals and localhost.
    pub allowed_hosts: Vec<String>,
}

impl ServeSettings {
    /// From the flags and `OMS_API_TOKEN` / `OMS_API_READ_TOKEN` (never a flag: a token on
    /// a command line is visible to every user of the host). A bad `OMS_API_READ_TOKEN`
    /// is an error (a typo must not leave reads open).
    pub fn from_env(args: &ServeArgs) -> anyhow::Result<Self> {
        let token = std::env::var("OMS_API_TOKEN")
            .ok()
            .and_then(|t| ApiToken::new(&t));
        let read_needs_token = env_flag("OMS_API_READ_TOKEN")?;
        if read_needs_token && token.is_none() {
            tracing::warn!("OMS_API_READ_TOKEN is set without OMS_API_TOKEN: reads answer 403");
        }
        Ok(ServeSettings {
            auth: AuthConfig {
                token,
                read_needs_token,
            },
            upload_limit: args.upload_limit_mb.saturating_mul(1024 * 1024),
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            upload_timeout: Duration::from_secs(args.upload_timeout_secs.max(1)),
            rate: guard::RateSettings {
                per_sec: args.rate_limit_per_sec,
                burst: args.rate_limit_burst,
                token_per_sec: args.token_rate_limit_per_sec,
            },
            max_connections_per_client: args.max_connections_per_client.max(1),
            allowed_hosts: args
                .allowed_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        })
    }
}

/// Empties the upload spool left by a server that was killed mid-upload.
fn clean_spool() {
    let dir = std::env::temp_dir().join(SPOOL_DIR);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

struct Inner {
    conn: ConnectionConfig,
    keys: StreamKeys,
    redis: RedisPool,
    db: MySqlPool,
    settings: ServeSettings,
    uploads: Arc<tokio::sync::Semaphore>,
    /// Cancelled at shutdown: running imports stop and are marked `interrupted`.
    shutdown: CancellationToken,
    /// Recent import readings, shared by every client ([`api::IMPORT_FRESH`]).
    import_cache: std::sync::Mutex<std::collections::HashMap<u64, api::CachedImport>>,
    readings: readings::Readings,
    newest_imports: api::NewestImports,
    rate_limits: guard::RateLimits,
}

/// What every handler shares: pools and settings.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Connects to MySQL (checking migrations) and Redis.
    pub async fn connect(
        conn: &ConnectionConfig,
        settings: ServeSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<AppState> {
        let sizes = PoolSizes {
            mysql: 8,
            redis: 16,
        };
        let Deployment { db, redis, keys } = Deployment::connect(conn, sizes).await?;
        let rate_limits = guard::RateLimits::new(settings.rate);
        Ok(AppState(Arc::new(Inner {
            conn: conn.clone(),
            keys,
            redis,
            db,
            settings,
            rate_limits,
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)),
            shutdown,
            import_cache: Default::default(),
            readings: Default::default(),
            newest_imports: Default::default(),
        })))
    }

    pub fn readings(&self) -> &readings::Readings {
        &self.0.readings
    }

    pub fn auth(&self) -> &AuthConfig {
        &self.0.settings.auth
    }

    pub fn rate_limits(&self) -> &guard::RateLimits {
        &self.0.rate_limits
    }

    pub fn allowed_hosts(&self) -> &[String] {
        &self.0.settings.allowed_hosts
    }

    /// Waits (at most `limit`) for the running uploads: each holds an upload permit until
    /// its import has ended (finished, or `interrupted` after the shutdown).
    pub async fn uploads_ended(&self, limit: Duration) -> bool {
        let all = self.0.uploads.acquire_many(UPLOADS_AT_ONCE as u32);
        tokio::time::timeout(limit, all).await.is_ok()
    }
}

fn security_headers(router: Router) -> Router {
    let headers: [(header::HeaderName, &'static str); 5] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
             frame-ancestors 'none'; form-action 'self'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    headers.into_iter().fold(router, |r, (name, value)| {
        r.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ))
    })
}

/// The whole application: API, OpenAPI document, dashboard, bounds and headers.
pub fn router(state: AppState) -> Router {
    let s = &state.0.settings;
    let reads = api::read_routes(state.clone())
        .merge(openapi::routes())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            s.request_timeout,
        ));
    let writes = api::write_routes(state.clone())
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            s.request_timeout,
        ));
    let upload = api::upload_routes(state.clone()).layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        s.upload_timeout,
    ));
    let api = Router::new()
        .merge(reads)
        .merge(writes)
        .merge(upload)
        // Before the token checks (inner layers): 405 and unknown query parameters.
        .route_layer(axum::middleware::from_fn(openapi::documented_only))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::rate_limit,
        ));
    let app = Router::new()
        .merge(api)
        .merge(dashboard::routes())
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check_host,
        ))
        .layer(axum::middleware::from_fn(error::json_errors));
    security_headers(app)
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let limits = serve_limits(&state.0.settings);
    let app = router(state);
    oms_shared::http_server::serve(listener, app, limits, shutdown).await;
    Ok(())
}

/// The connection bounds of `producer serve` (the shared bounded server, as the consumer's
/// metrics port): more connections than a metrics port (dashboards, scripts, a load test of
/// 200 clients) but at most `--max-connections-per-client` from one address (256 more
/// held a second before they are closed), 5 s for a
/// request head (and between requests), 10 s for an answer's writing to make progress, and
/// a whole-request budget just over the upload timeout (ordinary requests are bounded more
/// tightly by the router's own timeout layer; an upload by its minimum rate).
fn serve_limits(settings: &ServeSettings) -> oms_shared::http_server::HttpLimits {
    let longest = settings.upload_timeout.max(settings.request_timeout) + Duration::from_secs(30);
    oms_shared::http_server::HttpLimits {
        max_connections: 512,
        max_connections_per_client: settings.max_connections_per_client,
        // A crowd over its cap waits a second per attempt instead of reconnecting in a loop.
        max_held_connections: 256,
        request_timeout: longest,
        max_connection_age: longest,
        ..Default::default()
    }
}

/// `producer serve`.
pub async fn run(conn: &ConnectionConfig, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = match ServeSettings::from_env(&args) {
        Ok(s) => s,
        Err(e) => return Ok(oms_shared::process::usage_error(&e)),
    };
    clean_spool();
    let shutdown = CancellationToken::new();
    let state = AppState::connect(conn, settings.clone(), shutdown.clone()).await?;
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("--addr {}: cannot listen", args.addr))?;
    let bound = listener.local_addr()?;
    tracing::info!(
        addr = %bound,
        write_token = settings.auth.token.is_some(),
        read_token = settings.auth.read_needs_token,
        rate_limit_per_sec = settings.rate.per_sec,
        "serving the API and the dashboard"
    );
    if settings.auth.token.is_none() {
        tracing::warn!("OMS_API_TOKEN is not set: write endpoints answer 403");
    }
    println!("serving on http://{bound}/ (API under /api, OpenAPI at /api/openapi.json)");
    let signalled = oms_shared::process::shutdown_on_signals("stopping the server");
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            signalled.cancelled().await;
            shutdown.cancel();
        });
    }
    serve_on(listener, state.clone(), shutdown).await?;
    // Imports started by uploads saw the cancellation: let them record where they stopped.
    if !state.uploads_ended(Duration::from_secs(30)).await {
        tracing::warn!("uploads still running after 30 s; exiting anyway");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boolean_settings_are_strict() {
        for yes in ["1", "true", "TRUE", "on", "Yes", " yes "] {
            assert_eq!(parse_flag(yes), Some(true), "{yes}");
        }
        for no in ["", "0", "false", "OFF", "no"] {
            assert_eq!(parse_flag(no), Some(false), "{no}");
        }
        for bad in ["2", "y", "enable", "tru", "onn"] {
            assert_eq!(parse_flag(bad), None, "{bad}");
        }
    }
}
