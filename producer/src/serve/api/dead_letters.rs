//! Dead-letter routes: list, retry one or all, purge.

use super::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FailedQuery {
    /// How many, oldest first (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Dead letters, as `producer failed list --json`.
#[utoipa::path(get, path = "/api/failed", tag = "failed", params(FailedQuery),
    responses((status = 200, body = FailedList)))]
pub async fn failed_list(
    State(state): State<AppState>,
    q: QueryResult<FailedQuery>,
) -> Result<Response, ApiError> {
    let limit = query(q)?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be within 1 and 1000"));
    }
    state
        .readings()
        .answer(format!("failed?limit={limit}"), async {
            Ok::<FailedList, ApiError>(
                failed::list_from(&state.0.redis, &state.0.keys, limit).await?,
            )
        })
        .await
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
        failed::retry_from(
            &state.0.db,
            &state.0.redis,
            &state.0.keys,
            RetryTarget::Id(id),
        )
        .await?,
    ))
}

/// Puts every dead letter back on the orders stream (`producer failed retry all`).
#[utoipa::path(post, path = "/api/failed/retry", tag = "failed",
    responses((status = 200, body = RetryReport)), security(("bearer" = [])))]
pub async fn failed_retry_all(State(state): State<AppState>) -> ApiResult<RetryReport> {
    Ok(Json(
        failed::retry_from(&state.0.db, &state.0.redis, &state.0.keys, RetryTarget::All).await?,
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
