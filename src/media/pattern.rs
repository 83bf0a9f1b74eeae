//! Synthetic sources: a moving test pattern that carries its own capture
//! timestamp in its pixels, sine tones, and beeps that start on whole
//! seconds of the capture clock (the audio's timestamp, for A/V sync).
//!
//! The pattern is mostly one flat colour (so a tile is easy to recognise in
//! a composite) with the participant's name, a bar sweeping across its
//! lower part (so the encoder has motion to code) and, in the upper middle,
//! two rows of 16 black/white cells: 24 bits of a millisecond
//! timestamp and an 8-bit check. [`read_stamp_mapped`] reads it back from
//! a tile of a composite, after scaling, cropping and two generations of
//! H.264.

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

/// Stamp cells per row; two rows make 32 bits.
const STAMP_COLUMNS: u32 = 16;

/// Height of one stamp row for a picture `height` rows tall.
pub fn stamp_height(height: usize) -> usize {
    (height / 12).max(4) & !1
}

fn checksum(value: u32) -> u8 {
    let v = value & 0xff_ffff;
    let x = (v ^ (v >> 8) ^ (v >> 16)) as u8;
    x.rotate_left(3) ^ 0x5a
}

/// Where stamp bit `bit` sits in a `w` x `h` picture: two rows across the
/// middle half of the width, starting a fifth of the way down. A centre
/// crop to another aspect ratio (a `cover` tile) keeps all of it unless it
/// cuts more than a fifth off the top or a quarter off a side; the centre
/// of the picture stays the pattern's colour.
fn stamp_cell(bit: u32, w: u32, h: u32) -> Rect {
    let (row, col) = (bit / STAMP_COLUMNS, bit % STAMP_COLUMNS);
    let sh = stamp_height(h as usize) as u32;
    let top = (h / 5) & !1;
    let x0 = w / 4 + col * (w / 2) / STAMP_COLUMNS;
    let x1 = w / 4 + (col + 1) * (w / 2) / STAMP_COLUMNS;
    Rect { x: x0 & !1, y: top + row * sh, w: (x1 & !1) - (x0 & !1), h: sh }
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

/// Paints the stamp for `value` (its low 24 bits, plus an 8-bit check).
pub fn write_stamp(frame: &mut VideoFrame, value: u32) {
    let (w, h) = (frame.width() as u32, frame.height() as u32);
    let word = (value & 0xff_ffff) << 8 | checksum(value) as u32;
    for bit in 0..32 {
        let on = word >> (31 - bit) & 1 == 1;
        let y = if on { 235 } else { 16 };
        fill_rect(frame, stamp_cell(bit, w, h), Yuv { y, u: 128, v: 128 });
    }
}

/// Reads the stamp of a picture drawn whole into `area` of `frame`.
pub fn read_stamp(frame: &FrameRef<'_>, area: Rect) -> Option<u32> {
    read_stamp_mapped(frame, area, Rect { x: 0, y: 0, w: area.w, h: area.h }, area.w, area.h)
}

/// Reads the stamp of a `src_w` x `src_h` picture whose `crop` part was
/// scaled into `dst` of `frame` (what the compositor does with a tile).
/// `None` if a cell is not visible or the check fails.
pub fn read_stamp_mapped(frame: &FrameRef<'_>, dst: Rect, crop: Rect, src_w: u32, src_h: u32) -> Option<u32> {
    if dst.is_empty()
        || crop.is_empty()
        || dst.right() as usize > frame.width()
        || dst.bottom() as usize > frame.height()
    {
        return None;
    }
    let (sx, sy) = (dst.w as f64 / crop.w as f64, dst.h as f64 / crop.h as f64);
    let mut word = 0u32;
    for bit in 0..32 {
        let c = stamp_cell(bit, src_w, src_h);
        // The middle half of the cell, away from blurred edges, in source
        // coordinates, then onto the canvas.
        let (x0, x1) = (c.x as f64 + c.w as f64 / 4.0, c.x as f64 + c.w as f64 * 3.0 / 4.0);
        let (y0, y1) = (c.y as f64 + c.h as f64 / 4.0, c.y as f64 + c.h as f64 * 3.0 / 4.0);
        if x0 < crop.x as f64 || x1 > crop.right() as f64 || y0 < crop.y as f64 || y1 > crop.bottom() as f64 {
            return None;
        }
        let map_x = |x: f64| (dst.x as f64 + (x - crop.x as f64) * sx) as usize;
        let map_y = |y: f64| (dst.y as f64 + (y - crop.y as f64) * sy) as usize;
        let (ax, bx) = (map_x(x0), map_x(x1).max(map_x(x0) + 1));
        let (ay, by) = (map_y(y0), map_y(y1).max(map_y(y0) + 1));
        let mut sum = 0u64;
        let mut n = 0u64;
        for y in ay..by.min(frame.height()) {
            for x in ax..bx.min(frame.width()) {
                sum += frame.y.at(x, y) as u64;
                n += 1;
            }
        }
        if n == 0 {
            return None;
        }
        word = word << 1 | u32::from(sum / n > 125);
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

/// Beeps: a tone that sounds for [`BEEP_ON_MS`] from every whole
/// [`BEEP_PERIOD_MS`] of the capture clock. A receiver sharing that clock
/// reads the audio's latency from when each beep starts, as it reads the
/// video's from the pattern's stamp.
pub struct Beep {
    tone: Tone,
}

/// Time between two beeps' starts.
pub const BEEP_PERIOD_MS: u64 = 1000;
/// How long a beep sounds.
pub const BEEP_ON_MS: u64 = 200;

impl Beep {
    /// Beeps at `freq` Hz with peak `amplitude`.
    pub fn new(freq: f64, amplitude: f32) -> Self {
        Self { tone: Tone::new(freq, amplitude) }
    }

    /// The 20 ms whose first sample is captured at `start_ms` on the clock.
    pub fn next_frame(&mut self, out: &mut AudioFrame, start_ms: f64) {
        self.tone.next_frame(out);
        let per_sample = 1000.0 / SAMPLE_RATE as f64;
        for (i, s) in out.samples.iter_mut().enumerate() {
            let t = (start_ms + i as f64 * per_sample).rem_euclid(BEEP_PERIOD_MS as f64);
            if t >= BEEP_ON_MS as f64 {
                *s = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beeps_sound_from_each_whole_second() {
        let mut beep = Beep::new(1000.0, 0.5);
        let mut frame = AudioFrame::silence();
        // A frame captured from 990 ms to 1010 ms: silent, then the beep.
        beep.next_frame(&mut frame, 990.0);
        let first_loud = frame.samples.iter().position(|s| s.abs() > 0.01).unwrap();
        assert!((480..=500).contains(&first_loud), "beep starts at sample {first_loud}");
        assert!(frame.samples[..480].iter().all(|s| *s == 0.0));
        // 1200 ms on: silent again.
        beep.next_frame(&mut frame, 1200.0);
        assert!(frame.peak() == 0.0);
    }

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
    fn stamp_survives_composition_scaling_cropping_and_coding() {
        use crate::layout::{fit_rect, Layout};
        use crate::media::compositor::{placements, Compositor, Source};
        use crate::media::h264::{H264Config, H264Decoder, H264Encoder};
        use std::sync::Arc;
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layouts");
        for (layout, n, (sw, sh)) in [
            ("grid", 6, (640, 360)),
            ("grid", 9, (640, 360)),
            ("speaker", 5, (640, 360)),
            ("grid", 2, (640, 360)),
            ("grid", 4, (320, 240)),
            ("grid", 6, (320, 240)),
        ] {
            let layout = Arc::new(Layout::load(dir.join(format!("{layout}.toml"))).unwrap());
            let mut patterns: Vec<TestPattern> =
                (0..n).map(|i| TestPattern::new(sw, sh, palette(i), "p").unwrap()).collect();
            let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
            for (i, p) in patterns.iter_mut().enumerate() {
                p.render(0, 1000 + i as u32);
            }
            let sources: Vec<Source<'_>> = patterns
                .iter()
                .zip(&names)
                .enumerate()
                .map(|(i, (p, name))| Source { id: i as u64, name, frame: Some(p.frame().as_frame()), generation: 1 })
                .collect();
            let mut comp = Compositor::new(640, 360).unwrap();
            comp.render(&layout, &sources, None);
            let mut enc = H264Encoder::new(H264Config::new(640, 360, 15, 800_000)).unwrap();
            let unit = enc.encode(&comp.canvas().as_frame(), std::time::Duration::ZERO).unwrap().unwrap().data.to_vec();
            let mut dec = H264Decoder::new().unwrap();
            let decoded = dec.decode(&unit).unwrap().unwrap();
            let ids: Vec<u64> = (0..n as u64).collect();
            for p in placements(&layout, &ids, None, 640, 360) {
                let (dst, crop) = fit_rect(p.inner, sw as u32, sh as u32, p.fit == crate::layout::Fit::Contain);
                let got = read_stamp_mapped(&decoded.frame(), dst, crop, sw as u32, sh as u32);
                assert_eq!(got, Some(1000 + p.id as u32), "{} with {n}: tile {}", layout.name, p.id);
            }
        }
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
