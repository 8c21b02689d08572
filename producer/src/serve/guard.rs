//! Per-client bounds of the API in front of every route: the Host allow-list (no DNS
//! rebinding) and the request rate limit (`governor`'s GCRA, keyed by client).
//!
//! **Host**: a request whose `Host` is an IP literal, `localhost`, or a name given with
//! `--allowed-host` is served; any other name answers 421 (`misdirected`). A page of
//! `attacker.example` whose DNS name was rebound to this server's address cannot read it.
//!
//! **Rate**: requests without the valid token are limited per client address
//! (`--rate-limit-per-sec`, `--rate-limit-burst`; on by default), requests with it per
//! token (`--token-rate-limit-per-sec`, off by default: the operator's scripts). Over the
//! limit the answer is 429 `rate_limited` with `Retry-After` (whole seconds), sent after
//! [`TARPIT`]: a client that retries at once, on each of its connections, makes one
//! request per second per connection instead of thousands (each costs a task and a timer,
//! no work). The page and its assets are not limited (they are constant and cheap).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use oms_shared::http_server::ClientAddr;

use super::error::{visible, ApiError};
use super::AppState;

/// Who a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// Without the valid token: the peer's address.
    Addr(IpAddr),
    /// With the valid token (one token: one key).
    Token,
}

/// How many requests a client may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    /// Requests per second per address without the token; 0: no limit.
    pub per_sec: u32,
    /// Requests allowed at once above the rate.
    pub burst: u32,
    /// Requests per second with the token; 0: no limit.
    pub token_per_sec: u32,
}

impl RateSettings {
    /// No limit at all.
    pub const OFF: RateSettings = RateSettings {
        per_sec: 0,
        burst: 0,
        token_per_sec: 0,
    };
}

type Keyed = RateLimiter<ClientKey, HashMapStateStore<ClientKey>, DefaultClock>;

/// Clients remembered before the idle ones are forgotten.
const FORGET_AFTER: usize = 10_000;

/// The limiters of both classes.
pub struct RateLimits {
    anonymous: Option<Keyed>,
    token: Option<Keyed>,
    clock: DefaultClock,
    checks: AtomicU64,
}

fn limiter(per_sec: u32, burst: u32) -> Option<Keyed> {
    let per_sec = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec.get())).unwrap_or(per_sec);
    Some(RateLimiter::hashmap(
        Quota::per_second(per_sec).allow_burst(burst),
    ))
}

impl RateLimits {
    pub fn new(settings: RateSettings) -> RateLimits {
        RateLimits {
            anonymous: limiter(settings.per_sec, settings.burst),
            token: limiter(
                settings.token_per_sec,
                settings.token_per_sec.saturating_mul(2),
            ),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` when `key` may make one more request now, else how long to wait.
    pub fn check(&self, key: ClientKey) -> Result<(), Duration> {
        let limiter = match key {
            ClientKey::Addr(_) => &self.anonymous,
            ClientKey::Token => &self.token,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
            && limiter.len() > FORGET_AFTER
        {
            limiter.retain_recent();
        }
        limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// How long a 429 is held before it is sent.
pub const TARPIT: Duration = Duration::from_secs(1);

/// The value of `Retry-After`: whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
}

/// Middleware of the API routes: 429 over the client's rate.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let has_token =
        state.auth().token.as_ref().is_some_and(|t| {
            super::auth::bearer(&req).is_some_and(|presented| t.matches(presented))
        });
    let key = if has_token {
        ClientKey::Token
    } else {
        match req.extensions().get::<ClientAddr>() {
            Some(ClientAddr(peer)) => ClientKey::Addr(peer.ip()),
            None => return next.run(req).await,
        }
    };
    match state.rate_limits().check(key) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let secs = retry_after_secs(wait);
            tokio::time::sleep(TARPIT).await;
            let mut out = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this client: try again in {secs} s"),
            )
            .into_response();
            out.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            out
        }
    }
}

/// Whether a request with this `Host` may be served: IP literals, `localhost` and the
/// `allowed` names (case-insensitive, with or without a port). Pure.
pub fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without Host: no browser sends that.
        return true;
    };
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

/// Middleware of every route: 421 for a `Host` not allowed.
pub async fn check_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}"));
    if host_allowed(host, state.allowed_hosts()) {
        return next.run(req).await;
    }
    let shown: String = host.unwrap_or_default().chars().take(100).collect();
    tracing::warn!(host = %visible(&shown), "request for another host refused");
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected",
        "this server does not answer for that Host: start it with --allowed-host NAME",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ip_literals_localhost_and_the_allowed_names() {
        let allowed = vec!["oms.internal".to_string()];
        for ok in [
            None,
            Some("127.0.0.1:8080"),
            Some("10.1.2.3"),
            Some("[::1]:8080"),
            Some("localhost:8080"),
            Some("LOCALHOST"),
            Some("oms.internal:443"),
            Some("OMS.internal."),
        ] {
            assert!(host_allowed(ok, &allowed), "{ok:?}");
        }
        for bad in [
            Some("attacker.example"),
            Some("attacker.example:8080"),
            Some("localhost.attacker.example"),
            Some("127.0.0.1.nip.io"),
            Some(""),
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad:?}");
        }
    }

    #[test]
    fn a_client_over_its_rate_waits_and_others_do_not() {
        let limits = RateLimits::new(RateSettings {
            per_sec: 2,
            burst: 4,
            token_per_sec: 0,
        });
        let a = ClientKey::Addr("127.0.0.1".parse().unwrap());
        let b = ClientKey::Addr("127.0.0.2".parse().unwrap());
        for _ in 0..4 {
            assert!(limits.check(a).is_ok());
        }
        let wait = limits.check(a).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(retry_after_secs(wait), 1);
        assert!(limits.check(b).is_ok());
        for _ in 0..100 {
            assert!(limits.check(ClientKey::Token).is_ok());
        }
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert!(RateLimits::new(RateSettings::OFF).check(a).is_ok());
    }
}
