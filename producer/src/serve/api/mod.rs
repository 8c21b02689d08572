//! The JSON API's routes and handlers. Each handler parses and checks its input, calls the
//! library function the CLI uses for the same report, and returns its value as JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{NaiveDate, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

mod audit;
mod dead_letters;
mod imports;
mod queue_control;
mod reports;

pub use audit::*;
pub use dead_letters::*;
pub use imports::*;
pub use queue_control::*;
pub use reports::*;

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The read endpoints (open unless `OMS_API_READ_TOKEN=1`). Each handler is registered
/// once: `routes!` takes its method and path from its `#[utoipa::path]` annotation, and
/// its operation goes into the OpenAPI document ([`super::openapi::document`]) from there.
pub fn read_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(kpis_daily))
        .routes(routes!(kpis_monthly))
        .routes(routes!(kpis_yearly))
        .routes(routes!(kpis_total))
        .routes(routes!(leaderboard_top))
        .routes(routes!(order_stats))
        .routes(routes!(order_throughput))
        .routes(routes!(order_history))
        .routes(routes!(order_lookup))
        .routes(routes!(imports_list))
        .routes(routes!(import_one))
        .routes(routes!(queue_status))
        .routes(routes!(failed_list))
        .routes(routes!(audit_list))
}

/// The write endpoints (bearer `OMS_API_TOKEN`, each request audited).
pub fn write_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(failed_retry_one))
        .routes(routes!(failed_retry_all))
        .routes(routes!(failed_purge))
        .routes(routes!(queue_pause))
        .routes(routes!(queue_resume))
}

/// The CSV upload (bearer `OMS_API_TOKEN`; its own body bound and timeout).
pub fn upload_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::default().routes(routes!(import_upload))
}

/// [`read_api`]'s routes, behind the read-token check.
pub fn read_routes(state: AppState) -> Router {
    let (routes, _) = read_api().split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_read,
        ))
        .with_state(state)
}

/// [`write_api`]'s routes, each request recorded in the audit log (refused ones too).
pub fn write_routes(state: AppState) -> Router {
    let (routes, _) = write_api().split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::readings::forget_after_write,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_write,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            record_action,
        ))
        .with_state(state)
}

/// [`upload_api`]'s route.
pub fn upload_routes(state: AppState) -> Router {
    let (routes, _) = upload_api().split_for_parts();
    routes
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
        .and(oms_shared::redis::queue::parse_stream_id(id))
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
    fn entry_ids_are_checked() {
        assert!(parse_entry_id("1700000000000-0").is_ok());
        assert!(parse_entry_id("abc").is_err());
        assert!(parse_entry_id("3:1700000000000-0").is_ok());
        assert!(parse_entry_id("x:1700000000000-0").is_err());
    }
}
