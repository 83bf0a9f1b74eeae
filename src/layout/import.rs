//! FreeSWITCH video layouts (`conference_layouts.conf.xml`) to tessera
//! layout files.
//!
//! FreeSWITCH places images on a 360x360 grid stretched over the canvas:
//! `x`, `y` and `scale` (the side; `hscale` the height when it differs)
//! in 1/360ths, `floor="true"` for the floor holder (our speaker cell),
//! `zoom="true"` to crop and fill (our `cover`; without it the picture is
//! fitted whole, our `contain`). A `<group>` lists layouts of growing size
//! and the conference takes the smallest that holds everyone, which is a
//! tessera layout with one variant per member layout. Each converted file
//! is checked by the layout parser before it is returned. Pure: text in,
//! text out.

use super::Layout;
use std::collections::BTreeMap;
use std::fmt::Write;

/// FreeSWITCH's grid: coordinates are in 1/360ths of the canvas.
const GRID: f64 = 360.0;

/// Why a file or a layout could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not XML, or not FreeSWITCH's layout file.
    #[error("{0}")]
    File(String),
    /// One layout or group could not be converted (the others still are).
    #[error("{name}: {message}")]
    Layout {
        /// Layout or group name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// One image of a FreeSWITCH layout, in 1/360ths.
#[derive(Clone, Debug, PartialEq)]
struct Image {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    floor: bool,
    zoom: bool,
}

/// A converted layout.
#[derive(Debug)]
pub struct Imported {
    /// The tessera name (FreeSWITCH's, with anything but letters, digits,
    /// `-` and `_` made `-`).
    pub name: String,
    /// The TOML file.
    pub toml: String,
    /// What was changed or dropped on the way, for the person importing.
    pub notes: Vec<String>,
}

/// The canvas the converted layouts ask for.
#[derive(Clone, Copy, Debug)]
pub struct ImportCanvas {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// Converts every `<group>` and every `<layout>` in `xml`. Layouts that
/// cannot be converted come back as errors beside the others.
pub fn import(xml: &str, canvas: ImportCanvas) -> Result<(Vec<Imported>, Vec<ImportError>), ImportError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| ImportError::File(format!("not XML: {e}")))?;
    let mut layouts: BTreeMap<String, Vec<Image>> = BTreeMap::new();
    let mut order = Vec::new();
    let mut errors = Vec::new();
    let mut notes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in doc.descendants().filter(|n| n.has_tag_name("layout") && n.attribute("name").is_some()) {
        let name = node.attribute("name").unwrap_or_default().to_owned();
        let mut images = Vec::new();
        let mut bad = None;
        for (i, img) in node.children().filter(|c| c.has_tag_name("image")).enumerate() {
            match image(&img, notes.entry(name.clone()).or_default()) {
                Ok(im) => images.push(im),
                Err(e) => {
                    bad = Some(format!("image {}: {e}", i + 1));
                    break;
                }
            }
        }
        match bad {
            Some(message) => errors.push(ImportError::Layout { name, message }),
            None if images.is_empty() => errors.push(ImportError::Layout { name, message: "no <image> in it".into() }),
            None => {
                if layouts.insert(name.clone(), images).is_none() {
                    order.push(name);
                }
            }
        }
    }
    if layouts.is_empty() && errors.is_empty() {
        return Err(ImportError::File(
            "no <layout name=...> with <image> elements: is this conference_layouts.conf.xml?".into(),
        ));
    }
    let mut out = Vec::new();
    for group in doc.descendants().filter(|n| n.has_tag_name("group") && n.attribute("name").is_some()) {
        let name = group.attribute("name").unwrap_or_default().to_owned();
        let members: Vec<String> = group
            .children()
            .filter(|c| c.has_tag_name("layout"))
            .filter_map(|c| c.text().map(|t| t.trim().to_owned()))
            .collect();
        let mut found: Vec<(&str, &Vec<Image>)> = Vec::new();
        let mut group_notes = Vec::new();
        for m in &members {
            match layouts.get(m) {
                Some(images) => found.push((m, images)),
                None => group_notes.push(format!("layout `{m}` is not in the file: left out")),
            }
        }
        // The smallest that holds everyone: sorted by size, one variant each.
        found.sort_by_key(|(_, images)| images.len());
        found.dedup_by_key(|(_, images)| images.len());
        if found.is_empty() {
            errors.push(ImportError::Layout { name, message: "none of its layouts are in the file".into() });
            continue;
        }
        let mut variants = Vec::new();
        let mut from = 1;
        for (m, images) in &found {
            variants.push((from, images.len(), *images));
            from = images.len() + 1;
            group_notes.extend(notes.get(*m).into_iter().flatten().map(|n| format!("{m}: {n}")));
        }
        let description =
            format!("FreeSWITCH group `{name}` ({})", found.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", "));
        out.push(convert(&name, &description, &variants, canvas, group_notes));
    }
    for name in order {
        let images = &layouts[&name];
        let description = format!("FreeSWITCH layout `{name}`");
        let n = notes.remove(&name).unwrap_or_default();
        out.push(convert(&name, &description, &[(1, images.len(), images)], canvas, n));
    }
    let mut imported = Vec::new();
    for r in out {
        match r {
            Ok(i) => imported.push(i),
            Err(e) => errors.push(e),
        }
    }
    Ok((imported, errors))
}

fn number(node: &roxmltree::Node<'_, '_>, attr: &str) -> Result<Option<f64>, String> {
    match node.attribute(attr) {
        None => Ok(None),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
            _ => Err(format!("{attr}=\"{v}\" is not a number of 1/360ths")),
        },
    }
}

fn image(node: &roxmltree::Node<'_, '_>, notes: &mut Vec<String>) -> Result<Image, String> {
    let x = number(node, "x")?.unwrap_or(0.0);
    let y = number(node, "y")?.unwrap_or(0.0);
    let w = number(node, "scale")?.ok_or("no scale")?;
    let h = number(node, "hscale")?.unwrap_or(w);
    if w <= 0.0 || h <= 0.0 {
        return Err("a zero size".into());
    }
    let on = |a: &str| node.attribute(a).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    for ignored in ["reservation_id", "audio-position", "role-id", "overlap"] {
        if node.attribute(ignored).is_some() {
            let note = format!("`{ignored}` has no tessera equivalent: ignored");
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    Ok(Image { x, y, w, h, floor: on("floor") || on("floor-only"), zoom: on("zoom") })
}

/// Fractions with few digits (FreeSWITCH thirds stay exact enough to snap).
fn frac(v: f64) -> String {
    let s = format!("{:.6}", v.clamp(0.0, 1.0));
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_owned()
    }
}

fn convert(
    name: &str,
    description: &str,
    variants: &[(usize, usize, &Vec<Image>)],
    canvas: ImportCanvas,
    mut notes: Vec<String>,
) -> Result<Imported, ImportError> {
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let mut t = String::new();
    let _ = writeln!(t, "# Imported from FreeSWITCH's conference_layouts.conf.xml by `tessera layout import`.");
    let _ = writeln!(t, "name = {:?}", clean);
    let _ = writeln!(t, "description = {:?}", description);
    let _ = writeln!(
        t,
        "\n[canvas]\nwidth = {}\nheight = {}\nfps = {}\nbackground = \"#000000\"",
        canvas.width, canvas.height, canvas.fps
    );
    let _ = writeln!(t, "\n[style]\nfit = \"contain\"\nlabels = true\nplaceholder = {{ color = \"#2b2f3a\" }}");
    for (from, to, images) in variants {
        let range = if from == to { from.to_string() } else { format!("\"{from}-{to}\"") };
        let _ = writeln!(t, "\n[[variant]]\nparticipants = {range}");
        let mut speaker = false;
        for im in images.iter() {
            let (mut w, mut h) = (im.w, im.h);
            if im.x + w > GRID + 0.5 || im.y + h > GRID + 0.5 {
                notes.push(format!("an image at ({}, {}) reaches past the 360 grid: cut at its edge", im.x, im.y));
            }
            w = w.min(GRID - im.x);
            h = h.min(GRID - im.y);
            if w <= 0.0 || h <= 0.0 {
                notes.push(format!("an image at ({}, {}) lies outside the grid: left out", im.x, im.y));
                continue;
            }
            let _ = write!(
                t,
                "[[variant.cell]]\nx = {}\ny = {}\nw = {}\nh = {}\n",
                frac(im.x / GRID),
                frac(im.y / GRID),
                frac(w / GRID),
                frac(h / GRID)
            );
            if im.floor && !speaker {
                speaker = true;
                let _ = writeln!(t, "role = \"speaker\"");
            } else if im.floor {
                notes.push("more than one floor image: the first is the speaker cell".into());
            }
            if im.zoom {
                let _ = writeln!(t, "fit = \"cover\"");
            }
        }
    }
    Layout::parse(&t, format!("{clean}.toml")).map_err(|e| ImportError::Layout {
        name: name.to_owned(),
        message: format!("does not make a valid layout: {e}"),
    })?;
    notes.dedup();
    Ok(Imported { name: clean, toml: t, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANVAS: ImportCanvas = ImportCanvas { width: 1280, height: 720, fps: 30 };

    // Written for these tests in FreeSWITCH's format (not FreeSWITCH's own file).
    const XML: &str = r#"<configuration name="conference_layouts.conf" description="Video Layouts">
  <layout-settings>
    <layouts>
      <layout name="1x1"><image x="0" y="0" scale="360" floor="true"/></layout>
      <layout name="2x2">
        <image x="0" y="0" scale="180"/><image x="180" y="0" scale="180"/>
        <image x="0" y="180" scale="180"/><image x="180" y="180" scale="180"/>
      </layout>
      <layout name="3x3">
        <image x="0" y="0" scale="120"/><image x="120" y="0" scale="120"/><image x="240" y="0" scale="120"/>
        <image x="0" y="120" scale="120"/><image x="120" y="120" scale="120"/><image x="240" y="120" scale="120"/>
        <image x="0" y="240" scale="120"/><image x="120" y="240" scale="120"/><image x="240" y="240" scale="120"/>
      </layout>
      <layout name="1up_top_left+5">
        <image x="0" y="0" scale="240" floor="true" zoom="true"/>
        <image x="240" y="0" scale="120" reservation_id="presenter"/>
        <image x="240" y="120" scale="120"/>
        <image x="0" y="240" scale="120"/><image x="120" y="240" scale="120"/><image x="240" y="240" scale="120"/>
      </layout>
      <layout name="wide"><image x="0" y="90" scale="360" hscale="180" floor="true"/></layout>
      <layout name="broken"><image x="0" y="0" scale="big"/></layout>
    </layouts>
    <groups>
      <group name="grid"><layout>1x1</layout><layout>3x3</layout><layout>2x2</layout><layout>nope</layout></group>
    </groups>
  </layout-settings>
</configuration>"#;

    #[test]
    fn groups_become_variants_by_size_and_floors_become_speaker_cells() {
        let (imported, errors) = import(XML, CANVAS).unwrap();
        let names: Vec<&str> = imported.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["grid", "1x1", "2x2", "3x3", "1up_top_left-5", "wide"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("broken: image 1: scale=\"big\""), "{}", errors[0]);

        let grid = Layout::parse(&imported[0].toml, "grid.toml").unwrap();
        let ranges: Vec<(usize, usize, usize)> = grid.variants.iter().map(|v| (v.min, v.max, v.cells.len())).collect();
        assert_eq!(ranges, [(1, 1, 1), (2, 4, 4), (5, 9, 9)]);
        assert!(imported[0].notes.iter().any(|n| n.contains("`nope` is not in the file")));
        assert_eq!(grid.canvas.width, 1280);

        let up = Layout::parse(&imported[4].toml, "x.toml").unwrap();
        let v = &up.variants[0];
        assert_eq!((v.min, v.max, v.cells.len()), (1, 6, 6));
        assert_eq!(v.cells[0].role, super::super::Role::Speaker);
        assert_eq!(v.cells[0].fit, super::super::Fit::Cover);
        assert_eq!(v.cells[1].fit, super::super::Fit::Contain, "no zoom: the whole picture");
        assert!(imported[4].notes.iter().any(|n| n.contains("reservation_id")));
        let c = &v.cells[0];
        assert!((c.w - 2.0 / 3.0).abs() < 1e-5 && (c.h - 2.0 / 3.0).abs() < 1e-5, "{c:?}");

        let wide = Layout::parse(&imported[5].toml, "w.toml").unwrap();
        let c = &wide.variants[0].cells[0];
        assert!((c.y - 0.25).abs() < 1e-9 && (c.h - 0.5).abs() < 1e-9, "hscale is the height: {c:?}");
    }

    #[test]
    fn files_that_are_not_layouts_are_refused_clearly() {
        assert!(import("<not xml", CANVAS).unwrap_err().to_string().contains("not XML"));
        assert!(import("<configuration/>", CANVAS).unwrap_err().to_string().contains("conference_layouts.conf.xml"));
        // Past the grid: cut at its edge, with a note.
        let (ok, _) =
            import(r#"<x><layout name="big"><image x="300" y="0" scale="120"/></layout></x>"#, CANVAS).unwrap();
        assert!(ok[0].notes.iter().any(|n| n.contains("cut at its edge")), "{:?}", ok[0].notes);
        Layout::parse(&ok[0].toml, "big.toml").unwrap();
    }
}
