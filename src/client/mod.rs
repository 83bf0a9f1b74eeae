//! `tessera client`: the capture client. It joins a room over the same
//! signaling any client uses, sends a test pattern (or a file, a pipe or a
//! camera) and a tone,
//! receives the composite and the mix, records them if asked, and measures
//! what a user would notice: frames decoded, bitrate, join time, and the
//! latency from capture to display through the server.
//!
//! [`Client`] is also what the integration tests drive, and `--count N`
//! runs N of them in one process as a load generator.

pub mod receive;
mod session;
pub mod source;
pub mod stamp;
mod y4m_input;

use crate::layout::Layout;
use crate::peer::{self, PeerOptions};
use crate::signaling::link::{Link, LinkOptions};
use crate::signaling::protocol::{RoomState, SendHint, Topics};
use receive::{Received, TileMap, VideoRecorder};
use rtc::media::Sample;
use source::{AudioSource, Encoded, MediaThread, SendSettings, VideoSource};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::rtp_transceiver::RtpSender;

/// How the client takes part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientRole {
    /// Send and receive (`sendrecv`).
    Participant,
    /// Receive only (`recvonly`): a display.
    Viewer,
    /// Send only (`sendonly`): a camera.
    Source,
}

/// Everything a client needs.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Broker URL.
    pub url: String,
    /// CA file for mqtts.
    pub ca_file: Option<PathBuf>,
    /// Topic root.
    pub topic_root: String,
    /// Room id.
    pub room: String,
    /// Peer id (also the MQTT client id).
    pub peer: String,
    /// Display name.
    pub name: Option<String>,
    /// Role.
    pub role: ClientRole,
    /// What to send.
    pub send: SendSettings,
    /// Downstream size to ask for.
    pub view: Option<(u32, u32)>,
    /// Record the composite (.y4m decoded or .h264 as received).
    pub record_video: Option<PathBuf>,
    /// Record the mix (.wav).
    pub record_audio: Option<PathBuf>,
    /// Layout files (to find this process's tiles for latency).
    pub layouts: PathBuf,
    /// Peer connection settings.
    pub peer_options: PeerOptions,
    /// Route media through a relay: each server candidate's address is
    /// replaced by what this returns (dropped on `None`), and this client's
    /// own candidates are not sent, so the server only learns the relay's
    /// address. For impairment tests (loss, delay) and for clients behind a
    /// TURN-less relay.
    pub relay: Option<CandidateMap>,
    /// Decode the composite (latency, pictures, recordings). A load
    /// generator's receivers may only count what arrives.
    pub decode: bool,
    /// Send from this media thread, shared with other clients (`--fanout`),
    /// instead of one of its own made from `send`.
    pub source: Option<SharedSource>,
    /// Follow the server's `send` hints (size, frame rate, bitrate); a
    /// client that does not still works, and costs the server more.
    pub follow_hints: bool,
}

/// A media thread several clients send from.
#[derive(Clone)]
pub struct SharedSource(pub Arc<MediaThread>);

impl std::fmt::Debug for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSource")
    }
}

/// Maps a server media address to the address to send to instead.
#[derive(Clone)]
pub struct CandidateMap(pub Arc<dyn Fn(std::net::SocketAddr) -> Option<std::net::SocketAddr> + Send + Sync>);

impl std::fmt::Debug for CandidateMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CandidateMap")
    }
}

/// Applies a candidate map to one `candidate:` line.
fn map_candidate(line: &str, map: &CandidateMap) -> Option<String> {
    let mut f: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") {
        return None;
    }
    let addr: std::net::SocketAddr = format!("{}:{}", f[4], f[5]).parse().ok()?;
    let to = (map.0)(addr)?;
    f[4] = to.ip().to_string();
    f[5] = to.port().to_string();
    Some(f.join(" "))
}

/// Applies a candidate map to every `a=candidate:` line of an SDP.
fn map_sdp(sdp: &str, map: &CandidateMap) -> String {
    sdp.split("\r\n")
        .filter_map(|line| match line.strip_prefix("a=") {
            Some(c) if c.starts_with("candidate:") => map_candidate(c, map).map(|c| format!("a={c}")),
            _ => Some(line.to_owned()),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

impl ClientOptions {
    /// A participant in `room` as `peer`, sending a 320x240 pattern at 15 fps
    /// and a tone, through the broker at `url`.
    pub fn new(url: &str, room: &str, peer: &str) -> Self {
        Self {
            url: url.to_owned(),
            ca_file: None,
            topic_root: "tessera".into(),
            room: room.to_owned(),
            peer: peer.to_owned(),
            name: None,
            role: ClientRole::Participant,
            send: SendSettings {
                video: VideoSource::Pattern(crate::media::pattern::palette(0)),
                audio: AudioSource::Tone(440.0),
                width: 320,
                height: 240,
                fps: 15,
                bitrate: 300_000,
                name: peer.to_owned(),
            },
            view: None,
            record_video: None,
            record_audio: None,
            layouts: PathBuf::from("layouts"),
            peer_options: PeerOptions::default(),
            relay: None,
            decode: true,
            source: None,
            follow_hints: true,
        }
    }
}

/// Errors joining.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Signaling failed.
    #[error(transparent)]
    Link(#[from] crate::signaling::link::LinkError),
    /// The broker did not answer.
    #[error("broker {0} not reachable")]
    Unreachable(String),
    /// WebRTC refused.
    #[error(transparent)]
    Peer(#[from] peer::PeerError),
    /// WebRTC refused.
    #[error("webrtc: {0}")]
    Webrtc(#[from] webrtc::error::Error),
    /// A source could not be opened.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A recording file could not be created.
    #[error("recording: {0}")]
    Record(std::io::Error),
    /// Something that should not happen.
    #[error("{0}")]
    Internal(&'static str),
}

/// A message the server sent this client, other than answer and candidates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `{"type":"error",...}`.
    Error {
        /// Code.
        code: String,
        /// Message.
        message: String,
    },
    /// `{"type":"bye",...}`.
    Bye {
        /// Reason.
        reason: String,
    },
    /// `{"type":"send",...}`: what the server asked this sender for.
    Send(SendHint),
    /// `{"type":"rejoin",...}` (or `bye` with reason `moved`): the client
    /// offered again.
    Rejoin {
        /// Reason.
        reason: String,
    },
}

struct Shared {
    received: Arc<Received>,
    notices: Mutex<Vec<Notice>>,
    state: watch::Sender<Option<RoomState>>,
    connected: watch::Sender<bool>,
    answered: Mutex<Option<Instant>>,
    offered: Instant,
    layouts: Mutex<BTreeMap<String, Option<Arc<Layout>>>>,
    layouts_dir: PathBuf,
    /// The server's latest `send` hint.
    hint: Mutex<Option<SendHint>>,
    /// New sessions after the first (rejoins).
    rejoins: std::sync::atomic::AtomicU64,
}

/// A joined client.
pub struct Client {
    peer: String,
    room: String,
    topics: Topics,
    link: Link,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    media: Arc<Mutex<Option<Arc<MediaThread>>>>,
    stop: Arc<tokio::sync::Notify>,
}

/// A snapshot of what a client received.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Composite frames decoded.
    pub frames: u64,
    /// Video payload bytes received.
    pub video_bytes: u64,
    /// Audio packets received.
    pub audio_packets: u64,
    /// Offer sent to first composite frame decoded.
    pub join_time: Option<Duration>,
    /// Offer sent to answer received.
    pub answer_time: Option<Duration>,
    /// Freezes of the composite (WebRTC's definition).
    pub freezes: u64,
    /// Their total length.
    pub frozen: Duration,
    /// The longest.
    pub longest_freeze: Duration,
    /// New sessions after the first (the room moved to another node).
    pub rejoins: u64,
}

impl Client {
    /// Connects to the broker, offers, and starts media; returns once the
    /// offer is sent (see [`Client::wait_connected`]). When the server
    /// asks it to rejoin (its room moved to another node), it offers again
    /// by itself with a new connection, keeping its counters and sources.
    pub async fn join(o: ClientOptions) -> Result<Client, ClientError> {
        let topics = Topics::new(o.topic_root.clone());
        let in_topic = topics.peer_in(&o.room, &o.peer);
        let (link, mut link_events) = Link::connect(LinkOptions {
            url: o.url.clone(),
            client_id: o.peer.clone(),
            ca_file: o.ca_file.clone(),
            will: Some((in_topic.clone(), br#"{"type":"leave","will":true}"#.to_vec(), false)),
            subscriptions: vec![topics.peer_out(&o.room, &o.peer), topics.state(&o.room)],
            announce: vec![],
            keep_alive: Duration::from_secs(5),
        })?;
        if !link.ready(Duration::from_secs(10)).await {
            link.kill();
            return Err(ClientError::Unreachable(o.url.clone()));
        }
        let received = Received::new();
        let (state_tx, _) = watch::channel(None);
        let (connected_tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            received: received.clone(),
            notices: Mutex::new(Vec::new()),
            state: state_tx,
            connected: connected_tx,
            answered: Mutex::new(None),
            offered: Instant::now(),
            layouts: Mutex::new(BTreeMap::new()),
            layouts_dir: o.layouts.clone(),
            hint: Mutex::new(None),
            rejoins: std::sync::atomic::AtomicU64::new(0),
        });
        let recorder = match &o.record_video {
            Some(path) => Some(VideoRecorder::create(path, 30).map_err(ClientError::Record)?),
            None => None,
        };
        let audio_rx = if o.role != ClientRole::Source {
            Some(
                receive::spawn_audio(received.clone(), o.record_audio.clone(), format!("recv-audio-{}", o.peer))
                    .map_err(ClientError::Record)?,
            )
        } else {
            None
        };
        let media: Arc<Mutex<Option<Arc<MediaThread>>>> = Arc::new(Mutex::new(None));
        let stop = Arc::new(tokio::sync::Notify::new());
        let mut cx = session::Context {
            options: o.clone(),
            link: link.clone(),
            in_topic,
            shared: shared.clone(),
            media: media.clone(),
            audio_rx,
            recorder,
            epochs: session::Epochs::default(),
            offers: 0,
            nonce: peer::random_ssrc(),
        };
        let first = session::Session::open(&mut cx).await?;
        let task = {
            let stop = stop.clone();
            let span = tracing::info_span!("client", room = %o.room, peer = %o.peer);
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let mut current = first;
                    loop {
                        let end = current.run(&mut cx, &mut link_events, &stop).await;
                        if end == session::End::Stop {
                            break;
                        }
                        // The old connection goes in the background; the
                        // sources keep running and feed the new one.
                        if let Some(m) = cx.media.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                            m.detach(&cx.options.peer);
                        }
                        tokio::spawn(current.close(Duration::from_secs(2)));
                        cx.shared.rejoins.fetch_add(1, Ordering::Relaxed);
                        cx.shared.connected.send_replace(false);
                        match session::Session::open(&mut cx).await {
                            Ok(s) => current = s,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot offer again");
                                cx.shared.notice(Notice::Error { code: "rejoin".into(), message: e.to_string() });
                                cx.shared.connected.send_replace(false);
                                return;
                            }
                        }
                    }
                    if let Some(m) = cx.media.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        m.detach(&cx.options.peer);
                    }
                    // Readers end with the connection; their decoders flush recordings.
                    current.close(Duration::from_secs(2)).await;
                    cx.shared.connected.send_replace(false);
                },
                span,
            ))
        };
        Ok(Client { peer: o.peer, room: o.room, topics, link, shared, task, media, stop })
    }

    /// Peer id.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Waits until the connection is up (or `limit` passes).
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let mut rx = self.shared.connected.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// What was received so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The latest composite picture decoded.
    pub fn latest_frame(&self) -> Option<crate::pipeline::slot::Latest> {
        self.shared.received.slot.latest()
    }

    /// The last `n` samples of the mix.
    pub fn recent_audio(&self, n: usize) -> Vec<f32> {
        self.shared.received.recent_audio(n)
    }

    /// Takes the latency samples (ms) measured so far.
    pub fn take_latencies(&self) -> Vec<u32> {
        self.shared.received.take_latencies()
    }

    /// Takes the audio latency samples (ms) measured so far from beeps of
    /// this process's senders (see [`source::AudioSource::Beep`]).
    pub fn take_audio_latencies(&self) -> Vec<f64> {
        self.shared.received.take_audio_latencies()
    }

    /// Takes the latency samples (ms) measured so far, with each tile's peer.
    pub fn take_latencies_by_peer(&self) -> Vec<(String, u32)> {
        self.shared.received.take_latencies_by_peer()
    }

    /// The room state last published.
    pub fn room_state(&self) -> Option<RoomState> {
        self.shared.state.borrow().clone()
    }

    /// Watches the room state.
    pub fn watch_state(&self) -> watch::Receiver<Option<RoomState>> {
        self.shared.state.subscribe()
    }

    /// Errors and byes received.
    pub fn notices(&self) -> Vec<Notice> {
        self.shared.notices.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The broker link (tests publish through it).
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Turns the camera off (`false`: no more video is sent; the server
    /// shows the last picture, then the placeholder) or back on.
    pub fn set_video(&self, on: bool) {
        if let Some(m) = self.media.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            m.set_video(on);
        }
    }

    /// Leaves cleanly: `leave`, then closes everything. Returns the final
    /// counts (after the last picture was decoded and recorded).
    pub async fn leave(self) -> Stats {
        let topic = self.topics.peer_in(&self.room, &self.peer);
        let _ = self.link.publish(&topic, br#"{"type":"leave"}"#.to_vec(), false).await;
        self.finish(false).await
    }

    /// Disappears without a word (the MQTT connection drops; the broker
    /// publishes the last will).
    pub async fn vanish(self) -> Stats {
        self.finish(true).await
    }

    async fn finish(self, crash: bool) -> Stats {
        stamp::unregister_local(&self.peer);
        if let Some(m) = self.media.lock().unwrap_or_else(|e| e.into_inner()).take() {
            m.detach(&self.peer);
        }
        self.stop.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        if crash {
            self.link.kill();
        } else {
            self.link.close().await;
        }
        self.shared.stats()
    }
}

impl Shared {
    fn stats(&self) -> Stats {
        let r = &self.received;
        let answered = *self.answered.lock().unwrap_or_else(|e| e.into_inner());
        Stats {
            frames: r.frames.load(Ordering::Relaxed),
            video_bytes: r.video_bytes.load(Ordering::Relaxed),
            audio_packets: r.audio_packets.load(Ordering::Relaxed),
            join_time: r.first_frame.get().map(|t| t.duration_since(self.offered)),
            answer_time: answered.map(|t| t.duration_since(self.offered)),
            freezes: r.freezes.lock().map(|f| f.count).unwrap_or(0),
            frozen: r.freezes.lock().map(|f| f.total).unwrap_or_default(),
            longest_freeze: r.freezes.lock().map(|f| f.longest).unwrap_or_default(),
            rejoins: self.rejoins.load(Ordering::Relaxed),
        }
    }

    fn notice(&self, n: Notice) {
        self.notices.lock().unwrap_or_else(|e| e.into_inner()).push(n);
    }

    /// The first answer came (`offered`: when its offer went out).
    fn answered_at(&self, offered: Instant) {
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        if answered.is_none() && offered == self.offered {
            *answered = Some(Instant::now());
        } else if answered.is_none() {
            *answered = Some(self.offered + offered.elapsed());
        }
    }

    /// A room state; returns its epoch.
    fn set_state(&self, payload: &[u8]) -> Option<u64> {
        if payload.is_empty() {
            self.state.send_replace(None);
            return None;
        }
        let Ok(state) = serde_json::from_slice::<RoomState>(payload) else { return None };
        let epoch = state.epoch;
        let layout = {
            let mut cache = self.layouts.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .entry(state.layout.clone())
                .or_insert_with(|| {
                    let (all, _) = crate::layout::load_dir(&self.layouts_dir);
                    all.get(&state.layout).cloned()
                })
                .clone()
        };
        let map = layout.map(|layout| TileMap {
            layout,
            peers: state.participants.iter().filter(|p| p.role != "viewer").map(|p| p.peer.clone()).collect(),
            speaker: state.speaker.clone(),
        });
        *self.received.tiles.lock().unwrap_or_else(|e| e.into_inner()) = map;
        self.state.send_replace(Some(state));
        epoch
    }
}

pub(crate) type Outgoing = Option<(Arc<TrackLocalStaticSample>, u32, Arc<dyn RtpSender>)>;
/// Where the media thread sends encoded video and audio.
pub(crate) type Writers = (Option<mpsc::Sender<Encoded>>, Option<mpsc::Sender<Encoded>>);

/// Attaches the writers to the client's media thread (the shared one, or
/// one of its own started now), and listens for the server's keyframe
/// requests.
fn start_sources(
    o: &ClientOptions,
    writers: Option<Writers>,
    video_out: &Outgoing,
    media: &Mutex<Option<Arc<MediaThread>>>,
    shared: &Shared,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    let Some((video_tx, audio_tx)) = writers else { return };
    let thread = match &o.source {
        Some(SharedSource(thread)) => thread.clone(),
        None => {
            let mut settings = o.send.clone();
            if let Some(name) = &o.name {
                settings.name = name.clone();
            }
            match source::spawn(&settings, &o.peer) {
                Ok(thread) => Arc::new(thread),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start sources");
                    shared.notice(Notice::Error { code: "source".into(), message: e.to_string() });
                    return;
                }
            }
        }
    };
    thread.attach(&o.peer, video_tx, audio_tx);
    if let Some(hint) = *shared.hint.lock().unwrap_or_else(|e| e.into_inner()) {
        thread.hint(&o.peer, hint);
    }
    if let Some((track, _, _)) = video_out {
        tasks.push(tokio::spawn(keyframe_requests(track.clone(), Arc::downgrade(&thread))));
    }
    *media.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
}

/// Starts a writer task for a sending track once its payload type is known.
async fn writer(
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    sender: &Arc<dyn RtpSender>,
) -> Option<(mpsc::Sender<Encoded>, tokio::task::JoinHandle<()>)> {
    let pt = sender.get_parameters().await.ok()?.rtp_parameters.codecs.first()?.payload_type;
    let (tx, mut rx) = mpsc::channel::<Encoded>(32);
    let task = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            let sample = Sample { data: e.data, duration: e.duration, ..Sample::new(Instant::now()) };
            if track.sample_writer(ssrc, pt).write_sample(&sample).await.is_err() {
                break;
            }
        }
    });
    Some((tx, task))
}

/// Turns PLI/FIR from the server into a forced keyframe.
async fn keyframe_requests(track: Arc<TrackLocalStaticSample>, thread: std::sync::Weak<MediaThread>) {
    loop {
        peer::next_keyframe_request(&track).await;
        let Some(thread) = thread.upgrade() else { break };
        tracing::debug!("keyframe asked for");
        thread.request_keyframe();
    }
}
