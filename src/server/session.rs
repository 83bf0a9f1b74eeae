//! One member's WebRTC session on the server: answers the offer, trickles
//! candidates, feeds what the member sends into the room's decoder and
//! jitter buffer, and writes the room's composite and mix back.
//!
//! It runs as its own task and reports to the room task through events
//! tagged with its generation (a re-join makes the old session stale).

use super::events::{LinkReport, RoomEvent, SessionEvent};
use crate::bwe::estimate::{link_fraction_lost, Feedback};
use crate::peer::heard::RtcpHeard;
use crate::peer::sdp::OfferInfo;
use crate::peer::{self, receive, PeerEvent, PeerOptions};
use crate::pipeline::audio::AudioInput;
use crate::pipeline::decode::VideoDecoder;
use crate::pipeline::slot::FrameSlot;
use crate::pipeline::tier::EncodedFrame;
use crate::signaling::legacy::Outbox;
use crate::signaling::link::Link;
use crate::signaling::protocol::{Candidate, ErrorCode, ProtocolError, ServerMessage};
use bytes::Bytes;
use rtc::media::Sample;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, RTCSessionDescription};

/// Longest wait for candidates to put into the answer (host ones take under a millisecond).
const GATHER_WAIT: Duration = Duration::from_millis(300);
/// Encoded frames queued for one member before frames are dropped.
const VIDEO_QUEUE: usize = 16;
/// Opus packets queued for one member.
const AUDIO_QUEUE: usize = 32;
/// Candidates kept per session before its offer is processed.
pub const MAX_PENDING_CANDIDATES: usize = 64;

/// Commands from the room task.
pub enum Command {
    /// A candidate from the member.
    Candidate(Candidate),
    /// End the session.
    Close,
}

/// What the room task keeps of a session.
pub struct SessionHandle {
    /// Which incarnation of this peer's session.
    pub generation: u64,
    /// Media id.
    pub id: u64,
    /// What the offer said.
    pub info: OfferInfo,
    /// Where the member's view sends encoded frames.
    pub video_tx: mpsc::Sender<Arc<EncodedFrame>>,
    /// Where the audio thread sends the member's mix.
    pub audio_tx: mpsc::Sender<Bytes>,
    /// The member's latest decoded picture.
    pub slot: Arc<FrameSlot>,
    /// The member's incoming audio.
    pub audio_input: Arc<AudioInput>,
    /// Milliseconds since the session started when media last arrived.
    pub last_media: Arc<AtomicU64>,
    /// When RTCP last arrived (reports and feedback: a viewer's sign of life).
    pub rtcp: Arc<RtcpHeard>,
    /// When the session started.
    pub started: Instant,
    /// The size the member is shown at, at most (its video reader picks
    /// the simulcast layer from it).
    need: watch::Sender<Option<(u32, u32)>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl SessionHandle {
    /// Passes a candidate to the session.
    pub fn candidate(&self, c: Candidate) {
        let _ = self.commands.send(Command::Candidate(c));
    }

    /// Time since media last arrived (or since the start, if never).
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_media.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Tells the video reader the size the member is shown at.
    pub fn set_need(&self, need: Option<(u32, u32)>) {
        self.need.send_if_modified(|n| std::mem::replace(n, need) != need);
    }

    /// Time since RTCP last arrived (or since the start, if never).
    pub fn rtcp_silent_for(&self) -> Duration {
        self.rtcp.silent_for(Instant::now()).unwrap_or_else(|| self.started.elapsed())
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close);
    }
}

/// Everything a session needs to start.
pub struct SessionStart {
    /// Room id.
    pub room: String,
    /// Peer id.
    pub peer: String,
    /// Incarnation.
    pub generation: u64,
    /// Media id.
    pub id: u64,
    /// The offer.
    pub sdp: String,
    /// What it says.
    pub info: OfferInfo,
    /// Candidates that came before the offer.
    pub early_candidates: Vec<Candidate>,
    /// Peer connection settings.
    pub options: PeerOptions,
    /// Signaling.
    pub link: Link,
    /// Where messages to the member go.
    pub outbox: Outbox,
    /// Back to the room task.
    pub room_tx: mpsc::Sender<RoomEvent>,
    /// Largest picture decoded from the member (either orientation).
    pub ingest_limit: (u32, u32),
    /// The room's pulse, beaten by the member's new pictures.
    pub pulse: Arc<crate::pipeline::pulse::Pulse>,
    /// Bounds of the member's downstream estimate (where it starts, least,
    /// most), if it receives video.
    pub estimate: Option<crate::bwe::estimate::Config>,
}

/// How often feedback is folded into the estimate.
const ESTIMATE_EVERY: Duration = Duration::from_millis(100);
/// NACKs are counted against packets sent over at least this long (and
/// at least [`crate::bwe::estimate::NACK_SAMPLE`] packets).
const NACK_WINDOW: Duration = Duration::from_millis(250);
/// A NACK window that has not seen enough packets by now is dropped.
const NACK_WINDOW_LONGEST: Duration = Duration::from_millis(1000);
/// A change this large (a fraction) is reported at once; smaller ones
/// at most every [`REPORT_EVERY`].
const REPORT_CHANGE: f64 = 0.05;
const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Starts a session task and returns its handle.
pub fn start(s: SessionStart) -> SessionHandle {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (video_tx, video_rx) = mpsc::channel(VIDEO_QUEUE);
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
    let (need, need_rx) = watch::channel(None);
    let handle = SessionHandle {
        generation: s.generation,
        id: s.id,
        info: s.info,
        video_tx,
        audio_tx,
        slot: FrameSlot::with_pulse(s.pulse.clone()),
        audio_input: AudioInput::new(),
        last_media: Arc::new(AtomicU64::new(0)),
        rtcp: Arc::new(RtcpHeard::new(Instant::now())),
        started: Instant::now(),
        need,
        commands,
    };
    let ctx = Ctx {
        slot: handle.slot.clone(),
        audio_input: handle.audio_input.clone(),
        last_media: handle.last_media.clone(),
        rtcp: handle.rtcp.clone(),
        started: handle.started,
        need: need_rx,
    };
    let span = tracing::info_span!("session", room = %s.room, peer = %s.peer, gen = s.generation);
    tokio::spawn(run(s, ctx, commands_rx, video_rx, audio_rx).instrument(span));
    handle
}

#[derive(Clone)]
struct Ctx {
    slot: Arc<FrameSlot>,
    audio_input: Arc<AudioInput>,
    last_media: Arc<AtomicU64>,
    rtcp: Arc<RtcpHeard>,
    started: Instant,
    need: watch::Receiver<Option<(u32, u32)>>,
}

impl Ctx {
    fn touch(&self) {
        self.last_media.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

async fn report(s: &SessionStart, event: SessionEvent) {
    let _ = s.room_tx.send(RoomEvent::Session { peer: s.peer.clone(), generation: s.generation, event }).await;
}

async fn run(
    s: SessionStart,
    ctx: Ctx,
    mut commands: mpsc::UnboundedReceiver<Command>,
    video_rx: mpsc::Receiver<Arc<EncodedFrame>>,
    audio_rx: mpsc::Receiver<Bytes>,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    // Congestion control and pacing for a member that receives video.
    let downstream = s.estimate.filter(|_| s.info.video.receives).map(|config| peer::Downstream {
        feedback: crate::peer::rtcp::LinkFeedback::new(),
        pacer: crate::peer::pacer::PacerRate::new(),
        gcc: (config.initial as f64, config.min as f64, config.max as f64),
    });
    let mut estimator = s.estimate.map(crate::bwe::estimate::Estimator::new);
    let pc = match negotiate(&s, ctx.rtcp.clone(), downstream.as_ref(), events_tx, &mut events).await {
        Ok(pc) => pc,
        Err(e) => {
            tracing::info!(error = %e, "offer refused");
            report(&s, SessionEvent::Refused(e)).await;
            return;
        }
    };
    let (pc, video_track, audio_track, answered) = pc;
    for c in s.early_candidates.iter().cloned() {
        apply_candidate(&s, &pc, c).await;
    }
    let mut tasks = Vec::new();
    // Video bytes handed to the track (what the estimate may probe above).
    let video_sent = Arc::new(AtomicU64::new(0));
    if let Some((track, ssrc, pt)) = video_track {
        let (room_tx, peer, generation) = (s.room_tx.clone(), s.peer.clone(), s.generation);
        let ask = move || {
            let ev = RoomEvent::Session { peer: peer.clone(), generation, event: SessionEvent::Resync };
            let _ = room_tx.try_send(ev);
        };
        let pacer = downstream.as_ref().map(|d| d.pacer.clone());
        tasks.push(tokio::spawn(
            write_video(track.clone(), ssrc, pt, video_rx, video_sent.clone(), pacer, ask).in_current_span(),
        ));
        let room_tx = s.room_tx.clone();
        let (peer, generation) = (s.peer.clone(), s.generation);
        tasks.push(tokio::spawn(
            async move {
                // Keyframe requests (PLI/FIR) from the member for its view.
                loop {
                    peer::next_keyframe_request(&track).await;
                    let ev =
                        RoomEvent::Session { peer: peer.clone(), generation, event: SessionEvent::KeyframeRequest };
                    if room_tx.send(ev).await.is_err() {
                        break;
                    }
                }
            }
            .in_current_span(),
        ));
    }
    if let Some((track, ssrc, pt)) = audio_track {
        tasks.push(tokio::spawn(write_audio(track, ssrc, pt, audio_rx).in_current_span()));
    }
    let mut disconnected_since: Option<Instant> = None;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut fold = tokio::time::interval(ESTIMATE_EVERY);
    fold.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: Option<(LinkReport, Instant)> = None;
    let mut sent_window: std::collections::VecDeque<(Instant, u64)> = std::collections::VecDeque::new();
    let mut sent_rate = 0u32;
    // NACKs, packets sent and wire bits that left the pacer at the start
    // of the current NACK window.
    let mut nack_mark: Option<(Instant, u64, u64, u64)> = None;
    // Video packets that came to the pacer, and those it dropped unsent,
    // at the last receiver report.
    let mut report_mark: Option<(u64, u64)> = None;
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Candidate(c)) => apply_candidate(&s, &pc, c).await,
                Some(Command::Close) | None => break,
            },
            ev = events.recv() => match ev {
                Some(PeerEvent::Candidate(c)) => {
                    if !answered.contains(c.candidate.as_deref().unwrap_or_default()) {
                        send(&s, &ServerMessage::Candidate(c)).await;
                    }
                }
                Some(PeerEvent::GatheringComplete) => {}
                Some(PeerEvent::State(state)) => {
                    tracing::debug!(%state, "connection state");
                    match state {
                        RTCPeerConnectionState::Connected => {
                            disconnected_since = None;
                            report(&s, SessionEvent::Connected).await;
                        }
                        RTCPeerConnectionState::Disconnected => {
                            disconnected_since.get_or_insert_with(Instant::now);
                        }
                        RTCPeerConnectionState::Failed => {
                            report(&s, SessionEvent::Lost("connection failed".into())).await;
                        }
                        _ => {}
                    }
                }
                Some(PeerEvent::Track(track)) => {
                    tasks.push(tokio::spawn(read_track(track, ctx.clone(), s.room_tx.clone(), s.peer.clone(), s.generation, s.ingest_limit).in_current_span()));
                }
                None => break,
            },
            _ = fold.tick(), if downstream.is_some() => {
                let (Some(d), Some(est)) = (&downstream, estimator.as_mut()) else { continue };
                for (at, mut f) in d.feedback.take() {
                    // A report the connection could not place in what left
                    // (`reached` unknown) still counts our pacer's drops as
                    // lost: take them out roughly.
                    if let Feedback::Report { fraction_lost, reached, .. } = &mut f {
                        let (packets, unsent) = d.pacer.video_packets();
                        let (p0, u0) = report_mark.unwrap_or((packets, unsent));
                        let (packets_since, unsent_since) = (packets.saturating_sub(p0), unsent.saturating_sub(u0));
                        if reached.is_none() {
                            *fraction_lost = link_fraction_lost(*fraction_lost, packets_since, unsent_since);
                        }
                        report_mark = Some((packets, unsent));
                    }
                    tracing::trace!(feedback = ?f, "link feedback");
                    est.feed(at.saturating_duration_since(ctx.started), f);
                }
                // Packets the pacer dropped unsent are asked for too, but
                // the link did not lose them (nor are they counted as NACKed).
                let (packets, unsent) = d.pacer.video_packets();
                let (nacked, packets) = (d.feedback.nacked(), packets - unsent);
                let left = d.pacer.left_bits();
                match nack_mark {
                    Some((since, n0, p0, l0))
                        if since.elapsed() >= NACK_WINDOW
                            && packets.saturating_sub(p0) >= crate::bwe::estimate::NACK_SAMPLE as u64 =>
                    {
                        let secs = since.elapsed().as_secs_f64();
                        let nacks = Feedback::Nacks {
                            nacked: nacked.saturating_sub(n0).min(u32::MAX as u64) as u32,
                            sent: packets.saturating_sub(p0).min(u32::MAX as u64) as u32,
                            left: Some((left.saturating_sub(l0) as f64 / secs).min(u32::MAX as f64) as u32),
                        };
                        tracing::trace!(feedback = ?nacks, "link feedback");
                        est.feed(ctx.started.elapsed(), nacks);
                        nack_mark = Some((Instant::now(), nacked, packets, left));
                    }
                    // Too few packets in too long a window: it says nothing
                    // (a window stretched over a pause would hold NACKs of a
                    // loss long past against the few packets since); start
                    // a new one.
                    Some((since, ..)) if since.elapsed() >= NACK_WINDOW_LONGEST => {
                        nack_mark = Some((Instant::now(), nacked, packets, left));
                    }
                    Some(_) => {}
                    None => nack_mark = Some((Instant::now(), nacked, packets, left)),
                }
                let total = video_sent.load(Ordering::Relaxed);
                sent_window.push_back((Instant::now(), total));
                while sent_window.len() > 2 && sent_window[0].0.elapsed() > Duration::from_secs(1) {
                    sent_window.pop_front();
                }
                if let (Some(first), Some(last)) = (sent_window.front(), sent_window.back()) {
                    let secs = last.0.saturating_duration_since(first.0).as_secs_f64();
                    if secs >= 0.5 {
                        sent_rate = ((last.1 - first.1) as f64 * 8.0 / secs) as u32;
                        est.sending(sent_rate);
                    }
                }
                let now = ctx.started.elapsed();
                let (estimate, source) = est.estimate(now);
                d.pacer.set(estimate as u64);
                let link = LinkReport { estimate, source, loss: est.loss(), rtt: est.rtt(), sent: sent_rate };
                let due = reported.is_none_or(|(last, at)| {
                    let change = (link.estimate as f64 - last.estimate as f64).abs() / last.estimate.max(1) as f64;
                    change >= REPORT_CHANGE || link.source != last.source || at.elapsed() >= REPORT_EVERY
                });
                if due {
                    tracing::debug!(estimate = link.estimate, source = link.source.as_str(), loss = link.loss, rtt = ?link.rtt, backlog = ?d.pacer.backlog(), pacer_dropped = d.pacer.dropped(), video_bits = ?d.pacer.video_bits(), "downstream");
                    reported = Some((link, Instant::now()));
                    report(&s, SessionEvent::Downstream(link)).await;
                }
            }
            _ = check.tick() => {
                if let Some(since) = disconnected_since {
                    if since.elapsed() > Duration::from_secs(10) {
                        report(&s, SessionEvent::Lost("connection lost".into())).await;
                        disconnected_since = None;
                    }
                }
            }
        }
    }
    let _ = pc.close().await;
    for t in tasks {
        t.abort();
    }
    tracing::debug!("session closed");
}

type Negotiated = (
    Arc<dyn PeerConnection>,
    Option<(Arc<TrackLocalStaticSample>, u32, u8)>,
    Option<(Arc<TrackLocalStaticSample>, u32, u8)>,
    HashSet<String>,
);

/// Builds the connection, applies the offer, attaches our tracks where the
/// member wants to receive, answers (with the candidates gathered so far).
async fn negotiate(
    s: &SessionStart,
    rtcp: Arc<RtcpHeard>,
    downstream: Option<&peer::Downstream>,
    events_tx: mpsc::UnboundedSender<PeerEvent>,
    events: &mut mpsc::UnboundedReceiver<PeerEvent>,
) -> Result<Negotiated, ProtocolError> {
    let internal = |e: String| ProtocolError::new(ErrorCode::Internal, e);
    let bad_sdp = |e: webrtc::error::Error| ProtocolError::new(ErrorCode::BadSdp, e.to_string());
    // A member whose offer has no transport-wide feedback will tell of its
    // link only by reports: send it sender reports often.
    let options = peer::PeerOptions { frequent_sender_reports: !s.info.transport_feedback, ..s.options.clone() };
    let pc =
        peer::build_peer(&options, events_tx, Some(rtcp), downstream).await.map_err(|e| internal(e.to_string()))?;
    let result = async {
        let offer = RTCSessionDescription::offer(s.sdp.clone()).map_err(bad_sdp)?;
        pc.set_remote_description(offer).await.map_err(bad_sdp)?;
        let mut video = None;
        let mut audio = None;
        // Our tracks' ids must differ from any the member may give its own:
        // webrtc-rs routes inbound RTCP by track id, a received track
        // first, so a clash would send the member's keyframe requests to
        // its own upstream track, where nobody hears them.
        if s.info.video.receives {
            let ssrc = peer::random_ssrc();
            let track = peer::local_track(RtpCodecKind::Video, &format!("composite-{}-{ssrc:08x}", s.peer), ssrc)
                .map_err(|e| internal(e.to_string()))?;
            let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.map_err(bad_sdp)?;
            video = Some((track, ssrc, sender));
        }
        if s.info.audio.receives {
            let ssrc = peer::random_ssrc();
            let track = peer::local_track(RtpCodecKind::Audio, &format!("mix-{}-{ssrc:08x}", s.peer), ssrc)
                .map_err(|e| internal(e.to_string()))?;
            let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.map_err(bad_sdp)?;
            audio = Some((track, ssrc, sender));
        }
        let answer = pc.create_answer(None).await.map_err(bad_sdp)?;
        pc.set_local_description(answer).await.map_err(bad_sdp)?;
        // Wait briefly for candidates so clients that do not trickle get
        // them in the answer; later ones are trickled.
        let deadline = tokio::time::Instant::now() + GATHER_WAIT;
        let mut early = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(PeerEvent::GatheringComplete)) | Err(_) | Ok(None) => break,
                Ok(Some(other)) => early.push(other),
            }
        }
        let local = pc.local_description().await.ok_or_else(|| internal("no local description".into()))?;
        let sdp = match s.options.public_ip {
            Some(ip) => peer::advertise_sdp(&local.sdp, ip),
            None => local.sdp,
        };
        let answered: HashSet<String> = sdp
            .split("\r\n")
            .filter_map(|l| l.strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:"))
            .map(str::to_owned)
            .collect();
        let payload_type = |params: webrtc::error::Result<rtc::rtp_transceiver::rtp_sender::RTCRtpSendParameters>| {
            params.ok().and_then(|p| p.rtp_parameters.codecs.first().map(|c| c.payload_type))
        };
        let video = match video {
            Some((t, ssrc, sender)) => payload_type(sender.get_parameters().await).map(|pt| (t, ssrc, pt)),
            None => None,
        };
        let audio = match audio {
            Some((t, ssrc, sender)) => payload_type(sender.get_parameters().await).map(|pt| (t, ssrc, pt)),
            None => None,
        };
        let (topic, payload) = s.outbox.encode(&ServerMessage::Answer { sdp });
        s.link.publish(&topic, payload, false).await.map_err(|e| internal(e.to_string()))?;
        // Anything that arrived while we waited goes back in the queue.
        for ev in early {
            match ev {
                PeerEvent::Candidate(c) if answered.contains(c.candidate.as_deref().unwrap_or_default()) => {}
                PeerEvent::Candidate(c) => {
                    send(s, &ServerMessage::Candidate(c)).await;
                }
                PeerEvent::State(state) => tracing::debug!(%state, "connection state"),
                _ => {}
            }
        }
        Ok((video, audio, answered))
    }
    .await;
    match result {
        Ok((video, audio, answered)) => Ok((pc, video, audio, answered)),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

/// Sends a message to the member (in its dialect).
async fn send(s: &SessionStart, msg: &ServerMessage) {
    let (topic, payload) = s.outbox.encode(msg);
    if let Err(e) = s.link.publish(&topic, payload, false).await {
        tracing::debug!(error = %e, "not sent");
    }
}

async fn apply_candidate(s: &SessionStart, pc: &Arc<dyn PeerConnection>, c: Candidate) {
    if c.is_end() {
        return;
    }
    if let Err(e) = pc.add_ice_candidate(peer::to_init(&c)).await {
        let err = ProtocolError::new(ErrorCode::BadCandidate, e.to_string());
        send(s, &ServerMessage::from(err)).await;
    }
}

/// Video waiting in the pacer longer than this is stale: frames are
/// skipped (from the encoder's side, whole) until a keyframe.
const MAX_BACKLOG: Duration = Duration::from_millis(400);

/// Writes the member's view to its track. When the pacer holds more
/// than [`MAX_BACKLOG`] (the link carries less than the tier sends, for a
/// moment: the estimate has just fallen), the video waiting in the pacer
/// is dropped and frames are skipped until a keyframe, asked for at once
/// (`resync`): late video is worth less than none. Skipped time is added
/// to the next frame's timestamp step.
async fn write_video(
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    pt: u8,
    mut rx: mpsc::Receiver<Arc<EncodedFrame>>,
    sent: Arc<AtomicU64>,
    pacer: Option<Arc<crate::peer::pacer::PacerRate>>,
    resync: impl Fn(),
) {
    let mut skipping = false;
    let mut skipped = Duration::ZERO;
    let mut asked: Option<Instant> = None;
    while let Some(frame) = rx.recv().await {
        let backlog = pacer.as_ref().map_or(Duration::ZERO, |p| p.backlog());
        if backlog > MAX_BACKLOG && !skipping {
            tracing::debug!(?backlog, "pacer backlog: stale video dropped, frames skipped until a keyframe");
            skipping = true;
            if let Some(p) = &pacer {
                p.flush_video();
            }
        }
        if skipping {
            if frame.keyframe {
                tracing::debug!(?backlog, "skipping ends on a keyframe");
                skipping = false;
            } else {
                skipped += frame.duration;
                super::metrics::frames_skipped(1);
                if asked.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
                    asked = Some(Instant::now());
                    resync();
                }
                continue;
            }
        }
        sent.fetch_add(frame.data.len() as u64, Ordering::Relaxed);
        let duration = frame.duration + std::mem::take(&mut skipped);
        let sample = Sample { data: frame.data.clone(), duration, ..Sample::new(Instant::now()) };
        if let Err(e) = track.sample_writer(ssrc, pt).write_sample(&sample).await {
            tracing::debug!(error = %e, "video write failed; writer stops");
            break;
        }
    }
}

async fn write_audio(track: Arc<TrackLocalStaticSample>, ssrc: u32, pt: u8, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(packet) = rx.recv().await {
        let sample = Sample { data: packet, duration: Duration::from_millis(20), ..Sample::new(Instant::now()) };
        if let Err(e) = track.sample_writer(ssrc, pt).write_sample(&sample).await {
            tracing::debug!(error = %e, "audio write failed; writer stops");
            break;
        }
    }
}

/// Reads one remote track until it ends.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    ctx: Ctx,
    room_tx: mpsc::Sender<RoomEvent>,
    peer: String,
    generation: u64,
    limit: (u32, u32),
) {
    match track.kind().await {
        RtpCodecKind::Video => {
            let decoder = match VideoDecoder::spawn(format!("decode-{peer}"), ctx.slot.clone()) {
                Ok(d) => d,
                Err(e) => return tracing::warn!(error = %e, "cannot start decoder thread"),
            };
            let ev = RoomEvent::Session { peer: peer.clone(), generation, event: SessionEvent::VideoStarted };
            let _ = room_tx.send(ev).await;
            let events = VideoSide { ctx: ctx.clone(), room_tx, peer, generation };
            super::video_in::read_video(track, decoder, limit, ctx.need.clone(), events).await;
            tracing::debug!("video track ended");
        }
        RtpCodecKind::Audio => {
            receive::read_opus(track, |seq, payload| {
                ctx.touch();
                ctx.audio_input.push(seq, payload);
            })
            .await
        }
        _ => {}
    }
}

/// What the video reader reports, turned into session life and room events.
struct VideoSide {
    ctx: Ctx,
    room_tx: mpsc::Sender<RoomEvent>,
    peer: String,
    generation: u64,
}

impl super::video_in::VideoEvents for VideoSide {
    fn packet(&mut self, _bytes: usize) {
        self.ctx.touch();
    }

    fn refused(&mut self, width: u32, height: u32, limit: (u32, u32)) {
        tracing::info!(width, height, "video above the ingest limit: not decoded");
        let error = ProtocolError::new(
            ErrorCode::VideoTooLarge,
            format!(
                "your video is {width}x{height}; this server decodes at most {}x{}: send less (it is not shown)",
                limit.0, limit.1
            ),
        );
        let event = SessionEvent::VideoRefused(error);
        let _ =
            self.room_tx.try_send(RoomEvent::Session { peer: self.peer.clone(), generation: self.generation, event });
    }

    fn layer(&mut self, rid: Option<&str>, size: Option<(u32, u32)>) {
        tracing::debug!(?rid, ?size, "decoding layer");
    }
}
