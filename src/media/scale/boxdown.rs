//! Exact 2:1, 3:1, 4:1, 6:1 and 8:1 box downscales: the common grid cases
//! (720p inputs into a 2x2, 3x3 or 4x4 grid of a 720p or 360p canvas).
//!
//! Each output sample is the rounded mean of the n x n source block it
//! covers, `(sum + n²/2) / n²`: at these ratios that is exactly the area
//! average. The SIMD kernels take whole planes (no per-row calls) and
//! compute exactly the same integers as the scalar code here, which does
//! the planes (or the rows' ends) they leave.

use crate::media::frame::{PlaneMut, PlaneRef};

/// `dst` is `src` halved in both directions (the caller checked the sizes).
pub(super) fn down2(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() >= 2 * dst.width() && src.height() >= 2 * dst.height());
    #[cfg(target_arch = "x86_64")]
    let done = super::x86::down2_plane(src, dst);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    if done == dst.width() {
        return;
    }
    for y in 0..dst.height() {
        let (r0, r1) = (&src.row(2 * y)[2 * done..], &src.row(2 * y + 1)[2 * done..]);
        down2_row_scalar(r0, r1, &mut dst.row_mut(y)[done..]);
    }
}

/// `dst` is `src` divided by three in both directions (the caller checked
/// the sizes).
pub(super) fn down3(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() >= 3 * dst.width() && src.height() >= 3 * dst.height());
    #[cfg(target_arch = "x86_64")]
    let done = super::x86::down3_plane(src, dst);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    if done == dst.width() {
        return;
    }
    for y in 0..dst.height() {
        let rows = [0, 1, 2].map(|k| &src.row(3 * y + k)[3 * done..]);
        down3_row_scalar(rows, &mut dst.row_mut(y)[done..]);
    }
}

/// `dst` is `src` quartered in both directions (the caller checked the sizes).
pub(super) fn down4(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() >= 4 * dst.width() && src.height() >= 4 * dst.height());
    #[cfg(target_arch = "x86_64")]
    let done = super::x86::down4_plane(src, dst);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    if done == dst.width() {
        return;
    }
    for y in 0..dst.height() {
        let rows = [0, 1, 2, 3].map(|k| &src.row(4 * y + k)[4 * done..]);
        down4_row_scalar(rows, &mut dst.row_mut(y)[done..]);
    }
}

/// `dst` is `src` divided by six in both directions (the caller checked
/// the sizes).
pub(super) fn down6(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() >= 6 * dst.width() && src.height() >= 6 * dst.height());
    #[cfg(target_arch = "x86_64")]
    let done = super::x86::down6_plane(src, dst);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    if done == dst.width() {
        return;
    }
    for y in 0..dst.height() {
        let rows: [&[u8]; 6] = std::array::from_fn(|k| &src.row(6 * y + k)[6 * done..]);
        down_n_row_scalar(&rows, &mut dst.row_mut(y)[done..]);
    }
}

/// `dst` is `src` divided by eight in both directions (the caller checked
/// the sizes).
pub(super) fn down8(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() >= 8 * dst.width() && src.height() >= 8 * dst.height());
    #[cfg(target_arch = "x86_64")]
    let done = super::x86::down8_plane(src, dst);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    if done == dst.width() {
        return;
    }
    for y in 0..dst.height() {
        let rows: [&[u8]; 8] = std::array::from_fn(|k| &src.row(8 * y + k)[8 * done..]);
        down_n_row_scalar(&rows, &mut dst.row_mut(y)[done..]);
    }
}

/// `(sum + n²/2) / n²` over each n x n block of `rows` (n = `rows.len()`),
/// which the 6:1 and 8:1 kernels compute exactly.
pub(super) fn down_n_row_scalar(rows: &[&[u8]], out: &mut [u8]) {
    let n = rows.len();
    let area = (n * n) as u32;
    for (x, o) in out.iter_mut().enumerate() {
        let sum: u32 = rows.iter().map(|r| r[n * x..n * x + n].iter().map(|&p| p as u32).sum::<u32>()).sum();
        *o = ((sum + area / 2) / area) as u8;
    }
}

pub(super) fn down2_row_scalar(r0: &[u8], r1: &[u8], out: &mut [u8]) {
    for (x, o) in out.iter_mut().enumerate() {
        let sum = r0[2 * x] as u16 + r0[2 * x + 1] as u16 + r1[2 * x] as u16 + r1[2 * x + 1] as u16;
        *o = ((sum + 2) >> 2) as u8;
    }
}

/// `(sum + 4) / 9` over each 3x3 block (the SIMD kernel divides by
/// multiplying: `(sum + 4) * 7282 >> 16`, equal for every possible sum).
pub(super) fn down3_row_scalar(rows: [&[u8]; 3], out: &mut [u8]) {
    for (x, o) in out.iter_mut().enumerate() {
        let sum: u16 = rows.iter().map(|r| r[3 * x..3 * x + 3].iter().map(|&p| p as u16).sum::<u16>()).sum();
        *o = ((sum + 4) / 9) as u8;
    }
}

pub(super) fn down4_row_scalar(rows: [&[u8]; 4], out: &mut [u8]) {
    for (x, o) in out.iter_mut().enumerate() {
        let sum: u16 = rows.iter().map(|r| r[4 * x..4 * x + 4].iter().map(|&p| p as u16).sum::<u16>()).sum();
        *o = ((sum + 8) >> 4) as u8;
    }
}
