//! One member's downstream estimate, from whatever feedback its receiver
//! sends.
//!
//! Receivers differ: Chromium and webrtc-rs send transport-wide
//! congestion feedback, which webrtc-rs's GCC turns into a delay-based
//! target ([`Feedback::Delay`]); some send REMB; every receiver sends
//! receiver reports with the fraction of our packets it lost and the
//! timing for a round trip. One controller takes them all:
//!
//! - loss above 10 %: the estimate drops to what got through, `sent *
//!   (1 - loss)` (a link that carried 400 of 1 600 kbps is at 400 in one
//!   report, not four), or to `estimate * (1 - loss / 2)` when that is
//!   lower; loss of 2 to 10 %: to 95 % of what got through (the usual
//!   loss-based controller holds there, and so sits at a bottleneck losing
//!   a few percent for good; an MCU's downstream must stay clean);
//! - a round trip more than [`QUEUE_RTT`] over the least seen in the
//!   last [`RTT_WINDOW`] (a queue is building at the bottleneck): it drops
//!   to 90 % of what is sent, at most once a second. The window matters:
//!   a link whose queue was already full when the first round trip was
//!   measured would otherwise never show a queue;
//! - GCC lowering its target (it sees queues from packet timing, ten times
//!   a second): the estimate drops to that target at once. GCC's own
//!   climb is slow (8 % a second, then 60 kbps a second near its last
//!   ceiling: a link back from 400 kbps to 1.5 Mbps would wait 20 s), so
//!   only its decreases are followed;
//! - loss under 1 % and no queue: it grows (time-scaled, not per
//!   report), not within a second of a drop, and never past [`PROBE`]
//!   times what is actually sent ([`Estimator::sending`]: a quiet link
//!   does not talk itself into a rate it never carried). Near the rate
//!   that last congested the link (within [`CEILING_MEMORY`]) it grows by
//!   [`NEAR_GROWTH`] a second, so a probe fills a 100 ms bottleneck queue
//!   slowly enough for the next report's round trip to see it before
//!   anything is lost; elsewhere by [`GROWTH_PER_SECOND`];
//! - otherwise it holds.
//!
//! A fresh REMB ([`FRESH`]) caps the result.

use std::time::Duration;

/// Growth per second of the loss-based estimate while nothing is lost:
/// fast enough that a member whose link recovers from 400 kbps is back
/// near 1.5 Mbps in about ten seconds.
pub const GROWTH_PER_SECOND: f64 = 1.15;
/// A delay or REMB value older than this no longer limits the estimate.
pub const FRESH: Duration = Duration::from_secs(3);
/// A round trip this far above the least seen means a queue is building.
pub const QUEUE_RTT: Duration = Duration::from_millis(40);
/// Round trips remembered for the least one.
pub const RTT_WINDOW: Duration = Duration::from_secs(15);
/// Growth near the rate that last congested the link, per second.
pub const NEAR_GROWTH: f64 = 1.04;
/// How long the rate that congested the link is remembered.
pub const CEILING_MEMORY: Duration = Duration::from_secs(10);
/// Growth never takes the estimate past this multiple of what is sent.
pub const PROBE: f64 = 2.0;
/// What the wire adds to the video bytes handed to the track (RTP, UDP
/// and IP headers on ~1 200-byte packets).
const VIDEO_OVERHEAD: f64 = 1.04;

/// Bounds and start of an estimate, bits/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where it starts.
    pub initial: u32,
    /// It never goes below.
    pub min: u32,
    /// It never goes above.
    pub max: u32,
    /// What the member's audio costs on the wire, bits/s.
    pub audio: u32,
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
    /// Round trips of the last [`RTT_WINDOW`], oldest first.
    rtts: std::collections::VecDeque<(Duration, Duration)>,
    /// What is being sent to the member now on the wire, bits/s (0: not
    /// known).
    sending: f64,
    /// The rate that last congested the link, and when.
    ceiling: Option<(f64, Duration)>,
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
            rtts: std::collections::VecDeque::new(),
            sending: 0.0,
            ceiling: None,
        }
    }

    /// The video being sent to the member now, bits/s of encoded frames
    /// (growth stops at [`PROBE`] times that, with headers and audio).
    pub fn sending(&mut self, video_bps: u32) {
        self.sending = video_bps as f64 * VIDEO_OVERHEAD + self.config.audio as f64;
    }

    /// What is on the wire, as far as it is known, else the estimate.
    fn sent(&self) -> f64 {
        if self.sending > 0.0 {
            self.sending
        } else {
            self.loss_based
        }
    }

    /// The link congested at what is being sent: the estimate drops to
    /// `value` and the rate is remembered.
    fn congested(&mut self, now: Duration, value: f64) {
        self.ceiling = Some((self.sent().min(self.loss_based), now));
        self.drop_to(now, value);
    }

    fn drop_to(&mut self, now: Duration, value: f64) {
        if value < self.loss_based {
            self.loss_based = value.max(self.config.min as f64);
            self.last_drop = Some(now);
        }
        self.last_growth = Some(now);
    }

    /// Takes one piece of feedback received at `now`.
    pub fn feed(&mut self, now: Duration, feedback: Feedback) {
        let max = self.config.max as f64;
        match feedback {
            Feedback::Delay(bps) => {
                let bps = bps as f64;
                if self.delay.is_some_and(|(last, _)| bps < last) && bps < self.loss_based {
                    self.congested(now, bps);
                }
                self.delay = Some((bps, now));
            }
            Feedback::Remb(bps) => self.remb = Some((bps as f64, now)),
            Feedback::Report { fraction_lost, rtt } => {
                let loss = fraction_lost as f64 / 256.0;
                self.loss = loss;
                if let Some(rtt) = rtt {
                    self.rtt = Some(rtt);
                    self.rtts.push_back((now, rtt));
                    while self.rtts.front().is_some_and(|(t, _)| now.saturating_sub(*t) > RTT_WINDOW) {
                        self.rtts.pop_front();
                    }
                }
                let least = self.rtts.iter().map(|(_, r)| *r).min();
                let queueing = match (rtt, least) {
                    (Some(r), Some(m)) => r > m + QUEUE_RTT,
                    _ => false,
                };
                let settled = self.last_drop.is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
                let through = self.sent().min(self.loss_based) * (1.0 - loss);
                if loss > 0.10 {
                    self.congested(now, (self.loss_based * (1.0 - loss / 2.0)).min(through));
                } else if loss > 0.02 {
                    if settled {
                        self.congested(now, through * 0.95);
                    }
                } else if queueing {
                    if settled {
                        self.congested(now, self.sent().min(self.loss_based) * 0.9);
                    }
                    self.last_growth = Some(now);
                } else if loss < 0.01 {
                    if settled {
                        let since = self.last_growth.map_or(Duration::ZERO, |t| now.saturating_sub(t));
                        let near = self.ceiling.is_some_and(|(c, at)| {
                            now.saturating_sub(at) < CEILING_MEMORY
                                && self.loss_based > c * 0.85
                                && self.loss_based < c * 1.1
                        });
                        let rate = if near { NEAR_GROWTH } else { GROWTH_PER_SECOND };
                        let grow = rate.powf(since.min(Duration::from_secs(1)).as_secs_f64());
                        let ceiling =
                            if self.sending > 0.0 { (self.sending * PROBE).max(self.loss_based) } else { max };
                        self.loss_based = (self.loss_based * grow).min(ceiling).min(max);
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

    /// The estimate now, bits/s, and the best feedback the receiver
    /// gives (transport-wide, REMB, or reports only).
    pub fn estimate(&self, now: Duration) -> (u32, Source) {
        let mut bps = self.loss_based;
        if let Some(remb) = Self::fresh(self.remb, now) {
            bps = bps.min(remb);
        }
        let source = if Self::fresh(self.delay, now).is_some() {
            Source::Delay
        } else if Self::fresh(self.remb, now).is_some() {
            Source::Remb
        } else {
            Source::Loss
        };
        ((bps.clamp(self.config.min as f64, self.config.max as f64)) as u32, source)
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

    const CONFIG: Config = Config { initial: 1_800_000, min: 50_000, max: 20_000_000, audio: 56_000 };

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn report(lost_percent: u32) -> Feedback {
        Feedback::Report { fraction_lost: (lost_percent * 256 / 100).min(255) as u8, rtt: Some(ms(20)) }
    }

    #[test]
    fn heavy_loss_cuts_to_what_got_through_light_loss_trims_no_loss_grows_over_time() {
        let mut e = Estimator::new(CONFIG);
        assert_eq!(e.estimate(ms(0)), (1_800_000, Source::Loss));
        // Sending 1.6 Mbps of video, 75 % lost: down to what got through.
        e.sending(1_600_000);
        e.feed(ms(1000), report(75));
        let through = (1_600_000.0 * 1.04 + 56_000.0) * (1.0 - 192.0 / 256.0);
        assert!(e.estimate(ms(1000)).0.abs_diff(through as u32) <= 2, "{:?}", e.estimate(ms(1000)));
        // Unknown sending rate: 30 % loss takes 30 % off.
        let mut e = Estimator::new(CONFIG);
        e.feed(ms(1000), report(30));
        let after = e.estimate(ms(1000)).0;
        assert!((1_250_000..1_280_000).contains(&after), "{after}");
        // 5 %: to 95 % of what got through; 1.5 %: holds.
        e.feed(ms(2000), report(5));
        let trimmed = (after as f64 * (1.0 - 12.0 / 256.0) * 0.95) as u32;
        assert!(e.estimate(ms(2000)).0.abs_diff(trimmed) <= 2);
        let held = e.estimate(ms(2000)).0;
        e.feed(ms(3500), Feedback::Report { fraction_lost: 4, rtt: Some(ms(20)) });
        assert_eq!(e.estimate(ms(3500)).0, held);
        // No loss: slowly near the rate that congested the link (so a
        // probe shows as a queue before anything is lost)...
        for s in 4..7 {
            e.feed(ms(s * 1000), report(0));
        }
        let near = e.estimate(ms(6000)).0 as f64 / held as f64;
        assert!((1.07..1.14).contains(&near), "grew {near:.2}x in 3 s near the ceiling");
        // ...then, above it or once it is forgotten, x1.15 a second.
        for s in 7..13 {
            e.feed(ms(s * 1000), report(0));
        }
        let from = e.estimate(ms(12_000)).0 as f64;
        for s in 13..19 {
            e.feed(ms(s * 1000), report(0));
        }
        let grown = e.estimate(ms(18_000)).0 as f64 / from;
        assert!((2.0..2.4).contains(&grown), "grew {grown:.2}x in 6 s");
        // Reports ten times a second grow it no faster.
        let mut f = Estimator::new(Config { initial: 100_000, ..CONFIG });
        for t in 0..100 {
            f.feed(ms(1000 + t * 100), report(0));
        }
        let fast = f.estimate(ms(11_000)).0 as f64 / 100_000.0;
        assert!((3.5..4.2).contains(&fast), "{fast:.2}");
    }

    #[test]
    fn a_building_queue_brings_it_down_before_anything_is_lost() {
        let mut e = Estimator::new(Config { initial: 500_000, ..CONFIG });
        e.feed(ms(0), Feedback::Report { fraction_lost: 0, rtt: Some(ms(10)) });
        let before = e.estimate(ms(0)).0;
        for s in 1..5 {
            e.feed(ms(s * 1000), Feedback::Report { fraction_lost: 0, rtt: Some(ms(150)) });
        }
        let after = e.estimate(ms(4000)).0;
        assert!(after < before * 7 / 10 && after > before / 2, "{before} -> {after}");
    }

    #[test]
    fn gcc_decreases_are_followed_at_once_its_slow_climb_is_not() {
        let mut e = Estimator::new(CONFIG);
        e.feed(ms(0), Feedback::Delay(1_800_000));
        e.feed(ms(100), Feedback::Delay(400_000));
        assert_eq!(e.estimate(ms(100)), (400_000, Source::Delay));
        // GCC stays low; reports show a clean link: the estimate climbs anyway.
        for s in 2..10 {
            e.feed(ms(s * 1000), Feedback::Delay(420_000));
            e.feed(ms(s * 1000), report(0));
        }
        assert!(e.estimate(ms(9000)).0 > 900_000, "{:?}", e.estimate(ms(9000)));
        // Transport-wide feedback gone quiet: reports only.
        assert_eq!(e.estimate(ms(9000) + FRESH).1, Source::Loss);
    }

    #[test]
    fn remb_caps_it_while_fresh_and_growth_stays_near_what_is_sent() {
        let mut e = Estimator::new(CONFIG);
        e.feed(ms(200), Feedback::Remb(300_000));
        assert_eq!(e.estimate(ms(300)), (300_000, Source::Remb));
        assert_eq!(e.estimate(ms(200) + FRESH), (1_800_000, Source::Loss));
        // Sending 200 kbps of video: a clean link does not grow the
        // estimate past twice that on the wire.
        let mut f = Estimator::new(Config { initial: 250_000, ..CONFIG });
        f.sending(200_000);
        for s in 1..20 {
            f.feed(ms(s * 1000), report(0));
        }
        assert_eq!(f.estimate(ms(20_000)).0, ((200_000.0 * 1.04 + 56_000.0) * PROBE) as u32);
        // Clamped to the least.
        let mut g = Estimator::new(CONFIG);
        g.feed(ms(0), Feedback::Delay(2_000_000));
        g.feed(ms(10), Feedback::Delay(1_000));
        assert_eq!(g.estimate(ms(10)).0, 50_000);
    }
}
