//! What a viewer would see: the right colour in each cell, background in
//! letterbox bars, borders where they belong, placeholders for the
//! pictureless, and only changed tiles redrawn.

use super::*;
use crate::layout::Layout;
use crate::media::color::Rgb;
use crate::media::convert::mean_rgb;
use crate::media::frame::PlaneRef;
use crate::media::pattern::palette;
use std::path::PathBuf;

fn shipped(name: &str) -> Arc<Layout> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layouts").join(format!("{name}.toml"));
    Arc::new(Layout::load(path).unwrap())
}

/// `n` flat pictures, participant i in `palette(i)`.
fn coloured(n: usize, w: usize, h: usize) -> Vec<VideoFrame> {
    (0..n).map(|i| VideoFrame::new(w, h, palette(i).to_yuv()).unwrap()).collect()
}

fn sources<'a>(frames: &'a [VideoFrame], names: &'a [String]) -> Vec<Source<'a>> {
    frames
        .iter()
        .zip(names)
        .enumerate()
        .map(|(i, (f, name))| Source { id: 100 + i as u64, name, frame: Some(f.as_frame()), generation: 1 })
        .collect()
}

fn names_for(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("P{i}")).collect()
}

fn centre_colour(canvas: &VideoFrame, r: Rect) -> Rgb {
    let (cx, cy) = ((r.x + r.w / 2) as usize, (r.y + r.h / 2) as usize);
    mean_rgb(&canvas.as_frame(), cx - 2, cy - 2, 4, 4)
}

fn close(a: Rgb, b: Rgb) -> bool {
    a.distance(b) < 12.0
}

#[test]
fn every_layout_puts_each_participant_in_its_cell() {
    for layout_name in ["grid", "speaker", "pip", "side-by-side"] {
        let layout = shipped(layout_name);
        for n in [1, 2, 3, 4, 5, 7, 9, 12, 16] {
            for (cw, ch) in [(1280u32, 720u32), (640, 360)] {
                let frames = coloured(n, 640, 360);
                let names = names_for(n);
                let srcs = sources(&frames, &names);
                let mut comp = Compositor::new(cw, ch).unwrap();
                comp.render(&layout, &srcs, None);
                let (_, variant) = layout.variant_for(n).unwrap();
                // Expected fill: speaker cell = first to join (nobody spoke),
                // `any` cells = the others in join order.
                let has_speaker_cell = variant.cells.iter().any(|c| c.role == Role::Speaker);
                let mut next = if has_speaker_cell { 1 } else { 0 };
                for (ci, cell) in variant.cells.iter().enumerate() {
                    let who = match cell.role {
                        Role::Speaker => Some(0),
                        Role::Any if next < n => {
                            next += 1;
                            Some(next - 1)
                        }
                        Role::Any => None,
                    };
                    // Skip cells hidden under a later, higher one.
                    let rect = cell.rect(cw, ch);
                    let covered = variant.cells.iter().any(|o| o.z > cell.z && o.rect(cw, ch).intersects(&rect));
                    if covered {
                        continue;
                    }
                    let expected = who.map_or(layout.canvas.background, palette);
                    let got = centre_colour(comp.canvas(), rect);
                    assert!(
                        close(got, expected),
                        "{layout_name}, {n} people, {cw}x{ch}, cell {}: {got} != {expected}",
                        ci + 1
                    );
                }
            }
        }
    }
}

#[test]
fn the_active_speaker_takes_the_speaker_cell() {
    let layout = shipped("speaker");
    let frames = coloured(5, 640, 360);
    let names = names_for(5);
    let srcs = sources(&frames, &names);
    let mut comp = Compositor::new(1280, 720).unwrap();
    comp.render(&layout, &srcs, Some(103));
    let (_, v) = layout.variant_for(5).unwrap();
    assert!(close(centre_colour(comp.canvas(), v.cells[0].rect(1280, 720)), palette(3)));
    // The filmstrip holds the others in join order, without the speaker.
    for (cell, who) in v.cells[1..].iter().zip([0, 1, 2, 4]) {
        assert!(close(centre_colour(comp.canvas(), cell.rect(1280, 720)), palette(who)));
    }
    // Unknown speaker id: the first to join.
    comp.render(&layout, &srcs, Some(999));
    assert!(close(centre_colour(comp.canvas(), v.cells[0].rect(1280, 720)), palette(0)));
}

#[test]
fn contain_leaves_background_bars_and_cover_crops_the_centre() {
    // A 4:3 picture: green bands top and bottom (an eighth each), red middle.
    let mut frame = VideoFrame::new(640, 480, palette(0).to_yuv()).unwrap();
    let green = Rgb::new(0, 200, 0);
    crate::media::draw::fill_rect(&mut frame, Rect { x: 0, y: 0, w: 640, h: 60 }, green.to_yuv());
    crate::media::draw::fill_rect(&mut frame, Rect { x: 0, y: 420, w: 640, h: 60 }, green.to_yuv());
    let name = String::new();
    let srcs = [Source { id: 1, name: &name, frame: Some(frame.as_frame()), generation: 1 }];
    let layout = shipped("side-by-side"); // one participant: full canvas, contain
    let mut comp = Compositor::new(1280, 720).unwrap();
    comp.render(&layout, &srcs, None);
    let canvas = comp.canvas().as_frame();
    // 4:3 in 16:9 with contain: pillarbox bars of background left and right.
    assert!(close(mean_rgb(&canvas, 20, 360, 4, 4), layout.canvas.background));
    assert!(close(mean_rgb(&canvas, 1250, 360, 4, 4), layout.canvas.background));
    assert!(close(mean_rgb(&canvas, 640, 20, 4, 4), green));
    assert!(close(mean_rgb(&canvas, 640, 360, 4, 4), palette(0)));

    // Cover: the grid fills the cell and crops the top and bottom (green) away.
    let layout = shipped("grid");
    comp.render(&layout, &srcs, None);
    let canvas = comp.canvas().as_frame();
    assert!(close(mean_rgb(&canvas, 20, 360, 4, 4), palette(0)));
    assert!(close(mean_rgb(&canvas, 640, 20, 4, 4), palette(0)));
    assert!(close(mean_rgb(&canvas, 640, 710, 4, 4), palette(0)));
}

#[test]
fn borders_are_drawn_inside_the_cell_edge() {
    let layout = shipped("pip");
    let frames = coloured(2, 640, 360);
    let names = vec![String::new(), String::new()];
    let srcs = sources(&frames, &names);
    let mut comp = Compositor::new(1280, 720).unwrap();
    comp.render(&layout, &srcs, None);
    let inset = layout.variant_for(2).unwrap().1.cells[1].rect(1280, 720);
    let canvas = comp.canvas().as_frame();
    let mid_y = (inset.y + inset.h / 2) as usize;
    assert!(close(mean_rgb(&canvas, inset.x as usize, mid_y, 2, 2), Rgb::WHITE));
    assert!(close(mean_rgb(&canvas, inset.right() as usize - 2, mid_y, 2, 2), Rgb::WHITE));
    assert!(close(mean_rgb(&canvas, inset.x as usize + 8, mid_y, 2, 2), palette(1)));
    // Just outside the inset: the full-canvas speaker tile.
    assert!(close(mean_rgb(&canvas, inset.x as usize - 4, mid_y, 2, 2), palette(0)));
}

#[test]
fn pictureless_participants_get_a_placeholder_with_their_name() {
    let layout = shipped("grid");
    let frames = coloured(2, 640, 360);
    let names = vec!["Alice".to_string(), "BOB".to_string()];
    let mut srcs = sources(&frames, &names);
    srcs[1].frame = None;
    let mut comp = Compositor::new(1280, 720).unwrap();
    comp.render(&layout, &srcs, None);
    let cell = layout.variant_for(2).unwrap().1.cells[1].rect(1280, 720);
    let canvas = comp.canvas().as_frame();
    // Placeholder colour away from the centred name...
    let corner = mean_rgb(&canvas, cell.x as usize + 20, cell.y as usize + 20, 4, 4);
    assert!(close(corner, layout.placeholder.color), "{corner}");
    // ...and the name drawn in bright luma around the middle.
    let (cx, cy) = (cell.x + cell.w / 2, cell.y + cell.h / 2);
    let bright = (cy - 40..cy + 40)
        .flat_map(|y| (cx - 150..cx + 150).map(move |x| (x, y)))
        .filter(|&(x, y)| canvas.y.at(x as usize, y as usize) > 200)
        .count();
    assert!(bright > 200, "name not drawn: {bright} bright pixels");
}

#[test]
fn unchanged_tiles_are_not_redrawn() {
    let layout = shipped("grid");
    let frames = coloured(4, 640, 360);
    let names = names_for(4);
    let mut srcs = sources(&frames, &names);
    let mut comp = Compositor::new(1280, 720).unwrap();
    let first = comp.render(&layout, &srcs, None);
    assert_eq!(first, RenderStats { full: true, drawn: 4, kept: 0 });
    let again = comp.render(&layout, &srcs, None);
    assert_eq!(again, RenderStats { full: false, drawn: 0, kept: 4 });
    assert!(comp.last_paths().is_empty(), "scaled although nothing changed");
    srcs[2].generation += 1;
    let one = comp.render(&layout, &srcs, None);
    assert_eq!(one, RenderStats { full: false, drawn: 1, kept: 3 });
    // A new participant changes the tiling: full redraw.
    let frames5 = coloured(5, 640, 360);
    let names5 = names_for(5);
    let srcs5 = sources(&frames5, &names5);
    assert!(comp.render(&layout, &srcs5, None).full);
}

#[test]
fn a_redrawn_tile_redraws_the_overlapping_tile_above_it() {
    let layout = shipped("pip");
    let frames = coloured(2, 640, 360);
    let names = names_for(2);
    let mut srcs = sources(&frames, &names);
    let mut comp = Compositor::new(1280, 720).unwrap();
    comp.render(&layout, &srcs, None);
    srcs[0].generation += 1; // the full-canvas tile, under the inset
    let stats = comp.render(&layout, &srcs, None);
    assert_eq!(stats.drawn, 2);
    let inset = layout.variant_for(2).unwrap().1.cells[1].rect(1280, 720);
    assert!(close(centre_colour(comp.canvas(), inset), palette(1)));
    srcs[1].generation += 1; // only the inset
    assert_eq!(comp.render(&layout, &srcs, None).drawn, 1);
}

#[test]
fn reads_strided_decoder_style_planes_without_copying() {
    // A 320x180 picture in planes with padding, as a decoder hands them out.
    let (w, h, ys, cs) = (320usize, 180usize, 384usize, 192usize);
    let c = palette(5).to_yuv();
    let y = vec![c.y; ys * h];
    let u = vec![c.u; cs * h / 2];
    let v = vec![c.v; cs * h / 2];
    let frame = FrameRef::new(
        PlaneRef::new(&y, w, h, ys).unwrap(),
        PlaneRef::new(&u, w / 2, h / 2, cs).unwrap(),
        PlaneRef::new(&v, w / 2, h / 2, cs).unwrap(),
    )
    .unwrap();
    let name = String::new();
    let srcs = [Source { id: 1, name: &name, frame: Some(frame), generation: 1 }];
    let mut comp = Compositor::new(640, 360).unwrap();
    comp.render(&shipped("grid"), &srcs, None);
    assert!(close(centre_colour(comp.canvas(), Rect { x: 0, y: 0, w: 640, h: 360 }), palette(5)));
}

#[test]
fn an_empty_room_is_all_background() {
    let layout = shipped("grid");
    let mut comp = Compositor::new(320, 180).unwrap();
    comp.render(&layout, &[], None);
    assert!(close(centre_colour(comp.canvas(), Rect { x: 0, y: 0, w: 320, h: 180 }), layout.canvas.background));
}
