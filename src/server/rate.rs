//! Per-peer signaling rate limit: a token bucket refilled with time passed in.

use std::time::Instant;

/// A token bucket.
#[derive(Clone, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
    /// When a refusal was last reported (reported at most once a second).
    pub last_refusal: Option<Instant>,
}

impl Bucket {
    /// A full bucket.
    pub fn new(now: Instant, rate: u32) -> Self {
        Self { tokens: burst(rate), last: now, last_refusal: None }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate as f64).min(burst(rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has been untouched (and is full) since `now - idle`.
    pub fn idle_since(&self, now: Instant, idle: std::time::Duration) -> bool {
        now.saturating_duration_since(self.last) > idle
    }
}

/// Burst size: two seconds' worth, at least 40 (an ICE restart trickles a lot).
fn burst(rate: u32) -> f64 {
    (rate as f64 * 2.0).max(40.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0, 10);
        let allowed = (0..100).filter(|_| b.take(t0, 10)).count();
        assert_eq!(allowed, 40);
        assert!(!b.take(t0, 10));
        assert!(b.take(t0 + Duration::from_millis(150), 10));
        assert!(!b.take(t0 + Duration::from_millis(150), 10));
    }
}
