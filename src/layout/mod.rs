//! Layout files: how a room's canvas is cut into tiles.
//!
//! A layout is a TOML file in `layouts/` (format in `layouts/README.md`):
//! a canvas (size, frame rate, background) and *variants* keyed by
//! participant count, each a list of cells in canvas fractions. The
//! compositor asks [`Layout::variant_for`] for the variant matching the
//! current count and [`Cell::rect`] for each cell's pixels at whatever size
//! the view is rendered.
//!
//! Parsing and validation live in [`file`]; a bad file is an error naming
//! the file, the variant, the cell and the problem, never a panic.

mod file;
mod geometry;
pub mod import;

pub use file::{load_dir, LayoutError};
pub use geometry::{cover_size, fit_rect, Rect};

use crate::media::color::Rgb;
use crate::media::frame::VideoFrame;
use crate::media::scale::Filter;
use serde::Deserialize;
use std::path::PathBuf;

/// How a source picture fills its cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Whole picture visible; bars of background colour where aspect ratios differ.
    Contain,
    /// Cell filled; the picture's centre is cropped to the cell's aspect ratio.
    #[default]
    Cover,
}

/// Who goes into a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The active speaker.
    Speaker,
    /// Everyone else, in join order.
    #[default]
    Any,
}

/// A frame drawn inside a cell's edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Border {
    /// Width in canvas pixels (rounded to even at render size); 0 for none.
    pub width: u32,
    /// Colour.
    pub color: Rgb,
}

/// What a participant without a picture shows.
#[derive(Clone, Debug, Default)]
pub struct Placeholder {
    /// Fill colour.
    pub color: Rgb,
    /// Optional image (already converted to I420), drawn with `contain`.
    pub image: Option<VideoFrame>,
}

/// The canvas a layout renders at by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canvas {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Background colour.
    pub background: Rgb,
}

/// One tile position.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Left edge, fraction of the canvas width.
    pub x: f64,
    /// Top edge, fraction of the canvas height.
    pub y: f64,
    /// Width, fraction of the canvas width.
    pub w: f64,
    /// Height, fraction of the canvas height.
    pub h: f64,
    /// Drawing order: higher is drawn later (on top).
    pub z: i32,
    /// Fit mode.
    pub fit: Fit,
    /// Who fills it.
    pub role: Role,
    /// Border.
    pub border: Border,
}

impl Cell {
    /// The cell's pixels on a `width` x `height` canvas, edges snapped to
    /// even coordinates so chroma lines up and neighbours share edges.
    pub fn rect(&self, width: u32, height: u32) -> Rect {
        Rect::from_fractions(self.x, self.y, self.w, self.h, width, height)
    }
}

/// The cells used for a range of participant counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Smallest participant count this variant serves.
    pub min: usize,
    /// Largest participant count this variant serves.
    pub max: usize,
    /// Cells in fill order (drawing order is by `z`).
    pub cells: Vec<Cell>,
}

/// A validated layout.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Name (the file stem unless the file says otherwise).
    pub name: String,
    /// Human description.
    pub description: String,
    /// Default canvas.
    pub canvas: Canvas,
    /// Resize filter.
    pub filter: Filter,
    /// Whether tiles carry their participant's name.
    pub labels: bool,
    /// What a participant without video shows.
    pub placeholder: Placeholder,
    /// Variants sorted by `min`, covering 1..=max without gaps.
    pub variants: Vec<Variant>,
    /// Where the layout came from.
    pub source: PathBuf,
}

impl Layout {
    /// The variant for `count` participants: the one whose range holds it,
    /// the largest one past the end (extra participants are not shown), or
    /// `None` for an empty room.
    pub fn variant_for(&self, count: usize) -> Option<(usize, &Variant)> {
        if count == 0 {
            return None;
        }
        self.variants
            .iter()
            .enumerate()
            .find(|(_, v)| (v.min..=v.max).contains(&count))
            .or_else(|| self.variants.iter().enumerate().next_back())
    }

    /// The largest participant count with a variant of its own.
    pub fn max_participants(&self) -> usize {
        self.variants.last().map_or(0, |v| v.max)
    }

    /// Parses and validates layout text; `source` names it in errors and
    /// anchors a relative placeholder image path.
    pub fn parse(text: &str, source: impl Into<PathBuf>) -> Result<Layout, LayoutError> {
        file::parse(text, source.into())
    }

    /// Reads, parses and validates a layout file.
    pub fn load(path: impl Into<PathBuf>) -> Result<Layout, LayoutError> {
        file::load(path.into())
    }
}
