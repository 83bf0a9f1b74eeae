//! x86_64 AVX2 kernels. All `unsafe` of the scaler lives here.
//!
//! Each public function is safe: it checks the slice lengths it relies on,
//! then calls a `#[target_feature(enable = "avx2")]` kernel only after
//! [`has_avx2`] has confirmed the CPU supports it. Kernels process whole
//! blocks and return how many output samples they wrote; the caller's
//! scalar code does the rest of the row, computing the same integers.

use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Whether this CPU runs AVX2 (checked once).
pub(super) fn has_avx2() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2"))
}

/// 2x2 box over two source rows; returns outputs written (a multiple of 32).
pub(super) fn down2_row(r0: &[u8], r1: &[u8], out: &mut [u8]) -> usize {
    let n = out.len() / 32 * 32;
    if n == 0 || r0.len() < 2 * n || r1.len() < 2 * n || !has_avx2() {
        return 0;
    }
    // SAFETY: AVX2 is present (checked above); the kernel reads
    // `r0[..2n]`, `r1[..2n]` and writes `out[..n]`, all in bounds (checked).
    unsafe { down2_avx2(r0.as_ptr(), r1.as_ptr(), out.as_mut_ptr(), n) };
    n
}

/// # Safety
/// AVX2 must be available; `r0` and `r1` must be valid for `2 * n` reads,
/// `out` for `n` writes, and `n` must be a multiple of 32.
#[target_feature(enable = "avx2")]
unsafe fn down2_avx2(r0: *const u8, r1: *const u8, out: *mut u8, n: usize) {
    let ones = _mm256_set1_epi8(1);
    let two = _mm256_set1_epi16(2);
    let mut i = 0;
    while i < n {
        // SAFETY (whole block): offsets stay below 2n for reads, n for writes.
        unsafe {
            let a0 = _mm256_loadu_si256(r0.add(2 * i) as *const __m256i);
            let a1 = _mm256_loadu_si256(r0.add(2 * i + 32) as *const __m256i);
            let b0 = _mm256_loadu_si256(r1.add(2 * i) as *const __m256i);
            let b1 = _mm256_loadu_si256(r1.add(2 * i + 32) as *const __m256i);
            // Horizontal pair sums as u16, then add the row below.
            let s0 = _mm256_add_epi16(_mm256_maddubs_epi16(a0, ones), _mm256_maddubs_epi16(b0, ones));
            let s1 = _mm256_add_epi16(_mm256_maddubs_epi16(a1, ones), _mm256_maddubs_epi16(b1, ones));
            let s0 = _mm256_srli_epi16(_mm256_add_epi16(s0, two), 2);
            let s1 = _mm256_srli_epi16(_mm256_add_epi16(s1, two), 2);
            // packus interleaves 128-bit lanes; put the 64-bit quarters back in order.
            let packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(s0, s1), 0b11_01_10_00);
            _mm256_storeu_si256(out.add(i) as *mut __m256i, packed);
        }
        i += 32;
    }
}

/// 4x4 box over four source rows; returns outputs written (a multiple of 16).
pub(super) fn down4_row(rows: [&[u8]; 4], out: &mut [u8]) -> usize {
    let n = out.len() / 16 * 16;
    if n == 0 || rows.iter().any(|r| r.len() < 4 * n) || !has_avx2() {
        return 0;
    }
    let ptrs = rows.map(|r| r.as_ptr());
    // SAFETY: AVX2 is present; each row is valid for `4n` reads and `out`
    // for `n` writes (checked above).
    unsafe { down4_avx2(ptrs, out.as_mut_ptr(), n) };
    n
}

/// # Safety
/// AVX2 must be available; every row pointer must be valid for `4 * n`
/// reads, `out` for `n` writes, and `n` must be a multiple of 16.
#[target_feature(enable = "avx2")]
unsafe fn down4_avx2(rows: [*const u8; 4], out: *mut u8, n: usize) {
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    let eight = _mm256_set1_epi32(8);
    let mut i = 0;
    while i < n {
        // SAFETY (whole block): reads stay below 4n per row, writes below n.
        unsafe {
            let mut s0 = _mm256_setzero_si256();
            let mut s1 = _mm256_setzero_si256();
            for r in rows {
                let a0 = _mm256_loadu_si256(r.add(4 * i) as *const __m256i);
                let a1 = _mm256_loadu_si256(r.add(4 * i + 32) as *const __m256i);
                s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(a0, ones8));
                s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(a1, ones8));
            }
            // Pairs of pair-sums: 16-sample block sums as i32.
            let t0 = _mm256_srli_epi32(_mm256_add_epi32(_mm256_madd_epi16(s0, ones16), eight), 4);
            let t1 = _mm256_srli_epi32(_mm256_add_epi32(_mm256_madd_epi16(s1, ones16), eight), 4);
            let words = _mm256_permute4x64_epi64(_mm256_packs_epi32(t0, t1), 0b11_01_10_00);
            let bytes = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
            _mm_storeu_si128(out.add(i) as *mut __m128i, bytes);
        }
        i += 16;
    }
}

/// The area scaler's vertical pass over whole blocks of 32 samples:
/// `sum_k mulhi(rows[k][x] << 8, fractions[k])`, rounded, 16 lanes at a
/// time. Returns how many samples it wrote.
pub(super) fn vertical_avx2(rows: &[&[u8]], fractions: &[u16], out: &mut [u8]) -> usize {
    let n = out.len();
    if n < 32 || !has_avx2() || rows.len() != fractions.len() || rows.iter().any(|r| r.len() < n) {
        return 0;
    }
    let out = out.as_mut_ptr();
    // SAFETY (all arms): AVX2 is present; every row holds at least `n`
    // samples and `out` at least `n` (checked above).
    unsafe {
        match rows.len() {
            2 => vertical_fixed::<2>(rows, fractions, out, n),
            3 => vertical_fixed::<3>(rows, fractions, out, n),
            4 => vertical_fixed::<4>(rows, fractions, out, n),
            5 => vertical_fixed::<5>(rows, fractions, out, n),
            6 => vertical_fixed::<6>(rows, fractions, out, n),
            7 => vertical_fixed::<7>(rows, fractions, out, n),
            8 => vertical_fixed::<8>(rows, fractions, out, n),
            9 => vertical_fixed::<9>(rows, fractions, out, n),
            _ => vertical_any(rows, fractions, out, n),
        }
    }
    n
}

/// # Safety
/// As `vertical_any`, with exactly `T` rows and fractions.
///
/// Like it, the last block may overlap the one before (recomputing the same
/// values), so any `n >= 32` is done whole.
#[target_feature(enable = "avx2")]
unsafe fn vertical_fixed<const T: usize>(rows: &[&[u8]], fractions: &[u16], out: *mut u8, n: usize) {
    let zero = _mm256_setzero_si256();
    let round = _mm256_set1_epi16(128);
    let ptrs: [*const u8; T] = std::array::from_fn(|k| rows[k].as_ptr());
    let weights: [__m256i; T] = std::array::from_fn(|k| _mm256_set1_epi16(fractions[k] as i16));
    let mut x = 0;
    while x < n {
        let mut lo = round;
        let mut hi = round;
        for k in 0..T {
            // SAFETY: x + 32 <= n <= row length.
            let v = unsafe { _mm256_loadu_si256(ptrs[k].add(x) as *const __m256i) };
            // Interleaving zero below each byte is the sample << 8 as u16.
            lo = _mm256_add_epi16(lo, _mm256_mulhi_epu16(_mm256_unpacklo_epi8(zero, v), weights[k]));
            hi = _mm256_add_epi16(hi, _mm256_mulhi_epu16(_mm256_unpackhi_epi8(zero, v), weights[k]));
        }
        // packus undoes the unpack's lane order.
        let bytes = _mm256_packus_epi16(_mm256_srli_epi16::<8>(lo), _mm256_srli_epi16::<8>(hi));
        // SAFETY: x + 32 <= n, writable.
        unsafe { _mm256_storeu_si256(out.add(x) as *mut __m256i, bytes) };
        x = if x + 32 < n && x + 64 > n { n - 32 } else { x + 32 };
    }
}

/// # Safety
/// AVX2 must be available; every row must hold `n >= 32` samples, `out`
/// must be writable for `n` bytes.
#[target_feature(enable = "avx2")]
unsafe fn vertical_any(rows: &[&[u8]], fractions: &[u16], out: *mut u8, n: usize) {
    let zero = _mm256_setzero_si256();
    let round = _mm256_set1_epi16(128);
    let mut x = 0;
    while x < n {
        let mut lo = round;
        let mut hi = round;
        for (row, &w) in rows.iter().zip(fractions) {
            let w = _mm256_set1_epi16(w as i16);
            // SAFETY: x + 32 <= n <= row.len().
            let v = unsafe { _mm256_loadu_si256(row.as_ptr().add(x) as *const __m256i) };
            lo = _mm256_add_epi16(lo, _mm256_mulhi_epu16(_mm256_unpacklo_epi8(zero, v), w));
            hi = _mm256_add_epi16(hi, _mm256_mulhi_epu16(_mm256_unpackhi_epi8(zero, v), w));
        }
        let bytes = _mm256_packus_epi16(_mm256_srli_epi16::<8>(lo), _mm256_srli_epi16::<8>(hi));
        // SAFETY: x + 32 <= n, writable.
        unsafe { _mm256_storeu_si256(out.add(x) as *mut __m256i, bytes) };
        x = if x + 32 < n && x + 64 > n { n - 32 } else { x + 32 };
    }
}

/// `out[x] = (far[x] + 3 near[x] + 2) / 4` in blocks of 32; returns how
/// many samples it wrote (the rest are the caller's).
pub(super) fn quarter_row(far: &[u8], near: &[u8], out: &mut [u8]) -> usize {
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

/// The exact 2x bilinear horizontal pass, for inputs `i` from 1 in blocks
/// of 16 inputs (32 outputs), writing `out[2..]`:
/// `out[2i] = (row[i-1] + 3 row[i] + 2) / 4` and
/// `out[2i+1] = (3 row[i] + row[i+1] + 2) / 4`.
/// `row` is the source row (its exact width). Returns how many outputs it
/// wrote (a multiple of 32); the first two and the rest are the caller's.
pub(super) fn up2_row(row: &[u8], out: &mut [u8]) -> usize {
    let n = row.len();
    // Block b reads row[16b .. 16b + 18): the last must stay inside.
    if n < 18 || !has_avx2() {
        return 0;
    }
    let blocks = ((n - 18) / 16 + 1).min(out.len().saturating_sub(2) / 32);
    if blocks == 0 {
        return 0;
    }
    // SAFETY: AVX2 is present; block b < blocks reads 16 bytes at 16b,
    // 16b + 1 and 16b + 2, the last ending at 16b + 18 <= n (from the
    // block count), and writes 32 bytes at 2 + 32b, ending at
    // 2 + 32 * blocks <= out.len().
    unsafe { up2_avx2(row.as_ptr(), out.as_mut_ptr(), blocks) };
    blocks * 32
}

/// # Safety
/// AVX2 must be available; `row` must be readable for `16 * blocks + 2`
/// bytes and `out` writable for `2 + 32 * blocks`.
#[target_feature(enable = "avx2")]
unsafe fn up2_avx2(row: *const u8, out: *mut u8, blocks: usize) {
    let two = _mm256_set1_epi16(2);
    for b in 0..blocks {
        // SAFETY (whole block): within the bounds the caller guarantees.
        unsafe {
            let at = row.add(16 * b);
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
            _mm256_storeu_si256(out.add(2 + 32 * b) as *mut __m256i, _mm256_packus_epi16(lo, hi));
        }
    }
}

/// The area scaler's horizontal pass over whole blocks of 8 outputs;
/// returns how many outputs it wrote (a multiple of 8).
pub(super) fn horizontal_avx2(row: &[u8], taps: &super::separable::Taps, out: &mut [u8]) -> usize {
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
                &taps.starts,
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
    let half = _mm256_set1_epi32(HALF);
    // hadd leaves outputs as [0 1 4 5 | 2 3 6 7]; this puts them in order.
    let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
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
            let sums = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo, hi), order);
            let shifted = _mm256_srli_epi32::<14>(_mm256_add_epi32(sums, half));
            let words = _mm_packus_epi32(_mm256_castsi256_si128(shifted), _mm256_extracti128_si256::<1>(shifted));
            let bytes = _mm_packus_epi16(words, words);
            _mm_storel_epi64(out.add(b * 8) as *mut __m128i, bytes);
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
    let half = _mm256_set1_epi32(HALF);
    let order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
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
            let sums = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(lo, hi), order);
            let shifted = _mm256_srli_epi32::<14>(_mm256_add_epi32(sums, half));
            let words = _mm_packus_epi32(_mm256_castsi256_si128(shifted), _mm256_extracti128_si256::<1>(shifted));
            let bytes = _mm_packus_epi16(words, words);
            _mm_storel_epi64(out.add(b * 8) as *mut __m128i, bytes);
        }
    }
}

const HALF: i32 = 1 << 13;
