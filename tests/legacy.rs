//! The seed phone protocol (`--legacy-topic`): a client that speaks only
//! `{"command":"signal","clientid":...}` on one shared topic joins, is
//! answered on that topic addressed to it, sends its camera and receives
//! the composite, in the same room as a protocol-v1 participant.

mod common;

use common::*;
use rtc::media::Sample;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::client::source::{self, AudioSource, SendSettings, VideoSource};
use tessera::media::pattern::palette;
use tessera::peer::{self, PeerEvent, PeerOptions};
use tessera::pipeline::decode::VideoDecoder;
use tessera::pipeline::slot::FrameSlot;
use tessera::signaling::link::LinkEvent;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{RTCIceCandidateInit, RTCPeerConnectionState, RTCSessionDescription};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

const LIMIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "phones/lobby";

/// What the phone saw.
struct Phone {
    slot: Arc<FrameSlot>,
    answers: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

/// A phone app speaking only the seed protocol.
async fn phone(url: &str, id: &str, color: usize) -> Phone {
    let (link, mut events) = raw_link(url, id, &[TOPIC]).await;
    let (pev_tx, mut pev_rx) = tokio::sync::mpsc::unbounded_channel();
    let pc = peer::build_peer(&PeerOptions::default(), pev_tx, None, None).await.unwrap();
    let ssrc = peer::random_ssrc();
    let track = peer::local_track(RtpCodecKind::Video, &format!("{id}-cam"), ssrc).unwrap();
    let init = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Sendrecv, ..Default::default() };
    let transceiver = pc.add_transceiver_from_track(track.clone() as Arc<dyn TrackLocal>, Some(init)).await.unwrap();
    let sender = transceiver.sender().await.unwrap().unwrap();
    let recv = RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
    pc.add_transceiver_from_kind(RtpCodecKind::Audio, Some(recv)).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer.clone()).await.unwrap();
    let me = id.to_owned();
    let signal = move |kind: &str, data: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({"command": "signal", "clientid": me, "type": kind, "data": data}))
            .unwrap()
    };
    link.publish(TOPIC, signal("offer", offer.sdp.clone().into()), false).await.unwrap();

    let slot = FrameSlot::new();
    let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (slot2, answers2, id) = (slot.clone(), answers.clone(), id.to_owned());
    tokio::spawn(async move {
        let mut media = None;
        let mut remote = false;
        let mut queued: Vec<RTCIceCandidateInit> = Vec::new();
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(LinkEvent::Message { payload, .. }) = ev else { if ev.is_none() { break } else { continue } };
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&payload) else { continue };
                    // The app ignores its own messages and those for others.
                    if v["clientid"] == id.as_str() || v["to"] != id.as_str() {
                        continue;
                    }
                    answers2.lock().unwrap().push(v.clone());
                    match v["type"].as_str() {
                        Some("answer") => {
                            let answer = RTCSessionDescription::answer(v["data"].as_str().unwrap().to_owned()).unwrap();
                            pc.set_remote_description(answer).await.unwrap();
                            remote = true;
                            for c in queued.drain(..) {
                                let _ = pc.add_ice_candidate(c).await;
                            }
                        }
                        Some("candidate") => {
                            let c: RTCIceCandidateInit = serde_json::from_value(v["data"].clone()).unwrap();
                            if remote { let _ = pc.add_ice_candidate(c).await; } else { queued.push(c); }
                        }
                        _ => {}
                    }
                }
                ev = pev_rx.recv() => match ev {
                    Some(PeerEvent::Candidate(c)) => {
                        let data = serde_json::json!({"candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_m_line_index});
                        let _ = link.publish(TOPIC, signal("candidate", data), false).await;
                    }
                    Some(PeerEvent::State(RTCPeerConnectionState::Connected)) if media.is_none() => {
                        // Camera on: a pattern in this phone's colour.
                        let pt = sender.get_parameters().await.unwrap().rtp_parameters.codecs[0].payload_type;
                        let (tx, mut rx) = tokio::sync::mpsc::channel(32);
                        let settings = SendSettings { video: VideoSource::Pattern(palette(color)), audio: AudioSource::None, width: 320, height: 240, fps: 15, bitrate: 300_000, name: id.clone() };
                        let thread = source::spawn(&settings, &format!("phone-{id}")).unwrap();
                        thread.attach(&id, Some(tx), None);
                        media = Some(thread);
                        let track = track.clone();
                        tokio::spawn(async move {
                            while let Some(e) = rx.recv().await {
                                let s = Sample { data: e.data, duration: e.duration, ..Sample::new(Instant::now()) };
                                if track.sample_writer(ssrc, pt).write_sample(&s).await.is_err() { break; }
                            }
                        });
                    }
                    Some(PeerEvent::Track(t)) if t.kind().await == RtpCodecKind::Video => {
                        let decoder = VideoDecoder::spawn(format!("phone-dec-{id}"), slot2.clone()).unwrap();
                        tokio::spawn(async move { peer::receive::read_h264(t, decoder, |_| {}).await; });
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    });
    Phone { slot, answers }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_protocol_phone_joins_and_receives_the_composite() {
    let server = Server::start(&["--legacy-topic", TOPIC, "--server-id", "mcu"]);
    let room = tessera::signaling::legacy::room_for(TOPIC);
    let native = join(server.client(&room, "desk", 0)).await;
    let phone = phone(&server.url, "phone1", 4).await;

    // The answer came on the shared topic, from the server, addressed to the phone.
    eventually(LIMIT, "an answer", || {
        let a = phone.answers.lock().unwrap();
        a.iter()
            .find(|v| v["type"] == "answer")
            .map(|v| {
                assert_eq!(v["command"], "signal");
                assert_eq!(v["clientid"], "mcu");
                assert_eq!(v["to"], "phone1");
            })
            .ok_or("none yet".to_string())
    })
    .await;
    // The phone decodes the composite, 640x360.
    eventually(LIMIT, "the phone decodes the composite", || {
        let l = phone.slot.latest().ok_or("no picture")?;
        if (l.frame.width(), l.frame.height()) != (640, 360) {
            return Err(format!("{}x{}", l.frame.width(), l.frame.height()));
        }
        (phone.slot.decoded() > 15).then_some(()).ok_or(format!("{} pictures", phone.slot.decoded()))
    })
    .await;
    // Both are in one room: the native participant sees the phone's camera.
    let grid = layout(&server, "grid");
    let colors = vec![("desk".to_string(), palette(0)), ("phone1".to_string(), palette(4))];
    eventually(LIMIT, "desk sees the phone", || {
        let s = native.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&native, &s, &grid, &colors)
    })
    .await;
    // And the phone's composite shows the desk's colour somewhere.
    let l = phone.slot.latest().unwrap();
    let f = l.frame.as_frame();
    let found = (0..f.height()).step_by(8).any(|y| {
        (0..f.width()).step_by(8).any(|x| tessera::media::convert::mean_rgb(&f, x, y, 2, 2).distance(palette(0)) < 30.0)
    });
    assert!(found, "the desk's colour is not in the phone's composite");
    native.leave().await;
}
