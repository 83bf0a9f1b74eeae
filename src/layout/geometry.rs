//! Pixel rectangles and fit arithmetic, all snapped to even coordinates so
//! the half-resolution chroma planes line up with luma.

/// A rectangle in pixels; every coordinate is even.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    /// Left.
    pub x: u32,
    /// Top.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// Rounds to the nearest even integer in `0..=limit` (`limit` even).
fn snap(v: f64, limit: u32) -> u32 {
    let v = if v.is_finite() { v } else { 0.0 };
    let even = (v / 2.0).round() * 2.0;
    (even.max(0.0) as u32).min(limit & !1)
}

impl Rect {
    /// A rectangle from canvas fractions, each edge snapped to even pixels.
    pub fn from_fractions(x: f64, y: f64, w: f64, h: f64, width: u32, height: u32) -> Rect {
        let x0 = snap(x * width as f64, width);
        let x1 = snap((x + w) * width as f64, width);
        let y0 = snap(y * height as f64, height);
        let y1 = snap((y + h) * height as f64, height);
        Rect { x: x0, y: y0, w: x1.saturating_sub(x0), h: y1.saturating_sub(y0) }
    }

    /// Whether the rectangle has no pixels.
    pub fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// Right edge (exclusive).
    pub fn right(&self) -> u32 {
        self.x + self.w
    }

    /// Bottom edge (exclusive).
    pub fn bottom(&self) -> u32 {
        self.y + self.h
    }

    /// Whether two rectangles share any pixel.
    pub fn intersects(&self, other: &Rect) -> bool {
        !self.is_empty()
            && !other.is_empty()
            && self.x < other.right()
            && other.x < self.right()
            && self.y < other.bottom()
            && other.y < self.bottom()
    }

    /// The rectangle shrunk by `by` pixels on every side (even `by`).
    pub fn inset(&self, by: u32) -> Rect {
        let by = by & !1;
        if 2 * by >= self.w || 2 * by >= self.h {
            return Rect { x: (self.x + self.w / 2) & !1, y: (self.y + self.h / 2) & !1, w: 0, h: 0 };
        }
        Rect { x: self.x + by, y: self.y + by, w: self.w - 2 * by, h: self.h - 2 * by }
    }

    /// The parts of `self` not covered by `inner` (which lies inside it):
    /// up to four bands, top, bottom, left, right.
    pub fn minus(&self, inner: &Rect) -> impl Iterator<Item = Rect> {
        let top = Rect { x: self.x, y: self.y, w: self.w, h: inner.y.saturating_sub(self.y) };
        let bottom = Rect { x: self.x, y: inner.bottom(), w: self.w, h: self.bottom().saturating_sub(inner.bottom()) };
        let left = Rect { x: self.x, y: inner.y, w: inner.x.saturating_sub(self.x), h: inner.h };
        let right = Rect { x: inner.right(), y: inner.y, w: self.right().saturating_sub(inner.right()), h: inner.h };
        [top, bottom, left, right].into_iter().filter(|r| !r.is_empty())
    }
}

/// Where a `src_w` x `src_h` picture goes inside `cell` and which part of
/// it is shown: `(destination, source crop)`, both even.
///
/// `contain` keeps the whole picture and centres it (the rest of the cell
/// is background); `cover` fills the cell and crops the picture's centre.
pub fn fit_rect(cell: Rect, src_w: u32, src_h: u32, contain: bool) -> (Rect, Rect) {
    let full = Rect { x: 0, y: 0, w: src_w & !1, h: src_h & !1 };
    if cell.is_empty() || full.is_empty() {
        return (Rect { w: 0, h: 0, ..cell }, full);
    }
    let (cw, ch) = (cell.w as f64, cell.h as f64);
    let (sw, sh) = (full.w as f64, full.h as f64);
    if contain {
        let scale = (cw / sw).min(ch / sh);
        let w = snap(sw * scale, cell.w).max(2);
        let h = snap(sh * scale, cell.h).max(2);
        let x = cell.x + (((cell.w - w) / 2) & !1);
        let y = cell.y + (((cell.h - h) / 2) & !1);
        (Rect { x, y, w, h }, full)
    } else {
        let cell_aspect = cw / ch;
        let (w, h) = if sw / sh > cell_aspect {
            (snap(sh * cell_aspect, full.w).max(2), full.h)
        } else {
            (full.w, snap(sw / cell_aspect, full.h).max(2))
        };
        let crop = Rect { x: ((full.w - w) / 2) & !1, y: ((full.h - h) / 2) & !1, w, h };
        (cell, crop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirds_snap_to_even_shared_edges() {
        let a = Rect::from_fractions(0.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1280, 720);
        let b = Rect::from_fractions(1.0 / 3.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1280, 720);
        let c = Rect::from_fractions(2.0 / 3.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1280, 720);
        assert_eq!((a.x, a.w, a.h), (0, 426, 240));
        assert_eq!((b.x, b.w), (426, 428));
        assert_eq!((c.x, c.right()), (854, 1280));
        for r in [a, b, c] {
            assert!(r.x % 2 == 0 && r.w % 2 == 0 && r.y % 2 == 0 && r.h % 2 == 0);
        }
    }

    #[test]
    fn contain_letterboxes_and_cover_crops() {
        let cell = Rect { x: 640, y: 0, w: 640, h: 720 };
        let (dst, crop) = fit_rect(cell, 1280, 720, true);
        assert_eq!(dst, Rect { x: 640, y: 180, w: 640, h: 360 });
        assert_eq!(crop, Rect { x: 0, y: 0, w: 1280, h: 720 });
        let bars: Vec<Rect> = cell.minus(&dst).collect();
        assert_eq!(bars, vec![Rect { x: 640, y: 0, w: 640, h: 180 }, Rect { x: 640, y: 540, w: 640, h: 180 }]);

        let (dst, crop) = fit_rect(cell, 1280, 720, false);
        assert_eq!(dst, cell);
        assert_eq!(crop, Rect { x: 320, y: 0, w: 640, h: 720 });
    }

    #[test]
    fn degenerate_inputs_give_empty_rects_not_panics() {
        assert!(Rect::from_fractions(f64::NAN, 0.0, 1.0, 1.0, 100, 100).w <= 100);
        assert!(fit_rect(Rect::default(), 100, 100, true).0.is_empty());
        assert!(fit_rect(Rect { x: 0, y: 0, w: 10, h: 10 }, 0, 0, false).0.is_empty());
        assert!(Rect { x: 0, y: 0, w: 4, h: 4 }.inset(2).is_empty());
    }
}

/// The size to scale a `src_w` x `src_h` picture down to so that it still
/// covers a `box_w` x `box_h` box (keeping its aspect ratio): what a sender
/// asked for a tile of that box needs to send. Never larger than the
/// picture; even, and at least 16x16.
pub fn cover_size(src_w: u32, src_h: u32, box_w: u32, box_h: u32) -> (u32, u32) {
    if src_w == 0 || src_h == 0 {
        return (src_w, src_h);
    }
    let scale = (box_w as f64 / src_w as f64).max(box_h as f64 / src_h as f64).min(1.0);
    // Rounded up to even, so the box stays covered.
    let even = |side: u32| (((side as f64 * scale).ceil() as u32 + 1) & !1).clamp(16, (side & !1).max(16));
    (even(src_w), even(src_h))
}

#[cfg(test)]
mod cover_tests {
    use super::cover_size;

    #[test]
    fn covers_the_box_without_growing() {
        // A 720p sender in a 320x180 tile sends 320x180.
        assert_eq!(cover_size(1280, 720, 320, 180), (320, 180));
        // A 4:3 sender covering a 16:9 tile keeps its width to the tile's.
        assert_eq!(cover_size(640, 480, 320, 180), (320, 240));
        // A box larger than the picture leaves it as it is.
        assert_eq!(cover_size(640, 360, 1280, 720), (640, 360));
        // Odd results are made even.
        assert_eq!(cover_size(1280, 720, 427, 240), (428, 242));
    }
}
