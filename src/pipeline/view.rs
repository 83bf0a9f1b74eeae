//! One thread per downstream view: it renders the room's scene with its
//! own compositor, encodes it once, and hands the same encoded frame to
//! every member watching this view. It draws as soon as a new picture
//! arrives ([`Cadence`]: at most the view's frame rate on average, at least
//! once a frame period), not on a fixed tick that would add up to a
//! period of waiting.

use super::scene::SharedScene;
use crate::media::compositor::{Compositor, Source};
use crate::media::h264::{H264Config, H264Encoder};
use crate::room::ViewKey;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Least time between two keyframes forced by requests (PLI, FIR, joins).
pub const KEYFRAME_THROTTLE: Duration = Duration::from_millis(300);

/// An encoded frame on its way to the members of a view.
#[derive(Debug)]
pub struct EncodedFrame {
    /// Annex B access unit.
    pub data: Bytes,
    /// IDR.
    pub keyframe: bool,
    /// Time since the previous frame of this view (the RTP timestamp step).
    pub duration: Duration,
    /// When it was rendered.
    pub rendered: Instant,
}

struct Subscriber {
    peer: String,
    tx: mpsc::Sender<Arc<EncodedFrame>>,
}

/// Counters of one view.
#[derive(Default)]
pub struct ViewStats {
    /// Frames rendered and encoded.
    pub frames: AtomicU64,
    /// Ticks that came later than a whole frame period.
    pub late: AtomicU64,
    /// Frames a member's queue had no room for.
    pub dropped: AtomicU64,
    /// Time spent rendering and encoding, microseconds.
    pub busy_us: AtomicU64,
}

/// A running view. Dropping it stops its thread.
pub struct View {
    key: ViewKey,
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    keyframe: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Counters.
    pub stats: Arc<ViewStats>,
}

impl View {
    /// Starts the thread for `key`, drawing `scene`.
    pub fn spawn(key: ViewKey, scene: SharedScene, fast: bool, thread_name: String) -> std::io::Result<Self> {
        let subscribers = Arc::new(Mutex::new(Vec::new()));
        let keyframe = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ViewStats::default());
        let worker = Worker {
            key: key.clone(),
            scene,
            subscribers: subscribers.clone(),
            keyframe: keyframe.clone(),
            stop: stop.clone(),
            stats: stats.clone(),
            fast,
        };
        let thread = std::thread::Builder::new().name(thread_name).spawn(move || worker.run())?;
        Ok(Self { key, subscribers, keyframe, stop, thread: Some(thread), stats })
    }

    /// The view's key.
    pub fn key(&self) -> &ViewKey {
        &self.key
    }

    /// Adds a member. Call [`View::request_keyframe`] once it can receive
    /// (a keyframe sent before its connection is up would be lost).
    pub fn subscribe(&self, peer: &str, tx: mpsc::Sender<Arc<EncodedFrame>>) {
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| s.peer != peer);
        subs.push(Subscriber { peer: peer.to_owned(), tx });
    }

    /// Removes a member.
    pub fn unsubscribe(&self, peer: &str) {
        lock(&self.subscribers).retain(|s| s.peer != peer);
    }

    /// Peers watching.
    pub fn subscribers(&self) -> Vec<String> {
        lock(&self.subscribers).iter().map(|s| s.peer.clone()).collect()
    }

    /// Asks for a keyframe soon (throttled).
    pub fn request_keyframe(&self) {
        self.keyframe.store(true, Ordering::Relaxed);
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these locks stays valid if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Worker {
    key: ViewKey,
    scene: SharedScene,
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
    keyframe: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    stats: Arc<ViewStats>,
    fast: bool,
}

impl Worker {
    fn run(self) {
        let span = tracing::info_span!("view", layout = %self.key.layout, size = %format!("{}x{}", self.key.width, self.key.height));
        let _enter = span.enter();
        let mut compositor = match Compositor::new(self.key.width, self.key.height) {
            Ok(c) => c,
            Err(e) => return tracing::warn!(error = %e, "cannot start view"),
        };
        let mut config = H264Config::new(self.key.width, self.key.height, self.key.fps, self.key.bitrate);
        config.fast = self.fast;
        let mut encoder = match H264Encoder::new(config) {
            Ok(e) => e,
            Err(e) => return tracing::warn!(error = %e, "cannot start view encoder"),
        };
        let period = Duration::from_secs_f64(1.0 / self.key.fps.max(1) as f64);
        let start = Instant::now();
        let mut cadence = Cadence::new(period);
        let pulse = self.scene.pulse().clone();
        let mut seen = pulse.beats();
        let mut last_sent: Option<Instant> = None;
        let mut last_forced: Option<Instant> = None;
        tracing::debug!("view started");
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let beats = pulse.beats();
            let fresh = beats != seen;
            if !cadence.due(now, fresh) {
                // Until the next draw is due, or something new comes (at
                // most 50 ms, to notice a stop).
                let until = cadence.next(now, fresh).min(now + Duration::from_millis(50));
                if fresh {
                    std::thread::sleep(until.saturating_duration_since(now));
                } else {
                    pulse.wait(seen, until);
                }
                continue;
            }
            seen = beats;
            if cadence.late() {
                self.stats.late.fetch_add(1, Ordering::Relaxed);
            }
            let began = Instant::now();
            let snapshot = self.scene.snapshot();
            let latest: Vec<_> = snapshot
                .tiles
                .iter()
                .map(|t| t.slot.latest().filter(|l| began.saturating_duration_since(l.at) <= snapshot.video_timeout))
                .collect();
            let sources: Vec<Source<'_>> = snapshot
                .tiles
                .iter()
                .zip(&latest)
                .map(|(t, l)| Source {
                    id: t.id,
                    name: &t.name,
                    frame: l.as_ref().map(|l| l.frame.as_frame()),
                    generation: l.as_ref().map_or(0, |l| l.generation),
                })
                .collect();
            let stats = compositor.render(&snapshot.layout, &sources, snapshot.speaker);
            tracing::trace!(
                tiles = sources.len(),
                with_video = sources.iter().filter(|s| s.frame.is_some()).count(),
                ?stats,
                "rendered"
            );
            drop(sources);
            if lock(&self.subscribers).is_empty() {
                continue;
            }
            if self.keyframe.load(Ordering::Relaxed) && last_forced.is_none_or(|t| began - t >= KEYFRAME_THROTTLE) {
                self.keyframe.store(false, Ordering::Relaxed);
                last_forced = Some(began);
                encoder.force_keyframe();
            }
            let pts = began - start;
            let encoded = match encoder.encode(&compositor.canvas().as_frame(), pts) {
                Ok(Some(e)) => EncodedFrame {
                    data: Bytes::copy_from_slice(e.data),
                    keyframe: e.keyframe,
                    duration: last_sent.map_or(period, |t| began - t),
                    rendered: began,
                },
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "encode failed");
                    continue;
                }
            };
            last_sent = Some(began);
            let frame = Arc::new(encoded);
            for s in lock(&self.subscribers).iter() {
                if s.tx.try_send(frame.clone()).is_err() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.stats.frames.fetch_add(1, Ordering::Relaxed);
            self.stats.busy_us.fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
            tracing::trace!(bytes = frame.data.len(), keyframe = frame.keyframe, "frame");
        }
        tracing::debug!("view stopped");
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
