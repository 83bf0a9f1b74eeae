//! One audio thread per room: every 20 ms it takes a frame from each
//! sender's jitter buffer (decoding, concealing or recovering with FEC),
//! mixes minus each listener's own voice, and encodes one Opus packet per
//! listener who speaks. Listeners who do not speak (viewers, members
//! without a microphone) all hear the full mix and share one encoder per
//! FEC setting, as identical video views share one H.264 encoder.

use crate::media::frame::{AudioFrame, AUDIO_FRAME};
use crate::media::mixer::Mixer;
use crate::media::opus::{OpusDecoder, OpusEncoder, Reframer};
use crate::rtp::jitter::{JitterBuffer, Pop};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// What the audio thread has done, for tests and load reports.
#[derive(Default)]
struct Counters {
    ticks: AtomicU64,
    encodes: AtomicU64,
}

/// The room's audio thread. Dropping it stops the thread.
pub struct AudioMixer {
    tx: Sender<Command>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl AudioMixer {
    /// Starts the thread; levels (media id, -dBov) go to `levels` every tick.
    pub fn spawn(name: String, bitrate: u32, levels: mpsc::Sender<Vec<(u64, u8)>>) -> std::io::Result<Self> {
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let counters = Arc::new(Counters::default());
        let count = counters.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || run(rx, flag, bitrate, levels, count))?;
        Ok(Self { tx, stop, counters, thread: Some(thread) })
    }

    /// Ticks mixed and Opus packets encoded so far. Listeners who do not
    /// speak share an encoder, so a tick costs one encode per speaker who
    /// listens plus one per FEC setting among the rest.
    pub fn counts(&self) -> (u64, u64) {
        (self.counters.ticks.load(Ordering::Relaxed), self.counters.encodes.load(Ordering::Relaxed))
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

/// A listener. `own` is its encoder when it also speaks (its mix leaves
/// its own voice out); a listener who does not speak hears the full mix
/// from the shared encoder of its FEC setting.
struct Output {
    tx: mpsc::Sender<Bytes>,
    fec: bool,
    own: Option<OpusEncoder>,
}

/// Every listener, and the shared full-mix encoders (index: FEC off, on).
struct Outputs {
    map: HashMap<u64, Output>,
    shared: [Option<OpusEncoder>; 2],
    bitrate: u32,
}

impl Outputs {
    fn encoder(&self, id: u64, fec: bool) -> Option<OpusEncoder> {
        match OpusEncoder::new(self.bitrate) {
            Ok(mut encoder) => {
                if let Err(e) = encoder.set_fec(fec, 10) {
                    tracing::debug!(error = %e, "opus fec not set");
                }
                Some(encoder)
            }
            Err(e) => {
                tracing::warn!(error = %e, id, "cannot start opus encoder");
                None
            }
        }
    }

    /// Starts the shared encoders someone needs, drops those nobody does.
    fn settle_shared(&mut self) {
        for fec in [false, true] {
            let needed = self.map.values().any(|o| o.own.is_none() && o.fec == fec);
            match (needed, self.shared[fec as usize].is_some()) {
                (true, false) => self.shared[fec as usize] = self.encoder(0, fec),
                (false, true) => self.shared[fec as usize] = None,
                _ => {}
            }
        }
    }
}

fn run(
    rx: Receiver<Command>,
    stop: Arc<AtomicBool>,
    bitrate: u32,
    levels: mpsc::Sender<Vec<(u64, u8)>>,
    counters: Arc<Counters>,
) {
    let mut mixer = Mixer::new();
    let mut inputs: HashMap<u64, Input> = HashMap::new();
    let mut outputs = Outputs { map: HashMap::new(), shared: [None, None], bitrate };
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
        let mut changed = false;
        while let Ok(cmd) = rx.try_recv() {
            apply(cmd, &mut mixer, &mut inputs, &mut outputs);
            changed = true;
        }
        if changed {
            outputs.settle_shared();
        }
        for (&id, input) in inputs.iter_mut() {
            if fill(input, &mut frame) {
                mixer.push(id, &frame);
            }
        }
        mixer.tick();
        let lv: Vec<(u64, u8)> = inputs.keys().filter_map(|&id| mixer.level(id).map(|l| (id, l))).collect();
        let _ = levels.try_send(lv);
        let mut encodes = 0;
        let mut full: [Option<Bytes>; 2] = [None, None];
        for (packet, encoder) in full.iter_mut().zip(outputs.shared.iter_mut()) {
            if let Some(encoder) = encoder {
                encodes += 1;
                *packet = encode(encoder, mixer.full_mix());
            }
        }
        for (&id, out) in outputs.map.iter_mut() {
            let packet = match &mut out.own {
                Some(encoder) => match mixer.output(id) {
                    Some(mix) => {
                        encodes += 1;
                        encode(encoder, mix)
                    }
                    None => None,
                },
                None => full[out.fec as usize].clone(),
            };
            if let Some(packet) = packet {
                let _ = out.tx.try_send(packet);
            }
        }
        counters.ticks.fetch_add(1, Ordering::Relaxed);
        counters.encodes.fetch_add(encodes, Ordering::Relaxed);
    }
}

fn encode(encoder: &mut OpusEncoder, mix: &AudioFrame) -> Option<Bytes> {
    match encoder.encode(mix) {
        Ok(packet) => Some(Bytes::copy_from_slice(packet)),
        Err(e) => {
            tracing::trace!(error = %e, "opus encode failed");
            None
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

fn apply(cmd: Command, mixer: &mut Mixer, inputs: &mut HashMap<u64, Input>, outputs: &mut Outputs) {
    match cmd {
        Command::AddInput(id, source) => match OpusDecoder::new() {
            Ok(decoder) => {
                mixer.add(id);
                inputs.insert(id, Input { source, decoder, reframer: Reframer::new(), starved: 0 });
                // A listener who now speaks needs a mix without its voice.
                if let Some(fec) = outputs.map.get(&id).filter(|o| o.own.is_none()).map(|o| o.fec) {
                    let own = outputs.encoder(id, fec);
                    if let Some(out) = outputs.map.get_mut(&id) {
                        out.own = own;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, id, "cannot start opus decoder"),
        },
        Command::RemoveInput(id) => {
            inputs.remove(&id);
            mixer.remove(id);
            if let Some(out) = outputs.map.get_mut(&id) {
                out.own = None; // back to the full mix
            }
        }
        Command::AddOutput { id, tx, fec } => {
            let own = if inputs.contains_key(&id) {
                match outputs.encoder(id, fec) {
                    Some(encoder) => Some(encoder),
                    None => return,
                }
            } else {
                None
            };
            outputs.map.insert(id, Output { tx, fec, own });
        }
        Command::RemoveOutput(id) => {
            outputs.map.remove(&id);
        }
        Command::Mute(id, muted) => mixer.set_muted(id, muted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::tone_power_db;
    use crate::media::pattern::{tone_for, Tone};

    /// Two speakers and four listeners who do not speak (one with FEC): the
    /// speakers hear each other but not themselves, the listeners hear both,
    /// and the listeners cost two encodes per tick, not four.
    #[test]
    fn listeners_who_do_not_speak_share_an_encoder() {
        let (levels, _levels_rx) = mpsc::channel(4);
        let mixer = AudioMixer::spawn("audio-test".into(), 32_000, levels).unwrap();
        let mut rxs = HashMap::new();
        for (id, fec) in [(1u64, false), (2, false), (10, false), (11, false), (12, false), (13, true)] {
            let (tx, rx) = mpsc::channel(256);
            mixer.add_output(id, tx, fec);
            rxs.insert(id, rx);
        }
        let speakers: Vec<(u64, Arc<AudioInput>, Tone, OpusEncoder)> = (0..2)
            .map(|i| (i as u64 + 1, AudioInput::new(), Tone::new(tone_for(i), 0.25), OpusEncoder::new(32_000).unwrap()))
            .collect();
        let mut speakers = speakers;
        for (id, input, _, _) in &speakers {
            mixer.add_input(*id, input.clone());
        }
        // Send 1.5 s of both tones in real time, collecting what comes out.
        let mut got: HashMap<u64, Vec<Bytes>> = HashMap::new();
        let mut frame = AudioFrame::silence();
        let start = Instant::now();
        for seq in 0..75u16 {
            for (_, input, tone, encoder) in speakers.iter_mut() {
                tone.next_frame(&mut frame);
                input.push(seq, encoder.encode(&frame).unwrap().to_vec());
            }
            let due = start + AUDIO_FRAME * (seq as u32 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            for (id, rx) in rxs.iter_mut() {
                while let Ok(p) = rx.try_recv() {
                    got.entry(*id).or_default().push(p);
                }
            }
        }
        let (ticks, encodes) = mixer.counts();
        assert!(ticks >= 50, "only {ticks} ticks in 1.5 s");
        assert!(encodes <= 4 * ticks, "{encodes} encodes in {ticks} ticks: listeners are not sharing");
        // Listeners without FEC get the very same packets.
        let tail = |id: u64| got[&id][got[&id].len() - 20..].to_vec();
        assert_eq!(tail(10), tail(11));
        assert_eq!(tail(10), tail(12));
        assert_ne!(tail(10), tail(13), "the FEC listener has its own encoder");
        let heard = |id: u64| {
            let mut decoder = OpusDecoder::new().unwrap();
            let mut pcm = Vec::new();
            for p in &got[&id][got[&id].len() - 40..] {
                pcm.extend_from_slice(decoder.decode(p).unwrap());
            }
            (tone_power_db(&pcm, tone_for(0)), tone_power_db(&pcm, tone_for(1)))
        };
        for id in [10, 13] {
            let (a, b) = heard(id);
            assert!(a > -30.0 && b > -30.0, "listener {id} hears {a:.1} / {b:.1} dB");
        }
        let (own, other) = heard(1);
        assert!(other - own >= 30.0, "speaker 1 hears itself: own {own:.1} dB, other {other:.1} dB");
        let (other, own) = heard(2);
        assert!(other - own >= 30.0, "speaker 2 hears itself: own {own:.1} dB, other {other:.1} dB");
    }
}
