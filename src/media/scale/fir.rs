//! The general path: fast_image_resize on strided plane views.
//!
//! fast_image_resize has no YUV type and its own images are unstrided, so
//! [`FirPlane`] and [`FirPlaneMut`] expose our strided planes (a decoder's
//! picture, a rectangle of the canvas) as its image views: it then resizes
//! straight from one into the other, with the SIMD it picks at run time.

use super::{Filter, ScaleError};
use crate::media::frame::{PlaneMut, PlaneRef};
use fast_image_resize as fr;
use fr::pixels::U8;

#[derive(Default)]
pub(super) struct FirScaler {
    resizer: fr::Resizer,
}

impl FirScaler {
    pub fn scale(&mut self, src: &PlaneRef<'_>, dst: &mut PlaneMut<'_>, filter: Filter) -> Result<(), ScaleError> {
        use fr::{FilterType, ResizeAlg};
        let alg = match filter {
            Filter::Nearest => ResizeAlg::Nearest,
            Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Filter::Box => ResizeAlg::Convolution(FilterType::Box),
            Filter::CatmullRom => ResizeAlg::Convolution(FilterType::CatmullRom),
            Filter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
        };
        let options = fr::ResizeOptions::new().resize_alg(alg).use_alpha(false);
        let src_view = FirPlane(*src);
        let mut dst_view = FirPlaneMut(dst);
        self.resizer.resize_typed(&src_view, &mut dst_view, &options).map_err(|e| ScaleError::Fir(e.to_string()))
    }
}

fn as_pixels(row: &[u8]) -> &[U8] {
    bytemuck::cast_slice(row)
}

fn as_pixels_mut(row: &mut [u8]) -> &mut [U8] {
    bytemuck::cast_slice_mut(row)
}

struct FirPlane<'a>(PlaneRef<'a>);

// SAFETY: every row `iter_rows` yields is exactly `width()` pixels long
// (`PlaneRef::row` slices `width` samples), as the trait requires.
unsafe impl fr::ImageView for FirPlane<'_> {
    type Pixel = U8;

    fn width(&self) -> u32 {
        self.0.width() as u32
    }

    fn height(&self) -> u32 {
        self.0.height() as u32
    }

    fn iter_rows(&self, start_row: u32) -> impl Iterator<Item = &[Self::Pixel]> {
        let plane = self.0;
        (start_row as usize..plane.height()).map(move |y| as_pixels(plane.row(y)))
    }
}

struct FirPlaneMut<'a, 'b>(&'a mut PlaneMut<'b>);

// SAFETY: as for `FirPlane`: rows are exactly `width()` long.
unsafe impl fr::ImageView for FirPlaneMut<'_, '_> {
    type Pixel = U8;

    fn width(&self) -> u32 {
        self.0.width() as u32
    }

    fn height(&self) -> u32 {
        self.0.height() as u32
    }

    fn iter_rows(&self, start_row: u32) -> impl Iterator<Item = &[Self::Pixel]> {
        let plane = self.0.as_ref();
        (start_row as usize..plane.height()).map(move |y| as_pixels(plane.row(y)))
    }
}

// SAFETY: rows from `iter_rows_mut` are exactly `width()` long and disjoint
// (consecutive `stride`-sized chunks, each cut to `width`).
unsafe impl fr::ImageViewMut for FirPlaneMut<'_, '_> {
    fn iter_rows_mut(&mut self, start_row: u32) -> impl Iterator<Item = &mut [Self::Pixel]> {
        let (width, height, stride) = (self.0.width(), self.0.height(), self.0.stride());
        let start = start_row as usize;
        let data = self.0.data_mut();
        let skip = (start * stride).min(data.len());
        data[skip..]
            .chunks_mut(stride.max(1))
            .take(height.saturating_sub(start))
            .map(move |row| as_pixels_mut(&mut row[..width]))
    }
}
