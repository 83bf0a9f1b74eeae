//! Signaling protocol v1: topics and JSON messages (see `docs/signaling.md`).
//!
//! Everything a client sends is parsed here into typed messages or a
//! [`ProtocolError`] with a code the client can act on. Nothing here panics
//! on input, whatever its size, encoding or shape.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest signaling payload accepted (bigger is refused unread).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Room name reserved for server presence.
pub const SERVERS: &str = "_servers";

/// Error codes sent back in `{"type":"error","code":...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The payload is not JSON (or not UTF-8).
    BadJson,
    /// JSON, but not a message we know, or a field has the wrong type.
    BadMessage,
    /// A room or peer id does not match `[A-Za-z0-9_-]{1,64}`.
    BadId,
    /// The payload is larger than the limit.
    TooLarge,
    /// The SDP could not be used.
    BadSdp,
    /// The offer has no H.264 video (packetization-mode 1) the server can use.
    NoH264,
    /// The offer has no Opus audio the server can use.
    NoOpus,
    /// The offer sends and receives nothing.
    NoMedia,
    /// The room has as many participants as allowed.
    RoomFull,
    /// The server has as many rooms as allowed.
    TooManyRooms,
    /// The peer sent too many messages too fast.
    RateLimited,
    /// The named layout does not exist.
    UnknownLayout,
    /// The named peer is not in the room.
    UnknownPeer,
    /// A candidate could not be applied.
    BadCandidate,
    /// The sender's video is larger than the server decodes.
    VideoTooLarge,
    /// This server does not record (no recordings folder configured).
    RecordingOff,
    /// The server failed; not the client's fault.
    Internal,
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::BadId => "bad-id",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::BadSdp => "bad-sdp",
            ErrorCode::NoH264 => "no-h264",
            ErrorCode::NoOpus => "no-opus",
            ErrorCode::NoMedia => "no-media",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::TooManyRooms => "too-many-rooms",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::UnknownLayout => "unknown-layout",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::BadCandidate => "bad-candidate",
            ErrorCode::VideoTooLarge => "video-too-large",
            ErrorCode::RecordingOff => "recording-off",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: the code and a human explanation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// Why, for a human.
    pub message: String,
}

impl ProtocolError {
    /// A refusal with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Whether `id` is a valid room or peer id: `[A-Za-z0-9_-]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_id(kind: &str, id: &str) -> Result<(), ProtocolError> {
    if valid_id(id) {
        Ok(())
    } else {
        let shown: String = id.chars().take(80).collect();
        Err(ProtocolError::new(ErrorCode::BadId, format!("{kind} id `{shown}` must match [A-Za-z0-9_-]{{1,64}}")))
    }
}

/// Topic names under one root.
#[derive(Clone, Debug)]
pub struct Topics {
    root: String,
}

/// What an incoming topic addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `{root}/{room}/in/{peer}`.
    Peer {
        /// Room id (validated).
        room: String,
        /// Peer id (validated).
        peer: String,
    },
    /// `{root}/{room}/control`.
    Control {
        /// Room id (validated).
        room: String,
    },
    /// `{root}/{room}/state`: a room's retained state (nodes of a cluster
    /// read each other's claims).
    State {
        /// Room id (validated).
        room: String,
    },
    /// `{root}/_servers/{node}`: a server's retained presence.
    Presence {
        /// Server id.
        node: String,
    },
    /// `{root}/_servers/{node}/beat`: a cluster node's heartbeat.
    Beat {
        /// Server id.
        node: String,
    },
}

impl Topics {
    /// Topics under `root` (e.g. `tessera`).
    pub fn new(root: impl Into<String>) -> Self {
        Self { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Where clients write: `{root}/+/in/+`.
    pub fn peer_filter(&self) -> String {
        format!("{}/+/in/+", self.root)
    }

    /// Room control: `{root}/+/control`.
    pub fn control_filter(&self) -> String {
        format!("{}/+/control", self.root)
    }

    /// `{root}/{room}/in/{peer}`.
    pub fn peer_in(&self, room: &str, peer: &str) -> String {
        format!("{}/{room}/in/{peer}", self.root)
    }

    /// `{root}/{room}/out/{peer}`.
    pub fn peer_out(&self, room: &str, peer: &str) -> String {
        format!("{}/{room}/out/{peer}", self.root)
    }

    /// `{root}/{room}/state` (retained).
    pub fn state(&self, room: &str) -> String {
        format!("{}/{room}/state", self.root)
    }

    /// `{root}/{room}/control`.
    pub fn control(&self, room: &str) -> String {
        format!("{}/{room}/control", self.root)
    }

    /// `{root}/{room}/control/errors`: refusals of control messages that
    /// named no `from` peer.
    pub fn control_errors(&self, room: &str) -> String {
        format!("{}/{room}/control/errors", self.root)
    }

    /// `{root}/_servers/{id}` (retained presence).
    pub fn server(&self, id: &str) -> String {
        format!("{}/{SERVERS}/{id}", self.root)
    }

    /// `{root}/_servers/{id}/beat`: a cluster node's heartbeat.
    pub fn beat(&self, id: &str) -> String {
        format!("{}/{SERVERS}/{id}/beat", self.root)
    }

    /// Every server's presence: `{root}/_servers/+`.
    pub fn servers_filter(&self) -> String {
        format!("{}/{SERVERS}/+", self.root)
    }

    /// Every cluster node's heartbeat: `{root}/_servers/+/beat`.
    pub fn beats_filter(&self) -> String {
        format!("{}/{SERVERS}/+/beat", self.root)
    }

    /// Every room's retained state: `{root}/+/state`.
    pub fn state_filter(&self) -> String {
        format!("{}/+/state", self.root)
    }

    /// Reads an incoming topic. `Err` carries the out topic to answer on
    /// (when there is one) and the refusal.
    pub fn parse(&self, topic: &str) -> Result<Inbound, (Option<String>, ProtocolError)> {
        let rest = topic
            .strip_prefix(self.root.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| (None, ProtocolError::new(ErrorCode::BadMessage, "topic outside the root")))?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [room, "in", peer] => {
                let answer = Some(self.peer_out(room, peer));
                if *room == SERVERS {
                    return Err((answer, ProtocolError::new(ErrorCode::BadId, "`_servers` is not a room")));
                }
                check_id("room", room).map_err(|e| (answer.clone(), e))?;
                check_id("peer", peer).map_err(|e| (answer, e))?;
                Ok(Inbound::Peer { room: (*room).to_owned(), peer: (*peer).to_owned() })
            }
            [SERVERS, node] if valid_id(node) => Ok(Inbound::Presence { node: (*node).to_owned() }),
            [SERVERS, node, "beat"] if valid_id(node) => Ok(Inbound::Beat { node: (*node).to_owned() }),
            [room, "state"] if *room != SERVERS && valid_id(room) => Ok(Inbound::State { room: (*room).to_owned() }),
            [room, "control"] => {
                let answer = Some(self.control_errors(room));
                if *room == SERVERS {
                    return Err((answer, ProtocolError::new(ErrorCode::BadId, "`_servers` is not a room")));
                }
                check_id("room", room).map_err(|e| (answer, e))?;
                Ok(Inbound::Control { room: (*room).to_owned() })
            }
            _ => Err((None, ProtocolError::new(ErrorCode::BadMessage, format!("unexpected topic {topic}")))),
        }
    }
}

/// A downstream size a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ViewRequest {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// An ICE candidate as browsers serialise it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The `candidate:...` line; `None` or empty means end of candidates.
    pub candidate: Option<String>,
    /// Media stream id.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// Media line index.
    #[serde(default)]
    pub sdp_m_line_index: Option<u16>,
}

impl Candidate {
    /// Whether this marks the end of candidates.
    pub fn is_end(&self) -> bool {
        self.candidate.as_deref().is_none_or(str::is_empty)
    }
}

/// Client to server, on `{root}/{room}/in/{peer}`.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    /// Join (or re-join) with an SDP offer.
    Offer {
        /// The offer.
        sdp: String,
        /// Display name.
        name: Option<String>,
        /// Downstream size wanted.
        view: Option<ViewRequest>,
        /// The client's name for this offer: every message of the session
        /// it starts carries it back as `offer`, so a client that offered
        /// again can tell the old session's messages from the new one's.
        id: Option<String>,
    },
    /// A trickled ICE candidate.
    Candidate(Candidate),
    /// Leaving.
    Leave {
        /// Sent as the client's MQTT last will (`"will": true`): a broker
        /// that restarts may publish it while the client is still in the
        /// call, so the server checks it against the client's media.
        will: bool,
    },
}

#[derive(Deserialize)]
// Unknown fields are ignored: clients may send more than v1 needs.
#[serde(tag = "type", rename_all = "lowercase")]
enum RawClient {
    Offer {
        sdp: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        view: Option<ViewRequest>,
        #[serde(default)]
        id: Option<String>,
    },
    Candidate {
        candidate: Option<String>,
        #[serde(default, rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(default, rename = "sdpMLineIndex")]
        sdp_m_line_index: Option<u16>,
    },
    Leave {
        #[serde(default)]
        will: bool,
    },
}

/// Longest display name kept (longer ones are cut).
pub const MAX_NAME: usize = 64;
/// Largest view a client may ask for.
pub const MAX_VIEW: u32 = 3840;

/// Parses a client message.
pub fn parse_client(payload: &[u8]) -> Result<ClientMessage, ProtocolError> {
    let value = parse_json(payload)?;
    let raw: RawClient =
        serde_json::from_value(value).map_err(|e| ProtocolError::new(ErrorCode::BadMessage, e.to_string()))?;
    Ok(match raw {
        RawClient::Offer { sdp, name, view, id } => {
            if let Some(id) = id.as_deref().filter(|id| !valid_id(id)) {
                return Err(ProtocolError::new(
                    ErrorCode::BadMessage,
                    format!("offer id `{}` must match [A-Za-z0-9_-]{{1,64}}", clean_name(id)),
                ));
            }
            if let Some(v) = view {
                if v.width < 16 || v.height < 16 || v.width > MAX_VIEW || v.height > MAX_VIEW {
                    return Err(ProtocolError::new(
                        ErrorCode::BadMessage,
                        format!("view {}x{} must be between 16x16 and {MAX_VIEW}x{MAX_VIEW}", v.width, v.height),
                    ));
                }
            }
            let name = name.map(|n| clean_name(&n)).filter(|n| !n.is_empty());
            ClientMessage::Offer {
                sdp,
                name,
                view: view.map(|v| ViewRequest { width: v.width & !1, height: v.height & !1 }),
                id,
            }
        }
        RawClient::Candidate { candidate, sdp_mid, sdp_m_line_index, .. } => {
            ClientMessage::Candidate(Candidate { candidate, sdp_mid, sdp_m_line_index })
        }
        RawClient::Leave { will } => ClientMessage::Leave { will },
    })
}

/// A display name without control characters, at most [`MAX_NAME`] characters.
pub fn clean_name(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect::<String>().trim().to_owned()
}

fn parse_json(payload: &[u8]) -> Result<serde_json::Value, ProtocolError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("payload of {} bytes is over the {MAX_PAYLOAD}-byte limit", payload.len()),
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| ProtocolError::new(ErrorCode::BadJson, e.to_string()))?;
    if !value.is_object() {
        return Err(ProtocolError::new(ErrorCode::BadMessage, "a message must be a JSON object with a `type`"));
    }
    Ok(value)
}

/// Room control, on `{root}/{room}/control`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlMessage {
    /// Who sent it, if they said (errors go to their out topic).
    pub from: Option<String>,
    /// What to do.
    pub command: Control,
}

/// A control command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Switch the room's layout.
    Layout(String),
    /// Mute or unmute a participant's audio for everyone.
    Mute {
        /// Who.
        peer: String,
        /// Muted or not.
        audio: bool,
    },
    /// Remove a participant.
    Kick {
        /// Who.
        peer: String,
    },
    /// Start (`true`) or stop recording the room's composite and mix.
    Record(bool),
}

/// What `{"type":"record"}` asks.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RecordAction {
    Start,
    Stop,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum RawControl {
    Layout {
        layout: String,
        #[serde(default)]
        from: Option<String>,
    },
    Mute {
        peer: String,
        audio: bool,
        #[serde(default)]
        from: Option<String>,
    },
    Kick {
        peer: String,
        #[serde(default)]
        from: Option<String>,
    },
    Record {
        action: RecordAction,
        #[serde(default)]
        from: Option<String>,
    },
}

/// Parses a control message.
pub fn parse_control(payload: &[u8]) -> Result<ControlMessage, ProtocolError> {
    let value = parse_json(payload)?;
    let raw: RawControl =
        serde_json::from_value(value).map_err(|e| ProtocolError::new(ErrorCode::BadMessage, e.to_string()))?;
    let (from, command) = match raw {
        RawControl::Layout { layout, from } => (from, Control::Layout(layout)),
        RawControl::Mute { peer, audio, from } => {
            check_id("peer", &peer)?;
            (from, Control::Mute { peer, audio })
        }
        RawControl::Kick { peer, from } => {
            check_id("peer", &peer)?;
            (from, Control::Kick { peer })
        }
        RawControl::Record { action, from } => (from, Control::Record(matches!(action, RecordAction::Start))),
    };
    let from = from.filter(|f| valid_id(f));
    Ok(ControlMessage { from, command })
}

/// Server to client, on `{root}/{room}/out/{peer}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage {
    /// The SDP answer.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// A trickled server candidate.
    Candidate(Candidate),
    /// A refusal.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
    /// The server ended the session.
    Bye {
        /// Why.
        reason: String,
    },
    /// What the sender should send: the largest size and frame rate at
    /// which any view shows it, and a bitrate that suits them.
    Send(SendHint),
    /// Offer again (a new peer connection, the same peer id): the room
    /// moved to another node of the cluster, which now waits for you.
    Rejoin {
        /// Why.
        reason: String,
    },
}

/// `{"type":"send","width":320,"height":180,"fps":30,"bitrate":200000}`:
/// scale your picture down until it just covers `width` x `height` (keep
/// its aspect ratio, never scale up), send at most `fps` frames a second
/// and at most `bitrate` bits a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendHint {
    /// Width of the largest box the sender is shown in.
    pub width: u32,
    /// Height of that box.
    pub height: u32,
    /// Highest frame rate of a view that shows it.
    pub fps: u32,
    /// Bits a second that suit that size and rate.
    pub bitrate: u32,
}

impl ServerMessage {
    /// The JSON payload.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl From<ProtocolError> for ServerMessage {
    fn from(e: ProtocolError) -> Self {
        ServerMessage::Error { code: e.code, message: e.message }
    }
}

/// Retained room state, on `{root}/{room}/state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomState {
    /// Room id.
    pub room: String,
    /// Current layout name.
    pub layout: String,
    /// Canvas of the room's main view.
    pub canvas: CanvasState,
    /// Everyone in the room, in join order.
    pub participants: Vec<ParticipantState>,
    /// The active speaker's peer id.
    pub speaker: Option<String>,
    /// The server is recording the room.
    #[serde(default)]
    pub recording: bool,
    /// The node that serves the room (cluster nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Its fencing epoch: only grows; a client ignores messages of a lower
    /// one (cluster nodes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// Canvas in the room state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanvasState {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// One participant in the room state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticipantState {
    /// Peer id.
    pub peer: String,
    /// Display name.
    pub name: String,
    /// Sending audio (and not muted).
    pub audio: bool,
    /// Sending video.
    pub video: bool,
    /// Talking now.
    pub speaking: bool,
    /// `participant`, `viewer` or `source`.
    pub role: String,
    /// What its downstream link carries and what it gets (members who
    /// receive video, once known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downstream: Option<DownstreamState>,
}

/// A member's downstream: the estimate of what its link carries and the
/// tier of its view it is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DownstreamState {
    /// Estimate, bits/s.
    pub estimate: u32,
    /// What the estimate comes from: `twcc`, `remb` or `loss`.
    pub source: String,
    /// Loss in the receiver's last report, percent.
    pub loss: f64,
    /// Round trip, milliseconds, if known.
    pub rtt_ms: Option<u32>,
    /// The tier's level (0: the view's full rate).
    pub tier: u8,
    /// The tier's video bitrate.
    pub bitrate: u32,
    /// The tier's picture width.
    pub width: u32,
    /// The tier's picture height.
    pub height: u32,
    /// The tier's frame rate.
    pub fps: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_pattern() {
        for ok in ["a", "Room_1", "peer-2", &"x".repeat(64)] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a+b", "é", &"x".repeat(65), "a.b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn topics_parse_and_answer_on_the_right_topic() {
        let t = Topics::new("tessera");
        assert_eq!(t.parse("tessera/r1/in/alice"), Ok(Inbound::Peer { room: "r1".into(), peer: "alice".into() }));
        assert_eq!(t.parse("tessera/r1/control"), Ok(Inbound::Control { room: "r1".into() }));
        let (answer, err) = t.parse("tessera/r1/in/al.ice").unwrap_err();
        assert_eq!(answer.as_deref(), Some("tessera/r1/out/al.ice"));
        assert_eq!(err.code, ErrorCode::BadId);
        let (answer, err) = t.parse("tessera/_servers/in/x").unwrap_err();
        assert!(answer.is_some());
        assert_eq!(err.code, ErrorCode::BadId);
        assert!(t.parse("other/r1/in/a").unwrap_err().0.is_none());
        assert!(t.parse("tessera/r1/in/a/b").is_err());
    }

    #[test]
    fn client_messages_parse() {
        let m =
            parse_client(br#"{"type":"offer","sdp":"v=0","name":" Alice\u0007 ","view":{"width":641,"height":360}}"#)
                .unwrap();
        assert_eq!(
            m,
            ClientMessage::Offer {
                sdp: "v=0".into(),
                name: Some("Alice".into()),
                view: Some(ViewRequest { width: 640, height: 360 }),
                id: None,
            }
        );
        let m = parse_client(br#"{"type":"offer","sdp":"v=0","id":"o-2"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Offer { id: Some(ref i), .. } if i == "o-2"));
        assert_eq!(
            parse_client(br#"{"type":"offer","sdp":"v=0","id":"a b"}"#).unwrap_err().code,
            ErrorCode::BadMessage
        );
        let m = parse_client(br#"{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}"#).unwrap();
        assert!(matches!(m, ClientMessage::Candidate(ref c) if !c.is_end()));
        for end in [r#"{"type":"candidate","candidate":null}"#, r#"{"type":"candidate","candidate":""}"#] {
            assert!(matches!(parse_client(end.as_bytes()).unwrap(), ClientMessage::Candidate(c) if c.is_end()));
        }
        assert_eq!(parse_client(br#"{"type":"leave"}"#).unwrap(), ClientMessage::Leave { will: false });
        assert_eq!(parse_client(br#"{"type":"leave","will":true}"#).unwrap(), ClientMessage::Leave { will: true });
    }

    #[test]
    fn malformed_client_messages_get_codes() {
        let cases: &[(&[u8], ErrorCode)] = &[
            (b"not json", ErrorCode::BadJson),
            (b"\xff\xfe", ErrorCode::BadJson),
            (b"[1,2]", ErrorCode::BadMessage),
            (b"{}", ErrorCode::BadMessage),
            (br#"{"type":"offer"}"#, ErrorCode::BadMessage),
            (br#"{"type":"offer","sdp":5}"#, ErrorCode::BadMessage),
            (br#"{"type":"dance"}"#, ErrorCode::BadMessage),
            (br#"{"type":"offer","sdp":"x","view":{"width":0,"height":10}}"#, ErrorCode::BadMessage),
            (br#"{"type":"offer","sdp":"x","view":{"width":-5,"height":10}}"#, ErrorCode::BadMessage),
            (br#"{"type":"candidate","candidate":7}"#, ErrorCode::BadMessage),
        ];
        for (payload, code) in cases {
            let e = parse_client(payload).unwrap_err();
            assert_eq!(e.code, *code, "{:?}: {e}", String::from_utf8_lossy(payload));
        }
        let huge = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(parse_client(&huge).unwrap_err().code, ErrorCode::TooLarge);
    }

    #[test]
    fn control_messages_parse() {
        assert_eq!(
            parse_control(br#"{"type":"layout","layout":"speaker"}"#).unwrap().command,
            Control::Layout("speaker".into())
        );
        let m = parse_control(br#"{"type":"mute","peer":"bob","audio":true,"from":"alice"}"#).unwrap();
        assert_eq!(m.command, Control::Mute { peer: "bob".into(), audio: true });
        assert_eq!(m.from.as_deref(), Some("alice"));
        assert_eq!(parse_control(br#"{"type":"kick","peer":"b/b"}"#).unwrap_err().code, ErrorCode::BadId);
        assert_eq!(parse_control(br#"{"type":"mute","peer":"bob"}"#).unwrap_err().code, ErrorCode::BadMessage);
        assert_eq!(parse_control(br#"{"type":"record","action":"start"}"#).unwrap().command, Control::Record(true));
        assert_eq!(parse_control(br#"{"type":"record","action":"stop"}"#).unwrap().command, Control::Record(false));
        for bad in
            [&br#"{"type":"record"}"#[..], br#"{"type":"record","action":"pause"}"#, br#"{"type":"record","action":1}"#]
        {
            assert_eq!(parse_control(bad).unwrap_err().code, ErrorCode::BadMessage);
        }
    }

    #[test]
    fn server_messages_serialise_as_documented() {
        let e = ServerMessage::from(ProtocolError::new(ErrorCode::RoomFull, "16 is the limit"));
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r#"{"type":"error","code":"room-full","message":"16 is the limit"}"#
        );
        let c = ServerMessage::Candidate(Candidate {
            candidate: Some("candidate:x".into()),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
        });
        assert_eq!(
            String::from_utf8(c.to_json()).unwrap(),
            r#"{"type":"candidate","candidate":"candidate:x","sdpMid":"0","sdpMLineIndex":0}"#
        );
        let b = ServerMessage::Bye { reason: "kicked".into() };
        assert_eq!(String::from_utf8(b.to_json()).unwrap(), r#"{"type":"bye","reason":"kicked"}"#);
    }
}
