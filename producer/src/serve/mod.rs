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
//! shared between clients for a second ([`readings`]).

pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
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
use oms_shared::keys::StreamKeys;
use oms_shared::redis_conn::RedisPool;
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
}

/// Everything the server's bounds and authorization depend on.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub auth: AuthConfig,
    pub upload_limit: u64,
    pub request_timeout: Duration,
    pub upload_timeout: Duration,
}

impl ServeSettings {
    /// From the flags and `OMS_API_TOKEN` / `OMS_API_READ_TOKEN` (never a flag: a token on
    /// a command line is visible to every user of the host).
    pub fn from_env(args: &ServeArgs) -> Self {
        let token = std::env::var("OMS_API_TOKEN")
            .ok()
            .and_then(|t| ApiToken::new(&t));
        let read_needs_token = std::env::var("OMS_API_READ_TOKEN")
            .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
            .unwrap_or(false);
        ServeSettings {
            auth: AuthConfig {
                token,
                read_needs_token,
            },
            upload_limit: args.upload_limit_mb.saturating_mul(1024 * 1024),
            request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
            upload_timeout: Duration::from_secs(args.upload_timeout_secs.max(1)),
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
    dead_tally: api::DeadTally,
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
        let db = oms_shared::db::connect(&conn.database_url, 8).await?;
        oms_shared::db::ensure_migrated(&db, &conn.database_url).await?;
        let redis = oms_shared::redis_conn::connect(&conn.redis_url, 16).await?;
        let keys: StreamKeys =
            oms_shared::store::settings::deployment_keys(&db, &conn.prefix, conn.is_cluster())
                .await?;
        {
            let mut rc = redis.get().await?;
            oms_shared::queue::ensure_group(&mut *rc, &keys).await?;
        }
        Ok(AppState(Arc::new(Inner {
            conn: conn.clone(),
            keys,
            redis,
            db,
            settings,
            uploads: Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)),
            shutdown,
            import_cache: Default::default(),
            readings: Default::default(),
            dead_tally: Default::default(),
        })))
    }

    pub fn readings(&self) -> &readings::Readings {
        &self.0.readings
    }

    pub fn auth(&self) -> &AuthConfig {
        &self.0.settings.auth
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
    let app = Router::new()
        .merge(reads)
        .merge(writes)
        .merge(upload)
        .merge(dashboard::routes())
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(error::json_errors));
    security_headers(app)
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = router(state);
    oms_shared::http_server::serve(listener, app, serve_limits(), shutdown).await;
    Ok(())
}

/// The connection bounds of `producer serve` (the shared bounded server, as the consumer's
/// metrics port): more connections than a metrics port (dashboards, scripts, a load test of
/// 200 clients), and whole-request and connection budgets long enough for a large CSV
/// upload; ordinary requests are bounded more tightly by the router's own timeout layer.
fn serve_limits() -> oms_shared::http_server::HttpLimits {
    oms_shared::http_server::HttpLimits {
        max_connections: 512,
        request_timeout: Duration::from_secs(3600),
        max_connection_age: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// `producer serve`.
pub async fn run(conn: &ConnectionConfig, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = ServeSettings::from_env(&args);
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
