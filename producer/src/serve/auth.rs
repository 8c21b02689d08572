//! Bearer-token authorization of the API.
//!
//! Write endpoints (uploads, retries, purge, pause/resume) need
//! `Authorization: Bearer $OMS_API_TOKEN`. With no token configured they answer 403 and
//! say so: the API is never open for writing by default. A missing or wrong token is 401.
//! With `OMS_API_READ_TOKEN=1` read endpoints (and the dashboard's data) need the token
//! too. Tokens are compared in constant time (SHA-256 of both, then `subtle`), and are
//! never logged (`ApiToken`'s `Debug` prints a placeholder).

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// The configured token (its SHA-256; the token itself is not kept).
#[derive(Clone)]
pub struct ApiToken([u8; 32]);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// A token; empty or blank is no token.
    pub fn new(token: &str) -> Option<ApiToken> {
        let token = token.trim();
        (!token.is_empty()).then(|| ApiToken(Sha256::digest(token.as_bytes()).into()))
    }

    /// Constant-time comparison with a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.0.ct_eq(&digest).into()
    }
}

/// Who may do what.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub token: Option<ApiToken>,
    /// Reads need the token too (`OMS_API_READ_TOKEN=1`).
    pub read_needs_token: bool,
}

/// The decision for a request; a pure function of the configuration and the header.
pub fn check(token: Option<&ApiToken>, authorization: Option<&str>) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this endpoint needs OMS_API_TOKEN, and the server has none configured: \
             start `producer serve` with OMS_API_TOKEN set",
        ));
    };
    match authorization.and_then(bearer_of) {
        Some(p) if token.matches(p) => Ok(()),
        Some(_) => Err(unauthorized("wrong bearer token")),
        None => Err(unauthorized(
            "missing `Authorization: Bearer <OMS_API_TOKEN>` header",
        )),
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// The token of an `Authorization: Bearer TOKEN` value.
fn bearer_of(header: &str) -> Option<&str> {
    let (scheme, value) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
}

/// The bearer token a request presents, if any.
pub fn bearer(req: &Request) -> Option<&str> {
    authorization(req).and_then(bearer_of)
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Middleware of the write endpoints.
pub async fn require_write(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(state.auth().token.as_ref(), authorization(&req)) {
        Ok(()) => next.run(req).await,
        Err(e) => with_challenge(e),
    }
}

/// Middleware of the read endpoints: open unless `OMS_API_READ_TOKEN=1`.
pub async fn require_read(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = state.auth();
    if !auth.read_needs_token {
        return next.run(req).await;
    }
    match check(auth.token.as_ref(), authorization(&req)) {
        Ok(()) => next.run(req).await,
        Err(e) => with_challenge(e),
    }
}

fn with_challenge(e: ApiError) -> Response {
    let unauthorized = e.status == StatusCode::UNAUTHORIZED;
    let mut response = e.into_response();
    if unauthorized {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_token_configured_is_forbidden_whatever_is_presented() {
        let e = check(None, Some("Bearer anything")).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert!(e.message.contains("OMS_API_TOKEN"));
    }

    #[test]
    fn missing_or_wrong_tokens_are_unauthorized() {
        let t = ApiToken::new("s3cret").unwrap();
        assert_eq!(
            check(Some(&t), None).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            check(Some(&t), Some("Bearer s3cre")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            check(Some(&t), Some("Basic s3cret")).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        assert!(check(Some(&t), Some("Bearer s3cret")).is_ok());
        assert!(check(Some(&t), Some("bearer  s3cret ")).is_ok());
    }

    #[test]
    fn a_blank_token_is_no_token_and_debug_hides_it() {
        assert!(ApiToken::new("  ").is_none());
        let t = ApiToken::new("s3cret").unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
