//! x86_64 AVX2 kernels: the exact box downscales ([`boxdown`]) and the
//! separable passes ([`separable`]). All `unsafe` of the scaler lives here.
//!
//! Each public function is safe: it checks the slice lengths (or the plane
//! extents) it relies on, then calls a `#[target_feature(enable = "avx2")]`
//! kernel only after [`has_avx2`] has confirmed the CPU supports it.
//! Kernels process whole blocks and return how many output samples (of each
//! row, for the whole-plane ones) they wrote; the caller's scalar code does
//! the rest, computing the same integers.
//!
//! Where a row is not a whole number of blocks long, most kernels run one
//! more block ending exactly at the row's end, overlapping the one before
//! (it writes the same values again), so any row of at least one block is
//! done without scalar code.

mod boxdown;
mod separable;

pub(super) use boxdown::box_plane;
pub(super) use separable::{
    horizontal_avx2, horizontal_quad, quarter_row, up2_row, vertical_avx2, GatherTable, QuadTable,
};

use crate::media::frame::{PlaneMut, PlaneRef};
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Whether this CPU runs AVX2 (checked once).
pub(super) fn has_avx2() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2"))
}

/// A plane as a whole-plane kernel sees it: row `y` starts at `ptr + y * stride`.
#[derive(Clone, Copy)]
struct Rows<P> {
    ptr: P,
    stride: usize,
}

/// Bytes spanned by `height` rows of `width` samples, `stride` apart
/// (`None` for no rows, or on overflow).
fn extent(stride: usize, width: usize, height: usize) -> Option<usize> {
    stride.checked_mul(height.checked_sub(1)?)?.checked_add(width)
}

/// The first `height` rows of `plane`, `width` samples each, if the plane
/// has them (and `height > 0`).
fn source_rows(plane: &PlaneRef<'_>, width: usize, height: usize) -> Option<Rows<*const u8>> {
    let (data, stride) = (plane.data(), plane.stride());
    let fits = width <= plane.width() && height <= plane.height() && stride >= width;
    (fits && extent(stride, width, height)? <= data.len()).then_some(Rows { ptr: data.as_ptr(), stride })
}

/// The same for a destination plane: `height` rows of `width` writable samples.
fn destination_rows(plane: &mut PlaneMut<'_>, width: usize, height: usize) -> Option<Rows<*mut u8>> {
    let (fits, stride) = (width <= plane.width() && height <= plane.height(), plane.stride());
    let data = plane.data_mut();
    (fits && stride >= width && extent(stride, width, height)? <= data.len())
        .then_some(Rows { ptr: data.as_mut_ptr(), stride })
}

/// Asks for the cache line at `row + offset` ahead of use, into the L2
/// cache. The address is only a hint (never dereferenced, no fault if it
/// is outside anything).
///
/// The kernels ask for the next output row's source rows while they work
/// on this one: each output row starts new, short streams (1280-byte rows,
/// most of them not where the last stream ended), which the hardware
/// prefetchers pick up too late to keep up. Into L2 rather than L1: with
/// up to 8 rows in use and 8 coming, L1 would evict lines still needed
/// (measured on the 8:1 box: into L1, a few percent faster than no
/// prefetch; into L2, about twice as fast). The whole-plane kernels ask
/// [`PREFETCH_ROWS`] output rows ahead, the separable pass one.
#[inline(always)]
fn prefetch(row: *const u8, offset: usize) {
    // SAFETY: a prefetch has no architectural effect; the pointer is never
    // dereferenced (and is formed with wrapping arithmetic).
    unsafe { _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(offset) as *const i8) };
}

/// How many output rows ahead the whole-plane kernels prefetch (measured on
/// the 2:1, 3:1 and 4:1 grids: 4 beats 1 and 2 by 5 to 15%; one output row
/// of a 2:1 box takes well under the time of a memory access).
const PREFETCH_ROWS: usize = 4;

/// `_mm256_mulhi_epu16`, as the one instruction it names.
///
/// The intrinsic is written as widen, multiply, shift, narrow, and in the
/// vertical pass's unrolled sums LLVM rearranges that into 32-bit
/// multiplies and packs: more than twice the instructions.
#[target_feature(enable = "avx2")]
#[inline]
fn mulhi_epu16(a: __m256i, b: __m256i) -> __m256i {
    let high: __m256i;
    // SAFETY: one AVX2 register-to-register multiply (AVX2 is enabled for
    // this function): no memory, stack or flags touched.
    unsafe {
        std::arch::asm!(
            "vpmulhuw {high}, {a}, {b}",
            high = lateout(ymm_reg) high,
            a = in(ymm_reg) a,
            b = in(ymm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    high
}
