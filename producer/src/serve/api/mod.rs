//! The JSON API's routes and handlers. Each handler parses and checks its input, calls the
//! library function the CLI uses for the same report, and returns its value as JSON.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::auth::{require_read, require_write};
use super::error::{visible, ApiError, ErrorBody};
use super::AppState;
use crate::import::{self, ImportArgs};
use oms_reports::failed::{self, FailedList, RetryReport, RetryTarget};
use oms_reports::kpis::{self, KpiPeriod};
use oms_reports::leaderboard::{self, LeaderboardReport};
use oms_reports::orders::{self, OrderLookup, OrderStats};
use oms_reports::pause::{self as queue, PauseReport};
use oms_reports::status::{ImportStatus, StatusSource, StreamStatus};

mod dead_letters;
mod imports;
mod queue_control;
mod reports;

pub use dead_letters::*;
pub use imports::*;
pub use queue_control::*;
pub use reports::*;

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
        .route_layer(axum::middleware::from_fn(refuse_unknown_query))
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
        .route_layer(axum::middleware::from_fn(refuse_unknown_query))
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
        .route_layer(axum::middleware::from_fn(refuse_unknown_query))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_write,
        ))
        .with_state(state)
}

/// The query parameters the OpenAPI document declares, by method and route template.
static QUERY_PARAMETERS: LazyLock<HashMap<(Method, String), Vec<String>>> = LazyLock::new(|| {
    use utoipa::openapi::path::ParameterIn;
    let doc = <super::openapi::ApiDoc as utoipa::OpenApi>::openapi();
    let mut out = HashMap::new();
    for (path, item) in doc.paths.paths {
        let operations = [
            (Method::GET, item.get),
            (Method::POST, item.post),
            (Method::DELETE, item.delete),
            (Method::PUT, item.put),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let names = operation
                .parameters
                .unwrap_or_default()
                .into_iter()
                .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                .map(|p| p.name)
                .collect();
            out.insert((method, path.clone()), names);
        }
    }
    out
});

/// Whether the OpenAPI document has this method on this route template.
/// (`HEAD` is a `GET` without its body.)
pub fn is_documented(method: &Method, path: &str) -> bool {
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    QUERY_PARAMETERS.contains_key(&(method, path.to_string()))
}

/// Checks a query against the parameters the document declares for the route: an unknown
/// or repeated name is refused. Pure; `declared` is the route's list.
pub fn check_query(query: Option<&str>, declared: &[String]) -> Result<(), ApiError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in url::form_urlencoded::parse(query.as_bytes()) {
        if !declared.iter().any(|d| *d == name) {
            let shown: String = name.chars().take(40).collect();
            return Err(ApiError::bad_request(if declared.is_empty() {
                format!("unknown query parameter {shown:?}: this endpoint takes none")
            } else {
                format!(
                    "unknown query parameter {shown:?}: this endpoint takes {}",
                    declared.join(", ")
                )
            }));
        }
        if seen.iter().any(|s| *s == name) {
            return Err(ApiError::bad_request(format!(
                "query parameter {name:?} given twice"
            )));
        }
        seen.push(name.into_owned());
    }
    Ok(())
}

/// Middleware of every API route: unknown query parameters answer 400, so a query cannot
/// carry anything the handler (and the answer cache's key) does not look at.
pub async fn refuse_unknown_query(req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>() else {
        return next.run(req).await;
    };
    // A method the path does not have: the router answers 405.
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    let Some(declared) = QUERY_PARAMETERS.get(&(method, path.as_str().to_string())) else {
        return next.run(req).await;
    };
    if let Err(e) = check_query(req.uri().query(), declared) {
        return e.into_response();
    }
    next.run(req).await
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

pub(crate) fn status_source(state: &AppState) -> StatusSource {
    let s = &state.0;
    StatusSource::from_pools(s.keys.clone(), s.redis.clone(), Some(s.db.clone()))
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
    fn unknown_and_repeated_query_parameters_are_refused() {
        let limit = ["limit".to_string()];
        assert!(check_query(None, &limit).is_ok());
        assert!(check_query(Some(""), &limit).is_ok());
        assert!(check_query(Some("limit=5"), &limit).is_ok());
        assert!(check_query(Some("l%69mit=5"), &limit).is_ok());
        for bad in ["limit=5&bust=1", "bust=1", "limit=1&limit=2", "LIMIT=1"] {
            let e = check_query(Some(bad), &limit).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(check_query(Some("x=1"), &[]).is_err());
    }

    #[test]
    fn the_checked_parameters_are_the_documented_ones() {
        let get = |p: &str| QUERY_PARAMETERS.get(&(Method::GET, p.to_string())).cloned();
        assert_eq!(get("/api/imports").unwrap(), ["limit"]);
        assert_eq!(get("/api/queue").unwrap(), Vec::<String>::new());
        let mut lb = get("/api/leaderboard").unwrap();
        lb.sort();
        assert_eq!(lb, ["date", "limit"]);
    }

    #[test]
    fn entry_ids_are_checked() {
        assert!(parse_entry_id("1700000000000-0").is_ok());
        assert!(parse_entry_id("abc").is_err());
        assert!(parse_entry_id("3:1700000000000-0").is_ok());
        assert!(parse_entry_id("x:1700000000000-0").is_err());
    }
}
