//! Audio jitter buffer: Opus packets in sequence order, one out per 20 ms
//! tick, with a loss report (and the next packet, for FEC) when one is
//! missing. Time is the caller's: one `pop` per tick.
//!
//! Its depth adapts, so that audio is no later than the network needs
//! (and no later than the video it goes with):
//! - playout starts once [`START_PACKETS`] are in;
//! - a tick with nothing to play does not consume a slot: the caller
//!   conceals, and the buffer is one packet deeper from then on;
//! - a packet arriving after its slot was given up (reordering) makes the
//!   next tick wait too, for the same reason;
//! - when the buffer never held fewer than two packets at playout over a
//!   calm [`TRIM_WINDOW`] (no gap, no loss, nothing late), one packet is
//!   surplus: it is dropped, taking 20 ms of delay off. Clock drift between
//!   sender and server is absorbed the same two ways.

use super::seq::SeqExtender;
use std::collections::BTreeMap;

/// Packets buffered before playout starts (40 ms of 20 ms packets).
pub const START_PACKETS: usize = 2;
/// Most packets held; beyond this the oldest are dropped to catch up.
pub const MAX_PACKETS: usize = 25;
/// Ticks over which a surplus must persist before a packet is dropped (2 s).
pub const TRIM_WINDOW: u32 = 100;
/// Ticks in a row with nothing to play before playout stops and waits for
/// [`START_PACKETS`] again (the sender paused or left).
pub const GIVE_UP_TICKS: u32 = 5;

/// What one tick gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop {
    /// The next packet.
    Packet(Vec<u8>),
    /// The next packet is missing; `next` is the one after it, if already
    /// here (it may carry the lost one as FEC).
    Lost {
        /// The following packet.
        next: Option<Vec<u8>>,
    },
    /// Nothing to play (not started, or the sender went quiet).
    Empty,
}

/// One sender's audio jitter buffer.
#[derive(Debug, Default)]
pub struct JitterBuffer {
    seq: SeqExtender,
    packets: BTreeMap<u64, Vec<u8>>,
    next: Option<u64>,
    playing: bool,
    lost: u64,
    late: u64,
    trimmed: u64,
    /// Ticks still to wait before playing on (after a late packet).
    hold: u32,
    /// Ticks in a row with nothing to play.
    empty_run: u32,
    /// The fewest packets held at a pop in this window, its length, and
    /// whether anything went wrong in it.
    window_min: usize,
    window_pops: u32,
    window_calm: bool,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a packet.
    pub fn push(&mut self, seq: u16, payload: Vec<u8>) {
        let ext = self.seq.extend(seq);
        if self.next.is_some_and(|n| ext < n) {
            // Its slot was given up: wait one tick more from now on.
            self.late += 1;
            self.hold = (self.hold + 1).min(2);
            self.window_calm = false;
            return;
        }
        self.packets.insert(ext, payload);
        while self.packets.len() > MAX_PACKETS {
            if let Some((&first, _)) = self.packets.iter().next() {
                self.packets.remove(&first);
                self.next = Some(first + 1);
            }
        }
    }

    /// The next 20 ms of audio to decode.
    pub fn pop(&mut self) -> Pop {
        if !self.playing {
            if self.packets.len() < START_PACKETS {
                return Pop::Empty;
            }
            self.playing = true;
            self.next = self.packets.keys().next().copied();
            self.restart_window();
        }
        let Some(next) = self.next else { return Pop::Empty };
        if self.hold > 0 {
            self.hold -= 1;
            return Pop::Empty;
        }
        if self.packets.is_empty() {
            // Nothing yet: keep the slot (the buffer gets one deeper), or
            // after a while stop and start over with the next talk spurt.
            self.empty_run += 1;
            self.window_calm = false;
            if self.empty_run >= GIVE_UP_TICKS {
                self.playing = false;
                self.next = None;
                self.empty_run = 0;
            }
            return Pop::Empty;
        }
        self.empty_run = 0;
        self.note_depth();
        let next = self.trim(next);
        self.next = Some(next + 1);
        if let Some(p) = self.packets.remove(&next) {
            return Pop::Packet(p);
        }
        self.lost += 1;
        self.window_calm = false;
        Pop::Lost { next: self.packets.get(&(next + 1)).cloned() }
    }

    fn restart_window(&mut self) {
        self.window_min = usize::MAX;
        self.window_pops = 0;
        self.window_calm = true;
    }

    fn note_depth(&mut self) {
        self.window_min = self.window_min.min(self.packets.len());
        self.window_pops += 1;
    }

    /// At the end of a window with a surplus, drops the packet due now and
    /// returns the slot to play instead.
    fn trim(&mut self, next: u64) -> u64 {
        if self.window_pops < TRIM_WINDOW {
            return next;
        }
        let surplus = self.window_calm && self.window_min >= 2 && self.packets.contains_key(&(next + 1));
        self.restart_window();
        if !surplus {
            return next;
        }
        self.packets.remove(&next);
        self.trimmed += 1;
        next + 1
    }

    /// Packets never received in time.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Packets that arrived after their turn.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Packets dropped to take surplus delay off.
    pub fn trimmed(&self) -> u64 {
        self.trimmed
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_then_plays_in_order() {
        let mut j = JitterBuffer::new();
        j.push(11, vec![11]);
        assert_eq!(j.pop(), Pop::Empty);
        j.push(10, vec![10]);
        j.push(12, vec![12]);
        assert_eq!(j.pop(), Pop::Packet(vec![10]));
        assert_eq!(j.pop(), Pop::Packet(vec![11]));
        j.push(14, vec![14]);
        assert_eq!(j.pop(), Pop::Packet(vec![12]));
        assert_eq!(j.pop(), Pop::Lost { next: Some(vec![14]) });
        assert_eq!(j.pop(), Pop::Packet(vec![14]));
        assert_eq!(j.lost(), 1);
        // 13 comes after its slot: dropped, and the next tick waits.
        j.push(13, vec![13]);
        assert_eq!(j.late(), 1);
        j.push(15, vec![15]);
        assert_eq!(j.pop(), Pop::Empty);
        assert_eq!(j.pop(), Pop::Packet(vec![15]));
    }

    #[test]
    fn a_gap_keeps_its_slot_then_a_long_one_restarts() {
        let mut j = JitterBuffer::new();
        j.push(0, vec![0]);
        j.push(1, vec![1]);
        assert_eq!(j.pop(), Pop::Packet(vec![0]));
        assert_eq!(j.pop(), Pop::Packet(vec![1]));
        // Packet 2 is late by a tick: the slot waits (the caller conceals).
        assert_eq!(j.pop(), Pop::Empty);
        j.push(2, vec![2]);
        assert_eq!(j.pop(), Pop::Packet(vec![2]));
        assert_eq!((j.lost(), j.late()), (0, 0));
        // The sender pauses: after a few ticks playout stops and waits
        // for two packets again.
        for _ in 0..GIVE_UP_TICKS + 2 {
            assert_eq!(j.pop(), Pop::Empty);
        }
        j.push(50, vec![50]);
        assert_eq!(j.pop(), Pop::Empty);
        j.push(51, vec![51]);
        assert_eq!(j.pop(), Pop::Packet(vec![50]));
    }

    /// Steady arrivals from `from` on, one per tick: returns the buffer
    /// depth after each tick and the packets played.
    fn steady(j: &mut JitterBuffer, ticks: u32, from: u16) -> (Vec<usize>, Vec<u8>) {
        let (mut depths, mut played) = (Vec::new(), Vec::new());
        for t in 0..ticks as u16 {
            let seq = from + t;
            j.push(seq, vec![seq as u8]);
            if let Pop::Packet(p) = j.pop() {
                played.extend(p);
            }
            depths.push(j.len());
        }
        (depths, played)
    }

    #[test]
    fn a_surplus_that_lasts_is_trimmed_one_packet_at_a_time() {
        let mut j = JitterBuffer::new();
        for s in 0..4u16 {
            j.push(s, vec![s as u8]);
        }
        // Four packets ahead of playout, arriving one per tick: 80 ms of
        // needless delay, taken off 20 ms per calm window.
        let (depths, played) = steady(&mut j, TRIM_WINDOW * 5, 4);
        assert_eq!(depths[5], 4);
        assert_eq!(*depths.last().unwrap(), 0, "one packet in hand, played as it comes");
        assert_eq!(j.trimmed(), 4, "trimmed until one packet is left, then no more");
        // Played in order, with exactly the trimmed packets missing.
        assert!(played.windows(2).all(|w| w[1] != w[0]));
        assert_eq!(j.lost(), 0);
    }

    #[test]
    fn a_needed_cushion_is_kept() {
        let mut j = JitterBuffer::new();
        // Packets come in pairs every other tick (40 ms jitter): the depth
        // at playout drops to one every second tick, so nothing is trimmed.
        let (mut seq, mut played) = (0u16, 0);
        for t in 0..TRIM_WINDOW * 3 {
            if t % 2 == 0 {
                j.push(seq, vec![seq as u8]);
                j.push(seq + 1, vec![seq as u8 + 1]);
                seq += 2;
            }
            if let Pop::Packet(_) = j.pop() {
                played += 1;
            }
        }
        assert_eq!(played, TRIM_WINDOW * 3, "every tick played a packet");
        assert_eq!((j.trimmed(), j.lost(), j.late()), (0, 0, 0));
    }

    #[test]
    fn a_burst_is_trimmed_to_the_cap() {
        let mut j = JitterBuffer::new();
        for s in 0..100u16 {
            j.push(s, vec![s as u8]);
        }
        assert_eq!(j.len(), MAX_PACKETS);
        assert_eq!(j.pop(), Pop::Packet(vec![75]));
    }
}
