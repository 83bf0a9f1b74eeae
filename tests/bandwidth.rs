//! Every downstream fits its link: one member's way back from the server
//! goes through a bottleneck (a token bucket with a 100 ms queue, on
//! loopback UDP), in a room of three camera-like senders with a 720p30
//! view. The capped member must get a stream under the cap with little
//! loss and few freezes, the others keep the full rate, and when the cap
//! goes the capped member climbs back. Run with transport-wide feedback
//! (GCC) and with receiver reports only; and a cap that falls mid-call.
//!
//! The same with Chromium as the capped member, behind the same relay.
//! An ignored sweep (`link_use_by_cap_and_feedback`) prints how much of
//! links of 250 kbps to 1.2 Mbps the member's downstream uses, for notes.
//!
//! Measured on two shared cores (debug test build): frozen 0-1.1 s in
//! 25 s, back at 80 % in 8-12 s, longest gap 0.7-1.2 s when the cap
//! falls. The bounds leave room for a slower CI machine (frozen under
//! 3 s in 25 s, back within 25 s, no gap of 3 s) and still fail at once
//! if the member were left at the full rate behind its link (frozen
//! nearly all the time) or never climbed back.

mod common;

use common::browser::{solid_y4m, tone_wav, Chromium};
use common::relay::{Cap, LossyRelay};
use common::*;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::client::source::VideoSource;
use tessera::client::{CandidateMap, Client, ClientOptions};
use tessera::media::pattern::palette;

const CANVAS_BITRATE: f64 = 1_500_000.0;

/// One call at a time: three rooms of three camera-like senders on two
/// shared cores would measure the machine, not the links.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const CAP: Cap = Cap { bps: 400_000, queue: Duration::from_millis(100) };

fn layouts_720p() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layouts")
}

/// A camera-like sender at 320x240, 15 fps.
fn sender(server: &Server, room: &str, peer: &str, i: usize) -> ClientOptions {
    let mut o = server.client(room, peer, i);
    o.send.video = VideoSource::Scene(palette(i));
    o
}

/// A room of three camera-like senders, a and b on open links (counting
/// bytes, not decoding) and c behind a bottleneck of `cap`, with or
/// without transport-wide feedback.
async fn room_with_capped_member(server: &Server, room: &str, cap: Cap, twcc: bool) -> ([Client; 3], Arc<LossyRelay>) {
    // The unlimited members only count bytes: three 720p decoders on
    // two shared cores would measure the machine, not the links.
    let a = join(ClientOptions { decode: false, ..sender(server, room, "a", 0) }).await;
    let b = join(ClientOptions { decode: false, ..sender(server, room, "b", 1) }).await;
    let relay = LossyRelay::capped(Some(cap));
    let mut o = sender(server, room, "c", 2);
    let r = relay.clone();
    o.relay = Some(CandidateMap(Arc::new(move |addr| Some(r.route(addr)))));
    o.peer_options.twcc = twcc;
    let c = join(o).await;
    ([a, b, c], relay)
}

/// Video rate (bits/s) each client received over the last `window`,
/// from readings taken every `step`.
struct Meter {
    readings: Vec<(Instant, Vec<u64>)>,
}

impl Meter {
    fn read(&mut self, clients: &[&Client]) {
        self.readings.push((Instant::now(), clients.iter().map(|c| c.stats().video_bytes).collect()));
    }

    fn rate(&self, who: usize, window: Duration) -> Option<f64> {
        let (now, last) = self.readings.last()?;
        let (then, first) = self.readings.iter().rev().find(|(t, _)| now.duration_since(*t) >= window)?;
        Some((last[who] - first[who]) as f64 * 8.0 / now.duration_since(*then).as_secs_f64())
    }
}

async fn capped_member_follows_its_link(twcc: bool) {
    let _one_at_a_time = SERIAL.lock().await;
    let server = Server::start_with_layouts(&[], layouts_720p());
    let ([a, b, c], relay) = room_with_capped_member(&server, "bw", CAP, twcc).await;
    let clients = [&a, &b, &c];
    let kind = if twcc { "transport-wide feedback" } else { "receiver reports only" };

    let mut meter = Meter { readings: Vec::new() };
    let t0 = Instant::now();
    let step = Duration::from_millis(250);
    let window = Duration::from_secs(2);
    let (mut worst_free, mut c_over_cap, mut c_max) = (f64::MAX, 0usize, 0f64);
    let mut drops_at_5s = None;
    let mut frozen_at_5s = None;
    // The tier bitrate the room state gives c, sampled through the capped time.
    let mut c_tiers: Vec<u32> = Vec::new();
    // 30 s capped.
    while t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(step).await;
        meter.read(&clients);
        let elapsed = t0.elapsed();
        if elapsed >= Duration::from_secs(4) {
            for who in [0, 1] {
                if let Some(r) = meter.rate(who, window) {
                    worst_free = worst_free.min(r);
                }
            }
        }
        if elapsed >= Duration::from_secs(5) {
            let s = &relay.stats;
            drops_at_5s
                .get_or_insert((s.down_dropped.load(Ordering::Relaxed), s.down_forwarded.load(Ordering::Relaxed)));
            frozen_at_5s.get_or_insert(c.stats().frozen);
            let state = c.room_state().and_then(|s| s.participants.into_iter().find(|p| p.peer == "c"));
            if let Some(d) = state.and_then(|p| p.downstream) {
                c_tiers.push(d.bitrate);
            }
            if let Some(r) = meter.rate(2, window) {
                c_max = c_max.max(r);
                if r > CAP.bps as f64 {
                    c_over_cap += 1;
                }
            }
        }
    }
    let (d0, f0) = drops_at_5s.unwrap();
    let (d1, f1) =
        (relay.stats.down_dropped.load(Ordering::Relaxed), relay.stats.down_forwarded.load(Ordering::Relaxed));
    let loss = (d1 - d0) as f64 / ((d1 - d0) + (f1 - f0)).max(1) as f64;
    let frozen = c.stats().frozen.saturating_sub(frozen_at_5s.unwrap());
    let capped_state =
        c.room_state().and_then(|s| s.participants.into_iter().find(|p| p.peer == "c")).and_then(|p| p.downstream);

    // The cap goes: how long until c is back near the full rate.
    relay.set_cap(None);
    let lifted = Instant::now();
    let mut recovered = None;
    while lifted.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(step).await;
        meter.read(&clients);
        if lifted.elapsed() >= window {
            if let Some(r) = meter.rate(2, window) {
                if r >= 0.8 * CANVAS_BITRATE {
                    recovered = Some(lifted.elapsed());
                    break;
                }
            }
            for who in [0, 1] {
                if let Some(r) = meter.rate(who, window) {
                    worst_free = worst_free.min(r);
                }
            }
        }
    }
    println!(
        "{kind}: capped member at {:.0} kbps at most over 2 s windows ({c_over_cap} windows over the 400 kbps cap), \
         loss {:.2} %, frozen {} ms in 25 s; the others at least {:.0} kbps; \
         back at 80 % of the canvas rate {:?} after the cap went; its downstream when capped: {capped_state:?}",
        c_max / 1000.0,
        loss * 100.0,
        frozen.as_millis(),
        worst_free / 1000.0,
        recovered
    );
    assert!(c_over_cap == 0, "{kind}: the capped member got more than the cap in {c_over_cap} windows");
    assert!(loss < 0.04, "{kind}: {:.1} % lost at the bottleneck", loss * 100.0);
    assert!(frozen < Duration::from_secs(3), "{kind}: frozen {frozen:?} in 25 s");
    assert!(worst_free >= 0.8 * CANVAS_BITRATE, "{kind}: an unlimited member fell to {worst_free:.0} bit/s");
    let recovered = recovered.unwrap_or_else(|| panic!("{kind}: never back at 80 % of the canvas rate"));
    assert!(recovered <= Duration::from_secs(25), "{kind}: back only after {recovered:?}");
    let state = capped_state.expect("the room state says nothing of the capped member's downstream");
    assert!(state.tier > 0, "{state:?}");
    // Most of the time the state names a tier under the cap (a probe one
    // level up may be caught in a sample; a member left near the full rate
    // would be over it throughout).
    c_tiers.sort_unstable();
    let median = c_tiers.get(c_tiers.len() / 2).copied().unwrap_or(u32::MAX);
    assert!(median < CAP.bps as u32, "{kind}: median tier bitrate {median} in the room state; samples {c_tiers:?}");
    for c in [a, b, c] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_member_with_transport_wide_feedback_gets_what_its_link_carries() {
    capped_member_follows_its_link(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_member_that_sends_only_receiver_reports_gets_what_its_link_carries() {
    capped_member_follows_its_link(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_drops_from_2_mbps_to_300_kbps_mid_call_is_followed_within_seconds() {
    let _one_at_a_time = SERIAL.lock().await;
    let server = Server::start_with_layouts(&[], layouts_720p());
    let cap = Cap { bps: 2_000_000, queue: Duration::from_millis(100) };
    let ([a, b, c], relay) = room_with_capped_member(&server, "bw", cap, true).await;
    eventually(Duration::from_secs(30), "c at the full rate", || {
        (c.stats().frames > 60).then_some(()).ok_or("not yet".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.set_cap(Some(Cap { bps: 300_000, queue: Duration::from_millis(100) }));
    let dropped = Instant::now();
    let (mut last, mut last_at, mut longest) = (c.stats().frames, Instant::now(), Duration::ZERO);
    let mut adapted = None;
    let bytes0 = c.stats().video_bytes;
    let mut window: Vec<(Instant, u64)> = vec![(Instant::now(), bytes0)];
    while dropped.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = c.stats();
        if s.frames != last {
            longest = longest.max(last_at.elapsed());
            last = s.frames;
            last_at = Instant::now();
        }
        window.push((Instant::now(), s.video_bytes));
        window.retain(|(t, _)| t.elapsed() <= Duration::from_millis(1000));
        let (t, v) = window[0];
        let rate = (s.video_bytes - v) as f64 * 8.0 / t.elapsed().as_secs_f64().max(0.5);
        if adapted.is_none() && dropped.elapsed() > Duration::from_secs(1) && rate < 300_000.0 {
            adapted = Some(dropped.elapsed());
        }
    }
    longest = longest.max(last_at.elapsed());
    println!(
        "2 Mbps -> 300 kbps: longest gap between pictures {longest:?}; under the cap (1 s windows) after {adapted:?}"
    );
    assert!(longest < Duration::from_secs(3), "the picture froze for {longest:?}");
    assert!(adapted.is_some(), "never under the new cap");
    for c in [a, b, c] {
        c.leave().await;
    }
}

/// Page script for a browser behind the relay: the server's candidates
/// name the relay's ports (`map`: server port to relay port), and the
/// page keeps its own candidates to itself, so the server only ever sees
/// the relay's address and every packet to the page crosses the
/// bottleneck.
fn relay_script(map: &[(u16, u16)]) -> String {
    let pairs: Vec<String> = map.iter().map(|(s, r)| format!("\"{s}\":{r}")).collect();
    format!(
        r#"(() => {{
  const map = {{{pairs}}};
  const rewrite = (c) => c.replace(/^(a=)?(candidate:\S+ \d+ udp \d+ 127\.0\.0\.1 )(\d+)/i,
    (m, a, head, port) => (map[port] ? (a || "") + head + map[port] : m));
  const Base = window.RTCPeerConnection;
  class Relayed extends Base {{
    setRemoteDescription(d) {{
      if (d && d.sdp) d = {{ type: d.type, sdp: d.sdp.split("\r\n").map(rewrite).join("\r\n") }};
      return super.setRemoteDescription(d);
    }}
    addIceCandidate(c) {{
      if (c && c.candidate) c = {{ ...c, candidate: rewrite(c.candidate) }};
      return super.addIceCandidate(c);
    }}
    set onicecandidate(f) {{
      super.onicecandidate = (e) => {{ if (!e.candidate) f(e); }};
    }}
  }}
  window.RTCPeerConnection = Relayed;
}})();"#,
        pairs = pairs.join(",")
    )
}

/// What the page's browser says it received.
#[derive(Clone, Copy, Debug, Default)]
struct PageVideo {
    bytes: u64,
    frames: u64,
    frozen: f64,
}

async fn page_video(b: &mut Chromium) -> PageVideo {
    let v = b.eval("c", "tessera.videoStats()").await;
    PageVideo {
        bytes: v["bytes"].as_u64().unwrap_or(0),
        frames: v["frames"].as_u64().unwrap_or(0),
        frozen: v["frozenSeconds"].as_f64().unwrap_or(0.0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_chromium_page_gets_what_its_link_carries() {
    let _one_at_a_time = SERIAL.lock().await;
    let first = free_port();
    let ports = (first, first + 11);
    let range = format!("{}-{}", ports.0, ports.1);
    let server = Server::start_with_layouts(&["--udp-ports", &range], layouts_720p());
    let a = join(ClientOptions { decode: false, ..sender(&server, "bw", "a", 0) }).await;
    let b = join(ClientOptions { decode: false, ..sender(&server, "bw", "b", 1) }).await;
    // Every server port is reachable through the relay; the page is told
    // only the relay's.
    let relay = LossyRelay::capped(Some(CAP));
    let map: Vec<(u16, u16)> =
        (ports.0..=ports.1).map(|p| (p, relay.route(std::net::SocketAddr::from(([127, 0, 0, 1], p))).port())).collect();
    let dir = std::env::temp_dir().join(format!("tessera-bw-page-{first}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (y4m, wav) = (dir.join("c.y4m"), dir.join("c.wav"));
    solid_y4m(&y4m, palette(2), 30);
    tone_wav(&wav, 660.0, 4.0);
    let mut browser = Chromium::start();
    let url = format!("http://127.0.0.1:{}/room/bw?autojoin=1&audio=raw&peer=chrome&name=Chrome", server.http_port);
    // A window wider than 960x540: the page asks for the canvas itself.
    browser.open_with("c", &url, &y4m, &wav, (1400, 900), Some(&relay_script(&map))).await;
    let joined = Instant::now();
    while page_video(&mut browser).await.frames < 30 {
        if joined.elapsed() > Duration::from_secs(30) {
            let state = browser.eval("c", "JSON.stringify({errors: tessera.errors, joined: tessera.joined})").await;
            panic!(
                "the page never showed the composite: {state}; relay up {} down {}; logs {:?}",
                relay.stats.forwarded.load(Ordering::Relaxed),
                relay.stats.down_forwarded.load(Ordering::Relaxed),
                browser.logs("c").await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(relay.stats.down_forwarded.load(Ordering::Relaxed) > 0, "the page's media did not cross the relay");

    let clients = [&a, &b];
    let mut meter = Meter { readings: Vec::new() };
    let mut page: Vec<(Instant, PageVideo)> = Vec::new();
    let page_rate = |page: &[(Instant, PageVideo)], window: Duration| -> Option<f64> {
        let (now, last) = page.last()?;
        let (then, first) = page.iter().rev().find(|(t, _)| now.duration_since(*t) >= window)?;
        Some((last.bytes - first.bytes) as f64 * 8.0 / now.duration_since(*then).as_secs_f64())
    };
    let step = Duration::from_millis(250);
    let window = Duration::from_secs(2);
    let t0 = Instant::now();
    let (mut worst_free, mut over_cap, mut c_max) = (f64::MAX, 0usize, 0f64);
    let (mut at_5s, mut drops_at_5s) = (None, None);
    while t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(step).await;
        meter.read(&clients);
        page.push((Instant::now(), page_video(&mut browser).await));
        if t0.elapsed() >= Duration::from_secs(4) {
            for who in [0, 1] {
                if let Some(r) = meter.rate(who, window) {
                    worst_free = worst_free.min(r);
                }
            }
        }
        if t0.elapsed() >= Duration::from_secs(5) {
            at_5s.get_or_insert(page.last().unwrap().1);
            let s = &relay.stats;
            drops_at_5s
                .get_or_insert((s.down_dropped.load(Ordering::Relaxed), s.down_forwarded.load(Ordering::Relaxed)));
            if let Some(r) = page_rate(&page, window) {
                c_max = c_max.max(r);
                over_cap += usize::from(r > CAP.bps as f64);
            }
        }
    }
    let (start, end) = (at_5s.unwrap(), page.last().unwrap().1);
    let frozen = end.frozen - start.frozen;
    let fps = (end.frames - start.frames) as f64 / 25.0;
    let (d0, f0) = drops_at_5s.unwrap();
    let (d1, f1) =
        (relay.stats.down_dropped.load(Ordering::Relaxed), relay.stats.down_forwarded.load(Ordering::Relaxed));
    let loss = (d1 - d0) as f64 / ((d1 - d0) + (f1 - f0)).max(1) as f64;
    let state = a.room_state().and_then(|s| s.participants.into_iter().find(|p| p.peer == "chrome"));
    let capped = state.and_then(|p| p.downstream);

    relay.set_cap(None);
    let lifted = Instant::now();
    let mut recovered = None;
    while lifted.elapsed() < Duration::from_secs(25) {
        tokio::time::sleep(step).await;
        page.push((Instant::now(), page_video(&mut browser).await));
        if lifted.elapsed() >= window && page_rate(&page, window).is_some_and(|r| r >= 0.8 * CANVAS_BITRATE) {
            recovered = Some(lifted.elapsed());
            break;
        }
    }
    println!(
        "Chromium (transport-wide feedback): at {:.0} kbps at most over 2 s windows ({over_cap} windows over the 400 kbps \
         cap), {fps:.1} fps, loss {:.2} %, frozen {:.0} ms in 25 s (Chromium's own count); the others at least {:.0} kbps; \
         back at 80 % of the canvas rate {recovered:?} after the cap went; its downstream when capped: {capped:?}",
        c_max / 1000.0,
        loss * 100.0,
        frozen * 1000.0,
        worst_free / 1000.0,
    );
    let capped = capped.expect("the room state says nothing of the page's downstream");
    assert_eq!(capped.source, "twcc", "Chromium sends transport-wide feedback: {capped:?}");
    assert!(capped.tier > 0, "{capped:?}");
    assert!(over_cap == 0, "the page got more than the cap in {over_cap} windows");
    assert!(loss < 0.04, "{:.1} % lost at the bottleneck", loss * 100.0);
    assert!(frozen < 3.0, "the page was frozen {frozen:.1} s in 25 s");
    assert!(fps > 5.0, "the page showed {fps:.1} fps behind the cap");
    assert!(worst_free >= 0.8 * CANVAS_BITRATE, "an unlimited member fell to {worst_free:.0} bit/s");
    assert!(recovered.is_some(), "the page was not back at 80 % of the canvas rate within 25 s");
    browser.quit().await;
    for c in [a, b] {
        c.leave().await;
    }
}

/// Not a check but a sweep whose output goes in notes: how much of a
/// capped link the member's downstream uses, by cap and by the feedback
/// its receiver sends. Per cap: a fresh room of three camera-like
/// senders, 12 s to settle, then 20 s measured at the bottleneck (every
/// byte it forwarded to the member: video, audio, RTCP, SRTP overhead)
/// and at the member (video received, time frozen).
///
/// `cargo test --test bandwidth -- --ignored --nocapture link_use`
///
/// `SWEEP_CAPS=800,1200` (kbps) and `SWEEP_FEEDBACK=twcc` or `reports`
/// narrow it to some cells (one cell again and again, to study it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a sweep for notes, about 5 minutes"]
async fn link_use_by_cap_and_feedback() {
    let _one_at_a_time = SERIAL.lock().await;
    let server = Server::start_with_layouts(&[], layouts_720p());
    let caps: Vec<u64> = match std::env::var("SWEEP_CAPS") {
        Ok(list) => list.split(',').filter_map(|k| k.trim().parse::<u64>().ok()).map(|k| k * 1000).collect(),
        Err(_) => vec![250_000, 500_000, 800_000, 1_200_000],
    };
    let feedback: Vec<bool> = match std::env::var("SWEEP_FEEDBACK").as_deref() {
        Ok("twcc") => vec![true],
        Ok("reports") => vec![false],
        _ => vec![true, false],
    };
    println!("| feedback | cap | link used | video received | frozen per minute | lost at the bottleneck |");
    println!("|---|---|---|---|---|---|");
    for (run, (twcc, bps)) in feedback.into_iter().flat_map(|t| caps.iter().map(move |&b| (t, b))).enumerate() {
        let cap = Cap { bps, queue: Duration::from_millis(100) };
        let ([a, b, c], relay) = room_with_capped_member(&server, &format!("sweep{run}"), cap, twcc).await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let s = &relay.stats;
        let read = || {
            (
                s.down_bytes.load(Ordering::Relaxed),
                s.down_forwarded.load(Ordering::Relaxed),
                s.down_dropped.load(Ordering::Relaxed),
                c.stats(),
            )
        };
        let (bytes0, fwd0, drop0, c0) = read();
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_secs(20)).await;
        let (bytes1, fwd1, drop1, c1) = read();
        let secs = t0.elapsed().as_secs_f64();
        let used = (bytes1 - bytes0) as f64 * 8.0 / secs;
        let video = (c1.video_bytes - c0.video_bytes) as f64 * 8.0 / secs;
        let frozen = c1.frozen.saturating_sub(c0.frozen).as_secs_f64() * 60.0 / secs;
        let lost = (drop1 - drop0) as f64 / ((drop1 - drop0) + (fwd1 - fwd0)).max(1) as f64;
        println!(
            "| {} | {} kbps | {:.0} kbps ({:.0} %) | {:.0} kbps | {:.2} s | {:.2} % |",
            if twcc { "transport-wide" } else { "receiver reports" },
            bps / 1000,
            used / 1000.0,
            used / bps as f64 * 100.0,
            video / 1000.0,
            frozen,
            lost * 100.0
        );
        for c in [a, b, c] {
            c.leave().await;
        }
    }
}
