//! Queue routes: the stream's status, pause and resume.

use super::*;

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
        queue::set_paused(&state.0.db, &state.0.redis, &state.0.keys, true).await?,
    ))
}

/// Every consumer reads again within 1 s (`producer queue resume`).
#[utoipa::path(post, path = "/api/queue/resume", tag = "queue",
    responses((status = 200, body = PauseReport), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn queue_resume(State(state): State<AppState>) -> ApiResult<PauseReport> {
    tracing::info!("queue resumed through the API");
    Ok(Json(
        queue::set_paused(&state.0.db, &state.0.redis, &state.0.keys, false).await?,
    ))
}
