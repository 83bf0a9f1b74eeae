//! Audio jitter buffer: Opus packets in sequence order, one out per 20 ms
//! tick, with a loss report (and the next packet, for FEC) when one is
//! missing. Time is the caller's: one `pop` per tick.

use super::seq::SeqExtender;
use std::collections::BTreeMap;

/// Packets buffered before playout starts (60 ms of 20 ms packets).
pub const TARGET_PACKETS: usize = 3;
/// Most packets held; beyond this the oldest are dropped to catch up.
pub const MAX_PACKETS: usize = 25;

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
            self.late += 1;
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
            if self.packets.len() < TARGET_PACKETS {
                return Pop::Empty;
            }
            self.playing = true;
            self.next = self.packets.keys().next().copied();
        }
        let Some(next) = self.next else { return Pop::Empty };
        if self.packets.is_empty() {
            // Underrun: rebuffer before playing again.
            self.playing = false;
            self.next = None;
            return Pop::Empty;
        }
        self.next = Some(next + 1);
        if let Some(p) = self.packets.remove(&next) {
            return Pop::Packet(p);
        }
        self.lost += 1;
        Pop::Lost { next: self.packets.get(&(next + 1)).cloned() }
    }

    /// Packets never received in time.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Packets that arrived after their turn.
    pub fn late(&self) -> u64 {
        self.late
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
        j.push(13, vec![13]);
        assert_eq!(j.late(), 1);
        // Underrun, then rebuffering.
        assert_eq!(j.pop(), Pop::Empty);
        j.push(15, vec![15]);
        assert_eq!(j.pop(), Pop::Empty);
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
