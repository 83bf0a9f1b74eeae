//! One member's downstream estimate, from whatever feedback its receiver
//! sends.
//!
//! Receivers differ. Chromium and webrtc-rs send transport-wide
//! feedback: every packet's arrival time, summed up ten times a second
//! into what got through, what was lost and how long a queue our packets
//! met ([`Feedback::Transport`], see [`super::transport`]), and turned by
//! webrtc-rs's GCC into a delay-based target ([`Feedback::Delay`]). Some
//! send REMB. Every receiver sends receiver reports (loss and, from
//! LSR/DLSR, the round trip) about once a second, and NACKs for each
//! packet it misses, within tens of milliseconds ([`Feedback::Nacks`]).
//! One controller takes them all:
//!
//! - **heavy loss** (over 10 %): the estimate drops to what got through
//!   (a link that carried 400 of 1 600 kbps is at 400 in one reading, not
//!   after four halvings), a little under it with a measured rate so the
//!   queue drains;
//! - **some loss** (2 to 10 %): to 95 % of what got through (the usual
//!   loss-based controller holds there, and so sits at a bottleneck losing
//!   a few percent for good; an MCU's downstream must stay clean);
//! - loss told only by NACKs or reports, heavy or not: to [`LOSS_BACKOFF`]
//!   of what got through (no queue showed before it, so the bottleneck
//!   queue is full and must drain for resends to come in time);
//! - **a queue** (transport feedback: packets wait over [`QUEUE_DELAY`];
//!   reports only: the round trip, or the wait the bits in flight when the
//!   report was written make at the rate reaching the receiver, is over
//!   [`QUEUE_RTT`] above the least of the last [`RTT_WINDOW`]): to
//!   [`QUEUE_BACKOFF`] of what gets through, before anything is lost;
//! - **GCC lowering its target**: followed at once (its own climb is slow
//!   and is not followed);
//! - after a drop, only heavy loss lowers it again within [`SETTLE`] (the
//!   queue takes that long to drain);
//! - **calm** (under 1 % lost, no queue; with reports only, neither rise
//!   over [`CALM_RTT`]: a queue starting holds growth): it grows, time-scaled, by
//!   [`NEAR_GROWTH`] a second near the rate that last congested the link
//!   (remembered [`CEILING_MEMORY`]; [`NEAR_GROWTH_REPORTS`] when only
//!   receiver reports tell of a queue, a second late), so a probe of the
//!   link fills a bottleneck queue slowly enough to be seen before
//!   anything is lost; speeding up from [`NEAR_HOLD`] after the link last
//!   congested ([`NEAR_HOLD_REPORTS`] with reports only; a link that
//!   stays calm may have grown), and by
//!   [`GROWTH_PER_SECOND`] elsewhere; never past [`PROBE`] times what
//!   is actually sent ([`Estimator::sending`]: a quiet link does not talk
//!   itself into a rate it never carried).
//!
//! A fresh REMB ([`FRESH`]) caps the result. The view's tiers follow the
//! estimate continuously (see [`super::tiers`]), so growth is a gentle
//! ramp of what is really sent, not a jump to a rate nobody tried.

use super::transport::TransportSummary;
use std::collections::VecDeque;
use std::time::Duration;

/// Growth per second of the estimate while the link is calm and not near
/// the rate that last congested it.
pub const GROWTH_PER_SECOND: f64 = 1.2;
/// Growth per second near the rate that last congested the link, when
/// transport feedback shows a queue within a tenth of a second...
pub const NEAR_GROWTH: f64 = 1.05;
/// ...and when only receiver reports do, a second late.
pub const NEAR_GROWTH_REPORTS: f64 = 1.03;
/// "Near" starts above this multiple of that rate (transport feedback
/// shows the queue a fast climb back fills within a tenth of a second)...
pub const NEAR_LOW: f64 = 0.85;
/// ...and with reports only, at where a backoff lands (see [`QUEUE_BACKOFF`]).
pub const NEAR_LOW_REPORTS: f64 = 0.8;
/// "Near" reaches up to this multiple of that rate...
pub const NEAR_TOP: f64 = 1.2;
/// ...and lasts this long after the link last congested; then growth
/// speeds up over [`NEAR_RAMP`] to [`GROWTH_PER_SECOND`] (a link that
/// stays calm that long may have changed).
pub const NEAR_HOLD: Duration = Duration::from_secs(3);
/// [`NEAR_HOLD`] when only receiver reports tell of the link: each probe
/// past the link costs such a receiver a loss, and a loss behind a full
/// bottleneck queue a frame that waits for its resend, so the link is
/// probed half as often.
pub const NEAR_HOLD_REPORTS: Duration = Duration::from_secs(5);
/// See [`NEAR_HOLD`].
pub const NEAR_RAMP: Duration = Duration::from_secs(5);
/// How long the rate that congested the link is remembered (a receiver
/// that sends only reports shows a queue a second late, so the link is
/// probed gently for a long while after it last filled).
pub const CEILING_MEMORY: Duration = Duration::from_secs(30);
/// A delay or REMB value older than this no longer limits the estimate.
pub const FRESH: Duration = Duration::from_secs(3);
/// Waiting this long in a queue (transport feedback) means the link is full.
pub const QUEUE_DELAY: Duration = Duration::from_millis(40);
/// Waiting less than this (transport feedback) lets the estimate grow.
pub const CALM_QUEUE: Duration = Duration::from_millis(15);
/// A round trip this far above the least seen means a queue is building.
pub const QUEUE_RTT: Duration = Duration::from_millis(25);
/// Reports-only growth waits while the round trip, or the queue the
/// bits in flight make at what reaches the receiver, is this far above
/// the least seen (a queue is starting: the next second may fill it).
pub const CALM_RTT: Duration = Duration::from_millis(15);
/// Round trips remembered for the least one.
pub const RTT_WINDOW: Duration = Duration::from_secs(15);
/// A queue brings the estimate to this share of what gets through (the
/// queue then drains at the rest).
pub const QUEUE_BACKOFF: f64 = 0.85;
/// Loss told only by NACKs or reports (no transport feedback) brings the
/// estimate to this share of what got through: such a receiver shows no
/// queue before the loss, so the bottleneck queue is full by then, and
/// at what got through it would never drain (every resend would wait
/// behind it, and be lost again, until the receiver gave up on a frame).
pub const LOSS_BACKOFF: f64 = 0.85;
/// After a drop, only heavy loss lowers the estimate again this soon.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Growth never takes the estimate past this multiple of what is sent.
pub const PROBE: f64 = 1.5;
/// Fewer packets than this in a NACK reading say nothing (a single
/// random loss must not read as congestion).
pub const NACK_SAMPLE: u32 = 20;
/// Fewer distinct packets NACKed than this in a reading say nothing
/// either: a bottleneck queue that overflows drops several in a row, and
/// one or two alone are as often a packet late or lost at random (the
/// next receiver report, within a second, tells of loss that lasts);
/// but not while the estimate probes past what the link has shown it
/// carries ([`PROVEN_MARGIN`]): then one is enough.
pub const NACK_MIN_LOST: u32 = 3;

/// The estimate is probing when it is past this multiple of the most
/// that reached the receiver lately (see [`NACK_MIN_LOST`]).
pub const PROVEN_MARGIN: f64 = 1.05;

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
        /// Wire bits/s of video that reached the receiver since its last
        /// report, link loss not taken out: the packets we sent up to the
        /// highest sequence number each report names. While a queue stands
        /// at the bottleneck, that is the rate the link carries.
        reached: Option<u32>,
        /// Wire bits of video that had left us but not reached the
        /// receiver (past the highest sequence number it names) when the
        /// report came: what waits in the bottleneck's queue, and what is
        /// on its way.
        queued: Option<u32>,
    },
    /// Transport-wide feedback summed up.
    Transport(TransportSummary),
    /// Over some interval: distinct video packets the receiver asked us to
    /// send again, and video packets sent.
    Nacks {
        /// Distinct packets asked for.
        nacked: u32,
        /// Packets sent.
        sent: u32,
        /// Wire bits/s of video that left us over the interval, when
        /// known (what the link was offered, whatever the encoder made).
        left: Option<u32>,
    },
}

/// Which input limits the estimate now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Transport-wide feedback.
    Delay,
    /// REMB.
    Remb,
    /// Receiver reports and NACKs.
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

/// What one piece of feedback says of the link.
struct Reading {
    loss: f64,
    /// A queue is building.
    queue: bool,
    /// Calm enough to grow on.
    calm: bool,
    /// What got through, bits/s.
    through: f64,
    /// Where some loss puts the estimate.
    light: f64,
    /// Where heavy loss puts the estimate.
    heavy: f64,
}

/// One member's estimate (see the module doc).
#[derive(Clone, Debug)]
pub struct Estimator {
    config: Config,
    estimate: f64,
    last_growth: Option<Duration>,
    last_drop: Option<Duration>,
    delay: Option<(f64, Duration)>,
    remb: Option<(f64, Duration)>,
    transport: Option<Duration>,
    loss: f64,
    rtt: Option<Duration>,
    /// Round trips of the last [`RTT_WINDOW`], oldest first.
    rtts: VecDeque<(Duration, Duration)>,
    /// Bits in flight at each report of the last [`RTT_WINDOW`] (see
    /// [`Feedback::Report::queued`]), oldest first.
    in_flight: VecDeque<(Duration, f64)>,
    /// What reached the receiver (with audio), bits/s, by each report of
    /// the last [`RTT_WINDOW`]: the most of it is a rate the link has
    /// shown it carries.
    reached: VecDeque<(Duration, f64)>,
    /// What is being sent to the member now on the wire, bits/s (0: not
    /// known).
    sending: f64,
    /// The rate that last congested the link, and when.
    ceiling: Option<(f64, Duration)>,
    /// Congested since it last grew: later signals of the same episode
    /// (a queue draining) do not move the ceiling.
    backing_off: bool,
}

impl Estimator {
    /// A new estimate at `config.initial`.
    pub fn new(config: Config) -> Self {
        let initial = (config.initial.clamp(config.min, config.max)) as f64;
        Self {
            config,
            estimate: initial,
            last_growth: None,
            last_drop: None,
            delay: None,
            remb: None,
            transport: None,
            loss: 0.0,
            rtt: None,
            rtts: VecDeque::new(),
            in_flight: VecDeque::new(),
            reached: VecDeque::new(),
            sending: 0.0,
            ceiling: None,
            backing_off: false,
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
            self.estimate
        }
    }

    /// The link congested while `through` got through: the estimate
    /// drops to `value`, and `through` is what the link carries. Heavy
    /// loss (`saturated`) measures that directly; otherwise the first
    /// signal of an episode (after growth) does, and later ones (a queue
    /// draining, at lower rates) only keep it fresh.
    fn congested(&mut self, now: Duration, value: f64, through: f64, saturated: bool) {
        self.ceiling = match self.ceiling {
            Some((c, at)) if !saturated && self.backing_off && now.saturating_sub(at) < CEILING_MEMORY => {
                Some((c, now))
            }
            _ => Some((through.min(self.estimate), now)),
        };
        self.backing_off = true;
        if value < self.estimate {
            self.estimate = value.max(self.config.min as f64);
            self.last_drop = Some(now);
        }
        self.last_growth = Some(now);
    }

    fn settled(&self, now: Duration) -> bool {
        self.last_drop.is_none_or(|t| now.saturating_sub(t) >= SETTLE)
    }

    fn judge(&mut self, now: Duration, r: Reading) {
        self.loss = r.loss;
        if r.loss > 0.10 {
            self.congested(now, r.heavy, r.through, true);
        } else if r.loss > 0.02 {
            if self.settled(now) {
                self.congested(now, r.light, r.through, false);
            }
            self.last_growth = Some(now);
        } else if r.queue {
            if self.settled(now) {
                self.congested(now, r.through * QUEUE_BACKOFF, r.through, false);
            }
            self.last_growth = Some(now);
        } else if r.calm {
            if self.settled(now) {
                self.grow(now);
            }
            self.last_growth = Some(now);
        } else {
            self.last_growth = Some(now);
        }
    }

    fn grow(&mut self, now: Duration) {
        let since = self.last_growth.map_or(Duration::ZERO, |t| now.saturating_sub(t));
        // Near the rate that last congested the link: slowly, and faster
        // the longer the link has stayed calm (it may have changed).
        // Under it, quickly back towards it. With reports only, "near"
        // starts where a backoff lands (85 % of the ceiling): a 20 % step
        // from there passes the link within one report's second, before
        // the queue it fills can be seen, and the queue overflows.
        let transport = self.transport.is_some_and(|t| now.saturating_sub(t) < FRESH);
        let low = if transport { NEAR_LOW } else { NEAR_LOW_REPORTS };
        let calm_near = self.ceiling.and_then(|(c, at)| {
            let calm = now.saturating_sub(at);
            (calm < CEILING_MEMORY && self.estimate > c * low && self.estimate < c * NEAR_TOP).then_some(calm)
        });
        let (slow, hold) = if transport { (NEAR_GROWTH, NEAR_HOLD) } else { (NEAR_GROWTH_REPORTS, NEAR_HOLD_REPORTS) };
        let rate = match calm_near {
            Some(calm) => {
                let ramp = (calm.saturating_sub(hold).as_secs_f64() / NEAR_RAMP.as_secs_f64()).min(1.0);
                slow + (GROWTH_PER_SECOND - slow) * ramp
            }
            None => GROWTH_PER_SECOND,
        };
        self.backing_off = false;
        let grown = self.estimate * rate.powf(since.min(Duration::from_secs(1)).as_secs_f64());
        let limit = if self.sending > 0.0 { (self.sending * PROBE).max(self.estimate) } else { f64::MAX };
        self.estimate = grown.min(limit).min(self.config.max as f64);
    }

    /// Takes one piece of feedback received at `now`.
    pub fn feed(&mut self, now: Duration, feedback: Feedback) {
        match feedback {
            Feedback::Delay(bps) => {
                let bps = bps as f64;
                if self.delay.is_some_and(|(last, _)| bps < last) && bps < self.estimate {
                    let sent = self.sent();
                    self.congested(now, bps, sent, false);
                }
                self.delay = Some((bps, now));
            }
            Feedback::Remb(bps) => self.remb = Some((bps as f64, now)),
            Feedback::Report { fraction_lost, rtt, reached, queued } => {
                let loss = fraction_lost as f64 / 256.0;
                if let Some(rtt) = rtt {
                    self.rtt = Some(rtt);
                    remember(&mut self.rtts, now, rtt);
                }
                if let Some(q) = queued {
                    remember(&mut self.in_flight, now, q as f64);
                }
                // Transport feedback, when it comes, says all this sooner
                // and better; reports then only give the round trip.
                if self.transport.is_some_and(|t| now.saturating_sub(t) < FRESH) {
                    return;
                }
                // What reached the receiver over the report's second (the
                // link's rate, when a queue stands at its bottleneck), else
                // what was sent over it; not the estimate: a report just
                // after a drop tells of the rate before it, and must not
                // compound with the drop.
                let reached = reached.map(|v| v as f64 + self.config.audio as f64);
                if let Some(r) = reached {
                    remember(&mut self.reached, now, r);
                }
                // How far above the least seen: the round trip (the queue
                // our last sender report met), and the wait the bits in
                // flight now make at the rate that reaches the receiver
                // (the queue as the report was written).
                let least_rtt = self.rtts.iter().map(|(_, r)| *r).min();
                let rtt_rise = rtt.zip(least_rtt).map_or(Duration::ZERO, |(r, m)| r.saturating_sub(m));
                let least_flight = self.in_flight.iter().map(|(_, q)| *q).fold(f64::MAX, f64::min);
                let flight_rise = match (queued, reached) {
                    (Some(q), Some(rate)) if rate > 0.0 => {
                        Duration::from_secs_f64(((q as f64 - least_flight).max(0.0) / rate).min(60.0))
                    }
                    _ => Duration::ZERO,
                };
                let rise = rtt_rise.max(flight_rise);
                let queue = rise > QUEUE_RTT;
                let through = reached.unwrap_or_else(|| self.sent()) * (1.0 - loss);
                let light = through * LOSS_BACKOFF;
                let heavy = (self.estimate * (1.0 - loss / 2.0)).min(light);
                let calm = loss < 0.01 && rise < CALM_RTT;
                self.judge(now, Reading { loss, queue, calm, through, light, heavy });
            }
            Feedback::Transport(s) => {
                self.transport = Some(now);
                let through = s.delivered_bps as f64;
                self.judge(
                    now,
                    Reading {
                        loss: s.loss,
                        queue: s.queue > QUEUE_DELAY,
                        calm: s.loss < 0.01 && s.queue < CALM_QUEUE,
                        through,
                        light: through * 0.95,
                        heavy: through * 0.9,
                    },
                );
            }
            Feedback::Nacks { nacked, sent, left } => {
                // Probing: the estimate is past any rate the link has shown
                // it carries. A packet lost then is the probe's, not chance:
                // one is enough (waiting for the next, a second later with
                // reports only, leaves the bottleneck's queue full, and the
                // resends are lost in it too).
                let shown = self.reached.iter().map(|(_, r)| *r).fold(0.0, f64::max);
                let probing = shown > 0.0 && self.estimate > shown * PROVEN_MARGIN;
                if sent < NACK_SAMPLE
                    || (nacked < NACK_MIN_LOST && !probing)
                    || self.transport.is_some_and(|t| now.saturating_sub(t) < FRESH)
                {
                    return;
                }
                let loss = (nacked as f64 / sent as f64).min(1.0);
                if loss > 0.02 {
                    // What left us over the interval (else what was sent over
                    // the last second), not the estimate: readings four times
                    // a second must not compound; and not what the encoder
                    // made, which collapses while frames are skipped.
                    let on_wire = left.map_or_else(|| self.sent(), |v| v as f64 + self.config.audio as f64);
                    let through = on_wire * (1.0 - loss);
                    let backoff = through * LOSS_BACKOFF;
                    let reading = Reading { loss, queue: false, calm: false, through, light: backoff, heavy: backoff };
                    self.judge(now, reading);
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
        let mut bps = self.estimate;
        if let Some(remb) = Self::fresh(self.remb, now) {
            bps = bps.min(remb);
        }
        let transport = self.transport.is_some_and(|t| now.saturating_sub(t) < FRESH);
        let source = if transport || Self::fresh(self.delay, now).is_some() {
            Source::Delay
        } else if Self::fresh(self.remb, now).is_some() {
            Source::Remb
        } else {
            Source::Loss
        };
        ((bps.clamp(self.config.min as f64, self.config.max as f64)) as u32, source)
    }

    /// The loss last measured (0..1).
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// The last round trip worked out.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}

/// Adds `value`, seen at `now`, to a window of the last [`RTT_WINDOW`].
fn remember<T>(window: &mut VecDeque<(Duration, T)>, now: Duration, value: T) {
    window.push_back((now, value));
    while window.front().is_some_and(|(t, _)| now.saturating_sub(*t) > RTT_WINDOW) {
        window.pop_front();
    }
}

/// A receiver report's `fraction_lost` (of 256) with the packets our pacer
/// dropped unsent taken out: the receiver counts those as lost too (their
/// sequence numbers never arrive), but the link did not lose them, and a
/// flushed backlog must not read as a congested link. `packets` video
/// packets came to the pacer over the report's interval, `unsent` of them
/// were dropped there.
pub fn link_fraction_lost(fraction_lost: u8, packets: u64, unsent: u64) -> u8 {
    let unsent = unsent.min(packets);
    let sent = packets - unsent;
    if unsent == 0 {
        return fraction_lost;
    }
    if sent == 0 {
        return 0;
    }
    let lost = (fraction_lost as f64 / 256.0 * packets as f64 - unsent as f64).max(0.0);
    (lost / sent as f64 * 256.0).round().min(255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: Config = Config { initial: 1_800_000, min: 50_000, max: 20_000_000, audio: 56_000 };

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn report(lost_percent: u32) -> Feedback {
        Feedback::Report {
            fraction_lost: (lost_percent * 256 / 100).min(255) as u8,
            rtt: Some(ms(20)),
            reached: None,
            queued: None,
        }
    }

    fn transport(sent: u32, delivered: u32, loss: f64, queue_ms: u64) -> Feedback {
        Feedback::Transport(TransportSummary { sent_bps: sent, delivered_bps: delivered, loss, queue: ms(queue_ms) })
    }

    #[test]
    fn heavy_loss_cuts_to_what_got_through_light_loss_trims_no_loss_grows_over_time() {
        let mut e = Estimator::new(CONFIG);
        assert_eq!(e.estimate(ms(0)), (1_800_000, Source::Loss));
        // Sending 1.6 Mbps of video, 75 % lost: under what got through,
        // so the full bottleneck queue drains.
        e.sending(1_600_000);
        e.feed(ms(1000), report(75));
        let through = (1_600_000.0 * 1.04 + 56_000.0) * (1.0 - 192.0 / 256.0);
        let drained = (through * LOSS_BACKOFF) as u32;
        assert!(e.estimate(ms(1000)).0.abs_diff(drained) <= 2, "{:?}", e.estimate(ms(1000)));
        // Unknown sending rate: 30 % loss, to 85 % of the 70 % that got through.
        let mut e = Estimator::new(CONFIG);
        e.feed(ms(1000), report(30));
        let after = e.estimate(ms(1000)).0;
        assert!((1_060_000..1_085_000).contains(&after), "{after}");
        // 5 %: to 85 % of what got through; 1.5 %: holds.
        e.feed(ms(2000), report(5));
        let trimmed = (after as f64 * (1.0 - 12.0 / 256.0) * LOSS_BACKOFF) as u32;
        assert!(e.estimate(ms(2000)).0.abs_diff(trimmed) <= 2);
        let held = e.estimate(ms(2000)).0;
        e.feed(ms(3500), Feedback::Report { fraction_lost: 4, rtt: Some(ms(20)), reached: None, queued: None });
        assert_eq!(e.estimate(ms(3500)).0, held);
        // No loss: quickly back to near the rate that congested the link
        // (the 70 % of 1.8 Mbps that got through at first)...
        let ceiling = 1_800_000.0 * (1.0 - 77.0 / 256.0);
        let mut s = 4;
        while (e.estimate(ms(s * 1000 - 1000)).0 as f64) < 0.86 * ceiling {
            e.feed(ms(s * 1000), report(0));
            s += 1;
            assert!(s < 8, "still under the ceiling after {s} s");
        }
        // ...then slowly near it (so a probe shows as a queue before
        // anything is lost)...
        let from = e.estimate(ms(s * 1000)).0 as f64;
        for t in s..s + 3 {
            e.feed(ms(t * 1000), report(0));
        }
        let near = e.estimate(ms((s + 2) * 1000)).0 as f64 / from;
        assert!((1.06..1.13).contains(&near), "grew {near:.2}x in 3 s near the ceiling (reports only)");
        // ...then, above it or once it is forgotten, x1.2 a second.
        for s in s + 3..14 {
            e.feed(ms(s * 1000), report(0));
        }
        let from = e.estimate(ms(13_000)).0 as f64;
        for s in 14..18 {
            e.feed(ms(s * 1000), report(0));
        }
        let grown = e.estimate(ms(17_000)).0 as f64 / from;
        assert!((1.9..2.2).contains(&grown), "grew {grown:.2}x in 4 s");
        // Reports ten times a second grow it no faster.
        let mut f = Estimator::new(Config { initial: 100_000, ..CONFIG });
        for t in 0..100 {
            f.feed(ms(1000 + t * 100), report(0));
        }
        let fast = f.estimate(ms(11_000)).0 as f64 / 100_000.0;
        assert!((5.0..6.5).contains(&fast), "{fast:.2}");
    }

    #[test]
    fn with_a_queue_standing_what_reached_the_receiver_is_the_link_rate() {
        // 500 kbps sent into a 400 kbps link: the report's round trip shows
        // the queue, and what reached the receiver is what the link carries.
        let mut e = Estimator::new(Config { initial: 520_000, ..CONFIG });
        e.sending(500_000);
        e.feed(ms(0), Feedback::Report { fraction_lost: 0, rtt: Some(ms(10)), reached: None, queued: None });
        e.feed(
            ms(1000),
            Feedback::Report { fraction_lost: 0, rtt: Some(ms(80)), reached: Some(344_000), queued: None },
        );
        let after = e.estimate(ms(1000)).0;
        let link = 344_000.0 + 56_000.0;
        assert!(after.abs_diff((link * QUEUE_BACKOFF) as u32) <= 2, "{after}");
        // Without it, what was sent is all there is to go on: over the link.
        let mut f = Estimator::new(Config { initial: 520_000, ..CONFIG });
        f.sending(500_000);
        f.feed(ms(0), Feedback::Report { fraction_lost: 0, rtt: Some(ms(10)), reached: None, queued: None });
        f.feed(ms(1000), Feedback::Report { fraction_lost: 0, rtt: Some(ms(80)), reached: None, queued: None });
        assert!(f.estimate(ms(1000)).0 as f64 > link, "{:?}", f.estimate(ms(1000)));
    }

    fn in_flight(rtt: u64, reached: u32, queued: u32) -> Feedback {
        Feedback::Report { fraction_lost: 0, rtt: Some(ms(rtt)), reached: Some(reached), queued: Some(queued) }
    }

    #[test]
    fn a_queue_starting_holds_growth_and_one_standing_brings_it_down() {
        let mut e = Estimator::new(Config { initial: 400_000, ..CONFIG });
        e.sending(340_000);
        // Calm: 1 kbit in flight at 344 kbps, round trip 1 ms. It grows.
        e.feed(ms(0), in_flight(1, 344_000, 1_000));
        e.feed(ms(1000), in_flight(1, 344_000, 1_000));
        let grown = e.estimate(ms(1000)).0;
        assert!(grown > 400_000, "{grown}");
        // A round trip 20 ms up: a queue is starting, it holds.
        e.feed(ms(2000), in_flight(21, 344_000, 1_000));
        assert_eq!(e.estimate(ms(2000)).0, grown);
        // 8 kbit more in flight (20 ms at 400 kbps), round trip still low:
        // it holds too.
        e.feed(ms(3000), in_flight(1, 344_000, 9_000));
        assert_eq!(e.estimate(ms(3000)).0, grown);
        // 16 kbit more (40 ms): a queue stands, to 85 % of what reaches
        // the receiver, before anything is lost.
        e.feed(ms(4000), in_flight(1, 344_000, 17_000));
        let after = e.estimate(ms(4000)).0;
        assert!(after.abs_diff(((344_000.0 + 56_000.0) * QUEUE_BACKOFF) as u32) <= 2, "{after}");
    }

    #[test]
    fn while_probing_past_what_the_link_carried_one_nack_is_enough() {
        let mut e = Estimator::new(Config { initial: 400_000, ..CONFIG });
        e.sending(340_000);
        // The link has shown 344 + 56 kbps; the estimate is not past it.
        e.feed(ms(0), in_flight(1, 344_000, 0));
        let nack = Feedback::Nacks { nacked: 1, sent: 22, left: Some(340_000) };
        e.feed(ms(500), nack);
        assert_eq!(e.estimate(ms(500)).0, 400_000, "one NACK alone says nothing");
        // Calm reports take it past 420 kbps: now one NACK is the probe's.
        e.feed(ms(1000), in_flight(1, 344_000, 0));
        e.feed(ms(2000), in_flight(1, 344_000, 0));
        let probing = e.estimate(ms(2000)).0;
        assert!(probing as f64 > 400_000.0 * PROVEN_MARGIN, "{probing}");
        e.feed(ms(2200), nack);
        let after = e.estimate(ms(2200)).0;
        let expected = (340_000.0 + 56_000.0) * (1.0 - 1.0 / 22.0) * LOSS_BACKOFF;
        assert!(after.abs_diff(expected as u32) <= 2, "{probing} -> {after}");
    }

    #[test]
    fn a_building_queue_brings_it_down_before_anything_is_lost() {
        let mut e = Estimator::new(Config { initial: 500_000, ..CONFIG });
        e.feed(ms(0), Feedback::Report { fraction_lost: 0, rtt: Some(ms(10)), reached: None, queued: None });
        let before = e.estimate(ms(0)).0;
        for s in 1..5 {
            e.feed(
                ms(s * 1000),
                Feedback::Report { fraction_lost: 0, rtt: Some(ms(150)), reached: None, queued: None },
            );
        }
        let after = e.estimate(ms(4000)).0;
        assert!(after < before * 8 / 10 && after > before / 3, "{before} -> {after}");
    }

    #[test]
    fn transport_feedback_follows_the_link_within_a_fraction_of_a_second() {
        let mut e = Estimator::new(CONFIG);
        e.sending(1_500_000);
        // 1.6 Mbps into a 300 kbps link: the first summary says so.
        e.feed(ms(100), transport(1_600_000, 300_000, 0.8, 95));
        assert_eq!(e.estimate(ms(100)), (270_000, Source::Delay));
        // Repeated heavy loss readings do not compound: it sits at 90 %
        // of what gets through.
        e.feed(ms(200), transport(1_000_000, 300_000, 0.6, 100));
        assert_eq!(e.estimate(ms(200)).0, 270_000);
        // The queue drains, calm: it grows, slowly near the ceiling.
        e.sending(220_000);
        let mut t = 1200;
        while t <= 2000 {
            e.feed(ms(t), transport(280_000, 280_000, 0.0, 2));
            t += 100;
        }
        let near = e.estimate(ms(2000)).0;
        assert!((285_000..300_000).contains(&near), "{near}");
        // A queue over 40 ms: to 85 % of what gets through.
        e.feed(ms(2100), transport(320_000, 300_000, 0.0, 60));
        assert_eq!(e.estimate(ms(2100)).0, 255_000);
        // Transport feedback hides reports' loss (it knows better) but
        // keeps their round trip.
        e.feed(ms(2200), Feedback::Report { fraction_lost: 128, rtt: Some(ms(30)), reached: None, queued: None });
        assert_eq!(e.estimate(ms(2200)).0, 255_000);
        assert_eq!(e.rtt(), Some(ms(30)));
    }

    #[test]
    fn a_draining_queue_does_not_lower_what_the_link_is_known_to_carry() {
        let mut e = Estimator::new(Config { initial: 420_000, ..CONFIG });
        e.sending(300_000);
        // A queue while 380 kbps get through: down to 85 % of that.
        e.feed(ms(0), transport(420_000, 380_000, 0.0, 60));
        assert_eq!(e.estimate(ms(0)).0, 323_000);
        // It drains at a lower rate, still queued a second later.
        e.feed(ms(1000), transport(330_000, 330_000, 0.0, 45));
        assert_eq!(e.estimate(ms(1000)).0, 280_500);
        // Calm: quickly back to 85 % of 380 kbps, then slowly through
        // the band around it (where the link filled), not at 20 % a second.
        let mut t = 1100;
        while t <= 4000 {
            e.feed(ms(t), transport(300_000, 300_000, 0.0, 2));
            t += 100;
        }
        let at_4 = e.estimate(ms(4000)).0 as f64;
        while t <= 5000 {
            e.feed(ms(t), transport(330_000, 330_000, 0.0, 2));
            t += 100;
        }
        let grew = e.estimate(ms(5000)).0 as f64 / at_4;
        assert!(at_4 > 323_000.0 && at_4 < 380_000.0, "{at_4}");
        assert!((1.03..1.07).contains(&grew), "{grew:.3}");
    }

    #[test]
    fn packets_the_pacer_dropped_are_not_counted_as_lost_on_the_link() {
        // Half of 100 reported lost, 40 of them never sent: 10 of 60 sent.
        assert_eq!(link_fraction_lost(128, 100, 40), (10.0f64 / 60.0 * 256.0).round() as u8);
        // All the loss was the pacer's.
        assert_eq!(link_fraction_lost(100, 100, 50), 0);
        assert_eq!(link_fraction_lost(200, 10, 10), 0);
        // Nothing dropped unsent: the report stands.
        assert_eq!(link_fraction_lost(30, 100, 0), 30);
        assert_eq!(link_fraction_lost(30, 0, 0), 30);
    }

    #[test]
    fn nacks_show_heavy_loss_long_before_a_report_does() {
        let mut e = Estimator::new(CONFIG);
        e.sending(1_500_000);
        // A quarter of a second: 120 packets sent, 90 asked for again.
        e.feed(ms(250), Feedback::Nacks { nacked: 90, sent: 120, left: None });
        let after = e.estimate(ms(250)).0;
        let wire = 1_500_000.0 * 1.04 + 56_000.0;
        assert!(after.abs_diff((wire * 0.25 * LOSS_BACKOFF) as u32) <= 2, "{after}");
        // What left the pacer, when known, is what the link was offered
        // (the encoder's rate collapses while frames are skipped).
        let mut g = Estimator::new(CONFIG);
        g.sending(100_000);
        g.feed(ms(250), Feedback::Nacks { nacked: 60, sent: 120, left: Some(1_200_000) });
        let after = g.estimate(ms(250)).0;
        assert!(after.abs_diff((1_256_000.0 * 0.5 * LOSS_BACKOFF) as u32) <= 2, "{after}");
        // Too few packets, or too few lost (one or two NACKed are as often
        // late as lost): nothing.
        let mut f = Estimator::new(CONFIG);
        f.feed(ms(250), Feedback::Nacks { nacked: 5, sent: 10, left: None });
        f.feed(ms(500), Feedback::Nacks { nacked: 1, sent: 120, left: None });
        f.feed(ms(750), Feedback::Nacks { nacked: 2, sent: 22, left: None });
        assert_eq!(f.estimate(ms(750)).0, 1_800_000);
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
        // estimate past PROBE times that on the wire.
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
