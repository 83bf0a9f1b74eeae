//! End to end: a real `tessera serve` (embedded broker), real clients over
//! loopback WebRTC with DTLS-SRTP, real codecs. What each participant sees
//! and hears.

mod common;

use common::*;
use std::time::Duration;
use tessera::media::pattern::{palette, tone_for};
use tessera::signaling::protocol::RoomState;

const LIMIT: Duration = Duration::from_secs(30);

fn state_of(c: &tessera::client::Client, n: usize) -> Result<RoomState, String> {
    let s = c.room_state().ok_or("no room state")?;
    if s.participants.len() != n {
        return Err(format!("{} participants in the state, want {n}", s.participants.len()));
    }
    Ok(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_participants_see_and_hear_each_other_but_not_themselves() {
    let server = Server::start(&[]);
    let peers = ["alice", "bob", "carol", "dave"];
    let mut clients = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        clients.push(join(server.client("r1", p, i)).await);
    }
    let colors: Vec<(String, tessera::media::color::Rgb)> =
        peers.iter().enumerate().map(|(i, p)| (p.to_string(), palette(i))).collect();
    let grid = layout(&server, "grid");
    for c in &clients {
        eventually(LIMIT, &format!("{} sees everyone in the grid", c.peer()), || {
            let state = state_of(c, 4)?;
            check_tiles(c, &state, &grid, &colors)
        })
        .await;
    }
    let tones: Vec<f64> = (0..4).map(tone_for).collect();
    for (i, c) in clients.iter().enumerate() {
        eventually(LIMIT, &format!("{} hears the others, not itself", c.peer()), || {
            let levels = tone_levels(c, 0.5, &tones);
            let own = levels[i];
            let others: Vec<f64> = levels.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, l)| *l).collect();
            let quietest = others.iter().cloned().fold(f64::INFINITY, f64::min);
            // Each tone is sent at -12 dBFS; the limiter may lower them a little.
            if quietest < -30.0 {
                return Err(format!("another participant's tone is missing: {levels:?}"));
            }
            if own > quietest - 30.0 {
                return Err(format!("own tone {own:.1} dB is not 30 dB under the others (quietest {quietest:.1} dB)"));
            }
            Ok(())
        })
        .await;
    }
    for c in clients {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_asking_for_640x360_gets_it_with_everyone() {
    // The shipped layouts as they are: a 1280x720 canvas at 30 fps.
    let server = Server::start_with_layouts(&[], std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts"));
    let a = join(server.client("r2", "cam-a", 0)).await;
    let b = join(server.client("r2", "cam-b", 1)).await;
    let tv = join(viewer(server.client("r2", "tv", 5), Some((640, 360)))).await;
    let colors = vec![("cam-a".to_string(), palette(0)), ("cam-b".to_string(), palette(1))];
    let grid = layout(&server, "grid");
    eventually(LIMIT, "the viewer sees both cameras at 640x360", || {
        let state = state_of(&tv, 3)?;
        let frame = tv.latest_frame().ok_or("no frame")?;
        if (frame.frame.width(), frame.frame.height()) != (640, 360) {
            return Err(format!("got {}x{}", frame.frame.width(), frame.frame.height()));
        }
        if state.participants.iter().find(|p| p.peer == "tv").map(|p| p.role.as_str()) != Some("viewer") {
            return Err("tv is not a viewer".into());
        }
        check_tiles(&tv, &state, &grid, &colors)
    })
    .await;
    // The participants still get the full canvas.
    eventually(LIMIT, "participants get 1280x720", || {
        let f = a.latest_frame().ok_or("no frame")?;
        ((f.frame.width(), f.frame.height()) == (1280, 720)).then_some(()).ok_or(format!(
            "{}x{}",
            f.frame.width(),
            f.frame.height()
        ))
    })
    .await;
    // The viewer is no tile: the grid has two cells.
    let state = tv.room_state().unwrap();
    assert_eq!(state.participants.iter().filter(|p| p.role != "viewer").count(), 2);
    for c in [a, b, tv] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_vanishing_reflow_the_room_while_others_keep_receiving() {
    let server = Server::start(&[]);
    let a = join(server.client("r3", "a", 0)).await;
    let b = join(server.client("r3", "b", 1)).await;
    let c = join(server.client("r3", "c", 2)).await;
    let grid = layout(&server, "grid");
    let colors: Vec<(String, _)> =
        ["a", "b", "c"].iter().enumerate().map(|(i, p)| (p.to_string(), palette(i))).collect();
    eventually(LIMIT, "three tiles", || check_tiles(&a, &state_of(&a, 3)?, &grid, &colors)).await;

    // b leaves cleanly.
    let before = a.stats().frames;
    b.leave().await;
    let state = eventually(LIMIT, "state without b", || state_of(&a, 2)).await;
    assert!(state.participants.iter().all(|p| p.peer != "b"));
    eventually(LIMIT, "a sees a and c only", || {
        let state = state_of(&a, 2)?;
        check_tiles(&a, &state, &grid, &colors)?;
        let f = a.latest_frame().ok_or("no frame")?;
        let frame = f.frame.as_frame();
        // b's colour is nowhere on a 16-pixel lattice.
        for y in (0..frame.height()).step_by(16) {
            for x in (0..frame.width()).step_by(16) {
                let px = tessera::media::convert::mean_rgb(&frame, x, y, 2, 2);
                if px.distance(palette(1)) < 20.0 {
                    return Err(format!("b's colour still at ({x},{y})"));
                }
            }
        }
        Ok(())
    })
    .await;
    eventually(LIMIT, "a keeps receiving after b left", || {
        let n = a.stats().frames;
        (n > before + 15).then_some(()).ok_or(format!("{} frames since", n - before))
    })
    .await;

    // c vanishes: its MQTT connection drops without `leave`; its last will removes it.
    let before = a.stats().frames;
    c.vanish().await;
    eventually(LIMIT, "state without c", || state_of(&a, 1)).await;
    eventually(LIMIT, "a alone fills the grid", || check_tiles(&a, &state_of(&a, 1)?, &grid, &colors)).await;
    eventually(LIMIT, "a keeps receiving after c vanished", || {
        let n = a.stats().frames;
        (n > before + 15).then_some(()).ok_or(format!("{} frames since", n - before))
    })
    .await;

    // The last one out closes the room: its retained state is cleared.
    assert!(retained(&server, "tessera/r3/state").await.is_some_and(|p| !p.is_empty()));
    a.leave().await;
    eventually(LIMIT, "room r3 closed", || {
        if server.log_text().contains("room{room=r3}: tessera::server::room_task: room closed") {
            Ok(())
        } else {
            Err("still open".into())
        }
    })
    .await;
    let state = retained(&server, "tessera/r3/state").await;
    assert!(state.as_ref().is_none_or(|p| p.is_empty()), "state still retained: {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_change_on_the_control_topic_changes_the_next_frames() {
    let server = Server::start(&[]);
    let a = join(server.client("r4", "a", 0)).await;
    let b = join(server.client("r4", "b", 1)).await;
    let colors = vec![("a".to_string(), palette(0)), ("b".to_string(), palette(1))];
    let grid = layout(&server, "grid");
    eventually(LIMIT, "grid", || check_tiles(&a, &state_of(&a, 2)?, &grid, &colors)).await;

    a.link().publish("tessera/r4/control", br#"{"type":"layout","layout":"pip"}"#.to_vec(), false).await.unwrap();
    let pip = layout(&server, "pip");
    eventually(LIMIT, "pip", || {
        let state = state_of(&a, 2)?;
        if state.layout != "pip" {
            return Err(format!("layout {}", state.layout));
        }
        check_tiles(&a, &state, &pip, &colors)?;
        check_tiles(&b, &state, &pip, &colors)
    })
    .await;
    // In pip the speaker fills the canvas: a corner shows a participant, not background.
    let f = a.latest_frame().unwrap();
    let corner = tessera::media::convert::mean_rgb(&f.frame.as_frame(), 20, 40, 4, 4);
    assert!(corner.distance(palette(0)) < 40.0 || corner.distance(palette(1)) < 40.0, "corner is {corner}");
    for c in [a, b] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sendonly_source_is_a_tile_and_gets_nothing_back() {
    let server = Server::start(&[]);
    let a = join(server.client("r8", "a", 0)).await;
    let mut cam = server.client("r8", "cam", 3);
    cam.role = tessera::client::ClientRole::Source;
    let cam = join(cam).await;
    let colors = vec![("a".to_string(), palette(0)), ("cam".to_string(), palette(3))];
    let grid = layout(&server, "grid");
    eventually(LIMIT, "a sees the camera", || {
        let state = state_of(&a, 2)?;
        if state.participants.iter().find(|p| p.peer == "cam").map(|p| p.role.as_str()) != Some("source") {
            return Err("cam is not a source".into());
        }
        check_tiles(&a, &state, &grid, &colors)
    })
    .await;
    // a hears the camera's tone.
    eventually(LIMIT, "a hears the camera", || {
        let l = tone_levels(&a, 0.5, &[tone_for(3)]);
        (l[0] > -30.0).then_some(()).ok_or(format!("{:.1} dB", l[0]))
    })
    .await;
    let s = cam.stats();
    assert_eq!((s.frames, s.audio_packets), (0, 0), "a source received media");
    for c in [a, cam] {
        c.leave().await;
    }
}

/// Kills a child process when dropped (so a failing test leaves none).
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn y4m_files_and_live_y4m_on_stdin_are_sent_at_their_own_size() {
    use std::process::{Command, Stdio};
    let server = Server::start(&[]);
    let a = join(server.client("r9", "a", 0)).await;
    // ffmpeg paints a 320x240 picture in real time; the client is told
    // 640x360, so it only works if the encoder follows the input's size.
    let color = palette(5);
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i"])
        .arg(format!("color=c=0x{:02x}{:02x}{:02x}:size=320x240:rate=15", color.r, color.g, color.b))
        .args(["-t", "60", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg (install it: scripts/install-deps)");
    let pipe = ffmpeg.stdout.take().unwrap();
    let _ffmpeg = Reap(ffmpeg);
    let client = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["client", "--room", "r9", "--peer", "live", "--video", "-", "--audio", "none"])
        .args(["--size", "640x360", "--fps", "15", "--mqtt-url", &server.url, "--duration", "60", "--layouts"])
        .arg(&server.layouts)
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let _client = Reap(client);
    // A 10-frame file, looped, by a client in this process.
    let file_color = palette(6);
    let file = std::env::temp_dir().join(format!("tessera-file-{}.y4m", free_port()));
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .arg(format!("color=c=0x{:02x}{:02x}{:02x}:size=320x240:rate=15", file_color.r, file_color.g, file_color.b))
        .args(["-frames:v", "10", "-pix_fmt", "yuv420p"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(made.success());
    let mut o = server.client("r9", "file", 6);
    o.send.video = tessera::client::source::VideoSource::Y4m(file.clone());
    (o.send.width, o.send.height) = (640, 360);
    let f = join(o).await;
    let colors = vec![("a".to_string(), palette(0)), ("live".to_string(), color), ("file".to_string(), file_color)];
    let grid = layout(&server, "grid");
    eventually(LIMIT, "a sees the live input and the file", || check_tiles(&a, &state_of(&a, 3)?, &grid, &colors))
        .await;
    // The file loops: well after its 10 frames (0.7 s) the tile still
    // carries fresh capture stamps (a frozen tile's stamps grow old).
    let started = std::time::Instant::now();
    a.take_latencies_by_peer();
    eventually(LIMIT, "the file keeps playing", || {
        let fresh = a.take_latencies_by_peer().into_iter().filter(|(p, l)| p == "file" && *l < 1000).count();
        (started.elapsed() > Duration::from_secs(2) && fresh > 0)
            .then_some(())
            .ok_or(format!("{fresh} fresh stamps from the file's tile"))
    })
    .await;
    std::fs::remove_file(&file).ok();
    for c in [a, f] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sound_and_picture_arrive_together() {
    // Both beep on whole seconds of this process's clock and stamp their
    // pictures with it; each hears the other's beeps and sees the other's
    // stamps, so both latencies through the server are measured here.
    let server = Server::start(&[]);
    let mut clients = Vec::new();
    for (i, peer) in ["a", "b"].into_iter().enumerate() {
        let mut o = server.client("r10", peer, i);
        o.send.audio = tessera::client::source::AudioSource::Beep(tone_for(i));
        clients.push(join(o).await);
    }
    let (mut audio, mut video) = (Vec::new(), Vec::new());
    eventually(Duration::from_secs(60), "enough beeps and stamps", || {
        for c in &clients {
            audio.extend(c.take_audio_latencies());
            video.extend(c.take_latencies().into_iter().map(f64::from));
        }
        (audio.len() >= 8 && video.len() >= 100).then_some(()).ok_or(format!(
            "{} beeps, {} stamps",
            audio.len(),
            video.len()
        ))
    })
    .await;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, v) = (median(&mut audio), median(&mut video));
    // ITU-R BT.1359: viewers notice sound more than 45 ms early or 125 ms late.
    let skew = a - v;
    eprintln!(
        "latency through the server: audio {a:.0} ms, video {v:.0} ms ({} beeps, {} stamps)",
        audio.len(),
        video.len()
    );
    assert!((-45.0..=125.0).contains(&skew), "audio {a:.0} ms, video {v:.0} ms: sound {skew:.0} ms behind the picture");
    for c in clients {
        c.leave().await;
    }
}
