//! What transport-wide feedback says about a member's link, summed up ten
//! times a second: how fast our packets got through, what share was lost,
//! and how long a queue they met on the way.
//!
//! Transport-wide feedback (TWCC) names every packet we sent with the
//! instant it arrived on the receiver's clock. webrtc-rs's congestion
//! controller joins that with the instant each packet left our pacer and
//! hands us the pairs ([`Delivery`]); from them:
//!
//! - **delivered rate**: the bytes that arrived over the span of their
//!   arrivals (the newest [`DELIVERY_SPAN`]). At a bottleneck, arrivals are
//!   spaced by the link, so this is what the link carries, measured in a
//!   fraction of a second rather than read from a receiver report a
//!   second later;
//! - **loss**: packets reported lost over packets reported (the newest
//!   [`DELIVERY_SPAN`] of them when there are enough);
//! - **queue**: each packet's one-way delay (arrival minus departure, on
//!   two clocks, so only differences mean anything) over the least seen in
//!   the last [`BASE_MEMORY`]: the time packets now spend waiting in some
//!   queue on the path.
//!
//! Pure: times come in as arguments.

use std::collections::VecDeque;
use std::time::Duration;

/// Departures a summary looks back over.
pub const WINDOW: Duration = Duration::from_millis(500);
/// Least time between two summaries.
pub const SUMMARY_EVERY: Duration = Duration::from_millis(100);
/// How long the least one-way delay is remembered.
pub const BASE_MEMORY: Duration = Duration::from_secs(10);
/// The delivered rate is read over the arrivals of this long, the newest.
pub const DELIVERY_SPAN: Duration = Duration::from_millis(250);
/// Fewer packets than this in the newest [`DELIVERY_SPAN`]: loss is read
/// over the whole window.
const MIN_LOSS_SAMPLE: usize = 20;
/// Fewer arrivals than this give no arrival-spaced rate.
const MIN_ARRIVALS: usize = 5;
/// A shorter arrival span gives no arrival-spaced rate.
const MIN_SPAN: Duration = Duration::from_millis(40);
/// Packets whose delay makes up the queue reading: the newest.
const QUEUE_SAMPLE: Duration = Duration::from_millis(100);

/// One packet we sent and what the receiver said of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delivery {
    /// When it left our pacer (our clock).
    pub departure: Duration,
    /// When it arrived (the receiver's clock), or `None`: lost.
    pub arrival: Option<Duration>,
    /// Bytes on the wire.
    pub size: usize,
}

/// The link over the last [`WINDOW`] of departures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransportSummary {
    /// What we sent, bits/s.
    pub sent_bps: u32,
    /// What got through, bits/s (arrival-spaced when there are enough
    /// arrivals, else what was sent less what was lost).
    pub delivered_bps: u32,
    /// Share of packets lost (0..1).
    pub loss: f64,
    /// How long the newest packets waited in a queue.
    pub queue: Duration,
}

/// Turns deliveries into summaries (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct TransportMeter {
    window: VecDeque<Delivery>,
    /// Least one-way delay per second of departures (seconds, receiver
    /// clock minus ours), oldest first.
    base: VecDeque<(Duration, f64)>,
    last_summary: Option<Duration>,
}

impl TransportMeter {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the deliveries one feedback report resolved (in send order);
    /// returns a summary when one is due.
    pub fn feed(&mut self, now: Duration, deliveries: &[Delivery]) -> Option<TransportSummary> {
        for d in deliveries {
            self.window.push_back(*d);
            if let Some(arrival) = d.arrival {
                self.note_delay(d.departure, arrival.as_secs_f64() - d.departure.as_secs_f64());
            }
        }
        let newest = self.window.iter().map(|d| d.departure).max()?;
        while self.window.front().is_some_and(|d| newest.saturating_sub(d.departure) > WINDOW) {
            self.window.pop_front();
        }
        if self.last_summary.is_some_and(|t| now.saturating_sub(t) < SUMMARY_EVERY) || deliveries.is_empty() {
            return None;
        }
        self.last_summary = Some(now);
        Some(self.summary(newest))
    }

    fn note_delay(&mut self, departure: Duration, delay: f64) {
        let second = Duration::from_secs(departure.as_secs());
        match self.base.back_mut() {
            Some((at, least)) if *at == second => *least = least.min(delay),
            _ => self.base.push_back((second, delay)),
        }
        while self.base.front().is_some_and(|(at, _)| second.saturating_sub(*at) > BASE_MEMORY) {
            self.base.pop_front();
        }
    }

    fn summary(&self, newest: Duration) -> TransportSummary {
        let oldest = self.window.front().map_or(newest, |d| d.departure);
        let bits = |it: &mut dyn Iterator<Item = &Delivery>| it.map(|d| d.size as f64 * 8.0).sum::<f64>();
        let sent_bits = bits(&mut self.window.iter());
        let span = newest.saturating_sub(oldest).max(SUMMARY_EVERY).as_secs_f64();
        let sent_bps = sent_bits / span;
        // Loss over the newest packets when there are enough of them (a
        // link that just fell shows at once), else over the window.
        let newest_packets = self.window.iter().filter(|d| newest.saturating_sub(d.departure) <= DELIVERY_SPAN).count();
        let counted = if newest_packets >= MIN_LOSS_SAMPLE { newest_packets } else { self.window.len() };
        let lost = self.window.iter().rev().take(counted).filter(|d| d.arrival.is_none()).count();
        let loss = if counted == 0 { 0.0 } else { lost as f64 / counted as f64 };
        // Arrival-spaced over the newest arrivals: right after the link
        // changes, older arrivals would still speak of the old link.
        let last = self.window.iter().filter_map(|d| d.arrival).max();
        let arrivals: Vec<(Duration, usize)> = self
            .window
            .iter()
            .filter_map(|d| d.arrival.map(|a| (a, d.size)))
            .filter(|(a, _)| last.is_some_and(|l| l.saturating_sub(*a) <= DELIVERY_SPAN))
            .collect();
        let first = arrivals.iter().map(|(a, _)| *a).min();
        let delivered_bps = match (first, last) {
            (Some(f), Some(l)) if arrivals.len() >= MIN_ARRIVALS && l.saturating_sub(f) >= MIN_SPAN => {
                // The first arrival opens the span; its bytes came before it.
                let carried: f64 = arrivals.iter().filter(|(a, _)| *a > f).map(|(_, s)| *s as f64 * 8.0).sum();
                (carried / l.saturating_sub(f).as_secs_f64()).min(sent_bps * 1.5)
            }
            _ => sent_bps * (1.0 - loss),
        };
        let least = self.base.iter().map(|(_, d)| *d).fold(f64::INFINITY, f64::min);
        let recent: Vec<f64> = self
            .window
            .iter()
            .filter(|d| newest.saturating_sub(d.departure) <= QUEUE_SAMPLE)
            .filter_map(|d| d.arrival.map(|a| a.as_secs_f64() - d.departure.as_secs_f64()))
            .collect();
        let queue = if recent.is_empty() || !least.is_finite() {
            Duration::ZERO
        } else {
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            Duration::from_secs_f64((mean - least).max(0.0))
        };
        TransportSummary {
            sent_bps: sent_bps.min(u32::MAX as f64) as u32,
            delivered_bps: delivered_bps.clamp(0.0, u32::MAX as f64) as u32,
            loss,
            queue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    /// Packets of `size` bytes sent at `send_bps` from `from` for `secs`
    /// through a link of `link_bps` with a drop-tail queue of `queue`
    /// (its clock `offset` ahead of ours); returns them in send order.
    fn through_link(
        from: f64,
        secs: f64,
        send_bps: f64,
        link_bps: f64,
        queue: Duration,
        offset: f64,
        free_at: &mut f64,
    ) -> Vec<Delivery> {
        let size = 1200usize;
        let gap = size as f64 * 8.0 / send_bps;
        let service = size as f64 * 8.0 / link_bps;
        let mut out = Vec::new();
        let mut t = from;
        while t < from + secs {
            let start = free_at.max(t);
            let arrival = if start - t > queue.as_secs_f64() {
                None
            } else {
                *free_at = start + service;
                Some(Duration::from_secs_f64(*free_at + offset))
            };
            out.push(Delivery { departure: Duration::from_secs_f64(t), arrival, size });
            t += gap;
        }
        out
    }

    /// Feeds `deliveries` as the receiver would report them, every 100 ms;
    /// returns the last summary.
    fn feed_all(m: &mut TransportMeter, deliveries: &[Delivery]) -> TransportSummary {
        let mut last = None;
        for chunk in deliveries.chunks(10) {
            let now = chunk.last().unwrap().departure + ms(50.0);
            last = m.feed(now, chunk).or(last);
        }
        last.expect("a summary")
    }

    #[test]
    fn an_idle_link_carries_what_is_sent_with_no_queue_and_no_loss() {
        let mut m = TransportMeter::new();
        let mut free = 0.0;
        let d = through_link(0.0, 2.0, 1_000_000.0, 5_000_000.0, ms(100.0), 1234.5, &mut free);
        let s = feed_all(&mut m, &d);
        assert!((950_000..1_060_000).contains(&s.sent_bps), "{s:?}");
        assert!((900_000..1_100_000).contains(&s.delivered_bps), "{s:?}");
        assert_eq!(s.loss, 0.0);
        assert!(s.queue < ms(3.0), "{s:?}");
    }

    #[test]
    fn a_bottleneck_shows_its_rate_its_queue_and_its_loss_within_a_second() {
        let mut m = TransportMeter::new();
        let mut free = 0.0;
        // 1 s at 300 kbps into a 400 kbps link: clean.
        let calm = through_link(0.0, 1.0, 300_000.0, 400_000.0, ms(100.0), 7.0, &mut free);
        let s = feed_all(&mut m, &calm);
        assert!(s.queue < ms(5.0) && s.loss == 0.0, "{s:?}");
        // Then 1.6 Mbps into it: 3/4 lost, the queue full, 400 through.
        let flood = through_link(1.0, 1.0, 1_600_000.0, 400_000.0, ms(100.0), 7.0, &mut free);
        let s = feed_all(&mut m, &flood[..flood.len() / 2]);
        assert!((360_000..440_000).contains(&s.delivered_bps), "{s:?}");
        assert!(s.loss > 0.6 && s.loss < 0.85, "{s:?}");
        assert!(s.queue > ms(80.0) && s.queue < ms(110.0), "{s:?}");
    }

    #[test]
    fn a_queue_building_slowly_shows_before_anything_is_lost() {
        let mut m = TransportMeter::new();
        let mut free = 0.0;
        let calm = through_link(0.0, 1.0, 380_000.0, 400_000.0, ms(100.0), 0.0, &mut free);
        feed_all(&mut m, &calm);
        // 10 % over the link for a second: 40 ms of queue, nothing lost yet.
        let over = through_link(1.0, 0.4, 440_000.0, 400_000.0, ms(100.0), 0.0, &mut free);
        let s = feed_all(&mut m, &over);
        assert_eq!(s.loss, 0.0);
        assert!(s.queue > ms(25.0), "{s:?}");
    }

    #[test]
    fn summaries_come_at_most_ten_times_a_second_and_nothing_comes_of_nothing() {
        let mut m = TransportMeter::new();
        assert_eq!(m.feed(ms(0.0), &[]), None);
        let d = Delivery { departure: ms(0.0), arrival: Some(ms(10.0)), size: 1000 };
        assert!(m.feed(ms(10.0), &[d]).is_some());
        let d = Delivery { departure: ms(20.0), arrival: Some(ms(30.0)), size: 1000 };
        assert!(m.feed(ms(50.0), &[d]).is_none());
        let d = Delivery { departure: ms(100.0), arrival: None, size: 1000 };
        let s = m.feed(ms(120.0), &[d]).unwrap();
        assert!((s.loss - 1.0 / 3.0).abs() < 1e-9);
    }
}
