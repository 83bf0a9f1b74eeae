//! When a view draws (see [`Cadence`]).

use std::time::{Duration, Instant};

/// When a view draws: as soon as something new is there, but no sooner
/// than 90 % of a period after the last draw and, on average, no more
/// than 5 % above the frame rate (a credit that refills that fast: a
/// sender whose clock runs a little fast is not made to wait, many
/// senders at random phases do not make the view draw at 1/0.9 of its
/// rate); and, when nothing is new, every two periods (a picture that
/// comes a little late must not find the view just drawn without it).
#[derive(Debug)]
pub struct Cadence {
    period: Duration,
    last: Option<Instant>,
    /// Draws owed, in frames; at most [`Cadence::MAX_CREDIT`].
    credit: f64,
    /// The last draw came more than two periods after the one before.
    late: bool,
}

impl Cadence {
    const MAX_CREDIT: f64 = 1.5;
    /// Credit earned per period.
    const REFILL: f64 = 1.05;

    /// A cadence of one draw per `period`.
    pub fn new(period: Duration) -> Self {
        Self { period, last: None, credit: 1.0, late: false }
    }

    fn credit_at(&self, now: Instant) -> f64 {
        match self.last {
            None => Self::MAX_CREDIT,
            Some(t) => {
                let earned = now.saturating_duration_since(t).as_secs_f64() / self.period.as_secs_f64() * Self::REFILL;
                (self.credit + earned).min(Self::MAX_CREDIT)
            }
        }
    }

    /// When the next draw is due (`fresh`: something new is waiting).
    pub fn next(&self, now: Instant, fresh: bool) -> Instant {
        let Some(last) = self.last else { return now };
        let spacing = if fresh { self.period.mul_f64(0.9) } else { self.period * 2 };
        let credit = self.credit_at(now);
        let by_credit = now + self.period.mul_f64((1.0 - credit).max(0.0) / Self::REFILL);
        (last + spacing).max(by_credit)
    }

    /// Whether to draw now; if so, the draw is counted.
    pub fn due(&mut self, now: Instant, fresh: bool) -> bool {
        if now < self.next(now, fresh) {
            return false;
        }
        self.credit = self.credit_at(now) - 1.0;
        self.late = self.last.is_some_and(|t| now.saturating_duration_since(t) > self.period * 2);
        self.last = Some(now);
        true
    }

    /// Whether the draw just counted came more than a period late (the
    /// thread could not keep up).
    pub fn late(&self) -> bool {
        self.late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_when_pictures_come_at_the_frame_rate_on_average() {
        let period = Duration::from_millis(100);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Cadence::new(period);
        assert!(c.due(at(0), false));
        // Nothing new: the next draw is two periods later.
        assert_eq!(c.next(at(10), false), at(200));
        assert!(!c.due(at(150), false));
        // A picture at 95 ms is drawn at once (90 % of a period is enough).
        assert!(c.due(at(95), true));
        // One at 120 ms waits until 90 % of a period after the last draw.
        assert!(!c.due(at(120), true));
        assert_eq!(c.next(at(120), true), at(185));
        // A flood of pictures still draws at most the frame rate on average.
        let mut draws = 0;
        for ms in (200..10_200).step_by(5) {
            if c.due(at(ms), true) {
                draws += 1;
            }
        }
        assert!((100..=106).contains(&draws), "{draws} draws in 10 s at 10 fps");
    }
}
