//! A pacer for one connection's outgoing RTP: packets leave at the rate
//! the member's link carries (its estimate), so a keyframe waits in this
//! queue instead of overflowing a bottleneck's, and audio always goes
//! first, so it is never starved or delayed by video on the same link.
//!
//! webrtc-rs has a pacer, but it sends everything in arrival order:
//! behind a keyframe at 300 kbps, audio would wait for a third of a
//! second. This one keeps two queues. The rate comes from the session
//! through [`PacerRate`], which also tells the session how much video
//! waits (so it can skip frames, from the encoder's side, before the
//! queue grows old); nothing here reads a clock (the chain hands every
//! call its instant).
//!
//! Retransmissions pass here too, ahead of new video (a resend is worth
//! most while the receiver still waits for it). On a lossy bottleneck a
//! receiver asks for the same packet again before the first resend got
//! through: a resend of a packet already waiting, or resent in the last
//! [`RESEND_AGAIN`], or resent [`MAX_RESENDS`] times already, is dropped,
//! and so is any resend once the resends waiting ahead of it would take
//! more than [`RESEND_BACKLOG`] (it would come too late to help).

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Video packets held before the oldest are dropped (about 5 s at 300 kbps).
const VIDEO_QUEUE: usize = 1500;
/// Past this much waiting in resends, further resends are dropped.
pub const RESEND_BACKLOG: Duration = Duration::from_millis(200);
/// A packet is resent at most once in this long: a round trip through a
/// full bottleneck queue, and then some (a second resend for a first one
/// that was lost too).
pub const RESEND_AGAIN: Duration = Duration::from_millis(150);
/// And at most this many times.
pub const MAX_RESENDS: u8 = 3;
/// How long a resent packet is remembered.
const RESENT_KEPT: Duration = Duration::from_secs(3);
/// First sends remembered for [`PacerRate::left_through`] (seconds of
/// video at any rate a downstream runs at; receiver reports come each
/// second).
const LEFT_KEPT: usize = 2048;
/// What SRTP's tag, UDP and IPv4 add to each RTP packet on the wire, bits.
const WIRE_OVERHEAD_BITS: u64 = (10 + 8 + 20) * 8;
/// Most a burst may release at once, as time at the rate.
const BURST: Duration = Duration::from_millis(5);
/// A burst may always carry at least this (two full packets).
const MIN_BURST_BITS: f64 = 2.0 * 1250.0 * 8.0;

/// The rate a pacer sends at, bits/s, set by the session (0: not
/// paced), and what waits in it.
#[derive(Debug, Default)]
pub struct PacerRate {
    rate: AtomicU64,
    queued_bits: AtomicU64,
    dropped: AtomicU64,
    /// Video bits that came in: first sends, and resends let through.
    sent_bits: AtomicU64,
    /// Video packets that came in to be sent the first time.
    sent_packets: AtomicU64,
    /// Video packets dropped unsent (flushed, or the queue full): the
    /// receiver will ask for them, but the link did not lose them.
    unsent_packets: AtomicU64,
    resent_bits: AtomicU64,
    /// First sends that have left, newest last: sequence number and the
    /// wire bits of all first sends that left up to it (see
    /// [`PacerRate::left_through`]).
    left: std::sync::Mutex<VecDeque<Left>>,
    /// Drop the video waiting (asked by the session, done by the pacer).
    flush: std::sync::atomic::AtomicBool,
}

impl PacerRate {
    /// Not paced until a rate is set.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Paces at `bps` from now on.
    pub fn set(&self, bps: u64) {
        self.rate.store(bps, Ordering::Relaxed);
    }

    /// Drops the video waiting now (stale: the receiver starts again on a
    /// keyframe). Counted as dropped.
    pub fn flush_video(&self) {
        self.flush.store(true, Ordering::Relaxed);
    }

    /// The rate now.
    pub fn get(&self) -> u64 {
        self.rate.load(Ordering::Relaxed)
    }

    /// How long the video waiting now will take to leave.
    pub fn backlog(&self) -> Duration {
        let rate = self.get();
        if rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.queued_bits.load(Ordering::Relaxed) as f64 / rate as f64)
    }

    /// Video packets dropped (queue full, resends refused).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Video bits that came in so far: first sends and resends.
    pub fn video_bits(&self) -> (u64, u64) {
        (self.sent_bits.load(Ordering::Relaxed), self.resent_bits.load(Ordering::Relaxed))
    }

    /// The first sends that have left so far, up to the newest one at or
    /// before sequence number `seq` (a receiver report's highest sequence
    /// number received): how many, and their wire bits. Between two
    /// reports, the difference is what reached the receiver (before link
    /// loss), and which of the sequence numbers in between ever left.
    /// `None` when no such packet is remembered.
    pub fn left_through(&self, seq: u16) -> Option<Through> {
        let left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        // Newest first: the first at or before `seq` (sequence numbers wrap).
        left.iter()
            .rev()
            .find(|l| (seq.wrapping_sub(l.seq) as i16) >= 0)
            .map(|l| Through { packets: l.packets, bits: l.bits })
    }

    /// Wire bits of all the first sends that have left so far.
    pub fn left_bits(&self) -> u64 {
        self.left.lock().unwrap_or_else(|e| e.into_inner()).back().map_or(0, |l| l.bits)
    }

    /// When the first send of sequence number `seq` left, if it did
    /// lately (a packet dropped here unsent never did: the receiver asks
    /// for it, but the link did not lose it).
    pub fn left_at(&self, seq: u16) -> Option<Instant> {
        let left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        left.iter().rev().find(|l| l.seq == seq).map(|l| l.at)
    }

    fn note_left(&self, seq: u16, bits: u64, at: Instant) {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        let (packets, bits) = left.back().map_or((1, bits), |l| (l.packets + 1, l.bits + bits));
        if left.len() >= LEFT_KEPT {
            left.pop_front();
        }
        left.push_back(Left { seq, packets, bits, at });
    }

    /// Video packets that came in so far to be sent the first time, and
    /// how many of those were dropped unsent.
    pub fn video_packets(&self) -> (u64, u64) {
        (self.sent_packets.load(Ordering::Relaxed), self.unsent_packets.load(Ordering::Relaxed))
    }
}

/// A first send that left: its sequence number, how many first sends
/// left up to it and their wire bits, and when.
#[derive(Clone, Copy, Debug)]
struct Left {
    seq: u16,
    packets: u64,
    bits: u64,
    at: Instant,
}

/// First sends that left up to some sequence number, counted from the
/// connection's start (see [`PacerRate::left_through`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Through {
    /// How many.
    pub packets: u64,
    /// Their wire bits.
    pub bits: u64,
}

/// Two-queue pacer (see the module doc).
pub struct Pacer {
    rate: Arc<PacerRate>,
    audio_ssrcs: HashSet<u32>,
    audio: VecDeque<TaggedPacket>,
    video: VecDeque<TaggedPacket>,
    /// Bits that may leave now (negative: audio went ahead on credit).
    tokens: f64,
    refilled: Option<Instant>,
    released: VecDeque<TaggedPacket>,
    read: VecDeque<TaggedPacket>,
    /// Bits of video waiting.
    queued_bits: f64,
    /// Video packets waiting (SSRC, sequence number).
    waiting: HashSet<(u32, u16)>,
    /// Resends at the head of the video queue (they go before new video).
    resends_ahead: usize,
    /// Packets resent lately: when first and last, and how often.
    resent: std::collections::HashMap<(u32, u16), (Instant, Instant, u8)>,
}

impl Pacer {
    /// A pacer following `rate`.
    pub fn new(rate: Arc<PacerRate>) -> Self {
        Self {
            rate,
            audio_ssrcs: HashSet::new(),
            audio: VecDeque::new(),
            video: VecDeque::new(),
            tokens: 0.0,
            refilled: None,
            released: VecDeque::new(),
            read: VecDeque::new(),
            queued_bits: 0.0,
            waiting: HashSet::new(),
            resends_ahead: 0,
            resent: std::collections::HashMap::new(),
        }
    }

    fn key(p: &TaggedPacket) -> Option<(u32, u16)> {
        match &p.message.packet {
            Packet::Rtp(rtp) => Some((rtp.header.ssrc, rtp.header.sequence_number)),
            _ => None,
        }
    }

    fn bits(p: &TaggedPacket) -> f64 {
        match &p.message.packet {
            Packet::Rtp(rtp) => (rtp.marshal_size() * 8) as f64,
            _ => 0.0,
        }
    }

    /// A video packet leaves: first sends are noted for
    /// [`PacerRate::left_through`].
    fn left(&self, p: &TaggedPacket, now: Instant) {
        if let (Some((_, seq)), false) = (Self::key(p), p.message.has(&Attribute::Retransmission)) {
            self.rate.note_left(seq, Self::bits(p) as u64 + WIRE_OVERHEAD_BITS, now);
        }
    }

    fn burst(rate: f64) -> f64 {
        (rate * BURST.as_secs_f64()).max(MIN_BURST_BITS)
    }

    fn refill(&mut self, now: Instant) {
        let rate = self.rate.get() as f64;
        if let Some(last) = self.refilled {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + rate * dt).min(Self::burst(rate));
        }
        self.refilled = Some(now);
    }

    /// Moves what may leave at `now` to the released queue.
    fn release(&mut self, now: Instant) {
        if self.rate.flush.swap(false, Ordering::Relaxed) {
            self.rate.dropped.fetch_add(self.video.len() as u64, Ordering::Relaxed);
            self.rate.unsent_packets.fetch_add(self.video.len() as u64, Ordering::Relaxed);
            // Nor are they resent when the receiver asks.
            for p in self.video.drain(..) {
                if let Some(k) = Self::key(&p) {
                    self.resent.insert(k, (now, now, MAX_RESENDS));
                }
            }
            self.waiting.clear();
            self.queued_bits = 0.0;
            self.resends_ahead = 0;
        }
        if self.rate.get() == 0 {
            for p in &self.video {
                self.left(p, now);
            }
            self.released.extend(self.audio.drain(..).chain(self.video.drain(..)).map(|mut p| {
                p.now = now;
                p
            }));
            self.queued_bits = 0.0;
            self.waiting.clear();
            self.resends_ahead = 0;
            self.rate.queued_bits.store(0, Ordering::Relaxed);
            return;
        }
        self.refill(now);
        // Audio goes at once, on credit if need be.
        while let Some(mut p) = self.audio.pop_front() {
            self.tokens -= Self::bits(&p);
            p.now = now;
            self.released.push_back(p);
        }
        while let Some(head) = self.video.front() {
            let bits = Self::bits(head);
            if self.tokens < bits.min(Self::burst(self.rate.get() as f64)) {
                break;
            }
            self.tokens -= bits;
            self.queued_bits = (self.queued_bits - bits).max(0.0);
            if let Some(mut p) = self.video.pop_front() {
                self.resends_ahead = self.resends_ahead.saturating_sub(1);
                if let Some(k) = Self::key(&p) {
                    self.waiting.remove(&k);
                }
                self.left(&p, now);
                p.now = now;
                self.released.push_back(p);
            }
        }
    }

    fn next_release(&self) -> Option<Instant> {
        let last = self.refilled?;
        if !self.audio.is_empty() {
            return Some(last);
        }
        let head = self.video.front()?;
        let rate = self.rate.get() as f64;
        if rate <= 0.0 {
            return Some(last);
        }
        let need = Self::bits(head).min(Self::burst(rate)) - self.tokens;
        Some(last + Duration::from_secs_f64((need / rate).max(0.0001)))
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Pacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let now = msg.now;
        match &msg.message.packet {
            Packet::Rtp(rtp) if self.audio_ssrcs.contains(&rtp.header.ssrc) => self.audio.push_back(msg),
            Packet::Rtp(rtp) => {
                let key = (rtp.header.ssrc, rtp.header.sequence_number);
                let resend = msg.message.has(&Attribute::Retransmission);
                if resend {
                    let rate = self.rate.get() as f64;
                    let ahead = self.resends_ahead as f64 * Self::bits(&msg);
                    let backlog = if rate > 0.0 { ahead / rate } else { 0.0 };
                    if self.resent.len() > 2048 {
                        self.resent.retain(|_, (first, _, _)| now.saturating_duration_since(*first) <= RESENT_KEPT);
                    }
                    let refused = match self.resent.get(&key) {
                        Some((_, last, n)) => *n >= MAX_RESENDS || now.saturating_duration_since(*last) < RESEND_AGAIN,
                        None => false,
                    };
                    if refused || self.waiting.contains(&key) || backlog > RESEND_BACKLOG.as_secs_f64() {
                        self.rate.dropped.fetch_add(1, Ordering::Relaxed);
                        self.rate.queued_bits.store(self.queued_bits as u64, Ordering::Relaxed);
                        return Ok(());
                    }
                    let entry = self.resent.entry(key).or_insert((now, now, 0));
                    entry.1 = now;
                    entry.2 += 1;
                    self.rate.resent_bits.fetch_add(Self::bits(&msg) as u64, Ordering::Relaxed);
                } else {
                    self.rate.sent_bits.fetch_add(Self::bits(&msg) as u64, Ordering::Relaxed);
                    self.rate.sent_packets.fetch_add(1, Ordering::Relaxed);
                }
                if self.video.len() >= VIDEO_QUEUE {
                    if let Some(old) = self.video.pop_front() {
                        self.resends_ahead = self.resends_ahead.saturating_sub(1);
                        self.queued_bits = (self.queued_bits - Self::bits(&old)).max(0.0);
                        if let Some(k) = Self::key(&old) {
                            self.waiting.remove(&k);
                        }
                    }
                    self.rate.dropped.fetch_add(1, Ordering::Relaxed);
                    self.rate.unsent_packets.fetch_add(1, Ordering::Relaxed);
                }
                self.waiting.insert(key);
                self.queued_bits += Self::bits(&msg);
                if resend {
                    self.video.insert(self.resends_ahead.min(self.video.len()), msg);
                    self.resends_ahead += 1;
                } else {
                    self.video.push_back(msg);
                }
            }
            // RTCP (and anything else) is not paced.
            _ => self.released.push_back(msg),
        }
        self.release(now);
        self.rate.queued_bits.store(self.queued_bits as u64, Ordering::Relaxed);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.released.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        self.release(now);
        self.rate.queued_bits.store(self.queued_bits as u64, Ordering::Relaxed);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.next_release()
    }
}

impl Interceptor for Pacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info.mime_type.to_ascii_lowercase().starts_with("audio/") {
            self.audio_ssrcs.insert(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.audio_ssrcs.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::TransportContext;

    fn rtp(ssrc: u32, seq: u16, bytes: usize, now: Instant) -> TaggedPacket {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header { ssrc, sequence_number: seq, ..Default::default() },
            payload: bytes::Bytes::from(vec![0u8; bytes]),
        };
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(packet)),
        }
    }

    fn info(ssrc: u32, mime: &str) -> StreamInfo {
        StreamInfo { ssrc, mime_type: mime.into(), ..Default::default() }
    }

    #[test]
    fn a_keyframe_leaves_at_the_rate_and_audio_never_waits_behind_it() {
        let rate = PacerRate::new();
        rate.set(400_000);
        let mut p = Pacer::new(rate);
        p.bind_local_stream(&info(1, "video/H264"));
        p.bind_local_stream(&info(2, "audio/opus"));
        let t0 = Instant::now();
        // A 40-packet keyframe (~48 KB: a second at 400 kbps) arrives at once.
        for seq in 0..40 {
            p.handle_write(rtp(1, seq, 1200, t0)).unwrap();
        }
        let mut sent_at = Vec::new();
        let mut audio_delay = Vec::new();
        let mut now = t0;
        let mut audio_seq = 0u16;
        while now < t0 + Duration::from_secs(2) {
            // Audio every 20 ms.
            if (now - t0).as_millis().is_multiple_of(20) {
                p.handle_write(rtp(2, audio_seq, 80, now)).unwrap();
                audio_seq += 1;
            }
            p.handle_timeout(now).unwrap();
            while let Some(out) = p.poll_write() {
                if let Packet::Rtp(r) = &out.message.packet {
                    if r.header.ssrc == 1 {
                        sent_at.push(out.now - t0);
                    } else {
                        audio_delay.push(out.now.saturating_duration_since(now));
                    }
                }
            }
            now += Duration::from_millis(1);
        }
        assert_eq!(sent_at.len(), 40);
        // About a second to send 384 kbit at 400 kbps, not all at once.
        let span = *sent_at.last().unwrap();
        assert!(span > Duration::from_millis(800) && span < Duration::from_millis(1200), "{span:?}");
        assert!(sent_at[10] > Duration::from_millis(150), "no burst at line rate: {:?}", sent_at[10]);
        // Every audio packet went the moment it came.
        assert_eq!(audio_delay.len(), 100);
        assert!(audio_delay.iter().all(|d| d.is_zero()));
    }

    #[test]
    fn a_resend_goes_before_new_video_and_dropped_packets_are_counted() {
        let rate = PacerRate::new();
        rate.set(100_000);
        let mut p = Pacer::new(rate.clone());
        p.bind_local_stream(&info(1, "video/H264"));
        let t0 = Instant::now();
        for seq in 0..10 {
            p.handle_write(rtp(1, seq, 1200, t0)).unwrap();
        }
        // A packet that left earlier, asked for again.
        let mut resend = rtp(1, 65_000, 1200, t0);
        resend.message.add(Attribute::Retransmission);
        p.handle_write(resend).unwrap();
        let mut order = Vec::new();
        let mut now = t0;
        while order.len() < 11 && now < t0 + Duration::from_secs(3) {
            p.handle_timeout(now).unwrap();
            while let Some(out) = p.poll_write() {
                if let Packet::Rtp(r) = &out.message.packet {
                    order.push(r.header.sequence_number);
                }
            }
            now += Duration::from_millis(5);
        }
        // Ahead of the new video that was waiting.
        assert_eq!(order.first(), Some(&65_000), "{order:?}");
        assert_eq!(rate.video_packets(), (10, 0));
        // A flush drops what waits: counted as unsent.
        for seq in 10..20 {
            p.handle_write(rtp(1, seq, 1200, now)).unwrap();
        }
        rate.flush_video();
        p.handle_timeout(now).unwrap();
        let (sent, unsent) = rate.video_packets();
        assert_eq!(sent, 20);
        assert!(unsent >= 8, "{unsent}");
    }

    #[test]
    fn without_a_rate_nothing_waits() {
        let mut p = Pacer::new(PacerRate::new());
        let t0 = Instant::now();
        for seq in 0..10 {
            p.handle_write(rtp(1, seq, 1200, t0)).unwrap();
        }
        assert_eq!(std::iter::from_fn(|| p.poll_write()).count(), 10);
    }

    #[test]
    fn what_left_is_recorded_by_sequence_number_and_flushed_packets_never_left() {
        let rate = PacerRate::new();
        rate.set(1_000_000);
        let mut p = Pacer::new(rate.clone());
        p.bind_local_stream(&info(1, "video/H264"));
        let t0 = Instant::now();
        // Ten packets leave over 100 ms; ten more wait and are flushed.
        for seq in 0..20 {
            p.handle_write(rtp(1, seq, 1200, t0)).unwrap();
        }
        let mut now = t0;
        while now < t0 + Duration::from_millis(100) {
            now += Duration::from_millis(1);
            p.handle_timeout(now).unwrap();
            while p.poll_write().is_some() {}
        }
        rate.flush_video();
        p.handle_timeout(now).unwrap();
        let left = rate.left_through(19).map_or(0, |t| t.packets);
        assert!((8..=12).contains(&left), "{left} left in 100 ms at 1 Mbps");
        let last = left as u16 - 1;
        assert!(rate.left_at(last).is_some());
        assert!(rate.left_at(last + 1).is_none(), "a flushed packet never left");
        // Each packet's wire bits count once: RTP (12-byte header) + SRTP + UDP + IP.
        let per_packet = (1200 + 12) * 8 + WIRE_OVERHEAD_BITS;
        assert_eq!(rate.left_through(last).unwrap(), Through { packets: left, bits: left * per_packet });
        assert_eq!(rate.left_through(2).unwrap(), Through { packets: 3, bits: 3 * per_packet });
        // New packets after the gap: a report naming one counts only what left.
        for seq in 20..22 {
            p.handle_write(rtp(1, seq, 1200, now)).unwrap();
        }
        now += Duration::from_millis(50);
        p.handle_timeout(now).unwrap();
        assert_eq!(rate.left_through(21).unwrap().packets, left + 2);
        assert_eq!(rate.left_through(15).unwrap().packets, left, "a flushed number falls back on the last that left");
    }
}
