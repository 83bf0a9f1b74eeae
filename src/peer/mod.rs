//! WebRTC peer connections (webrtc-rs 0.21) as tessera uses them, on both
//! sides: H.264 + Opus only, trickle ICE, keyframe requests delivered to
//! the application, a UDP port range, and events on a channel.
//!
//! webrtc-rs runs every event callback on the connection's driver task, so
//! the handler here only forwards events into a channel and returns.

pub mod heard;
pub mod layers;
pub mod pacer;
pub mod receive;
pub mod rtcp;
pub mod sdp;

use crate::config::IceServer;
use crate::signaling::protocol::Candidate;
use heard::RtcpHeard;
use pacer::{Pacer, PacerRate};
use rtc::interceptor::Slot;
use rtc::interceptor::{
    CongestionControlBuilder, NackGeneratorBuilder, NackResponderBuilder, ReceiverReportBuilder, SenderReportBuilder,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc,
};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
    TYPE_RTCP_FB_NACK,
};
use rtcp::{LinkFeedback, RtcpTap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    Registry, SettingEngineBuilder,
};

/// The H.264 format tessera sends and asks for.
pub const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Sent packets kept per stream for retransmission.
const NACK_HISTORY: u16 = 256;
/// Times a missing packet is asked for, every [`NACK_INTERVAL`]: over
/// 200 ms, so that when the first resend is lost too (a bottleneck queue
/// that overflowed drops resends as well) a second one is asked for after
/// the sender's [`pacer::RESEND_AGAIN`], and arrives within the receive
/// side's wait; then given up on (a keyframe request follows), not asked
/// for until it ages out.
const MAX_NACKS_PER_PACKET: u16 = 10;
/// How often we send a sender report on each stream, by default...
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// ...and to a receiver that will send no transport-wide feedback (see
/// [`PeerOptions::frequent_sender_reports`]).
const FREQUENT_SENDER_REPORT_INTERVAL: Duration = Duration::from_millis(250);
/// How often missing packets are asked for again.
const NACK_INTERVAL: Duration = Duration::from_millis(20);
/// Payload types registered (an answer follows the offer's anyway).
const H264_PT: u8 = 102;
const OPUS_PT: u8 = 111;

/// Errors setting up a peer connection.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// webrtc-rs refused.
    #[error("webrtc: {0}")]
    Webrtc(#[from] webrtc::error::Error),
    /// No port of the range could be bound.
    #[error("no free UDP port in {0}-{1}")]
    NoPort(u16, u16),
}

/// How peers are built.
#[derive(Clone, Debug)]
pub struct PeerOptions {
    /// Address to bind media sockets to.
    pub bind_ip: IpAddr,
    /// UDP port range (inclusive); `None`: any free port.
    pub ports: Option<(u16, u16)>,
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// Address to advertise instead of the bound one (1:1 NAT).
    pub public_ip: Option<IpAddr>,
    /// Negotiate transport-wide congestion control feedback (the receiver
    /// side sends it; off makes a receiver that sends only reports).
    pub twcc: bool,
    /// Only relayed candidates (TURN), as `iceTransportPolicy: "relay"`.
    pub relay_only: bool,
    /// Sender reports four times a second instead of once: for a receiver
    /// that sends only reports, the round trip its next report gives (from
    /// LSR/DLSR) is then at most a quarter of a second old, the one sign of
    /// a filling bottleneck queue before packets are lost. A receiver that
    /// sends transport-wide feedback shows the queue ten times a second
    /// anyway.
    pub frequent_sender_reports: bool,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            ports: None,
            ice_servers: Vec::new(),
            public_ip: None,
            twcc: true,
            relay_only: false,
            frequent_sender_reports: false,
        }
    }
}

/// A sending side's hold on its downstream: the feedback its receiver
/// sends, and the rate its pacer sends at. Give one to [`build_peer`] to
/// run congestion control (GCC on transport-wide feedback) and pacing.
#[derive(Clone)]
pub struct Downstream {
    /// What the receiver reports.
    pub feedback: Arc<LinkFeedback>,
    /// The pacer's rate.
    pub pacer: Arc<PacerRate>,
    /// Where GCC starts, and its bounds, bits/s.
    pub gcc: (f64, f64, f64),
}

/// What a peer connection reports.
pub enum PeerEvent {
    /// A local candidate to trickle (already rewritten for the public address).
    Candidate(Candidate),
    /// All local candidates were gathered.
    GatheringComplete,
    /// The connection state changed.
    State(RTCPeerConnectionState),
    /// A remote track started (its first packet arrived).
    Track(Arc<dyn TrackRemote>),
}

struct Handler {
    tx: mpsc::UnboundedSender<PeerEvent>,
    public_ip: Option<IpAddr>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let line = match self.public_ip {
                Some(ip) => advertise(&init.candidate, ip),
                None => init.candidate,
            };
            // webrtc-rs leaves the mid empty; browsers want the first m-line's.
            let c = Candidate { candidate: Some(line), sdp_mid: Some("0".into()), sdp_m_line_index: Some(0) };
            let _ = self.tx.send(PeerEvent::Candidate(c));
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.tx.send(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.send(PeerEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PeerEvent::Track(track));
    }
}

/// The H.264 codec tessera uses.
pub fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The Opus codec tessera uses.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn media_engine(
    options: &PeerOptions,
    heard: Option<Arc<RtcpHeard>>,
    downstream: Option<&Downstream>,
) -> Result<(MediaEngine, Registry), PeerError> {
    let mut me = MediaEngine::default();
    me.register_codec(RTCRtpCodecParameters { rtp_codec: h264_codec(), payload_type: H264_PT }, RtpCodecKind::Video)?;
    me.register_codec(RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: OPUS_PT }, RtpCodecKind::Audio)?;
    // The default interceptors, with a quicker NACK generator: it asks for
    // missing packets every 20 ms (default 100 ms), so a retransmission
    // arrives inside the receive side's reorder window. Codecs first: NACK
    // and PLI feedback are added to the codecs registered.
    for parameter in ["", "pli"] {
        me.register_feedback(
            RTCPFeedback { typ: TYPE_RTCP_FB_NACK.to_owned(), parameter: parameter.to_owned() },
            RtpCodecKind::Video,
        );
    }
    // 256 sent packets kept per stream for retransmission: ~1.7 s of a
    // 1.5 Mbps composite, far past any useful round trip (the default
    // 1024 costs ~1 MB per member for nothing).
    let registry =
        Registry::new().with(Slot::NackResponder, NackResponderBuilder::new().with_size(NACK_HISTORY).build()).with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                .build(),
        );
    configure_simulcast_extension_headers(&mut me)?;
    // Transport-wide sequence numbers on what we send, feedback on what we
    // receive (Chromium and webrtc-rs receivers then send feedback).
    let mut registry = if options.twcc { configure_twcc(registry, &mut me)? } else { registry };
    if let Some(d) = downstream {
        if options.twcc {
            let (initial, min, max) = d.gcc;
            let gcc = rtcp::MeteredGcc::new(initial, min, max, d.feedback.clone());
            registry = registry.with(Slot::CongestionControl, CongestionControlBuilder::new(gcc).build());
        }
        registry = registry.with(Slot::Pacer, Pacer::new(d.pacer.clone()));
    }
    // Receiver reports once a second (webrtc-rs's default); sender reports
    // once a second too, or four times (see `frequent_sender_reports`).
    let sr_interval =
        if options.frequent_sender_reports { FREQUENT_SENDER_REPORT_INTERVAL } else { SENDER_REPORT_INTERVAL };
    let registry = registry
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().with_interval(sr_interval).build());
    let target = downstream.filter(|_| options.twcc).map(|d| d.gcc.0);
    let tap = RtcpTap::new(heard, downstream.map(|d| (d.feedback.clone(), d.pacer.clone())), target);
    let registry = registry.with(Slot::from(rtcp::SLOT), tap);
    Ok((me, registry))
}

/// Builds a peer connection bound within the configured port range;
/// events go to `events`; inbound RTCP is noted in `heard` if given.
pub async fn build_peer(
    options: &PeerOptions,
    events: mpsc::UnboundedSender<PeerEvent>,
    heard: Option<Arc<RtcpHeard>>,
    downstream: Option<&Downstream>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let servers: Vec<RTCIceServer> = options
        .ice_servers
        .iter()
        .map(|s| RTCIceServer { urls: s.urls.clone(), username: s.username.clone(), credential: s.credential.clone() })
        .collect();
    let ports: Vec<u16> = match options.ports {
        None => vec![0],
        Some((a, b)) => {
            // Start somewhere in the range so concurrent joins do not all
            // race for its first port.
            let span = (b - a) as u32 + 1;
            let offset = (Instant::now().elapsed().subsec_nanos() ^ std::process::id()) % span;
            (0..span).map(|i| a + ((offset + i) % span) as u16).collect()
        }
    };
    let mut last = None;
    for port in ports {
        let (me, registry) = media_engine(options, heard.clone(), downstream)?;
        // Quick checks (50 ms) so connections come up in ~50 ms, not 200;
        // no waiting on peer-reflexive pairs; a dead peer is failed in ~10 s.
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_ice_connection_attempts(Some(Duration::from_millis(50)), Some(28))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_ice_timeouts(Some(Duration::from_secs(4)), Some(Duration::from_secs(6)), Some(Duration::from_secs(1)))
            .build();
        let handler = Arc::new(Handler { tx: events.clone(), public_ip: options.public_ip });
        let built = PeerConnectionBuilder::new()
            .with_configuration({
                let config = RTCConfigurationBuilder::new().with_ice_servers(servers.clone());
                if options.relay_only {
                    config.with_ice_transport_policy(webrtc::peer_connection::RTCIceTransportPolicy::Relay).build()
                } else {
                    config.build()
                }
            })
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_setting_engine(settings)
            .with_handler(handler as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(vec![std::net::SocketAddr::new(options.bind_ip, port)])
            .build()
            .await;
        match built {
            Ok(pc) => return Ok(Arc::new(pc)),
            Err(e) => last = Some(e),
        }
    }
    match (options.ports, last) {
        (Some((a, b)), _) => Err(PeerError::NoPort(a, b)),
        (None, Some(e)) => Err(e.into()),
        (None, None) => Err(PeerError::NoPort(0, 0)),
    }
}

/// A local track we write encoded samples to, with the SSRC we pick.
pub fn local_track(kind: RtpCodecKind, id: &str, ssrc: u32) -> Result<Arc<TrackLocalStaticSample>, PeerError> {
    let codec = match kind {
        RtpCodecKind::Video => h264_codec(),
        _ => opus_codec(),
    };
    let track = MediaStreamTrack::new(
        format!("tessera-{id}"),
        format!("tessera-{id}-{kind}"),
        format!("{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    );
    Ok(Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?))
}

/// How often a local track not yet bound by webrtc-rs is polled again.
const UNBOUND_RETRY: Duration = Duration::from_millis(20);

/// The keyframe requests (PLI, FIR) the remote sends about `track`, one
/// call each, for as long as the caller keeps asking (its task is
/// aborted with the connection). webrtc-rs answers `None` to `poll` until
/// it binds the track, which happens only once the connection is up: a
/// loop that stopped there would never hear a request.
pub async fn next_keyframe_request(track: &TrackLocalStaticSample) {
    loop {
        match webrtc::media_stream::track_local::TrackLocal::poll(track).await {
            Some(webrtc::media_stream::track_local::TrackLocalEvent::OnRtcpPacket(packets))
                if packets.iter().any(rtcp::is_keyframe_request) =>
            {
                return
            }
            Some(_) => {}
            None => tokio::time::sleep(UNBOUND_RETRY).await,
        }
    }
}

/// Our candidate format to webrtc-rs's.
pub fn to_init(c: &Candidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: c.candidate.clone().unwrap_or_default(),
        sdp_mid: c.sdp_mid.clone(),
        sdp_mline_index: c.sdp_m_line_index,
        ..Default::default()
    }
}

/// Replaces a host candidate's address with `ip` (1:1 NAT: webrtc-rs
/// 0.21 ignores its own setting for this).
pub fn advertise(candidate: &str, ip: IpAddr) -> String {
    let mut f: Vec<String> = candidate.split_whitespace().map(str::to_owned).collect();
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    if f.len() >= 8 && f[6] == "typ" && f[7] == "host" {
        f[4] = ip.to_string();
    }
    f.join(" ")
}

/// Rewrites the host candidates inside an SDP for `ip`.
pub fn advertise_sdp(sdp: &str, ip: IpAddr) -> String {
    sdp.split("\r\n")
        .map(|line| match line.strip_prefix("a=") {
            Some(c) if c.starts_with("candidate:") => format!("a={}", advertise(c, ip)),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A random SSRC.
pub fn random_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() as u32) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_candidates_are_rewritten_for_the_public_address() {
        let c = "candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host";
        assert_eq!(
            advertise(c, "203.0.113.7".parse().unwrap()),
            "candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host"
        );
        let relay = "candidate:2 1 udp 1 198.51.100.1 3478 typ relay raddr 0.0.0.0 rport 0";
        assert_eq!(advertise(relay, "203.0.113.7".parse().unwrap()), relay);
        let sdp = format!("v=0\r\na={c}\r\na=end-of-candidates\r\n");
        assert!(advertise_sdp(&sdp, "203.0.113.7".parse().unwrap()).contains("203.0.113.7 50000"));
    }
}
