//! An interceptor for the inbound RTCP the application needs, which the
//! default chain would stop: keyframe requests (PLI, FIR) are marked for
//! delivery, so they reach the local track's `poll()`; and what tells how
//! a member's downstream link is doing is copied out for its estimate
//! ([`LinkFeedback`]): receiver-report loss and round trip for our own
//! streams, REMB, the target webrtc-rs's congestion controller attaches
//! to transport-wide feedback, and how many distinct video packets the
//! receiver has asked for again (NACKs: loss, within tens of
//! milliseconds). It also notes when RTCP last came (see
//! [`super::heard`]).
//!
//! [`MeteredGcc`] is the congestion controller itself: webrtc-rs's GCC,
//! with [`TransportMeter`] reading the same transport-wide feedback beside
//! it (what got through, what was lost, how long the queue).
//!
//! It sits just below webrtc-rs's sender-report interceptor, so on the way
//! out it sees our sender reports go by and remembers when each left: a
//! receiver report quotes the last one (LSR) and how long it held it
//! (DLSR), which gives the round trip webrtc-rs leaves at zero.

use super::heard::RtcpHeard;
use super::pacer::{PacerRate, Through};
use crate::bwe::estimate::Feedback;
use crate::bwe::transport::{Delivery, TransportMeter};
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::interceptor::{BandwidthEstimator, EstimatorStats, Gcc, PacketReport};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where [`RtcpTap`] slots into the interceptor chain: after the receiver
/// and before the sender report interceptors (10 000 and 11 000), so
/// outbound sender reports pass it.
pub const SLOT: usize = 10_500;
/// Sender reports remembered per video stream (audio's count too; four a
/// second each: two seconds, past any report's round trip).
const SENT_KEPT: usize = 16;
/// Feedback items kept until the session takes them.
const FEEDBACK_KEPT: usize = 256;
/// NACKed sequence numbers remembered, so a packet asked for again
/// (receivers repeat NACKs) counts once.
const NACKS_KEPT: usize = 1024;

/// Feedback about one member's downstream, gathered on the connection's
/// driver and taken by its session.
#[derive(Default)]
pub struct LinkFeedback {
    items: Mutex<VecDeque<(Instant, Feedback)>>,
    /// Distinct video packets NACKed so far that had left lately (see
    /// [`RtcpTap`]'s NACK count).
    nacked: AtomicU64,
}

impl LinkFeedback {
    /// Nothing yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn push(&self, at: Instant, f: Feedback) {
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        if items.len() >= FEEDBACK_KEPT {
            items.pop_front();
        }
        items.push_back((at, f));
    }

    /// Takes everything gathered so far, oldest first.
    pub fn take(&self) -> Vec<(Instant, Feedback)> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
    }

    /// Distinct video packets the receiver has asked for again so far,
    /// of those that had crossed the link within a second.
    pub fn nacked(&self) -> u64 {
        self.nacked.load(Ordering::Relaxed)
    }
}

/// webrtc-rs's GCC, with a [`TransportMeter`] reading the same
/// transport-wide feedback into [`Feedback::Transport`].
pub struct MeteredGcc {
    gcc: Gcc,
    meter: TransportMeter,
    feedback: Arc<LinkFeedback>,
    epoch: Instant,
}

impl MeteredGcc {
    /// GCC starting at `initial` within `min..=max` bits/s; summaries go to `feedback`.
    pub fn new(initial: f64, min: f64, max: f64, feedback: Arc<LinkFeedback>) -> Self {
        Self { gcc: Gcc::new(initial, min, max), meter: TransportMeter::new(), feedback, epoch: Instant::now() }
    }
}

impl BandwidthEstimator for MeteredGcc {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.gcc.on_reports(now, reports);
        let deliveries: Vec<Delivery> = reports
            .iter()
            // Arrived, but with no usable time: says nothing either way.
            .filter(|r| !r.arrived || r.arrival.is_some())
            .map(|r| Delivery {
                departure: r.departure.saturating_duration_since(self.epoch),
                arrival: r.arrival.filter(|_| r.arrived),
                size: r.size,
            })
            .collect();
        if let Some(summary) = self.meter.feed(now.saturating_duration_since(self.epoch), &deliveries) {
            self.feedback.push(now, Feedback::Transport(summary));
        }
    }

    fn target_bitrate(&self) -> f64 {
        self.gcc.target_bitrate()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.gcc.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.gcc.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.gcc.stats()
    }
}

/// Marks PLI/FIR for the application, copies link feedback out, drops
/// other inbound RTCP (the interceptors before it have used it).
#[derive(Default)]
pub struct RtcpTap {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    heard: Option<Arc<RtcpHeard>>,
    feedback: Option<Arc<LinkFeedback>>,
    /// The connection's pacer: which first sends have left, and their size.
    pacer: Option<Arc<PacerRate>>,
    /// The last receiver report about our video, placed in what left.
    last_report: Option<Mark>,
    /// Our outgoing video streams (whose reports describe the downstream).
    video: HashSet<u32>,
    /// Sender reports sent: SSRC, middle 32 bits of the NTP time, when.
    sent: VecDeque<(u32, u32, Instant)>,
    /// The congestion controller's target (it is attached only when it
    /// changes; transport feedback that leaves it alone confirms it).
    target: Option<f64>,
    target_told: Option<Instant>,
    /// Video packets NACKed lately (SSRC, sequence number), oldest first.
    nacked: VecDeque<(u32, u16)>,
    nacked_set: HashSet<(u32, u16)>,
}

/// A receiver report placed in what our pacer let out.
#[derive(Clone, Copy, Debug)]
struct Mark {
    at: Instant,
    /// Extended highest sequence number received.
    highest: u32,
    /// Cumulative packets lost, as the receiver counts them.
    lost: u32,
    through: Through,
}

/// The link between two receiver reports, from our side's record.
#[derive(Clone, Copy, Debug)]
struct Between {
    /// Of the packets that left us, the share the link lost (of 256).
    fraction_lost: u8,
    /// Wire bits/s of video that reached the receiver, link loss not
    /// taken out.
    reached: u32,
}

/// Receiver reports closer together than this give no rate (one frame
/// more or less under the highest sequence number would sway it).
const REACHED_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// A NACK for a packet that left longer ago than this is not counted as
/// a loss of the link now.
const NACK_FRESH: Duration = Duration::from_millis(500);

/// How often a target that did not change is confirmed.
const TARGET_CONFIRM: Duration = Duration::from_millis(250);

impl RtcpTap {
    /// Also records when RTCP arrives in `heard`, and link feedback in
    /// `link` (with the connection's pacer, which tells what each report's
    /// highest sequence number covers); `target` is the congestion
    /// controller's starting target, if one runs.
    pub fn new(
        heard: Option<Arc<RtcpHeard>>,
        link: Option<(Arc<LinkFeedback>, Arc<PacerRate>)>,
        target: Option<f64>,
    ) -> Self {
        let (feedback, pacer) = link.unzip();
        Self { heard, feedback, pacer, target, ..Self::default() }
    }

    /// What happened on the link between the receiver's last report and
    /// this one, worked out from our own record of which packets left
    /// (see [`Between`]), when both reports fall within it.
    fn between(&mut self, r: &ReceptionReport, now: Instant) -> Option<Between> {
        let through = self.pacer.as_ref()?.left_through(r.last_sequence_number as u16);
        let this = through.map(|t| Mark { at: now, highest: r.last_sequence_number, lost: r.total_lost, through: t });
        let last = std::mem::replace(&mut self.last_report, this)?;
        let this = this?;
        let secs = now.saturating_duration_since(last.at).as_secs_f64();
        let expected = this.highest.wrapping_sub(last.highest) as u64;
        let left = this.through.packets.checked_sub(last.through.packets)?;
        let bits = this.through.bits.checked_sub(last.through.bits)?;
        if secs < REACHED_MIN_INTERVAL.as_secs_f64() || expected > u16::MAX as u64 || left == 0 || left > expected {
            return None;
        }
        // The receiver counts as lost every sequence number it never got,
        // those our pacer dropped unsent among them; the link lost the rest.
        let lost = (this.lost as i64 - last.lost as i64).max(0) as u64;
        let link_lost = lost.saturating_sub(expected - left).min(left);
        Some(Between {
            fraction_lost: ((link_lost as f64 / left as f64) * 256.0).round().min(255.0) as u8,
            reached: (bits as f64 / secs).min(u32::MAX as f64) as u32,
        })
    }

    fn tell_target(&mut self, now: Instant, changed: Option<f64>) {
        let Some(feedback) = &self.feedback else { return };
        if let Some(t) = changed {
            self.target = Some(t);
        }
        let due =
            changed.is_some() || self.target_told.is_none_or(|t| now.saturating_duration_since(t) >= TARGET_CONFIRM);
        if let (Some(t), true) = (self.target, due) {
            feedback.push(now, Feedback::Delay(t.clamp(0.0, u32::MAX as f64) as u32));
            self.target_told = Some(now);
        }
    }

    fn report(&mut self, r: &ReceptionReport, now: Instant) {
        if self.feedback.is_none() || !self.video.contains(&r.ssrc) {
            return;
        }
        let between = self.between(r, now);
        let Some(feedback) = &self.feedback else { return };
        let rtt = (r.last_sender_report != 0)
            .then(|| self.sent.iter().rev().find(|(ssrc, mid, _)| *ssrc == r.ssrc && *mid == r.last_sender_report))
            .flatten()
            .and_then(|&(_, _, at)| {
                let held = Duration::from_secs_f64(r.delay as f64 / 65536.0);
                now.checked_duration_since(at)?.checked_sub(held)
            });
        // The receiver's own fraction counts packets our pacer dropped
        // unsent as lost; ours does not (the session corrects the
        // receiver's when ours is not known).
        let (fraction_lost, reached) = between.map_or((r.fraction_lost, None), |b| (b.fraction_lost, Some(b.reached)));
        // Bits that left after the highest packet the receiver has.
        let queued = self.pacer.as_ref().and_then(|p| {
            let through = p.left_through(r.last_sequence_number as u16)?;
            Some(p.left_bits().saturating_sub(through.bits).min(u32::MAX as u64) as u32)
        });
        feedback.push(now, Feedback::Report { fraction_lost, rtt, reached, queued });
    }

    /// Counts the video packets a NACK asks for that were not asked for
    /// lately and that left the pacer within [`NACK_FRESH`]: packets the
    /// pacer dropped unsent never crossed the link, and a loss told long
    /// after the packet left (its gap showed only when the next packet
    /// came, after a pause) says nothing of the link now.
    fn nack(&mut self, nack: &TransportLayerNack, now: Instant) {
        let Some(feedback) = &self.feedback else { return };
        if !self.video.contains(&nack.media_ssrc) {
            return;
        }
        let mut fresh = 0;
        for pair in &nack.nacks {
            for seq in pair.packet_list() {
                let key = (nack.media_ssrc, seq);
                if self.nacked_set.insert(key) {
                    let left = self.pacer.as_ref().map_or(Some(now), |p| p.left_at(seq));
                    if left.is_some_and(|at| now.saturating_duration_since(at) <= NACK_FRESH) {
                        fresh += 1;
                    }
                    self.nacked.push_back(key);
                    if self.nacked.len() > NACKS_KEPT {
                        if let Some(old) = self.nacked.pop_front() {
                            self.nacked_set.remove(&old);
                        }
                    }
                }
            }
        }
        feedback.nacked.fetch_add(fresh, Ordering::Relaxed);
    }
}

/// Whether an RTCP packet asks for a keyframe.
#[allow(clippy::borrowed_box)] // the chain hands out `&Box<dyn Packet>`
pub fn is_keyframe_request(p: &Box<dyn rtc::rtcp::Packet>) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let changed = match msg.message.get(&Attribute::TargetBitrateChanged { bits_per_second: 0.0 }) {
            Some(Attribute::TargetBitrateChanged { bits_per_second }) => Some(*bits_per_second),
            _ => None,
        };
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if changed.is_some() || packets.iter().any(|p| p.as_any().is::<TransportLayerCc>()) {
                self.tell_target(msg.now, changed);
            }
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if let Some(heard) = &self.heard {
                heard.touch(msg.now);
            }
            for p in packets {
                let any = p.as_any();
                if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    rr.reports.iter().for_each(|r| self.report(r, msg.now));
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    sr.reports.iter().for_each(|r| self.report(r, msg.now));
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    self.nack(nack, msg.now);
                } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    if let Some(feedback) = &self.feedback {
                        let bps = if remb.bitrate.is_finite() { remb.bitrate.clamp(0.0, u32::MAX as f32) } else { 0.0 };
                        feedback.push(msg.now, Feedback::Remb(bps as u32));
                    }
                }
            }
            let keep: Vec<Box<dyn rtc::rtcp::Packet>> =
                packets.iter().filter(|p| is_keyframe_request(p)).cloned().collect();
            if keep.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(keep);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for sr in packets.iter().filter_map(|p| p.as_any().downcast_ref::<SenderReport>()) {
                if self.sent.len() >= SENT_KEPT * self.video.len().max(1) {
                    self.sent.pop_front();
                }
                self.sent.push_back((sr.ssrc, (sr.ntp_time >> 16) as u32, msg.now));
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for RtcpTap {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info.mime_type.to_ascii_lowercase().starts_with("video/") {
            self.video.insert(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.video.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
