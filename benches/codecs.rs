//! Codec costs: H.264 encode and decode per frame at 1280x720, 640x360 and
//! 320x180 (a 4x4 tile: what tile-sized ingest decodes)
//! on two contents: `scene`, the camera-like synthetic source (texture in
//! motion, drifting light, sensor noise: it costs what a camera costs),
//! and `pattern`, the flat test pattern (nearly free to code: kept to show
//! the difference). Opus encode and decode per 20 ms.
//! Run: `cargo bench --bench codecs`. The bitrate each content actually
//! coded to goes to `target/criterion/h264-content.json` (and stdout).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::Duration;
use tessera::media::frame::{AudioFrame, VideoFrame};
use tessera::media::h264::{H264Config, H264Decoder, H264Encoder};
use tessera::media::opus::{OpusDecoder, OpusEncoder};
use tessera::media::pattern::{palette, TestPattern, Tone};
use tessera::media::scene::CameraScene;

const FPS: u32 = 30;

/// `n` frames (30 fps) of `content` at `w` x `h`.
fn frames(content: &str, w: usize, h: usize, n: usize) -> Vec<VideoFrame> {
    let mut p = TestPattern::new(w, h, palette(2), "bench").unwrap();
    let mut s = CameraScene::new(w, h, palette(2), "bench").unwrap();
    (0..n)
        .map(|i| match content {
            "scene" => {
                s.render(i as u64 * 1000 / 30, i as u32);
                s.frame().clone()
            }
            _ => {
                p.render(i as u64 * 1000 / 30, i as u32);
                p.frame().clone()
            }
        })
        .collect()
}

fn h264(c: &mut Criterion) {
    let mut group = c.benchmark_group("h264");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let mut coded = serde_json::Map::new();
    for content in ["scene", "pattern"] {
        for (w, h, bitrate) in [(1280u32, 720u32, 1_500_000u32), (640, 360, 500_000), (320, 180, 190_000)] {
            // 4 s of content: 120 frames at 30 fps.
            let frames = frames(content, w as usize, h as usize, 120);
            let id = format!("{content}/{w}x{h}");
            let mut enc = H264Encoder::new(H264Config::new(w, h, FPS, bitrate)).unwrap();
            let mut i = 0usize;
            group.bench_function(BenchmarkId::new("encode", &id), |b| {
                b.iter(|| {
                    i += 1;
                    let f = &frames[i % frames.len()];
                    black_box(
                        enc.encode(&f.as_frame(), Duration::from_millis(i as u64 * 33)).unwrap().map(|e| e.data.len()),
                    );
                })
            });

            // The same 4 s coded once in real-time order (one keyframe, then
            // P frames), decoded in a loop; its size is what the content
            // costs against the target.
            let mut enc = H264Encoder::new(H264Config::new(w, h, FPS, bitrate)).unwrap();
            let units: Vec<Vec<u8>> = frames
                .iter()
                .enumerate()
                .filter_map(|(i, f)| {
                    enc.encode(&f.as_frame(), Duration::from_millis(i as u64 * 1000 / FPS as u64))
                        .unwrap()
                        .map(|e| e.data.to_vec())
                })
                .collect();
            let bytes: usize = units.iter().map(Vec::len).sum();
            let kbps = bytes as f64 * 8.0 / (frames.len() as f64 / FPS as f64) / 1000.0;
            println!("h264 {id}: coded to {kbps:.0} kbps against a {} kbps target", bitrate / 1000);
            coded.insert(id.clone(), serde_json::json!({"kbps": kbps, "target_kbps": bitrate / 1000}));
            let mut dec = H264Decoder::new().unwrap();
            let mut j = 0usize;
            group.bench_function(BenchmarkId::new("decode", &id), |b| {
                b.iter(|| {
                    if j.is_multiple_of(units.len()) {
                        dec = H264Decoder::new().unwrap();
                    }
                    let unit = &units[j % units.len()];
                    j += 1;
                    black_box(dec.decode(unit).unwrap().map(|d| d.frame().width()));
                })
            });
        }
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion/h264-content.json");
    let _ = std::fs::create_dir_all(out.parent().unwrap());
    let _ = std::fs::write(out, serde_json::Value::Object(coded).to_string());
    group.finish();
}

fn opus(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let mut tone = Tone::new(440.0, 0.3);
    let frames: Vec<AudioFrame> = (0..50)
        .map(|_| {
            let mut f = AudioFrame::silence();
            tone.next_frame(&mut f);
            f
        })
        .collect();
    let mut enc = OpusEncoder::new(32_000).unwrap();
    let mut i = 0;
    group.bench_function("encode/20ms", |b| {
        b.iter(|| {
            i += 1;
            black_box(enc.encode(&frames[i % frames.len()]).unwrap().len());
        })
    });
    let mut enc = OpusEncoder::new(32_000).unwrap();
    let packets: Vec<Vec<u8>> = frames.iter().map(|f| enc.encode(f).unwrap().to_vec()).collect();
    let mut dec = OpusDecoder::new().unwrap();
    let mut j = 0;
    group.bench_function("decode/20ms", |b| {
        b.iter(|| {
            j += 1;
            black_box(dec.decode(&packets[j % packets.len()]).unwrap().len());
        })
    });
    group.finish();
}

criterion_group!(benches, h264, opus);
criterion_main!(benches);
