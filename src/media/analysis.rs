//! Signal measures for tests, probes and the client's reports: tone power
//! (Goertzel with a Hann window) and PSNR.

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
}
