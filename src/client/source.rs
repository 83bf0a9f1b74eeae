//! What the capture client sends: a camera-like scene, a test pattern, a
//! Y4M file, live Y4M on stdin, a V4L2 camera or nothing for video; a tone,
//! beeps, a WAV file, silence or nothing for audio.
//!
//! A [`MediaThread`] produces and encodes both on their own clocks and
//! hands the same encoded samples to every client attached to it: one
//! client normally, or N with `--count N --fanout` (encode once, send N
//! independent streams: the load generator is then not the bottleneck).
//! It follows the server's `send` hints (the largest of its clients'):
//! pictures are scaled down to just cover the hinted size, the frame rate
//! and bitrate capped; the H.264 encoder follows the picture size.

use super::stamp::{clock_ms, clock_ms_f64, register_local, set_beeping};
use super::y4m_input::{LiveY4m, Y4mLoop};
use crate::layout::cover_size;
use crate::media::color::Rgb;
use crate::media::frame::{AudioFrame, FrameRef, VideoFrame, AUDIO_FRAME, SAMPLES_PER_FRAME};
use crate::media::h264::{H264Config, H264Encoder};
use crate::media::opus::OpusEncoder;
use crate::media::pattern::{write_stamp, Beep, TestPattern, Tone};
use crate::media::scale::Scaler;
use crate::media::scene::CameraScene;
use crate::signaling::protocol::SendHint;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Video to send.
#[derive(Clone, Debug)]
pub enum VideoSource {
    /// The camera-like synthetic scene tinted this colour: it costs what a
    /// camera costs to code (use it for load, latency and codec figures).
    Scene(Rgb),
    /// The moving test pattern in this colour: flat, nearly free to code,
    /// easy to recognise in a composite.
    Pattern(Rgb),
    /// A Y4M file (4:2:0, 8-bit), looped; stamped like the pattern.
    Y4m(PathBuf),
    /// Live Y4M on standard input, at its own pace.
    Stdin,
    /// A V4L2 camera (captured through `ffmpeg`).
    Camera(PathBuf),
    /// No video.
    None,
}

/// Audio to send.
#[derive(Clone, Debug)]
pub enum AudioSource {
    /// A sine tone at this frequency.
    Tone(f64),
    /// The tone in beeps starting on each whole second of the process
    /// clock (receivers in this process measure audio latency from them).
    Beep(f64),
    /// A WAV file (48 kHz, 16-bit or float, mono or stereo), looped.
    Wav(PathBuf),
    /// Digital silence (still sent, so the server sees audio).
    Silence,
    /// No audio.
    None,
}

/// Errors opening a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("{0}: {1}")]
    File(PathBuf, String),
    /// A codec refused its settings.
    #[error("{0}")]
    Codec(String),
}

/// An encoded sample on its way to a track.
pub struct Encoded {
    /// The payload.
    pub data: Bytes,
    /// Its duration (the RTP timestamp step).
    pub duration: Duration,
}

/// Settings of the send side.
#[derive(Clone, Debug)]
pub struct SendSettings {
    /// Video source.
    pub video: VideoSource,
    /// Audio source.
    pub audio: AudioSource,
    /// Picture size for the scene and the pattern (and asked of a camera).
    pub width: u32,
    /// Picture size for the scene and the pattern.
    pub height: u32,
    /// Frame rate.
    pub fps: u32,
    /// Video bitrate.
    pub bitrate: u32,
    /// Name drawn on the pattern.
    pub name: String,
}

struct WavLoop {
    samples: Vec<f32>,
    at: usize,
}

impl WavLoop {
    fn open(path: &Path) -> Result<Self, SourceError> {
        let err = |e: String| SourceError::File(path.to_path_buf(), e);
        let reader = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
        let spec = reader.spec();
        if spec.sample_rate != 48_000 {
            return Err(err(format!("{} Hz; tessera needs 48000 Hz", spec.sample_rate)));
        }
        let channels = spec.channels.max(1) as usize;
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => {
                reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(|e| err(e.to_string()))?
            }
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                reader
                    .into_samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| err(e.to_string()))?
            }
        };
        let samples: Vec<f32> = interleaved.chunks(channels).map(|c| c.iter().sum::<f32>() / channels as f32).collect();
        if samples.is_empty() {
            return Err(err("no samples".into()));
        }
        Ok(Self { samples, at: 0 })
    }

    fn next(&mut self, out: &mut AudioFrame) {
        for s in out.samples.iter_mut() {
            *s = self.samples[self.at];
            self.at = (self.at + 1) % self.samples.len();
        }
    }
}

enum Video {
    Scene(CameraScene),
    Pattern(TestPattern),
    File(Y4mLoop),
    Live(LiveY4m),
}

enum Audio {
    Tone(Tone),
    Beep(Beep),
    File(WavLoop),
    Silence,
}

/// One client fed by a media thread.
struct Output {
    peer: String,
    video: Option<mpsc::Sender<Encoded>>,
    audio: Option<mpsc::Sender<Encoded>>,
    /// The server's latest `send` hint for this client.
    hint: Option<SendHint>,
    /// The picture size registered for its latency readers.
    registered: Option<(usize, usize)>,
}

/// What the thread and its handle share.
#[derive(Default)]
struct Shared {
    outputs: Mutex<Vec<Output>>,
    stop: AtomicBool,
    keyframe: AtomicBool,
    video_off: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running media thread; dropping the last handle stops it.
pub struct MediaThread {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MediaThread {
    /// Starts feeding `peer`'s writers (either may be absent); the next
    /// picture is a keyframe.
    pub fn attach(&self, peer: &str, video: Option<mpsc::Sender<Encoded>>, audio: Option<mpsc::Sender<Encoded>>) {
        let mut outputs = lock(&self.shared.outputs);
        outputs.retain(|o| o.peer != peer);
        outputs.push(Output { peer: peer.to_owned(), video, audio, hint: None, registered: None });
        self.shared.keyframe.store(true, Ordering::Relaxed);
    }

    /// Stops feeding `peer`.
    pub fn detach(&self, peer: &str) {
        lock(&self.shared.outputs).retain(|o| o.peer != peer);
    }

    /// Notes the server's `send` hint for `peer`; the thread follows the
    /// largest hint among its clients (those without one want the full
    /// source).
    pub fn hint(&self, peer: &str, hint: SendHint) {
        if let Some(o) = lock(&self.shared.outputs).iter_mut().find(|o| o.peer == peer) {
            o.hint = Some(hint);
        }
    }

    /// Makes the next picture a keyframe (a receiver asked for one).
    pub fn request_keyframe(&self) {
        self.shared.keyframe.store(true, Ordering::Relaxed);
    }

    /// Turns video off (no more pictures are sent; the server shows the
    /// last one, then the placeholder) or back on (from a keyframe).
    pub fn set_video(&self, on: bool) {
        self.shared.video_off.store(!on, Ordering::Relaxed);
    }
}

impl Drop for MediaThread {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the sources and starts the media thread (named after `name`);
/// [`MediaThread::attach`] clients to it.
pub fn spawn(settings: &SendSettings, name: &str) -> Result<MediaThread, SourceError> {
    let (w, h) = (settings.width as usize, settings.height as usize);
    let codec = |e: crate::media::frame::FrameError| SourceError::Codec(e.to_string());
    let video = match &settings.video {
        VideoSource::None => None,
        VideoSource::Scene(color) => Some(Video::Scene(CameraScene::new(w, h, *color, &settings.name).map_err(codec)?)),
        VideoSource::Pattern(color) => {
            Some(Video::Pattern(TestPattern::new(w, h, *color, &settings.name).map_err(codec)?))
        }
        VideoSource::Y4m(path) => Some(Video::File(Y4mLoop::open(path)?)),
        VideoSource::Stdin => Some(Video::Live(LiveY4m::stdin()?)),
        VideoSource::Camera(device) => {
            Some(Video::Live(LiveY4m::camera(device, settings.width, settings.height, settings.fps)?))
        }
    };
    let audio = match &settings.audio {
        AudioSource::None => None,
        AudioSource::Tone(f) => Some(Audio::Tone(Tone::new(*f, 0.25))),
        AudioSource::Beep(f) => {
            set_beeping();
            Some(Audio::Beep(Beep::new(*f, 0.25)))
        }
        AudioSource::Wav(path) => Some(Audio::File(WavLoop::open(path)?)),
        AudioSource::Silence => Some(Audio::Silence),
    };
    // Made now, so that bad settings are an error here; a picture of
    // another size (a file, a pipe, a hint) gets its own encoder.
    let encoder = match &video {
        Some(_) => {
            let config = H264Config::new(settings.width, settings.height, settings.fps, settings.bitrate);
            Some((H264Encoder::new(config).map_err(|e| SourceError::Codec(e.to_string()))?, (w, h)))
        }
        None => None,
    };
    let opus = match &audio {
        Some(_) => Some(OpusEncoder::new(32_000).map_err(|e| SourceError::Codec(e.to_string()))?),
        None => None,
    };
    let shared = Arc::new(Shared::default());
    let worker = Worker {
        shared: shared.clone(),
        video,
        audio,
        encoder,
        scaler: Scaler::new(),
        scaled: VideoFrame::default(),
        settings: settings.clone(),
        opus,
    };
    let thread = std::thread::Builder::new()
        .name(format!("send-{name}"))
        .spawn(move || worker.run())
        .map_err(|e| SourceError::Codec(e.to_string()))?;
    Ok(MediaThread { shared, thread: Some(thread) })
}

/// The largest of the clients' hints (`None` if one has none: it wants
/// the full source).
fn largest_hint(outputs: &[Output]) -> Option<SendHint> {
    let mut best: Option<SendHint> = None;
    for o in outputs.iter().filter(|o| o.video.is_some()) {
        let h = o.hint?;
        best = Some(match best {
            None => h,
            Some(b) => SendHint {
                width: b.width.max(h.width),
                height: b.height.max(h.height),
                fps: b.fps.max(h.fps),
                bitrate: b.bitrate.max(h.bitrate),
            },
        });
    }
    best
}

struct Worker {
    shared: Arc<Shared>,
    video: Option<Video>,
    audio: Option<Audio>,
    /// The encoder and the picture size it was made for.
    encoder: Option<(H264Encoder, (usize, usize))>,
    scaler: Scaler,
    /// A file's or camera's picture scaled to the hinted size.
    scaled: VideoFrame,
    settings: SendSettings,
    opus: Option<OpusEncoder>,
}

impl Worker {
    fn run(mut self) {
        let start = Instant::now();
        let mut next_video = start;
        let mut next_audio = start;
        let mut last_video: Option<Instant> = None;
        let mut frame = AudioFrame::silence();
        while !self.shared.stop.load(Ordering::Relaxed) {
            let hint = largest_hint(&lock(&self.shared.outputs));
            let fps = hint.map_or(self.settings.fps, |h| h.fps.clamp(1, self.settings.fps)).max(1);
            let period = Duration::from_secs_f64(1.0 / fps as f64);
            let now = Instant::now();
            if self.audio.is_some() && now >= next_audio {
                next_audio += AUDIO_FRAME;
                if now > next_audio + Duration::from_millis(100) {
                    next_audio = now + AUDIO_FRAME;
                }
                self.send_audio(&mut frame);
            }
            if self.video.is_some() && now >= next_video {
                next_video += period;
                if now > next_video {
                    next_video = now + period;
                }
                if self.shared.video_off.load(Ordering::Relaxed) {
                    // Camera off: when it comes back, start with a keyframe.
                    self.shared.keyframe.store(true, Ordering::Relaxed);
                } else {
                    let duration = last_video.map_or(period, |t| now - t);
                    if self.send_video(now - start, duration, hint, fps) {
                        last_video = Some(now);
                    }
                }
            }
            let wake = match (self.audio.is_some(), self.video.is_some()) {
                (true, true) => next_audio.min(next_video),
                (true, false) => next_audio,
                (false, true) => next_video,
                (false, false) => return,
            };
            let now = Instant::now();
            if wake > now {
                std::thread::sleep((wake - now).min(Duration::from_millis(20)));
            }
        }
    }

    fn send_audio(&mut self, frame: &mut AudioFrame) {
        let (Some(audio), Some(opus)) = (&mut self.audio, &mut self.opus) else { return };
        match audio {
            Audio::Tone(t) => t.next_frame(frame),
            Audio::Beep(b) => b.next_frame(frame, clock_ms_f64()),
            Audio::File(f) => f.next(frame),
            Audio::Silence => frame.samples.fill(0.0),
        }
        debug_assert_eq!(frame.samples.len(), SAMPLES_PER_FRAME);
        if let Ok(packet) = opus.encode(frame) {
            let data = Bytes::copy_from_slice(packet);
            for tx in lock(&self.shared.outputs).iter().filter_map(|o| o.audio.as_ref()) {
                let _ = tx.try_send(Encoded { data: data.clone(), duration: AUDIO_FRAME });
            }
        }
    }

    /// Renders (or takes), scales, stamps and encodes one picture, and
    /// hands it to every client; false if nothing was sent.
    fn send_video(&mut self, t: Duration, duration: Duration, hint: Option<SendHint>, fps: u32) -> bool {
        if lock(&self.shared.outputs).iter().all(|o| o.video.is_none()) {
            return false; // nobody to send to yet
        }
        let stamp = (clock_ms() & 0xff_ffff) as u32;
        let native = (self.settings.width, self.settings.height);
        let want = |(w, h): (u32, u32)| hint.map_or((w, h), |h_| cover_size(w, h, h_.width, h_.height));
        let Some(video) = self.video.as_mut() else { return false };
        let picture: FrameRef<'_> = match video {
            Video::Scene(s) => {
                let (w, h) = want(native);
                if (s.frame().width(), s.frame().height()) != (w as usize, h as usize) {
                    match CameraScene::new(w as usize, h as usize, scene_color(&self.settings), &self.settings.name) {
                        Ok(new) => *s = new,
                        Err(e) => return warn_size(e, w, h),
                    }
                }
                s.render(t.as_millis() as u64, stamp)
            }
            Video::Pattern(p) => {
                let (w, h) = want(native);
                if (p.frame().width(), p.frame().height()) != (w as usize, h as usize) {
                    match TestPattern::new(w as usize, h as usize, scene_color(&self.settings), &self.settings.name) {
                        Ok(new) => *p = new,
                        Err(e) => return warn_size(e, w, h),
                    }
                }
                p.render(t.as_millis() as u64, stamp)
            }
            Video::File(_) | Video::Live(_) => {
                let frame = match video {
                    Video::File(f) => match f.next() {
                        Ok(frame) => frame,
                        Err(e) => {
                            tracing::warn!(error = %e, "video file");
                            return false;
                        }
                    },
                    Video::Live(l) => match l.take() {
                        Some(frame) => frame,
                        None => return false, // nothing new since the last tick
                    },
                    _ => return false,
                };
                let (w, h) = want((frame.width() as u32, frame.height() as u32));
                if (w as usize, h as usize) == (frame.width(), frame.height()) {
                    write_stamp(frame, stamp);
                    frame.as_frame()
                } else {
                    if let Err(e) = self.scaler.scale_frame(&frame.as_frame(), &mut self.scaled, w as usize, h as usize)
                    {
                        tracing::warn!(error = %e, "cannot scale the picture");
                        return false;
                    }
                    write_stamp(&mut self.scaled, stamp);
                    self.scaled.as_frame()
                }
            }
        };
        let size = (picture.width(), picture.height());
        let bitrate = hint.map_or(self.settings.bitrate, |h| h.bitrate.min(self.settings.bitrate)).max(30_000);
        let encoder = &mut self.encoder;
        if encoder.as_ref().is_none_or(|(_, s)| *s != size) {
            let config = H264Config::new(size.0 as u32, size.1 as u32, self.settings.fps, bitrate);
            match H264Encoder::new(config) {
                Ok(e) => *encoder = Some((e, size)),
                Err(e) => {
                    tracing::warn!(error = %e, width = size.0, height = size.1, "cannot encode this picture size");
                    return false;
                }
            }
        }
        let Some((encoder, _)) = encoder.as_mut() else { return false };
        if let Err(e) = encoder.set_bitrate(bitrate).and_then(|_| encoder.set_fps(fps as f32)) {
            tracing::debug!(error = %e, "rate change refused");
        }
        if self.shared.keyframe.swap(false, Ordering::Relaxed) {
            encoder.force_keyframe();
        }
        let data = match encoder.encode(&picture, t) {
            Ok(Some(e)) => Bytes::copy_from_slice(e.data),
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "encode failed");
                return false;
            }
        };
        let mut sent = false;
        for o in lock(&self.shared.outputs).iter_mut() {
            let Some(tx) = &o.video else { continue };
            if o.registered != Some(size) {
                register_local(&o.peer, (size.0 as u32, size.1 as u32));
                o.registered = Some(size);
            }
            sent |= tx.try_send(Encoded { data: data.clone(), duration }).is_ok();
        }
        sent
    }
}

fn scene_color(settings: &SendSettings) -> Rgb {
    match settings.video {
        VideoSource::Scene(c) | VideoSource::Pattern(c) => c,
        _ => Rgb::new(128, 128, 128),
    }
}

fn warn_size(e: crate::media::frame::FrameError, w: u32, h: u32) -> bool {
    tracing::warn!(error = %e, width = w, height = h, "cannot make a picture of this size");
    false
}
