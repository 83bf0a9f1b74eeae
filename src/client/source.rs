//! What the capture client sends: a test pattern, a Y4M file, live Y4M on
//! stdin, a V4L2 camera or nothing for video; a tone, beeps, a WAV file,
//! silence or nothing for audio. One media thread per client produces and encodes
//! both on their own clocks; the H.264 encoder follows the picture size.

use super::y4m_input::{LiveY4m, Y4mLoop};
use crate::media::color::Rgb;
use crate::media::frame::{AudioFrame, AUDIO_FRAME, SAMPLES_PER_FRAME};
use crate::media::h264::{H264Config, H264Encoder};
use crate::media::opus::OpusEncoder;
use crate::media::pattern::{write_stamp, Beep, TestPattern, Tone};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Video to send.
#[derive(Clone, Debug)]
pub enum VideoSource {
    /// The moving test pattern in this colour.
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

/// Milliseconds on the process clock, for stamps (every client in one
/// process shares it, so any of their tiles gives a latency).
pub fn clock_ms() -> u64 {
    clock_ms_f64() as u64
}

/// [`clock_ms`] with its fraction.
pub fn clock_ms_f64() -> f64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Whether a sender of this process beeps (so beeps heard by its
/// receivers started on this process's clock and measure audio latency).
pub fn beeping() -> bool {
    BEEPING.load(Ordering::Relaxed)
}

static BEEPING: AtomicBool = AtomicBool::new(false);

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
    /// Picture size for the pattern.
    pub width: u32,
    /// Picture size for the pattern.
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

/// Handle of a running media thread; dropping it stops the thread.
pub struct MediaThread {
    stop: Arc<AtomicBool>,
    /// Set to make the next video frame a keyframe.
    pub keyframe: Arc<AtomicBool>,
    /// Clear to stop sending video (camera off), set to resume.
    pub video_on: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MediaThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the sources and starts producing encoded samples on `video_tx`
/// and `audio_tx` (either may be absent).
pub fn spawn(
    settings: &SendSettings,
    video_tx: Option<mpsc::Sender<Encoded>>,
    audio_tx: Option<mpsc::Sender<Encoded>>,
    peer: String,
) -> Result<MediaThread, SourceError> {
    let thread_name = format!("send-{peer}");
    let video = match (&settings.video, &video_tx) {
        (_, None) | (VideoSource::None, _) => None,
        (VideoSource::Pattern(color), Some(_)) => Some(Video::Pattern(
            TestPattern::new(settings.width as usize, settings.height as usize, *color, &settings.name)
                .map_err(|e| SourceError::Codec(e.to_string()))?,
        )),
        (VideoSource::Y4m(path), Some(_)) => Some(Video::File(Y4mLoop::open(path)?)),
        (VideoSource::Stdin, Some(_)) => Some(Video::Live(LiveY4m::stdin()?)),
        (VideoSource::Camera(device), Some(_)) => {
            Some(Video::Live(LiveY4m::camera(device, settings.width, settings.height, settings.fps)?))
        }
    };
    let audio = match (&settings.audio, &audio_tx) {
        (_, None) | (AudioSource::None, _) => None,
        (AudioSource::Tone(f), Some(_)) => Some(Audio::Tone(Tone::new(*f, 0.25))),
        (AudioSource::Beep(f), Some(_)) => {
            BEEPING.store(true, Ordering::Relaxed);
            Some(Audio::Beep(Beep::new(*f, 0.25)))
        }
        (AudioSource::Wav(path), Some(_)) => Some(Audio::File(WavLoop::open(path)?)),
        (AudioSource::Silence, Some(_)) => Some(Audio::Silence),
    };
    // Made now, so that bad settings are an error here; a picture of
    // another size (a file, a pipe) gets its own encoder when it comes.
    let encoder = match &video {
        Some(_) => {
            let size = (settings.width as usize, settings.height as usize);
            let config = H264Config::new(settings.width, settings.height, settings.fps, settings.bitrate);
            Some((H264Encoder::new(config).map_err(|e| SourceError::Codec(e.to_string()))?, size))
        }
        None => None,
    };
    let opus = match &audio {
        Some(_) => Some(OpusEncoder::new(32_000).map_err(|e| SourceError::Codec(e.to_string()))?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let keyframe = Arc::new(AtomicBool::new(false));
    let video_on = Arc::new(AtomicBool::new(true));
    let worker = Worker {
        video_on: video_on.clone(),
        video,
        audio,
        encoder,
        registered: None,
        peer,
        bitrate: settings.bitrate,
        opus,
        video_tx,
        audio_tx,
        fps: settings.fps.max(1),
        stop: stop.clone(),
        keyframe: keyframe.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || worker.run())
        .map_err(|e| SourceError::Codec(e.to_string()))?;
    Ok(MediaThread { stop, keyframe, video_on, thread: Some(thread) })
}

struct Worker {
    video_on: Arc<AtomicBool>,
    video: Option<Video>,
    audio: Option<Audio>,
    /// The encoder and the picture size it was made for.
    encoder: Option<(H264Encoder, (usize, usize))>,
    /// Who sends (the receive side finds its own tile by this name and size).
    peer: String,
    /// The picture size registered for `peer`.
    registered: Option<(usize, usize)>,
    bitrate: u32,
    opus: Option<OpusEncoder>,
    video_tx: Option<mpsc::Sender<Encoded>>,
    audio_tx: Option<mpsc::Sender<Encoded>>,
    fps: u32,
    stop: Arc<AtomicBool>,
    keyframe: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self) {
        let start = Instant::now();
        let period = Duration::from_secs_f64(1.0 / self.fps as f64);
        let mut next_video = start;
        let mut next_audio = start;
        let mut last_video: Option<Instant> = None;
        let mut frame = AudioFrame::silence();
        while !self.stop.load(Ordering::Relaxed) {
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
                if self.video_on.load(Ordering::Relaxed) {
                    let duration = last_video.map_or(period, |t| now - t);
                    if self.send_video(now - start, duration) {
                        last_video = Some(now);
                    }
                } else {
                    // Camera off: when it comes back, start with a keyframe.
                    self.keyframe.store(true, Ordering::Relaxed);
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
        let (Some(audio), Some(opus), Some(tx)) = (&mut self.audio, &mut self.opus, &self.audio_tx) else { return };
        match audio {
            Audio::Tone(t) => t.next_frame(frame),
            Audio::Beep(b) => b.next_frame(frame, clock_ms_f64()),
            Audio::File(f) => f.next(frame),
            Audio::Silence => frame.samples.fill(0.0),
        }
        debug_assert_eq!(frame.samples.len(), SAMPLES_PER_FRAME);
        if let Ok(packet) = opus.encode(frame) {
            let _ = tx.try_send(Encoded { data: Bytes::copy_from_slice(packet), duration: AUDIO_FRAME });
        }
    }

    /// Renders, stamps and encodes one frame; false if nothing was sent.
    fn send_video(&mut self, t: Duration, duration: Duration) -> bool {
        let Self { video: Some(video), encoder, video_tx: Some(tx), peer, registered, fps, bitrate, keyframe, .. } =
            self
        else {
            return false;
        };
        let stamp = (clock_ms() & 0xff_ffff) as u32;
        let picture = match video {
            Video::Pattern(p) => p.render(t.as_millis() as u64, stamp),
            Video::File(f) => match f.next() {
                Ok(frame) => {
                    write_stamp(frame, stamp);
                    frame.as_frame()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "video file");
                    return false;
                }
            },
            Video::Live(l) => match l.take() {
                Some(frame) => {
                    write_stamp(frame, stamp);
                    frame.as_frame()
                }
                None => return false, // nothing new since the last tick
            },
        };
        let size = (picture.width(), picture.height());
        if encoder.as_ref().is_none_or(|(_, s)| *s != size) {
            match H264Encoder::new(H264Config::new(size.0 as u32, size.1 as u32, *fps, *bitrate)) {
                Ok(e) => *encoder = Some((e, size)),
                Err(e) => {
                    tracing::warn!(error = %e, width = size.0, height = size.1, "cannot encode this picture size");
                    return false;
                }
            }
        }
        if *registered != Some(size) {
            super::receive::register_local(peer, (size.0 as u32, size.1 as u32));
            *registered = Some(size);
        }
        let Some((encoder, _)) = encoder.as_mut() else { return false };
        if keyframe.swap(false, Ordering::Relaxed) {
            encoder.force_keyframe();
        }
        match encoder.encode(&picture, t) {
            Ok(Some(e)) => tx.try_send(Encoded { data: Bytes::copy_from_slice(e.data), duration }).is_ok(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "encode failed");
                false
            }
        }
    }
}
