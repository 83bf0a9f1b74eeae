//! One thread per downstream view: it renders the room's scene with its
//! own compositor once per frame and posts it to each quality tier (see
//! `bwe::tiers`: up to three encoders, each at the rate its members'
//! links afford, at a lower frame rate or size far below the view's
//! rate), which encodes it on a thread of its own (`pipeline::tier`) and
//! hands the same encoded frame to every member of that tier. The view
//! draws the next canvas while the tiers encode the last; a tier that
//! cannot keep up skips canvases, the others do not wait for it. It draws
//! as soon as a new picture arrives ([`Cadence`]), not on a fixed tick.
//!
//! A tier's rate and frame rate change on the running encoder (no
//! keyframe); only a new picture size starts a new encoder, whose first
//! frame is a keyframe for everyone on the tier. A member who moves to
//! another tier (or joins) gets nothing from it until its next keyframe,
//! which is asked for at once (throttled per tier): its decoder never sees
//! a picture that refers to frames it never had.

use super::cadence::Cadence;
use super::scene::SharedScene;
use super::tier::{EncodedFrame, Job, Sink, TierThread};
use crate::bwe::tiers::{Shape, Tier, TierId, ViewRate};
use crate::media::compositor::{Compositor, Source};
use crate::media::frame::VideoFrame;
use crate::media::h264::{H264Config, H264Encoder};
use crate::room::ViewKey;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Least time between two keyframes forced by requests (PLI, FIR, joins)
/// on the full-rate tier.
pub const KEYFRAME_THROTTLE: Duration = Duration::from_millis(300);
/// Seconds between a tier's own keyframes. Members ask for keyframes
/// when they need them (joining, moving tier, after loss); a keyframe
/// nobody asked for costs several frames' worth of bits on every member's
/// link (on a thin one, a freeze), so this is only a safety net.
const KEYFRAME_PERIOD_SECONDS: u32 = 60;
/// How often a view logs its draws (debug).
const VIEW_LOG_EVERY: Duration = Duration::from_secs(5);
/// The most a lower tier waits between forced keyframes.
const KEYFRAME_THROTTLE_MAX: Duration = Duration::from_millis(600);

/// Least time between forced keyframes on a tier of `bitrate` in a view
/// of `full` bits/s: a keyframe costs several frames' worth of bits, and
/// on a tier for thin links a receiver that keeps asking (its link loses
/// packets) must not turn the tier into keyframes only. Scaled by the
/// rate, from [`KEYFRAME_THROTTLE`] at the full rate to at most 600 ms.
pub fn keyframe_throttle(bitrate: u32, full: u32) -> Duration {
    let scale = full.max(1) as f64 / bitrate.max(1) as f64;
    KEYFRAME_THROTTLE.mul_f64(scale.max(1.0)).min(KEYFRAME_THROTTLE_MAX)
}

struct Subscriber {
    peer: String,
    tx: mpsc::Sender<Arc<EncodedFrame>>,
    /// The tier the member watches.
    tier: TierId,
    /// Nothing until a keyframe of its tier.
    waiting: bool,
    /// The tier it moves to: it keeps watching `tier` until a keyframe
    /// of this one comes, so a move shows no gap.
    next: Option<TierId>,
}

/// Counters of one view.
#[derive(Default)]
pub struct ViewStats {
    /// Frames rendered.
    pub frames: AtomicU64,
    /// Frames encoded, all tiers.
    pub encoded: AtomicU64,
    /// Draws that came later than two frame periods.
    pub late: AtomicU64,
    /// Frames a member's queue had no room for.
    pub dropped: AtomicU64,
    /// Canvases a tier had no time for (a newer one came while it was
    /// still encoding; it skips the older).
    pub busy: AtomicU64,
    /// Time spent rendering, microseconds.
    pub render_us: AtomicU64,
    /// Time spent encoding, all tiers, microseconds.
    pub encode_us: AtomicU64,
}

/// What the handle and the thread share.
struct Shared {
    subscribers: Mutex<Vec<Subscriber>>,
    /// The tiers to run, best first.
    tiers: Mutex<Vec<Tier>>,
    /// Tiers a keyframe was asked for.
    keyframes: Mutex<BTreeSet<TierId>>,
    /// Tiers a member moves to or must start again on: their keyframes
    /// wait only [`KEYFRAME_THROTTLE`], whatever the tier's rate.
    resyncs: Mutex<BTreeSet<TierId>>,
    stop: AtomicBool,
}

/// A running view. Dropping it stops its thread.
pub struct View {
    key: ViewKey,
    rate: ViewRate,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Counters.
    pub stats: Arc<ViewStats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data behind these locks stays valid if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl View {
    /// Starts the thread for `key`, drawing `scene`; members' audio runs
    /// at `audio_bitrate` beside it (the tiers leave room for it).
    pub fn spawn(
        key: ViewKey,
        audio_bitrate: u32,
        scene: SharedScene,
        fast: bool,
        thread_name: String,
    ) -> std::io::Result<Self> {
        let rate =
            ViewRate { width: key.width, height: key.height, fps: key.fps, bitrate: key.bitrate, audio: audio_bitrate };
        let shared = Arc::new(Shared {
            subscribers: Mutex::new(Vec::new()),
            tiers: Mutex::new(vec![Tier { id: FIRST_TIER, shape: Shape::full(&rate) }]),
            keyframes: Mutex::new(BTreeSet::new()),
            resyncs: Mutex::new(BTreeSet::new()),
            stop: AtomicBool::new(false),
        });
        let stats = Arc::new(ViewStats::default());
        let worker = Worker { key: key.clone(), scene, shared: shared.clone(), stats: stats.clone(), fast };
        let thread = std::thread::Builder::new().name(thread_name).spawn(move || worker.run())?;
        Ok(Self { key, rate, shared, thread: Some(thread), stats })
    }

    /// The view's key.
    pub fn key(&self) -> &ViewKey {
        &self.key
    }

    /// The view's rates, as the tiers see them.
    pub fn rate(&self) -> &ViewRate {
        &self.rate
    }

    /// Adds a member at the best tier (or moves it back there). It gets
    /// frames from the next keyframe on; call [`View::request_keyframe`]
    /// once it can receive.
    pub fn subscribe(&self, peer: &str, tx: mpsc::Sender<Arc<EncodedFrame>>) {
        let tier = lock(&self.shared.tiers).first().map_or(FIRST_TIER, |t| t.id);
        let mut subs = lock(&self.shared.subscribers);
        subs.retain(|s| s.peer != peer);
        subs.push(Subscriber { peer: peer.to_owned(), tx, tier, waiting: true, next: None });
    }

    /// Removes a member.
    pub fn unsubscribe(&self, peer: &str) {
        lock(&self.shared.subscribers).retain(|s| s.peer != peer);
    }

    /// Peers watching.
    pub fn subscribers(&self) -> Vec<String> {
        lock(&self.shared.subscribers).iter().map(|s| s.peer.clone()).collect()
    }

    /// Runs these tiers (best first) and puts each member on its tier
    /// (`members`; members not named keep theirs). A member that moves
    /// keeps its old tier until a keyframe of the new one, which is asked
    /// for; if its old tier is gone, it waits for that keyframe.
    pub fn set_tiers(&self, tiers: Vec<Tier>, members: &std::collections::BTreeMap<String, TierId>) {
        let known: BTreeSet<TierId> = tiers.iter().map(|t| t.id).collect();
        let best = tiers.first().map_or(FIRST_TIER, |t| t.id);
        *lock(&self.shared.tiers) = tiers;
        let mut moved = BTreeSet::new();
        for s in lock(&self.shared.subscribers).iter_mut() {
            let mut tier = members.get(&s.peer).copied().unwrap_or(s.next.unwrap_or(s.tier));
            if !known.contains(&tier) {
                tier = best;
            }
            if tier == s.tier {
                s.next = None;
            } else if !known.contains(&s.tier) || s.waiting {
                s.tier = tier;
                s.next = None;
                s.waiting = true;
                moved.insert(tier);
            } else if s.next != Some(tier) {
                s.next = Some(tier);
                moved.insert(tier);
            }
        }
        lock(&self.shared.resyncs).extend(moved);
    }

    /// How many tiers it encodes.
    pub fn tier_count(&self) -> usize {
        lock(&self.shared.tiers).len()
    }

    /// The tier `peer` watches.
    pub fn tier_of(&self, peer: &str) -> Option<TierId> {
        lock(&self.shared.subscribers).iter().find(|s| s.peer == peer).map(|s| s.tier)
    }

    /// Asks every tier for a keyframe soon (throttled per tier).
    pub fn request_keyframe(&self) {
        let ids: Vec<TierId> = lock(&self.shared.tiers).iter().map(|t| t.id).collect();
        lock(&self.shared.keyframes).extend(ids);
    }

    /// Asks `peer`'s tier for a keyframe soon (throttled per tier, more
    /// on lower tiers: see [`keyframe_throttle`]).
    pub fn request_keyframe_for(&self, peer: &str) {
        if let Some(tier) = self.tier_of(peer) {
            lock(&self.shared.keyframes).insert(tier);
        }
    }

    /// Starts `peer` again on a keyframe of its tier: it gets nothing
    /// until one comes, and that comes soon whatever the tier's rate (for
    /// a member whose downstream skipped frames to catch up with its link).
    pub fn resync(&self, peer: &str) {
        let mut subs = lock(&self.shared.subscribers);
        if let Some(s) = subs.iter_mut().find(|s| s.peer == peer) {
            tracing::debug!(peer, tier = s.tier, next = ?s.next, "resync");
            s.waiting = true;
            if let Some(next) = s.next.take() {
                s.tier = next;
            }
            lock(&self.shared.resyncs).insert(s.tier);
        }
    }
}

impl Drop for View {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Encode every this many draws for `tier_fps` out of `view_fps`.
fn every(view_fps: u32, tier_fps: u32) -> u64 {
    (view_fps / tier_fps.max(1)).max(1) as u64
}

/// The tier a view starts with (everyone at the full rate).
const FIRST_TIER: TierId = 0;

struct Worker {
    key: ViewKey,
    scene: SharedScene,
    shared: Arc<Shared>,
    stats: Arc<ViewStats>,
    fast: bool,
}

impl Worker {
    /// Makes the tier threads match the wanted tiers: a tier keeps its
    /// encoder while its picture size stays (its rates change live);
    /// a new size starts a new encoder, on a new thread.
    fn sync_tiers(&self, tiers: &mut Vec<TierThread>) {
        let wanted = lock(&self.shared.tiers).clone();
        tiers.retain(|e| wanted.iter().any(|t| t.id == e.id && t.shape.same_size(&e.shape)));
        for tier in wanted {
            if let Some(e) = tiers.iter_mut().find(|e| e.id == tier.id) {
                e.shape = tier.shape;
                continue;
            }
            let shape = tier.shape;
            let mut config = H264Config::new(shape.width, shape.height, shape.fps, shape.bitrate);
            config.fast = self.fast;
            config.keyframe_interval = shape.fps.saturating_mul(KEYFRAME_PERIOD_SECONDS);
            let encoder = match H264Encoder::new(config) {
                Ok(encoder) => encoder,
                Err(e) => {
                    tracing::warn!(error = %e, ?shape, "cannot start a tier encoder");
                    continue;
                }
            };
            let name = format!("{}/{}", std::thread::current().name().unwrap_or("view"), tier.id);
            // Whoever watches it starts from a keyframe: its first frame is one.
            match TierThread::spawn(tier.id, shape, encoder, self.delivery(tier.id), name) {
                Ok(thread) => tiers.push(thread),
                Err(e) => tracing::warn!(error = %e, ?shape, "cannot start a tier thread"),
            }
        }
        tiers.sort_by_key(|e| std::cmp::Reverse(e.shape.bitrate));
    }

    /// Where tier `id`'s frames go: to each member on the tier, and to
    /// each member moving to it from its first keyframe on (see
    /// [`Subscriber`]).
    fn delivery(&self, id: TierId) -> Sink {
        let shared = self.shared.clone();
        let stats = self.stats.clone();
        Box::new(move |frame, took| {
            stats.encode_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
            let Some(frame) = frame else { return };
            stats.encoded.fetch_add(1, Ordering::Relaxed);
            let mut resync = false;
            let mut subs = lock(&shared.subscribers);
            for s in subs.iter_mut().filter(|s| s.tier == id || s.next == Some(id)) {
                if s.next == Some(id) {
                    if !frame.keyframe {
                        continue;
                    }
                    s.tier = id;
                    s.next = None;
                    s.waiting = false;
                } else if s.next.is_some() && s.waiting {
                    // Gone from this tier, its next has not started.
                    continue;
                }
                if s.waiting {
                    if !frame.keyframe {
                        resync = true;
                        continue;
                    }
                    s.waiting = false;
                }
                if s.tx.try_send(frame.clone()).is_err() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(subs);
            if resync {
                lock(&shared.resyncs).insert(id);
            }
            tracing::trace!(tier = id, bytes = frame.data.len(), keyframe = frame.keyframe, "frame");
        })
    }

    fn run(self) {
        let span = tracing::info_span!("view", layout = %self.key.layout, size = %format!("{}x{}", self.key.width, self.key.height));
        let _enter = span.enter();
        let mut compositor = match Compositor::new(self.key.width, self.key.height) {
            Ok(c) => c,
            Err(e) => return tracing::warn!(error = %e, "cannot start view"),
        };
        let period = Duration::from_secs_f64(1.0 / self.key.fps.max(1) as f64);
        let start = Instant::now();
        let mut cadence = Cadence::new(period);
        let pulse = self.scene.pulse().clone();
        let mut seen = pulse.beats();
        let mut tiers: Vec<TierThread> = Vec::new();
        let mut canvases = CanvasPool::default();
        let mut draws = 0u64;
        // When the view last logged, and its counts then.
        let mut logged = (start, [0u64; 3]);
        tracing::debug!("view started");
        while !self.shared.stop.load(Ordering::Relaxed) {
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
            if began.saturating_duration_since(logged.0) >= VIEW_LOG_EVERY {
                let counts =
                    [&self.stats.frames, &self.stats.late, &self.stats.busy].map(|c| c.load(Ordering::Relaxed));
                let [draws, late, busy] = [0, 1, 2].map(|i| counts[i] - logged.1[i]);
                tracing::debug!(draws, late, busy, "view output");
                logged = (began, counts);
            }
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
            tracing::trace!(tiles = sources.len(), ?stats, "rendered");
            drop(sources);
            self.stats.frames.fetch_add(1, Ordering::Relaxed);
            self.stats.render_us.fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
            draws += 1;
            self.sync_tiers(&mut tiers);
            let watched: BTreeSet<TierId> =
                lock(&self.shared.subscribers).iter().flat_map(|s| std::iter::once(s.tier).chain(s.next)).collect();
            let asked = std::mem::take(&mut *lock(&self.shared.keyframes));
            let resyncs = std::mem::take(&mut *lock(&self.shared.resyncs));
            let mut still_asked = BTreeSet::new();
            let mut still_resync = BTreeSet::new();
            let mut canvas = None;
            for tier in tiers.iter_mut() {
                let id = tier.id;
                if !watched.contains(&id) {
                    // Nobody on it: no encode (a keyframe starts anyone who comes).
                    tier.owes_keyframe = true;
                    continue;
                }
                let mut keyframe = false;
                if resyncs.contains(&id) {
                    if tier.last_forced.is_none_or(|t| began - t >= KEYFRAME_THROTTLE) {
                        tier.last_forced = Some(began);
                        keyframe = true;
                    } else {
                        still_resync.insert(id);
                    }
                } else if asked.contains(&id) {
                    let throttle = keyframe_throttle(tier.shape.bitrate, self.key.bitrate);
                    if tier.last_forced.is_none_or(|t| began - t >= throttle) {
                        tier.last_forced = Some(began);
                        keyframe = true;
                    } else {
                        still_asked.insert(id);
                    }
                }
                let every = every(self.key.fps, tier.shape.fps);
                if !draws.is_multiple_of(every) {
                    tier.owes_keyframe |= keyframe;
                    continue;
                }
                // One copy of the canvas for all the tiers due, which
                // encode it while the view draws the next.
                let canvas = canvas.get_or_insert_with(|| canvases.copy_of(compositor.canvas())).clone();
                let job =
                    Job { canvas, pts: began - start, began, shape: tier.shape, keyframe, step: period * every as u32 };
                if tier.post(job) {
                    self.stats.busy.fetch_add(1, Ordering::Relaxed);
                }
            }
            lock(&self.shared.keyframes).extend(still_asked);
            lock(&self.shared.resyncs).extend(still_resync);
        }
        tracing::debug!("view stopped");
    }
}

/// Copies of the canvas handed to the tier threads, reused once every
/// tier is done with one (a render allocates nothing in the steady state).
#[derive(Default)]
struct CanvasPool {
    frames: Vec<Arc<VideoFrame>>,
}

impl CanvasPool {
    /// A copy of `canvas` in a buffer no tier holds any more.
    fn copy_of(&mut self, canvas: &VideoFrame) -> Arc<VideoFrame> {
        let free = match self.frames.iter().position(|f| Arc::strong_count(f) == 1) {
            Some(i) => i,
            None => {
                self.frames.push(Arc::new(VideoFrame::default()));
                self.frames.len() - 1
            }
        };
        let frame = &mut self.frames[free];
        if let Some(f) = Arc::get_mut(frame) {
            if let Err(e) = f.copy_from(&canvas.as_frame()) {
                tracing::warn!(error = %e, "cannot copy the canvas");
            }
        }
        frame.clone()
    }
}
