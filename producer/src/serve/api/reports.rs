//! Read-only report routes: KPIs, the leaderboard, order stats and lookups.

use super::*;
use oms_shared::kpi::Period;
use oms_shared::order::rules::MAX_IDENTITY_CHARS;

/// The `index`th period of `kpis show` for `day`, shared by key (`kpis/{index}/{day}`).
async fn kpi_period(
    state: &AppState,
    day: NaiveDate,
    period: Period,
) -> Result<Response, ApiError> {
    let key = format!("kpis/{}/{day}", period.name());
    state
        .readings()
        .answer(key, async {
            let report = kpis::show_from(&state.0.redis, &state.0.keys, day).await?;
            Ok(report.period(period).clone())
        })
        .await
}

/// A day's KPIs, as in `kpis show --date DAY --json` (its daily period).
#[utoipa::path(get, path = "/api/kpis/daily/{date}", tag = "kpis",
    params(("date" = String, Path, description = "YYYY-MM-DD")),
    responses((status = 200, body = KpiPeriod), (status = 400, body = ErrorBody)))]
pub async fn kpis_daily(
    State(state): State<AppState>,
    Path(date): Path<String>,
) -> Result<Response, ApiError> {
    kpi_period(&state, parse_day(&date)?, Period::Daily).await
}

/// A month's KPIs (the monthly period of `kpis show`).
#[utoipa::path(get, path = "/api/kpis/monthly/{month}", tag = "kpis",
    params(("month" = String, Path, description = "YYYY-MM")),
    responses((status = 200, body = KpiPeriod), (status = 400, body = ErrorBody)))]
pub async fn kpis_monthly(
    State(state): State<AppState>,
    Path(month): Path<String>,
) -> Result<Response, ApiError> {
    kpi_period(&state, parse_month(&month)?, Period::Monthly).await
}

/// A year's KPIs (the yearly period of `kpis show`).
#[utoipa::path(get, path = "/api/kpis/yearly/{year}", tag = "kpis",
    params(("year" = String, Path, description = "YYYY")),
    responses((status = 200, body = KpiPeriod), (status = 400, body = ErrorBody)))]
pub async fn kpis_yearly(
    State(state): State<AppState>,
    Path(year): Path<String>,
) -> Result<Response, ApiError> {
    kpi_period(&state, parse_year(&year)?, Period::Yearly).await
}

/// All-time KPIs (the total of `kpis show`).
#[utoipa::path(get, path = "/api/kpis/total", tag = "kpis",
    responses((status = 200, body = KpiPeriod)))]
pub async fn kpis_total(State(state): State<AppState>) -> Result<Response, ApiError> {
    kpi_period(&state, Utc::now().date_naive(), Period::Total).await
}

// ---------- leaderboard ----------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    /// How many customers (1..=1000, default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// A day's snapshot (YYYY-MM-DD) instead of the live board.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub date: Option<String>,
}

/// The top customers, as `leaderboard show --json` (live, or a day's snapshot).
#[utoipa::path(get, path = "/api/leaderboard", tag = "leaderboard", params(LeaderboardQuery),
    responses((status = 200, body = LeaderboardReport), (status = 400, body = ErrorBody)))]
pub async fn leaderboard_top(
    State(state): State<AppState>,
    q: QueryResult<LeaderboardQuery>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(10);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be within 1 and 1000"));
    }
    let snapshot = q.date.as_deref().map(parse_day).transpose()?;
    let key = match snapshot {
        Some(day) => format!("leaderboard?limit={limit}&date={day}"),
        None => format!("leaderboard?limit={limit}"),
    };
    let s = &state.0;
    state
        .readings()
        .answer(key, async {
            Ok(leaderboard::show_from(&s.redis, &s.db, &s.keys, limit, snapshot).await?)
        })
        .await
}

// ---------- orders ----------

/// Order counts by outcome and failure reason, revenue, completed and failed per minute
/// over the last hour; from Redis aggregates only (never a scan of the orders table).
#[utoipa::path(get, path = "/api/orders/stats", tag = "orders",
    responses((status = 200, body = OrderStats)))]
pub async fn order_stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    let s = &state.0;
    state
        .readings()
        .answer("orders/stats".into(), async {
            Ok(orders::stats(&s.redis, &s.keys, Utc::now().timestamp()).await?)
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ThroughputQuery {
    /// Seconds to cover (1..=3600, default 900).
    #[param(minimum = 1, maximum = 3600)]
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
) -> Result<Response, ApiError> {
    let window = query(q)?.window.unwrap_or(900);
    if !(1..=3600).contains(&window) {
        return Err(ApiError::bad_request(
            "window must be within 1 and 3600 seconds",
        ));
    }
    let s = &state.0;
    let key = format!("orders/throughput?window={window}");
    state
        .readings()
        .answer(key, async {
            let points =
                orders::throughput(&s.redis, &s.keys, Utc::now().timestamp(), window).await?;
            Ok(points
                .into_iter()
                .map(|t| ThroughputPoint {
                    at: t.at,
                    completed: t.completed,
                    failed: t.failed,
                })
                .collect::<Vec<_>>())
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Minutes to cover, ending now (1..=1440, default 60).
    #[param(minimum = 1, maximum = 1440)]
    pub minutes: Option<i64>,
}

/// One minute of history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryMinute {
    /// Unix seconds of the start of the minute.
    pub at: i64,
    pub completed: u64,
    pub failed: u64,
    /// The stream's lag as last sampled in the minute by a consumer; null when none ran.
    pub lag: Option<u64>,
}

/// Completed, failed and lag per minute over the last hour or day (the dashboard's history).
#[utoipa::path(get, path = "/api/orders/history", tag = "orders", params(HistoryQuery),
    responses((status = 200, body = Vec<HistoryMinute>), (status = 400, body = ErrorBody)))]
pub async fn order_history(
    State(state): State<AppState>,
    q: QueryResult<HistoryQuery>,
) -> ApiResult<Vec<HistoryMinute>> {
    let minutes = query(q)?.minutes.unwrap_or(60);
    if !(1..=oms_shared::redis::order_stats::HISTORY_MINUTES).contains(&minutes) {
        return Err(ApiError::bad_request("minutes must be within 1 and 1440"));
    }
    let s = &state.0;
    let points = orders::history(&s.redis, &s.keys, Utc::now().timestamp(), minutes).await?;
    Ok(Json(
        points
            .into_iter()
            .map(|p| HistoryMinute {
                at: p.at,
                completed: p.completed,
                failed: p.failed,
                lag: p.lag,
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
) -> Result<Response, ApiError> {
    if identity.is_empty() || identity.chars().count() > MAX_IDENTITY_CHARS {
        return Err(ApiError::bad_request(format!(
            "an identity has 1 to {} characters",
            MAX_IDENTITY_CHARS
        )));
    }
    let s = &state.0;
    let key = format!("orders/{identity}");
    state
        .readings()
        .answer(key, async {
            match orders::lookup(&s.redis, &s.db, &s.keys, &identity).await? {
                Some(found) => Ok(found),
                None => Err(ApiError::not_found(format!(
                    "no order {:?}: not in MySQL, not pending, not dead",
                    super::super::error::visible(&identity)
                ))),
            }
        })
        .await
}
