//! The audit log: `GET /api/audit`, and [`record_action`], the middleware that records
//! every write request (pause, resume, retry, purge) with its actor
//! (`api:<token name or anonymous>@<peer>`) and outcome — refused requests included.

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use oms_reports::audit::{self, AuditReport};
use oms_shared::http_server::ClientAddr;
use oms_shared::store::audit::AuditAction;

use super::*;

/// The name the audit log gives the configured `OMS_API_TOKEN` (there is one token).
pub const TOKEN_NAME: &str = "OMS_API_TOKEN";
/// The most of an error body read to say why a request failed.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only actions at or after this time (UTC): `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` or
    /// RFC 3339 (documented as an RFC 3339 date-time; the shorter forms are accepted too).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// How many, newest first (1..=1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Operator actions (CLI and API), newest first, as `producer audit --json`.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditReport), (status = 400, body = ErrorBody)))]
pub async fn audit_list(
    State(state): State<AppState>,
    q: QueryResult<AuditQuery>,
) -> ApiResult<AuditReport> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(audit::DEFAULT_LIMIT);
    if !(1..=audit::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request("limit must be within 1 and 1000"));
    }
    let since = match q.since.as_deref() {
        Some(s) => Some(audit::parse_since(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "since {s:?}: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or RFC 3339"
            ))
        })?),
        None => None,
    };
    Ok(Json(audit::audit_log(&state.0.db, since, limit).await?))
}

/// The audit name of a write request by its method and path.
fn action_of(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/api/queue/pause") => "queue pause",
        ("POST", "/api/queue/resume") => "queue resume",
        ("POST", p) if p.starts_with("/api/failed/") && p.ends_with("/retry") => "failed retry",
        ("DELETE", "/api/failed") => "failed purge",
        _ => "api write",
    }
}

/// `api:<token name or anonymous>@<peer>`: the token's name when the request presented
/// the configured token.
fn actor_of(state: &AppState, req: &Request) -> String {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let name = match &state.auth().token {
        Some(t) if super::super::auth::check(Some(t), presented).is_ok() => TOKEN_NAME,
        _ => "anonymous",
    };
    let peer = req
        .extensions()
        .get::<ClientAddr>()
        .map_or_else(|| "unknown".to_string(), |p| p.0.to_string());
    format!("api:{name}@{peer}")
}

/// `ok`, or `failed: HTTP <status>: <error>` read from the JSON error body (the response
/// is rebuilt from the bytes read).
async fn outcome_of(response: Response) -> (Response, String) {
    let status = response.status();
    if status.is_success() {
        return (response, "ok".into());
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let why = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    let outcome = format!("failed: HTTP {}: {why}", status.as_u16());
    (Response::from_parts(parts, Body::from(bytes)), outcome)
}

/// Middleware of the write routes: records the request in the audit log once answered.
/// A failure to record is logged; the answer is sent anyway.
pub async fn record_action(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let action = action_of(req.method(), req.uri().path());
    let arguments = format!(
        "{} {}",
        req.method(),
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let actor = actor_of(&state, &req);
    let (response, outcome) = outcome_of(next.run(req).await).await;
    let entry = AuditAction {
        action,
        arguments: &arguments,
        outcome: &outcome,
        actor: &actor,
    };
    if let Err(e) = oms_shared::store::audit::record(&state.0.db, &entry).await {
        tracing::warn!(action, error = %e, "the audit log did not record this request");
    }
    response
}

#[cfg(test)]
mod audit_tests {
    use super::*;

    #[test]
    fn write_routes_have_audit_names() {
        assert_eq!(action_of(&Method::POST, "/api/queue/pause"), "queue pause");
        assert_eq!(
            action_of(&Method::POST, "/api/failed/1-0/retry"),
            "failed retry"
        );
        assert_eq!(action_of(&Method::DELETE, "/api/failed"), "failed purge");
    }
}
