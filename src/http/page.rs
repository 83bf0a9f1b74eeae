//! The join page's files, built into the binary from `web/`.

use axum::extract::Path;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/style.css");
const MQTT_JS: &str = include_str!("../../web/vendor/mqtt.min.js");
const MQTT_LICENCE: &str = include_str!("../../web/vendor/mqtt.LICENSE.md");

/// Scripts and styles only from this server; media and the broker's
/// websocket may be elsewhere.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; \
                   img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn file(kind: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, &str); 4] = [
        (header::CONTENT_TYPE, kind),
        (header::CACHE_CONTROL, "no-cache"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    (headers, body).into_response()
}

/// `/` and `/room/NAME`: the page reads the room from its own address.
pub(super) async fn index(room: Option<Path<String>>) -> Response {
    if let Some(Path(room)) = room {
        if !crate::signaling::protocol::valid_id(&room) {
            let msg = format!("`{room}` is not a room name: use letters, digits, `-` and `_` (at most 64)\n");
            return (StatusCode::BAD_REQUEST, msg).into_response();
        }
    }
    file("text/html; charset=utf-8", INDEX)
}

pub(super) async fn app_js() -> Response {
    file("text/javascript; charset=utf-8", APP_JS)
}

pub(super) async fn style_css() -> Response {
    file("text/css; charset=utf-8", STYLE)
}

pub(super) async fn mqtt_js() -> Response {
    file("text/javascript; charset=utf-8", MQTT_JS)
}

pub(super) async fn mqtt_licence() -> Response {
    file("text/plain; charset=utf-8", MQTT_LICENCE)
}
