//! The HTTP listener of `tessera serve`: the join page and its files, the
//! settings the page reads, WHIP/WHEP, `/metrics` and `/healthz`.
//!
//! A thin edge: it knows nothing of rooms. The page speaks the signaling
//! protocol over the broker's websocket listener like any other client;
//! metrics come from the recorder the server's edges fill.

mod page;
pub mod whip;

use crate::server::hls::HlsRegistry;
use crate::server::metrics::Metrics;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use whip::{Kind, Whip};

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address is taken or not ours.
    #[error("cannot listen for HTTP on {0}: {1} (choose another with --http-addr, or --http-addr off)")]
    Bind(SocketAddr, std::io::Error),
}

/// What the page needs to join (served as `/config.json`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageConfig {
    /// Protocol version the page speaks.
    pub protocol: u32,
    /// Topic root.
    pub topic_root: String,
    /// The broker's websocket URL for browsers; `None` when only the port
    /// is known (the embedded broker): the page uses its own host name.
    pub mqtt_url: Option<String>,
    /// The embedded broker's websocket port.
    pub ws_port: Option<u16>,
    /// Whether the broker is known to want a user name and password.
    pub login: bool,
    /// Whether this server can record rooms.
    pub recording: bool,
    /// Layouts a room can switch to.
    pub layouts: Vec<String>,
    /// The layout new rooms start with.
    pub default_layout: String,
    /// STUN servers the page may use (static TURN credentials are never
    /// handed out).
    pub ice_servers: Vec<String>,
    /// TURN for pages, with credentials made per request (see [`PageTurn`]).
    #[serde(skip)]
    pub turn: Option<PageTurn>,
}

/// TURN servers that take time-limited credentials (the TURN REST scheme
/// coturn implements with `--use-auth-secret`): the user name is the
/// expiry time, the password its HMAC-SHA1 under the shared secret. Each
/// `/config.json` gets a fresh pair, valid for [`TURN_LIFETIME`].
#[derive(Clone)]
pub struct PageTurn {
    /// `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
}

impl std::fmt::Debug for PageTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageTurn").field("urls", &self.urls).field("secret", &"***").finish()
    }
}

/// How long a page's TURN credentials stay valid.
pub const TURN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

impl PageTurn {
    /// A user name and password valid until `now` + [`TURN_LIFETIME`].
    pub fn credentials(&self, now: std::time::SystemTime) -> (String, String) {
        use base64::Engine;
        let expiry = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + TURN_LIFETIME.as_secs();
        let user = format!("{expiry}:tessera");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, self.secret.as_bytes());
        let tag = ring::hmac::sign(&key, user.as_bytes());
        (user, base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
    }
}

/// What the handlers serve.
pub struct HttpState {
    /// The page's settings.
    pub page: PageConfig,
    /// The recorder `/metrics` renders.
    pub metrics: Option<Metrics>,
    /// WHIP/WHEP sessions.
    pub whip: Arc<Whip>,
    /// Live HLS of recorded rooms, when on.
    pub hls: Option<Arc<HlsRegistry>>,
}

/// A bound listener, not yet serving.
pub struct Listener {
    inner: tokio::net::TcpListener,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Binds `addr` now, so a taken port fails `serve` before anything else starts.
pub async fn bind(addr: SocketAddr) -> Result<Listener, HttpError> {
    let inner = tokio::net::TcpListener::bind(addr).await.map_err(|e| HttpError::Bind(addr, e))?;
    let addr = inner.local_addr().map_err(|e| HttpError::Bind(addr, e))?;
    Ok(Listener { inner, addr })
}

/// Serves until `shutdown` completes.
pub async fn serve(listener: Listener, state: HttpState, shutdown: impl Future<Output = ()> + Send + 'static) {
    let state = Arc::new(state);
    let endpoints = Router::new()
        .route("/whip/:room", post(whip_create))
        .route("/whep/:room", post(whep_create))
        .route("/whip/:room/:id", delete(whip_end).patch(no_trickle))
        .route("/whep/:room/:id", delete(whep_end).patch(no_trickle))
        .layer(DefaultBodyLimit::max(whip::MAX_OFFER));
    let app = Router::new()
        .route("/", get(page::index))
        .route("/room/:room", get(page::index))
        .route("/app.js", get(page::app_js))
        .route("/style.css", get(page::style_css))
        .route("/vendor/mqtt.min.js", get(page::mqtt_js))
        .route("/vendor/mqtt.LICENSE.md", get(page::mqtt_licence))
        .route("/config.json", get(config))
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/hls/:room/:file", get(hls_file))
        .merge(endpoints)
        .fallback(not_found)
        .with_state(state);
    tracing::info!(addr = %listener.addr, "HTTP listening: open http://{}/ to join a room", listener.addr);
    metrics::gauge!("tessera_http_up").set(1.0);
    if let Err(e) = axum::serve(listener.inner, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "HTTP listener stopped");
    }
    metrics::gauge!("tessera_http_up").set(0.0);
}

async fn config(State(s): State<Arc<HttpState>>) -> Response {
    let mut body = serde_json::to_value(&s.page).unwrap_or_default();
    // STUN as plain URLs, TURN with fresh time-limited credentials.
    let mut servers: Vec<serde_json::Value> =
        s.page.ice_servers.iter().map(|u| serde_json::json!({"urls": u})).collect();
    if let Some(turn) = &s.page.turn {
        let (username, credential) = turn.credentials(std::time::SystemTime::now());
        servers.push(serde_json::json!({"urls": turn.urls, "username": username, "credential": credential}));
    }
    body["iceServers"] = serde_json::Value::Array(servers);
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn scrape(State(s): State<Arc<HttpState>>) -> Response {
    let body = s.metrics.as_ref().map(Metrics::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

async fn whip_create(s: State<Arc<HttpState>>, room: Path<String>, headers: HeaderMap, body: String) -> Response {
    s.whip.create(Kind::Whip, &room, &headers, &body).await
}

async fn whep_create(s: State<Arc<HttpState>>, room: Path<String>, headers: HeaderMap, body: String) -> Response {
    s.whip.create(Kind::Whep, &room, &headers, &body).await
}

async fn whip_end(s: State<Arc<HttpState>>, p: Path<(String, String)>, headers: HeaderMap) -> Response {
    s.whip.delete(Kind::Whip, &p.0 .0, &p.0 .1, &headers).await
}

async fn whep_end(s: State<Arc<HttpState>>, p: Path<(String, String)>, headers: HeaderMap) -> Response {
    s.whip.delete(Kind::Whep, &p.0 .0, &p.0 .1, &headers).await
}

/// `/hls/ROOM/index.m3u8`, `init.mp4` and `seg-N.m4s` of a recorded room.
async fn hls_file(s: State<Arc<HttpState>>, p: Path<(String, String)>) -> Response {
    let (room, file) = (&p.0 .0, p.0 .1.as_str());
    let missing =
        || (StatusCode::NOT_FOUND, "no live stream here: HLS runs while a room records (--hls)\n").into_response();
    let Some(reg) = s.hls.as_ref() else { return missing() };
    let body: Option<(&'static str, Vec<u8>)> = match file {
        "index.m3u8" => reg.with(room, |st| st.playlist()).map(|p| ("application/vnd.apple.mpegurl", p.into_bytes())),
        "init.mp4" => reg.with(room, |st| st.init()).map(|d| ("video/mp4", d.to_vec())),
        f => f
            .strip_prefix("seg-")
            .and_then(|f| f.strip_suffix(".m4s"))
            .and_then(|n| n.parse::<u64>().ok())
            .and_then(|seq| reg.with(room, |st| st.segment(seq)))
            .map(|d| ("video/iso.segment", d.to_vec())),
    };
    match body {
        Some((kind, data)) => {
            ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], data).into_response()
        }
        None => missing(),
    }
}

/// Candidates travel in the offer and the answer (no trickle over HTTP).
async fn no_trickle() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "DELETE")],
        "trickle ICE is not supported: send the candidates in the offer\n",
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found: the join page is at /\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_turn_credentials_follow_the_turn_rest_scheme() {
        let turn = PageTurn { urls: vec!["turn:127.0.0.1:3478".into()], secret: "s3cret".into() };
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        // Worked out with Python's hmac (SHA-1) and base64 for this time and secret.
        assert_eq!(turn.credentials(now), ("1021600:tessera".into(), "XKK8UNm8bLIGzS2o+O0WkhkneRA=".into()));
        assert!(!format!("{turn:?}").contains("s3cret"), "the secret stays out of logs");
    }
}
