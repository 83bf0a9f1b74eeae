//! Separable scaling, any ratio: on an axis that shrinks, each output
//! sample is the mean of the source area it covers (fractional coverage at
//! the edges); on an axis that grows, it is the bilinear interpolation of
//! the two source samples around its centre (pixel centres aligned, edges
//! clamped, as fast_image_resize's bilinear). The work is done vertical first, one
//! output row at a time: the covered source rows are blended into a single
//! scratch row (vectorised: every lane does the same thing), then that row
//! is filtered horizontally straight into the destination. The scratch row
//! is the only buffer, so the source is read once and the canvas written
//! once.
//!
//! Weights are 16-bit fractions applied to samples with 8 fractional bits
//! (`mulhi(sample << 8, fraction)`, so the SIMD kernels work 16 lanes
//! wide): vertically always, horizontally for area tables of up to 4 taps
//! (ratios up to 3:1). Other horizontal tables (bilinear, wider area) use
//! 14-bit weights and exact 32-bit sums. Each output's weights sum to
//! exactly one, so flat areas stay exactly flat.
//!
//! Each output row's vertical pass also prefetches the next one's source
//! rows (see the x86 kernels): rows are short streams the hardware
//! prefetchers find too late.

use crate::media::frame::{PlaneMut, PlaneRef};

const SHIFT: u32 = 14;
const ONE: u32 = 1 << SHIFT;
const HALF: u32 = 1 << (SHIFT - 1);
/// 1/4 and 3/4 as 16-bit fractions (vertical pass).
const QUARTER: u16 = 1 << 14;
const THREE_QUARTERS: u16 = 3 << 14;

/// Per-axis filter taps: output `i` reads `taps` source samples starting at
/// `starts[i]`, weighted by `weights[i * taps..][..taps]`.
#[derive(Default, Debug)]
pub(super) struct Taps {
    pub taps: usize,
    pub starts: Vec<usize>,
    /// 14-bit weights (horizontal pass).
    pub weights: Vec<u16>,
    /// 16-bit fractions of one (the vertical pass, and the horizontal pass
    /// of `fractional` tables). A weight of exactly one (a 1:1 axis) is
    /// stored as 65535, off by 1/65536: invisible after rounding.
    pub fractions: Vec<u16>,
    /// For the 14-bit kernels (tables that are not `fractional`, up to 8
    /// taps): starts as i32, and weights padded to 4 or 8 taps, laid out
    /// per block of 8 outputs as `simd_taps / 4` groups of (8 outputs x 4
    /// taps). Empty otherwise.
    pub simd_starts: Vec<i32>,
    pub simd_weights: Vec<i16>,
    pub simd_taps: usize,
    /// One past the furthest sample a SIMD gather reads.
    pub simd_reach: usize,
    /// For the 14-bit kernels, when every 4 consecutive outputs' taps fit
    /// in 16 bytes (ratios up to 4), shuffle masks that replace the
    /// gathers: per block and group,
    /// 32 indices into two 16-byte windows loaded at the block's first and
    /// fifth output's start (+4 per group). Empty otherwise.
    pub simd_shuffle: Vec<u8>,
    /// The horizontal pass weighs with `fractions` (16-bit, each term
    /// truncated to 1/256, as the vertical pass) rather than 14-bit
    /// `weights` and exact sums: area tables of up to 4 taps, which the
    /// 4-tap kernel runs. (Enlarging keeps the exact sums: two truncating
    /// passes drift from the reference bilinear.)
    pub fractional: bool,
    /// The 4-tap horizontal kernel's tables, for `fractional` tables of at
    /// least 32 outputs.
    #[cfg(target_arch = "x86_64")]
    pub quad: Option<super::x86::QuadTable>,
    /// An exact 2x enlargement whose inner outputs weigh their two samples
    /// 1/4 and 3/4 (checked on the table): the horizontal pass can use a
    /// kernel that needs no table at all.
    pub up2: bool,
    key: (usize, usize),
}

impl Taps {
    /// The 14-bit kernels' view of this table.
    #[cfg(target_arch = "x86_64")]
    fn gather_table(&self) -> super::x86::GatherTable<'_> {
        super::x86::GatherTable {
            starts: &self.starts,
            simd_starts: &self.simd_starts,
            simd_weights: &self.simd_weights,
            simd_taps: self.simd_taps,
            simd_reach: self.simd_reach,
            simd_shuffle: &self.simd_shuffle,
        }
    }

    /// The taps for `src` samples into `dst`: area weights when shrinking
    /// (or equal), bilinear when growing.
    pub fn for_axis(src: usize, dst: usize) -> Taps {
        if src >= dst {
            Self::area(src, dst)
        } else {
            Self::bilinear(src, dst)
        }
    }

    /// Area weights for `src` samples into `dst` samples (`src >= dst`).
    pub fn area(src: usize, dst: usize) -> Taps {
        let mut t = Taps::default();
        t.compute(src, dst);
        t
    }

    /// Bilinear weights for `src` samples into `dst` samples (`src < dst`):
    /// output `i`'s centre falls at `(i + 0.5) * src / dst - 0.5` in the
    /// source, between two samples weighted by distance.
    pub fn bilinear(src: usize, dst: usize) -> Taps {
        let mut t = Taps { key: (src, dst), taps: src.clamp(1, 2), ..Taps::default() };
        let ratio = src as f64 / dst as f64;
        for i in 0..dst {
            let centre = ((i as f64 + 0.5) * ratio - 0.5).clamp(0.0, (src - 1) as f64);
            let first = (centre.floor() as usize).min(src - t.taps);
            let f = centre - first as f64;
            let w = if t.taps == 1 { vec![1.0] } else { vec![1.0 - f, f] };
            t.starts.push(first);
            push_quantized(&w, ONE, &mut t.weights);
            push_quantized(&w, 1 << 16, &mut t.fractions);
        }
        t.up2 = t.is_up2(src, dst);
        t.build_simd();
        t
    }

    /// Whether every output but the first and last of a `src` -> `2 src`
    /// table is `(s[i-1] + 3 s[i]) / 4` (even) or `(3 s[i] + s[i+1]) / 4`
    /// (odd), which is what [`super::x86::up2_row`] computes.
    fn is_up2(&self, src: usize, dst: usize) -> bool {
        let (quarter, three) = ((ONE / 4) as u16, (3 * ONE / 4) as u16);
        dst == 2 * src
            && src >= 2
            && self.taps == 2
            && (1..dst - 1).all(|o| {
                let i = o / 2;
                let w = &self.weights[o * 2..o * 2 + 2];
                if o % 2 == 0 {
                    self.starts[o] == i - 1 && w == [quarter, three]
                } else {
                    self.starts[o] == i && w == [three, quarter]
                }
            })
    }

    fn compute(&mut self, src: usize, dst: usize) {
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
        self.fractions.clear();
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
            push_quantized(&w, ONE, &mut self.weights);
            push_quantized(&w, 1 << 16, &mut self.fractions);
        }
        self.fractional = taps <= 4;
        self.build_simd();
    }

    fn build_simd(&mut self) {
        self.simd_starts.clear();
        self.simd_weights.clear();
        self.simd_shuffle.clear();
        #[cfg(target_arch = "x86_64")]
        {
            self.quad = match self.fractional {
                true => super::x86::QuadTable::build(&self.starts, &self.fractions, self.taps),
                false => None,
            };
        }
        self.simd_taps = match self.taps {
            _ if self.fractional => 0,
            0..=4 => 4,
            5..=8 => 8,
            _ => 0,
        };
        if self.simd_taps == 0 {
            return;
        }
        let dst = self.starts.len();
        self.simd_starts.extend(self.starts.iter().map(|&s| s.min(i32::MAX as usize) as i32));
        self.simd_reach = self.starts.iter().max().map_or(0, |&s| s + self.simd_taps);
        for block in 0..dst / 8 {
            for group in 0..self.simd_taps / 4 {
                for o in block * 8..block * 8 + 8 {
                    for k in group * 4..group * 4 + 4 {
                        let w = if k < self.taps { self.weights[o * self.taps + k] } else { 0 };
                        self.simd_weights.push(w as i16);
                    }
                }
            }
        }
        let fits = (0..dst / 8).all(|b| {
            (0..2).all(|half| {
                let first = self.starts[b * 8 + half * 4];
                (0..4).all(|o| self.starts[b * 8 + half * 4 + o] + 4 - first <= 16)
            })
        });
        if fits {
            for b in 0..dst / 8 {
                for group in 0..self.simd_taps / 4 {
                    for half in 0..2 {
                        let window = self.starts[b * 8 + half * 4] + 4 * group;
                        for o in 0..4 {
                            let out = b * 8 + half * 4 + o;
                            for k in 0..4 {
                                let tap = group * 4 + k;
                                let at = self.starts[out] + tap;
                                // Padding taps (weight 0) read a zero byte.
                                let index = if tap < self.taps { at - window } else { 0x80 };
                                self.simd_shuffle.push(index as u8);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Quantizes `w` (summing to ~1) to integers summing to exactly `one`,
/// by rounding the running total (so errors never pile up on one tap).
fn push_quantized(w: &[f64], one: u32, out: &mut Vec<u16>) {
    let total: f64 = w.iter().sum();
    let scale = if total > 0.0 { one as f64 / total } else { 0.0 };
    let (mut running, mut given) = (0.0f64, 0i64);
    for &x in w {
        running += x * scale;
        let upto = (running.round() as i64).min(one as i64);
        out.push((upto - given).clamp(0, u16::MAX as i64) as u16);
        given = upto;
    }
}

/// Tables kept for this many (source, destination) lengths: a grid of
/// 3x3 needs four (426 and 428 wide, 240 high, and chroma's halves).
const CACHED_TABLES: usize = 16;

/// The separable scaler with its reusable tables and scratch row.
#[derive(Default)]
pub(super) struct SeparableScaler {
    tables: Vec<Taps>,
    row: Vec<u8>,
}

impl SeparableScaler {
    /// The index of the tables for `src` -> `dst`, computing them if new
    /// (most recently used first; the oldest is dropped past the cap).
    fn taps(&mut self, src: usize, dst: usize) -> usize {
        if let Some(i) = self.tables.iter().position(|t| t.key == (src, dst)) {
            return i;
        }
        if self.tables.len() >= CACHED_TABLES {
            self.tables.remove(0);
        }
        self.tables.push(Taps::for_axis(src, dst));
        self.tables.len() - 1
    }

    pub fn scale(&mut self, src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
        let (sw, sh, dw, dh) = (src.width(), src.height(), dst.width(), dst.height());
        let hi = self.taps(sw, dw);
        let vi = self.taps(sh, dh);
        // Slack after the row: the SIMD kernel reads whole groups of 4 taps.
        self.row.resize(sw + 32, 0);
        let (horizontal_taps, vertical_taps) = (&self.tables[hi], &self.tables[vi]);
        let vt = vertical_taps.taps;
        let (mut rows, mut next): ([&[u8]; 16], [&[u8]; 16]) = ([&[]; 16], [&[]; 16]);
        for y in 0..dh {
            let first = vertical_taps.starts[y];
            let weights = &vertical_taps.fractions[y * vt..(y + 1) * vt];
            if vt <= rows.len() {
                for (k, r) in rows.iter_mut().take(vt).enumerate() {
                    *r = src.row(first + k);
                }
                // The next output row's source rows, to prefetch.
                let ahead = match vertical_taps.starts.get(y + 1) {
                    Some(&then) => {
                        for (k, r) in next.iter_mut().take(vt).enumerate() {
                            *r = src.row(then + k);
                        }
                        vt
                    }
                    None => 0,
                };
                vertical(&rows[..vt], weights, &mut self.row[..sw], &next[..ahead]);
            } else {
                let many: Vec<&[u8]> = (0..vt).map(|k| src.row(first + k)).collect();
                vertical(&many, weights, &mut self.row[..sw], &[]);
            }
            horizontal(&self.row, horizontal_taps, dst.row_mut(y));
        }
    }
}

/// The vertical pass of one output row; `next` are the rows of the next
/// one (or none), prefetched on the way.
pub(super) fn vertical(rows: &[&[u8]], fractions: &[u16], out: &mut [u8], next: &[&[u8]]) {
    // A row between two at 1/4 and 3/4 (every inner row of a 2x
    // enlargement): `(far + 3 near + 2) / 4`, which is exactly what the
    // general formula gives for those fractions, without multiplies.
    #[cfg(target_arch = "x86_64")]
    if rows.len() == 2 {
        let pair = match fractions {
            [QUARTER, THREE_QUARTERS] => Some((rows[0], rows[1])),
            [THREE_QUARTERS, QUARTER] => Some((rows[1], rows[0])),
            _ => None,
        };
        if let Some((far, near)) = pair {
            let done = super::x86::quarter_row(far, near, out);
            vertical_generic(rows, fractions, out, done);
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    let done = super::x86::vertical_avx2(rows, fractions, out, next);
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = next;
        0
    };
    vertical_generic(rows, fractions, out, done);
}

/// `out[x] = sum_k fractions[k] * rows[k][x]`: each term is the sample
/// with 8 fractional bits times a 16-bit fraction, keeping the high 16 bits
/// (exactly what the SIMD kernel's `mulhi` does), then rounded.
/// Starts at sample `from` (the SIMD kernel did the ones before).
pub(super) fn vertical_generic(rows: &[&[u8]], fractions: &[u16], out: &mut [u8], from: usize) {
    for (x, o) in out.iter_mut().enumerate().skip(from) {
        *o = weigh(rows.iter().map(|r| r[x]).zip(fractions.iter().copied()));
    }
}

/// `sum mulhi(sample << 8, fraction)`, rounded to a sample: the weighted
/// mean as the 16-bit kernels compute it (each term truncated to 1/256).
/// Fractions summing to at most one keep it within 0..=255.
#[inline]
fn weigh(terms: impl Iterator<Item = (u8, u16)>) -> u8 {
    let acc = terms.fold(128u32, |acc, (p, f)| acc + ((((p as u32) << 8) * f as u32) >> 16));
    (acc >> 8).min(255) as u8
}

pub(super) fn horizontal(row: &[u8], taps: &Taps, out: &mut [u8]) {
    let n = out.len().min(taps.starts.len());
    let out = &mut out[..n];
    #[cfg(target_arch = "x86_64")]
    if taps.up2 {
        let src = taps.key.0;
        let done = super::x86::up2_row(&row[..src.min(row.len())], out);
        if done > 0 {
            // The kernel wrote outputs 2 .. 2 + done; the edges are scalar.
            let end = (2 + done).min(n);
            horizontal_range(row, taps, out, 0..2.min(n));
            horizontal_range(row, taps, out, end..n);
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    let done = match &taps.quad {
        Some(quad) => super::x86::horizontal_quad(row, quad, out),
        None => super::x86::horizontal_avx2(row, &taps.gather_table(), out),
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    horizontal_range(row, taps, out, done.min(n)..n);
}

/// The scalar horizontal pass over outputs `range` of `out`, with the
/// formula `taps`' SIMD kernels use: [`horizontal_fractions`] for
/// `fractional` tables, [`horizontal_scalar`] (14-bit weights) otherwise.
pub(super) fn horizontal_range(row: &[u8], taps: &Taps, out: &mut [u8], range: std::ops::Range<usize>) {
    let t = taps.taps;
    let starts = &taps.starts[range.clone()];
    let (from, to) = (range.start * t, range.end * t);
    if taps.fractional {
        horizontal_fractions(row, t, starts, &taps.fractions[from..to], &mut out[range]);
    } else {
        horizontal_scalar(row, t, starts, &taps.weights[from..to], &mut out[range]);
    }
}

/// `out[i] = (sum_k mulhi(row[starts[i] + k] << 8, fractions[i][k]) + 128) >> 8`:
/// the vertical pass's formula along the row, as
/// [`super::x86::horizontal_quad`] computes it.
pub(super) fn horizontal_fractions(row: &[u8], taps: usize, starts: &[usize], fractions: &[u16], out: &mut [u8]) {
    for ((o, &s), f) in out.iter_mut().zip(starts).zip(fractions.chunks_exact(taps.max(1))) {
        *o = weigh(row[s..s + taps].iter().copied().zip(f.iter().copied()));
    }
}

/// The scalar horizontal filter (also the tail after the SIMD blocks).
pub(super) fn horizontal_scalar(row: &[u8], taps: usize, starts: &[usize], weights: &[u16], out: &mut [u8]) {
    match taps {
        1 => horizontal_n::<1>(row, starts, weights, out),
        2 => horizontal_n::<2>(row, starts, weights, out),
        3 => horizontal_n::<3>(row, starts, weights, out),
        4 => horizontal_n::<4>(row, starts, weights, out),
        5 => horizontal_n::<5>(row, starts, weights, out),
        6 => horizontal_n::<6>(row, starts, weights, out),
        _ => horizontal_any(row, taps, starts, weights, out),
    }
}

fn horizontal_n<const T: usize>(row: &[u8], starts: &[usize], weights: &[u16], out: &mut [u8]) {
    for ((o, &s), w) in out.iter_mut().zip(starts).zip(weights.chunks_exact(T)) {
        let px = &row[s..s + T];
        let mut acc = HALF;
        for k in 0..T {
            acc += w[k] as u32 * px[k] as u32;
        }
        *o = (acc >> SHIFT) as u8;
    }
}

fn horizontal_any(row: &[u8], taps: usize, starts: &[usize], weights: &[u16], out: &mut [u8]) {
    for ((o, &s), w) in out.iter_mut().zip(starts).zip(weights.chunks_exact(taps.max(1))) {
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
            let t = Taps::area(src, dst);
            assert_eq!(t.starts.len(), dst);
            for (i, w) in t.weights.chunks_exact(t.taps).enumerate() {
                assert_eq!(w.iter().map(|&x| x as u32).sum::<u32>(), ONE, "{src}->{dst} output {i}");
                let f = &t.fractions[i * t.taps..(i + 1) * t.taps];
                assert_eq!(f.iter().map(|&x| x as u32).sum::<u32>(), 1 << 16, "{src}->{dst} output {i}");
                assert!(t.starts[i] + t.taps <= src);
            }
        }
    }

    #[test]
    fn simd_horizontal_equals_scalar() {
        let shrinking = [(1280, 426), (1280, 428), (640, 212), (1280, 160), (100, 33), (1280, 100), (30, 3)];
        let growing = [(640, 1280), (320, 960), (100, 133), (426, 640), (17, 300)];
        for (src, dst) in shrinking.into_iter().chain(growing) {
            let t = Taps::for_axis(src, dst);
            let row: Vec<u8> = (0..src + 32).map(|i| (i * 37 % 251) as u8).collect();
            let mut fast = vec![0u8; dst];
            horizontal(&row, &t, &mut fast);
            let mut slow = vec![0u8; dst];
            horizontal_range(&row, &t, &mut slow, 0..dst);
            assert_eq!(fast, slow, "{src}->{dst} ({} taps)", t.taps);
        }
    }

    #[test]
    fn bilinear_weights_sum_to_one_and_follow_the_centres() {
        for (src, dst) in [(640, 1280), (360, 720), (320, 960), (2, 9), (1, 5), (639, 1280), (426, 640)] {
            let t = Taps::bilinear(src, dst);
            assert_eq!(t.starts.len(), dst);
            for (i, w) in t.weights.chunks_exact(t.taps).enumerate() {
                assert_eq!(w.iter().map(|&x| x as u32).sum::<u32>(), ONE, "{src}->{dst} output {i}");
                assert!(t.starts[i] + t.taps <= src);
            }
        }
        // 2x: outputs 1 and 2 sit at 0.25 and 0.75 between samples 0 and 1.
        let t = Taps::bilinear(4, 8);
        assert_eq!((t.starts[1], t.starts[2]), (0, 0));
        let q = ONE as u16 / 4;
        assert_eq!(&t.weights[2..6], &[3 * q, q, q, 3 * q]);
        // The first and last outputs are clamped to the edge samples.
        assert_eq!((t.starts[0], &t.weights[..2]), (0, &[ONE as u16, 0][..]));
        assert_eq!((t.starts[7], &t.weights[14..16]), (2, &[0, ONE as u16][..]));
    }

    #[test]
    fn exact_thirds_weigh_three_samples_equally() {
        let t = Taps::area(9, 3);
        assert_eq!(t.starts, vec![0, 3, 6]);
        for w in t.weights.chunks_exact(t.taps) {
            let nonzero: Vec<u16> = w.iter().copied().filter(|&x| x > 0).collect();
            assert_eq!(nonzero.len(), 3);
            assert!(nonzero.iter().all(|&x| (5460..=5462).contains(&x)));
        }
    }
}
