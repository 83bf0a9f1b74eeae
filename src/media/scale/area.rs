//! Separable area-average downscaling for any ratio of 2:1 or more.
//!
//! Each output sample is the mean of the source area it covers, with
//! fractional coverage at the edges. The work is done vertical first, one
//! output row at a time: the covered source rows are blended into a single
//! scratch row (vectorised: every lane does the same thing), then that row
//! is filtered horizontally straight into the destination. The scratch row
//! is the only buffer, so the source is read once and the canvas written
//! once.
//!
//! Weights are 14-bit fixed point and each output's weights sum to exactly
//! 1 << 14, so flat areas stay exactly flat.

use crate::media::frame::{PlaneMut, PlaneRef};

const SHIFT: u32 = 14;
const ONE: u32 = 1 << SHIFT;
const HALF: u32 = 1 << (SHIFT - 1);

/// Per-axis filter taps: output `i` reads `taps` source samples starting at
/// `starts[i]`, weighted by `weights[i * taps..][..taps]`.
#[derive(Default, Debug)]
pub(super) struct Taps {
    pub taps: usize,
    pub starts: Vec<usize>,
    pub weights: Vec<u16>,
    key: (usize, usize),
}

impl Taps {
    /// Area weights for `src` samples into `dst` samples (`src >= dst`).
    pub fn area(&mut self, src: usize, dst: usize) {
        if self.key == (src, dst) && !self.starts.is_empty() {
            return;
        }
        self.key = (src, dst);
        let ratio = src as f64 / dst as f64;
        let span = |i: usize| {
            let lo = i as f64 * ratio;
            let hi = ((i + 1) as f64 * ratio).min(src as f64);
            (lo, hi)
        };
        // As many taps as the widest footprint: exactly `ratio` at integer
        // ratios, so a 3:1 scale reads three rows, not five.
        let taps = (0..dst)
            .map(|i| {
                let (lo, hi) = span(i);
                (hi.ceil() as usize).saturating_sub(lo.floor() as usize)
            })
            .max()
            .unwrap_or(1)
            .clamp(1, src);
        self.taps = taps;
        self.starts.clear();
        self.weights.clear();
        let mut w = vec![0f64; taps];
        for i in 0..dst {
            let (lo, hi) = span(i);
            let first = (lo.floor() as usize).min(src - taps);
            w.iter_mut().for_each(|x| *x = 0.0);
            for (k, wk) in w.iter_mut().enumerate() {
                let p = (first + k) as f64;
                let overlap = (hi.min(p + 1.0) - lo.max(p)).max(0.0);
                *wk = overlap / ratio;
            }
            self.starts.push(first);
            push_quantized(&w, &mut self.weights);
        }
    }
}

/// Quantizes `w` (summing to ~1) to 14-bit integers summing to exactly ONE.
fn push_quantized(w: &[f64], out: &mut Vec<u16>) {
    let start = out.len();
    let mut sum = 0u32;
    for &x in w {
        let q = (x * ONE as f64).round() as u32;
        sum += q;
        out.push(q as u16);
    }
    // Put the rounding error on the largest weight.
    let row = &mut out[start..];
    if let Some((imax, _)) = row.iter().enumerate().max_by_key(|(_, &v)| v) {
        let fixed = row[imax] as i64 + ONE as i64 - sum as i64;
        row[imax] = fixed.clamp(0, ONE as i64) as u16;
    }
}

/// The area scaler with its reusable tables and scratch row.
#[derive(Default)]
pub(super) struct AreaScaler {
    horizontal: Taps,
    vertical: Taps,
    row: Vec<u8>,
}

impl AreaScaler {
    pub fn scale(&mut self, src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
        let (sw, sh, dw, dh) = (src.width(), src.height(), dst.width(), dst.height());
        self.horizontal.area(sw, dw);
        self.vertical.area(sh, dh);
        self.row.resize(sw, 0);
        let vt = self.vertical.taps;
        let mut rows: [&[u8]; 16] = [&[]; 16];
        for y in 0..dh {
            let first = self.vertical.starts[y];
            let weights = &self.vertical.weights[y * vt..(y + 1) * vt];
            if vt <= rows.len() {
                for (k, r) in rows.iter_mut().take(vt).enumerate() {
                    *r = src.row(first + k);
                }
                vertical(&rows[..vt], weights, &mut self.row);
            } else {
                let many: Vec<&[u8]> = (0..vt).map(|k| src.row(first + k)).collect();
                vertical(&many, weights, &mut self.row);
            }
            horizontal(&self.row, &self.horizontal, dst.row_mut(y));
        }
    }
}

fn vertical(rows: &[&[u8]], weights: &[u16], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if super::x86::vertical_avx2(rows, weights, out) {
        return;
    }
    vertical_generic(rows, weights, out);
}

/// `out[x] = sum_k weights[k] * rows[k][x]`, in chunks the compiler can
/// keep in vector registers.
#[inline(always)]
pub(super) fn vertical_generic(rows: &[&[u8]], weights: &[u16], out: &mut [u8]) {
    const CHUNK: usize = 64;
    let width = out.len();
    let mut base = 0;
    while base < width {
        let n = CHUNK.min(width - base);
        let mut acc = [HALF; CHUNK];
        for (row, &w) in rows.iter().zip(weights) {
            let w = w as u32;
            for (a, &p) in acc[..n].iter_mut().zip(&row[base..base + n]) {
                *a += w * p as u32;
            }
        }
        for (o, &a) in out[base..base + n].iter_mut().zip(&acc[..n]) {
            *o = (a >> SHIFT) as u8;
        }
        base += n;
    }
}

fn horizontal(row: &[u8], taps: &Taps, out: &mut [u8]) {
    match taps.taps {
        1 => horizontal_n::<1>(row, taps, out),
        2 => horizontal_n::<2>(row, taps, out),
        3 => horizontal_n::<3>(row, taps, out),
        4 => horizontal_n::<4>(row, taps, out),
        5 => horizontal_n::<5>(row, taps, out),
        6 => horizontal_n::<6>(row, taps, out),
        _ => horizontal_any(row, taps, out),
    }
}

fn horizontal_n<const T: usize>(row: &[u8], taps: &Taps, out: &mut [u8]) {
    for ((o, &s), w) in out.iter_mut().zip(&taps.starts).zip(taps.weights.chunks_exact(T)) {
        let px = &row[s..s + T];
        let mut acc = HALF;
        for k in 0..T {
            acc += w[k] as u32 * px[k] as u32;
        }
        *o = (acc >> SHIFT) as u8;
    }
}

fn horizontal_any(row: &[u8], taps: &Taps, out: &mut [u8]) {
    for ((o, &s), w) in out.iter_mut().zip(&taps.starts).zip(taps.weights.chunks_exact(taps.taps)) {
        let acc: u32 = HALF + w.iter().zip(&row[s..]).map(|(&w, &p)| w as u32 * p as u32).sum::<u32>();
        *o = (acc >> SHIFT) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_stay_in_range() {
        for (src, dst) in [(1280, 426), (1280, 428), (720, 240), (7, 2), (640, 3), (1000, 1), (5, 2)] {
            let mut t = Taps::default();
            t.area(src, dst);
            assert_eq!(t.starts.len(), dst);
            for (i, w) in t.weights.chunks_exact(t.taps).enumerate() {
                assert_eq!(w.iter().map(|&x| x as u32).sum::<u32>(), ONE, "{src}->{dst} output {i}");
                assert!(t.starts[i] + t.taps <= src);
            }
        }
    }

    #[test]
    fn exact_thirds_weigh_three_samples_equally() {
        let mut t = Taps::default();
        t.area(9, 3);
        assert_eq!(t.starts, vec![0, 3, 6]);
        for w in t.weights.chunks_exact(t.taps) {
            let nonzero: Vec<u16> = w.iter().copied().filter(|&x| x > 0).collect();
            assert_eq!(nonzero.len(), 3);
            assert!(nonzero.iter().all(|&x| (5460..=5462).contains(&x)));
        }
    }
}
