//! Downstream views: what one shared encoder produces.
//!
//! Members whose view key is equal (same layout, size, frame rate and
//! bitrate) watch the same encoded stream.

use crate::layout::Layout;

/// Identity of a downstream: members with equal keys share one encoder.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewKey {
    /// Layout name.
    pub layout: String,
    /// Width (even).
    pub width: u32,
    /// Height (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate, bits/s.
    pub bitrate: u32,
}

/// Lowest bitrate a view is given.
const MIN_BITRATE: u32 = 100_000;

impl ViewKey {
    /// The view of `layout` at `size` (default: the layout's canvas; never
    /// larger than it), with the bitrate scaled by area from
    /// `canvas_bitrate`.
    pub fn new(layout: &Layout, size: Option<(u32, u32)>, canvas_bitrate: u32) -> Self {
        let (cw, ch) = (layout.canvas.width, layout.canvas.height);
        let (w, h) = size.map_or((cw, ch), |(w, h)| (w.clamp(16, cw) & !1, h.clamp(16, ch) & !1));
        let area = (w as u64 * h as u64) as f64 / (cw as u64 * ch as u64) as f64;
        let bitrate = ((canvas_bitrate as f64 * area) as u32).max(MIN_BITRATE);
        Self { layout: layout.name.clone(), width: w, height: h, fps: layout.canvas.fps, bitrate }
    }
}
