//! Synthetic sources: a moving test pattern that carries its own capture
//! timestamp in its pixels, and sine tones.
//!
//! The pattern is mostly one flat colour (so a tile is easy to recognise in
//! a composite) with the participant's name, a bar sweeping across its
//! lower part (so the encoder has motion to code) and, along the top, a
//! strip of 32 black/white cells: 24 bits of a millisecond timestamp and an
//! 8-bit check. [`read_stamp`] reads it back from any rectangle showing
//! the picture, after scaling and two generations of H.264.

use super::color::{Rgb, Yuv};
use super::draw::{draw_text, fill_rect, TextStyle};
use super::frame::{AudioFrame, FrameRef, VideoFrame, SAMPLES_PER_FRAME, SAMPLE_RATE};
use crate::layout::Rect;
use std::f64::consts::TAU;

/// Distinct, saturated colours for participants 0, 1, 2, ... (tests and the
/// load generator use them; far enough apart to tell apart after coding).
pub fn palette(i: usize) -> Rgb {
    const COLORS: [Rgb; 16] = [
        Rgb::new(230, 40, 40),
        Rgb::new(40, 200, 60),
        Rgb::new(50, 80, 230),
        Rgb::new(235, 210, 40),
        Rgb::new(200, 60, 220),
        Rgb::new(40, 210, 220),
        Rgb::new(245, 140, 30),
        Rgb::new(140, 90, 50),
        Rgb::new(120, 230, 150),
        Rgb::new(240, 150, 200),
        Rgb::new(20, 110, 110),
        Rgb::new(110, 40, 140),
        Rgb::new(160, 160, 40),
        Rgb::new(90, 150, 250),
        Rgb::new(250, 250, 250),
        Rgb::new(70, 70, 70),
    ];
    COLORS[i % COLORS.len()]
}

/// A distinct tone frequency (Hz) for participant `i`: spaced so a
/// Goertzel measure separates them within 20 ms frames.
pub fn tone_for(i: usize) -> f64 {
    440.0 + 150.0 * (i % 24) as f64
}

/// Stamp cells across the strip.
const STAMP_BITS: usize = 32;

/// Height of the stamp strip for a picture `height` rows tall.
pub fn stamp_height(height: usize) -> usize {
    (height / 12).max(4) & !1
}

fn checksum(value: u32) -> u8 {
    let v = value & 0xff_ffff;
    let x = (v ^ (v >> 8) ^ (v >> 16)) as u8;
    x.rotate_left(3) ^ 0x5a
}

/// Generates the moving test pattern, reusing one frame.
pub struct TestPattern {
    frame: VideoFrame,
    color: Yuv,
    name: String,
}

impl TestPattern {
    /// A `width` x `height` pattern in `color` labelled `name`.
    pub fn new(width: usize, height: usize, color: Rgb, name: &str) -> Result<Self, super::frame::FrameError> {
        Ok(Self {
            frame: VideoFrame::new(width, height, color.to_yuv())?,
            color: color.to_yuv(),
            name: name.to_owned(),
        })
    }

    /// The picture at media time `t_ms`, stamped with `stamp` (usually the
    /// capture time in milliseconds on the sender's clock).
    pub fn render(&mut self, t_ms: u64, stamp: u32) -> FrameRef<'_> {
        let (w, h) = (self.frame.width() as u32, self.frame.height() as u32);
        let full = Rect { x: 0, y: 0, w, h };
        fill_rect(&mut self.frame, full, self.color);
        // A bar sweeping across the lower quarter, one width every 2 s.
        let bar_w = (w / 16).max(2) & !1;
        let travel = (w - bar_w) as u64;
        let x = if travel == 0 { 0 } else { ((t_ms % 2000) * travel / 2000) as u32 & !1 };
        let band = Rect { x, y: (h * 3 / 4) & !1, w: bar_w, h: (h / 6).max(2) & !1 };
        fill_rect(&mut self.frame, band, Yuv { y: 235, u: 128, v: 128 });
        let scale = (h / 120).max(1);
        let sh = stamp_height(h as usize) as u32;
        draw_text(&mut self.frame, 4 * scale, sh + 4 * scale, &self.name, TextStyle::white(scale, true), full);
        write_stamp(&mut self.frame, stamp);
        self.frame.pts = std::time::Duration::from_millis(t_ms);
        self.frame.as_frame()
    }

    /// The frame last rendered.
    pub fn frame(&self) -> &VideoFrame {
        &self.frame
    }
}

/// Paints the 32-cell stamp strip for `value` (its low 24 bits) at the top.
pub fn write_stamp(frame: &mut VideoFrame, value: u32) {
    let (w, h) = (frame.width() as u32, frame.height());
    let sh = stamp_height(h) as u32;
    let word = (value & 0xff_ffff) << 8 | checksum(value) as u32;
    for bit in 0..STAMP_BITS as u32 {
        let x0 = (bit * w / STAMP_BITS as u32) & !1;
        let x1 = ((bit + 1) * w / STAMP_BITS as u32) & !1;
        let on = word >> (31 - bit) & 1 == 1;
        let y = if on { 235 } else { 16 };
        fill_rect(frame, Rect { x: x0, y: 0, w: x1 - x0, h: sh }, Yuv { y, u: 128, v: 128 });
    }
}

/// Reads the stamp from the picture shown in `area` of `frame` (the whole
/// frame, or a tile of a composite). `None` if it is not there or the
/// check fails.
pub fn read_stamp(frame: &FrameRef<'_>, area: Rect) -> Option<u32> {
    let sh = stamp_height(area.h as usize) as u32;
    if area.w < STAMP_BITS as u32 * 2
        || sh < 4
        || area.right() as usize > frame.width()
        || area.bottom() as usize > frame.height()
    {
        return None;
    }
    let mut word = 0u32;
    for bit in 0..STAMP_BITS as u32 {
        let x0 = area.x + bit * area.w / STAMP_BITS as u32;
        let x1 = area.x + (bit + 1) * area.w / STAMP_BITS as u32;
        let cw = x1 - x0;
        // The middle half of the cell, away from blurred edges.
        let (sx, sw) = (x0 + cw / 4, (cw / 2).max(1));
        let (sy, shh) = (area.y + sh / 4, (sh / 2).max(1));
        let mut sum = 0u32;
        for y in sy..sy + shh {
            for x in sx..sx + sw {
                sum += frame.y.at(x as usize, y as usize) as u32;
            }
        }
        let mean = sum / (sw * shh);
        word = word << 1 | u32::from(mean > 125);
    }
    let value = word >> 8;
    (checksum(value) == (word & 0xff) as u8).then_some(value)
}

/// A sine tone, continuous across frames.
pub struct Tone {
    freq: f64,
    amplitude: f32,
    phase: f64,
}

impl Tone {
    /// A tone at `freq` Hz with peak `amplitude` (full scale 1.0).
    pub fn new(freq: f64, amplitude: f32) -> Self {
        Self { freq, amplitude, phase: 0.0 }
    }

    /// The next 20 ms.
    pub fn next_frame(&mut self, out: &mut AudioFrame) {
        let step = TAU * self.freq / SAMPLE_RATE as f64;
        for s in out.samples.iter_mut() {
            *s = self.amplitude * self.phase.sin() as f32;
            self.phase += step;
        }
        self.phase %= TAU;
        debug_assert_eq!(out.samples.len(), SAMPLES_PER_FRAME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_and_rejects_noise() {
        let mut p = TestPattern::new(320, 240, palette(2), "Carol").unwrap();
        for v in [0u32, 1, 0x123456, 0xff_ffff, 987_654] {
            let f = p.render(40, v);
            assert_eq!(read_stamp(&f, Rect { x: 0, y: 0, w: 320, h: 240 }), Some(v));
        }
        let flat = VideoFrame::new(320, 240, Rgb::new(128, 128, 128).to_yuv()).unwrap();
        assert_eq!(read_stamp(&flat.as_frame(), Rect { x: 0, y: 0, w: 320, h: 240 }), None);
        assert_eq!(read_stamp(&flat.as_frame(), Rect { x: 300, y: 0, w: 320, h: 240 }), None);
    }

    #[test]
    fn pattern_centre_is_the_colour_and_it_moves() {
        let mut p = TestPattern::new(320, 180, palette(0), "Alice").unwrap();
        let a = p.render(0, 0).yuv_at(160, 90);
        assert!(a.to_rgb().distance(palette(0)) < 6.0);
        let first: Vec<u8> = p.frame().as_bytes().to_vec();
        p.render(500, 0);
        assert_ne!(first, p.frame().as_bytes());
    }
}
