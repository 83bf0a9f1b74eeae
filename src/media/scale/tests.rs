//! Each specialised path against the general one, and SIMD against scalar.

use super::*;
use crate::media::frame::{PlaneMut, PlaneRef};

/// A plane with smooth gradients plus a little noise, like camera content.
fn camera_like(width: usize, height: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let base = ((x * 200 / width) + (y * 50 / height)) as i32;
            let noise = (state % 9) as i32 - 4;
            out.push((base + noise).clamp(0, 255) as u8);
        }
    }
    out
}

fn scale_with(
    scaler: &mut Scaler,
    src: &[u8],
    sw: usize,
    sh: usize,
    dw: usize,
    dh: usize,
    filter: Filter,
) -> (Vec<u8>, ScalePath) {
    let src = PlaneRef::new(src, sw, sh, sw).unwrap();
    let mut out = vec![0u8; dw * dh];
    let mut dst = PlaneMut::new(&mut out, dw, dh, dw).unwrap();
    let path = scaler.scale(&src, &mut dst, filter).unwrap();
    (out, path)
}

fn diff_stats(a: &[u8], b: &[u8]) -> (f64, u8) {
    let mut sum = 0u64;
    let mut max = 0u8;
    for (&x, &y) in a.iter().zip(b) {
        let d = x.abs_diff(y);
        sum += d as u64;
        max = max.max(d);
    }
    (sum as f64 / a.len() as f64, max)
}

#[test]
fn down2_is_the_box_filter_of_the_general_path() {
    let src = camera_like(1280, 720, 1);
    let (fast, path) = scale_with(&mut Scaler::new(), &src, 1280, 720, 640, 360, Filter::Bilinear);
    assert_eq!(path, ScalePath::Down2);
    let (reference, path) = scale_with(&mut Scaler::reference(), &src, 1280, 720, 640, 360, Filter::Box);
    assert_eq!(path, ScalePath::Fir);
    let (mean, max) = diff_stats(&fast, &reference);
    assert!(max <= 1 && mean < 0.5, "mean {mean} max {max}");
}

#[test]
fn down4_is_the_box_filter_of_the_general_path() {
    let src = camera_like(1280, 720, 2);
    let (fast, path) = scale_with(&mut Scaler::new(), &src, 1280, 720, 320, 180, Filter::Box);
    assert_eq!(path, ScalePath::Down4);
    let (reference, _) = scale_with(&mut Scaler::reference(), &src, 1280, 720, 320, 180, Filter::Box);
    let (mean, max) = diff_stats(&fast, &reference);
    assert!(max <= 1 && mean < 0.5, "mean {mean} max {max}");
}

/// Area averaging by its definition, in f64: each output is the mean of
/// the source area it covers, partial pixels weighted by coverage.
fn area_by_definition(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    let weights = |s: usize, d: usize, i: usize| -> Vec<(usize, f64)> {
        let r = s as f64 / d as f64;
        let (lo, hi) = (i as f64 * r, (i + 1) as f64 * r);
        (lo.floor() as usize..(hi.ceil() as usize).min(s))
            .map(|p| (p, (hi.min(p as f64 + 1.0) - lo.max(p as f64)) / r))
            .filter(|&(_, w)| w > 0.0)
            .collect()
    };
    let mut out = Vec::with_capacity(dw * dh);
    for y in 0..dh {
        let wy = weights(sh, dh, y);
        for x in 0..dw {
            let wx = weights(sw, dw, x);
            let mut acc = 0.0;
            for &(py, fy) in &wy {
                for &(px, fx) in &wx {
                    acc += fy * fx * src[py * sw + px] as f64;
                }
            }
            out.push(acc.round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// Hard edges: 37-pixel blocks of dark and light, plus noise. A tap off by
/// one pixel shows up as large errors along every edge.
fn blocks(width: usize, height: usize) -> Vec<u8> {
    let noise = camera_like(width, height, 9);
    (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            let base = if (x / 37 + y / 37) % 2 == 0 { 40 } else { 200 };
            (base + noise[i] as i32 % 9 - 4) as u8
        })
        .collect()
}

#[test]
fn bilinear_enlarging_is_the_general_paths_bilinear() {
    // Pure enlargements, and mixed ones (one axis grows, the other shrinks,
    // as a `cover` crop gives), from smooth and hard-edged pictures.
    for (sw, sh, dw, dh) in [
        (640, 360, 1280, 720),
        (320, 180, 1280, 720),
        (640, 360, 960, 540),
        (426, 240, 640, 360),
        (640, 480, 1280, 360),
        (33, 17, 200, 90),
    ] {
        for (name, src) in [("smooth", camera_like(sw, sh, 5)), ("blocks", blocks(sw, sh))] {
            let (fast, path) = scale_with(&mut Scaler::new(), &src, sw, sh, dw, dh, Filter::Bilinear);
            assert_eq!(path, ScalePath::Bilinear, "{sw}x{sh}->{dw}x{dh}");
            let (reference, path) = scale_with(&mut Scaler::reference(), &src, sw, sh, dw, dh, Filter::Bilinear);
            assert_eq!(path, ScalePath::Fir);
            let (mean, max) = diff_stats(&fast, &reference);
            // Identical at 2x and 4x, within one elsewhere (both round an
            // intermediate row). Where an axis shrinks, ours averages the
            // covered area and the reference widens its kernel: they differ
            // at hard edges only.
            let grows = sw < dw && sh < dh;
            let (max_ok, mean_ok) = if grows { (1, 0.1) } else { (20, 1.0) };
            assert!(max <= max_ok && mean < mean_ok, "{name} {sw}x{sh}->{dw}x{dh}: mean {mean:.3} max {max}");
        }
    }
}

#[test]
fn area_averages_exactly_the_covered_area() {
    let src = blocks(1280, 720);
    for (dw, dh) in [(426, 240), (428, 240), (256, 144), (300, 170), (854, 480), (1000, 720), (1280, 600), (170, 90)] {
        let (fast, path) = scale_with(&mut Scaler::new(), &src, 1280, 720, dw, dh, Filter::Bilinear);
        assert_eq!(path, ScalePath::Area, "{dw}x{dh}");
        let exact = area_by_definition(&src, 1280, 720, dw, dh);
        let (mean, max) = diff_stats(&fast, &exact);
        // Two roundings (the intermediate row, then the output).
        assert!(max <= 1 && mean < 0.5, "{dw}x{dh}: mean {mean} max {max}");
        // And it is the same family as the general path's box filter.
        let (reference, _) = scale_with(&mut Scaler::reference(), &src, 1280, 720, dw, dh, Filter::Box);
        let (mean, _) = diff_stats(&fast, &reference);
        assert!(mean < 4.0, "{dw}x{dh}: mean {mean} against fast_image_resize's box");
    }
}

#[test]
fn simd_rows_equal_scalar_rows_at_every_width() {
    for width in [2usize, 30, 32, 33, 64, 95, 640, 642] {
        let src = camera_like(width * 4, 4, width as u32);
        let rows: Vec<&[u8]> = src.chunks_exact(width * 4).collect();

        let mut fast = vec![0u8; width * 2];
        let mut dst = PlaneMut::new(&mut fast, width * 2, 1, width * 2).unwrap();
        boxdown::down::<2>(&PlaneRef::new(&src[..width * 4 * 2], width * 4, 2, width * 4).unwrap(), &mut dst);
        let mut slow = vec![0u8; width * 2];
        boxdown::row_scalar(&rows[..2], &mut slow);
        assert_eq!(fast, slow, "down2 width {width}");

        let mut fast = vec![0u8; width];
        let mut dst = PlaneMut::new(&mut fast, width, 1, width).unwrap();
        boxdown::down::<4>(&PlaneRef::new(&src, width * 4, 4, width * 4).unwrap(), &mut dst);
        let mut slow = vec![0u8; width];
        boxdown::row_scalar(&rows[..4], &mut slow);
        assert_eq!(fast, slow, "down4 width {width}");

        let weights = [20000u16, 25536, 20000];
        let mut fast = vec![0u8; width * 4];
        area_vertical_dispatch(&rows[..3], &weights, &mut fast);
        let mut slow = vec![0u8; width * 4];
        separable::vertical_generic(&rows[..3], &weights, &mut slow, 0);
        assert_eq!(fast, slow, "vertical width {width}");
    }
}

fn area_vertical_dispatch(rows: &[&[u8]], weights: &[u16], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    let done = x86::vertical_avx2(rows, weights, out, &[]);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    separable::vertical_generic(rows, weights, out, done);
}

#[test]
fn flat_planes_stay_flat_on_every_path() {
    let src = vec![77u8; 1280 * 720];
    let mut scaler = Scaler::new();
    for (dw, dh, filter) in [
        (1280, 720, Filter::Bilinear),
        (640, 360, Filter::Bilinear),
        (320, 180, Filter::Bilinear),
        (426, 240, Filter::Bilinear),
        (1000, 600, Filter::Bilinear),
        (1920, 1080, Filter::Lanczos3),
        (100, 50, Filter::Nearest),
    ] {
        let (out, path) = scale_with(&mut scaler, &src, 1280, 720, dw, dh, filter);
        assert!(out.iter().all(|&p| p == 77), "{dw}x{dh} {filter} via {path:?}");
    }
}

#[test]
fn scales_from_and_into_strided_sub_rectangles() {
    // Source: the middle of a wider, padded plane; destination: a rectangle
    // of a canvas. Samples outside the destination must stay untouched.
    let (pw, ph) = (80usize, 40usize);
    let mut padded = vec![0u8; pw * ph];
    for y in 10..30 {
        for x in 20..60 {
            padded[y * pw + x] = 200;
        }
    }
    let src = PlaneRef::new(&padded, pw, ph, pw).unwrap().crop(20, 10, 40, 20).unwrap();
    let mut canvas = vec![9u8; 100 * 100];
    for filter in Filter::ALL {
        let mut plane = PlaneMut::new(&mut canvas, 100, 100, 100).unwrap();
        let mut tile = plane.crop_mut(10, 10, 20, 10).unwrap();
        Scaler::new().scale(&src, &mut tile, filter).unwrap();
        for y in 0..100 {
            for x in 0..100 {
                let inside = (10..30).contains(&x) && (10..20).contains(&y);
                let v = canvas[y * 100 + x];
                assert_eq!(v == 200, inside, "{filter} at ({x},{y}) = {v}");
            }
        }
    }
}

#[test]
fn filters_parse_by_name() {
    for f in Filter::ALL {
        assert_eq!(f.to_string().parse::<Filter>().unwrap(), f);
    }
    assert!("bicubic".parse::<Filter>().is_err());
}

#[test]
fn the_2x_horizontal_kernel_matches_the_table() {
    use super::separable::{horizontal, horizontal_scalar, Taps};
    for width in [2, 3, 17, 18, 19, 33, 34, 35, 50, 160, 320, 321, 640, 641] {
        let taps = Taps::bilinear(width, 2 * width);
        assert!(taps.up2, "{width} -> {}: the table is the 1/4, 3/4 one", 2 * width);
        // Noise over the whole range (the kernel's sums reach 1022).
        let mut row = camera_like(width, 1, width as u32);
        for (i, p) in row.iter_mut().enumerate() {
            if i % 7 == 0 {
                *p = 255;
            } else if i % 11 == 0 {
                *p = 0;
            }
        }
        row.resize(width + 32, 0);
        let mut fast = vec![0u8; 2 * width];
        let mut slow = vec![0u8; 2 * width];
        horizontal(&row, &taps, &mut fast);
        horizontal_scalar(&row, taps.taps, &taps.starts, &taps.weights, &mut slow);
        assert_eq!(fast, slow, "width {width}");
    }
    assert!(!Taps::bilinear(640, 960).up2);
}

#[test]
fn the_quarter_row_kernel_matches_the_general_formula() {
    use super::separable::{vertical, vertical_generic};
    for width in [1, 31, 32, 33, 64, 100, 640, 1281] {
        let mut a = camera_like(width, 1, 3);
        let mut b = camera_like(width, 1, 7);
        for i in (0..width).step_by(5) {
            a[i] = 255;
            b[(i + 2) % width] = 0;
        }
        for fractions in [[1u16 << 14, 3 << 14], [3 << 14, 1 << 14]] {
            let mut fast = vec![0u8; width];
            let mut slow = vec![0u8; width];
            vertical(&[&a, &b], &fractions, &mut fast, &[]);
            vertical_generic(&[&a, &b], &fractions, &mut slow, 0);
            assert_eq!(fast, slow, "width {width}, fractions {fractions:?}");
        }
    }
}

/// Noise over the whole range, with runs of 0 and 255 (the kernels' sums
/// reach their extremes there).
fn extremes(width: usize, height: usize, seed: u32) -> Vec<u8> {
    let mut plane = camera_like(width, height, seed);
    for (i, p) in plane.iter_mut().enumerate() {
        match (i / 7) % 5 {
            0 => *p = 255,
            1 => *p = 0,
            _ => *p = p.wrapping_mul(97),
        }
    }
    plane
}

#[test]
fn down3_is_the_exact_area_average() {
    // The 3x3 grid's tiles: 1278x720 -> 426x240 (luma) and 639x360 -> 213x120
    // (chroma), and smaller or odd ones.
    for (sw, sh) in [(1278, 720), (639, 360), (96, 9), (57, 30), (3, 3), (150, 48)] {
        let (dw, dh) = (sw / 3, sh / 3);
        for (name, src) in [("blocks", blocks(sw, sh)), ("extremes", extremes(sw, sh, 4))] {
            let (fast, path) = scale_with(&mut Scaler::new(), &src, sw, sh, dw, dh, Filter::Bilinear);
            assert_eq!(path, ScalePath::Down3, "{sw}x{sh}");
            // An exact 3x3 mean is never halfway between two integers:
            // rounding it once gives the definition exactly.
            assert_eq!(fast, area_by_definition(&src, sw, sh, dw, dh), "{name} {sw}x{sh}");
            let (general, path) = scale_with(&mut Scaler::reference(), &src, sw, sh, dw, dh, Filter::Box);
            assert_eq!(path, ScalePath::Fir);
            let (mean, max) = diff_stats(&fast, &general);
            assert!(max <= 1 && mean < 0.5, "{name} {sw}x{sh}: mean {mean} max {max} against fast_image_resize's box");
        }
    }
}

#[test]
fn the_divides_by_nine_and_36_are_exact_for_every_sum() {
    for sum in 0..=9 * 255u32 {
        assert_eq!(((sum + 4) * 7282) >> 16, (sum + 4) / 9, "sum {sum}");
    }
    for sum in 0..=36 * 255u32 {
        assert_eq!((((sum + 18) >> 2) * 7282) >> 16, (sum + 18) / 36, "sum {sum}");
    }
}

#[test]
fn down6_and_down8_are_the_exact_area_average() {
    // The 360p canvas's 3x3 and 4x4 grids from 720p: 1278x720 -> 213x120,
    // 1280x720 -> 160x90 (and their chroma), and odd sizes.
    for (n, sw, sh) in [(6, 1278, 720), (6, 636, 360), (6, 642, 48), (8, 1280, 720), (8, 640, 360), (8, 264, 16)] {
        let (dw, dh) = (sw / n, sh / n);
        for (name, src) in [("blocks", blocks(sw, sh)), ("extremes", extremes(sw, sh, 8))] {
            let (fast, path) = scale_with(&mut Scaler::new(), &src, sw, sh, dw, dh, Filter::Box);
            assert_eq!(path, if n == 6 { ScalePath::Down6 } else { ScalePath::Down8 }, "{sw}x{sh}");
            // The n x n mean rounded half up, in integers (a 6x6 mean can
            // be exactly halfway, where f64 rounding goes either way).
            let exact: Vec<u8> = (0..dw * dh)
                .map(|i| {
                    let (x, y) = (i % dw, i / dw);
                    let sum: usize = (0..n * n).map(|k| src[(n * y + k / n) * sw + n * x + k % n] as usize).sum();
                    ((sum + n * n / 2) / (n * n)) as u8
                })
                .collect();
            assert_eq!(fast, exact, "{name} {sw}x{sh}");
            let (mean, max) = diff_stats(&fast, &area_by_definition(&src, sw, sh, dw, dh));
            assert!(max <= 1 && mean < 0.05, "{name} {sw}x{sh}: mean {mean} max {max}");
        }
    }
}

/// Every whole-plane kernel's rows against the scalar rows, at every width
/// from 1 to 130 (blocks, the overlapping last block, no block at all) and
/// the grids' widths.
#[test]
fn box_kernels_equal_scalar_rows_at_every_width() {
    let widths = (1..=130).chain([160, 213, 214, 320, 426, 640]);
    for width in widths {
        for n in [2usize, 3, 4, 6, 8] {
            let (sw, sh) = (n * width + 1, n * 2);
            let src = extremes(sw, sh, width as u32);
            let plane = PlaneRef::new(&src, sw, sh, sw).unwrap();
            let mut fast = vec![0u8; width * 2];
            let mut dst = PlaneMut::new(&mut fast, width, 2, width).unwrap();
            match n {
                2 => boxdown::down::<2>(&plane, &mut dst),
                3 => boxdown::down::<3>(&plane, &mut dst),
                4 => boxdown::down::<4>(&plane, &mut dst),
                6 => boxdown::down::<6>(&plane, &mut dst),
                _ => boxdown::down::<8>(&plane, &mut dst),
            }
            let mut slow = vec![0u8; width * 2];
            for (y, out) in slow.chunks_exact_mut(width).enumerate() {
                let rows: Vec<&[u8]> = (0..n).map(|k| plane.row(n * y + k)).collect();
                boxdown::row_scalar(&rows, out);
            }
            assert_eq!(fast, slow, "{n}:1, width {width}");
        }
    }
}

/// The box paths and the area path write their tile of a canvas, and only
/// it, from a source that is a crop of a wider picture (strides differ).
#[test]
fn box_and_area_paths_stay_inside_their_tile() {
    let (pw, ph) = (1300usize, 760usize);
    let picture = extremes(pw, ph, 11);
    let whole = PlaneRef::new(&picture, pw, ph, pw).unwrap();
    for (sw, sh, dw, dh, expected) in [
        (1280, 720, 640, 360, ScalePath::Down2),
        (1278, 720, 426, 240, ScalePath::Down3),
        (639, 360, 213, 120, ScalePath::Down3),
        (1280, 720, 320, 180, ScalePath::Down4),
        (1278, 720, 213, 120, ScalePath::Down6),
        (1280, 720, 160, 90, ScalePath::Down8),
        (1280, 718, 428, 240, ScalePath::Area),
        (640, 359, 214, 120, ScalePath::Area),
    ] {
        let src = whole.crop(9, 13, sw, sh).unwrap();
        let (cw, ch) = (dw + 70, dh + 9);
        let mut canvas = vec![7u8; cw * ch];
        let mut plane = PlaneMut::new(&mut canvas, cw, ch, cw).unwrap();
        let mut tile = plane.crop_mut(33, 5, dw, dh).unwrap();
        let path = Scaler::new().scale(&src, &mut tile, Filter::Bilinear).unwrap();
        assert_eq!(path, expected, "{sw}x{sh} -> {dw}x{dh}");
        // The same scale into a packed buffer, from a packed copy.
        let packed: Vec<u8> = (0..sh).flat_map(|y| src.row(y).to_vec()).collect();
        let (alone, _) = scale_with(&mut Scaler::new(), &packed, sw, sh, dw, dh, Filter::Bilinear);
        for y in 0..ch {
            for x in 0..cw {
                let inside = (33..33 + dw).contains(&x) && (5..5 + dh).contains(&y);
                let v = canvas[y * cw + x];
                if inside {
                    assert_eq!(v, alone[(y - 5) * dw + x - 33], "{sw}x{sh} -> {dw}x{dh} at ({x},{y})");
                } else {
                    assert_eq!(v, 7, "{sw}x{sh} -> {dw}x{dh}: ({x},{y}) outside the tile written");
                }
            }
        }
    }
}

#[test]
fn near_thirds_average_exactly_the_covered_area() {
    // The 3x3 grid's middle column: 1280x718 -> 428x240 and its chroma,
    // 640x359 -> 214x120; and other ratios between 2 and 3.
    for (sw, sh, dw, dh) in [(1280, 718, 428, 240), (640, 359, 214, 120), (1000, 600, 430, 250), (97, 61, 33, 29)] {
        for (name, src) in [("blocks", blocks(sw, sh)), ("extremes", extremes(sw, sh, 6))] {
            let (fast, path) = scale_with(&mut Scaler::new(), &src, sw, sh, dw, dh, Filter::Bilinear);
            assert_eq!(path, ScalePath::Area, "{sw}x{sh}");
            let exact = area_by_definition(&src, sw, sh, dw, dh);
            let (mean, max) = diff_stats(&fast, &exact);
            // Two roundings (the intermediate row, then the output).
            assert!(max <= 1 && mean < 0.5, "{name} {sw}x{sh} -> {dw}x{dh}: mean {mean} max {max}");
        }
    }
}

#[test]
fn the_4_tap_horizontal_kernel_equals_its_formula() {
    use super::separable::{horizontal, horizontal_fractions, Taps};
    let pairs = [
        (1280, 428),
        (640, 214),
        (1278, 426),
        (1280, 426),
        (639, 213),
        (1280, 1000),
        (1280, 1280),
        (100, 33),
        (96, 32),
        (97, 33),
        (200, 67),
        (64, 40),
        (40, 31),
    ];
    for (src, dst) in pairs {
        let t = Taps::area(src, dst);
        assert!(t.fractional && t.taps <= 4, "{src}->{dst}: {} taps", t.taps);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(t.quad.is_some(), dst >= 32, "{src}->{dst}");
        let mut row = extremes(src, 1, dst as u32);
        row.resize(src + 32, 0);
        let mut fast = vec![0u8; dst];
        horizontal(&row, &t, &mut fast);
        let mut slow = vec![0u8; dst];
        horizontal_fractions(&row, t.taps, &t.starts, &t.fractions, &mut slow);
        assert_eq!(fast, slow, "{src}->{dst}");
    }
}

#[test]
fn the_vertical_kernel_equals_its_formula_for_every_tap_count() {
    use super::separable::vertical_generic;
    for taps in 1..=11usize {
        for width in [32usize, 33, 63, 64, 100, 1280] {
            let src = extremes(width, taps, (taps * width) as u32);
            let rows: Vec<&[u8]> = src.chunks_exact(width).collect();
            // Fractions summing to one, the first and last partial.
            let mut fractions = vec![65536 / taps as u32; taps];
            fractions[0] += 65536 - fractions.iter().sum::<u32>();
            let fractions: Vec<u16> = fractions.iter().map(|&f| f.min(65535) as u16).collect();
            let mut fast = vec![0u8; width];
            area_vertical_dispatch(&rows, &fractions, &mut fast);
            let mut slow = vec![0u8; width];
            vertical_generic(&rows, &fractions, &mut slow, 0);
            assert_eq!(fast, slow, "{taps} taps, width {width}");
        }
    }
}
