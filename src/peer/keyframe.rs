//! An interceptor that lets keyframe requests (PLI, FIR) from a receiver
//! reach the application.
//!
//! The default interceptor chain acts on inbound RTCP (reports, NACKs,
//! congestion feedback) and stops it there. Only the application can answer
//! a keyframe request, so this one, placed last, marks PLI and FIR for
//! delivery; they then arrive on the local track's `poll()`. It also notes
//! when RTCP last came (see [`super::heard`]).

use super::heard::RtcpHeard;
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Marks inbound PLI/FIR for the application and drops other inbound RTCP
/// (the interceptors before it have already used it).
#[derive(Default)]
pub struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
    heard: Option<Arc<RtcpHeard>>,
}

impl KeyframeRequests {
    /// Also records when RTCP arrives in `heard`.
    pub fn noting(heard: Option<Arc<RtcpHeard>>) -> Self {
        Self { heard, ..Self::default() }
    }
}

/// Whether an RTCP packet asks for a keyframe.
#[allow(clippy::borrowed_box)] // the chain hands out `&Box<dyn Packet>`
pub fn is_keyframe_request(p: &Box<dyn rtc::rtcp::Packet>) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if let Some(heard) = &self.heard {
                heard.touch(msg.now);
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
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
