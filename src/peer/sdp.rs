//! Reading an SDP offer before applying it: which media it has, in which
//! direction, and whether its codecs are ones tessera can use.

use crate::signaling::protocol::{ErrorCode, ProtocolError};
use webrtc::peer_connection::RTCSessionDescription;
use webrtc::rtp_transceiver::RTCRtpTransceiverDirection as Dir;

/// What one media kind of an offer says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offered {
    /// The remote will send this media.
    pub sends: bool,
    /// The remote wants to receive this media.
    pub receives: bool,
}

/// The parts of an offer the server decides on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OfferInfo {
    /// H.264 video, if usable.
    pub video: Offered,
    /// Opus audio, if usable.
    pub audio: Offered,
    /// The remote asked for in-band FEC in the audio it receives.
    pub opus_fec: bool,
    /// The remote offers transport-wide feedback (`a=rtcp-fb:<pt>
    /// transport-cc`): as a receiver it will tell of its link ten times a
    /// second, not only by receiver reports.
    pub transport_feedback: bool,
}

impl OfferInfo {
    /// The remote sends anything.
    pub fn sends(&self) -> bool {
        self.video.sends || self.audio.sends
    }

    /// The remote receives anything.
    pub fn receives(&self) -> bool {
        self.video.receives || self.audio.receives
    }
}

/// Most media sections an offer may hold.
const MAX_SECTIONS: usize = 16;

/// Reads an offer: usable media and directions, or a refusal saying why.
pub fn inspect_offer(sdp: &str) -> Result<OfferInfo, ProtocolError> {
    let bad = |m: String| ProtocolError::new(ErrorCode::BadSdp, m);
    let desc = RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| bad(format!("not an SDP offer: {e}")))?;
    let parsed = desc.unmarshal().map_err(|e| bad(format!("cannot parse the SDP: {e}")))?;
    if parsed.media_descriptions.len() > MAX_SECTIONS {
        return Err(bad(format!("{} media sections; at most {MAX_SECTIONS}", parsed.media_descriptions.len())));
    }
    let mut info = OfferInfo::default();
    let (mut video_seen, mut video_usable) = (false, false);
    let (mut audio_seen, mut audio_usable) = (false, false);
    for m in &parsed.media_descriptions {
        if m.media_name.port.value == 0 {
            continue; // rejected or stopped section
        }
        let mut direction = Dir::Sendrecv;
        for a in &m.attributes {
            let d = Dir::from(a.key.as_str());
            if d != Dir::Unspecified {
                direction = d;
            }
        }
        let sends = matches!(direction, Dir::Sendrecv | Dir::Sendonly);
        let receives = matches!(direction, Dir::Sendrecv | Dir::Recvonly);
        let codecs = m.codecs();
        info.transport_feedback |= codecs.values().any(|c| c.rtcp_feedback.iter().any(|f| f.trim() == "transport-cc"));
        let formats: Vec<u8> = m.media_name.formats.iter().filter_map(|f| f.parse::<u8>().ok()).collect();
        let offered = formats.iter().filter_map(|pt| codecs.get(pt));
        match m.media_name.media.as_str() {
            "video" => {
                video_seen = true;
                let usable = offered.clone().any(|c| {
                    c.name.eq_ignore_ascii_case("H264")
                        && c.fmtp.split(';').any(|kv| kv.trim() == "packetization-mode=1")
                        && c.fmtp
                            .split(';')
                            .filter_map(|kv| kv.trim().strip_prefix("profile-level-id="))
                            .any(|p| p.len() == 6 && p[..2].eq_ignore_ascii_case("42"))
                });
                if usable && !video_usable {
                    video_usable = true;
                    info.video = Offered { sends, receives };
                }
            }
            "audio" => {
                audio_seen = true;
                let opus = offered.clone().find(|c| c.name.eq_ignore_ascii_case("opus") && c.clock_rate == 48000);
                if let Some(opus) = opus {
                    if !audio_usable {
                        audio_usable = true;
                        info.audio = Offered { sends, receives };
                        info.opus_fec = opus.fmtp.split(';').any(|kv| kv.trim() == "useinbandfec=1");
                    }
                }
            }
            _ => {}
        }
    }
    if video_seen && !video_usable {
        return Err(ProtocolError::new(
            ErrorCode::NoH264,
            "the offer's video has no H.264 with packetization-mode=1 and a baseline profile (42xxxx)",
        ));
    }
    if audio_seen && !audio_usable {
        return Err(ProtocolError::new(ErrorCode::NoOpus, "the offer's audio has no opus/48000"));
    }
    if !info.sends() && !info.receives() {
        return Err(ProtocolError::new(ErrorCode::NoMedia, "the offer neither sends nor receives audio or video"));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(video: Option<(&str, &str)>, audio: Option<&str>) -> String {
        let mut s = String::from(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=fingerprint:sha-256 AA:BB\r\n",
        );
        if let Some((dir, fmtp)) = video {
            s += &format!(
                "m=video 9 UDP/TLS/RTP/SAVPF 102\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 {fmtp}\r\na={dir}\r\na=rtcp-mux\r\n"
            );
        }
        if let Some(dir) = audio {
            s += &format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na={dir}\r\na=rtcp-mux\r\n"
            );
        }
        s
    }

    const GOOD: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

    #[test]
    fn reads_directions_and_fec() {
        let i = inspect_offer(&offer(Some(("sendrecv", GOOD)), Some("sendrecv"))).unwrap();
        assert_eq!(i.video, Offered { sends: true, receives: true });
        assert!(i.opus_fec);
        let i = inspect_offer(&offer(Some(("recvonly", GOOD)), Some("recvonly"))).unwrap();
        assert!(!i.sends() && i.receives());
        let i = inspect_offer(&offer(Some(("sendonly", GOOD)), None)).unwrap();
        assert!(i.sends() && !i.receives());
        assert!(!i.transport_feedback);
        let twcc =
            offer(Some(("sendrecv", GOOD)), None).replace("a=rtcp-mux", "a=rtcp-fb:102 transport-cc\r\na=rtcp-mux");
        assert!(inspect_offer(&twcc).unwrap().transport_feedback);
    }

    #[test]
    fn refuses_offers_it_cannot_serve() {
        let vp8 = offer(None, None)
            + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n";
        assert_eq!(inspect_offer(&vp8).unwrap_err().code, ErrorCode::NoH264);
        let mode0 = offer(Some(("sendrecv", "packetization-mode=0;profile-level-id=42e01f")), Some("sendrecv"));
        assert_eq!(inspect_offer(&mode0).unwrap_err().code, ErrorCode::NoH264);
        let high = offer(Some(("sendrecv", "packetization-mode=1;profile-level-id=640c1f")), None);
        assert_eq!(inspect_offer(&high).unwrap_err().code, ErrorCode::NoH264);
        let inactive = offer(Some(("inactive", GOOD)), Some("inactive"));
        assert_eq!(inspect_offer(&inactive).unwrap_err().code, ErrorCode::NoMedia);
        for junk in ["", "hello", "v=0\r\n", &"m=audio\r\n".repeat(1000)] {
            assert_eq!(inspect_offer(junk).unwrap_err().code, ErrorCode::BadSdp, "{junk:.20}");
        }
    }
}
