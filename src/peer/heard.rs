//! When a peer was last heard over RTCP. Every receiver sends reports
//! (about once a second) and feedback, so RTCP shows that a member who
//! sends no media, a viewer, is still there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The time of the last RTCP packet from one peer connection.
#[derive(Debug)]
pub struct RtcpHeard {
    base: Instant,
    /// Milliseconds after `base`; `u64::MAX` until the first packet.
    last_ms: AtomicU64,
}

impl RtcpHeard {
    /// Nothing heard yet; times count from `base`.
    pub fn new(base: Instant) -> Self {
        Self { base, last_ms: AtomicU64::new(u64::MAX) }
    }

    /// Notes a packet received at `now`.
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.base).as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
        // fetch_max would keep u64::MAX: replace it the first time.
        let _ = self.last_ms.compare_exchange(u64::MAX, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Time since the last packet at `now` (`None` if never heard).
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        match self.last_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(now.saturating_duration_since(self.base).saturating_sub(Duration::from_millis(ms))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_the_latest_packet() {
        let base = Instant::now();
        let heard = RtcpHeard::new(base);
        assert_eq!(heard.silent_for(base + Duration::from_secs(9)), None);
        heard.touch(base + Duration::from_secs(2));
        heard.touch(base + Duration::from_secs(1)); // out of order: ignored
        assert_eq!(heard.silent_for(base + Duration::from_secs(5)), Some(Duration::from_secs(3)));
    }
}
