//! The server's reader of one sender's video track: RTP of every layer
//! (one, or several with simulcast) is reassembled per layer, and
//! [`LayerChoice`] says which access units reach the decoder thread and
//! which layers are refused (above the ingest limit). Keyframe requests go
//! to the layer that needs one: the decoded layer after loss or a decode
//! error, the layer to switch to while the switch waits.

use crate::media::h264::sps_size;
use crate::peer::layers::{LayerChoice, Verdict};
use crate::peer::receive::PLI_INTERVAL;
use crate::pipeline::decode::{Queue, VideoDecoder};
use crate::rtp::assembler::{Assembled, H264Assembler};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// What the reader tells its session.
pub trait VideoEvents {
    /// RTP payload bytes arrived (the sender is alive).
    fn packet(&mut self, bytes: usize);
    /// The sender's stream is above the limit: it is not decoded.
    fn refused(&mut self, width: u32, height: u32, limit: (u32, u32));
    /// The decoded layer or its size changed.
    fn layer(&mut self, rid: Option<&str>, size: Option<(u32, u32)>);
}

/// Reads `track` until it ends, feeding `decoder` from the layer that
/// suits `need` (the size the sender is shown at; see `room::hints`).
pub async fn read_video(
    track: Arc<dyn TrackRemote>,
    decoder: VideoDecoder,
    limit: (u32, u32),
    mut need: watch::Receiver<Option<(u32, u32)>>,
    mut events: impl VideoEvents,
) {
    let start = Instant::now();
    let mut choice = LayerChoice::new(limit);
    choice.set_need(*need.borrow_and_update());
    let mut assemblers: HashMap<u32, H264Assembler> = HashMap::new();
    let mut last_pli: HashMap<u32, Instant> = HashMap::new();
    let mut dropping = false;
    let mut shown: Option<(u32, Option<(u32, u32)>)> = None;
    for ssrc in track.ssrcs().await {
        choice.layer(ssrc, track.rid(ssrc).await);
    }
    loop {
        let packet = tokio::select! {
            ev = track.poll() => match ev {
                Some(TrackRemoteEvent::OnRtpPacket(p)) => p,
                Some(TrackRemoteEvent::OnOpen(init)) => {
                    choice.layer(init.ssrc, init.rid.clone());
                    continue;
                }
                Some(TrackRemoteEvent::OnEnded) | None => break,
                Some(_) => continue,
            },
            changed = need.changed() => {
                if changed.is_err() {
                    break;
                }
                choice.set_need(*need.borrow_and_update());
                continue;
            }
        };
        events.packet(packet.payload.len());
        let ssrc = packet.header.ssrc;
        choice.layer(ssrc, None);
        // Layers beyond the bound have no assembler: nothing of theirs is kept.
        if !assemblers.contains_key(&ssrc) && assemblers.len() >= 8 {
            continue;
        }
        let assembler = assemblers.entry(ssrc).or_default();
        let h = &packet.header;
        let units = assembler.push(h.sequence_number, h.timestamp, h.marker, packet.payload, start.elapsed());
        let mut need_keyframe = decoder.keyframe_needed.load(Ordering::Relaxed);
        for unit in units {
            let Assembled::Frame { data, keyframe, .. } = unit else {
                if choice.active().is_some_and(|a| a.ssrc == ssrc) {
                    need_keyframe = true;
                }
                continue;
            };
            match choice.unit(ssrc, keyframe, if keyframe { sps_size(&data) } else { None }) {
                Verdict::Skip => {}
                Verdict::Refuse { width, height } => events.refused(width, height, limit),
                Verdict::Decode => {
                    if dropping && !keyframe {
                        continue;
                    }
                    dropping = false;
                    match decoder.push(data) {
                        Queue::Ok => {}
                        Queue::Full => {
                            // The decoder fell behind: skip to a keyframe.
                            dropping = true;
                            need_keyframe = true;
                        }
                        Queue::Closed => return,
                    }
                }
            }
        }
        let active = choice.active();
        let active_ssrc = active.map(|a| a.ssrc);
        if active.map(|a| (a.ssrc, a.size)) != shown {
            shown = active.map(|a| (a.ssrc, a.size));
            events.layer(active.and_then(|a| a.rid), active.and_then(|a| a.size));
        }
        // Who needs a keyframe: the layer to switch to, else the decoded
        // one (after loss, a decode error, or falling behind).
        let wanted = choice.switch_pending().or_else(|| {
            let waiting = active_ssrc.and_then(|a| assemblers.get(&a)).is_some_and(H264Assembler::waiting_for_keyframe);
            (need_keyframe || dropping || waiting).then_some(active_ssrc).flatten()
        });
        // And layers whose size is unknown (their first keyframe was lost).
        // (No allocation per packet: `plis` only grows when one is due.)
        let mut plis: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
        for target in wanted.into_iter().chain(choice.unsized_layers()) {
            let due = last_pli.get(&target).is_none_or(|t| t.elapsed() >= PLI_INTERVAL);
            if due {
                last_pli.insert(target, Instant::now());
                plis.push(Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: target }));
            }
        }
        if !plis.is_empty() && track.write_rtcp(plis).await.is_err() {
            break;
        }
    }
}
