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

/// Weighted sum of source rows (14-bit weights summing to 1 << 14), for
/// the area scaler's vertical pass. Compiled for AVX2 so the plain loop
/// below vectorises 8 lanes wide.
pub(super) fn vertical_avx2(rows: &[&[u8]], weights: &[u16], out: &mut [u8]) -> bool {
    if !has_avx2() || rows.len() != weights.len() || rows.iter().any(|r| r.len() < out.len()) {
        return false;
    }
    // SAFETY: AVX2 is present (checked); the function body is safe code.
    unsafe { vertical_avx2_inner(rows, weights, out) };
    true
}

#[target_feature(enable = "avx2")]
fn vertical_avx2_inner(rows: &[&[u8]], weights: &[u16], out: &mut [u8]) {
    super::area::vertical_generic(rows, weights, out);
}
