//! The seed phone protocol: the "WebRTC phone over MQTT" app that
//! inspired tessera signals on one shared topic with
//! `{"command":"signal","clientid":ID,"type":"offer"|"answer"|"candidate","data":...}`
//! and ignores messages carrying its own clientid. With `--legacy-topic`
//! the server treats such a topic as a room, and answers each offerer on
//! the same topic, with the server's id as `clientid` and `"to": ID`.

use super::protocol::{valid_id, Candidate, ClientMessage, ErrorCode, ProtocolError, ServerMessage, MAX_PAYLOAD};
use serde::Deserialize;
use serde_json::json;

/// Where a server message to a peer goes, and in which dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbox {
    /// Protocol v1: the peer's own `out` topic.
    Native {
        /// `{root}/{room}/out/{peer}`.
        topic: String,
        /// The epoch of the room's owner, stamped on every message (cluster
        /// nodes only).
        epoch: Option<u64>,
        /// The id of the offer whose session this is, stamped as `offer`.
        offer: Option<String>,
    },
    /// The seed protocol: the shared topic, addressed with `to`.
    Legacy {
        /// The shared topic.
        topic: String,
        /// The server's clientid on it.
        server: String,
        /// The peer's clientid.
        peer: String,
    },
}

impl Outbox {
    /// The same outbox, stamping `epoch` on native messages.
    pub fn with_epoch(self, epoch: Option<u64>) -> Outbox {
        match self {
            Outbox::Native { topic, offer, .. } => Outbox::Native { topic, epoch, offer },
            legacy => legacy,
        }
    }

    /// The same outbox, stamping the offer id `offer` on native messages.
    pub fn with_offer(self, offer: Option<String>) -> Outbox {
        match self {
            Outbox::Native { topic, epoch, .. } => Outbox::Native { topic, epoch, offer },
            legacy => legacy,
        }
    }

    /// The topic and payload carrying `msg` to the peer.
    pub fn encode(&self, msg: &ServerMessage) -> (String, Vec<u8>) {
        match self {
            Outbox::Native { topic, epoch: None, offer: None } => (topic.clone(), msg.to_json()),
            Outbox::Native { topic, epoch, offer } => {
                let mut value = serde_json::to_value(msg).unwrap_or_default();
                if let Some(fields) = value.as_object_mut() {
                    if let Some(epoch) = epoch {
                        fields.insert("epoch".into(), json!(epoch));
                    }
                    if let Some(offer) = offer {
                        fields.insert("offer".into(), json!(offer));
                    }
                }
                (topic.clone(), serde_json::to_vec(&value).unwrap_or_default())
            }
            Outbox::Legacy { topic, server, peer } => {
                let (kind, data) = match msg {
                    ServerMessage::Answer { sdp } => ("answer", json!(sdp)),
                    ServerMessage::Candidate(c) => (
                        "candidate",
                        json!({"candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_m_line_index}),
                    ),
                    ServerMessage::Error { code, message } => ("error", json!({"code": code, "message": message})),
                    ServerMessage::Bye { reason } => ("bye", json!({"reason": reason})),
                    // The seed app cannot rejoin by itself: it is told the call ended.
                    ServerMessage::Rejoin { reason } => ("bye", json!({"reason": reason})),
                    // The seed app knows no such message; it gets the full stream.
                    ServerMessage::Send(hint) => ("send", json!(hint)),
                };
                let payload = json!({"command": "signal", "clientid": server, "to": peer, "type": kind, "data": data});
                (topic.clone(), serde_json::to_vec(&payload).unwrap_or_default())
            }
        }
    }
}

/// A room id for a legacy topic: the topic with anything outside
/// `[A-Za-z0-9_-]` turned into `-` (so `phones/lobby` is room `phones-lobby`).
pub fn room_for(topic: &str) -> String {
    let room: String = topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(64)
        .collect();
    if room.is_empty() {
        "legacy".into()
    } else {
        room
    }
}

#[derive(Deserialize)]
struct Raw {
    command: String,
    clientid: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    to: Option<String>,
}

/// What a message on the legacy topic means to the server.
#[derive(Debug, PartialEq)]
pub enum Legacy {
    /// Not for the server (its own echo, another command, addressed to
    /// someone else): ignore silently.
    Ignore,
    /// A signaling message from `peer`.
    Message {
        /// The sender's clientid.
        peer: String,
        /// What it says.
        msg: ClientMessage,
    },
    /// Refused; tell `peer` (if it said who it is).
    Refused {
        /// The sender, if readable.
        peer: Option<String>,
        /// Why.
        error: ProtocolError,
    },
}

/// Reads a message from the legacy topic.
pub fn parse(payload: &[u8], server: &str) -> Legacy {
    if payload.len() > MAX_PAYLOAD {
        return Legacy::Refused {
            peer: None,
            error: ProtocolError::new(ErrorCode::TooLarge, format!("payload over {MAX_PAYLOAD} bytes")),
        };
    }
    let raw: Raw = match serde_json::from_slice(payload) {
        Ok(r) => r,
        // Other traffic on a shared topic is not ours to judge.
        Err(_) => return Legacy::Ignore,
    };
    if raw.command != "signal" || raw.clientid == server || raw.to.as_deref().is_some_and(|to| to != server) {
        return Legacy::Ignore;
    }
    let peer = raw.clientid;
    if !valid_id(&peer) {
        return Legacy::Refused {
            peer: None,
            error: ProtocolError::new(ErrorCode::BadId, "clientid must match [A-Za-z0-9_-]{1,64}"),
        };
    }
    let bad =
        |m: &str| Legacy::Refused { peer: Some(peer.clone()), error: ProtocolError::new(ErrorCode::BadMessage, m) };
    let msg = match raw.kind.as_str() {
        "offer" => match raw.data {
            serde_json::Value::String(sdp) => ClientMessage::Offer { sdp, name: None, view: None, id: None },
            serde_json::Value::Object(ref o) => match o.get("sdp").and_then(|s| s.as_str()) {
                Some(sdp) => ClientMessage::Offer { sdp: sdp.to_owned(), name: None, view: None, id: None },
                None => return bad("offer data must be the SDP string"),
            },
            _ => return bad("offer data must be the SDP string"),
        },
        "candidate" => match serde_json::from_value::<Candidate>(raw.data) {
            Ok(c) => ClientMessage::Candidate(c),
            Err(_) => return bad("candidate data must be {candidate, sdpMid, sdpMLineIndex}"),
        },
        "leave" | "bye" | "hangup" => ClientMessage::Leave { will: false },
        // An answer is for an offerer; the server only answers.
        _ => return Legacy::Ignore,
    };
    Legacy::Message { peer, msg }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seed_format_and_ignores_what_is_not_for_us() {
        let offer = br#"{"command":"signal","clientid":"phone1","type":"offer","data":"v=0\r\n"}"#;
        assert_eq!(
            parse(offer, "srv"),
            Legacy::Message {
                peer: "phone1".into(),
                msg: ClientMessage::Offer { sdp: "v=0\r\n".into(), name: None, view: None, id: None }
            }
        );
        let cand = br#"{"command":"signal","clientid":"phone1","type":"candidate","data":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}"#;
        assert!(matches!(parse(cand, "srv"), Legacy::Message { msg: ClientMessage::Candidate(_), .. }));
        for ignored in [
            &br#"{"command":"signal","clientid":"srv","type":"answer","data":"x"}"#[..],
            br#"{"command":"chat","clientid":"a","type":"offer","data":"x"}"#,
            br#"{"command":"signal","clientid":"a","to":"b","type":"offer","data":"x"}"#,
            br#"{"command":"signal","clientid":"a","type":"answer","data":"x"}"#,
            b"hello",
        ] {
            assert_eq!(parse(ignored, "srv"), Legacy::Ignore, "{}", String::from_utf8_lossy(ignored));
        }
        assert!(matches!(
            parse(br#"{"command":"signal","clientid":"a b","type":"offer","data":"x"}"#, "srv"),
            Legacy::Refused { peer: None, .. }
        ));
        assert!(matches!(
            parse(br#"{"command":"signal","clientid":"a","type":"offer","data":5}"#, "srv"),
            Legacy::Refused { peer: Some(_), .. }
        ));
    }

    #[test]
    fn answers_go_back_on_the_shared_topic_addressed_to_the_offerer() {
        let out = Outbox::Legacy { topic: "phones".into(), server: "srv".into(), peer: "phone1".into() };
        let (topic, payload) = out.encode(&ServerMessage::Answer { sdp: "v=0".into() });
        assert_eq!(topic, "phones");
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v, json!({"command": "signal", "clientid": "srv", "to": "phone1", "type": "answer", "data": "v=0"}));
        assert_eq!(room_for("phones/lobby"), "phones-lobby");
    }
}
