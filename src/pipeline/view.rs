//! One thread per downstream view: it renders the room's scene with its
//! own compositor once per frame and encodes it once per quality tier
//! (see `bwe::tiers`: up to three encoders, each at the rate its members'
//! links afford, at a lower frame rate or size far below the view's
//! rate), handing the same encoded frame to every member of that tier.
//! Tiers due on the same frame encode side by side, on scoped threads
//! ([`encode_tiers`]): two 720p encodes in a row do not fit in a frame
//! interval on a slow core. It draws as soon as a new picture arrives
//! ([`Cadence`]), not on a fixed tick.
//!
//! A tier's rate and frame rate change on the running encoder (no
//! keyframe); only a new picture size starts a new encoder, whose first
//! frame is a keyframe for everyone on the tier. A member who moves to
//! another tier (or joins) gets nothing from it until its next keyframe,
//! which is asked for at once (throttled per tier): its decoder never sees
//! a picture that refers to frames it never had.

use super::cadence::Cadence;
use super::scene::SharedScene;
use crate::bwe::tiers::{Shape, Tier, TierId, ViewRate};
use crate::media::compositor::{Compositor, Source};
use crate::media::frame::{FrameRef, VideoFrame};
use crate::media::h264::{H264Config, H264Encoder};
use crate::media::scale::Scaler;
use crate::room::ViewKey;
use bytes::Bytes;
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

/// An encoded frame on its way to the members of a tier.
#[derive(Debug)]
pub struct EncodedFrame {
    /// Annex B access unit.
    pub data: Bytes,
    /// IDR.
    pub keyframe: bool,
    /// Time since the previous frame of this tier (the RTP timestamp step).
    pub duration: Duration,
    /// When it was rendered.
    pub rendered: Instant,
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

/// One tier's encoder and its scaled copy of the canvas.
struct TierEncoder {
    id: TierId,
    shape: Shape,
    encoder: H264Encoder,
    /// The canvas scaled to the tier's size (unused at the canvas size).
    scaled: VideoFrame,
    /// Its own scaler (tiers encode side by side).
    scaler: Scaler,
    /// Encode every this many draws (the view's fps over the tier's).
    every: u64,
    last_sent: Option<Instant>,
    last_forced: Option<Instant>,
}

impl TierEncoder {
    /// Takes a new rate and frame rate (same picture size) on the running encoder.
    fn follow(&mut self, shape: Shape, view_fps: u32) {
        if shape.bitrate != self.shape.bitrate {
            if let Err(e) = self.encoder.set_bitrate(shape.bitrate) {
                tracing::warn!(error = %e, tier = self.id, "cannot change the tier's bitrate");
            }
        }
        if shape.fps != self.shape.fps {
            if let Err(e) = self.encoder.set_fps(shape.fps as f32) {
                tracing::warn!(error = %e, tier = self.id, "cannot change the tier's frame rate");
            }
            self.every = every(view_fps, shape.fps);
            tracing::debug!(tier = self.id, ?shape, "tier frame rate");
        }
        self.shape = shape;
    }

    /// Scales `canvas` to the tier's size if need be and encodes it, as
    /// drawn at `began` (`pts` after the view started). `None` when
    /// nothing came out (rate control skipped the frame, or an error,
    /// logged).
    fn encode(&mut self, canvas: &VideoFrame, pts: Duration, began: Instant, period: Duration) -> Option<EncodedFrame> {
        let (w, h) = (self.shape.width as usize, self.shape.height as usize);
        let picture: FrameRef<'_> = if (w, h) == (canvas.width(), canvas.height()) {
            canvas.as_frame()
        } else {
            if let Err(e) = self.scaler.scale_frame(&canvas.as_frame(), &mut self.scaled, w, h) {
                tracing::warn!(error = %e, "cannot scale the canvas for a tier");
                return None;
            }
            self.scaled.as_frame()
        };
        match self.encoder.encode(&picture, pts) {
            Ok(Some(e)) => {
                let frame = EncodedFrame {
                    data: Bytes::copy_from_slice(e.data),
                    keyframe: e.keyframe,
                    duration: self.last_sent.map_or(period * self.every as u32, |t| began - t),
                    rendered: began,
                };
                self.last_sent = Some(began);
                Some(frame)
            }
            Ok(None) => {
                tracing::trace!(tier = self.id, bitrate = self.shape.bitrate, "rate control skipped a frame");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "encode failed");
                None
            }
        }
    }
}

/// Encodes the canvas on every tier of `due`, side by side: the first on
/// this thread, the others each on a scoped thread of its own (a 720p
/// encode takes a good part of a frame interval; two in a row would not
/// fit in one on a slow core, and the view would fall behind for every
/// tier). What each gave, in `due`'s order, and how long it took.
fn encode_tiers(
    due: Vec<&mut TierEncoder>,
    canvas: &VideoFrame,
    pts: Duration,
    began: Instant,
    period: Duration,
) -> Vec<(TierId, Option<EncodedFrame>, Duration)> {
    let run = |tier: &mut TierEncoder| {
        let at = Instant::now();
        let frame = tier.encode(canvas, pts, began, period);
        (tier.id, frame, at.elapsed())
    };
    let mut due = due.into_iter();
    let Some(first) = due.next() else { return Vec::new() };
    let rest: Vec<&mut TierEncoder> = due.collect();
    if rest.is_empty() {
        return vec![run(first)];
    }
    let span = tracing::Span::current();
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .into_iter()
            .map(|tier| {
                let span = span.clone();
                scope.spawn(move || span.in_scope(|| run(tier)))
            })
            .collect();
        let mut out = vec![run(first)];
        // A tier whose thread panicked gives nothing this frame.
        out.extend(handles.into_iter().filter_map(|h| h.join().ok()));
        out
    })
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
    /// Makes the encoders match the wanted tiers: a tier keeps its
    /// encoder while its picture size stays, and is told new rates live.
    fn sync_tiers(&self, encoders: &mut Vec<TierEncoder>) {
        let wanted = lock(&self.shared.tiers).clone();
        encoders.retain(|e| wanted.iter().any(|t| t.id == e.id && t.shape.same_size(&e.shape)));
        for tier in wanted {
            if let Some(e) = encoders.iter_mut().find(|e| e.id == tier.id) {
                e.follow(tier.shape, self.key.fps);
                continue;
            }
            let shape = tier.shape;
            let mut config = H264Config::new(shape.width, shape.height, shape.fps, shape.bitrate);
            config.fast = self.fast;
            config.keyframe_interval = shape.fps.saturating_mul(KEYFRAME_PERIOD_SECONDS);
            match H264Encoder::new(config) {
                Ok(encoder) => {
                    tracing::debug!(tier = tier.id, ?shape, "tier started");
                    encoders.push(TierEncoder {
                        id: tier.id,
                        shape,
                        encoder,
                        scaled: VideoFrame::default(),
                        scaler: Scaler::new(),
                        every: every(self.key.fps, shape.fps),
                        last_sent: None,
                        last_forced: None,
                    });
                    // Whoever watches it starts from a keyframe: it is one.
                }
                Err(e) => tracing::warn!(error = %e, ?shape, "cannot start a tier encoder"),
            }
        }
        encoders.sort_by_key(|e| std::cmp::Reverse(e.shape.bitrate));
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
        let mut encoders: Vec<TierEncoder> = Vec::new();
        let mut draws = 0u64;
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
            self.sync_tiers(&mut encoders);
            let watched: BTreeSet<TierId> =
                lock(&self.shared.subscribers).iter().flat_map(|s| std::iter::once(s.tier).chain(s.next)).collect();
            let asked = std::mem::take(&mut *lock(&self.shared.keyframes));
            let resyncs = std::mem::take(&mut *lock(&self.shared.resyncs));
            let mut still_asked = BTreeSet::new();
            let mut still_resync = BTreeSet::new();
            let mut due = Vec::new();
            for tier in encoders.iter_mut() {
                let id = tier.id;
                if !watched.contains(&id) {
                    // Nobody on it: no encode (a keyframe starts anyone who comes).
                    tier.encoder.force_keyframe();
                    continue;
                }
                if resyncs.contains(&id) {
                    if tier.last_forced.is_none_or(|t| began - t >= KEYFRAME_THROTTLE) {
                        tier.last_forced = Some(began);
                        tier.encoder.force_keyframe();
                    } else {
                        still_resync.insert(id);
                    }
                } else if asked.contains(&id) {
                    let throttle = keyframe_throttle(tier.shape.bitrate, self.key.bitrate);
                    if tier.last_forced.is_none_or(|t| began - t >= throttle) {
                        tier.last_forced = Some(began);
                        tier.encoder.force_keyframe();
                    } else {
                        still_asked.insert(id);
                    }
                }
                if draws.is_multiple_of(tier.every) {
                    due.push(tier);
                }
            }
            for (id, frame, took) in encode_tiers(due, compositor.canvas(), began - start, began, period) {
                let Some(frame) = frame else { continue };
                let frame = Arc::new(frame);
                let mut subs = lock(&self.shared.subscribers);
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
                            still_resync.insert(id);
                            continue;
                        }
                        s.waiting = false;
                    }
                    if s.tx.try_send(frame.clone()).is_err() {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(subs);
                self.stats.encoded.fetch_add(1, Ordering::Relaxed);
                self.stats.encode_us.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
                tracing::trace!(tier = id, bytes = frame.data.len(), keyframe = frame.keyframe, "frame");
            }
            lock(&self.shared.keyframes).extend(still_asked);
            lock(&self.shared.resyncs).extend(still_resync);
        }
        tracing::debug!("view stopped");
    }
}
