//! H.264 access units from RTP: a small reorder buffer in front of the
//! `rtc` crate's depacketizer (RFC 6184 single NAL, STAP-A, FU-A).
//!
//! Packets are put back in sequence order (up to [`REORDER_PACKETS`] or
//! [`REORDER_WAIT`] of waiting for a gap to fill); a frame ends at the
//! marker bit or when the timestamp moves on. After a loss, frames are
//! dropped until the next keyframe and the caller is told to ask the
//! sender for one; a frame whose first packets may have been in the gap
//! is dropped too (after a gap, a frame counts only from a packet that
//! begins an access unit: a keyframe that lost its head would decode as
//! garbage). Time is passed in; nothing here reads a clock.

use super::seq::SeqExtender;
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most packets held while waiting for a missing one.
pub const REORDER_PACKETS: usize = 128;
/// Longest a gap is waited for before it counts as lost: long enough for
/// a NACK and its retransmission to come back through a full bottleneck
/// queue (a link's 100-200 ms, where losses happen), short enough not to
/// freeze a picture for long. Giving up sooner turns every loss on a slow
/// link into a keyframe request and a freeze; browsers wait longer still.
pub const REORDER_WAIT: Duration = Duration::from_millis(300);
/// Largest access unit assembled (a 4K keyframe fits comfortably).
pub const MAX_ACCESS_UNIT: usize = 4 * 1024 * 1024;

/// What the assembler has for the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// A complete access unit (Annex B).
    Frame {
        /// NAL units with start codes.
        data: Vec<u8>,
        /// Holds an IDR slice.
        keyframe: bool,
        /// RTP timestamp (90 kHz).
        rtp_timestamp: u32,
    },
    /// Decoding cannot go on without a keyframe: ask the sender (PLI).
    NeedKeyframe,
}

#[derive(Debug)]
struct Pending {
    payload: Bytes,
    timestamp: u32,
    marker: bool,
    arrived: Duration,
}

/// Reassembles one H.264 RTP stream.
pub struct H264Assembler {
    depacketizer: H264Packet,
    seq: SeqExtender,
    buffer: BTreeMap<u64, Pending>,
    next: Option<u64>,
    frame: Vec<u8>,
    frame_ts: Option<u32>,
    frame_broken: bool,
    /// Waiting for a keyframe (at start and after any loss).
    need_keyframe: bool,
    /// After a gap (and at the start): frames count only from a packet
    /// that begins an access unit.
    after_gap: bool,
    lost: u64,
}

impl Default for H264Assembler {
    fn default() -> Self {
        Self::new()
    }
}

impl H264Assembler {
    /// A new assembler, waiting for a keyframe.
    pub fn new() -> Self {
        Self {
            depacketizer: H264Packet::default(),
            seq: SeqExtender::default(),
            buffer: BTreeMap::new(),
            next: None,
            frame: Vec::new(),
            frame_ts: None,
            frame_broken: false,
            need_keyframe: true,
            after_gap: true,
            lost: 0,
        }
    }

    /// Packets declared lost so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Whether frames are being dropped until a keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Takes one RTP packet (`now` is its arrival time); returns what it
    /// completed, in order.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: Bytes, now: Duration) -> Vec<Assembled> {
        let mut out = Vec::new();
        let ext = self.seq.extend(seq);
        let next = *self.next.get_or_insert(ext);
        if ext < next || self.buffer.contains_key(&ext) {
            return out; // late or duplicate
        }
        self.buffer.insert(ext, Pending { payload, timestamp, marker, arrived: now });
        self.drain(now, &mut out);
        out
    }

    /// Gives up on gaps that waited too long (call on a timer, or with
    /// each packet, which `push` does).
    pub fn poll(&mut self, now: Duration) -> Vec<Assembled> {
        let mut out = Vec::new();
        self.drain(now, &mut out);
        out
    }

    fn drain(&mut self, now: Duration, out: &mut Vec<Assembled>) {
        loop {
            let Some(next) = self.next else { return };
            if let Some(p) = self.buffer.remove(&next) {
                self.next = Some(next + 1);
                self.process(p, out);
                continue;
            }
            // A gap. Wait for it, within limits.
            let Some((&first, oldest)) = self.buffer.iter().next() else { return };
            let waited = now.saturating_sub(oldest.arrived);
            if self.buffer.len() < REORDER_PACKETS && waited < REORDER_WAIT {
                return;
            }
            self.lost += first - next;
            self.next = Some(first);
            self.loss(out);
        }
    }

    fn loss(&mut self, out: &mut Vec<Assembled>) {
        self.frame_broken = true;
        self.after_gap = true;
        self.depacketizer = H264Packet::default();
        if !self.need_keyframe {
            self.need_keyframe = true;
            out.push(Assembled::NeedKeyframe);
        }
    }

    fn process(&mut self, p: Pending, out: &mut Vec<Assembled>) {
        // A new timestamp closes the previous frame even if its marker was lost.
        if self.frame_ts.is_some_and(|ts| ts != p.timestamp) {
            self.finish(out);
        }
        if self.after_gap {
            if self.frame_ts.is_none() && starts_access_unit(&p.payload) {
                self.after_gap = false;
            } else {
                self.frame_broken = true;
            }
        }
        self.frame_ts = Some(p.timestamp);
        match depacketize(&mut self.depacketizer, &p.payload) {
            Ok(nal) => {
                if self.frame.len() + nal.len() > MAX_ACCESS_UNIT {
                    self.frame_broken = true;
                } else {
                    self.frame.extend_from_slice(&nal);
                }
            }
            Err(_) => self.loss(out),
        }
        if p.marker {
            self.finish(out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Assembled>) {
        let data = std::mem::take(&mut self.frame);
        let broken = std::mem::replace(&mut self.frame_broken, false);
        let Some(ts) = self.frame_ts.take() else { return };
        if broken || data.is_empty() {
            return;
        }
        let keyframe = crate::media::h264::is_keyframe(&data);
        if self.need_keyframe && !keyframe {
            return;
        }
        self.need_keyframe = false;
        out.push(Assembled::Frame { data, keyframe, rtp_timestamp: ts });
    }
}

/// Whether an RTP payload (RFC 6184, packetization mode 1) begins an
/// access unit: it starts with an SEI, SPS, PPS or access unit delimiter,
/// or with the first slice of a picture (`first_mb_in_slice` is 0: the
/// slice header's first bit is set), whole, first in a STAP-A, or as the
/// start of an FU-A.
pub fn starts_access_unit(payload: &[u8]) -> bool {
    let begins = |nal_type: u8, slice_header: Option<&u8>| match nal_type {
        6..=9 => true,
        1 | 5 => slice_header.is_some_and(|b| b & 0x80 != 0),
        _ => false,
    };
    let Some(&header) = payload.first() else { return false };
    match header & 0x1f {
        // STAP-A: header, 16-bit size, then the first NAL unit.
        24 => payload.get(3).is_some_and(|h| begins(h & 0x1f, payload.get(4))),
        // FU-A: indicator, FU header (S bit, type), then the NAL payload.
        28 => payload.get(1).is_some_and(|fu| fu & 0x80 != 0 && begins(fu & 0x1f, payload.get(2))),
        kind => begins(kind, payload.get(1)),
    }
}

/// Depacketizes one payload, first checking what the `rtc` depacketizer
/// would index without checking (a STAP-A whose last length field is cut
/// off would otherwise panic it).
fn depacketize(d: &mut H264Packet, payload: &Bytes) -> Result<Bytes, ()> {
    const STAP_A: u8 = 24;
    if payload.first().is_some_and(|b| b & 0x1f == STAP_A) {
        let mut at = 1;
        while at < payload.len() {
            if at + 2 > payload.len() {
                return Err(());
            }
            let size = (payload[at] as usize) << 8 | payload[at + 1] as usize;
            at += 2 + size;
        }
        if at != payload.len() {
            return Err(());
        }
    }
    d.depacketize(payload).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A NAL unit; a slice is a picture's first (`first_mb_in_slice` 0).
    fn nal(kind: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0x60 | kind];
        v.extend((0..len).map(|i| (i % 200) as u8 + 1));
        if matches!(kind, 1 | 5) && len > 0 {
            v[1] |= 0x80;
        }
        v
    }

    /// Packets of one frame: SPS+PPS in a STAP-A and an FU-A IDR for a
    /// keyframe, one single-NAL P slice otherwise.
    fn frame_packets(keyframe: bool) -> Vec<(Vec<u8>, bool)> {
        if keyframe {
            let (sps, pps) = (nal(7, 10), nal(8, 4));
            let mut stap = vec![24];
            for n in [&sps, &pps] {
                stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
                stap.extend_from_slice(n);
            }
            let idr = nal(5, 3000);
            let mut packets = vec![(stap, false)];
            let chunks: Vec<&[u8]> = idr[1..].chunks(1000).collect();
            for (i, c) in chunks.iter().enumerate() {
                let start = if i == 0 { 0x80 } else { 0 };
                let end = if i == chunks.len() - 1 { 0x40 } else { 0 };
                let mut p = vec![0x60 | 28, start | end | 5];
                p.extend_from_slice(c);
                packets.push((p, i == chunks.len() - 1));
            }
            packets
        } else {
            vec![(nal(1, 500), true)]
        }
    }

    struct Stream {
        seq: u16,
        ts: u32,
        packets: Vec<(u16, u32, bool, Bytes)>,
    }

    impl Stream {
        fn new(seq: u16) -> Self {
            Self { seq, ts: 1000, packets: Vec::new() }
        }
        fn frame(&mut self, keyframe: bool) {
            for (p, marker) in frame_packets(keyframe) {
                self.packets.push((self.seq, self.ts, marker, Bytes::from(p)));
                self.seq = self.seq.wrapping_add(1);
            }
            self.ts = self.ts.wrapping_add(3000);
        }
    }

    fn run(a: &mut H264Assembler, packets: &[(u16, u32, bool, Bytes)]) -> Vec<Assembled> {
        let mut out = Vec::new();
        for (i, (s, t, m, p)) in packets.iter().enumerate() {
            out.extend(a.push(*s, *t, *m, p.clone(), MS * i as u32));
        }
        out
    }

    fn frames(out: &[Assembled]) -> Vec<bool> {
        out.iter()
            .filter_map(|a| if let Assembled::Frame { keyframe, .. } = a { Some(*keyframe) } else { None })
            .collect()
    }

    #[test]
    fn reassembles_in_order_and_across_the_sequence_wrap() {
        let mut s = Stream::new(65530);
        s.frame(true);
        for _ in 0..5 {
            s.frame(false);
        }
        let out = run(&mut H264Assembler::new(), &s.packets);
        assert_eq!(frames(&out), vec![true, false, false, false, false, false]);
        let Assembled::Frame { data, .. } = &out[0] else { panic!() };
        let types: Vec<u8> = crate::media::h264::nal_units(data).filter_map(crate::media::h264::nal_type).collect();
        assert_eq!(types, vec![7, 8, 5]);
        assert_eq!(crate::media::h264::nal_units(data).last().unwrap().len(), 3001);
    }

    #[test]
    fn reorders_within_the_window() {
        let mut s = Stream::new(100);
        s.frame(true);
        s.frame(false);
        s.packets.swap(1, 3);
        s.packets.swap(2, 4);
        let out = run(&mut H264Assembler::new(), &s.packets);
        assert_eq!(frames(&out), vec![true, false]);
    }

    #[test]
    fn drops_frames_until_a_keyframe_before_start_and_after_loss() {
        let mut s = Stream::new(7);
        s.frame(false); // before any keyframe: dropped
        s.frame(true);
        s.frame(false);
        s.frame(false);
        s.frame(false);
        s.frame(true);
        s.frame(false);
        // Lose the second P frame after the first keyframe.
        let lost_seq = s.packets[1 + 4 + 1].0;
        s.packets.retain(|p| p.0 != lost_seq);
        let mut a = H264Assembler::new();
        let mut out = run(&mut a, &s.packets);
        out.extend(a.poll(Duration::from_secs(1)));
        assert_eq!(frames(&out), vec![true, false, true, false]);
        assert_eq!(out.iter().filter(|a| **a == Assembled::NeedKeyframe).count(), 1);
        assert_eq!(a.lost(), 1);
    }

    #[test]
    fn a_gap_is_given_up_after_the_wait() {
        let mut s = Stream::new(0);
        s.frame(true);
        s.frame(false);
        s.frame(false);
        let mut a = H264Assembler::new();
        // Deliver all but packet 4 (the first P frame), at time 0.
        let mut out = Vec::new();
        for (sq, t, m, p) in s.packets.iter().filter(|p| p.0 != 4) {
            out.extend(a.push(*sq, *t, *m, p.clone(), Duration::ZERO));
        }
        assert_eq!(frames(&out), vec![true]);
        let later = a.poll(REORDER_WAIT + MS);
        assert!(later.contains(&Assembled::NeedKeyframe));
    }

    #[test]
    fn a_keyframe_whose_head_was_lost_is_not_passed_on_the_next_whole_one_is() {
        let mut s = Stream::new(100);
        for keyframe in [true, false, true, false, true, false, true] {
            s.frame(keyframe);
        }
        // Keyframes take 4 packets (STAP-A, three FU-A), P frames one:
        // 100-103 K, 104 P, 105-108 K, 109 P, 110-113 K, 114 P, 115-118 K.
        // A gap takes the second keyframe's tail, a P frame and the third
        // keyframe's head (its STAP-A and first FU-A): only that
        // keyframe's last fragments arrive after the gap.
        let lost = [108u16, 109, 110, 111];
        let mut a = H264Assembler::new();
        let mut out = Vec::new();
        for (i, (sq, t, m, p)) in s.packets.iter().enumerate() {
            if lost.contains(sq) {
                continue;
            }
            let now = Duration::from_millis(i as u64 * 400);
            out.extend(a.poll(now));
            out.extend(a.push(*sq, *t, *m, p.clone(), now));
        }
        // The first keyframe and P frame, a keyframe request, then only
        // the last keyframe: not the headless third, nor the P after it.
        assert_eq!(frames(&out), vec![true, false, true], "{out:?}");
        assert!(out.contains(&Assembled::NeedKeyframe));
        let Some(Assembled::Frame { data, .. }) = out.iter().rev().find(|o| matches!(o, Assembled::Frame { .. }))
        else {
            unreachable!()
        };
        assert_eq!(crate::media::h264::nal_units(data).next().map(|n| n[0] & 0x1f), Some(7));
    }

    #[test]
    fn what_begins_an_access_unit() {
        let slice = |kind: u8, first: bool| vec![0x60 | kind, if first { 0x88 } else { 0x08 }, 1, 2];
        assert!(starts_access_unit(&slice(5, true)));
        assert!(!starts_access_unit(&slice(1, false)));
        assert!(starts_access_unit(&[0x67, 0x42]));
        assert!(starts_access_unit(&[0x09, 0x10]));
        // STAP-A with an SPS first; FU-A start of a first slice; FU-A middle.
        assert!(starts_access_unit(&[24, 0, 2, 0x67, 0x42]));
        assert!(starts_access_unit(&[0x7c, 0x85, 0x88]));
        assert!(!starts_access_unit(&[0x7c, 0x05, 0x88]));
        assert!(!starts_access_unit(&[0x7c, 0x85, 0x08]));
        for bad in [&[][..], &[24], &[24, 0], &[28], &[28, 0x85], &[5]] {
            assert!(!starts_access_unit(bad));
        }
    }

    #[test]
    fn hostile_payloads_are_losses_not_panics() {
        let mut a = H264Assembler::new();
        let nasty: Vec<Vec<u8>> = vec![
            vec![],
            vec![24],
            vec![24, 0],
            vec![24, 0, 5, 1],
            vec![24, 0, 1, 0x65, 0],
            vec![28],
            vec![28, 0x85],
            vec![0x1f, 1, 2],
            vec![0; 3],
        ];
        for (i, p) in nasty.into_iter().enumerate() {
            a.push(i as u16, 0, true, Bytes::from(p), Duration::ZERO);
        }
        let mut s = Stream::new(9);
        s.frame(true);
        assert_eq!(frames(&run(&mut a, &s.packets)), vec![true]);
    }
}
