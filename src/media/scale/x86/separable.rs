//! The separable scaler's kernels: the vertical pass, the 2x enlargement
//! rows, and the horizontal passes (4-tap fractions, 14-bit weights).

use super::{has_avx2, mulhi_epu16, prefetch};
use std::arch::x86_64::*;

/// The separable scaler's vertical pass over whole blocks of 32 samples:
/// `sum_k mulhi(rows[k][x] << 8, fractions[k])`, rounded, 16 lanes at a
/// time. Returns how many samples it wrote (all of them when `out` holds
/// at least 32). `next` are the rows the next call will read (or none):
/// they are prefetched as this one goes (see [`prefetch`]).
pub(in crate::media::scale) fn vertical_avx2(
    rows: &[&[u8]],
    fractions: &[u16],
    out: &mut [u8],
    next: &[&[u8]],
) -> usize {
    let n = out.len();
    if n < 32 || !has_avx2() || rows.len() != fractions.len() || rows.iter().any(|r| r.len() < n) {
        return 0;
    }
    let out = out.as_mut_ptr();
    // SAFETY (all arms): AVX2 is present; every row holds at least `n >= 32`
    // samples and `out` at least `n` (checked above); `next` is only
    // prefetched.
    unsafe {
        match rows.len() {
            1 => vertical_fixed::<1>(rows, fractions, out, n, next),
            2 => vertical_fixed::<2>(rows, fractions, out, n, next),
            3 => vertical_fixed::<3>(rows, fractions, out, n, next),
            4 => vertical_fixed::<4>(rows, fractions, out, n, next),
            5 => vertical_fixed::<5>(rows, fractions, out, n, next),
            6 => vertical_fixed::<6>(rows, fractions, out, n, next),
            7 => vertical_fixed::<7>(rows, fractions, out, n, next),
            8 => vertical_fixed::<8>(rows, fractions, out, n, next),
            9 => vertical_fixed::<9>(rows, fractions, out, n, next),
            _ => vertical_any(rows, fractions, out, n),
        }
    }
    n
}

/// 32 samples of the vertical pass at `x`:
/// `(sum_k mulhi(rows[k][x] << 8, weights[k]) + 128) >> 8`.
///
/// # Safety
/// AVX2 must be available; every row readable and `out` writable for
/// `x + 32` bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn vertical_block(rows: &[*const u8], weights: &[__m256i], out: *mut u8, x: usize) {
    let zero = _mm256_setzero_si256();
    let (mut lo, mut hi) = (_mm256_set1_epi16(128), _mm256_set1_epi16(128));
    for (&row, &w) in rows.iter().zip(weights) {
        // SAFETY: x + 32 <= row length.
        let v = unsafe { _mm256_loadu_si256(row.add(x) as *const __m256i) };
        // Interleaving zero below each byte is the sample << 8 as u16.
        lo = _mm256_add_epi16(lo, mulhi_epu16(_mm256_unpacklo_epi8(zero, v), w));
        hi = _mm256_add_epi16(hi, mulhi_epu16(_mm256_unpackhi_epi8(zero, v), w));
    }
    // packus undoes the unpack's lane order.
    let bytes = _mm256_packus_epi16(_mm256_srli_epi16::<8>(lo), _mm256_srli_epi16::<8>(hi));
    // SAFETY: x + 32 bytes writable.
    unsafe { _mm256_storeu_si256(out.add(x) as *mut __m256i, bytes) };
}

/// # Safety
/// As `vertical_any`, with exactly `T` rows and fractions; up to `T` rows
/// of `next` are prefetched (only).
#[target_feature(enable = "avx2")]
unsafe fn vertical_fixed<const T: usize>(rows: &[&[u8]], fractions: &[u16], out: *mut u8, n: usize, next: &[&[u8]]) {
    let ptrs: [*const u8; T] = std::array::from_fn(|k| rows[k].as_ptr());
    let ahead: [*const u8; T] = std::array::from_fn(|k| next.get(k).map_or(ptrs[k], |r| r.as_ptr()));
    let weights: [__m256i; T] = std::array::from_fn(|k| _mm256_set1_epi16(fractions[k] as i16));
    let mut x = 0;
    // SAFETY (both calls): blocks end at most at n, within every row and `out`.
    while x + 32 <= n {
        if x % 64 == 0 {
            ahead.iter().for_each(|&r| prefetch(r, x));
        }
        unsafe { vertical_block(&ptrs, &weights, out, x) };
        x += 32;
    }
    if x < n {
        unsafe { vertical_block(&ptrs, &weights, out, n - 32) };
    }
}

/// # Safety
/// AVX2 must be available; every row must hold `n >= 32` samples, `out`
/// must be writable for `n` bytes.
#[target_feature(enable = "avx2")]
unsafe fn vertical_any(rows: &[&[u8]], fractions: &[u16], out: *mut u8, n: usize) {
    let ptrs: Vec<*const u8> = rows.iter().map(|r| r.as_ptr()).collect();
    let weights: Vec<__m256i> = fractions.iter().map(|&f| _mm256_set1_epi16(f as i16)).collect();
    let mut x = 0;
    // SAFETY (both calls): blocks end at most at n, within every row and `out`.
    while x + 32 <= n {
        unsafe { vertical_block(&ptrs, &weights, out, x) };
        x += 32;
    }
    if x < n {
        unsafe { vertical_block(&ptrs, &weights, out, n - 32) };
    }
}

/// `out[x] = (far[x] + 3 near[x] + 2) / 4` in blocks of 32; returns how
/// many samples it wrote (the rest are the caller's).
pub(in crate::media::scale) fn quarter_row(far: &[u8], near: &[u8], out: &mut [u8]) -> usize {
    let n = out.len().min(far.len()).min(near.len()) / 32 * 32;
    if n == 0 || !has_avx2() {
        return 0;
    }
    // SAFETY: AVX2 is present; all three slices hold at least `n` bytes.
    unsafe { quarter_avx2(far.as_ptr(), near.as_ptr(), out.as_mut_ptr(), n) };
    n
}

/// # Safety
/// AVX2 must be available; `far`, `near` readable and `out` writable for
/// `n` bytes, `n` a multiple of 32.
#[target_feature(enable = "avx2")]
unsafe fn quarter_avx2(far: *const u8, near: *const u8, out: *mut u8, n: usize) {
    let zero = _mm256_setzero_si256();
    let two = _mm256_set1_epi16(2);
    let mut x = 0;
    while x < n {
        // SAFETY: x + 32 <= n.
        unsafe {
            let f = _mm256_loadu_si256(far.add(x) as *const __m256i);
            let m = _mm256_loadu_si256(near.add(x) as *const __m256i);
            // Unpacking and packing by lane keeps the bytes in order.
            let half = |f: __m256i, m: __m256i| {
                let m3 = _mm256_add_epi16(_mm256_add_epi16(m, m), _mm256_add_epi16(m, two));
                _mm256_srli_epi16::<2>(_mm256_add_epi16(m3, f))
            };
            let lo = half(_mm256_unpacklo_epi8(f, zero), _mm256_unpacklo_epi8(m, zero));
            let hi = half(_mm256_unpackhi_epi8(f, zero), _mm256_unpackhi_epi8(m, zero));
            _mm256_storeu_si256(out.add(x) as *mut __m256i, _mm256_packus_epi16(lo, hi));
        }
        x += 32;
    }
}

/// The exact 2x bilinear horizontal pass over the inner outputs
/// `2 .. 2n - 2` of a row of `n` inputs (`out` holds `2n`):
/// `out[2i] = (row[i-1] + 3 row[i] + 2) / 4` and
/// `out[2i+1] = (3 row[i] + row[i+1] + 2) / 4`, in blocks of 16 inputs (32
/// outputs), the last block ending at the row's end. Returns how many
/// outputs it wrote from `out[2]` on (`2n - 4`, or none for rows under 18
/// inputs); the first two and the last two are the caller's.
pub(in crate::media::scale) fn up2_row(row: &[u8], out: &mut [u8]) -> usize {
    let n = row.len();
    if n < 18 || out.len() != 2 * n || !has_avx2() {
        return 0;
    }
    // SAFETY: AVX2 is present; a block at input s reads row[s .. s + 18)
    // and writes out[2 + 2s .. 2 + 2s + 32), and s <= n - 18, so reads end
    // by n and writes by 2n - 2 <= out.len().
    unsafe { up2_avx2(row.as_ptr(), out.as_mut_ptr(), n) };
    2 * n - 4
}

/// # Safety
/// AVX2 must be available; `n >= 18`; `row` readable for `n` bytes and
/// `out` writable for `2n - 2`.
#[target_feature(enable = "avx2")]
unsafe fn up2_avx2(row: *const u8, out: *mut u8, n: usize) {
    let mut s = 0;
    while s + 18 <= n {
        // SAFETY: s + 18 <= n.
        unsafe { up2_block(row, out, s) };
        s += 16;
    }
    if s + 2 < n {
        // SAFETY: n >= 18.
        unsafe { up2_block(row, out, n - 18) };
    }
}

/// Inputs `s + 1 .. s + 17` of the 2x pass: outputs `2 + 2s .. 2 + 2s + 32`.
///
/// # Safety
/// AVX2 must be available; `row` readable for `s + 18` bytes and `out`
/// writable for `2s + 34`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn up2_block(row: *const u8, out: *mut u8, s: usize) {
    let two = _mm256_set1_epi16(2);
    // SAFETY: within the bounds the caller guarantees.
    unsafe {
        let at = row.add(s);
        let prev = _mm256_cvtepu8_epi16(_mm_loadu_si128(at as *const __m128i));
        let cur = _mm256_cvtepu8_epi16(_mm_loadu_si128(at.add(1) as *const __m128i));
        let next = _mm256_cvtepu8_epi16(_mm_loadu_si128(at.add(2) as *const __m128i));
        let cur3 = _mm256_add_epi16(_mm256_add_epi16(cur, cur), _mm256_add_epi16(cur, two));
        let even = _mm256_srli_epi16::<2>(_mm256_add_epi16(cur3, prev));
        let odd = _mm256_srli_epi16::<2>(_mm256_add_epi16(cur3, next));
        // Per 128-bit lane: e0 o0 .. e3 o3 and e4 o4 .. e7 o7; the pack
        // then lays lane 0 (inputs 0-7) before lane 1 (inputs 8-15).
        let lo = _mm256_unpacklo_epi16(even, odd);
        let hi = _mm256_unpackhi_epi16(even, odd);
        _mm256_storeu_si256(out.add(2 + 2 * s) as *mut __m256i, _mm256_packus_epi16(lo, hi));
    }
}

/// Where [`horizontal_quad`] reads and how it weighs, per group of 32
/// outputs: 4 blocks of 8, each two lanes of 4 outputs whose taps all lie
/// in a 16-byte window of the row. Built only by [`QuadTable::build`],
/// which guarantees what the kernel relies on: every group's 32 outputs lie
/// below `outputs`, every window's 16 bytes below `reach`, and the masks
/// and fractions hold 256 bytes and 128 values per group.
#[derive(Default, Debug)]
pub(in crate::media::scale) struct QuadTable {
    /// First output of each group: `32 g`, and for a last group that would
    /// run past the end, `outputs - 32` (overlapping the one before).
    firsts: Vec<u32>,
    /// Per group and block, where its two windows start (lane 0: outputs
    /// 0-3 of the block; lane 1: outputs 4-7), the lane's first output's start.
    windows: Vec<u32>,
    /// Per group and block, two 32-byte shuffles of the windows (taps 0 and
    /// 1, then taps 2 and 3): per lane, u16 slot `4 t + i` is output `i`'s
    /// tap `t` (of the pair) in its high byte, `sample << 8`. Padding taps
    /// read a zero.
    masks: Vec<u8>,
    /// The fractions for the same slots (16 per shuffle).
    fractions: Vec<u16>,
    /// How many outputs the table makes.
    outputs: usize,
    /// One past the furthest byte a window reads.
    reach: usize,
}

impl QuadTable {
    /// The table for `starts` and `fractions` (`taps` per output), if every
    /// output has at most 4 taps, there are at least 32 outputs, and each
    /// lane's taps fit its window (always, up to 4 taps).
    pub(in crate::media::scale) fn build(starts: &[usize], fractions: &[u16], taps: usize) -> Option<QuadTable> {
        let outputs = starts.len();
        if taps == 0 || taps > 4 || outputs < 32 || fractions.len() != outputs * taps {
            return None;
        }
        let mut t = QuadTable { outputs, ..QuadTable::default() };
        for g in 0..outputs.div_ceil(32) {
            let first = (32 * g).min(outputs - 32);
            t.firsts.push(u32::try_from(first).ok()?);
            for block in 0..4 {
                let lane_first = |lane: usize| first + 8 * block + 4 * lane;
                for lane in 0..2 {
                    let o = lane_first(lane);
                    let window = starts[o];
                    if starts[o..o + 4].iter().any(|&s| s < window || s + taps > window + 16) {
                        return None;
                    }
                    t.windows.push(u32::try_from(window).ok()?);
                    t.reach = t.reach.max(window + 16);
                }
                for pair in 0..2 {
                    for lane in 0..2 {
                        let o = lane_first(lane);
                        for slot in 0..8 {
                            let (tap, out) = (2 * pair + slot / 4, o + slot % 4);
                            let (index, fraction) = if tap < taps {
                                ((starts[out] + tap - starts[o]) as u8, fractions[out * taps + tap])
                            } else {
                                (0x80, 0)
                            };
                            t.masks.extend([0x80, index]);
                            t.fractions.push(fraction);
                        }
                    }
                }
            }
        }
        Some(t)
    }
}

/// The horizontal pass of a table with at most 4 taps per output (area
/// weights up to 3:1), 32 outputs at a time, as
/// the scalar `separable::horizontal_fractions` computes it:
/// `(sum_k mulhi(row[start + k] << 8, fraction_k) + 128) >> 8`. Returns how
/// many outputs it wrote: all the table's, or none when `out` is shorter
/// or the windows reach past `row`.
pub(in crate::media::scale) fn horizontal_quad(row: &[u8], table: &QuadTable, out: &mut [u8]) -> usize {
    if table.outputs > out.len() || table.reach > row.len() || !has_avx2() {
        return 0;
    }
    // SAFETY: AVX2 is present; by `QuadTable::build`, every window's 16
    // bytes lie below `reach <= row.len()`, every group's 32 outputs below
    // `outputs <= out.len()`, and the mask and fraction tables hold what
    // the groups read.
    unsafe { horizontal_quad_avx2(row.as_ptr(), table, out.as_mut_ptr()) };
    table.outputs
}

/// # Safety
/// AVX2 must be available; `row` must be readable for 16 bytes at every
/// `table.windows[i]`; `out` writable for 32 bytes at every
/// `table.firsts[g]`; `masks` and `fractions` must hold 256 bytes and 128
/// fractions per group (all true of a built table when `row` holds
/// `reach` bytes and `out` `outputs`).
#[target_feature(enable = "avx2")]
unsafe fn horizontal_quad_avx2(row: *const u8, table: &QuadTable, out: *mut u8) {
    let round = _mm256_set1_epi16(128);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let (windows, masks, fractions) = (table.windows.as_ptr(), table.masks.as_ptr(), table.fractions.as_ptr());
    for (g, &first) in table.firsts.iter().enumerate() {
        // SAFETY (whole group): the caller guarantees these reads and writes.
        unsafe {
            // Per block of 8 outputs, lanes [0-3 | 4-7], as u16 in 1/256:
            // [taps 0 + 2 of outputs 0-3, taps 1 + 3 of outputs 0-3].
            let block = |b: usize| {
                let i = g * 4 + b;
                let lo = _mm_loadu_si128(row.add(*windows.add(2 * i) as usize) as *const __m128i);
                let hi = _mm_loadu_si128(row.add(*windows.add(2 * i + 1) as usize) as *const __m128i);
                let window = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
                let m = masks.add(64 * i) as *const __m256i;
                let f = fractions.add(32 * i) as *const __m256i;
                // The masks put each sample in the high byte of a u16: `sample << 8`.
                let t02 = _mm256_mulhi_epu16(_mm256_shuffle_epi8(window, _mm256_loadu_si256(m)), _mm256_loadu_si256(f));
                let t13 = _mm256_mulhi_epu16(
                    _mm256_shuffle_epi8(window, _mm256_loadu_si256(m.add(1))),
                    _mm256_loadu_si256(f.add(1)),
                );
                _mm256_add_epi16(t02, t13)
            };
            let (b0, b1, b2, b3) = (block(0), block(1), block(2), block(3));
            // Outputs [0-3, 8-11 | 4-7, 12-15] and [16-19, 24-27 | 20-23, 28-31].
            let s01 = _mm256_add_epi16(_mm256_unpacklo_epi64(b0, b1), _mm256_unpackhi_epi64(b0, b1));
            let s23 = _mm256_add_epi16(_mm256_unpacklo_epi64(b2, b3), _mm256_unpackhi_epi64(b2, b3));
            let s01 = _mm256_srli_epi16::<8>(_mm256_add_epi16(s01, round));
            let s23 = _mm256_srli_epi16::<8>(_mm256_add_epi16(s23, round));
            // As bytes, 4-output dwords [0, 2, 4, 6 | 1, 3, 5, 7]: in order.
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(s01, s23), order);
            _mm256_storeu_si256(out.add(first as usize) as *mut __m256i, bytes);
        }
    }
}

/// A 14-bit horizontal table laid out for [`horizontal_avx2`], borrowed
/// from the scaler's taps (which build it; see `separable::Taps`).
pub(in crate::media::scale) struct GatherTable<'a> {
    /// Each output's first source sample.
    pub starts: &'a [usize],
    /// The same, as i32, for the gathers.
    pub simd_starts: &'a [i32],
    /// Weights padded to 4 or 8 taps, per block of 8 outputs as
    /// `simd_taps / 4` groups of (8 outputs x 4 taps).
    pub simd_weights: &'a [i16],
    /// Taps per output after padding (4 or 8; 0: no table).
    pub simd_taps: usize,
    /// One past the furthest sample a gather reads.
    pub simd_reach: usize,
    /// Shuffle masks that replace the gathers when 4 outputs' taps fit in
    /// 16 bytes (empty otherwise).
    pub simd_shuffle: &'a [u8],
}

/// The area scaler's horizontal pass over whole blocks of 8 outputs;
/// returns how many outputs it wrote (a multiple of 8).
pub(in crate::media::scale) fn horizontal_avx2(row: &[u8], taps: &GatherTable<'_>, out: &mut [u8]) -> usize {
    let groups = taps.simd_taps / 4;
    let blocks = out.len().min(taps.simd_starts.len()) / 8;
    if groups == 0 || blocks == 0 || !has_avx2() || taps.simd_weights.len() < blocks * groups * 32 {
        return 0;
    }
    // Every gather reads 4 bytes at `start + 4 * group`: all must be in `row`.
    if taps.simd_reach > row.len() || row.len() > i32::MAX as usize {
        return 0;
    }
    // Every shuffle window reads 16 bytes from a start + 4 * group.
    if taps.simd_shuffle.len() >= blocks * groups * 32 && taps.simd_reach + 16 <= row.len() {
        // SAFETY: AVX2 is present; windows start at `starts[o] + 4g`, which
        // with 16 bytes stays below `simd_reach + 16 <= row.len()`; the
        // mask and weight tables hold `blocks * groups * 32` entries; `out`
        // holds `blocks * 8` (checked above).
        unsafe {
            horizontal_shuffle(
                row.as_ptr(),
                taps.starts,
                taps.simd_shuffle.as_ptr(),
                taps.simd_weights.as_ptr(),
                groups,
                out.as_mut_ptr(),
                blocks,
            )
        };
        return blocks * 8;
    }
    // SAFETY: AVX2 is present; `blocks * 8` outputs fit in `out`; starts
    // (non-negative, checked via `reach`) plus `4 * groups` stay inside
    // `row`; the weight table holds `blocks * groups * 32` entries (checked).
    unsafe {
        horizontal_avx2_inner(
            row.as_ptr(),
            taps.simd_starts.as_ptr(),
            taps.simd_weights.as_ptr(),
            groups,
            out.as_mut_ptr(),
            blocks,
        )
    };
    blocks * 8
}

/// # Safety
/// AVX2 must be available; for every output `o < 8 * blocks` and group
/// `g < groups`, `row` must be readable at `starts[o] + 4 * g .. + 4`;
/// `weights` must hold `blocks * groups * 32` values; `out` must be
/// writable for `8 * blocks` bytes.
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2_inner(
    row: *const u8,
    starts: *const i32,
    weights: *const i16,
    groups: usize,
    out: *mut u8,
    blocks: usize,
) {
    for b in 0..blocks {
        // SAFETY (whole block): indices are within the bounds the caller guarantees.
        unsafe {
            let idx = _mm256_loadu_si256(starts.add(b * 8) as *const __m256i);
            let mut lo = _mm256_setzero_si256();
            let mut hi = _mm256_setzero_si256();
            for g in 0..groups {
                let offset = _mm256_add_epi32(idx, _mm256_set1_epi32(4 * g as i32));
                // Four consecutive samples for each of the 8 outputs.
                let px = _mm256_i32gather_epi32::<1>(row as *const i32, offset);
                let px_lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(px));
                let px_hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256::<1>(px));
                let w = weights.add((b * groups + g) * 32);
                let w_lo = _mm256_loadu_si256(w as *const __m256i);
                let w_hi = _mm256_loadu_si256(w.add(16) as *const __m256i);
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(px_lo, w_lo));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(px_hi, w_hi));
            }
            store_taps8(lo, hi, out.add(b * 8));
        }
    }
}

/// The same filter as `horizontal_avx2_inner`, with the 8 outputs' taps
/// picked out of two 16-byte windows by one byte shuffle instead of a
/// gather.
///
/// # Safety
/// AVX2 must be available; for every block `b` and group `g`, `row` must
/// be readable for 16 bytes at `starts[8b] + 4g` and `starts[8b + 4] + 4g`;
/// `shuffle` and `weights` must hold `blocks * groups * 32` entries;
/// `out` must be writable for `8 * blocks` bytes.
#[target_feature(enable = "avx2")]
unsafe fn horizontal_shuffle(
    row: *const u8,
    starts: &[usize],
    shuffle: *const u8,
    weights: *const i16,
    groups: usize,
    out: *mut u8,
    blocks: usize,
) {
    for b in 0..blocks {
        let (w0, w1) = (starts[b * 8], starts[b * 8 + 4]);
        // SAFETY (whole block): reads and writes within the caller's bounds.
        unsafe {
            let mut lo = _mm256_setzero_si256();
            let mut hi = _mm256_setzero_si256();
            for g in 0..groups {
                let low = _mm_loadu_si128(row.add(w0 + 4 * g) as *const __m128i);
                let high = _mm_loadu_si128(row.add(w1 + 4 * g) as *const __m128i);
                let window = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(low), high);
                let mask = _mm256_loadu_si256(shuffle.add((b * groups + g) * 32) as *const __m256i);
                let px = _mm256_shuffle_epi8(window, mask);
                let px_lo = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(px));
                let px_hi = _mm256_cvtepu8_epi16(_mm256_extracti128_si256::<1>(px));
                let w = weights.add((b * groups + g) * 32);
                lo = _mm256_add_epi32(lo, _mm256_madd_epi16(px_lo, _mm256_loadu_si256(w as *const __m256i)));
                hi = _mm256_add_epi32(hi, _mm256_madd_epi16(px_hi, _mm256_loadu_si256(w.add(16) as *const __m256i)));
            }
            store_taps8(lo, hi, out.add(b * 8));
        }
    }
}

const HALF: i32 = 1 << 13;

/// Ends a block of 8 outputs of the 14-bit kernels: `lo` and `hi` hold
/// each output's pair sums (outputs 0-3 and 4-7, two i32 per output);
/// adds them, rounds off the 14 fraction bits and stores 8 bytes at `out`.
///
/// # Safety
/// AVX2 must be available; `out` writable for 8 bytes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_taps8(lo: __m256i, hi: __m256i, out: *mut u8) {
    // hadd leaves outputs as [0 1 4 5 | 2 3 6 7]; this puts them in order.
    let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    let sums = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo, hi), order);
    let shifted = _mm256_srli_epi32::<14>(_mm256_add_epi32(sums, _mm256_set1_epi32(HALF)));
    let words = _mm_packus_epi32(_mm256_castsi256_si128(shifted), _mm256_extracti128_si256::<1>(shifted));
    let bytes = _mm_packus_epi16(words, words);
    // SAFETY: 8 writable bytes at `out`.
    unsafe { _mm_storel_epi64(out as *mut __m128i, bytes) };
}
