//! One audio thread per room: every 20 ms it takes a frame from each
//! sender's jitter buffer (decoding, concealing or recovering with FEC),
//! mixes minus each listener's own voice, and encodes one Opus packet per
//! listener.

use crate::media::frame::{AudioFrame, AUDIO_FRAME};
use crate::media::mixer::Mixer;
use crate::media::opus::{OpusDecoder, OpusEncoder, Reframer};
use crate::rtp::jitter::{JitterBuffer, Pop};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One sender's incoming audio, filled by its RTP reader.
#[derive(Default)]
pub struct AudioInput {
    jitter: Mutex<JitterBuffer>,
}

impl AudioInput {
    /// A new input.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds an Opus packet.
    pub fn push(&self, seq: u16, payload: Vec<u8>) {
        self.jitter.lock().unwrap_or_else(|e| e.into_inner()).push(seq, payload);
    }

    fn pop(&self) -> Pop {
        self.jitter.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }
}

enum Command {
    AddInput(u64, Arc<AudioInput>),
    RemoveInput(u64),
    AddOutput { id: u64, tx: mpsc::Sender<Bytes>, fec: bool },
    RemoveOutput(u64),
    Mute(u64, bool),
}

/// The room's audio thread. Dropping it stops the thread.
pub struct AudioMixer {
    tx: Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AudioMixer {
    /// Starts the thread; levels (media id, -dBov) go to `levels` every tick.
    pub fn spawn(name: String, bitrate: u32, levels: mpsc::Sender<Vec<(u64, u8)>>) -> std::io::Result<Self> {
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || run(rx, flag, bitrate, levels))?;
        Ok(Self { tx, stop, thread: Some(thread) })
    }

    /// Mixes `input` in as member `id`.
    pub fn add_input(&self, id: u64, input: Arc<AudioInput>) {
        let _ = self.tx.send(Command::AddInput(id, input));
    }

    /// Stops mixing member `id`'s voice.
    pub fn remove_input(&self, id: u64) {
        let _ = self.tx.send(Command::RemoveInput(id));
    }

    /// Sends member `id` its mix, as Opus packets on `tx` (with in-band
    /// FEC when it asked for it).
    pub fn add_output(&self, id: u64, tx: mpsc::Sender<Bytes>, fec: bool) {
        let _ = self.tx.send(Command::AddOutput { id, tx, fec });
    }

    /// Stops sending member `id` its mix.
    pub fn remove_output(&self, id: u64) {
        let _ = self.tx.send(Command::RemoveOutput(id));
    }

    /// Mutes or unmutes member `id` for everyone.
    pub fn mute(&self, id: u64, muted: bool) {
        let _ = self.tx.send(Command::Mute(id, muted));
    }
}

impl Drop for AudioMixer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Input {
    source: Arc<AudioInput>,
    decoder: OpusDecoder,
    reframer: Reframer,
    /// Ticks in a row the buffer had nothing: after a few, stop concealing.
    starved: u32,
}

struct Output {
    tx: mpsc::Sender<Bytes>,
    encoder: OpusEncoder,
}

fn run(rx: Receiver<Command>, stop: Arc<AtomicBool>, bitrate: u32, levels: mpsc::Sender<Vec<(u64, u8)>>) {
    let mut mixer = Mixer::new();
    let mut inputs: HashMap<u64, Input> = HashMap::new();
    let mut outputs: HashMap<u64, Output> = HashMap::new();
    let mut frame = AudioFrame::silence();
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(20)));
            continue;
        }
        next += AUDIO_FRAME;
        if now > next + Duration::from_millis(100) {
            next = now + AUDIO_FRAME; // far behind: resynchronise, do not burst
        }
        while let Ok(cmd) = rx.try_recv() {
            apply(cmd, &mut mixer, &mut inputs, &mut outputs, bitrate);
        }
        for (&id, input) in inputs.iter_mut() {
            if fill(input, &mut frame) {
                mixer.push(id, &frame);
            }
        }
        mixer.tick();
        let lv: Vec<(u64, u8)> = inputs.keys().filter_map(|&id| mixer.level(id).map(|l| (id, l))).collect();
        let _ = levels.try_send(lv);
        for (&id, out) in outputs.iter_mut() {
            let Some(mix) = mixer.output(id) else { continue };
            match out.encoder.encode(mix) {
                Ok(packet) => {
                    let _ = out.tx.try_send(Bytes::copy_from_slice(packet));
                }
                Err(e) => tracing::trace!(error = %e, id, "opus encode failed"),
            }
        }
    }
}

/// Takes the next 20 ms of one sender into `frame`; false if there is none.
fn fill(input: &mut Input, frame: &mut AudioFrame) -> bool {
    const GIVE_UP: u32 = 5;
    while input.reframer.len() < frame.samples.len() {
        match input.source.pop() {
            Pop::Packet(p) => {
                input.starved = 0;
                match input.decoder.decode(&p) {
                    Ok(samples) => input.reframer.push(samples),
                    Err(e) => {
                        tracing::trace!(error = %e, "corrupt opus packet concealed");
                        conceal(input, frame, None);
                    }
                }
            }
            Pop::Lost { next } => {
                input.starved = 0;
                conceal(input, frame, next);
            }
            Pop::Empty => {
                input.starved += 1;
                if input.starved <= GIVE_UP && input.starved > 0 && input.reframer.is_empty() {
                    // A short gap: conceal rather than click to silence.
                    conceal(input, frame, None);
                }
                break;
            }
        }
    }
    input.reframer.pop(frame)
}

fn conceal(input: &mut Input, frame: &mut AudioFrame, next: Option<Vec<u8>>) {
    let result = match next {
        Some(next) => input.decoder.recover(&next, frame),
        None => input.decoder.conceal(frame),
    };
    if result.is_err() {
        frame.samples.fill(0.0);
    }
    input.reframer.push(&frame.samples);
}

fn apply(
    cmd: Command,
    mixer: &mut Mixer,
    inputs: &mut HashMap<u64, Input>,
    outputs: &mut HashMap<u64, Output>,
    bitrate: u32,
) {
    match cmd {
        Command::AddInput(id, source) => match OpusDecoder::new() {
            Ok(decoder) => {
                mixer.add(id);
                inputs.insert(id, Input { source, decoder, reframer: Reframer::new(), starved: 0 });
            }
            Err(e) => tracing::warn!(error = %e, id, "cannot start opus decoder"),
        },
        Command::RemoveInput(id) => {
            inputs.remove(&id);
            if !outputs.contains_key(&id) {
                mixer.remove(id);
            }
        }
        Command::AddOutput { id, tx, fec } => match OpusEncoder::new(bitrate) {
            Ok(mut encoder) => {
                if let Err(e) = encoder.set_fec(fec, 10) {
                    tracing::debug!(error = %e, "opus fec not set");
                }
                mixer.add(id);
                outputs.insert(id, Output { tx, encoder });
            }
            Err(e) => tracing::warn!(error = %e, id, "cannot start opus encoder"),
        },
        Command::RemoveOutput(id) => {
            outputs.remove(&id);
            if !inputs.contains_key(&id) {
                mixer.remove(id);
            }
        }
        Command::Mute(id, muted) => mixer.set_muted(id, muted),
    }
}
