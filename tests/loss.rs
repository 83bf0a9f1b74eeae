//! 5% random packet loss between one participant and the server, both
//! ways (a lossy UDP relay). Video recovers (NACK, then keyframes on PLI),
//! audio conceals; the frozen-video time is measured and printed.

mod common;

use common::relay::LossyRelay;
use common::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::client::CandidateMap;
use tessera::media::pattern::{palette, tone_for};

const LIMIT: Duration = Duration::from_secs(30);
const MEASURE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_recovers_video_and_conceals_audio() {
    let server = Server::start(&[]);
    let observer = join(server.client("loss", "observer", 0)).await;
    let relay = LossyRelay::new(0.05);
    let mut o = server.client("loss", "lossy", 1);
    let r = relay.clone();
    o.relay = Some(CandidateMap(Arc::new(move |addr| Some(r.route(addr)))));
    let lossy = join(o).await;
    let grid = layout(&server, "grid");
    let colors = vec![("observer".to_string(), palette(0)), ("lossy".to_string(), palette(1))];
    eventually(LIMIT, "both tiles everywhere", || {
        let s = observer.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&observer, &s, &grid, &colors)?;
        check_tiles(&lossy, &s, &grid, &colors)
    })
    .await;

    // Watch for MEASURE: the lossy participant's decoded composite
    // (downstream) and its tile in the observer's composite (upstream).
    let _ = observer.take_latencies_by_peer();
    let start = Instant::now();
    let mut last_frames = lossy.stats().frames;
    let mut last_change = Instant::now();
    let mut frozen_down = Duration::ZERO;
    while start.elapsed() < MEASURE {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = lossy.stats().frames;
        let now = Instant::now();
        if n != last_frames {
            // A gap of more than 200 ms without a new picture is frozen video.
            let gap = now - last_change;
            if gap > Duration::from_millis(200) {
                frozen_down += gap;
            }
            last_frames = n;
            last_change = now;
        }
    }
    let up: Vec<u32> =
        observer.take_latencies_by_peer().into_iter().filter(|(p, _)| p == "lossy").map(|(_, l)| l).collect();
    let stale = up.iter().filter(|&&l| l > 300).count();
    let frozen_up = MEASURE.mul_f64(stale as f64 / up.len().max(1) as f64);
    let per_minute = |d: Duration| d.as_secs_f64() * 60.0 / MEASURE.as_secs_f64();
    let (fwd, dropped) = (relay.stats.forwarded.load(Ordering::Relaxed), relay.stats.dropped.load(Ordering::Relaxed));
    println!(
        "5% loss over {MEASURE:?}: relay dropped {dropped} of {} packets; frozen video per minute: downstream {:.1} s, upstream {:.1} s ({} of {} tile samples stale)",
        fwd + dropped,
        per_minute(frozen_down),
        per_minute(frozen_up),
        stale,
        up.len()
    );
    assert!(dropped as f64 > 0.03 * (fwd + dropped) as f64, "the relay did not drop packets");
    assert!(lossy.stats().frames > 15 * MEASURE.as_secs() / 2, "downstream video did not keep going");
    assert!(up.len() > 100, "too few upstream samples: {}", up.len());
    // Recovery, not perfection: under a third of the time frozen each way.
    assert!(per_minute(frozen_down) < 20.0 && per_minute(frozen_up) < 20.0);
    // Audio conceals: both still hear the other's tone through the loss.
    let heard = tone_levels(&lossy, 1.0, &[tone_for(0)])[0];
    assert!(heard > -30.0, "lossy hears the observer at {heard:.1} dB");
    let heard = tone_levels(&observer, 1.0, &[tone_for(1)])[0];
    assert!(heard > -30.0, "observer hears lossy at {heard:.1} dB");
    for c in [observer, lossy] {
        c.leave().await;
    }
}
