//! Exact 2:1 and 4:1 box downscales: the common grid cases (a 720p input
//! into a 2x2 or 4x4 grid of a 720p canvas) and the bandwidth-bound ones.
//!
//! Each output sample is the rounded mean of the 2x2 (or 4x4) source block
//! it covers: `(sum + n/2) / n`. The SIMD kernels compute exactly the same
//! integers as the scalar code here, which also finishes each row's tail.

use crate::media::frame::{PlaneMut, PlaneRef};

/// `dst` is `src` halved in both directions (caller checked the sizes).
pub(super) fn down2(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() == 2 * dst.width() && src.height() == 2 * dst.height());
    for y in 0..dst.height() {
        let r0 = src.row(2 * y);
        let r1 = src.row(2 * y + 1);
        let out = dst.row_mut(y);
        let done = simd_down2(r0, r1, out);
        down2_row_scalar(&r0[2 * done..], &r1[2 * done..], &mut out[done..]);
    }
}

/// `dst` is `src` quartered in both directions (caller checked the sizes).
pub(super) fn down4(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() == 4 * dst.width() && src.height() == 4 * dst.height());
    for y in 0..dst.height() {
        let rows = [src.row(4 * y), src.row(4 * y + 1), src.row(4 * y + 2), src.row(4 * y + 3)];
        let out = dst.row_mut(y);
        let done = simd_down4(rows, out);
        let tails = rows.map(|r| &r[4 * done..]);
        down4_row_scalar(tails, &mut out[done..]);
    }
}

pub(super) fn down2_row_scalar(r0: &[u8], r1: &[u8], out: &mut [u8]) {
    for (x, o) in out.iter_mut().enumerate() {
        let sum = r0[2 * x] as u16 + r0[2 * x + 1] as u16 + r1[2 * x] as u16 + r1[2 * x + 1] as u16;
        *o = ((sum + 2) >> 2) as u8;
    }
}

pub(super) fn down4_row_scalar(rows: [&[u8]; 4], out: &mut [u8]) {
    for (x, o) in out.iter_mut().enumerate() {
        let sum: u16 = rows.iter().map(|r| r[4 * x..4 * x + 4].iter().map(|&p| p as u16).sum::<u16>()).sum();
        *o = ((sum + 8) >> 4) as u8;
    }
}

/// Runs the widest kernel this CPU has over the first part of the row;
/// returns how many output samples it wrote.
fn simd_down2(r0: &[u8], r1: &[u8], out: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if super::x86::has_avx2() {
        return super::x86::down2_row(r0, r1, out);
    }
    let _ = (r0, r1, out);
    0
}

fn simd_down4(rows: [&[u8]; 4], out: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if super::x86::has_avx2() {
        return super::x86::down4_row(rows, out);
    }
    let _ = (rows, out);
    0
}
