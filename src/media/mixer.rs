//! Mix-minus audio mixing: everyone hears everyone but themselves.
//!
//! Per 20 ms tick the mixer sums every contributing input once (with its
//! gain; muted inputs contribute nothing), then gives each channel that
//! sum minus its own contribution: O(N) for N channels, not O(N²). Each
//! output then passes through its own soft limiter, so many people talking
//! at once get quieter rather than clipped.

use super::frame::{AudioFrame, SAMPLES_PER_FRAME};
use super::level::level_dbov;

/// The limiter's ceiling (about -1 dBFS).
const CEILING: f32 = 0.891;
/// Where the final soft clipper starts bending.
const KNEE: f32 = 0.9;
/// What the soft clipper tends to (never reached, so never pinned at full scale).
const LIMIT: f32 = 0.999;
/// Gain envelope resolution: 1 ms blocks, so an attack ramps over 1 ms.
const BLOCK: usize = 48;
const BLOCKS: usize = SAMPLES_PER_FRAME / BLOCK;
/// Fastest gain rise per block: a full swing in 150 ms.
const RELEASE_PER_BLOCK: f32 = 1.0 / 150.0;

/// A per-output limiter. A 20 ms frame is processed whole, which gives it
/// the frame as look-ahead. The gain is piecewise linear over 1 ms blocks:
/// each block boundary takes the smallest gain the blocks on either side
/// need to stay under the ceiling (so the gain starts falling a block
/// before a peak), and recovers by at most 1/150 per block (150 ms from
/// silence to unity). A soft clipper catches what remains (a loud first
/// sample, which no look-ahead inside the frame can see coming).
#[derive(Clone, Debug)]
pub struct Limiter {
    gain: f32,
}

impl Default for Limiter {
    fn default() -> Self {
        Self { gain: 1.0 }
    }
}

impl Limiter {
    /// Limits `frame` in place.
    pub fn process(&mut self, frame: &mut AudioFrame) {
        if self.gain >= 1.0 && frame.peak() <= CEILING {
            return; // the common case: nothing to do, not even the clipper
        }
        // The gain each block needs.
        let mut need = [1.0f32; BLOCKS];
        for (n, block) in need.iter_mut().zip(frame.samples.chunks_exact(BLOCK)) {
            let peak = block.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            *n = CEILING / peak.max(CEILING);
        }
        // Gain at each block boundary: no more than either neighbour needs,
        // rising no faster than the release allows.
        let mut at = [1.0f32; BLOCKS + 1];
        at[0] = self.gain.min(need[0]);
        for b in 1..=BLOCKS {
            let wanted = if b < BLOCKS { need[b - 1].min(need[b]) } else { need[b - 1] };
            at[b] = wanted.min(at[b - 1] + RELEASE_PER_BLOCK);
        }
        let mut loud = 0.0f32;
        for (b, block) in frame.samples.chunks_exact_mut(BLOCK).enumerate() {
            let (g0, g1) = (at[b], at[b + 1]);
            let step = (g1 - g0) / BLOCK as f32;
            for (j, s) in block.iter_mut().enumerate() {
                *s *= g0 + step * (j + 1) as f32;
                loud = loud.max(s.abs());
            }
        }
        if loud > KNEE {
            frame.samples.iter_mut().for_each(|s| *s = soft_clip(*s));
        }
        self.gain = at[BLOCKS];
    }

    /// The gain currently applied (1.0 when not limiting).
    pub fn gain(&self) -> f32 {
        self.gain
    }
}

/// Identity below the knee, then a tanh curve towards 0.999: continuous
/// slope at the knee, never at or past full scale.
pub fn soft_clip(x: f32) -> f32 {
    let a = x.abs();
    if !a.is_finite() {
        return if a.is_nan() { 0.0 } else { LIMIT.copysign(x) };
    }
    if a <= KNEE {
        return x;
    }
    let room = LIMIT - KNEE;
    (KNEE + room * ((a - KNEE) / room).tanh()).copysign(x)
}

/// One mixer channel: a participant (input and output) or a listener
/// (output only).
#[derive(Clone, Debug)]
struct Channel {
    id: u64,
    gain: f32,
    muted: bool,
    input: AudioFrame,
    has_input: bool,
    level: u8,
    limiter: Limiter,
    output: AudioFrame,
}

/// The mix-minus mixer for one room.
///
/// Besides one output per channel it keeps the *full mix* (everyone, with
/// its own limiter): what every listener who contributes nothing hears, so
/// such listeners need no channel and can share one encoder.
pub struct Mixer {
    channels: Vec<Channel>,
    sum: Vec<f32>,
    full: AudioFrame,
    full_limiter: Limiter,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl Mixer {
    /// An empty mixer.
    pub fn new() -> Self {
        Self {
            channels: Vec::new(),
            sum: vec![0.0; SAMPLES_PER_FRAME],
            full: AudioFrame::silence(),
            full_limiter: Limiter::default(),
        }
    }

    /// Adds channel `id` (no-op if present).
    pub fn add(&mut self, id: u64) {
        if self.index(id).is_none() {
            self.channels.push(Channel {
                id,
                gain: 1.0,
                muted: false,
                input: AudioFrame::silence(),
                has_input: false,
                level: 127,
                limiter: Limiter::default(),
                output: AudioFrame::silence(),
            });
        }
    }

    /// Removes channel `id`.
    pub fn remove(&mut self, id: u64) {
        self.channels.retain(|c| c.id != id);
    }

    /// Number of channels.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether there are no channels.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.channels.iter().position(|c| c.id == id)
    }

    /// Sets channel `id`'s contribution gain (linear, clamped to 0..=4).
    pub fn set_gain(&mut self, id: u64, gain: f32) {
        if let Some(i) = self.index(id) {
            self.channels[i].gain = if gain.is_finite() { gain.clamp(0.0, 4.0) } else { 1.0 };
        }
    }

    /// Mutes or unmutes channel `id`'s contribution (others stop hearing it;
    /// it still hears them).
    pub fn set_muted(&mut self, id: u64, muted: bool) {
        if let Some(i) = self.index(id) {
            self.channels[i].muted = muted;
        }
    }

    /// Whether channel `id` is muted.
    pub fn is_muted(&self, id: u64) -> bool {
        self.index(id).is_some_and(|i| self.channels[i].muted)
    }

    /// Hands in channel `id`'s audio for this tick (the last one given wins).
    pub fn push(&mut self, id: u64, frame: &AudioFrame) {
        if let Some(i) = self.index(id) {
            let c = &mut self.channels[i];
            c.input.samples.copy_from_slice(&frame.samples);
            c.has_input = true;
        }
    }

    /// Mixes this tick: afterwards [`Mixer::output`] holds each channel's
    /// mix, [`Mixer::full_mix`] everyone's and [`Mixer::level`] each input level. Inputs are consumed: a
    /// channel that pushes nothing next tick contributes silence.
    pub fn tick(&mut self) {
        self.sum.iter_mut().for_each(|s| *s = 0.0);
        for c in &mut self.channels {
            c.level = if c.has_input { level_dbov(&c.input) } else { 127 };
            if c.has_input && !c.muted && c.gain > 0.0 {
                let g = c.gain;
                for (s, x) in self.sum.iter_mut().zip(&c.input.samples) {
                    *s += g * x;
                }
            }
        }
        for c in &mut self.channels {
            let contributes = c.has_input && !c.muted && c.gain > 0.0;
            if contributes {
                let g = c.gain;
                for ((o, s), x) in c.output.samples.iter_mut().zip(&self.sum).zip(&c.input.samples) {
                    *o = s - g * x;
                }
            } else {
                c.output.samples.copy_from_slice(&self.sum);
            }
            c.limiter.process(&mut c.output);
            c.has_input = false;
        }
        self.full.samples.copy_from_slice(&self.sum);
        self.full_limiter.process(&mut self.full);
    }

    /// Everyone's voice from the last tick (limited): the mix of a listener
    /// who is not a channel.
    pub fn full_mix(&self) -> &AudioFrame {
        &self.full
    }

    /// Channel `id`'s mix from the last tick.
    pub fn output(&self, id: u64) -> Option<&AudioFrame> {
        self.index(id).map(|i| &self.channels[i].output)
    }

    /// Channel `id`'s input level last tick, in -dBov (0 loudest, 127 silence).
    pub fn level(&self, id: u64) -> Option<u8> {
        self.index(id).map(|i| self.channels[i].level)
    }

    /// Every channel's id and input level last tick (muted channels report
    /// their true level; whether they count as speaking is the caller's call).
    pub fn levels(&self) -> impl Iterator<Item = (u64, u8, bool)> + '_ {
        self.channels.iter().map(|c| (c.id, c.level, c.muted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::tone_power_db;
    use crate::media::pattern::{tone_for, Tone};

    /// Runs `n` channels, channel i playing tone_for(i), for `frames` ticks;
    /// returns each channel's output concatenated.
    fn run(n: usize, frames: usize, amplitude: f32) -> Vec<Vec<f32>> {
        let mut mixer = Mixer::new();
        let mut tones: Vec<Tone> = (0..n).map(|i| Tone::new(tone_for(i), amplitude)).collect();
        for i in 0..n {
            mixer.add(i as u64);
        }
        let mut outs = vec![Vec::new(); n];
        let mut frame = AudioFrame::silence();
        for _ in 0..frames {
            for (i, t) in tones.iter_mut().enumerate() {
                t.next_frame(&mut frame);
                mixer.push(i as u64, &frame);
            }
            mixer.tick();
            for (i, out) in outs.iter_mut().enumerate() {
                out.extend_from_slice(&mixer.output(i as u64).unwrap().samples);
            }
        }
        outs
    }

    #[test]
    fn each_output_holds_every_other_tone_but_not_its_own() {
        for n in [2usize, 4, 8] {
            let outs = run(n, 10, 0.1);
            for (i, out) in outs.iter().enumerate() {
                for j in 0..n {
                    let p = tone_power_db(out, tone_for(j));
                    if i == j {
                        let other = tone_power_db(out, tone_for((j + 1) % n));
                        assert!(other - p >= 30.0, "n={n}: output {i} has its own tone at {p:.1} dB vs {other:.1} dB");
                    } else {
                        // A 0.1 sine measures -23 dB (amplitude 0.1 -> power 0.005).
                        assert!(p > -26.0, "n={n}: output {i} lacks tone {j}: {p:.1} dB");
                    }
                }
            }
        }
    }

    #[test]
    fn the_full_mix_holds_every_tone_and_is_limited() {
        let n = 6;
        let mut mixer = Mixer::new();
        let mut tones: Vec<Tone> = (0..n).map(|i| Tone::new(tone_for(i), 0.4)).collect();
        (0..n).for_each(|i| mixer.add(i as u64));
        let (mut full, mut frame) = (Vec::new(), AudioFrame::silence());
        for _ in 0..10 {
            for (i, t) in tones.iter_mut().enumerate() {
                t.next_frame(&mut frame);
                mixer.push(i as u64, &frame);
            }
            mixer.tick();
            full.extend_from_slice(&mixer.full_mix().samples);
        }
        for j in 0..n {
            let p = tone_power_db(&full, tone_for(j));
            assert!(p > -30.0, "tone {j} missing from the full mix: {p:.1} dB");
        }
        assert!(full.iter().all(|s| s.abs() < 1.0), "the full mix is limited");
    }

    #[test]
    fn many_talkers_are_limited_softly_not_clipped() {
        let outs = run(32, 20, 0.5);
        for out in &outs {
            let peak = out.iter().fold(0f32, |m, s| m.max(s.abs()));
            assert!(peak < 1.0, "peak {peak}");
            let pinned = out.iter().filter(|s| s.abs() > 0.995).count();
            assert!(pinned < out.len() / 1000, "{pinned} samples pinned at full scale");
        }
    }

    #[test]
    fn a_quiet_mix_passes_through_untouched() {
        let mut mixer = Mixer::new();
        mixer.add(1);
        mixer.add(2);
        let mut frame = AudioFrame::silence();
        Tone::new(500.0, 0.3).next_frame(&mut frame);
        mixer.push(1, &frame);
        mixer.tick();
        assert_eq!(mixer.output(2).unwrap(), &frame);
        assert!(mixer.output(1).unwrap().peak() < 1e-6);
        assert_eq!(mixer.full_mix(), &frame);
    }

    #[test]
    fn mute_and_gain_change_what_others_hear() {
        let mut mixer = Mixer::new();
        for id in [1, 2, 3] {
            mixer.add(id);
        }
        let mut frame = AudioFrame::silence();
        Tone::new(500.0, 0.2).next_frame(&mut frame);
        mixer.set_gain(1, 0.5);
        mixer.push(1, &frame);
        mixer.tick();
        assert!((mixer.output(2).unwrap().peak() - 0.1).abs() < 0.005);
        mixer.set_muted(1, true);
        mixer.push(1, &frame);
        mixer.tick();
        assert!(mixer.output(2).unwrap().peak() < 1e-6);
        assert_eq!(mixer.level(1), Some(level_dbov(&frame)), "muted input still metered");
        // A listener (never pushes) hears the whole mix.
        mixer.set_muted(1, false);
        mixer.set_gain(1, f32::NAN);
        mixer.push(1, &frame);
        mixer.tick();
        assert!((mixer.output(3).unwrap().peak() - 0.2).abs() < 0.005);
    }
}
