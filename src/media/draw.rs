//! Drawing on I420 pictures: solid rectangles, frames and 8x8 bitmap text.

use super::color::Yuv;
use super::frame::VideoFrame;
use crate::layout::Rect;
use font8x8::UnicodeFonts;

/// Fills `rect` (even coordinates, clipped to the picture) with `color`.
pub fn fill_rect(frame: &mut VideoFrame, rect: Rect, color: Yuv) {
    let r = clip(frame, rect);
    if r.is_empty() {
        return;
    }
    let [mut y, mut u, mut v] = frame.planes_mut();
    let (x0, y0, w, h) = (r.x as usize, r.y as usize, r.w as usize, r.h as usize);
    for row in y0..y0 + h {
        y.row_mut(row)[x0..x0 + w].fill(color.y);
    }
    for row in y0 / 2..(y0 + h) / 2 {
        u.row_mut(row)[x0 / 2..(x0 + w) / 2].fill(color.u);
        v.row_mut(row)[x0 / 2..(x0 + w) / 2].fill(color.v);
    }
}

/// Draws a frame `width` pixels wide just inside `rect`.
pub fn frame_rect(frame: &mut VideoFrame, rect: Rect, width: u32, color: Yuv) {
    let inner = rect.inset(width);
    if inner.is_empty() {
        fill_rect(frame, rect, color);
        return;
    }
    for band in rect.minus(&inner) {
        fill_rect(frame, band, color);
    }
}

fn clip(frame: &VideoFrame, rect: Rect) -> Rect {
    let (fw, fh) = (frame.width() as u32, frame.height() as u32);
    let x = rect.x.min(fw) & !1;
    let y = rect.y.min(fh) & !1;
    Rect { x, y, w: (rect.right().min(fw) & !1).saturating_sub(x), h: (rect.bottom().min(fh) & !1).saturating_sub(y) }
}

/// Size in pixels of `text` drawn at `scale` (8x8 glyphs, one column gap).
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let n = text.chars().count() as u32;
    (n * 8 * scale, 8 * scale)
}

/// How text is drawn.
#[derive(Clone, Copy, Debug)]
pub struct TextStyle {
    /// Each glyph pixel becomes a `scale` x `scale` block.
    pub scale: u32,
    /// Luma of the glyphs.
    pub fg: Yuv,
    /// A box behind the text, with a margin, if any.
    pub bg: Option<Yuv>,
}

impl TextStyle {
    /// White text at `scale`, optionally on a dark box.
    pub fn white(scale: u32, boxed: bool) -> Self {
        Self { scale, fg: Yuv { y: 235, u: 128, v: 128 }, bg: boxed.then_some(Yuv { y: 16, u: 128, v: 128 }) }
    }
}

/// Draws `text` with its top-left corner at (`x`, `y`). Characters the
/// font lacks are drawn as `?`. Clipped to the picture and to `clip_to`.
pub fn draw_text(frame: &mut VideoFrame, x: u32, y: u32, text: &str, style: TextStyle, clip_to: Rect) {
    let TextStyle { scale, fg, bg } = style;
    let scale = scale.max(1);
    let (tw, th) = text_size(text, scale);
    let margin = (scale * 2) & !1;
    if let Some(bg) = bg {
        let boxed = Rect {
            x: x.saturating_sub(margin) & !1,
            y: y.saturating_sub(margin) & !1,
            w: (tw + 2 * margin + 1) & !1,
            h: (th + 2 * margin + 1) & !1,
        };
        fill_rect(frame, intersect(boxed, clip_to), bg);
    }
    let limit = intersect(clip_to, clip(frame, clip_to));
    let [mut yp, _, _] = frame.planes_mut();
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
        let gx = x + i as u32 * 8 * scale;
        for (gy, bits) in glyph.iter().enumerate() {
            for bit in 0..8u32 {
                if bits & (1 << bit) == 0 {
                    continue;
                }
                let px = gx + bit * scale;
                let py = y + gy as u32 * scale;
                for yy in py..py + scale {
                    if yy < limit.y || yy >= limit.bottom() {
                        continue;
                    }
                    let row = yp.row_mut(yy as usize);
                    let x0 = px.max(limit.x);
                    let x1 = (px + scale).min(limit.right());
                    if x0 < x1 {
                        row[x0 as usize..x1 as usize].fill(fg.y);
                    }
                }
            }
        }
    }
}

fn intersect(a: Rect, b: Rect) -> Rect {
    let x = a.x.max(b.x);
    let y = a.y.max(b.y);
    let r = a.right().min(b.right());
    let bt = a.bottom().min(b.bottom());
    Rect { x, y, w: r.saturating_sub(x), h: bt.saturating_sub(y) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::color::Rgb;

    #[test]
    fn fills_only_inside_and_clips_outside() {
        let bg = Rgb::BLACK.to_yuv();
        let red = Rgb::new(255, 0, 0).to_yuv();
        let mut f = VideoFrame::new(32, 32, bg).unwrap();
        fill_rect(&mut f, Rect { x: 4, y: 4, w: 8, h: 8 }, red);
        fill_rect(&mut f, Rect { x: 30, y: 30, w: 100, h: 100 }, red);
        let fr = f.as_frame();
        assert_eq!(fr.yuv_at(5, 5), red);
        assert_eq!(fr.yuv_at(12, 12), bg);
        assert_eq!(fr.yuv_at(31, 31), red);
    }

    #[test]
    fn frame_leaves_the_middle_alone() {
        let bg = Rgb::BLACK.to_yuv();
        let white = Rgb::WHITE.to_yuv();
        let mut f = VideoFrame::new(32, 32, bg).unwrap();
        frame_rect(&mut f, Rect { x: 0, y: 0, w: 32, h: 32 }, 2, white);
        let fr = f.as_frame();
        assert_eq!(fr.yuv_at(0, 16), white);
        assert_eq!(fr.yuv_at(31, 16), white);
        assert_eq!(fr.yuv_at(16, 1), white);
        assert_eq!(fr.yuv_at(16, 16), bg);
        assert_eq!(fr.yuv_at(2, 2), bg);
    }

    #[test]
    fn text_lights_pixels_and_never_escapes_its_clip() {
        let bg = Rgb::BLACK.to_yuv();
        let mut f = VideoFrame::new(64, 32, bg).unwrap();
        let clip = Rect { x: 0, y: 0, w: 20, h: 32 };
        draw_text(&mut f, 2, 2, "HI €", TextStyle { scale: 2, fg: Rgb::WHITE.to_yuv(), bg: None }, clip);
        let fr = f.as_frame();
        let lit = (0..32).flat_map(|y| (0..20).map(move |x| (x, y))).filter(|&(x, y)| fr.y.at(x, y) > 200).count();
        assert!(lit > 20);
        for y in 0..32 {
            for x in 20..64 {
                assert_eq!(fr.y.at(x, y), bg.y);
            }
        }
    }
}
