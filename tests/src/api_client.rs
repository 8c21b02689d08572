//! A minimal HTTP/1.1 client for the API tests (hyper's client connection, one request per
//! connection), and an in-process `producer serve` on an ephemeral port.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use producer::serve::auth::{ApiToken, AuthConfig};
use producer::serve::{AppState, ServeSettings};
use tokio_util::sync::CancellationToken;

use crate::TestEnv;

/// One answer.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `code` of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

/// A running server and how to reach it; stops when dropped.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub token: Option<String>,
    stop: CancellationToken,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Server settings for tests: `token` as OMS_API_TOKEN, small bounds.
pub fn settings(token: Option<&str>, read_needs_token: bool, upload_limit: u64) -> ServeSettings {
    ServeSettings {
        auth: AuthConfig {
            token: token.and_then(ApiToken::new),
            read_needs_token,
        },
        upload_limit,
        request_timeout: Duration::from_secs(15),
        upload_timeout: Duration::from_secs(60),
        // Tests poll the API as fast as they like; the limit has its own tests.
        rate: producer::serve::guard::RateSettings::OFF,
        max_connections_per_client: 512,
        allowed_hosts: Vec::new(),
    }
}

impl ApiServer {
    /// Starts `producer serve` in this process on 127.0.0.1:0.
    pub async fn start(env: &TestEnv, settings: ServeSettings) -> ApiServer {
        let token = None;
        let stop = CancellationToken::new();
        let state = AppState::connect(&env.config, settings, stop.clone())
            .await
            .expect("connect the API server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(producer::serve::serve_on(listener, state, stop.clone()));
        ApiServer { addr, token, stop }
    }

    /// Uses `token` as the bearer of every request from now on.
    pub fn with_token(mut self, token: &str) -> ApiServer {
        self.token = Some(token.to_string());
        self
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.request("GET", path, Vec::new(), self.token.as_deref())
            .await
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> ApiResponse {
        self.request("POST", path, body, self.token.as_deref())
            .await
    }

    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.request("DELETE", path, Vec::new(), self.token.as_deref())
            .await
    }

    /// One request with an optional bearer token.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> ApiResponse {
        request(self.addr, method, path, body, token)
            .await
            .expect("the API answers")
    }
}

/// `GET path` on any HTTP server (a consumer's `/readyz`); `None` when it does not answer.
pub async fn get_at(addr: SocketAddr, path: &str) -> Option<ApiResponse> {
    request(addr, "GET", path, Vec::new(), None).await
}

/// One request on a fresh connection; `None` when the server cannot be reached.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Option<ApiResponse> {
    {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if !body.is_empty() {
            req = req.header("content-type", "text/csv");
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        let res = sender.send_request(req).await.ok()?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.ok()?.to_bytes().to_vec();
        Some(ApiResponse {
            status,
            headers,
            body,
        })
    }
}
