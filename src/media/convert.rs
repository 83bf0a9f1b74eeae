//! RGB <-> I420 conversion for images at the edges (placeholder images
//! loaded once, previews written once). Never on the per-frame path.

use super::color::{Rgb, Yuv};
use super::frame::{FrameRef, VideoFrame};

/// Fills `frame` (already sized, even) from packed RGB8 rows of
/// `src_width` pixels. Chroma is the mean of each 2x2 block.
pub fn rgb_to_i420(rgb: &[u8], src_width: usize, frame: &mut VideoFrame) {
    let (w, h) = (frame.width(), frame.height());
    let px = |x: usize, y: usize| {
        let i = (y * src_width + x) * 3;
        Rgb::new(rgb[i], rgb[i + 1], rgb[i + 2])
    };
    let [mut yp, mut up, mut vp] = frame.planes_mut();
    for y in 0..h {
        let row = yp.row_mut(y);
        for (x, out) in row.iter_mut().enumerate().take(w) {
            *out = px(x, y).to_yuv().y;
        }
    }
    for cy in 0..h / 2 {
        for cx in 0..w / 2 {
            let (mut u, mut v) = (0u32, 0u32);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let c = px(2 * cx + dx, 2 * cy + dy).to_yuv();
                u += c.u as u32;
                v += c.v as u32;
            }
            up.row_mut(cy)[cx] = ((u + 2) / 4) as u8;
            vp.row_mut(cy)[cx] = ((v + 2) / 4) as u8;
        }
    }
}

/// Packed RGB8 of a picture (for PNG previews and probes).
pub fn i420_to_rgb(frame: &FrameRef<'_>) -> Vec<u8> {
    let (w, h) = (frame.width(), frame.height());
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let Rgb { r, g, b } = frame.yuv_at(x, y).to_rgb();
            out.extend_from_slice(&[r, g, b]);
        }
    }
    out
}

/// Writes a picture as a PNG file.
pub fn write_png(frame: &FrameRef<'_>, path: &std::path::Path) -> Result<(), image::ImageError> {
    let rgb = i420_to_rgb(frame);
    image::save_buffer(path, &rgb, frame.width() as u32, frame.height() as u32, image::ColorType::Rgb8)
}

/// The mean colour of a `w` x `h` block at (`x`, `y`), as RGB.
pub fn mean_rgb(frame: &FrameRef<'_>, x: usize, y: usize, w: usize, h: usize) -> Rgb {
    let (mut sy, mut su, mut sv, mut n) = (0u64, 0u64, 0u64, 0u64);
    for yy in y..(y + h).min(frame.height()) {
        for xx in x..(x + w).min(frame.width()) {
            let c = frame.yuv_at(xx, yy);
            sy += c.y as u64;
            su += c.u as u64;
            sv += c.v as u64;
            n += 1;
        }
    }
    let n = n.max(1);
    Yuv { y: (sy / n) as u8, u: (su / n) as u8, v: (sv / n) as u8 }.to_rgb()
}
