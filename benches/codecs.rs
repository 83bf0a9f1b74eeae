//! Codec costs: H.264 encode and decode per frame of the moving test
//! pattern at 1280x720 and 640x360, Opus encode and decode per 20 ms.
//! Run: `cargo bench --bench codecs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::Duration;
use tessera::media::frame::{AudioFrame, VideoFrame};
use tessera::media::h264::{H264Config, H264Decoder, H264Encoder};
use tessera::media::opus::{OpusDecoder, OpusEncoder};
use tessera::media::pattern::{palette, TestPattern, Tone};

const FPS: u32 = 30;

fn pattern_frames(w: usize, h: usize, n: usize) -> Vec<VideoFrame> {
    let mut p = TestPattern::new(w, h, palette(2), "bench").unwrap();
    (0..n)
        .map(|i| {
            p.render(i as u64 * 33, i as u32);
            p.frame().clone()
        })
        .collect()
}

fn h264(c: &mut Criterion) {
    let mut group = c.benchmark_group("h264");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (w, h, bitrate) in [(1280u32, 720u32, 1_500_000u32), (640, 360, 500_000)] {
        let frames = pattern_frames(w as usize, h as usize, 60);
        let id = format!("{w}x{h}");
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

        // A 4-second stream (one keyframe, then P frames), decoded in a loop.
        let mut enc = H264Encoder::new(H264Config::new(w, h, FPS, bitrate)).unwrap();
        let units: Vec<Vec<u8>> = (0..120)
            .filter_map(|i| {
                let f = &frames[i % frames.len()];
                enc.encode(&f.as_frame(), Duration::from_millis(i as u64 * 33)).unwrap().map(|e| e.data.to_vec())
            })
            .collect();
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
