//! The JSON API's routes and handlers. Each handler parses and checks its input, calls the
//! library function the CLI uses for the same report, and returns its value as JSON.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::auth::{require_read, require_write};
use super::error::{ApiError, ErrorBody};
use super::AppState;
use crate::admin::failed::{self, FailedList, RetryReport, RetryTarget};
use crate::admin::kpis::{self, KpiPeriod};
use crate::admin::leaderboard::{self, LeaderboardReport};
use crate::admin::orders::{self, OrderLookup, OrderStats};
use crate::admin::queue::{self, PauseReport};
use crate::admin::status::{ImportStatus, StatusSource, StreamStatus};
use crate::import::{self, ImportArgs};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Read endpoints (open unless `OMS_API_READ_TOKEN=1`).
pub fn read_routes(state: AppState) -> Router {
    Router::new()
        .route("/api/kpis/daily/{date}", get(kpis_daily))
        .route("/api/kpis/monthly/{month}", get(kpis_monthly))
        .route("/api/kpis/yearly/{year}", get(kpis_yearly))
        .route("/api/kpis/total", get(kpis_total))
        .route("/api/leaderboard", get(leaderboard_top))
        .route("/api/orders/stats", get(order_stats))
        .route("/api/orders/throughput", get(order_throughput))
        .route("/api/orders/{identity}", get(order_lookup))
        .route("/api/imports", get(imports_list))
        .route("/api/imports/{id}", get(import_one))
        .route("/api/queue", get(queue_status))
        .route("/api/failed", get(failed_list))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::readings::share,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_read,
        ))
        .with_state(state)
}

/// Write endpoints (bearer `OMS_API_TOKEN`).
pub fn write_routes(state: AppState) -> Router {
    Router::new()
        .route("/api/failed/{id}/retry", post(failed_retry_one))
        .route("/api/failed/retry", post(failed_retry_all))
        .route("/api/failed", delete(failed_purge))
        .route("/api/queue/pause", post(queue_pause))
        .route("/api/queue/resume", post(queue_resume))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::readings::forget_after_write,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_write,
        ))
        .with_state(state)
}

/// The CSV upload (bearer `OMS_API_TOKEN`; its own body bound and timeout).
pub fn upload_routes(state: AppState) -> Router {
    Router::new()
        .route("/api/imports", post(import_upload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::readings::forget_after_write,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_write,
        ))
        .with_state(state)
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such path")
}

// ---------- input parsing (pure) ----------

/// `YYYY-MM-DD`, exactly.
pub fn parse_day(s: &str) -> Result<NaiveDate, ApiError> {
    let ok = s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    ok.then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not a date YYYY-MM-DD")))
}

/// `YYYY-MM`, exactly; the first day of the month.
pub fn parse_month(s: &str) -> Result<NaiveDate, ApiError> {
    let ok = s.len() == 7 && s.as_bytes()[4] == b'-';
    ok.then(|| NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not a month YYYY-MM")))
}

/// `YYYY`, exactly; January 1st of the year.
pub fn parse_year(s: &str) -> Result<NaiveDate, ApiError> {
    let ok = s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| NaiveDate::from_ymd_opt(s.parse().ok()?, 1, 1))
        .flatten()
        .ok_or_else(|| ApiError::bad_request(format!("{s:?} is not a year YYYY")))
}

/// A stream id `ms-seq`, or with partitions a dead letter's `N:ms-seq`.
pub fn parse_entry_id(s: &str) -> Result<&str, ApiError> {
    let (partition, id) = match s.split_once(':') {
        Some((p, id)) => (p.parse::<u16>().ok(), id),
        None => (Some(0), s),
    };
    partition
        .and(oms_shared::queue::parse_stream_id(id))
        .map(|_| s)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{s:?} is not a stream entry id (ms-seq, or N:ms-seq with partitions)"
            ))
        })
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

type QueryResult<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

// ---------- KPIs ----------

async fn kpi_period(state: &AppState, day: NaiveDate, index: usize) -> ApiResult<KpiPeriod> {
    let report = kpis::show_from(&state.0.redis, &state.0.keys, day).await?;
    Ok(Json(report.periods[index].clone()))
}

/// A day's KPIs, as in `kpis show --date DAY --json` (`periods[0]`).
#[utoipa::path(get, path = "/api/kpis/daily/{date}", tag = "kpis",
    params(("date" = String, Path, description = "YYYY-MM-DD")),
    responses((status = 200, body = KpiPeriod), (status = 400, body = ErrorBody)))]
pub async fn kpis_daily(
    State(state): State<AppState>,
    Path(date): Path<String>,
) -> ApiResult<KpiPeriod> {
    kpi_period(&state, parse_day(&date)?, 0).await
}

/// A month's KPIs (`periods[1]` of `kpis show`).
#[utoipa::path(get, path = "/api/kpis/monthly/{month}", tag = "kpis",
    params(("month" = String, Path, description = "YYYY-MM")),
    responses((status = 200, body = KpiPeriod), (status = 400, body = ErrorBody)))]
pub async fn kpis_monthly(
    State(state): State<AppState>,
    Path(month): Path<String>,
) -> ApiResult<KpiPeriod> {
    kpi_period(&state, parse_month(&month)?, 1).await
}

/// A year's KPIs (`periods[2]` of `kpis show`).
#[utoipa::path(get, path = "/api/kpis/yearly/{year}", tag = "kpis",
    params(("year" = String, Path, description = "YYYY")),
    responses((status = 200, body = KpiPeriod), (status = 400, body = ErrorBody)))]
pub async fn kpis_yearly(
    State(state): State<AppState>,
    Path(year): Path<String>,
) -> ApiResult<KpiPeriod> {
    kpi_period(&state, parse_year(&year)?, 2).await
}

/// All-time KPIs (`periods[3]` of `kpis show`).
#[utoipa::path(get, path = "/api/kpis/total", tag = "kpis",
    responses((status = 200, body = KpiPeriod)))]
pub async fn kpis_total(State(state): State<AppState>) -> ApiResult<KpiPeriod> {
    kpi_period(&state, Utc::now().date_naive(), 3).await
}

// ---------- leaderboard ----------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LeaderboardQuery {
    /// How many customers (1..=1000, default 10).
    pub limit: Option<usize>,
    /// A day's snapshot (YYYY-MM-DD) instead of the live board.
    pub date: Option<String>,
}

/// The top customers, as `leaderboard show --json` (live, or a day's snapshot).
#[utoipa::path(get, path = "/api/leaderboard", tag = "leaderboard", params(LeaderboardQuery),
    responses((status = 200, body = LeaderboardReport), (status = 400, body = ErrorBody)))]
pub async fn leaderboard_top(
    State(state): State<AppState>,
    q: QueryResult<LeaderboardQuery>,
) -> ApiResult<LeaderboardReport> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be within 1 and 1000"));
    }
    let snapshot = q.date.as_deref().map(parse_day).transpose()?;
    let s = &state.0;
    Ok(Json(
        leaderboard::show_from(&s.redis, &s.db, &s.keys, limit, snapshot).await?,
    ))
}

// ---------- orders ----------

/// Order counts by outcome and failure reason, revenue, completed and failed per minute
/// over the last hour; from Redis aggregates only (never a scan of the orders table).
#[utoipa::path(get, path = "/api/orders/stats", tag = "orders",
    responses((status = 200, body = OrderStats)))]
pub async fn order_stats(State(state): State<AppState>) -> ApiResult<OrderStats> {
    let s = &state.0;
    Ok(Json(
        orders::stats(&s.redis, &s.keys, Utc::now().timestamp()).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ThroughputQuery {
    /// Seconds to cover (1..=3600, default 900).
    pub window: Option<i64>,
}

/// One second of throughput.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ThroughputPoint {
    /// Unix seconds.
    pub at: i64,
    pub completed: u64,
    pub failed: u64,
}

/// Completed and failed orders per second (the dashboard's chart).
#[utoipa::path(get, path = "/api/orders/throughput", tag = "orders", params(ThroughputQuery),
    responses((status = 200, body = Vec<ThroughputPoint>), (status = 400, body = ErrorBody)))]
pub async fn order_throughput(
    State(state): State<AppState>,
    q: QueryResult<ThroughputQuery>,
) -> ApiResult<Vec<ThroughputPoint>> {
    let window = query(q)?.window.unwrap_or(900);
    if !(1..=3600).contains(&window) {
        return Err(ApiError::bad_request(
            "window must be within 1 and 3600 seconds",
        ));
    }
    let s = &state.0;
    let points = orders::throughput(&s.redis, &s.keys, Utc::now().timestamp(), window).await?;
    Ok(Json(
        points
            .into_iter()
            .map(|t| ThroughputPoint {
                at: t.at,
                completed: t.completed,
                failed: t.failed,
            })
            .collect(),
    ))
}

/// Where an order is: its row (status, reason, items, customer, totals, timestamps) and,
/// while in flight or dead, its stream entry, deliveries and last error.
#[utoipa::path(get, path = "/api/orders/{identity}", tag = "orders",
    params(("identity" = String, Path, description = "order identity (URL-encoded)")),
    responses((status = 200, body = OrderLookup), (status = 404, body = ErrorBody)))]
pub async fn order_lookup(
    State(state): State<AppState>,
    Path(identity): Path<String>,
) -> ApiResult<OrderLookup> {
    if identity.is_empty() || identity.len() > 128 {
        return Err(ApiError::bad_request("an identity has 1 to 128 bytes"));
    }
    let s = &state.0;
    match orders::lookup(&s.redis, &s.db, &s.keys, &identity).await? {
        Some(found) => Ok(Json(found)),
        None => Err(ApiError::not_found(format!(
            "no order {identity:?}: not in MySQL, not pending, not dead"
        ))),
    }
}

// ---------- imports ----------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ImportsQuery {
    /// How many of the newest imports (1..=50, default 10).
    pub limit: Option<u32>,
}

/// One import's progress with its rejects by reason.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportDetail {
    #[serde(flatten)]
    pub status: ImportStatus,
    pub rejected_by_reason: BTreeMap<String, i64>,
}

/// The newest imports' progress, as `producer status IMPORT --json` (`import`) each.
#[utoipa::path(get, path = "/api/imports", tag = "imports", params(ImportsQuery),
    responses((status = 200, body = Vec<ImportStatus>)))]
pub async fn imports_list(
    State(state): State<AppState>,
    q: QueryResult<ImportsQuery>,
) -> ApiResult<Vec<ImportStatus>> {
    let limit = query(q)?.limit.unwrap_or(10);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::bad_request("limit must be within 1 and 50"));
    }
    let s = &state.0;
    let rows = oms_shared::store::lookup::recent_imports(&s.db, limit)
        .await
        .map_err(anyhow::Error::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(import_status(&state, row.id).await?);
    }
    Ok(Json(out))
}

/// How long an import reading is reused: a running import's figures are read from MySQL at
/// most once per this interval whatever the number of clients (the dashboard polls every
/// 2 s), a finished one's for [`IMPORT_DONE_FRESH`].
pub const IMPORT_FRESH: std::time::Duration = std::time::Duration::from_secs(1);
pub const IMPORT_DONE_FRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// Readings kept at most (the cache is emptied when it grows past this).
const IMPORT_CACHE_MAX: usize = 1_000;

/// An import reading and when it was taken.
#[derive(Debug, Clone)]
pub struct CachedImport {
    at: std::time::Instant,
    status: ImportStatus,
}

/// One import's progress, as `producer status IMPORT` computes it, reused for a moment.
async fn import_status(state: &AppState, id: u64) -> Result<ImportStatus, ApiError> {
    {
        let cache = state.0.import_cache.lock().expect("import cache lock");
        if let Some(c) = cache.get(&id) {
            let fresh = if c.status.done {
                IMPORT_DONE_FRESH
            } else {
                IMPORT_FRESH
            };
            if c.at.elapsed() < fresh {
                return Ok(c.status.clone());
            }
        }
    }
    let status = status_source(state).import(id, None).await?;
    let mut cache = state.0.import_cache.lock().expect("import cache lock");
    if cache.len() >= IMPORT_CACHE_MAX {
        cache.clear();
    }
    cache.insert(
        id,
        CachedImport {
            at: std::time::Instant::now(),
            status: status.clone(),
        },
    );
    Ok(status)
}

fn status_source(state: &AppState) -> StatusSource {
    let s = &state.0;
    StatusSource::from_pools(s.keys.clone(), s.redis.clone(), Some(s.db.clone()))
}

/// One import's progress, as `producer status IMPORT --json` (`import`), with its rejects
/// by reason.
#[utoipa::path(get, path = "/api/imports/{id}", tag = "imports",
    params(("id" = u64, Path, description = "import id")),
    responses((status = 200, body = ImportDetail), (status = 404, body = ErrorBody)))]
pub async fn import_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<ImportDetail> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not an import id")))?;
    let status = import_status(&state, id).await?;
    let rejected_by_reason = oms_shared::store::imports::rejects_by_reason(&state.0.db, id)
        .await
        .map_err(anyhow::Error::from)?
        .into_iter()
        .collect();
    Ok(Json(ImportDetail {
        status,
        rejected_by_reason,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file's name, recorded in the import (letters, digits, `.-_`; default upload.csv).
    pub name: Option<String>,
    /// Rows per stream entry (1..=10000, default 100).
    pub chunk_size: Option<u64>,
    /// Pause while more than this many rows wait unread (default 1000000; 0: no limit).
    pub max_lag: Option<u64>,
    /// Import rows already imported from the same file again, as new orders.
    pub new: Option<bool>,
    /// Answer when the whole file is enqueued, with the report of `producer import --json`.
    pub wait: Option<bool>,
}

/// The 202 answer of an upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadAccepted {
    pub import_id: u64,
    /// Where to follow it.
    pub status_url: String,
}

/// A file name safe to use in a temp directory.
pub fn upload_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.unwrap_or("upload.csv");
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then(|| name.to_string()).ok_or_else(|| {
        ApiError::bad_request(
            "name: 1 to 100 letters, digits, '.', '-' or '_', not starting with '.'",
        )
    })
}

/// Upload a CSV of orders (the request body, streamed to a temp file within the upload
/// bound) and import it like `producer import`: same validation, rejects, idempotency and
/// backpressure. Answers 202 with the import id once the import exists; with `wait=true`,
/// 200 with `producer import --json`'s report once the file is enqueued. A file whose
/// header is wrong is refused (400 `bad_csv`) before anything is enqueued.
#[utoipa::path(post, path = "/api/imports", tag = "imports", params(UploadQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 202, body = UploadAccepted), (status = 200, description = "with wait=true: the import report", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import_upload(
    State(state): State<AppState>,
    q: QueryResult<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let name = upload_name(q.name.as_deref())?;
    let chunk_size = q.chunk_size.unwrap_or(100);
    if !(1..=10_000).contains(&chunk_size) {
        return Err(ApiError::bad_request(
            "chunk_size must be within 1 and 10000",
        ));
    }
    let s = &state.0;
    let limit = s.settings.upload_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let Ok(permit) = s.uploads.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            format!(
                "{} uploads are running; try again later",
                super::UPLOADS_AT_ONCE
            ),
        ));
    };
    // Stream the body to a temp file: memory stays flat whatever the size.
    let dir = tempfile::tempdir().map_err(|e| anyhow::anyhow!("cannot create a temp dir: {e}"))?;
    let path = dir.path().join(&name);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(ApiError::too_large(limit));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    file.flush().await.map_err(anyhow::Error::from)?;
    drop(file);
    if received == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_csv",
            "the body is empty: send a CSV file",
        ));
    }

    let file_name = path.to_string_lossy().into_owned();
    let args = ImportArgs {
        file: file_name.clone(),
        chunk_size,
        max_lag: q.max_lag.unwrap_or(1_000_000),
        wait: false,
        wait_timeout_secs: None,
        rejects: None,
        force: false,
        new: q.new.unwrap_or(false),
        min_replicas: None,
    };
    let (conn, shutdown) = (s.conn.clone(), s.shutdown.clone());
    let task = tokio::spawn(async move {
        let report = import::import(&conn, &args, shutdown).await;
        drop(dir);
        drop(permit);
        report
    });
    if q.wait.unwrap_or(false) {
        let report = task
            .await
            .map_err(|e| anyhow::anyhow!("the import task failed: {e}"))?
            .map_err(import_error)?;
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    // Answer as soon as the import exists (or failed before it did).
    let mut task = task;
    loop {
        tokio::select! {
            done = &mut task => {
                let report = done
                    .map_err(|e| anyhow::anyhow!("the import task failed: {e}"))?
                    .map_err(import_error)?;
                return Ok(accepted(report.import_id));
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                let id = oms_shared::store::lookup::import_id_by_file_name(&s.db, &file_name)
                    .await
                    .map_err(anyhow::Error::from)?;
                if let Some(id) = id {
                    return Ok(accepted(id));
                }
            }
        }
    }
}

fn accepted(import_id: u64) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/imports/{import_id}"))],
        Json(UploadAccepted {
            import_id,
            status_url: format!("/api/imports/{import_id}"),
        }),
    )
        .into_response()
}

/// An import that failed before enqueueing: a bad file is the client's (400 `bad_csv`),
/// an unreachable server 503.
fn import_error(e: anyhow::Error) -> ApiError {
    let api: ApiError = e.into();
    if api.code == "internal" {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_csv",
            message: api.message,
        }
    } else {
        api
    }
}

// ---------- queue ----------

/// Stream length, pending, lag, consumers, dead letters and the pause flag, as
/// `producer status --json` (`stream`).
#[utoipa::path(get, path = "/api/queue", tag = "queue",
    responses((status = 200, body = StreamStatus)))]
pub async fn queue_status(State(state): State<AppState>) -> ApiResult<StreamStatus> {
    Ok(Json(status_source(&state).stream().await?))
}

/// Every consumer stops reading new entries within 1 s (`producer queue pause`).
#[utoipa::path(post, path = "/api/queue/pause", tag = "queue",
    responses((status = 200, body = PauseReport), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn queue_pause(State(state): State<AppState>) -> ApiResult<PauseReport> {
    tracing::info!("queue paused through the API");
    Ok(Json(
        queue::set_paused(&state.0.redis, &state.0.keys, true).await?,
    ))
}

/// Every consumer reads again within 1 s (`producer queue resume`).
#[utoipa::path(post, path = "/api/queue/resume", tag = "queue",
    responses((status = 200, body = PauseReport), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn queue_resume(State(state): State<AppState>) -> ApiResult<PauseReport> {
    tracing::info!("queue resumed through the API");
    Ok(Json(
        queue::set_paused(&state.0.redis, &state.0.keys, false).await?,
    ))
}

// ---------- dead letters ----------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FailedQuery {
    /// How many, oldest first (1..=1000, default 100).
    pub limit: Option<usize>,
}

/// Dead letters, as `producer failed list --json`.
#[utoipa::path(get, path = "/api/failed", tag = "failed", params(FailedQuery),
    responses((status = 200, body = FailedList)))]
pub async fn failed_list(
    State(state): State<AppState>,
    q: QueryResult<FailedQuery>,
) -> ApiResult<FailedList> {
    let limit = query(q)?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be within 1 and 1000"));
    }
    Ok(Json(
        failed::list_from(&state.0.redis, &state.0.keys, limit).await?,
    ))
}

/// Puts one dead letter back on the orders stream (`producer failed retry ID`).
#[utoipa::path(post, path = "/api/failed/{id}/retry", tag = "failed",
    params(("id" = String, Path, description = "dead-letter id (ms-seq; N:ms-seq with partitions)")),
    responses((status = 200, body = RetryReport), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn failed_retry_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<RetryReport> {
    let id = parse_entry_id(&id)?.to_string();
    Ok(Json(
        failed::retry_from(&state.0.redis, &state.0.keys, RetryTarget::Id(id)).await?,
    ))
}

/// Puts every dead letter back on the orders stream (`producer failed retry all`).
#[utoipa::path(post, path = "/api/failed/retry", tag = "failed",
    responses((status = 200, body = RetryReport)), security(("bearer" = [])))]
pub async fn failed_retry_all(State(state): State<AppState>) -> ApiResult<RetryReport> {
    Ok(Json(
        failed::retry_from(&state.0.redis, &state.0.keys, RetryTarget::All).await?,
    ))
}

/// How many dead letters a purge deleted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Purged {
    pub purged: u64,
}

/// Deletes every dead letter (`producer failed purge`).
#[utoipa::path(delete, path = "/api/failed", tag = "failed",
    responses((status = 200, body = Purged)), security(("bearer" = [])))]
pub async fn failed_purge(State(state): State<AppState>) -> ApiResult<Purged> {
    Ok(Json(Purged {
        purged: failed::purge_from(&state.0.redis, &state.0.keys).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_months_and_years_are_exact() {
        assert_eq!(
            parse_day("2026-03-07").unwrap(),
            NaiveDate::from_ymd_opt(2026, 3, 7).unwrap()
        );
        for bad in [
            "2026-3-7",
            "2026-02-30",
            "20260307",
            "",
            "2026-03-07x",
            "abcd-ef-gh",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_month("2026-12").unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
        for bad in ["2026-13", "2026-1", "202612", "2026-00"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
        assert!(parse_year("2026").is_ok());
        for bad in ["26", "20266", "-202", "abcd"] {
            assert!(parse_year(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upload_names_cannot_escape_the_temp_dir() {
        assert_eq!(upload_name(None).unwrap(), "upload.csv");
        assert_eq!(upload_name(Some("orders-1.csv")).unwrap(), "orders-1.csv");
        for bad in ["../x.csv", "a/b.csv", ".hidden", "", "a b.csv"] {
            assert!(upload_name(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn entry_ids_are_checked() {
        assert!(parse_entry_id("1700000000000-0").is_ok());
        assert!(parse_entry_id("abc").is_err());
        assert!(parse_entry_id("3:1700000000000-0").is_ok());
        assert!(parse_entry_id("x:1700000000000-0").is_err());
    }
}
