//! Compositor speed: N distinct inputs tiled into one canvas, against the
//! memory floor of reading those inputs and writing that canvas, measured
//! in the same run. Run: `cargo bench --bench compositor`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tessera::layout::Layout;
use tessera::media::compositor::{Compositor, Source};
use tessera::media::frame::VideoFrame;
use tessera::media::pattern::{palette, TestPattern};

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

fn inputs(n: usize, w: usize, h: usize) -> Vec<VideoFrame> {
    (0..n)
        .map(|i| {
            let mut p = TestPattern::new(w, h, palette(i), &format!("input {i}")).unwrap();
            p.render(i as u64 * 137, i as u32);
            p.frame().clone()
        })
        .collect()
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

criterion_group!(benches, bench, upscale);
criterion_main!(benches);
