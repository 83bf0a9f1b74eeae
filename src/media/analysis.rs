//! Signal measures for tests, probes and the client's reports: tone power
//! (Goertzel with a Hann window), PSNR, and sound onsets (when a beep
//! starts).

use super::frame::{FrameRef, SAMPLE_RATE};
use std::f64::consts::TAU;

/// Power of the `freq` Hz component of `samples` (48 kHz), in dB relative
/// to a full-scale sine's power, so a sine of amplitude `a` reads
/// `20 log10(a)`. Hann-windowed, so tones a few bins away do not leak in.
pub fn tone_power_db(samples: &[f32], freq: f64) -> f64 {
    let n = samples.len();
    if n < 2 {
        return -200.0;
    }
    let w = TAU * freq / SAMPLE_RATE as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut window_sum = 0.0;
    for (i, &x) in samples.iter().enumerate() {
        let hann = 0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos();
        window_sum += hann;
        let s0 = x as f64 * hann + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // |X| = a * window_sum / 2 for a sine of amplitude a.
    let amplitude = 2.0 * power.max(0.0).sqrt() / window_sum;
    20.0 * amplitude.max(1e-10).log10()
}

/// PSNR in dB between two same-sized pictures over all three planes
/// (`f64::INFINITY` if identical).
pub fn psnr(a: &FrameRef<'_>, b: &FrameRef<'_>) -> f64 {
    let mut sq = 0u64;
    let mut n = 0u64;
    for (pa, pb) in [(a.y, b.y), (a.u, b.u), (a.v, b.v)] {
        let h = pa.height().min(pb.height());
        let w = pa.width().min(pb.width());
        for y in 0..h {
            for (x, z) in pa.row(y)[..w].iter().zip(&pb.row(y)[..w]) {
                let d = *x as i64 - *z as i64;
                sq += (d * d) as u64;
            }
            n += w as u64;
        }
    }
    if sq == 0 {
        return f64::INFINITY;
    }
    let mse = sq as f64 / n.max(1) as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

/// Finds where sound starts after a silence, in a stream fed in pieces
/// with the clock time of each piece's first sample. Works on 1 ms blocks:
/// an onset is the first block whose peak passes the threshold after at
/// least `quiet_ms` of blocks below it.
pub struct OnsetDetector {
    threshold: f32,
    quiet_ms: u32,
    quiet: u32,
}

impl OnsetDetector {
    /// Onsets louder than `threshold` (peak) after `quiet_ms` of quiet.
    pub fn new(threshold: f32, quiet_ms: u32) -> Self {
        Self { threshold, quiet_ms, quiet: 0 }
    }

    /// Feeds `samples` (48 kHz) whose first is at `start_ms`; returns the
    /// times (ms) of the onsets in them.
    pub fn feed(&mut self, samples: &[f32], start_ms: f64) -> Vec<f64> {
        const BLOCK: usize = SAMPLE_RATE as usize / 1000;
        let mut onsets = Vec::new();
        for (b, block) in samples.chunks(BLOCK).enumerate() {
            let Some(first_loud) = block.iter().position(|s| s.abs() > self.threshold) else {
                self.quiet = self.quiet.saturating_add(1);
                continue;
            };
            if self.quiet >= self.quiet_ms {
                onsets.push(start_ms + (b * BLOCK + first_loud) as f64 * 1000.0 / SAMPLE_RATE as f64);
            }
            self.quiet = 0;
        }
        onsets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::AudioFrame;
    use crate::media::pattern::Tone;

    #[test]
    fn measures_a_tone_and_rejects_its_neighbour() {
        let mut samples = Vec::new();
        let mut tone = Tone::new(1000.0, 0.5);
        let mut f = AudioFrame::silence();
        for _ in 0..5 {
            tone.next_frame(&mut f);
            samples.extend_from_slice(&f.samples);
        }
        assert!((tone_power_db(&samples, 1000.0) - (-6.02)).abs() < 0.2);
        assert!(tone_power_db(&samples, 1150.0) < -60.0);
    }

    #[test]
    fn onsets_of_beeps_are_found_to_the_millisecond() {
        use crate::media::pattern::Beep;
        let mut beep = Beep::new(800.0, 0.3);
        let mut detector = OnsetDetector::new(0.05, 100);
        let mut frame = AudioFrame::silence();
        let mut onsets = Vec::new();
        // 3.5 s of 20 ms frames starting at 137 ms on the clock.
        for k in 0..175 {
            let start = 137.0 + 20.0 * k as f64;
            beep.next_frame(&mut frame, start);
            onsets.extend(detector.feed(&frame.samples, start));
        }
        assert_eq!(onsets.len(), 3, "{onsets:?}");
        for (o, want) in onsets.iter().zip([1000.0, 2000.0, 3000.0]) {
            assert!((o - want).abs() < 1.5, "onset at {o} ms, beep at {want} ms");
        }
    }
}
