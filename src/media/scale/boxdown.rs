//! Exact 2:1, 3:1, 4:1, 6:1 and 8:1 box downscales: the common grid cases
//! (720p inputs into a 2x2, 3x3 or 4x4 grid of a 720p or 360p canvas).
//!
//! Each output sample is the rounded mean of the n x n source block it
//! covers, `(sum + n²/2) / n²`: at these ratios that is exactly the area
//! average. The SIMD kernels take whole planes (no per-row calls) and
//! compute exactly the same integers as the scalar code here, which does
//! the planes (or the rows' ends) they leave.

use super::ScalePath;
use crate::media::frame::{PlaneMut, PlaneRef};

/// Scales a whole plane.
type Kernel = fn(&PlaneRef<'_>, &mut PlaneMut<'_>);

/// The ratios with kernels, the path each is reported as, and the kernel.
const KERNELS: [(usize, ScalePath, Kernel); 5] = [
    (2, ScalePath::Down2, down::<2>),
    (3, ScalePath::Down3, down::<3>),
    (4, ScalePath::Down4, down::<4>),
    (6, ScalePath::Down6, down::<6>),
    (8, ScalePath::Down8, down::<8>),
];

/// Scales `src` into `dst` when `src` is exactly 2, 3, 4, 6 or 8 times
/// `dst` both ways, and says which path did; `None` (nothing written)
/// for any other ratio.
pub(super) fn exact(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) -> Option<ScalePath> {
    let (sw, sh, dw, dh) = (src.width(), src.height(), dst.width(), dst.height());
    let &(_, path, kernel) = KERNELS.iter().find(|(n, _, _)| sw == n * dw && sh == n * dh)?;
    kernel(src, dst);
    Some(path)
}

/// `dst` is `src` divided by `N` in both directions (the caller checked the
/// sizes): the SIMD kernel where there is one, the scalar rows for what it
/// leaves.
pub(super) fn down<const N: usize>(src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>) {
    debug_assert!(src.width() >= N * dst.width() && src.height() >= N * dst.height());
    #[cfg(target_arch = "x86_64")]
    let done = super::x86::box_plane::<N>(src, dst);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    if done == dst.width() {
        return;
    }
    for y in 0..dst.height() {
        let rows: [&[u8]; N] = std::array::from_fn(|k| &src.row(N * y + k)[N * done..]);
        row_scalar(&rows, &mut dst.row_mut(y)[done..]);
    }
}

/// `(sum + n²/2) / n²` over each n x n block of `rows` (n = `rows.len()`),
/// which every kernel computes exactly (the 3:1 one divides by
/// multiplying: `(sum + 4) * 7282 >> 16`, equal for every possible sum).
#[inline]
pub(super) fn row_scalar(rows: &[&[u8]], out: &mut [u8]) {
    let n = rows.len();
    let area = (n * n) as u32;
    for (x, o) in out.iter_mut().enumerate() {
        let sum: u32 = rows.iter().map(|r| r[n * x..n * x + n].iter().map(|&p| p as u32).sum::<u32>()).sum();
        *o = ((sum + area / 2) / area) as u8;
    }
}
