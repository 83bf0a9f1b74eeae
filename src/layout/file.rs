//! The layout file format: TOML in, a validated [`Layout`] or an error out.
//!
//! Every problem is reported with the file it came from and, past syntax,
//! the variant and cell it concerns. Nothing in a file can panic this code.

use super::{Border, Canvas, Cell, Fit, Layout, Placeholder, Rect, Role, Variant};
use crate::media::color::Rgb;
use crate::media::frame::VideoFrame;
use crate::media::scale::Filter;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest canvas side a layout may ask for.
pub const MAX_CANVAS: u32 = 3840;
/// Highest frame rate a layout may ask for.
pub const MAX_FPS: u32 = 60;
/// Most cells in one variant.
pub const MAX_CELLS: usize = 64;

/// A layout file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, a missing or unknown key, or a value of the wrong kind.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// Parser message, with line and column.
        message: String,
    },
    /// A problem with the layout as a whole.
    #[error("{file}: {message}")]
    Layout {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A problem with one variant.
    #[error("{file}: variant {variant} (participants {range}): {message}")]
    Variant {
        /// The file.
        file: PathBuf,
        /// 1-based variant number.
        variant: usize,
        /// Its participant range as written.
        range: String,
        /// What is wrong.
        message: String,
    },
    /// A problem with one cell.
    #[error("{file}: variant {variant} (participants {range}), cell {cell}: {message}")]
    Cell {
        /// The file.
        file: PathBuf,
        /// 1-based variant number.
        variant: usize,
        /// Its participant range as written.
        range: String,
        /// 1-based cell number.
        cell: usize,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayout {
    name: Option<String>,
    #[serde(default)]
    description: String,
    canvas: RawCanvas,
    #[serde(default)]
    style: RawStyle,
    #[serde(default, rename = "variant")]
    variants: Vec<RawVariant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanvas {
    width: i64,
    height: i64,
    #[serde(default = "default_fps")]
    fps: i64,
    #[serde(default)]
    background: Rgb,
}

fn default_fps() -> i64 {
    30
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStyle {
    #[serde(default)]
    fit: Fit,
    #[serde(default)]
    filter: Filter,
    #[serde(default = "yes")]
    labels: bool,
    border: Option<RawBorder>,
    placeholder: Option<RawPlaceholder>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RawBorder {
    width: i64,
    #[serde(default)]
    color: Rgb,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaceholder {
    color: Option<Rgb>,
    image: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCount {
    One(i64),
    Range(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    participants: RawCount,
    #[serde(default, rename = "cell")]
    cells: Vec<RawCell>,
    grid: Option<RawGrid>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCell {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    z: Option<i64>,
    fit: Option<Fit>,
    #[serde(default)]
    role: Role,
    border: Option<RawBorder>,
}

/// `grid = { columns, rows }`: shorthand for `columns * rows` equal cells,
/// filled left to right, top to bottom, optionally inside a margin and with
/// gaps between cells (fractions of the canvas).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrid {
    columns: i64,
    rows: i64,
    #[serde(default)]
    gap: f64,
    #[serde(default)]
    margin: f64,
    /// Keep only this many cells (the last row may be short), centred.
    cells: Option<i64>,
    fit: Option<Fit>,
}

/// Reads and validates one file.
pub(super) fn load(path: PathBuf) -> Result<Layout, LayoutError> {
    let text = std::fs::read_to_string(&path).map_err(|source| LayoutError::Read { file: path.clone(), source })?;
    parse(&text, path)
}

/// Loads every `*.toml` in `dir`: the good layouts by name, and an error
/// for each bad one (the caller logs them; one bad file does not stop the rest).
pub fn load_dir(dir: &Path) -> (BTreeMap<String, Arc<Layout>>, Vec<LayoutError>) {
    let mut layouts = BTreeMap::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            errors.push(LayoutError::Read { file: dir.to_path_buf(), source });
            return (layouts, errors);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        match load(path.clone()) {
            Ok(layout) => {
                if layouts.contains_key(&layout.name) {
                    errors.push(LayoutError::Layout {
                        file: path,
                        message: format!("another file already defines layout `{}`", layout.name),
                    });
                } else {
                    layouts.insert(layout.name.clone(), Arc::new(layout));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (layouts, errors)
}

/// Parses and validates layout text.
pub(super) fn parse(text: &str, file: PathBuf) -> Result<Layout, LayoutError> {
    let raw: RawLayout = toml::from_str(text)
        .map_err(|e| LayoutError::Syntax { file: file.clone(), message: syntax_message(text, &e) })?;
    Validator { file: &file }.layout(raw)
}

fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message.to_owned(),
    }
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn layout_err(&self, message: impl Into<String>) -> LayoutError {
        LayoutError::Layout { file: self.file.to_path_buf(), message: message.into() }
    }

    fn layout(&self, raw: RawLayout) -> Result<Layout, LayoutError> {
        let name = match raw.name {
            Some(name) => name,
            None => self.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.layout_err(format!("name `{name}` must be 1-64 characters of A-Z, a-z, 0-9, - and _")));
        }
        let canvas = self.canvas(&raw.canvas)?;
        let style = &raw.style;
        let default_border = match style.border {
            Some(b) => self.border(b).map_err(|m| self.layout_err(format!("style.border: {m}")))?,
            None => Border::default(),
        };
        let placeholder = self.placeholder(style.placeholder.as_ref())?;

        if raw.variants.is_empty() {
            return Err(self.layout_err("no [[variant]]: a layout needs at least one"));
        }
        let mut variants = Vec::with_capacity(raw.variants.len());
        for (i, rv) in raw.variants.iter().enumerate() {
            variants.push(self.variant(i + 1, rv, &canvas, style.fit, default_border)?);
        }
        self.coverage(&raw.variants, &mut variants)?;
        Ok(Layout {
            name,
            description: raw.description,
            canvas,
            filter: style.filter,
            labels: style.labels,
            placeholder,
            variants,
            source: self.file.to_path_buf(),
        })
    }

    fn canvas(&self, raw: &RawCanvas) -> Result<Canvas, LayoutError> {
        for (what, v) in [("width", raw.width), ("height", raw.height)] {
            if v < 16 || v > MAX_CANVAS as i64 || v % 2 != 0 {
                return Err(self.layout_err(format!("canvas {what} {v} must be even and between 16 and {MAX_CANVAS}")));
            }
        }
        if raw.fps < 1 || raw.fps > MAX_FPS as i64 {
            return Err(self.layout_err(format!("canvas fps {} must be between 1 and {MAX_FPS}", raw.fps)));
        }
        Ok(Canvas {
            width: raw.width as u32,
            height: raw.height as u32,
            fps: raw.fps as u32,
            background: raw.background,
        })
    }

    fn border(&self, raw: RawBorder) -> Result<Border, String> {
        if !(0..=64).contains(&raw.width) {
            return Err(format!("border width {} must be between 0 and 64 pixels", raw.width));
        }
        Ok(Border { width: raw.width as u32, color: raw.color })
    }

    fn placeholder(&self, raw: Option<&RawPlaceholder>) -> Result<Placeholder, LayoutError> {
        let color = raw.and_then(|p| p.color).unwrap_or(Rgb::new(0x30, 0x30, 0x38));
        let image = match raw.and_then(|p| p.image.as_ref()) {
            None => None,
            Some(rel) => {
                let path = match self.file.parent() {
                    Some(dir) if rel.is_relative() => dir.join(rel),
                    _ => rel.clone(),
                };
                Some(
                    load_image(&path)
                        .map_err(|m| self.layout_err(format!("placeholder image {}: {m}", path.display())))?,
                )
            }
        };
        Ok(Placeholder { color, image })
    }

    fn variant(
        &self,
        number: usize,
        raw: &RawVariant,
        canvas: &Canvas,
        fit: Fit,
        border: Border,
    ) -> Result<Variant, LayoutError> {
        let range = match &raw.participants {
            RawCount::One(n) => n.to_string(),
            RawCount::Range(s) => s.clone(),
        };
        let variant_err = |message: String| LayoutError::Variant {
            file: self.file.to_path_buf(),
            variant: number,
            range: range.clone(),
            message,
        };
        let (min, max) = parse_count(&raw.participants).map_err(variant_err)?;
        let mut cells = Vec::new();
        if let Some(grid) = &raw.grid {
            cells.extend(grid_cells(grid, grid.fit.unwrap_or(fit), border).map_err(variant_err)?);
        }
        for (i, rc) in raw.cells.iter().enumerate() {
            let cell_err = |message: String| LayoutError::Cell {
                file: self.file.to_path_buf(),
                variant: number,
                range: range.clone(),
                cell: cells.len() + 1,
                message,
            };
            let b = match rc.border {
                Some(b) => self.border(b).map_err(cell_err)?,
                None => border,
            };
            let cell = Cell {
                x: rc.x,
                y: rc.y,
                w: rc.w,
                h: rc.h,
                z: rc.z.unwrap_or(i as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                fit: rc.fit.unwrap_or(fit),
                role: rc.role,
                border: b,
            };
            check_cell(&cell, canvas).map_err(cell_err)?;
            cells.push(cell);
        }
        if cells.is_empty() {
            return Err(variant_err("no cells: give `grid = {...}` or [[variant.cell]] entries".into()));
        }
        if cells.len() > MAX_CELLS {
            return Err(variant_err(format!("{} cells; at most {MAX_CELLS}", cells.len())));
        }
        if cells.iter().filter(|c| c.role == Role::Speaker).count() > 1 {
            return Err(variant_err("more than one `speaker` cell".into()));
        }
        Ok(Variant { min, max, cells })
    }

    /// Variants must cover 1, 2, ... up to the largest count, once each.
    fn coverage(&self, raw: &[RawVariant], variants: &mut [Variant]) -> Result<(), LayoutError> {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        order.sort_by_key(|&i| variants[i].min);
        let mut next = 1;
        for &i in &order {
            let v = &variants[i];
            let range = match &raw[i].participants {
                RawCount::One(n) => n.to_string(),
                RawCount::Range(s) => s.clone(),
            };
            if v.min > next {
                return Err(self.layout_err(format!(
                    "no variant for {} participant{}: variants must cover every count from 1 up",
                    if v.min - 1 == next { next.to_string() } else { format!("{next}-{}", v.min - 1) },
                    if v.min - 1 == next && next == 1 { "" } else { "s" }
                )));
            }
            if v.min < next {
                return Err(LayoutError::Variant {
                    file: self.file.to_path_buf(),
                    variant: i + 1,
                    range,
                    message: format!("overlaps another variant (counts below {next} are already covered)"),
                });
            }
            next = v.max + 1;
        }
        variants.sort_by_key(|v| v.min);
        Ok(())
    }
}

fn parse_count(raw: &RawCount) -> Result<(usize, usize), String> {
    let (min, max) = match raw {
        RawCount::One(n) => (*n, *n),
        RawCount::Range(s) => {
            let bad = || format!("participants = \"{s}\" must be a count like 4 or a range like \"3-4\"");
            let (a, b) = s.split_once('-').ok_or_else(bad)?;
            let a: i64 = a.trim().parse().map_err(|_| bad())?;
            let b: i64 = b.trim().parse().map_err(|_| bad())?;
            (a, b)
        }
    };
    if min < 1 || max < min || max > 1024 {
        return Err(format!("participant range {min}-{max} must satisfy 1 <= min <= max <= 1024"));
    }
    Ok((min as usize, max as usize))
}

fn check_cell(cell: &Cell, canvas: &Canvas) -> Result<(), String> {
    for (name, v) in [("x", cell.x), ("y", cell.y), ("w", cell.w), ("h", cell.h)] {
        if !v.is_finite() {
            return Err(format!("{name} = {v} is not a number"));
        }
    }
    if cell.w <= 0.0 || cell.h <= 0.0 {
        return Err(format!("size {} x {} must be positive", cell.w, cell.h));
    }
    const EPS: f64 = 1e-9;
    if cell.x < 0.0 || cell.y < 0.0 {
        return Err(format!("position ({}, {}) is outside the canvas (0..1)", cell.x, cell.y));
    }
    if cell.x + cell.w > 1.0 + EPS {
        return Err(format!("x + w = {} is outside the canvas (0..1)", cell.x + cell.w));
    }
    if cell.y + cell.h > 1.0 + EPS {
        return Err(format!("y + h = {} is outside the canvas (0..1)", cell.y + cell.h));
    }
    let rect: Rect = cell.rect(canvas.width, canvas.height);
    if rect.w < 2 || rect.h < 2 {
        return Err(format!("is only {}x{} pixels on the {}x{} canvas", rect.w, rect.h, canvas.width, canvas.height));
    }
    Ok(())
}

fn grid_cells(grid: &RawGrid, fit: Fit, border: Border) -> Result<Vec<Cell>, String> {
    let (cols, rows) = (grid.columns, grid.rows);
    if !(1..=16).contains(&cols) || !(1..=16).contains(&rows) {
        return Err(format!("grid {cols}x{rows}: columns and rows must be between 1 and 16"));
    }
    let (cols, rows) = (cols as usize, rows as usize);
    let count = match grid.cells {
        None => cols * rows,
        Some(n) if n >= 1 && (n as usize) <= cols * rows => n as usize,
        Some(n) => return Err(format!("grid cells = {n} must be between 1 and {}", cols * rows)),
    };
    for (what, v) in [("gap", grid.gap), ("margin", grid.margin)] {
        if !v.is_finite() || !(0.0..0.25).contains(&v) {
            return Err(format!("grid {what} = {v} must be a fraction in 0..0.25"));
        }
    }
    let cw = (1.0 - 2.0 * grid.margin - grid.gap * (cols - 1) as f64) / cols as f64;
    let ch = (1.0 - 2.0 * grid.margin - grid.gap * (rows - 1) as f64) / rows as f64;
    if cw <= 0.0 || ch <= 0.0 {
        return Err("grid gap and margin leave no room for cells".into());
    }
    let mut cells = Vec::with_capacity(count);
    for i in 0..count {
        let (row, col) = (i / cols, i % cols);
        // A short last row is centred.
        let in_row = if row == count / cols && count % cols != 0 { count % cols } else { cols };
        let offset = (cols - in_row) as f64 * (cw + grid.gap) / 2.0;
        cells.push(Cell {
            x: grid.margin + offset + col as f64 * (cw + grid.gap),
            y: grid.margin + row as f64 * (ch + grid.gap),
            w: cw,
            h: ch,
            z: 0,
            fit,
            role: Role::Any,
            border,
        });
    }
    Ok(cells)
}

/// Loads an image file into an I420 frame (even-cropped).
pub(crate) fn load_image(path: &Path) -> Result<VideoFrame, String> {
    let img = image::open(path).map_err(|e| e.to_string())?.to_rgb8();
    let (w, h) = (img.width() as usize & !1, img.height() as usize & !1);
    if w < 2 || h < 2 || w > 4096 || h > 4096 {
        return Err(format!("{}x{} is not between 2x2 and 4096x4096", img.width(), img.height()));
    }
    let mut frame = VideoFrame::new(w, h, Default::default()).map_err(|e| e.to_string())?;
    crate::media::convert::rgb_to_i420(img.as_raw(), img.width() as usize, &mut frame);
    Ok(frame)
}

#[cfg(test)]
mod tests;
