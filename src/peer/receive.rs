//! Reading remote tracks, shared by the server and the client: H.264 into
//! a decoder thread (asking the sender for keyframes when needed), Opus
//! packets to a callback.

use crate::pipeline::decode::{Queue, VideoDecoder};
use crate::rtp::assembler::{Assembled, H264Assembler};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// Least time between two keyframe requests to one sender.
pub const PLI_INTERVAL: Duration = Duration::from_millis(400);

/// Counts what a video reader saw.
#[derive(Default, Debug, Clone, Copy)]
pub struct VideoReadStats {
    /// RTP payload bytes.
    pub bytes: u64,
    /// Access units handed to the decoder.
    pub units: u64,
    /// Keyframe requests sent.
    pub plis: u64,
}

/// Where a reader's access units go: a decoder thread, or (for a load
/// generator's receivers that only count) a counter.
pub trait UnitSink {
    /// Takes an access unit without blocking.
    fn push(&self, unit: Vec<u8>) -> Queue;
    /// Whether the sink waits for a keyframe (it stays so until one
    /// decodes, so a request the PLI throttle held back is not forgotten).
    fn needs_keyframe(&self) -> bool {
        false
    }
}

impl UnitSink for VideoDecoder {
    fn push(&self, unit: Vec<u8>) -> Queue {
        VideoDecoder::push(self, unit)
    }

    fn needs_keyframe(&self) -> bool {
        self.keyframe_needed.load(Ordering::Relaxed)
    }
}

/// Reads H.264 RTP from `track` until it ends: access units go to
/// `decoder`; a PLI goes back (at most every [`PLI_INTERVAL`]) while a
/// keyframe is needed (at the start, after loss, after a decode error or
/// when the decoder fell behind). `on_packet` sees every packet's size.
pub async fn read_h264(
    track: Arc<dyn TrackRemote>,
    decoder: impl UnitSink,
    mut on_packet: impl FnMut(usize),
) -> VideoReadStats {
    let mut stats = VideoReadStats::default();
    let media_ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
    let mut assembler = H264Assembler::new();
    let start = Instant::now();
    let mut last_pli: Option<Instant> = None;
    let mut dropping = false;
    while let Some(ev) = track.poll().await {
        let p = match ev {
            TrackRemoteEvent::OnRtpPacket(p) => p,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        on_packet(p.payload.len());
        stats.bytes += p.payload.len() as u64;
        let mut need_keyframe = decoder.needs_keyframe();
        for out in
            assembler.push(p.header.sequence_number, p.header.timestamp, p.header.marker, p.payload, start.elapsed())
        {
            match out {
                Assembled::Frame { data, keyframe, .. } => {
                    tracing::trace!(bytes = data.len(), keyframe, dropping, "access unit");
                    if dropping && !keyframe {
                        continue;
                    }
                    dropping = false;
                    match decoder.push(data) {
                        Queue::Ok => stats.units += 1,
                        Queue::Full => {
                            // The decoder fell behind: skip to a keyframe.
                            dropping = true;
                            need_keyframe = true;
                        }
                        Queue::Closed => return stats,
                    }
                }
                Assembled::NeedKeyframe => need_keyframe = true,
            }
        }
        need_keyframe |= assembler.waiting_for_keyframe() || dropping;
        if need_keyframe && last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL) {
            last_pli = Some(Instant::now());
            stats.plis += 1;
            tracing::debug!(lost = assembler.lost(), dropping, "keyframe needed: PLI");
            let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
            if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                break;
            }
        }
    }
    stats
}

/// Reads Opus RTP from `track` until it ends, handing each packet's
/// sequence number and payload to `on_packet`.
pub async fn read_opus(track: Arc<dyn TrackRemote>, mut on_packet: impl FnMut(u16, Vec<u8>)) {
    while let Some(ev) = track.poll().await {
        match ev {
            TrackRemoteEvent::OnRtpPacket(p) if !p.payload.is_empty() => {
                on_packet(p.header.sequence_number, p.payload.to_vec())
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}
