//! Compositor speed: N distinct inputs tiled into one canvas, against the
//! memory floor of reading those inputs and writing that canvas and
//! against libyuv's `I420Scale` doing the same tiling, all measured in the
//! same run. Run: `cargo bench --bench compositor`.
//!
//! This machine's speed drifts by tens of percent within minutes, so the
//! `paired` group also runs ours, the floor and libyuv in turns, sample
//! after sample, and reports their ratios (written to
//! `target/criterion/compositor-paired.json` for `scripts/bench-report.py`).
//!
//! libyuv is loaded at run time from the system (`libyuv.so.0`; Debian:
//! `apt install libyuv0`, or `libyuv-dev`); without it the libyuv rows are
//! skipped, and the bench says so.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tessera::layout::{fit_rect, Fit, Layout, Rect};
use tessera::media::compositor::{placements, Compositor, Source};
use tessera::media::frame::VideoFrame;
use tessera::media::pattern::palette;
use tessera::media::scene::CameraScene;

/// The grid shapes the issue measures (1x1, 2x2, 3x3, 4x4), labels off so
/// only scaling is timed, cover fit (every tile fully painted).
const GRID: &str = r#"
[canvas]
width = 1280
height = 720
[style]
fit = "cover"
filter = "bilinear"
labels = false
[[variant]]
participants = "1-3"
grid = { columns = 1, rows = 1 }
[[variant]]
participants = "4-8"
grid = { columns = 2, rows = 2 }
[[variant]]
participants = "9-15"
grid = { columns = 3, rows = 3 }
[[variant]]
participants = 16
grid = { columns = 4, rows = 4 }
"#;

/// N distinct camera-like pictures. Flat test patterns would flatter
/// every row here: the kernel merges their identical pages, so they are
/// read from cache that real pictures never share.
fn inputs(n: usize, w: usize, h: usize) -> Vec<VideoFrame> {
    (0..n)
        .map(|i| {
            let mut s = CameraScene::new(w, h, palette(i), &format!("input {i}")).unwrap();
            s.render(i as u64 * 137, i as u32);
            s.frame().clone()
        })
        .collect()
}

/// libyuv's `I420Scale`, from the system library if it is there.
mod libyuv {
    use std::ffi::{c_int, c_void};

    type I420Scale = unsafe extern "C" fn(
        *const u8,
        c_int,
        *const u8,
        c_int,
        *const u8,
        c_int,
        c_int,
        c_int,
        *mut u8,
        c_int,
        *mut u8,
        c_int,
        *mut u8,
        c_int,
        c_int,
        c_int,
        c_int,
    ) -> c_int;

    /// libyuv's `FilterMode` values.
    pub const BILINEAR: i32 = 2;
    pub const BOX: i32 = 3;

    pub struct Libyuv {
        scale: I420Scale,
    }

    /// A rectangle as (x, y, w, h), even.
    pub type Area = (usize, usize, usize, usize);

    impl Libyuv {
        pub fn load() -> Option<Self> {
            for name in [c"libyuv.so.0", c"libyuv.so"] {
                // SAFETY: dlopen/dlsym with NUL-terminated names; the handle
                // is never closed, so the symbol stays valid for the process;
                // I420Scale has this C signature in every libyuv release.
                unsafe {
                    let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW);
                    if handle.is_null() {
                        continue;
                    }
                    let sym: *mut c_void = libc::dlsym(handle, c"I420Scale".as_ptr());
                    if !sym.is_null() {
                        return Some(Self { scale: std::mem::transmute::<*mut c_void, I420Scale>(sym) });
                    }
                }
            }
            None
        }

        /// Scales the `crop` of a packed I420 picture `sw` x `sh` into the
        /// `dst` rectangle of a packed I420 canvas `cw` x `ch`.
        #[allow(clippy::too_many_arguments)]
        pub fn scale(
            &self,
            src: &[u8],
            (sw, sh): (usize, usize),
            crop: Area,
            canvas: &mut [u8],
            (cw, ch): (usize, usize),
            dst: Area,
            filter: i32,
        ) {
            let (sy, su) = (sw * sh, sw * sh / 4);
            let (cy, cu) = (cw * ch, cw * ch / 4);
            let (x, y, w, h) = crop;
            let (dx, dy, dw, dh) = dst;
            assert!(src.len() >= sy + 2 * su && canvas.len() >= cy + 2 * cu);
            assert!(x + w <= sw && y + h <= sh && dx + dw <= cw && dy + dh <= ch);
            assert!([x, y, w, h, dx, dy, dw, dh].iter().all(|v| v % 2 == 0));
            // SAFETY: every plane pointer and extent was checked against its
            // buffer just above; libyuv reads within the source crop and
            // writes within the destination rectangle.
            unsafe {
                let s = src.as_ptr();
                let d = canvas.as_mut_ptr();
                (self.scale)(
                    s.add(y * sw + x),
                    sw as c_int,
                    s.add(sy + (y / 2) * (sw / 2) + x / 2),
                    (sw / 2) as c_int,
                    s.add(sy + su + (y / 2) * (sw / 2) + x / 2),
                    (sw / 2) as c_int,
                    w as c_int,
                    h as c_int,
                    d.add(dy * cw + dx),
                    cw as c_int,
                    d.add(cy + (dy / 2) * (cw / 2) + dx / 2),
                    (cw / 2) as c_int,
                    d.add(cy + cu + (dy / 2) * (cw / 2) + dx / 2),
                    (cw / 2) as c_int,
                    dw as c_int,
                    dh as c_int,
                    filter,
                );
            }
        }
    }
}

/// What libyuv is asked to do for one grid: each input's cover crop into
/// its tile, as the compositor places it.
fn libyuv_jobs(
    layout: &Layout,
    tiles: usize,
    (cw, ch): (u32, u32),
    (iw, ih): (usize, usize),
) -> Vec<(usize, libyuv::Area, libyuv::Area)> {
    let ids: Vec<u64> = (0..tiles as u64).collect();
    let area = |r: Rect| (r.x as usize, r.y as usize, r.w as usize, r.h as usize);
    placements(layout, &ids, None, cw, ch)
        .into_iter()
        .map(|p| {
            let (dst, crop) = fit_rect(p.inner, iw as u32, ih as u32, p.fit == Fit::Contain);
            (p.id as usize, area(crop), area(dst))
        })
        .collect()
}

fn run_libyuv(
    yuv: &libyuv::Libyuv,
    jobs: &[(usize, libyuv::Area, libyuv::Area)],
    frames: &[VideoFrame],
    input: (usize, usize),
    canvas: &mut [u8],
    size: (usize, usize),
    filter: i32,
) {
    for (i, crop, dst) in jobs {
        yuv.scale(frames[*i].as_bytes(), input, *crop, canvas, size, *dst, filter);
    }
}

/// Reads `read` bytes from the inputs and writes `canvas.len()` bytes, as
/// cheaply as memory allows: one memcpy for the overlap, a summing read or
/// a fill for the rest.
fn floor(frames: &[VideoFrame], canvas: &mut [u8]) -> u64 {
    let mut written = 0;
    let mut sum = 0u64;
    for f in frames {
        let bytes = f.as_bytes();
        let n = bytes.len().min(canvas.len() - written);
        canvas[written..written + n].copy_from_slice(&bytes[..n]);
        written += n;
        for chunk in bytes[n..].chunks_exact(8) {
            sum = sum.wrapping_add(u64::from_ne_bytes(chunk.try_into().unwrap()));
        }
    }
    canvas[written..].fill(16);
    sum
}

fn bench(c: &mut Criterion) {
    let layout = Arc::new(Layout::parse(GRID, "bench-grid.toml").unwrap());
    let names: Vec<String> = (0..16).map(|i| format!("p{i}")).collect();
    let libyuv = libyuv::Libyuv::load();
    if libyuv.is_none() {
        eprintln!("compositor bench: libyuv.so.0 not found (apt install libyuv0): the libyuv rows are skipped");
    }
    let mut group = c.benchmark_group("compositor");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(40);
    for (cw, ch) in [(1280u32, 720u32), (640, 360)] {
        for (iw, ih) in [(1280usize, 720usize), (640, 360)] {
            for tiles in [1usize, 4, 9, 16] {
                let frames = inputs(tiles, iw, ih);
                let id = format!("{cw}x{ch}/from{iw}x{ih}/{tiles}");
                let read: usize = frames.iter().map(|f| f.as_bytes().len()).sum();
                group.throughput(Throughput::Bytes(read as u64));

                let mut comp = Compositor::new(cw, ch).unwrap();
                let mut generation = 0u64;
                group.bench_function(BenchmarkId::new("render", &id), |b| {
                    b.iter(|| {
                        generation += 1;
                        let sources: Vec<Source<'_>> = frames
                            .iter()
                            .zip(&names)
                            .enumerate()
                            .map(|(i, (f, name))| Source { id: i as u64, name, frame: Some(f.as_frame()), generation })
                            .collect();
                        black_box(comp.render(&layout, &sources, None));
                    })
                });

                group.bench_function(BenchmarkId::new("cached", &id), |b| {
                    let sources: Vec<Source<'_>> = frames
                        .iter()
                        .zip(&names)
                        .enumerate()
                        .map(|(i, (f, name))| Source { id: i as u64, name, frame: Some(f.as_frame()), generation: 0 })
                        .collect();
                    comp.render(&layout, &sources, None);
                    b.iter(|| black_box(comp.render(&layout, &sources, None)))
                });

                let mut canvas = vec![0u8; (cw * ch * 3 / 2) as usize];
                group.bench_function(BenchmarkId::new("floor", &id), |b| {
                    b.iter(|| black_box(floor(&frames, &mut canvas)))
                });

                if let Some(yuv) = &libyuv {
                    let jobs = libyuv_jobs(&layout, tiles, (cw, ch), (iw, ih));
                    let size = (cw as usize, ch as usize);
                    for (name, filter) in [("libyuv-bilinear", libyuv::BILINEAR), ("libyuv-box", libyuv::BOX)] {
                        group.bench_function(BenchmarkId::new(name, &id), |b| {
                            b.iter(|| {
                                run_libyuv(yuv, &jobs, &frames, (iw, ih), &mut canvas, size, filter);
                                black_box(&canvas);
                            })
                        });
                    }
                }
            }
        }
    }
    group.finish();
}

/// One plane enlarged (640x360 to 1280x720 and 960x540, 320x180 to
/// 1280x720) by the separable bilinear path and, in the same run, by
/// fast_image_resize's bilinear convolution, the general path it replaces.
fn upscale(c: &mut Criterion) {
    use tessera::media::frame::{PlaneMut, PlaneRef};
    use tessera::media::scale::{Filter, Scaler};
    let mut group = c.benchmark_group("upscale");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.sample_size(40);
    for (sw, sh, dw, dh) in [(640usize, 360usize, 1280usize, 720usize), (640, 360, 960, 540), (320, 180, 1280, 720)] {
        let src: Vec<u8> = (0..sw * sh).map(|i| ((i % sw) * 7 + (i / sw) * 3) as u8).collect();
        let mut dst = vec![0u8; dw * dh];
        let id = format!("{sw}x{sh}-to-{dw}x{dh}");
        for (name, mut scaler) in [("separable", Scaler::new()), ("fir", Scaler::reference())] {
            group.bench_function(BenchmarkId::new(name, &id), |b| {
                b.iter(|| {
                    let src = PlaneRef::new(&src, sw, sh, sw).unwrap();
                    let mut out = PlaneMut::new(&mut dst, dw, dh, dw).unwrap();
                    black_box(scaler.scale(&src, &mut out, Filter::Bilinear).unwrap());
                })
            });
        }
    }
    group.finish();
}

/// The name filter criterion was given: the first argument that is
/// neither a flag nor the value of one (`--measurement-time 3`).
fn name_filter() -> Option<String> {
    const SWITCHES: &[&str] = &[
        "--bench",
        "--test",
        "--list",
        "--noplot",
        "--quick",
        "--exact",
        "--ignored",
        "--verbose",
        "--quiet",
        "--discard-baseline",
        "--nocapture",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if !a.starts_with('-') {
            return Some(a);
        }
        if a.starts_with("--") && !a.contains('=') && !SWITCHES.contains(&a.as_str()) {
            args.next();
        }
    }
    None
}

/// Ours, the floor and libyuv (bilinear, box) on every grid of the
/// `render` group (720p and 360p inputs, 720p and 360p canvases), run in
/// turns so the machine's drift hits all alike: medians of 60 rounds and
/// the ratios between them.
fn paired(_c: &mut Criterion) {
    // Criterion's name filter does not reach this group: honour it here.
    if name_filter().is_some_and(|f| !"paired".contains(f.as_str()) && !f.contains("paired")) {
        return;
    }
    let layout = Arc::new(Layout::parse(GRID, "bench-grid.toml").unwrap());
    let Some(yuv) = libyuv::Libyuv::load() else {
        eprintln!("paired: libyuv.so.0 not found (apt install libyuv0): skipped");
        return;
    };
    let names: Vec<String> = (0..16).map(|i| format!("p{i}")).collect();
    let mut report = serde_json::Map::new();
    let cases = [(1280u32, 720u32), (640, 360)]
        .into_iter()
        .flat_map(|canvas| [(1280usize, 720usize), (640, 360)].map(|input| (canvas, input)))
        .flat_map(|pair| [1usize, 4, 9, 16].map(|tiles| (pair, tiles)));
    for (((cw, ch), (iw, ih)), tiles) in cases {
        let frames = inputs(tiles, iw, ih);
        let jobs = libyuv_jobs(&layout, tiles, (cw, ch), (iw, ih));
        let mut comp = Compositor::new(cw, ch).unwrap();
        // Each renderer draws into a canvas of its own, as ours does: a
        // shared one would stay warm in cache for the others only.
        let [mut floor_canvas, mut bilinear_canvas, mut box_canvas] =
            std::array::from_fn(|_| vec![0u8; (cw * ch * 3 / 2) as usize]);
        let size = (cw as usize, ch as usize);
        let mut generation = 0u64;
        let mut times: [Vec<f64>; 4] = Default::default();
        for round in 0..65 {
            for (k, t) in times.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..4 {
                    match k {
                        0 => {
                            generation += 1;
                            let sources: Vec<Source<'_>> = frames
                                .iter()
                                .zip(&names)
                                .enumerate()
                                .map(|(i, (f, name))| Source {
                                    id: i as u64,
                                    name,
                                    frame: Some(f.as_frame()),
                                    generation,
                                })
                                .collect();
                            black_box(comp.render(&layout, &sources, None));
                        }
                        1 => {
                            black_box(floor(&frames, &mut floor_canvas));
                        }
                        2 => run_libyuv(&yuv, &jobs, &frames, (iw, ih), &mut bilinear_canvas, size, libyuv::BILINEAR),
                        _ => run_libyuv(&yuv, &jobs, &frames, (iw, ih), &mut box_canvas, size, libyuv::BOX),
                    }
                }
                // The first rounds warm the caches and the clock.
                if round >= 5 {
                    t.push(start.elapsed().as_secs_f64() / 4.0);
                }
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let [ours, fl, bil, bx] = times.each_mut().map(median);
        eprintln!(
            "paired {tiles} x {iw}x{ih} -> {cw}x{ch}: ours {:.0} µs, floor {:.0} µs, libyuv bilinear {:.0} µs, box {:.0} µs; ours/bilinear {:.2}, ours/box {:.2}",
            ours * 1e6, fl * 1e6, bil * 1e6, bx * 1e6, ours / bil, ours / bx
        );
        report.insert(
            format!("{cw}x{ch}/{iw}x{ih}/{tiles}"),
            serde_json::json!({"ours_ns": ours * 1e9, "floor_ns": fl * 1e9, "libyuv_bilinear_ns": bil * 1e9, "libyuv_box_ns": bx * 1e9}),
        );
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion/compositor-paired.json");
    let _ = std::fs::create_dir_all(out.parent().unwrap());
    let _ = std::fs::write(out, serde_json::Value::Object(report).to_string());
}

criterion_group!(benches, bench, upscale, paired);
criterion_main!(benches);
