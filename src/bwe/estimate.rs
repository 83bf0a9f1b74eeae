//! One member's downstream estimate, from whatever feedback its receiver
//! sends.
//!
//! Receivers differ: Chromium sends transport-wide congestion feedback
//! (webrtc-rs's GCC turns it into a delay- and loss-based target, which
//! reaches us as [`Feedback::Delay`]); some send REMB; every receiver sends
//! receiver reports with the fraction of our packets it lost and the
//! timing for a round trip. The loss-based controller here is the floor
//! every receiver gets:
//!
//! - loss above 10 %: the estimate drops to `estimate * (1 - loss / 2)`;
//! - loss under 2 % and the round trip not climbing: it grows by
//!   [`GROWTH_PER_SECOND`] (time-scaled, not per report), but not within a
//!   second of a drop;
//! - in between, or while the round trip climbs over its minimum by more
//!   than [`QUEUE_RTT`] (a queue is building): it holds.
//!
//! The estimate is the least of the loss-based value and the fresh delay
//! and REMB values ([`FRESH`]).

use std::time::Duration;

/// Growth per second of the loss-based estimate while nothing is lost:
/// fast enough that a member whose link recovers from 400 kbps is back
/// near 1.5 Mbps in about ten seconds.
pub const GROWTH_PER_SECOND: f64 = 1.15;
/// A delay or REMB value older than this no longer limits the estimate.
pub const FRESH: Duration = Duration::from_secs(3);
/// A round trip this far above the least seen means a queue is building.
pub const QUEUE_RTT: Duration = Duration::from_millis(60);

/// Bounds and start of an estimate, bits/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where it starts.
    pub initial: u32,
    /// It never goes below.
    pub min: u32,
    /// It never goes above.
    pub max: u32,
}

/// What a receiver tells us.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Feedback {
    /// GCC's target from transport-wide feedback, bits/s.
    Delay(u32),
    /// The receiver's REMB, bits/s.
    Remb(u32),
    /// A receiver report block about one of our streams: the fraction
    /// lost since the last report (out of 256) and the round trip, when
    /// it could be worked out.
    Report {
        /// `fraction_lost` as sent (0..=255).
        fraction_lost: u8,
        /// Round trip from LSR/DLSR.
        rtt: Option<Duration>,
    },
}

/// Which input limits the estimate now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Transport-wide feedback (GCC).
    Delay,
    /// REMB.
    Remb,
    /// Receiver-report loss.
    Loss,
}

impl Source {
    /// Its name in the room state.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Delay => "twcc",
            Source::Remb => "remb",
            Source::Loss => "loss",
        }
    }
}

/// One member's estimate (see the module doc).
#[derive(Clone, Debug)]
pub struct Estimator {
    config: Config,
    loss_based: f64,
    last_growth: Option<Duration>,
    last_drop: Option<Duration>,
    delay: Option<(f64, Duration)>,
    remb: Option<(f64, Duration)>,
    loss: f64,
    rtt: Option<Duration>,
    min_rtt: Option<Duration>,
}

impl Estimator {
    /// A new estimate at `config.initial`.
    pub fn new(config: Config) -> Self {
        let initial = (config.initial.clamp(config.min, config.max)) as f64;
        Self {
            config,
            loss_based: initial,
            last_growth: None,
            last_drop: None,
            delay: None,
            remb: None,
            loss: 0.0,
            rtt: None,
            min_rtt: None,
        }
    }

    /// Takes one piece of feedback received at `now`.
    pub fn feed(&mut self, now: Duration, feedback: Feedback) {
        let (min, max) = (self.config.min as f64, self.config.max as f64);
        match feedback {
            Feedback::Delay(bps) => self.delay = Some((bps as f64, now)),
            Feedback::Remb(bps) => self.remb = Some((bps as f64, now)),
            Feedback::Report { fraction_lost, rtt } => {
                let loss = fraction_lost as f64 / 256.0;
                self.loss = loss;
                if let Some(rtt) = rtt {
                    self.rtt = Some(rtt);
                    self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
                }
                let queueing = match (self.rtt, self.min_rtt) {
                    (Some(r), Some(m)) => r > m + QUEUE_RTT,
                    _ => false,
                };
                if loss > 0.10 {
                    self.loss_based = (self.loss_based * (1.0 - loss / 2.0)).max(min);
                    self.last_drop = Some(now);
                    self.last_growth = Some(now);
                } else if loss < 0.02 && !queueing {
                    let settled = self.last_drop.is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
                    if settled {
                        let since = self.last_growth.map_or(Duration::ZERO, |t| now.saturating_sub(t));
                        let grow = GROWTH_PER_SECOND.powf(since.min(Duration::from_secs(1)).as_secs_f64());
                        self.loss_based = (self.loss_based * grow).min(max);
                    }
                    self.last_growth = Some(now);
                } else {
                    self.last_growth = Some(now);
                }
            }
        }
    }

    fn fresh(value: Option<(f64, Duration)>, now: Duration) -> Option<f64> {
        value.filter(|(_, at)| now.saturating_sub(*at) < FRESH).map(|(v, _)| v)
    }

    /// The estimate now, bits/s, and what limits it.
    pub fn estimate(&self, now: Duration) -> (u32, Source) {
        let mut best = (self.loss_based, Source::Loss);
        for (value, source) in
            [(Self::fresh(self.delay, now), Source::Delay), (Self::fresh(self.remb, now), Source::Remb)]
        {
            if let Some(v) = value {
                if v < best.0 {
                    best = (v, source);
                }
            }
        }
        let bps = best.0.clamp(self.config.min as f64, self.config.max as f64);
        (bps as u32, best.1)
    }

    /// The loss in the last receiver report (0..1).
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The last round trip worked out.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: Config = Config { initial: 1_800_000, min: 50_000, max: 20_000_000 };

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn report(lost_percent: u32) -> Feedback {
        Feedback::Report { fraction_lost: (lost_percent * 256 / 100).min(255) as u8, rtt: Some(ms(20)) }
    }

    #[test]
    fn heavy_loss_cuts_light_loss_holds_no_loss_grows_over_time() {
        let mut e = Estimator::new(CONFIG);
        assert_eq!(e.estimate(ms(0)), (1_800_000, Source::Loss));
        // 30 % loss: down to 85 %, then again.
        e.feed(ms(1000), report(30));
        let after = e.estimate(ms(1000)).0;
        assert!((1_520_000..1_550_000).contains(&after), "{after}");
        e.feed(ms(2000), report(30));
        assert!(e.estimate(ms(2000)).0 < after);
        // 5 %: holds.
        let held = e.estimate(ms(2000)).0;
        e.feed(ms(3000), report(5));
        assert_eq!(e.estimate(ms(3000)).0, held);
        // No loss for 10 s, reports every second: x1.15 a second.
        for s in 4..14 {
            e.feed(ms(s * 1000), report(0));
        }
        let grown = e.estimate(ms(13_000)).0 as f64 / held as f64;
        assert!((3.6..4.2).contains(&grown), "grew {grown:.2}x in 10 s");
        // Reports ten times a second grow it no faster.
        let mut f = Estimator::new(Config { initial: 100_000, ..CONFIG });
        for t in 0..100 {
            f.feed(ms(1000 + t * 100), report(0));
        }
        let fast = f.estimate(ms(11_000)).0 as f64 / 100_000.0;
        assert!((3.5..4.2).contains(&fast), "{fast:.2}");
    }

    #[test]
    fn a_building_queue_stops_growth() {
        let mut e = Estimator::new(Config { initial: 500_000, ..CONFIG });
        e.feed(ms(0), Feedback::Report { fraction_lost: 0, rtt: Some(ms(10)) });
        let before = e.estimate(ms(0)).0;
        for s in 1..5 {
            e.feed(ms(s * 1000), Feedback::Report { fraction_lost: 0, rtt: Some(ms(150)) });
        }
        assert_eq!(e.estimate(ms(4000)).0, before);
    }

    #[test]
    fn delay_and_remb_limit_it_while_fresh() {
        let mut e = Estimator::new(CONFIG);
        e.feed(ms(0), Feedback::Delay(400_000));
        assert_eq!(e.estimate(ms(100)), (400_000, Source::Delay));
        e.feed(ms(200), Feedback::Remb(300_000));
        assert_eq!(e.estimate(ms(300)), (300_000, Source::Remb));
        // Stale after FRESH: the loss-based value rules again.
        assert_eq!(e.estimate(ms(200) + FRESH), (1_800_000, Source::Loss));
        // Clamped to the bounds.
        e.feed(ms(5000), Feedback::Delay(1_000));
        assert_eq!(e.estimate(ms(5000)).0, 50_000);
    }
}
