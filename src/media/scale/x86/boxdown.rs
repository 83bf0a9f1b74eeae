//! The exact n:1 box kernels (2, 3, 4, 6, 8) over whole planes.

use super::{destination_rows, has_avx2, mulhi_epu16, prefetch, source_rows, Rows, PREFETCH_ROWS};
use crate::media::frame::{PlaneMut, PlaneRef};
use std::arch::x86_64::*;

/// The exact `N`:1 box of `src` into all of `dst` by the kernel for `N`.
/// Returns how many samples of each row it wrote: all, or none (no kernel
/// for `N`, a row narrower than one block, a source too small, no AVX2).
pub(in crate::media::scale) fn box_plane<const N: usize>(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) -> usize {
    match N {
        2 => down2_plane(src, dst),
        3 => down3_plane(src, dst),
        4 => down4_plane(src, dst),
        6 => down6_plane(src, dst),
        8 => down8_plane(src, dst),
        _ => 0,
    }
}

/// 2x2 box of `src` into all of `dst`: each output is `(a + b + c + d + 2) / 4`
/// over its 2x2 block. Returns how many samples of each row it wrote: all of
/// them, or none (a row narrower than one block of 32, a source smaller than
/// twice the destination, or no AVX2).
fn down2_plane(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) -> usize {
    let (w, h) = (dst.width(), dst.height());
    if w < 32 || h == 0 || !has_avx2() {
        return 0;
    }
    let (Some(s), Some(d)) = (source_rows(src, 2 * w, 2 * h), destination_rows(dst, w, h)) else {
        return 0;
    };
    // SAFETY: AVX2 is present; the source has 2h rows of 2w readable samples
    // and the destination h rows of w writable ones (checked above), and
    // `w >= 32`: exactly what `down2_avx2` needs.
    unsafe { down2_avx2(s, d, w, h) };
    w
}

/// # Safety
/// AVX2 must be available; `src` must have `2 * h` rows of `2 * w` readable
/// samples, `dst` `h` rows of `w` writable ones, and `w >= 32`.
#[target_feature(enable = "avx2")]
unsafe fn down2_avx2(src: Rows<*const u8>, dst: Rows<*mut u8>, w: usize, h: usize) {
    for y in 0..h {
        // SAFETY (whole row): rows 2y and 2y + 1 of the source and y of the
        // destination exist; blocks start at most at w - 32, so reads stay
        // below 2w and writes below w.
        unsafe {
            let r0 = src.ptr.add(2 * y * src.stride);
            let r1 = r0.add(src.stride);
            let out = dst.ptr.add(y * dst.stride);
            let ahead = PREFETCH_ROWS.min(h - 1 - y) * 2 * src.stride;
            let mut x = 0;
            while x + 32 <= w {
                prefetch(r0, ahead + 2 * x);
                prefetch(r1, ahead + 2 * x);
                down2_block(r0, r1, out.add(x), x);
                x += 32;
            }
            if x < w {
                down2_block(r0, r1, out.add(w - 32), w - 32);
            }
        }
    }
}

/// Outputs `x .. x + 32` of one row of the 2x2 box, written at `out`.
///
/// # Safety
/// AVX2 must be available; `r0` and `r1` must be readable for `2x + 64`
/// bytes, `out` writable for 32.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn down2_block(r0: *const u8, r1: *const u8, out: *mut u8, x: usize) {
    let ones = _mm256_set1_epi8(1);
    let two = _mm256_set1_epi16(2);
    // SAFETY: within the bounds the caller guarantees.
    unsafe {
        let a0 = _mm256_loadu_si256(r0.add(2 * x) as *const __m256i);
        let a1 = _mm256_loadu_si256(r0.add(2 * x + 32) as *const __m256i);
        let b0 = _mm256_loadu_si256(r1.add(2 * x) as *const __m256i);
        let b1 = _mm256_loadu_si256(r1.add(2 * x + 32) as *const __m256i);
        // Horizontal pair sums as u16, then add the row below.
        let s0 = _mm256_add_epi16(_mm256_maddubs_epi16(a0, ones), _mm256_maddubs_epi16(b0, ones));
        let s1 = _mm256_add_epi16(_mm256_maddubs_epi16(a1, ones), _mm256_maddubs_epi16(b1, ones));
        let s0 = _mm256_srli_epi16(_mm256_add_epi16(s0, two), 2);
        let s1 = _mm256_srli_epi16(_mm256_add_epi16(s1, two), 2);
        // packus interleaves 128-bit lanes; put the 64-bit quarters back in order.
        let packed = _mm256_permute4x64_epi64(_mm256_packus_epi16(s0, s1), 0b11_01_10_00);
        _mm256_storeu_si256(out as *mut __m256i, packed);
    }
}

/// 4x4 box of `src` into all of `dst`: each output is `(sum + 8) / 16` over
/// its 4x4 block. Returns how many samples of each row it wrote: all, or
/// none (a row narrower than one block of 16, a source too small, no AVX2).
fn down4_plane(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) -> usize {
    let (w, h) = (dst.width(), dst.height());
    if w < 16 || h == 0 || !has_avx2() {
        return 0;
    }
    let (Some(s), Some(d)) = (source_rows(src, 4 * w, 4 * h), destination_rows(dst, w, h)) else {
        return 0;
    };
    // SAFETY: AVX2 is present; the source has 4h rows of 4w readable samples
    // and the destination h rows of w writable ones (checked above), `w >= 16`.
    unsafe { down4_avx2(s, d, w, h) };
    w
}

/// # Safety
/// AVX2 must be available; `src` must have `4 * h` rows of `4 * w` readable
/// samples, `dst` `h` rows of `w` writable ones, and `w >= 16`.
#[target_feature(enable = "avx2")]
unsafe fn down4_avx2(src: Rows<*const u8>, dst: Rows<*mut u8>, w: usize, h: usize) {
    for y in 0..h {
        // SAFETY (whole row): rows 4y .. 4y + 4 of the source and y of the
        // destination exist; a block of N outputs starts at most at w - N,
        // so reads stay below 4w and writes below w.
        unsafe {
            let r0 = src.ptr.add(4 * y * src.stride);
            let rows = [r0, r0.add(src.stride), r0.add(2 * src.stride), r0.add(3 * src.stride)];
            let out = dst.ptr.add(y * dst.stride);
            let ahead = PREFETCH_ROWS.min(h - 1 - y) * 4 * src.stride;
            let mut x = 0;
            while x + 32 <= w {
                for r in rows {
                    prefetch(r, ahead + 4 * x);
                    prefetch(r, ahead + 4 * x + 64);
                }
                down4_block::<4>(rows, out.add(x), x);
                x += 32;
            }
            // The end in blocks of 16 (the last overlapping the one before).
            if x + 16 <= w {
                down4_block::<2>(rows, out.add(x), x);
                x += 16;
            }
            if x < w {
                down4_block::<2>(rows, out.add(w - 16), w - 16);
            }
        }
    }
}

/// Outputs `x .. x + 8 C` (`C` = 2 or 4 columns of 32 source bytes) of one
/// row of the 4x4 box, written at `out`.
///
/// # Safety
/// AVX2 must be available; every row must be readable for `4x + 32 C`
/// bytes, `out` writable for `8 C`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn down4_block<const C: usize>(rows: [*const u8; 4], out: *mut u8, x: usize) {
    let ones = _mm256_set1_epi8(1);
    let eight = _mm256_set1_epi16(8);
    // C 32-byte columns: their pair sums (u16), summed over the rows.
    let mut sums = [_mm256_setzero_si256(); C];
    for r in rows {
        for (c, sum) in sums.iter_mut().enumerate() {
            // SAFETY: 4x + 32c + 32 <= 4x + 32 C, readable.
            let v = unsafe { _mm256_loadu_si256(r.add(4 * x + 32 * c) as *const __m256i) };
            *sum = _mm256_add_epi16(*sum, _mm256_maddubs_epi16(v, ones));
        }
    }
    // hadd adds neighbouring pair sums: 4x4 sums, per 128-bit lane
    // [column c outputs (4), column c + 1 outputs (4)], so lane 0 holds
    // outputs 0-3, 8-11 and lane 1 outputs 4-7, 12-15 (16-31 likewise).
    let quads = |c: usize| _mm256_srli_epi16::<4>(_mm256_add_epi16(_mm256_hadd_epi16(sums[c], sums[c + 1]), eight));
    let q01 = quads(0);
    let q23 = if C == 4 { quads(2) } else { q01 };
    // SAFETY: 8 C writable bytes at `out`.
    unsafe { store_in_order(q01, q23, out, C == 4) };
}

/// Packs two vectors of 16-bit outputs to bytes and stores them at `out`,
/// all 32 when `wide`, else the first 16. Packed, their 4-output dwords
/// run [0, 2, 4, 6 | 1, 3, 5, 7]; they are put in order first.
///
/// # Safety
/// AVX2 must be available; `out` writable for 32 bytes when `wide`, else 16.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store_in_order(lo: __m256i, hi: __m256i, out: *mut u8, wide: bool) {
    let bytes = _mm256_packus_epi16(lo, hi);
    let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: the caller's bounds.
    unsafe {
        if wide {
            _mm256_storeu_si256(out as *mut __m256i, ordered);
        } else {
            _mm_storeu_si128(out as *mut __m128i, _mm256_castsi256_si128(ordered));
        }
    }
}

/// Exact 3:1 box of `src` into all of `dst`: each output is
/// `(sum + 4) / 9` over its 3x3 block (the exact area average, rounded).
/// Returns how many samples of each row it wrote: all, or none (a row
/// narrower than one block of 16, a source too small, no AVX2).
fn down3_plane(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) -> usize {
    let (w, h) = (dst.width(), dst.height());
    if w < 16 || h == 0 || !has_avx2() {
        return 0;
    }
    // Blocks away from the row's ends read 4 bytes either side of their
    // 3x3 blocks: the whole source row is readable, not only 3w.
    let span = src.width();
    let (Some(s), Some(d)) = (source_rows(src, span.max(3 * w), 3 * h), destination_rows(dst, w, h)) else {
        return 0;
    };
    // SAFETY: AVX2 is present; the source has 3h rows of `span >= 3w`
    // readable samples and the destination h rows of w writable ones
    // (checked above), `w >= 16`.
    unsafe { down3_avx2(s, span, d, w, h) };
    w
}

/// Shuffle for 4 outputs whose 3x3 blocks start at byte 0 of a 16-byte
/// lane: each output's three samples then a zero, `[a b c 0]`.
const THIRDS_AT_0: [i8; 16] = [0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1];
/// The same for blocks starting at byte 4 of the lane.
const THIRDS_AT_4: [i8; 16] = [4, 5, 6, -1, 7, 8, 9, -1, 10, 11, 12, -1, 13, 14, 15, -1];

/// # Safety
/// AVX2 must be available; `src` must have `3 * h` rows of `span >= 3 * w`
/// readable samples, `dst` `h` rows of `w` writable ones, and `w >= 16`.
#[target_feature(enable = "avx2")]
unsafe fn down3_avx2(src: Rows<*const u8>, span: usize, dst: Rows<*mut u8>, w: usize, h: usize) {
    let lanes = |lo: [i8; 16], hi: [i8; 16]| {
        let mut m = [0i8; 32];
        m[..16].copy_from_slice(&lo);
        m[16..].copy_from_slice(&hi);
        // SAFETY: reads 32 bytes of a 32-byte array.
        unsafe { _mm256_loadu_si256(m.as_ptr() as *const __m256i) }
    };
    // One 32-byte load 4 bytes before a block of 8 outputs has the first
    // four outputs' samples at byte 4 of lane 0 and the next four's at byte
    // 0 of lane 1. Two 16-byte loads, at the block and 8 bytes further, have
    // them at bytes 0 and 4 instead, and read nothing outside the block.
    let inner = lanes(THIRDS_AT_4, THIRDS_AT_0);
    let edge = lanes(THIRDS_AT_0, THIRDS_AT_4);
    for y in 0..h {
        // SAFETY (whole row): rows 3y .. 3y + 3 of the source and y of the
        // destination exist. A block of N outputs at x reads [3x, 3x + 3N)
        // at the edges, x <= w - N; inner blocks read [3x - 4, 3x + 3N + 4),
        // only when 3x >= 4 and 3x + 3N + 4 <= span.
        unsafe {
            let r0 = src.ptr.add(3 * y * src.stride);
            let rows = [r0, r0.add(src.stride), r0.add(2 * src.stride)];
            let out = dst.ptr.add(y * dst.stride);
            if w < 32 {
                down3_block::<false, 2>(rows, edge, out, 0);
                down3_block::<false, 2>(rows, edge, out.add(w - 16), w - 16);
                continue;
            }
            let ahead = PREFETCH_ROWS.min(h - 1 - y) * 3 * src.stride;
            down3_block::<false, 4>(rows, edge, out, 0);
            let mut x = 32;
            while x + 32 <= w && 3 * x + 100 <= span {
                for r in rows {
                    prefetch(r, ahead + 3 * x);
                    prefetch(r, ahead + 3 * x + 64);
                }
                down3_block::<true, 4>(rows, inner, out.add(x), x);
                x += 32;
            }
            while x + 32 <= w {
                down3_block::<false, 4>(rows, edge, out.add(x), x);
                x += 32;
            }
            if x < w {
                down3_block::<false, 4>(rows, edge, out.add(w - 32), w - 32);
            }
        }
    }
}

/// Outputs `x .. x + 8 B` (`B` = 2 or 4) of one row of the exact 3:1 box,
/// written at `out`: per row and block of 8, the outputs' samples shuffled
/// to `[a b c 0]`, whose pair sums (`a + b`, `c`) are added over the three
/// rows, then over the pair, then divided by 9.
///
/// # Safety
/// AVX2 must be available; `out` writable for `8 B` bytes; every row
/// readable at `[3x - 4, 3x + 24 B + 4)` when `INNER`, else at
/// `[3x, 3x + 24 B)`; `mask` is `inner` or `edge` of [`down3_avx2`] to match.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn down3_block<const INNER: bool, const B: usize>(rows: [*const u8; 3], mask: __m256i, out: *mut u8, x: usize) {
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    // (s + 4) * 7282 >> 16 == (s + 4) / 9 for every s <= 2295 (9 * 255).
    let ninth = _mm256_set1_epi16(7282);
    let four = _mm256_set1_epi16(4);
    let mut sums = [_mm256_setzero_si256(); B];
    for (block, sum) in sums.iter_mut().enumerate() {
        let p = 3 * x + 24 * block;
        for r in rows {
            // SAFETY: the reads the caller guarantees for this block.
            let v = unsafe {
                if INNER {
                    _mm256_loadu_si256(r.add(p - 4) as *const __m256i)
                } else {
                    let lo = _mm_loadu_si128(r.add(p) as *const __m128i);
                    let hi = _mm_loadu_si128(r.add(p + 8) as *const __m128i);
                    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
                }
            };
            *sum = _mm256_add_epi16(*sum, _mm256_maddubs_epi16(_mm256_shuffle_epi8(v, mask), ones8));
        }
    }
    // Per output a + b + c as i32, blocks [0-3 | 4-7], [8-11 | 12-15], ...;
    // packed in pairs of blocks to words [0-3, 8-11 | 4-7, 12-15], then / 9.
    let ninths = |a: __m256i, b: __m256i| {
        let words = _mm256_packs_epi32(_mm256_madd_epi16(a, ones16), _mm256_madd_epi16(b, ones16));
        _mm256_mulhi_epu16(_mm256_add_epi16(words, four), ninth)
    };
    let q01 = ninths(sums[0], sums[1]);
    let q23 = if B == 4 { ninths(sums[2], sums[3]) } else { q01 };
    // SAFETY: 8 B writable bytes at `out`.
    unsafe { store_in_order(q01, q23, out, B == 4) };
}

/// Exact 6:1 box of `src` into all of `dst`: each output is
/// `(sum + 18) / 36` over its 6x6 block. Returns how many samples of each
/// row it wrote: all, or none (a row narrower than one block of 32, a
/// source too small, no AVX2).
fn down6_plane(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) -> usize {
    let (w, h) = (dst.width(), dst.height());
    if w < 32 || h == 0 || !has_avx2() {
        return 0;
    }
    // As `down3_plane`: inner blocks read 4 bytes either side.
    let span = src.width();
    let (Some(s), Some(d)) = (source_rows(src, span.max(6 * w), 6 * h), destination_rows(dst, w, h)) else {
        return 0;
    };
    // SAFETY: AVX2 is present; the source has 6h rows of `span >= 6w`
    // readable samples and the destination h rows of w writable ones
    // (checked above), `w >= 32`.
    unsafe { down6_avx2(s, span, d, w, h) };
    w
}

/// Shuffle for 2 outputs whose 6x6 blocks start at byte 0 of a 16-byte
/// lane: each output's six samples then two zeros.
const SIXTHS_AT_0: [i8; 16] = [0, 1, 2, 3, 4, 5, -1, -1, 6, 7, 8, 9, 10, 11, -1, -1];
/// The same for blocks starting at byte 4 of the lane.
const SIXTHS_AT_4: [i8; 16] = [4, 5, 6, 7, 8, 9, -1, -1, 10, 11, 12, 13, 14, 15, -1, -1];

/// # Safety
/// AVX2 must be available; `src` must have `6 * h` rows of `span >= 6 * w`
/// readable samples, `dst` `h` rows of `w` writable ones, and `w >= 32`.
#[target_feature(enable = "avx2")]
unsafe fn down6_avx2(src: Rows<*const u8>, span: usize, dst: Rows<*mut u8>, w: usize, h: usize) {
    let lanes = |lo: [i8; 16], hi: [i8; 16]| {
        let mut m = [0i8; 32];
        m[..16].copy_from_slice(&lo);
        m[16..].copy_from_slice(&hi);
        // SAFETY: reads 32 bytes of a 32-byte array.
        unsafe { _mm256_loadu_si256(m.as_ptr() as *const __m256i) }
    };
    // As in `down3_avx2`: one 32-byte load 4 bytes before 4 outputs has
    // their samples at byte 4 of lane 0 (outputs 0, 1) and 0 of lane 1
    // (2, 3); two 16-byte loads, at the outputs and 8 bytes further, at 0
    // and 4, reading nothing outside.
    let inner = lanes(SIXTHS_AT_4, SIXTHS_AT_0);
    let edge = lanes(SIXTHS_AT_0, SIXTHS_AT_4);
    for y in 0..h {
        // SAFETY (whole row): rows 6y .. 6y + 6 of the source and y of the
        // destination exist. A block of 32 outputs at x reads [6x, 6x + 192)
        // at the edges, x <= w - 32; inner blocks [6x - 4, 6x + 196), only
        // when 6x >= 4 and 6x + 196 <= span.
        unsafe {
            let r0 = src.ptr.add(6 * y * src.stride);
            let rows: [*const u8; 6] = std::array::from_fn(|k| r0.add(k * src.stride));
            let out = dst.ptr.add(y * dst.stride);
            let ahead = PREFETCH_ROWS.min(h - 1 - y) * 6 * src.stride;
            down6_block::<false>(rows, edge, out, 0);
            let mut x = 32;
            while x + 32 <= w && 6 * x + 196 <= span {
                for r in rows {
                    (0..3).for_each(|line| prefetch(r, ahead + 6 * x + 64 * line));
                }
                down6_block::<true>(rows, inner, out.add(x), x);
                x += 32;
            }
            while x + 32 <= w {
                down6_block::<false>(rows, edge, out.add(x), x);
                x += 32;
            }
            if x < w {
                down6_block::<false>(rows, edge, out.add(w - 32), w - 32);
            }
        }
    }
}

/// Outputs `x .. x + 32` of one row of the exact 6:1 box, written at `out`:
/// per row and 4 outputs, the samples shuffled to `[a b c d e f 0 0]`,
/// whose pair sums are added over the six rows, then over each output;
/// then `(sum + 18) / 36`, as `((sum + 18) >> 2) / 9` (flooring twice is
/// flooring once) with the 3:1 box's exact divide by 9.
///
/// # Safety
/// AVX2 must be available; `out` writable for 32 bytes; every row readable
/// at `[6x - 4, 6x + 196)` when `INNER`, else at `[6x, 6x + 192)`; `mask` is
/// `inner` or `edge` of [`down6_avx2`] to match.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn down6_block<const INNER: bool>(rows: [*const u8; 6], mask: __m256i, out: *mut u8, x: usize) {
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    let ninth = _mm256_set1_epi16(7282);
    let half = _mm256_set1_epi16(18);
    let mut sums = [_mm256_setzero_si256(); 8];
    for (quad, sum) in sums.iter_mut().enumerate() {
        let p = 6 * x + 24 * quad;
        for r in rows {
            // SAFETY: the reads the caller guarantees for this block.
            let v = unsafe {
                if INNER {
                    _mm256_loadu_si256(r.add(p - 4) as *const __m256i)
                } else {
                    let lo = _mm_loadu_si128(r.add(p) as *const __m128i);
                    let hi = _mm_loadu_si128(r.add(p + 8) as *const __m128i);
                    _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi)
                }
            };
            *sum = _mm256_add_epi16(*sum, _mm256_maddubs_epi16(_mm256_shuffle_epi8(v, mask), ones8));
        }
    }
    // Per output two i32 halves, lanes [0, 1 | 2, 3]; adding neighbours
    // across two quads gives [0, 1, 4, 5 | 2, 3, 6, 7], and packing two of
    // those words [0 1 4 5 8 9 12 13 | 2 3 6 7 10 11 14 15].
    let eighth = |a: usize| {
        let h = |q: usize| _mm256_madd_epi16(sums[q], ones16);
        let s0 = _mm256_hadd_epi32(h(a), h(a + 1));
        let s1 = _mm256_hadd_epi32(h(a + 2), h(a + 3));
        let words = _mm256_srli_epi16::<2>(_mm256_add_epi16(_mm256_packs_epi32(s0, s1), half));
        // Word pairs [0, 4, 1, 5 ...] of the 8 dwords: outputs in order.
        let q = mulhi_epu16(words, ninth);
        _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    };
    let (first, second) = (eighth(0), eighth(4));
    // packus interleaves 128-bit lanes; put the 64-bit quarters back in order.
    let bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(first, second), 0b11_01_10_00);
    // SAFETY: 32 writable bytes at `out`.
    unsafe { _mm256_storeu_si256(out as *mut __m256i, bytes) };
}

/// Exact 8:1 box of `src` into all of `dst`: each output is
/// `(sum + 32) / 64` over its 8x8 block. Returns how many samples of each
/// row it wrote: all, or none (a row narrower than one block of 32, a
/// source too small, no AVX2).
fn down8_plane(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) -> usize {
    let (w, h) = (dst.width(), dst.height());
    if w < 32 || h == 0 || !has_avx2() {
        return 0;
    }
    let (Some(s), Some(d)) = (source_rows(src, 8 * w, 8 * h), destination_rows(dst, w, h)) else {
        return 0;
    };
    // SAFETY: AVX2 is present; the source has 8h rows of 8w readable samples
    // and the destination h rows of w writable ones (checked above), `w >= 32`.
    unsafe { down8_avx2(s, d, w, h) };
    w
}

/// # Safety
/// AVX2 must be available; `src` must have `8 * h` rows of `8 * w` readable
/// samples, `dst` `h` rows of `w` writable ones, and `w >= 32`.
#[target_feature(enable = "avx2")]
unsafe fn down8_avx2(src: Rows<*const u8>, dst: Rows<*mut u8>, w: usize, h: usize) {
    for y in 0..h {
        // SAFETY (whole row): rows 8y .. 8y + 8 of the source and y of the
        // destination exist; blocks start at most at w - 32, so reads stay
        // below 8w and writes below w.
        unsafe {
            let r0 = src.ptr.add(8 * y * src.stride);
            let rows: [*const u8; 8] = std::array::from_fn(|k| r0.add(k * src.stride));
            let out = dst.ptr.add(y * dst.stride);
            let ahead = PREFETCH_ROWS.min(h - 1 - y) * 8 * src.stride;
            let mut x = 0;
            while x + 32 <= w {
                for r in rows {
                    (0..4).for_each(|line| prefetch(r, ahead + 8 * x + 64 * line));
                }
                down8_block(rows, out.add(x), x);
                x += 32;
            }
            if x < w {
                down8_block(rows, out.add(w - 32), w - 32);
            }
        }
    }
}

/// Outputs `x .. x + 32` of one row of the exact 8:1 box, written at `out`:
/// pair sums added over the eight rows, then neighbours added twice (8x8
/// sums, at most 16320: still 16-bit), then `(sum + 32) >> 6`.
///
/// # Safety
/// AVX2 must be available; every row must be readable for `8x + 256`
/// bytes, `out` writable for 32.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn down8_block(rows: [*const u8; 8], out: *mut u8, x: usize) {
    let ones = _mm256_set1_epi8(1);
    let round = _mm256_set1_epi16(32);
    // Eight 32-byte columns (4 outputs each): their pair sums over the rows.
    let mut sums = [_mm256_setzero_si256(); 8];
    for r in rows {
        for (c, sum) in sums.iter_mut().enumerate() {
            // SAFETY: 8x + 32c + 32 <= 8x + 256, readable.
            let v = unsafe { _mm256_loadu_si256(r.add(8 * x + 32 * c) as *const __m256i) };
            *sum = _mm256_add_epi16(*sum, _mm256_maddubs_epi16(v, ones));
        }
    }
    // Two rounds of neighbour sums over four columns: words
    // [0 1 4 5 8 9 12 13 | 2 3 6 7 10 11 14 15] (and 16-31 likewise).
    let sixteen = |c: usize| {
        let quads0 = _mm256_hadd_epi16(sums[c], sums[c + 1]);
        let quads1 = _mm256_hadd_epi16(sums[c + 2], sums[c + 3]);
        let words = _mm256_srli_epi16::<6>(_mm256_add_epi16(_mm256_hadd_epi16(quads0, quads1), round));
        _mm256_permutevar8x32_epi32(words, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    };
    let (first, second) = (sixteen(0), sixteen(4));
    let bytes = _mm256_permute4x64_epi64(_mm256_packus_epi16(first, second), 0b11_01_10_00);
    // SAFETY: 32 writable bytes at `out`.
    unsafe { _mm256_storeu_si256(out as *mut __m256i, bytes) };
}
