//! WHIP ingest (RFC 9725) and WHEP playback: `POST /whip/ROOM` or
//! `POST /whep/ROOM` with an SDP offer joins the room as a source or a
//! viewer; `DELETE` on the returned `Location` leaves.
//!
//! Each HTTP session is one more signaling client: it opens its own MQTT
//! link, publishes the offer on its `in` topic and answers the HTTP
//! request with the server's answer (which carries the server's
//! candidates). The room never learns about HTTP. A room's Bearer token
//! comes from the configuration; without one the endpoints refuse.

use crate::secret::{equal, random_hex};
use crate::signaling::link::{Link, LinkEvent, LinkOptions};
use crate::signaling::protocol::{valid_id, Topics};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the server has to answer an offer.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);
/// Largest offer taken.
pub const MAX_OFFER: usize = 64 * 1024;

/// Which endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ingest: the offer sends.
    Whip,
    /// Playback: the offer only receives.
    Whep,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
        }
    }
}

/// What the endpoints need to reach the rooms.
#[derive(Clone, Debug)]
pub struct WhipConfig {
    /// The broker URL the server itself uses (with its own login).
    pub url: String,
    /// CA for `mqtts://`.
    pub ca_file: Option<PathBuf>,
    /// Topic root.
    pub topic_root: String,
    /// MQTT client ids of sessions start with this and a dot.
    pub client_prefix: String,
    /// Bearer token per room (`*`: any room).
    pub tokens: BTreeMap<String, String>,
}

struct Session {
    room: String,
    peer: String,
    kind: Kind,
    link: Link,
}

/// The endpoints' state: live sessions by id.
pub struct Whip {
    config: WhipConfig,
    topics: Topics,
    sessions: Mutex<HashMap<String, Session>>,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let mut text = message.into();
    text.push('\n');
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// Why a request is not let through: its status and reason.
struct Denied {
    status: StatusCode,
    message: String,
    /// Ask for a Bearer token (`WWW-Authenticate`).
    challenge: bool,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let mut r = refuse(self.status, self.message);
        if self.challenge {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl Whip {
    /// Endpoints over `config`.
    pub fn new(config: WhipConfig) -> Arc<Whip> {
        let topics = Topics::new(config.topic_root.clone());
        Arc::new(Whip { config, topics, sessions: Mutex::new(HashMap::new()) })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the room name and its Bearer token.
    fn authorise(&self, room: &str, headers: &HeaderMap) -> Result<(), Denied> {
        let deny = |status, message: &str, challenge| Err(Denied { status, message: message.to_owned(), challenge });
        if !valid_id(room) {
            return deny(StatusCode::BAD_REQUEST, &format!("`{room}` is not a room name"), false);
        }
        let Some(want) = self.config.tokens.get(room).or_else(|| self.config.tokens.get("*")) else {
            return deny(
                StatusCode::FORBIDDEN,
                "WHIP/WHEP is off for this room: give the server a token (--whip-token, or whip_tokens in its config)",
                false,
            );
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            None => deny(StatusCode::UNAUTHORIZED, "a Bearer token is required", true),
            Some(t) if equal(t.as_bytes(), want.as_bytes()) => Ok(()),
            Some(_) => deny(StatusCode::FORBIDDEN, "wrong token for this room", false),
        }
    }

    /// `POST /whip/ROOM` or `/whep/ROOM`: joins with the offer, answers.
    pub async fn create(self: &Arc<Self>, kind: Kind, room: &str, headers: &HeaderMap, offer: &str) -> Response {
        if let Err(denied) = self.authorise(room, headers) {
            return denied.into_response();
        }
        let sdp_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !sdp_type.trim().eq_ignore_ascii_case("application/sdp") {
            return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the offer must be sent as application/sdp");
        }
        if !offer.starts_with("v=0") {
            return refuse(StatusCode::BAD_REQUEST, "the body is not an SDP offer (it must start with v=0)");
        }
        let sends = offer.contains("a=sendonly") || offer.contains("a=sendrecv");
        match kind {
            Kind::Whip if !sends => return refuse(StatusCode::BAD_REQUEST, "a WHIP offer must send media"),
            Kind::Whep if offer.contains("a=sendonly") || offer.contains("a=sendrecv") => {
                return refuse(StatusCode::BAD_REQUEST, "a WHEP offer only receives (recvonly)")
            }
            _ => {}
        }
        let Some(id) = random_hex(8) else {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "no random source for a session id");
        };
        let peer = format!("{}-{id}", kind.path());
        let out = self.topics.peer_out(room, &peer);
        let input = self.topics.peer_in(room, &peer);
        let state_topic = self.topics.state(room);
        let options = LinkOptions {
            url: self.config.url.clone(),
            client_id: format!("{}.{peer}", self.config.client_prefix),
            ca_file: self.config.ca_file.clone(),
            will: Some((input.clone(), br#"{"type":"leave","will":true}"#.to_vec(), false)),
            subscriptions: vec![out.clone(), state_topic.clone()],
            announce: vec![],
            keep_alive: Duration::from_secs(10),
        };
        let (link, mut events) = match Link::connect(options) {
            Ok(l) => l,
            Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("signaling: {e}")),
        };
        if !link.ready(Duration::from_secs(5)).await {
            link.close().await;
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the broker is not reachable");
        }
        let msg = serde_json::json!({"type": "offer", "sdp": offer, "name": peer});
        if link.publish(&input, msg.to_string().into_bytes(), false).await.is_err() {
            link.close().await;
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the offer could not be sent");
        }
        let answer = tokio::time::timeout(ANSWER_LIMIT, async {
            while let Some(ev) = events.recv().await {
                let LinkEvent::Message { topic, payload } = ev else { continue };
                if topic != out {
                    continue;
                }
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) else { continue };
                match v["type"].as_str() {
                    Some("answer") => return Ok(v["sdp"].as_str().unwrap_or_default().to_owned()),
                    Some("error") => {
                        return Err((v["code"].as_str().unwrap_or("").to_owned(), v["message"].to_string()))
                    }
                    Some("bye") => return Err(("bye".into(), v["reason"].to_string())),
                    _ => {}
                }
            }
            Err(("internal".into(), "the signaling link closed".into()))
        })
        .await;
        let sdp = match answer {
            Ok(Ok(sdp)) => sdp,
            Ok(Err((code, message))) => {
                link.close().await;
                let status = match code.as_str() {
                    "room-full" | "too-many-rooms" => StatusCode::SERVICE_UNAVAILABLE,
                    "rate-limited" => StatusCode::TOO_MANY_REQUESTS,
                    "internal" | "bye" => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_REQUEST,
                };
                return refuse(status, format!("{code}: {}", message.trim_matches('"')));
            }
            Err(_) => {
                link.close().await;
                return refuse(StatusCode::GATEWAY_TIMEOUT, "the server did not answer in time");
            }
        };
        tracing::info!(room = %room, peer = %peer, kind = kind.path(), "WHIP/WHEP session started");
        let live = {
            let mut sessions = self.sessions();
            sessions
                .insert(id.clone(), Session { room: room.to_owned(), peer: peer.clone(), kind, link: link.clone() });
            sessions.len()
        };
        metrics::gauge!("tessera_http_sessions").set(live as f64);
        // The session ends when the server ends it (bye), or when the
        // member leaves the room state (its media timed out, the room closed).
        let me = self.clone();
        let session = id.clone();
        let member = peer.clone();
        tokio::spawn(async move {
            let mut listed = false;
            while let Some(ev) = events.recv().await {
                let LinkEvent::Message { topic, payload } = ev else { continue };
                let v = serde_json::from_slice::<serde_json::Value>(&payload).unwrap_or_default();
                if topic == state_topic {
                    let present = v["participants"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|p| p["peer"].as_str() == Some(member.as_str())));
                    if listed && !present {
                        break;
                    }
                    listed |= present;
                } else if v["type"] == "bye" {
                    break;
                }
            }
            let ended = me.sessions().remove(&session);
            metrics::gauge!("tessera_http_sessions").set(me.len() as f64);
            if let Some(s) = ended {
                s.link.close().await;
            }
        });
        let location = format!("/{}/{room}/{id}", kind.path());
        let mut r = (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/sdp")], sdp).into_response();
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    }

    /// `DELETE /whip/ROOM/ID`: leaves the room.
    pub async fn delete(&self, kind: Kind, room: &str, id: &str, headers: &HeaderMap) -> Response {
        if let Err(denied) = self.authorise(room, headers) {
            return denied.into_response();
        }
        let session = {
            let mut sessions = self.sessions();
            match sessions.get(id) {
                Some(s) if s.room == room && s.kind == kind => sessions.remove(id),
                _ => None,
            }
        };
        metrics::gauge!("tessera_http_sessions").set(self.len() as f64);
        let Some(s) = session else { return refuse(StatusCode::NOT_FOUND, "no such session") };
        let input = self.topics.peer_in(&s.room, &s.peer);
        let _ = s.link.publish(&input, br#"{"type":"leave"}"#.to_vec(), false).await;
        s.link.close().await;
        tracing::info!(room = %room, peer = %s.peer, "WHIP/WHEP session ended");
        StatusCode::OK.into_response()
    }

    /// Sessions live now.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
