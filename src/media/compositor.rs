//! The compositor: one I420 canvas from the latest picture of each source,
//! tiled by a layout.
//!
//! Each plane of each picture is scaled straight into its tile of the
//! canvas (see [`crate::media::scale`]); there is no RGB and no staging
//! image. The canvas persists between renders: when the tiling is the same
//! as last time, only tiles whose picture changed are drawn again, together
//! with any tile above them (by `z`) that overlaps them.

use super::color::Yuv;
use super::draw::{draw_text, fill_rect, frame_rect, text_size, TextStyle};
use super::frame::{FrameError, FrameRef, VideoFrame};
use super::scale::{ScalePath, Scaler};
use crate::layout::{fit_rect, Cell, Fit, Layout, Rect, Role, Variant};
use std::sync::Arc;

/// One participant as the compositor sees it, in join order.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// Stable identity (the same participant keeps the same id).
    pub id: u64,
    /// Display name, for placeholders and labels.
    pub name: &'a str,
    /// Latest picture, if any.
    pub frame: Option<FrameRef<'a>>,
    /// Changes whenever `frame`'s content changes (a decoded-frame counter).
    pub generation: u64,
}

/// What one render did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// The whole canvas was redrawn (tiling changed, or first render).
    pub full: bool,
    /// Tiles drawn.
    pub drawn: usize,
    /// Tiles left as they were.
    pub kept: usize,
}

/// Which source fills which cell, and enough about it to know whether the
/// tiling is unchanged since the last render.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    cell: usize,
    source: Option<(u64, Option<(usize, usize)>)>,
}

#[derive(Clone, Debug)]
struct Drawn {
    layout: Arc<Layout>,
    variant: usize,
    slots: Vec<Slot>,
    generations: Vec<u64>,
}

/// One render's working lists, kept between renders so that a render
/// allocates nothing once the room's size has been seen.
#[derive(Debug, Default)]
struct Scratch {
    ids: Vec<u64>,
    assignment: Vec<(usize, Option<usize>)>,
    slots: Vec<Slot>,
    generations: Vec<u64>,
    rects: Vec<Rect>,
    dirty: Vec<bool>,
}

/// Renders layouts onto a reusable canvas.
pub struct Compositor {
    canvas: VideoFrame,
    scaler: Scaler,
    drawn: Option<Drawn>,
    scratch: Scratch,
    last_paths: Vec<ScalePath>,
}

impl Compositor {
    /// A compositor with a `width` x `height` canvas.
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        Ok(Self {
            canvas: VideoFrame::new(width as usize, height as usize, Yuv::default())?,
            scaler: Scaler::new(),
            drawn: None,
            scratch: Scratch::default(),
            last_paths: Vec::new(),
        })
    }

    /// The canvas as last rendered.
    pub fn canvas(&self) -> &VideoFrame {
        &self.canvas
    }

    /// Changes the canvas size; the next render redraws everything.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), FrameError> {
        self.canvas.reshape(width as usize, height as usize)?;
        self.drawn = None;
        Ok(())
    }

    /// Forgets what is on the canvas; the next render redraws everything.
    pub fn invalidate(&mut self) {
        self.drawn = None;
    }

    /// Scale paths taken by the last render, one per plane drawn.
    pub fn last_paths(&self) -> &[ScalePath] {
        &self.last_paths
    }

    /// Renders `sources` (in join order) with `layout`; `speaker` is the
    /// active speaker's id, for `speaker` cells.
    pub fn render(&mut self, layout: &Arc<Layout>, sources: &[Source<'_>], speaker: Option<u64>) -> RenderStats {
        self.last_paths.clear();
        let (width, height) = (self.canvas.width() as u32, self.canvas.height() as u32);
        let background = layout.canvas.background.to_yuv();
        let Some((variant_index, variant)) = layout.variant_for(sources.len()) else {
            fill_rect(&mut self.canvas, Rect { x: 0, y: 0, w: width, h: height }, background);
            self.drawn = None;
            return RenderStats { full: true, ..RenderStats::default() };
        };
        let mut sc = std::mem::take(&mut self.scratch);
        sc.ids.clear();
        sc.ids.extend(sources.iter().map(|s| s.id));
        assign_into(variant, &sc.ids, speaker, &mut sc.assignment);
        sc.slots.clear();
        sc.slots.extend(sc.assignment.iter().map(|&(cell, src)| Slot {
            cell,
            source: src.map(|i| {
                let s = &sources[i];
                (s.id, s.frame.map(|f| (f.width(), f.height())))
            }),
        }));
        sc.generations.clear();
        sc.generations.extend(sc.assignment.iter().map(|&(_, src)| src.map_or(0, |i| sources[i].generation)));

        let same_tiling = self
            .drawn
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(&d.layout, layout) && d.variant == variant_index && d.slots == sc.slots);
        sc.rects.clear();
        sc.rects.extend(sc.assignment.iter().map(|&(cell, _)| variant.cells[cell].rect(width, height)));
        sc.dirty.clear();
        match (&self.drawn, same_tiling) {
            (Some(d), true) => {
                sc.dirty.extend(
                    sc.generations.iter().zip(&d.generations).zip(&sc.assignment).map(|((now, before), &(_, src))| {
                        src.is_some_and(|i| sources[i].frame.is_some()) && now != before
                    }),
                )
            }
            _ => sc.dirty.resize(sc.assignment.len(), true),
        }
        // Assignment is in z order: a redrawn tile forces every later tile
        // that overlaps it to be redrawn on top.
        for i in 0..sc.dirty.len() {
            if sc.dirty[i] {
                for j in i + 1..sc.dirty.len() {
                    if sc.rects[i].intersects(&sc.rects[j]) {
                        sc.dirty[j] = true;
                    }
                }
            }
        }

        let full = !same_tiling;
        if full {
            fill_rect(&mut self.canvas, Rect { x: 0, y: 0, w: width, h: height }, background);
        }
        let mut stats = RenderStats { full, ..RenderStats::default() };
        for (k, &(cell, src)) in sc.assignment.iter().enumerate() {
            if !sc.dirty[k] {
                stats.kept += 1;
                continue;
            }
            let cell = &variant.cells[cell];
            match src {
                Some(i) => self.draw_tile(layout, cell, sc.rects[k], &sources[i]),
                // An empty cell is background, already painted on a full redraw;
                // repaint it when something below was redrawn over it.
                None if !full => fill_rect(&mut self.canvas, sc.rects[k], background),
                None => {}
            }
            stats.drawn += 1;
        }
        // What was drawn is remembered by swapping lists, not copying them.
        match &mut self.drawn {
            Some(d) => {
                if !Arc::ptr_eq(&d.layout, layout) {
                    d.layout = layout.clone();
                }
                d.variant = variant_index;
                std::mem::swap(&mut d.slots, &mut sc.slots);
                std::mem::swap(&mut d.generations, &mut sc.generations);
            }
            None => {
                self.drawn = Some(Drawn {
                    layout: layout.clone(),
                    variant: variant_index,
                    slots: std::mem::take(&mut sc.slots),
                    generations: std::mem::take(&mut sc.generations),
                });
            }
        }
        self.scratch = sc;
        stats
    }

    fn draw_tile(&mut self, layout: &Layout, cell: &Cell, rect: Rect, source: &Source<'_>) {
        let width = self.canvas.width() as u32;
        let background = layout.canvas.background.to_yuv();
        let border = border_px(layout, cell, width);
        if border > 0 {
            frame_rect(&mut self.canvas, rect, border, cell.border.color.to_yuv());
        }
        let inner = rect.inset(border);
        if inner.is_empty() {
            return;
        }
        match source.frame {
            Some(frame) => {
                let (dst, crop) =
                    fit_rect(inner, frame.width() as u32, frame.height() as u32, cell.fit == Fit::Contain);
                for band in inner.minus(&dst) {
                    fill_rect(&mut self.canvas, band, background);
                }
                self.blit(&frame, crop, dst, layout.filter);
                if layout.labels {
                    self.label(inner, source.name);
                }
            }
            None => self.placeholder(layout, inner, source.name),
        }
    }

    /// Scales the `crop` part of `frame` into `dst` of the canvas, plane by plane.
    fn blit(&mut self, frame: &FrameRef<'_>, crop: Rect, dst: Rect, filter: crate::media::scale::Filter) {
        if dst.is_empty() || crop.is_empty() {
            return;
        }
        let Ok(src) = frame.crop(crop.x as usize, crop.y as usize, crop.w as usize, crop.h as usize) else {
            return;
        };
        let [mut cy, mut cu, mut cv] = self.canvas.planes_mut();
        let (x, y, w, h) = (dst.x as usize, dst.y as usize, dst.w as usize, dst.h as usize);
        let planes = [
            (src.y, cy.crop_mut(x, y, w, h)),
            (src.u, cu.crop_mut(x / 2, y / 2, w / 2, h / 2)),
            (src.v, cv.crop_mut(x / 2, y / 2, w / 2, h / 2)),
        ];
        for (src_plane, dst_plane) in planes {
            let Ok(mut dst_plane) = dst_plane else { continue };
            match self.scaler.scale(&src_plane, &mut dst_plane, filter) {
                Ok(path) => self.last_paths.push(path),
                Err(e) => tracing::trace!(error = %e, "tile not scaled"),
            }
        }
    }

    fn placeholder(&mut self, layout: &Layout, inner: Rect, name: &str) {
        let ph = &layout.placeholder;
        fill_rect(&mut self.canvas, inner, ph.color.to_yuv());
        if let Some(image) = &ph.image {
            let (dst, crop) = fit_rect(inner, image.width() as u32, image.height() as u32, true);
            self.blit(&image.as_frame(), crop, dst, layout.filter);
        }
        if name.is_empty() {
            return;
        }
        let (tw, th) = text_size(name, 1);
        let scale = ((inner.w * 3 / 4) / tw.max(1)).min(inner.h / 5 / th.max(1)).clamp(1, 8);
        let (tw, th) = text_size(name, scale);
        let x = inner.x + inner.w.saturating_sub(tw) / 2;
        let y = inner.y + inner.h.saturating_sub(th) / 2;
        draw_text(&mut self.canvas, x, y, name, TextStyle::white(scale, false), inner);
    }

    fn label(&mut self, inner: Rect, name: &str) {
        if name.is_empty() || inner.h < 48 || inner.w < 64 {
            return;
        }
        let scale = if inner.h >= 360 { 2 } else { 1 };
        let max_chars = ((inner.w / 2) / (8 * scale)) as usize;
        let text: String = name.chars().take(max_chars.max(1)).collect();
        let (_, th) = text_size(&text, scale);
        let pad = 4 * scale;
        let x = inner.x + pad + 2 * scale;
        let y = (inner.bottom().saturating_sub(th + pad + 2 * scale)).max(inner.y);
        draw_text(&mut self.canvas, x, y, &text, TextStyle::white(scale, true), inner);
    }
}

/// Border width in pixels of a `width`-wide view: the layout gives it in
/// its own canvas's pixels.
fn border_px(layout: &Layout, cell: &Cell, width: u32) -> u32 {
    if cell.border.width == 0 {
        0
    } else {
        ((cell.border.width as u64 * width as u64 / layout.canvas.width.max(1) as u64) as u32).max(2) & !1
    }
}

/// Which source goes in which cell, in drawing (z) order: the speaker (or
/// the first to join, before anyone has spoken) in the `speaker` cell,
/// everyone else in join order through the `any` cells.
fn assign(variant: &Variant, ids: &[u64], speaker: Option<u64>) -> Vec<(usize, Option<usize>)> {
    let mut out = Vec::with_capacity(variant.cells.len());
    assign_into(variant, ids, speaker, &mut out);
    out
}

/// [`assign`] into a list kept by the caller.
fn assign_into(variant: &Variant, ids: &[u64], speaker: Option<u64>, out: &mut Vec<(usize, Option<usize>)>) {
    let speaker_cell = variant.cells.iter().position(|c| c.role == Role::Speaker);
    let featured = speaker_cell.map(|_| speaker.and_then(|id| ids.iter().position(|&s| s == id)).unwrap_or(0));
    let mut rest = (0..ids.len()).filter(|&i| Some(i) != featured);
    out.clear();
    out.extend(variant.cells.iter().enumerate().map(|(ci, c)| match c.role {
        Role::Speaker => (ci, featured.filter(|&i| i < ids.len())),
        Role::Any => (ci, rest.next()),
    }));
    // By z, then declaration order (what a stable sort would keep), with
    // no allocation.
    out.sort_unstable_by_key(|&(ci, _)| (variant.cells[ci].z, ci));
}

/// Where one participant's picture lands on the canvas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The participant's id.
    pub id: u64,
    /// The cell.
    pub cell: Rect,
    /// The cell inside its border: where the picture is fitted.
    pub inner: Rect,
    /// How it is fitted.
    pub fit: Fit,
}

/// Where the compositor puts each of `ids` (in join order) on a `width` x
/// `height` canvas of `layout`, in drawing order. Receivers use it to find
/// a participant's tile in a composite.
pub fn placements(layout: &Layout, ids: &[u64], speaker: Option<u64>, width: u32, height: u32) -> Vec<Placement> {
    let Some((_, variant)) = layout.variant_for(ids.len()) else { return Vec::new() };
    assign(variant, ids, speaker)
        .into_iter()
        .filter_map(|(ci, src)| {
            let cell = &variant.cells[ci];
            let rect = cell.rect(width, height);
            src.map(|i| Placement {
                id: ids[i],
                cell: rect,
                inner: rect.inset(border_px(layout, cell, width)),
                fit: cell.fit,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
