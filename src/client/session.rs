//! One peer connection of a client, from its offer to its end. A client
//! runs one after another under the same peer id: when the room moves to
//! another node of a cluster the server says `rejoin` (or the old node
//! says `bye` with reason `moved`), and the client offers again with a new
//! connection, keeping its counters, its sources and its place.

use super::receive::{self, CompositeSink, VideoRecorder};
use super::{map_candidate, map_sdp, start_sources, writer, ClientError, ClientOptions, ClientRole, Notice, Outgoing};
use super::{Shared, Writers};
use crate::client::source::{AudioSource, MediaThread, VideoSource};
use crate::peer::{self, PeerEvent};
use crate::pipeline::decode::VideoDecoder;
use crate::signaling::link::{Link, LinkEvent};
use crate::signaling::protocol::{Candidate, SendHint};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, RTCSessionDescription};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// The client is done (asked to stop, `bye`, connection failed).
    Stop,
    /// Offer again with a new connection.
    Rejoin,
}

/// An offer a cluster server has not answered this long is made again
/// (its node may have died before it could answer).
const ANSWER_WAIT: Duration = Duration::from_secs(6);

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Answer { sdp: String },
    Candidate(Candidate),
    Error { code: String, message: String },
    Bye { reason: String },
    Send(SendHint),
    Rejoin { reason: String },
}

/// The stamps a cluster server puts on its messages.
#[derive(Deserialize)]
struct Stamps {
    #[serde(default)]
    epoch: Option<u64>,
    #[serde(default)]
    offer: Option<String>,
}

/// The room owners' epochs a client has seen: messages of a lower epoch
/// than the highest are stale, and a rejoin for an epoch the client
/// already joined is a repeat.
#[derive(Debug, Default)]
pub(super) struct Epochs {
    highest: u64,
    joined: u64,
}

impl Epochs {
    /// Whether a message stamped `epoch` comes from an owner since replaced.
    pub(super) fn stale(&self, epoch: Option<u64>) -> bool {
        epoch.is_some_and(|e| e < self.highest)
    }

    /// Whether any owner stamped epochs (the server is a cluster node).
    pub(super) fn clustered(&self) -> bool {
        self.highest > 0
    }

    /// An answer stamped `epoch`.
    pub(super) fn answered(&mut self, epoch: Option<u64>) {
        if let Some(e) = epoch {
            self.highest = self.highest.max(e);
            self.joined = self.joined.max(e);
        }
    }

    /// The room state says `epoch`; `answered`: this session has an answer.
    /// True when the room has a newer owner than this session's.
    pub(super) fn state(&mut self, epoch: Option<u64>, answered: bool) -> bool {
        let Some(e) = epoch else { return false };
        self.highest = self.highest.max(e);
        if answered && e > self.joined {
            self.joined = e;
            return true;
        }
        false
    }

    /// A `rejoin` stamped `epoch`: true when it asks for a new session.
    pub(super) fn rejoin(&mut self, epoch: Option<u64>) -> bool {
        match epoch {
            None => true,
            Some(e) if e > self.joined => {
                self.highest = self.highest.max(e);
                self.joined = e;
                true
            }
            Some(_) => false,
        }
    }
}

/// What the sessions of one client share beyond [`Shared`].
pub(super) struct Context {
    pub options: ClientOptions,
    pub link: Link,
    pub in_topic: String,
    pub shared: Arc<Shared>,
    pub media: Arc<Mutex<Option<Arc<MediaThread>>>>,
    pub audio_rx: Option<receive::AudioTx>,
    pub recorder: Option<VideoRecorder>,
    pub epochs: Epochs,
    /// Offers made so far (names them).
    pub offers: u64,
    /// Names this client's offers apart from another process's.
    pub nonce: u32,
}

/// A peer connection offered to the server.
pub(super) struct Session {
    pc: Arc<dyn PeerConnection>,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    video_out: Outgoing,
    audio_out: Outgoing,
    /// The id the server stamps on this session's messages.
    offer_id: String,
    offered: Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The keyframes that follow the first.
    kicks: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    /// Builds a peer connection for the client's role and publishes its offer.
    pub(super) async fn open(cx: &mut Context) -> Result<Session, ClientError> {
        let o = &cx.options;
        let (pev_tx, events) = mpsc::unbounded_channel();
        let pc = peer::build_peer(&o.peer_options, pev_tx, None, None).await?;
        // Tracks for the role: send what we have, receive what we may.
        let sends = o.role != ClientRole::Viewer;
        let receives = o.role != ClientRole::Source;
        let has_video = sends && !matches!(o.send.video, VideoSource::None);
        let has_audio = sends && !matches!(o.send.audio, AudioSource::None);
        let mut video_out = None;
        let mut audio_out = None;
        for (kind, has) in [(RtpCodecKind::Video, has_video), (RtpCodecKind::Audio, has_audio)] {
            if has {
                let ssrc = peer::random_ssrc();
                let track = peer::local_track(kind, &format!("{}-{kind}", o.peer), ssrc)?;
                let direction =
                    if receives { RTCRtpTransceiverDirection::Sendrecv } else { RTCRtpTransceiverDirection::Sendonly };
                let transceiver = pc
                    .add_transceiver_from_track(
                        track.clone() as Arc<dyn TrackLocal>,
                        Some(RTCRtpTransceiverInit { direction, ..Default::default() }),
                    )
                    .await?;
                let sender =
                    transceiver.sender().await?.ok_or(ClientError::Internal("transceiver without a sender"))?;
                match kind {
                    RtpCodecKind::Video => video_out = Some((track, ssrc, sender)),
                    _ => audio_out = Some((track, ssrc, sender)),
                }
            } else if receives {
                let init =
                    RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
                pc.add_transceiver_from_kind(kind, Some(init)).await?;
            }
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer.clone()).await?;
        cx.offers += 1;
        let offer_id = format!("{:08x}-{}", cx.nonce, cx.offers);
        let mut msg = serde_json::json!({"type": "offer", "sdp": offer.sdp, "id": offer_id});
        if let Some(name) = &o.name {
            msg["name"] = name.clone().into();
        }
        if let Some((w, h)) = o.view {
            msg["view"] = serde_json::json!({"width": w, "height": h});
        }
        let offered = Instant::now();
        cx.link.publish(&cx.in_topic, serde_json::to_vec(&msg).unwrap_or_default(), false).await?;
        Ok(Session { pc, events, video_out, audio_out, offer_id, offered, tasks: Vec::new(), kicks: None })
    }

    /// Runs until the client stops or the server asks for a new session.
    pub(super) async fn run(
        &mut self,
        cx: &mut Context,
        link_events: &mut mpsc::Receiver<LinkEvent>,
        stop: &tokio::sync::Notify,
    ) -> End {
        let mut remote_set = false;
        let mut connected = false;
        let mut refused = false;
        let mut pending_start: Option<Writers> = None;
        let mut queued: Vec<Candidate> = Vec::new();
        let answer_check = tokio::time::sleep(ANSWER_WAIT);
        tokio::pin!(answer_check);
        loop {
            tokio::select! {
                _ = stop.notified() => return End::Stop,
                _ = &mut answer_check, if !remote_set => {
                    // Only a cluster's offers can fall between nodes.
                    if cx.epochs.clustered() && !refused {
                        tracing::info!("no answer; offering again");
                        return End::Rejoin;
                    }
                }
                ev = link_events.recv() => {
                    let Some(ev) = ev else { return End::Stop };
                    let LinkEvent::Message { topic, payload } = ev else { continue };
                    if topic.ends_with("/state") {
                        let epoch = cx.shared.set_state(&payload);
                        if cx.epochs.state(epoch, remote_set) {
                            tracing::info!(?epoch, "the room has a new owner; rejoining");
                            return End::Rejoin;
                        }
                        continue;
                    }
                    let stamps = serde_json::from_slice::<Stamps>(&payload).unwrap_or(Stamps { epoch: None, offer: None });
                    if cx.epochs.stale(stamps.epoch) || stamps.offer.as_ref().is_some_and(|id| *id != self.offer_id) {
                        tracing::debug!(epoch = ?stamps.epoch, offer = ?stamps.offer, "message of an older session ignored");
                        continue;
                    }
                    match serde_json::from_slice::<Incoming>(&payload) {
                        Ok(Incoming::Answer { sdp }) => {
                            if remote_set {
                                continue;
                            }
                            cx.shared.answered_at(self.offered);
                            cx.epochs.answered(stamps.epoch);
                            let sdp = match &cx.options.relay { Some(map) => map_sdp(&sdp, map), None => sdp };
                            let applied = match RTCSessionDescription::answer(sdp) {
                                Ok(a) => self.pc.set_remote_description(a).await,
                                Err(e) => Err(e),
                            };
                            if let Err(e) = applied {
                                tracing::warn!(error = %e, "answer refused");
                                cx.shared.notice(Notice::Error { code: "bad-answer".into(), message: e.to_string() });
                                continue;
                            }
                            remote_set = true;
                            for c in queued.drain(..) {
                                let _ = self.pc.add_ice_candidate(peer::to_init(&c)).await;
                            }
                            // Writers now that payload types are known; the
                            // sources start once connected (packets before
                            // DTLS is up are dropped, the first keyframe too).
                            let video = match &self.video_out { Some((t, s, snd)) => writer(t.clone(), *s, snd).await, None => None };
                            let audio = match &self.audio_out { Some((t, s, snd)) => writer(t.clone(), *s, snd).await, None => None };
                            pending_start = Some((video.as_ref().map(|v| v.0.clone()), audio.as_ref().map(|a| a.0.clone())));
                            self.tasks.extend(video.map(|v| v.1));
                            self.tasks.extend(audio.map(|a| a.1));
                            if connected {
                                self.start(cx, pending_start.take());
                            }
                        }
                        Ok(Incoming::Candidate(mut c)) => {
                            if c.is_end() { continue; }
                            if let Some(map) = &cx.options.relay {
                                match c.candidate.as_deref().and_then(|l| map_candidate(l, map)) {
                                    Some(line) => c.candidate = Some(line),
                                    None => continue,
                                }
                            }
                            if remote_set { let _ = self.pc.add_ice_candidate(peer::to_init(&c)).await; } else { queued.push(c); }
                        }
                        Ok(Incoming::Error { code, message }) => {
                            tracing::warn!(%code, %message, "server refused");
                            refused = true;
                            cx.shared.notice(Notice::Error { code, message });
                        }
                        Ok(Incoming::Send(hint)) => {
                            tracing::debug!(?hint, "send hint");
                            if cx.options.follow_hints {
                                if let Some(m) = cx.media.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                                    m.hint(&cx.options.peer, hint);
                                }
                                *cx.shared.hint.lock().unwrap_or_else(|e| e.into_inner()) = Some(hint);
                            }
                            cx.shared.notice(Notice::Send(hint));
                        }
                        Ok(Incoming::Rejoin { reason }) => {
                            if cx.epochs.rejoin(stamps.epoch) {
                                tracing::info!(%reason, epoch = ?stamps.epoch, "asked to rejoin");
                                cx.shared.notice(Notice::Rejoin { reason });
                                return End::Rejoin;
                            }
                        }
                        Ok(Incoming::Bye { reason }) if reason == "moved" => {
                            tracing::info!("the room moved; rejoining");
                            cx.shared.notice(Notice::Rejoin { reason });
                            return End::Rejoin;
                        }
                        Ok(Incoming::Bye { reason }) => {
                            tracing::info!(%reason, "server ended the session");
                            cx.shared.notice(Notice::Bye { reason });
                            return End::Stop;
                        }
                        Err(e) => tracing::debug!(error = %e, "unreadable message"),
                    }
                }
                ev = self.events.recv() => match ev {
                    Some(PeerEvent::Candidate(_)) if cx.options.relay.is_some() => {}
                    Some(PeerEvent::Candidate(c)) => {
                        let msg = serde_json::json!({"type": "candidate", "candidate": c.candidate, "sdpMid": c.sdp_mid, "sdpMLineIndex": c.sdp_m_line_index});
                        let _ = cx.link.publish(&cx.in_topic, serde_json::to_vec(&msg).unwrap_or_default(), false).await;
                    }
                    Some(PeerEvent::GatheringComplete) => {}
                    Some(PeerEvent::State(s)) => {
                        tracing::debug!(state = %s, "connection state");
                        connected = s == RTCPeerConnectionState::Connected;
                        cx.shared.connected.send_replace(connected);
                        if connected && pending_start.is_some() {
                            self.start(cx, pending_start.take());
                        }
                        if s == RTCPeerConnectionState::Failed { return End::Stop; }
                    }
                    Some(PeerEvent::Track(track)) => self.track(cx, track).await,
                    None => return End::Stop,
                }
            }
        }
    }

    /// Starts sending (now that the connection is up and the payload
    /// types are known). The first keyframe can be lost while the server
    /// sets up its reader, so two more follow, half a second and a second
    /// and a half later (cheaper than waiting for a keyframe request).
    fn start(&mut self, cx: &Context, writers: Option<Writers>) {
        start_sources(&cx.options, writers, &self.video_out, &cx.media, &cx.shared, &mut self.tasks);
        let Some(thread) = cx.media.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(Arc::downgrade) else {
            return;
        };
        self.kicks = Some(tokio::spawn(async move {
            for wait in [Duration::from_millis(500), Duration::from_millis(1000)] {
                tokio::time::sleep(wait).await;
                let Some(t) = thread.upgrade() else { return };
                t.request_keyframe();
            }
        }));
    }

    /// A track the server sends: decode (or count) video, hand audio to
    /// the client's audio thread.
    async fn track(&mut self, cx: &mut Context, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        let received = cx.shared.received.clone();
        match track.kind().await {
            RtpCodecKind::Video => {
                let count = {
                    let r = received.clone();
                    move |n: usize| {
                        r.video_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                };
                if !cx.options.decode {
                    let counter = receive::UnitCounter(received.clone());
                    self.tasks.push(tokio::spawn(async move {
                        peer::receive::read_h264(track, counter, count).await;
                    }));
                    return;
                }
                let sink = CompositeSink { received: received.clone(), recorder: cx.recorder.take() };
                match VideoDecoder::spawn(format!("recv-video-{}", cx.options.peer), sink) {
                    Ok(decoder) => self.tasks.push(tokio::spawn(async move {
                        peer::receive::read_h264(track, decoder, count).await;
                    })),
                    Err(e) => tracing::warn!(error = %e, "cannot start decoder"),
                }
            }
            RtpCodecKind::Audio => {
                if let Some(tx) = cx.audio_rx.clone() {
                    self.tasks.push(tokio::spawn(peer::receive::read_opus(track, move |seq, p| {
                        let _ = tx.try_send((seq, p));
                    })));
                }
            }
            _ => {}
        }
    }

    /// Closes the connection; waits up to `wait` for each reader to end
    /// (their decoders flush recordings).
    pub(super) async fn close(self, wait: Duration) {
        if let Some(k) = &self.kicks {
            k.abort();
        }
        let _ = self.pc.close().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(wait, t).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Epochs;

    #[test]
    fn stale_epochs_and_repeated_rejoins_are_ignored() {
        let mut e = Epochs::default();
        assert!(!e.stale(Some(5)) && !e.clustered());
        e.answered(Some(10));
        assert!(e.clustered());
        assert!(e.stale(Some(9)) && !e.stale(Some(10)) && !e.stale(None));
        assert!(!e.state(Some(10), true), "its own owner's state");
        assert!(!e.rejoin(Some(10)), "already joined epoch 10");
        assert!(e.rejoin(Some(12)));
        assert!(!e.state(Some(12), true), "the state of the owner it rejoins");
        assert!(e.stale(Some(10)), "the old owner's messages");
        assert!(e.state(Some(15), true), "a newer owner it was not told about");
        assert!(!e.state(Some(20), false), "before an answer, a retained state decides nothing");
        assert!(e.rejoin(None), "a rejoin without an epoch always counts");
    }
}
