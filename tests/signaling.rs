//! Signaling that goes wrong: malformed, oversized, refused. Each gets an
//! `error` with a code on the sender's topic, and the room keeps serving.
//! Also a clean shutdown: byes, cleared state, presence offline.

mod common;

use common::*;
use std::time::Duration;
use tessera::signaling::link::{Link, LinkEvent};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(30);

/// A raw MQTT client subscribed to `filters`.
async fn raw(server: &Server, id: &str, filters: &[&str]) -> (Link, mpsc::Receiver<LinkEvent>) {
    raw_link(&server.url, id, filters).await
}

/// The next message on `topic`, as JSON.
async fn next_on(events: &mut mpsc::Receiver<LinkEvent>, topic: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(LinkEvent::Message { topic: t, payload })) if t == topic => {
                return serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("{t}: not JSON ({e})"));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("nothing on {topic} within {LIMIT:?}"),
        }
    }
}

const VP8_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=fingerprint:sha-256 AA:BB\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\na=rtcp-mux\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signaling_gets_errors_and_the_room_keeps_serving() {
    let server = Server::start(&[]);
    let member = join(server.client("r5", "member", 0)).await;
    let (link, mut events) = raw(&server, "mal", &["tessera/r5/out/#"]).await;
    let out = "tessera/r5/out/mal";
    let big = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "x".repeat(1024 * 1024));
    let offer_vp8 = serde_json::json!({"type": "offer", "sdp": VP8_OFFER}).to_string();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("tessera/r5/in/mal", b"not json".to_vec(), out, "bad-json"),
        ("tessera/r5/in/mal", br#"{"type":"offer","sdp":5}"#.to_vec(), out, "bad-message"),
        ("tessera/r5/in/mal", br#"{"type":"wave"}"#.to_vec(), out, "bad-message"),
        ("tessera/r5/in/mal", br#"[1,2,3]"#.to_vec(), out, "bad-message"),
        ("tessera/r5/in/bad.id", br#"{"type":"leave"}"#.to_vec(), "tessera/r5/out/bad.id", "bad-id"),
        ("tessera/r5/in/mal", offer_vp8.into_bytes(), out, "no-h264"),
        ("tessera/r5/in/mal", br#"{"type":"offer","sdp":"hello"}"#.to_vec(), out, "bad-sdp"),
        ("tessera/r5/in/mal", big.into_bytes(), out, "too-large"),
        ("tessera/r5/control", br#"{"type":"layout","layout":"nope","from":"mal"}"#.to_vec(), out, "unknown-layout"),
        ("tessera/r5/control", br#"{"type":"kick","peer":"ghost","from":"mal"}"#.to_vec(), out, "unknown-peer"),
    ];
    for (topic, payload, answer, code) in cases {
        let frames_before = member.stats().frames;
        link.publish(topic, payload, false).await.unwrap();
        let reply = next_on(&mut events, answer).await;
        assert_eq!(reply["type"], "error", "{code}: {reply}");
        assert_eq!(reply["code"], code, "{reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()), "{reply}");
        // The room goes on.
        eventually(LIMIT, "member keeps receiving", || {
            (member.stats().frames > frames_before + 3).then_some(()).ok_or("stalled".to_string())
        })
        .await;
    }
    // The refused peer never became a member; a newcomer still joins.
    assert!(member.room_state().unwrap().participants.iter().all(|p| p.peer != "mal"));
    let late = join(server.client("r5", "late", 1)).await;
    eventually(LIMIT, "newcomer in the state", || {
        let s = member.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or(format!("{} participants", s.participants.len()))
    })
    .await;
    link.close().await;
    late.leave().await;
    member.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_with_room_full() {
    let server = Server::start(&["--max-participants", "2"]);
    let a = join(server.client("r6", "a", 0)).await;
    let b = join(server.client("r6", "b", 1)).await;
    let c = tessera::client::Client::join(server.client("r6", "c", 2)).await.unwrap();
    eventually(LIMIT, "c refused", || {
        let n = c.notices();
        n.iter()
            .any(|n| matches!(n, tessera::client::Notice::Error { code, .. } if code == "room-full"))
            .then_some(())
            .ok_or(format!("{n:?}"))
    })
    .await;
    assert_eq!(a.room_state().unwrap().participants.len(), 2);
    for x in [a, b, c] {
        x.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_says_bye_clears_state_and_goes_offline() {
    let server = Server::start(&["--server-id", "srv1"]);
    let a = join(server.client("r7", "a", 0)).await;
    let (_probe, mut events) = raw(&server, "watcher", &["tessera/_servers/+", "tessera/r7/state"]).await;
    let presence = next_on(&mut events, "tessera/_servers/srv1").await;
    assert_eq!(presence["online"], true);
    eventually(LIMIT, "a in the state", || a.room_state().map(|_| ()).ok_or("no state".into())).await;
    let status = server.stop();
    assert!(status.success(), "exit status {status:?}");
    // Before its broker went down with it, the server cleared the room's
    // state and announced itself offline.
    let (mut cleared, mut offline) = (false, false);
    while !(cleared && offline) {
        match tokio::time::timeout(LIMIT, events.recv()).await {
            Ok(Some(LinkEvent::Message { topic, payload })) => {
                cleared |= topic == "tessera/r7/state" && payload.is_empty();
                offline |= topic == "tessera/_servers/srv1" && payload.as_ref() == br#"{"online":false}"#;
            }
            Ok(Some(_)) => {}
            _ => panic!("cleared state: {cleared}, offline presence: {offline}"),
        }
    }
    eventually(LIMIT, "a got a bye", || {
        a.notices()
            .iter()
            .any(|n| matches!(n, tessera::client::Notice::Bye { reason } if reason == "server shutting down"))
            .then_some(())
            .ok_or(format!("{:?}", a.notices()))
    })
    .await;
}
