//! What networks and users do to a server: cameras that go dark, limits
//! hit on purpose, recordings checked by an independent decoder.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;
use tessera::media::pattern::palette;
use tessera::signaling::link::{Link, LinkEvent};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_goes_dark_shows_its_last_frame_then_its_placeholder() {
    let server = Server::start(&["--video-timeout-secs", "2"]);
    let watcher = join(server.client("c1", "watcher", 0)).await;
    let cam = join(server.client("c1", "cam", 1)).await;
    let grid = layout(&server, "grid");
    let colors = vec![("watcher".to_string(), palette(0)), ("cam".to_string(), palette(1))];
    let state = eventually(LIMIT, "both tiles", || {
        let s = watcher.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&watcher, &s, &grid, &colors).map(|_| s)
    })
    .await;
    let cam_tile = |c: &tessera::client::Client| -> tessera::media::color::Rgb {
        let f = c.latest_frame().unwrap();
        let frame = f.frame.as_frame();
        let ids: Vec<u64> = vec![0, 1];
        let p = tessera::media::compositor::placements(&grid, &ids, None, frame.width() as u32, frame.height() as u32);
        let cam = p.iter().find(|p| p.id == 1).unwrap();
        // Away from the centred name a placeholder draws.
        tessera::media::convert::mean_rgb(
            &frame,
            (cam.inner.x + cam.inner.w / 8) as usize,
            (cam.inner.y + cam.inner.h / 2) as usize,
            4,
            4,
        )
    };
    assert!(cam_tile(&watcher).distance(palette(1)) < 40.0);
    let _ = state;

    cam.set_video(false);
    let off = std::time::Instant::now();
    let frames = watcher.stats().frames;
    // Right after, the last picture is still shown...
    eventually(LIMIT, "a new frame after the camera went dark", || {
        (watcher.stats().frames > frames + 2).then_some(()).ok_or("no frame".to_string())
    })
    .await;
    if off.elapsed() < Duration::from_millis(1500) {
        assert!(cam_tile(&watcher).distance(palette(1)) < 40.0, "last frame not kept");
    }
    // ...then the placeholder, and the canvas never stops.
    let placeholder = grid.placeholder.color;
    eventually(LIMIT, "placeholder after the timeout", || {
        let got = cam_tile(&watcher);
        (got.distance(placeholder) < 30.0).then_some(()).ok_or(format!("{got}, want {placeholder}"))
    })
    .await;
    assert!(off.elapsed() >= Duration::from_secs(2), "placeholder before the timeout");
    let frames = watcher.stats().frames;
    eventually(LIMIT, "the canvas keeps going", || {
        (watcher.stats().frames > frames + 15).then_some(()).ok_or("stalled".to_string())
    })
    .await;
    // Camera back on: the picture returns.
    cam.set_video(true);
    eventually(LIMIT, "picture back", || {
        let got = cam_tile(&watcher);
        (got.distance(palette(1)) < 40.0).then_some(()).ok_or(format!("{got}"))
    })
    .await;
    for c in [watcher, cam] {
        c.leave().await;
    }
}

async fn raw(server: &Server, id: &str, filter: &str) -> (Link, tokio::sync::mpsc::Receiver<LinkEvent>) {
    raw_link(&server.url, id, &[filter]).await
}

async fn error_code(events: &mut tokio::sync::mpsc::Receiver<LinkEvent>) -> String {
    loop {
        match tokio::time::timeout(LIMIT, events.recv()).await {
            Ok(Some(LinkEvent::Message { payload, .. })) => {
                let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                if v["type"] == "error" {
                    return v["code"].as_str().unwrap_or_default().to_owned();
                }
            }
            Ok(Some(_)) => {}
            _ => panic!("no error reply"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_limit_gets_a_clear_error_and_others_are_unaffected() {
    let server = Server::start(&["--max-rooms", "1", "--rate-limit", "5"]);
    let a = join(server.client("l1", "a", 0)).await;

    // A second room is one too many.
    let b = tessera::client::Client::join(server.client("l2", "b", 1)).await.unwrap();
    eventually(LIMIT, "b refused", || {
        b.notices()
            .iter()
            .any(|n| matches!(n, tessera::client::Notice::Error { code, .. } if code == "too-many-rooms"))
            .then_some(())
            .ok_or(format!("{:?}", b.notices()))
    })
    .await;

    // A flood from one peer is cut off with rate-limited.
    let (flood, mut events) = raw(&server, "flooder", "tessera/l1/out/flooder").await;
    for _ in 0..100 {
        flood
            .publish("tessera/l1/in/flooder", br#"{"type":"candidate","candidate":""}"#.to_vec(), false)
            .await
            .unwrap();
    }
    assert_eq!(error_code(&mut events).await, "rate-limited");

    // Room l1 carries on.
    let frames = a.stats().frames;
    eventually(LIMIT, "a keeps receiving", || {
        (a.stats().frames > frames + 15).then_some(()).ok_or("stalled".to_string())
    })
    .await;
    assert_eq!(a.room_state().unwrap().participants.len(), 1);
    flood.close().await;
    b.leave().await;
    a.leave().await;
}

fn ffprobe(path: &std::path::Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries", entries, "-of", "compact=p=0:nk=0"])
        .arg(path)
        .output()
        .expect("ffprobe (install ffmpeg: scripts/install-deps)");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_decode_with_ffprobe() {
    let server = Server::start(&[]);
    let other = join(server.client("rec", "other", 2)).await;
    let dir = std::env::temp_dir().join(format!("tessera-rec-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    for ext in ["y4m", "h264"] {
        let video = dir.join(format!("composite.{ext}"));
        let audio = dir.join(format!("mix-{ext}.wav"));
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["client", "--room", "rec", "--peer", &format!("rec-{ext}"), "--size", "320x240", "--fps", "15"])
            .args(["--mqtt-url", &server.url, "--duration", "4", "--json", "--layouts"])
            .arg(&server.layouts)
            .arg("--record")
            .arg(&video)
            .arg("--record-audio")
            .arg(&audio)
            .output()
            .unwrap();
        assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value =
            serde_json::from_slice(out.stdout.rsplit(|&b| b == b'\n').find(|l| !l.is_empty()).unwrap()).unwrap();
        let decoded = summary["frames_decoded"][0].as_u64().unwrap();
        assert!(decoded > 30, "only {decoded} frames decoded");
        let probe = ffprobe(&video, "stream=width,height,nb_read_frames");
        assert!(probe.contains("width=640") && probe.contains("height=360"), "{ext}: {probe}");
        let frames: u64 = probe.split('|').find_map(|kv| kv.strip_prefix("nb_read_frames=")).unwrap().parse().unwrap();
        assert_eq!(frames, decoded, "{ext}: ffprobe read {frames} frames, tessera decoded {decoded}");
        let wav = ffprobe(&audio, "stream=sample_rate,channels,duration");
        assert!(wav.contains("sample_rate=48000") && wav.contains("channels=1"), "{wav}");
        let secs: f64 = wav.split('|').find_map(|kv| kv.strip_prefix("duration=")).unwrap().parse().unwrap();
        assert!(secs > 2.0, "{secs} s of audio");
    }
    std::fs::remove_dir_all(&dir).ok();
    other.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_leave_for_members_still_in_the_call_is_ignored_viewers_included() {
    // A broker that restarts publishes the last wills of clients that are
    // still connected. The server trusts what it hears over WebRTC: a
    // sender's media, a viewer's receiver reports.
    let server = Server::start(&[]);
    let a = join(server.client("lw", "a", 0)).await;
    let tv = join(viewer(server.client("lw", "tv", 5), None)).await;
    let tv2 = join(viewer(server.client("lw", "tv2", 6), None)).await;
    let in_room = |c: &tessera::client::Client, peers: &[&str]| -> Result<(), String> {
        let s = c.room_state().ok_or("no state")?;
        let mut got: Vec<&str> = s.participants.iter().map(|p| p.peer.as_str()).collect();
        got.sort_unstable();
        (got == peers).then_some(()).ok_or(format!("in the room: {got:?}"))
    };
    eventually(LIMIT, "everyone in, the viewer receiving", || {
        in_room(&a, &["a", "tv", "tv2"])?;
        (tv.stats().frames > 5).then_some(()).ok_or("tv has no frames".to_string())
    })
    .await;
    let (replayer, _events) = raw(&server, "replayer", "tessera/lw/state").await;
    for peer in ["a", "tv"] {
        let will = br#"{"type":"leave","will":true}"#.to_vec();
        replayer.publish(&format!("tessera/lw/in/{peer}"), will, false).await.unwrap();
    }
    let frames = tv.stats().frames;
    eventually(LIMIT, "both leaves doubted, then ignored", || {
        let log = server.log_text();
        let ignored = |p: &str| log.lines().any(|l| l.contains("ignored a leave") && l.contains(&format!("peer={p}")));
        (ignored("a") && ignored("tv")).then_some(()).ok_or("not yet".to_string())
    })
    .await;
    in_room(&a, &["a", "tv", "tv2"]).unwrap();
    assert!(tv.stats().frames > frames + 30, "the viewer stopped receiving: {} -> {}", frames, tv.stats().frames);
    // A viewer that really leaves is gone.
    tv2.leave().await;
    eventually(LIMIT, "tv2 gone", || in_room(&a, &["a", "tv"])).await;
    for c in [a, tv] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_leave_is_honoured_at_once_while_media_still_flows() {
    // A client that publishes `leave` and closes its peer connection late
    // (or never): its media keeps coming, yet it must be gone at once.
    let server = Server::start(&[]);
    let stay = join(server.client("xl", "stay", 0)).await;
    let go = join(server.client("xl", "go", 1)).await;
    let grid = layout(&server, "grid");
    let colors = vec![("stay".to_string(), palette(0)), ("go".to_string(), palette(1))];
    eventually(LIMIT, "both tiles", || {
        let s = stay.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&stay, &s, &grid, &colors)
    })
    .await;
    // `go`'s own MQTT link publishes the leave; its media goes on.
    go.link().publish("tessera/xl/in/go", br#"{"type":"leave"}"#.to_vec(), false).await.unwrap();
    let at = std::time::Instant::now();
    eventually(Duration::from_secs(1), "go out of the state and of the composite", || {
        let s = stay.room_state().ok_or("no state")?;
        let peers: Vec<&str> = s.participants.iter().map(|p| p.peer.as_str()).collect();
        (peers == ["stay"]).then_some(()).ok_or(format!("in the room: {peers:?}"))?;
        // With one tile left, `stay` fills the canvas.
        check_tiles(&stay, &s, &grid, &colors)
    })
    .await;
    eprintln!("explicit leave with live media honoured in {} ms", at.elapsed().as_millis());
    go.vanish().await;
    stay.leave().await;
}
