//! One quality tier's encoder, on a thread of its own (see `bwe::tiers`
//! for what tiers are). The view renders each canvas once and posts it to
//! every tier due on that frame; a tier scales it to its size, encodes it
//! and hands the frame to its sink (the view's delivery to the tier's
//! members).
//!
//! The mailbox holds one canvas: a newer one replaces one the tier has not
//! taken yet. So a tier that cannot keep up (two 720p encoders on a slow
//! core) drops its own frames, not the other tiers', and the view goes on
//! rendering the next canvas while the tiers encode the last one.
//!
//! A tier that gets fewer pictures than its frame rate (the machine is
//! busy, or the senders are slow) tells its encoder the rate it really
//! gets ([`FpsFollower`]): openh264 budgets each picture at bitrate /
//! frame rate, so without this a tier at 25 of 30 fps would send only
//! 5/6 of its bitrate.

use crate::bwe::tiers::{Shape, TierId};
use crate::media::frame::{FrameRef, VideoFrame};
use crate::media::h264::H264Encoder;
use crate::media::scale::Scaler;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a tier logs what it made (debug).
const OUTPUT_LOG_EVERY: Duration = Duration::from_secs(5);

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

/// One canvas for a tier to encode.
pub struct Job {
    /// The rendered canvas (shared by every tier due on this frame).
    pub canvas: Arc<VideoFrame>,
    /// Time since the view started.
    pub pts: Duration,
    /// When it was drawn.
    pub began: Instant,
    /// What the tier makes now (its rate and frame rate follow this).
    pub shape: Shape,
    /// Make this frame an IDR.
    pub keyframe: bool,
    /// The RTP timestamp step of a tier's first frame.
    pub step: Duration,
}

/// Where a tier's output goes: each frame that came out (none when rate
/// control skipped the picture) and how long the scale and encode took.
pub type Sink = Box<dyn FnMut(Option<Arc<EncodedFrame>>, Duration) + Send>;

/// A mailbox of one job.
#[derive(Default)]
struct Mailbox {
    job: Mutex<Option<Job>>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Mailbox {
    /// Leaves `job`; true when it replaced one not yet taken (whose
    /// keyframe, if it asked for one, the new job asks for too).
    fn post(&self, mut job: Job) -> bool {
        let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
        let replaced = slot.take();
        if let Some(old) = &replaced {
            job.keyframe |= old.keyframe;
        }
        *slot = Some(job);
        drop(slot);
        self.ready.notify_one();
        replaced.is_some()
    }

    /// The next job, or `None` once stopped.
    fn take(&self) -> Option<Job> {
        let mut slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(job) = slot.take() {
                return Some(job);
            }
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Taken under the lock, so a thread between its check and its
        // wait cannot miss the wake-up.
        let _slot = self.job.lock().unwrap_or_else(|e| e.into_inner());
        self.ready.notify_all();
    }
}

/// A tier's thread, seen from the view. Dropping it stops the thread.
pub struct TierThread {
    /// The tier.
    pub id: TierId,
    /// What its encoder makes (as last posted).
    pub shape: Shape,
    /// When a keyframe was last forced on it.
    pub last_forced: Option<Instant>,
    /// Its next frame must be an IDR (nobody watched it for a while).
    pub owes_keyframe: bool,
    mailbox: Arc<Mailbox>,
    thread: Option<JoinHandle<()>>,
}

impl TierThread {
    /// Starts a thread running `encoder` for tier `id` of `shape`, its
    /// frames going to `sink`.
    pub fn spawn(id: TierId, shape: Shape, encoder: H264Encoder, sink: Sink, name: String) -> std::io::Result<Self> {
        let mailbox = Arc::new(Mailbox::default());
        let span = tracing::debug_span!(parent: tracing::Span::current(), "tier", tier = id);
        let mut worker = TierEncoder {
            id,
            shape,
            encoder,
            scaled: VideoFrame::default(),
            scaler: Scaler::new(),
            last_sent: None,
            fps: FpsFollower::new(shape.fps),
            output: OutputLog::new(Instant::now()),
        };
        let thread = {
            let mailbox = mailbox.clone();
            std::thread::Builder::new().name(name).spawn(move || {
                let _enter = span.enter();
                worker.run(&mailbox, sink);
            })?
        };
        Ok(Self { id, shape, last_forced: None, owes_keyframe: false, mailbox, thread: Some(thread) })
    }

    /// Hands it a canvas; true when the one before was still waiting (the
    /// tier had no time for it).
    pub fn post(&mut self, mut job: Job) -> bool {
        job.keyframe |= std::mem::take(&mut self.owes_keyframe);
        self.shape = job.shape;
        self.mailbox.post(job)
    }
}

impl Drop for TierThread {
    fn drop(&mut self) {
        self.mailbox.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The encoder of one tier and its scaled copy of the canvas.
struct TierEncoder {
    id: TierId,
    shape: Shape,
    encoder: H264Encoder,
    /// The canvas scaled to the tier's size (unused at the canvas size).
    scaled: VideoFrame,
    scaler: Scaler,
    last_sent: Option<Instant>,
    fps: FpsFollower,
    output: OutputLog,
}

impl TierEncoder {
    fn run(&mut self, mailbox: &Mailbox, mut sink: Sink) {
        tracing::debug!(shape = ?self.shape, "tier started");
        while let Some(job) = mailbox.take() {
            let at = Instant::now();
            self.follow(job.shape, job.began);
            if job.keyframe {
                self.encoder.force_keyframe();
            }
            let frame = self.encode(&job);
            drop(job);
            let took = at.elapsed();
            self.output.busy += took;
            self.log_output(at);
            sink(frame.map(Arc::new), took);
        }
        tracing::debug!("tier stopped");
    }

    /// Takes the rate and frame rate of `shape` (same picture size) on the
    /// running encoder; the frame rate told is the one pictures really come
    /// at, when fewer come (a picture drawn at `began`).
    fn follow(&mut self, shape: Shape, began: Instant) {
        if shape.bitrate != self.shape.bitrate {
            if let Err(e) = self.encoder.set_bitrate(shape.bitrate) {
                tracing::warn!(error = %e, "cannot change the tier's bitrate");
            }
        }
        if shape.fps != self.shape.fps {
            tracing::debug!(?shape, "tier frame rate");
        }
        self.shape = shape;
        if let Some(fps) = self.fps.picture(began, shape.fps) {
            tracing::trace!(fps, "tier frame rate told to the encoder");
            if let Err(e) = self.encoder.set_fps(fps) {
                tracing::warn!(error = %e, "cannot change the tier's frame rate");
            }
        }
    }

    /// Scales the job's canvas to the tier's size if need be and encodes
    /// it. `None` when nothing came out (rate control skipped the frame,
    /// or an error, logged).
    fn encode(&mut self, job: &Job) -> Option<EncodedFrame> {
        let canvas = &job.canvas;
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
        match self.encoder.encode(&picture, job.pts) {
            Ok(Some(e)) => {
                let frame = EncodedFrame {
                    data: Bytes::copy_from_slice(e.data),
                    keyframe: e.keyframe,
                    duration: self.last_sent.map_or(job.step, |t| job.began.saturating_duration_since(t)),
                    rendered: job.began,
                };
                self.last_sent = Some(job.began);
                self.output.bits += 8 * frame.data.len() as u64;
                self.output.frames += 1;
                Some(frame)
            }
            Ok(None) => {
                self.output.skipped += 1;
                tracing::trace!(bitrate = self.shape.bitrate, "rate control skipped a frame");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "encode failed");
                None
            }
        }
    }

    /// Every few seconds, what the tier made against its target (debug).
    fn log_output(&mut self, now: Instant) {
        let o = &self.output;
        let secs = now.saturating_duration_since(o.since).as_secs_f64();
        if secs < OUTPUT_LOG_EVERY.as_secs_f64() {
            return;
        }
        let encodes = (o.frames + o.skipped).max(1);
        tracing::debug!(
            tier = self.id,
            target_kbps = self.shape.bitrate / 1000,
            kbps = (o.bits as f64 / secs / 1000.0) as u64,
            fps = format!("{:.1}", o.frames as f64 / secs),
            told_fps = self.fps.told,
            skipped = o.skipped,
            encode_ms = format!("{:.1}", o.busy.as_secs_f64() * 1000.0 / encodes as f64),
            "tier output"
        );
        self.output = OutputLog::new(now);
    }
}

/// What a tier made since `since`, for its log line.
struct OutputLog {
    since: Instant,
    bits: u64,
    frames: u32,
    skipped: u32,
    busy: Duration,
}

impl OutputLog {
    fn new(since: Instant) -> Self {
        Self { since, bits: 0, frames: 0, skipped: 0, busy: Duration::ZERO }
    }
}

/// The frame rate pictures really come at, for the encoder's budget per
/// picture: a running mean of the gaps between pictures, told when it
/// strays more than [`FpsFollower::TOLERANCE`] from what was told last,
/// never above the tier's own frame rate.
#[derive(Debug)]
struct FpsFollower {
    /// Mean gap between pictures, seconds.
    gap: Option<f64>,
    last: Option<Instant>,
    /// The frame rate the encoder was last told.
    told: f32,
}

impl FpsFollower {
    /// Weight of a new gap in the mean (about the last ten pictures).
    const WEIGHT: f64 = 0.1;
    const TOLERANCE: f64 = 0.1;
    /// Gaps longer than this (a pause: nobody watched the tier) restart the mean.
    const PAUSE: Duration = Duration::from_millis(500);

    fn new(fps: u32) -> Self {
        Self { gap: None, last: None, told: fps as f32 }
    }

    /// A picture came at `at`, for a tier of `fps`: the frame rate to tell
    /// the encoder, if it changed.
    fn picture(&mut self, at: Instant, fps: u32) -> Option<f32> {
        let nominal = fps.max(1) as f64;
        if let Some(last) = self.last.replace(at) {
            let gap = at.saturating_duration_since(last);
            if gap > Self::PAUSE {
                self.gap = None;
            } else {
                let gap = gap.as_secs_f64();
                self.gap = Some(self.gap.map_or(gap, |m| m + Self::WEIGHT * (gap - m)));
            }
        }
        let real = self.gap.filter(|g| *g > 0.0).map_or(nominal, |g| (1.0 / g).min(nominal));
        let told = self.told as f64;
        let stray = (real - told).abs() / told.max(1.0);
        if stray > Self::TOLERANCE || (real == nominal && told != nominal) {
            self.told = real.round().max(1.0) as f32;
            return Some(self.told);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(keyframe: bool) -> Job {
        Job {
            canvas: Arc::new(VideoFrame::default()),
            pts: Duration::ZERO,
            began: Instant::now(),
            shape: Shape { width: 16, height: 16, fps: 30, bitrate: 100_000 },
            keyframe,
            step: Duration::from_millis(33),
        }
    }

    #[test]
    fn a_newer_canvas_replaces_one_not_taken_and_keeps_its_keyframe() {
        let mailbox = Mailbox::default();
        assert!(!mailbox.post(job(true)));
        assert!(mailbox.post(job(false)), "the second post replaces the first");
        let taken = mailbox.take().expect("a job");
        assert!(taken.keyframe, "the keyframe asked for by the replaced job is kept");
        assert!(!mailbox.post(job(false)), "nothing was waiting");
    }

    #[test]
    fn a_stopped_mailbox_wakes_its_taker() {
        let mailbox = Arc::new(Mailbox::default());
        let taker = {
            let m = mailbox.clone();
            std::thread::spawn(move || m.take().is_none())
        };
        mailbox.stop();
        assert!(taker.join().expect("the taker ends"));
    }

    #[test]
    fn the_encoder_is_told_the_frame_rate_pictures_really_come_at() {
        let mut f = FpsFollower::new(30);
        let t0 = Instant::now();
        let mut told = Vec::new();
        // 30 fps: nothing to tell.
        for i in 0..30 {
            told.extend(f.picture(t0 + Duration::from_millis(33 * i), 30));
        }
        assert!(told.is_empty(), "{told:?}");
        // 24 fps for a second: the encoder hears about 24.
        let t1 = t0 + Duration::from_millis(33 * 29);
        for i in 1..=24 {
            told.extend(f.picture(t1 + Duration::from_millis(42 * i), 30));
        }
        let last = *told.last().expect("told a lower rate");
        assert!((23.0..=26.0).contains(&last), "{told:?}");
        // Back to 30: told 30 again, never more.
        let t2 = t1 + Duration::from_millis(42 * 24);
        for i in 1..=30 {
            told.extend(f.picture(t2 + Duration::from_millis(20 * i), 30));
        }
        assert_eq!(told.last(), Some(&30.0), "{told:?}");
        assert!(told.iter().all(|&t| t <= 30.0));
    }

    #[test]
    fn a_pause_restarts_the_mean() {
        let mut f = FpsFollower::new(15);
        let t0 = Instant::now();
        for i in 0..15 {
            assert_eq!(f.picture(t0 + Duration::from_millis(66 * i), 15), None);
        }
        // Nobody watched for two seconds: not read as 0.5 fps.
        assert_eq!(f.picture(t0 + Duration::from_secs(3), 15), None);
        assert_eq!(f.picture(t0 + Duration::from_millis(3066), 15), None);
    }
}
