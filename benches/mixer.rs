//! Mix-minus cost per 20 ms tick for N participants, all talking.
//! Run: `cargo bench --bench mixer`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::time::Duration;
use tessera::media::frame::AudioFrame;
use tessera::media::mixer::Mixer;
use tessera::media::pattern::{tone_for, Tone};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixer");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for n in [2usize, 8, 32, 64] {
        let mut mixer = Mixer::new();
        let frames: Vec<AudioFrame> = (0..n)
            .map(|i| {
                let mut f = AudioFrame::silence();
                Tone::new(tone_for(i), 0.3).next_frame(&mut f);
                f
            })
            .collect();
        for i in 0..n {
            mixer.add(i as u64);
        }
        group.bench_function(BenchmarkId::new("tick", n), |b| {
            b.iter(|| {
                for (i, f) in frames.iter().enumerate() {
                    mixer.push(i as u64, f);
                }
                mixer.tick();
                black_box(mixer.output(0));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
