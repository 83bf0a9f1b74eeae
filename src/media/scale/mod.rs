//! Plane scaling: one source plane into one destination rectangle.
//!
//! The compositor calls [`Scaler::scale`] three times per tile (Y, U, V),
//! with the destination a view into the canvas, so nothing is ever staged in
//! an intermediate image. Which code runs depends on the geometry:
//!
//! | path | when | what |
//! |---|---|---|
//! | [`ScalePath::Copy`] | same size | one copy of the whole plane when both are contiguous, else row copies |
//! | [`ScalePath::Down2`] | exactly 2:1 both ways, `bilinear`/`box` | 2x2 average (AVX2 + scalar) |
//! | [`ScalePath::Down3`] | exactly 3:1 both ways, `bilinear`/`box` | 3x3 average, one fused pass (AVX2 + scalar) |
//! | [`ScalePath::Down4`] | exactly 4:1 both ways, `bilinear`/`box` | 4x4 average (AVX2 + scalar) |
//! | [`ScalePath::Down6`], [`ScalePath::Down8`] | exactly 6:1 or 8:1 both ways, `bilinear`/`box` | 6x6 or 8x8 average, one fused pass (AVX2 + scalar) |
//! | [`ScalePath::Area`] | any other downscale, `bilinear`/`box` | separable area average, vertical first, one row of scratch (AVX2) |
//! | [`ScalePath::Bilinear`] | `bilinear` with an axis that grows | the same separable kernels: bilinear on growing axes, area on shrinking ones (AVX2) |
//! | [`ScalePath::Fir`] | everything else (`nearest`, `box` upscales, the sharper filters) | fast_image_resize convolution, SIMD picked at run time |
//!
//! At exactly 2:1 a bilinear filter sampling at pixel centres *is* the 2x2
//! box, so `Down2` is the same filter as the general path, only faster;
//! `Down3`, `Down4`, `Down6` and `Down8` are the `Area` path's exact area
//! average at those ratios (one rounding instead of two), in one pass. For
//! other downscales, averaging the exact area each output covers is what a
//! bilinear filter widened to the scale factor approximates (no source
//! pixel is skipped, unlike plain 2-tap bilinear), at a fraction of the
//! cost of fast_image_resize's widened convolution. Enlarging, bilinear is
//! two taps per output, which the same kernels run (about 3x faster than
//! fast_image_resize's general convolution on one 8-bit plane). The tests
//! check each specialised path against fast_image_resize on the same input.

mod boxdown;
mod fir;
mod separable;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::frame::{PlaneMut, PlaneRef};
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// Resize filter, chosen per layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Filter {
    /// Nearest neighbour: fastest, blocky.
    Nearest,
    /// Bilinear (default): interpolation when enlarging, area averaging when shrinking.
    #[default]
    Bilinear,
    /// Box / area averaging at every scale.
    Box,
    /// Catmull-Rom bicubic: sharper, about twice the cost of bilinear.
    CatmullRom,
    /// Lanczos3: sharpest, the most expensive.
    Lanczos3,
}

impl Filter {
    /// Every filter, in the order the docs list them.
    pub const ALL: [Filter; 5] = [Filter::Nearest, Filter::Bilinear, Filter::Box, Filter::CatmullRom, Filter::Lanczos3];

    fn name(self) -> &'static str {
        match self {
            Filter::Nearest => "nearest",
            Filter::Bilinear => "bilinear",
            Filter::Box => "box",
            Filter::CatmullRom => "catmull-rom",
            Filter::Lanczos3 => "lanczos3",
        }
    }

    /// Whether exact box averaging is this filter at integer downscales.
    fn averages(self) -> bool {
        matches!(self, Filter::Bilinear | Filter::Box)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Filter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown filter `{s}` (expected nearest, bilinear, box, catmull-rom or lanczos3)"))
    }
}

/// Which implementation a call to [`Scaler::scale`] used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalePath {
    /// Destination empty: nothing to do.
    Nothing,
    /// Same size: copied.
    Copy,
    /// Exact 2:1 box.
    Down2,
    /// Exact 3:1 box.
    Down3,
    /// Exact 4:1 box.
    Down4,
    /// Exact 6:1 box.
    Down6,
    /// Exact 8:1 box.
    Down8,
    /// Separable area average.
    Area,
    /// Separable bilinear (an axis grows; a shrinking one is averaged).
    Bilinear,
    /// fast_image_resize.
    Fir,
}

/// Errors from scaling (only a zero-sized source can cause one).
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The source has no samples but the destination does.
    #[error("cannot scale an empty {0}x{1} source")]
    EmptySource(usize, usize),
    /// fast_image_resize refused the geometry.
    #[error("resize failed: {0}")]
    Fir(String),
    /// The destination size is not a usable picture size.
    #[error(transparent)]
    Size(#[from] super::frame::FrameError),
}

/// Reusable scaler: owns the scratch buffers every path needs, so a
/// steady-state render allocates nothing.
#[derive(Default)]
pub struct Scaler {
    fir: fir::FirScaler,
    separable: separable::SeparableScaler,
    /// Force a path, for tests that compare paths.
    force_general: bool,
}

impl Scaler {
    /// A new scaler.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scaler that never takes the specialised paths (copy excepted):
    /// the reference the tests compare the box paths, `Area` and `Bilinear` against.
    pub fn reference() -> Self {
        Self { force_general: true, ..Self::default() }
    }

    /// Scales `src` to exactly fill `dst`.
    pub fn scale(
        &mut self,
        src: &PlaneRef<'_>,
        dst: &mut PlaneMut<'_>,
        filter: Filter,
    ) -> Result<ScalePath, ScaleError> {
        let (sw, sh) = (src.width(), src.height());
        let (dw, dh) = (dst.width(), dst.height());
        if dw == 0 || dh == 0 {
            return Ok(ScalePath::Nothing);
        }
        if sw == 0 || sh == 0 {
            return Err(ScaleError::EmptySource(sw, sh));
        }
        if (sw, sh) == (dw, dh) {
            dst.copy_from(src);
            return Ok(ScalePath::Copy);
        }
        if !self.force_general && filter.averages() {
            if let Some(path) = boxdown::exact(src, dst) {
                return Ok(path);
            }
            if sw >= dw && sh >= dh {
                self.separable.scale(src, dst);
                return Ok(ScalePath::Area);
            }
        }
        if !self.force_general && filter == Filter::Bilinear {
            self.separable.scale(src, dst);
            return Ok(ScalePath::Bilinear);
        }
        self.fir.scale(src, dst, filter)?;
        Ok(ScalePath::Fir)
    }

    /// Scales a whole picture into `dst`, reshaped to `width` x `height`
    /// (bilinear; its buffer is reused).
    pub fn scale_frame(
        &mut self,
        src: &super::frame::FrameRef<'_>,
        dst: &mut super::frame::VideoFrame,
        width: usize,
        height: usize,
    ) -> Result<(), ScaleError> {
        dst.reshape(width, height)?;
        let [mut y, mut u, mut v] = dst.planes_mut();
        self.scale(&src.y, &mut y, Filter::Bilinear)?;
        self.scale(&src.u, &mut u, Filter::Bilinear)?;
        self.scale(&src.v, &mut v, Filter::Bilinear)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
