//! A camera-like synthetic source: a picture that costs what a camera's
//! costs to code, so capacity, latency and codec figures mean something.
//!
//! The flat [`super::pattern::TestPattern`] is nearly free for H.264 (a
//! 720p30 composite of it codes to under 100 kbps whatever the target).
//! A camera gives the encoder detail at every scale, motion that is not a
//! whole-pixel shift, light that drifts and sensor noise in every frame.
//! [`CameraScene`] has all four: a textured plane (value noise at several
//! octaves plus hard-edged shapes) that turns, zooms and pans, lit by a
//! gradient whose exposure breathes, with fresh noise on every pixel. The
//! whole picture is tinted with the participant's colour (its mean stays
//! that colour, so tiles remain recognisable), carries the name, and the
//! same capture stamp as the test pattern, drawn over the noise.

use super::color::{Rgb, Yuv};
use super::draw::{draw_text, TextStyle};
use super::frame::{FrameRef, VideoFrame};
use super::pattern::write_stamp;
use crate::layout::Rect;

/// Texture side (a power of two: coordinates wrap with a mask).
const TEX: usize = 512;
const TEX_MASK: i64 = TEX as i64 - 1;
/// Peak luma noise added to every pixel of every frame (+/-).
const LUMA_NOISE: i32 = 3;
/// Peak chroma noise (+/-).
const CHROMA_NOISE: i32 = 2;

/// A tinted, textured, moving, noisy picture (see the module doc).
pub struct CameraScene {
    frame: VideoFrame,
    /// Texture luma as offsets around 0, `TEX` x `TEX`.
    tex_y: Vec<i8>,
    /// Texture chroma offsets, `TEX/2` x `TEX/2` each.
    tex_u: Vec<i8>,
    tex_v: Vec<i8>,
    tint: Yuv,
    name: String,
    rng: Rng,
}

impl CameraScene {
    /// A `width` x `height` scene tinted `color`, labelled `name`. The
    /// texture depends on `color` too, so two participants differ.
    pub fn new(width: usize, height: usize, color: Rgb, name: &str) -> Result<Self, super::frame::FrameError> {
        let tint = color.to_yuv();
        let seed = 0x9e37_79b9_7f4a_7c15 ^ (u64::from(color.r) << 16 | u64::from(color.g) << 8 | u64::from(color.b));
        let mut rng = Rng(seed | 1);
        let tex_y = texture(&mut rng, TEX, 46, 28);
        let tex_u = texture(&mut rng, TEX / 2, 10, 0);
        let tex_v = texture(&mut rng, TEX / 2, 10, 0);
        Ok(Self { frame: VideoFrame::new(width, height, tint)?, tex_y, tex_u, tex_v, tint, name: name.to_owned(), rng })
    }

    /// The picture at media time `t_ms`, stamped with `stamp`.
    pub fn render(&mut self, t_ms: u64, stamp: u32) -> FrameRef<'_> {
        let t = t_ms as f64 / 1000.0;
        let (w, h) = (self.frame.width(), self.frame.height());
        // The plane turns ~9 degrees a second, zooms in and out by a fifth
        // over 7 s and drifts sideways: no motion vector predicts it exactly.
        let angle = 0.16 * t + 0.05 * (0.9 * t).sin();
        let zoom = 1.0 + 0.2 * (t * std::f64::consts::TAU / 7.0).sin();
        // Texture texels per luma pixel: the texture spans about the height.
        let scale = TEX as f64 / h as f64 * 0.9 / zoom;
        let (c, s) = (angle.cos() * scale, angle.sin() * scale);
        let pan = (40.0 * t, 13.0 * t + 20.0 * (0.5 * t).sin());
        // Light: a gradient across the picture whose exposure breathes.
        let exposure = (6.0 * (t * 1.3).sin()) as i32;
        let grad_x = 24.0 / w as f64;
        let grad_y = 16.0 / h as f64;
        let [mut yp, mut up, mut vp] = self.frame.planes_mut();
        // Fixed point, 16 fractional bits.
        const ONE: f64 = 65536.0;
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        for row in 0..h {
            let dy = row as f64 - cy;
            let u0 = ((-cx * c - dy * s + pan.0 + TEX as f64 / 2.0) * ONE) as i64;
            let v0 = ((-cx * s + dy * c + pan.1 + TEX as f64 / 2.0) * ONE) as i64;
            let (du, dv) = ((c * ONE) as i64, (s * ONE) as i64);
            let light = self.tint.y as i32 + exposure + (dy * grad_y) as i32;
            let out = yp.row_mut(row);
            luma_row(out, &self.tex_y, u0, v0, du, dv, light, -(cx * grad_x), grad_x, &mut self.rng);
        }
        // Chroma at half size: the same motion, texels per chroma pixel
        // doubled against a texture half the size.
        for (plane, tex, base) in [(&mut up, &self.tex_u, self.tint.u), (&mut vp, &self.tex_v, self.tint.v)] {
            let (cw, ch) = (plane.width(), plane.height());
            let (ccx, ccy) = (cw as f64 / 2.0, ch as f64 / 2.0);
            for row in 0..ch {
                let dy = row as f64 - ccy;
                let u0 = ((-ccx * c - dy * s + pan.0 / 2.0 + TEX as f64 / 4.0) * ONE) as i64;
                let v0 = ((-ccx * s + dy * c + pan.1 / 2.0 + TEX as f64 / 4.0) * ONE) as i64;
                let (du, dv) = ((c * ONE) as i64, (s * ONE) as i64);
                chroma_row(plane.row_mut(row), tex, u0, v0, du, dv, base as i32, &mut self.rng);
            }
        }
        let full = Rect { x: 0, y: 0, w: w as u32, h: h as u32 };
        let scale = (h as u32 / 120).max(1);
        draw_text(&mut self.frame, 4 * scale, 4 * scale, &self.name, TextStyle::white(scale, true), full);
        write_stamp(&mut self.frame, stamp);
        self.frame.pts = std::time::Duration::from_millis(t_ms);
        self.frame.as_frame()
    }

    /// The frame last rendered.
    pub fn frame(&self) -> &VideoFrame {
        &self.frame
    }
}

/// One row of luma: texture at the affine position, the light gradient,
/// and noise.
#[allow(clippy::too_many_arguments)]
fn luma_row(
    out: &mut [u8],
    tex: &[i8],
    u0: i64,
    v0: i64,
    du: i64,
    dv: i64,
    light: i32,
    g0: f64,
    gx: f64,
    rng: &mut Rng,
) {
    let (mut u, mut v) = (u0, v0);
    let mut noise = 0u64;
    let step = (gx * 65536.0) as i64;
    let mut g = (g0 * 65536.0) as i64;
    for (i, px) in out.iter_mut().enumerate() {
        if i % 8 == 0 {
            noise = rng.next();
        }
        let tu = ((u >> 16) & TEX_MASK) as usize;
        let tv = ((v >> 16) & TEX_MASK) as usize;
        let n = (noise & 7) as i32 % (2 * LUMA_NOISE + 1) - LUMA_NOISE;
        noise >>= 8;
        let value = light + (g >> 16) as i32 + tex[tv * TEX + tu] as i32 + n;
        *px = value.clamp(16, 235) as u8;
        u += du;
        v += dv;
        g += step;
    }
}

/// One row of a chroma plane: texture offsets around `base`, and noise.
#[allow(clippy::too_many_arguments)]
fn chroma_row(out: &mut [u8], tex: &[i8], u0: i64, v0: i64, du: i64, dv: i64, base: i32, rng: &mut Rng) {
    let side = TEX / 2;
    let mask = side as i64 - 1;
    let (mut u, mut v) = (u0, v0);
    let mut noise = 0u64;
    for (i, px) in out.iter_mut().enumerate() {
        if i % 8 == 0 {
            noise = rng.next();
        }
        let tu = ((u >> 16) & mask) as usize;
        let tv = ((v >> 16) & mask) as usize;
        let n = (noise & 7) as i32 % (2 * CHROMA_NOISE + 1) - CHROMA_NOISE;
        noise >>= 8;
        *px = (base + tex[tv * side + tu] as i32 + n).clamp(16, 240) as u8;
        u += du;
        v += dv;
    }
}

/// A `side` x `side` texture of offsets around 0: value noise at four
/// octaves (soft detail at every scale, like a real scene) within
/// `amplitude`, plus hard-edged rectangles within `edges` (objects).
fn texture(rng: &mut Rng, side: usize, amplitude: i32, edges: i32) -> Vec<i8> {
    let mut acc = vec![0f32; side * side];
    let mut weight = 0.55f32;
    for cell in [64usize, 24, 8, 3] {
        let cells = side.div_ceil(cell) + 1;
        let grid: Vec<f32> = (0..cells * cells).map(|_| rng.unit() * 2.0 - 1.0).collect();
        for y in 0..side {
            let (gy, fy) = (y / cell, (y % cell) as f32 / cell as f32);
            for x in 0..side {
                let (gx, fx) = (x / cell, (x % cell) as f32 / cell as f32);
                // Wrap at the edge so the texture tiles without a seam.
                let at = |i: usize, j: usize| grid[(j % (cells - 1)) * cells + (i % (cells - 1))];
                let top = at(gx, gy) * (1.0 - fx) + at(gx + 1, gy) * fx;
                let bottom = at(gx, gy + 1) * (1.0 - fx) + at(gx + 1, gy + 1) * fx;
                acc[y * side + x] += weight * (top * (1.0 - fy) + bottom * fy);
            }
        }
        weight *= 0.6;
    }
    let mut tex: Vec<i32> = acc.iter().map(|v| (v * amplitude as f32) as i32).collect();
    if edges > 0 {
        for _ in 0..60 {
            let (x0, y0) = ((rng.unit() * side as f32) as usize, (rng.unit() * side as f32) as usize);
            let (rw, rh) = (4 + (rng.unit() * 60.0) as usize, 4 + (rng.unit() * 60.0) as usize);
            let level = ((rng.unit() * 2.0 - 1.0) * edges as f32) as i32;
            for y in y0..y0 + rh {
                for x in x0..x0 + rw {
                    tex[(y % side) * side + (x % side)] += level;
                }
            }
        }
    }
    tex.into_iter().map(|v| v.clamp(-100, 100) as i8).collect()
}

/// xorshift64: fast, deterministic, good enough for noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::convert::mean_rgb;
    use crate::media::pattern::{palette, read_stamp};

    #[test]
    fn carries_its_stamp_and_colour_and_never_repeats() {
        let mut s = CameraScene::new(320, 240, palette(1), "Bob").unwrap();
        let f = s.render(0, 0x12_3456);
        assert_eq!(read_stamp(&f, Rect { x: 0, y: 0, w: 320, h: 240 }), Some(0x12_3456));
        // Over a large area the picture averages to its tint.
        let mean = mean_rgb(&f, 40, 120, 240, 100);
        assert!(mean.distance(palette(1)) < 40.0, "mean {mean}");
        let first = s.frame().as_bytes().to_vec();
        s.render(33, 0x12_3456);
        let second = s.frame().as_bytes();
        // Every frame differs almost everywhere (noise, motion), unlike the pattern.
        let changed = first.iter().zip(second).filter(|(a, b)| a != b).count();
        assert!(changed > first.len() / 2, "only {changed} of {} bytes changed", first.len());
    }

    #[test]
    fn costs_an_encoder_what_a_camera_does() {
        use crate::media::h264::{H264Config, H264Encoder};
        use std::time::Duration;
        // The flat pattern leaves most of a 600 kbps budget unspent at
        // 320x240; the scene spends it.
        let (w, h, fps, target) = (320, 240, 15, 600_000u32);
        let mut scene = CameraScene::new(w, h, palette(3), "x").unwrap();
        let mut enc = H264Encoder::new(H264Config::new(w as u32, h as u32, fps, target)).unwrap();
        let mut bytes = 0usize;
        let frames = 45u64;
        for i in 0..frames {
            let t = Duration::from_millis(i * 1000 / fps as u64);
            let f = scene.render(t.as_millis() as u64, 0);
            if let Some(e) = enc.encode(&f, t).unwrap() {
                bytes += e.data.len();
            }
        }
        let kbps = bytes as f64 * 8.0 / (frames as f64 / fps as f64) / 1000.0;
        assert!(kbps > 0.8 * target as f64 / 1000.0, "the scene coded to only {kbps:.0} kbps");
    }
}
