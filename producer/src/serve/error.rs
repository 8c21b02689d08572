//! The API's error responses: `{"error": "...", "code": "..."}` with the matching status.
//!
//! Handlers return [`ApiError`]; library errors ([`ReportError`], anyhow) are mapped by what they are: an
//! unknown import or dead letter is 404, an unreachable MySQL or Redis 503, anything else
//! 500 with the error on one line. [`json_errors`] gives responses made by the tower
//! layers (413 body too large, 408 timeout, 405) the same JSON shape.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use oms_reports::ReportError;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, on one line.
    pub error: String,
    /// A stable code: `bad_request`, `not_found`, `unauthorized`, `forbidden`,
    /// `payload_too_large`, `timeout`, `busy`, `bad_csv`, `unavailable`, `internal`, ...
    pub code: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(limit: u64) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }
}

pub use oms_shared::untrusted_text::visible;

/// Whether an error (or its causes) says a server could not be reached.
fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<oms_shared::OmsError>()
            .is_some_and(|o| o.is_transient())
            || c.downcast_ref::<ReportError>()
                .is_some_and(ReportError::is_unavailable)
    })
}

/// The answer of a library error with this `message`: 404 for an unknown import or dead
/// letter, 503 for an unreachable server, else 500 (`internal`). Logs nothing.
pub fn classify(e: &anyhow::Error, message: String) -> ApiError {
    if e.downcast_ref::<ReportError>()
        .is_some_and(ReportError::is_not_found)
    {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    } else if unreachable(e) {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    } else {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<anyhow::Error> for ApiError {
    /// [`classify`]; a 500 is logged at ERROR, a 503 at WARN.
    fn from(e: anyhow::Error) -> Self {
        let message = oms_shared::error::one_line(e.as_ref());
        let api = classify(&e, message);
        match api.code {
            "internal" => tracing::error!(error = %visible(&api.message), "request failed"),
            "unavailable" => tracing::warn!(error = %visible(&api.message), "request failed"),
            _ => {}
        }
        api
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        ApiError::from(anyhow::Error::new(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_string(),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The code of a status the layers produce.
fn code_of(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ("timeout", "the request took too long")
        }
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed on this path"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported media type"),
        s if s.is_client_error() => ("bad_request", "bad request"),
        _ => ("internal", "internal error"),
    }
}

/// Rewrites error responses that are not JSON (from tower layers or axum's own
/// rejections) into the API's JSON error shape, keeping their status.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, default) = code_of(status);
    let message = if text.is_empty() {
        default.to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
