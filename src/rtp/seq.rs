//! Extends 16-bit RTP sequence numbers to 64 bits across wraparound.

/// Tracks the highest sequence number seen and extends new ones near it.
#[derive(Clone, Debug, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    /// The 64-bit sequence number for `seq`: the value with those low 16
    /// bits closest to the highest seen so far. Starts at 2^32 so numbers
    /// slightly before the first one stay positive.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            let v = (1u64 << 32) + seq as u64;
            self.highest = Some(v);
            return v;
        };
        let base = highest & !0xffff;
        let candidates = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000].map(|b| b + seq as u64);
        let v = candidates.into_iter().min_by_key(|c| c.abs_diff(highest)).unwrap_or(base + seq as u64);
        if v > highest {
            self.highest = Some(v);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_forward_and_tolerates_reordering() {
        let mut s = SeqExtender::default();
        let a = s.extend(65534);
        let b = s.extend(65535);
        let c = s.extend(0);
        let d = s.extend(65533); // late
        let e = s.extend(1);
        assert_eq!(b, a + 1);
        assert_eq!(c, a + 2);
        assert_eq!(d, a - 1);
        assert_eq!(e, a + 3);
    }
}
