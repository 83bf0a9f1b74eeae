//! What the capture client does with what it receives: decodes the
//! composite (keeping the latest picture, counting frames, reading the
//! capture stamps of this process's own tiles for latency, recording), and
//! decodes the mix (keeping the last seconds, recording).

use crate::layout::{fit_rect, Fit, Layout};
use crate::media::analysis::OnsetDetector;
use crate::media::compositor::placements;
use crate::media::frame::{AudioFrame, FrameRef, SAMPLES_PER_FRAME};
use crate::media::opus::OpusDecoder;
use crate::media::pattern::read_stamp_mapped;
use crate::media::pattern::BEEP_PERIOD_MS;
use crate::pipeline::decode::PictureSink;
use crate::pipeline::slot::FrameSlot;
use crate::rtp::seq::SeqExtender;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Seconds of received audio kept for inspection.
const AUDIO_KEPT_SECONDS: usize = 3;
/// Latency samples kept.
const LATENCIES_KEPT: usize = 20_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who is where in the composite, from the room state.
#[derive(Clone)]
pub struct TileMap {
    /// The room's layout (loaded locally by name).
    pub layout: Arc<Layout>,
    /// Tile members' peer ids in join order.
    pub peers: Vec<String>,
    /// The speaker's peer id.
    pub speaker: Option<String>,
}

/// Everything received, shared with the client handle.
pub struct Received {
    /// The latest decoded composite.
    pub slot: Arc<FrameSlot>,
    /// Composite frames decoded.
    pub frames: AtomicU64,
    /// Video payload bytes received.
    pub video_bytes: AtomicU64,
    /// Audio packets received.
    pub audio_packets: AtomicU64,
    /// When the first picture was decoded.
    pub first_frame: OnceLock<Instant>,
    /// Freezes seen (WebRTC's definition: see [`Freezes`]).
    pub freezes: Mutex<Freezes>,
    /// Capture-to-display latencies (ms) read from this process's tiles,
    /// with the tile's peer.
    pub latencies: Mutex<Vec<(String, u32)>>,
    /// Capture-to-arrival latencies (ms) of beeps from this process's
    /// senders, heard in the mix.
    pub audio_latencies: Mutex<Vec<f64>>,
    /// The last seconds of the mix.
    pub audio: Mutex<VecDeque<f32>>,
    /// Where tiles are, for latency.
    pub tiles: Mutex<Option<TileMap>>,
}

impl Received {
    /// Nothing received yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            slot: FrameSlot::new(),
            frames: AtomicU64::new(0),
            video_bytes: AtomicU64::new(0),
            audio_packets: AtomicU64::new(0),
            first_frame: OnceLock::new(),
            freezes: Mutex::new(Freezes::default()),
            latencies: Mutex::new(Vec::new()),
            audio_latencies: Mutex::new(Vec::new()),
            audio: Mutex::new(VecDeque::new()),
            tiles: Mutex::new(None),
        })
    }

    /// The latest `n` samples of the mix (fewer if not received yet).
    pub fn recent_audio(&self, n: usize) -> Vec<f32> {
        let audio = lock(&self.audio);
        audio.iter().skip(audio.len().saturating_sub(n)).copied().collect()
    }

    /// Takes the latency samples gathered so far.
    pub fn take_latencies(&self) -> Vec<u32> {
        std::mem::take(&mut *lock(&self.latencies)).into_iter().map(|(_, l)| l).collect()
    }

    /// Takes the audio latency samples (ms) gathered so far.
    pub fn take_audio_latencies(&self) -> Vec<f64> {
        std::mem::take(&mut *lock(&self.audio_latencies))
    }

    /// Takes the latency samples gathered so far, with each tile's peer.
    pub fn take_latencies_by_peer(&self) -> Vec<(String, u32)> {
        std::mem::take(&mut *lock(&self.latencies))
    }
}

/// A recorder of the composite: raw H.264 (`.h264`) or decoded Y4M (`.y4m`).
pub enum VideoRecorder {
    /// Annex B access units as received.
    H264(std::io::BufWriter<std::fs::File>),
    /// Decoded pictures; the header is written with the first one.
    Y4m {
        /// The file until the first picture gives the size.
        file: Option<std::io::BufWriter<std::fs::File>>,
        /// The encoder after.
        encoder: Option<y4m::Encoder<std::io::BufWriter<std::fs::File>>>,
        /// Frame rate for the header.
        fps: u32,
    },
}

impl VideoRecorder {
    /// Opens `path` (its extension picks the format).
    pub fn create(path: &Path, fps: u32) -> std::io::Result<Self> {
        let kind = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        if !matches!(kind.as_str(), "h264" | "264" | "y4m") {
            return Err(std::io::Error::other(format!("{}: record to .y4m or .h264", path.display())));
        }
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        Ok(if kind == "y4m" { Self::Y4m { file: Some(file), encoder: None, fps } } else { Self::H264(file) })
    }

    fn picture(&mut self, frame: &FrameRef<'_>) {
        let Self::Y4m { file, encoder, fps } = self else { return };
        if let Some(writer) = file.take() {
            *encoder = y4m::encode(frame.width(), frame.height(), y4m::Ratio::new(*fps as usize, 1))
                .with_colorspace(y4m::Colorspace::C420jpeg)
                .write_header(writer)
                .ok();
        }
        if let Some(enc) = encoder {
            let planes = packed_planes(frame);
            let _ = enc.write_frame(&y4m::Frame::new([&planes.0, &planes.1, &planes.2], None));
        }
    }

    fn unit(&mut self, unit: &[u8]) {
        if let Self::H264(f) = self {
            let _ = f.write_all(unit);
        }
    }
}

/// Freezes as WebRTC's statistics count them: a frame that comes more
/// than `max(3 x the mean frame interval, mean + 150 ms)` after the one
/// before ends a freeze as long as that gap.
#[derive(Debug, Default, Clone)]
pub struct Freezes {
    last: Option<Instant>,
    /// Mean frame interval (a moving average), seconds.
    mean: Option<f64>,
    /// Freezes so far.
    pub count: u64,
    /// Their total length.
    pub total: std::time::Duration,
    /// The longest.
    pub longest: std::time::Duration,
}

impl Freezes {
    /// A frame arrived at `now`.
    pub fn frame(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let gap = now.saturating_duration_since(last).as_secs_f64();
            if let Some(mean) = self.mean {
                if gap > (3.0 * mean).max(mean + 0.150) {
                    self.count += 1;
                    let gap = std::time::Duration::from_secs_f64(gap);
                    tracing::debug!(?gap, "freeze");
                    self.total += gap;
                    self.longest = self.longest.max(gap);
                }
            }
            // The mean follows the last ~30 frames.
            self.mean = Some(self.mean.map_or(gap, |m| m + (gap - m) / 30.0));
        }
        self.last = Some(now);
    }
}

/// A receiver that does not decode: counts each access unit as a frame
/// (a load generator's receivers, but for the sample that decodes).
pub struct UnitCounter(pub Arc<Received>);

impl crate::peer::receive::UnitSink for UnitCounter {
    fn push(&self, _unit: Vec<u8>) -> crate::pipeline::decode::Queue {
        self.0.frames.fetch_add(1, Ordering::Relaxed);
        let _ = self.0.first_frame.set(Instant::now());
        lock(&self.0.freezes).frame(Instant::now());
        crate::pipeline::decode::Queue::Ok
    }
}

/// The client's decoded-picture sink.
pub struct CompositeSink {
    /// Shared state.
    pub received: Arc<Received>,
    /// Recorder.
    pub recorder: Option<VideoRecorder>,
}

impl PictureSink for CompositeSink {
    fn unit(&mut self, unit: &[u8]) {
        if let Some(r) = &mut self.recorder {
            r.unit(unit);
        }
    }

    fn picture(&mut self, frame: &FrameRef<'_>) {
        let r = &self.received;
        r.frames.fetch_add(1, Ordering::Relaxed);
        let _ = r.first_frame.set(Instant::now());
        lock(&r.freezes).frame(Instant::now());
        r.slot.publish(frame, Instant::now());
        if let Some(rec) = &mut self.recorder {
            rec.picture(frame);
        }
        measure_latency(r, frame);
    }
}

fn packed_planes(frame: &FrameRef<'_>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let pack = |p: &crate::media::frame::PlaneRef<'_>| {
        let mut v = Vec::with_capacity(p.width() * p.height());
        for y in 0..p.height() {
            v.extend_from_slice(p.row(y));
        }
        v
    };
    (pack(&frame.y), pack(&frame.u), pack(&frame.v))
}

fn measure_latency(r: &Received, frame: &FrameRef<'_>) {
    let Some(map) = lock(&r.tiles).clone() else { return };
    let locals = super::stamp::local_senders();
    if locals.is_empty() {
        return;
    }
    let ids: Vec<u64> = (0..map.peers.len() as u64).collect();
    let speaker = map.speaker.as_ref().and_then(|s| map.peers.iter().position(|p| p == s)).map(|i| i as u64);
    let now = super::stamp::clock_ms();
    let (w, h) = (frame.width() as u32, frame.height() as u32);
    let mut samples = Vec::new();
    for p in placements(&map.layout, &ids, speaker, w, h) {
        let Some(peer) = map.peers.get(p.id as usize) else { continue };
        let Some(&(sw, sh)) = locals.get(peer) else { continue };
        let (dst, crop) = fit_rect(p.inner, sw, sh, p.fit == Fit::Contain);
        if let Some(stamp) = read_stamp_mapped(frame, dst, crop, sw, sh) {
            let latency = (now as u32).wrapping_sub(stamp) & 0xff_ffff;
            if latency < 10_000 {
                samples.push((peer.clone(), latency));
            }
        }
    }
    let mut lat = lock(&r.latencies);
    if lat.len() + samples.len() <= LATENCIES_KEPT {
        lat.extend(samples);
    }
}

/// Where the audio receive thread takes packets (with their RTP sequence numbers).
pub type AudioTx = std::sync::mpsc::SyncSender<(u16, Vec<u8>)>;

/// The audio receive thread: decodes the mix (concealing lost packets, as
/// a player would, so it keeps its timing), keeps the last seconds,
/// records WAV if asked. Packets come with their RTP sequence numbers.
pub fn spawn_audio(received: Arc<Received>, wav: Option<PathBuf>, name: String) -> std::io::Result<AudioTx> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u16, Vec<u8>)>(64);
    let mut writer = match &wav {
        Some(path) => Some(
            hound::WavWriter::create(
                path,
                hound::WavSpec {
                    channels: 1,
                    sample_rate: 48_000,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                },
            )
            .map_err(std::io::Error::other)?,
        ),
        None => None,
    };
    std::thread::Builder::new().name(name).spawn(move || {
        let Ok(mut decoder) = OpusDecoder::new() else { return };
        let keep = AUDIO_KEPT_SECONDS * 50 * SAMPLES_PER_FRAME;
        let mut onsets = OnsetDetector::new(BEEP_THRESHOLD, 100);
        let (mut seq, mut expected) = (SeqExtender::default(), None::<u64>);
        let mut concealed = AudioFrame::silence();
        let mut play = |samples: &[f32]| {
            if let Some(w) = writer.as_mut() {
                for s in samples {
                    let _ = w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16);
                }
            }
            let mut audio = lock(&received.audio);
            audio.extend(samples.iter().copied());
            let excess = audio.len().saturating_sub(keep);
            audio.drain(..excess);
        };
        while let Ok((number, packet)) = rx.recv() {
            // A packet's first sample is due when it arrives (as a frame's
            // first sample is captured when the sender makes it).
            let arrival = super::stamp::clock_ms_f64();
            received.audio_packets.fetch_add(1, Ordering::Relaxed);
            let ext = seq.extend(number);
            match expected {
                // Late: its slot was already concealed.
                Some(e) if ext < e => continue,
                // Lost packets: conceal them (the last from this packet's
                // FEC when it carries some), so the mix keeps its timing.
                Some(e) if ext > e && ext - e <= MAX_CONCEALED => {
                    for missing in e..ext {
                        let result = if missing + 1 == ext {
                            decoder.recover(&packet, &mut concealed)
                        } else {
                            decoder.conceal(&mut concealed)
                        };
                        if result.is_ok() {
                            play(&concealed.samples);
                        }
                    }
                }
                _ => {}
            }
            expected = Some(ext + 1);
            let Ok(samples) = decoder.decode(&packet) else { continue };
            if super::stamp::beeping() {
                for onset in onsets.feed(samples, arrival) {
                    if let Some(latency) = beep_latency(onset) {
                        lock(&received.audio_latencies).push(latency);
                    }
                }
            }
            play(samples);
        }
        if let Some(w) = writer {
            let _ = w.finalize();
        }
    })?;
    Ok(tx)
}

/// Most packets in a row concealed; a longer gap is a pause, not loss.
const MAX_CONCEALED: u64 = 10;

/// Peak above which a beep is sounding (beeps peak at 0.25; Opus and the
/// limiter leave them well above this).
const BEEP_THRESHOLD: f32 = 0.05;

/// The latency of a beep heard starting at `onset_ms`: beeps start on
/// whole periods of the clock, and a latency is taken to lie in
/// [-100 ms, period - 100 ms).
fn beep_latency(onset_ms: f64) -> Option<f64> {
    let period = BEEP_PERIOD_MS as f64;
    let start = ((onset_ms + 100.0) / period).floor() * period;
    let latency = onset_ms - start;
    (start > 0.0).then_some(latency)
}
