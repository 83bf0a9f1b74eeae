//! Recording on the server: a room's composite and mix go to a fragmented
//! MP4 (H.264 + Opus) that ffprobe and ffmpeg read; a recording stopped by
//! control is complete, and one cut by `kill -9` plays up to its last
//! fragment. The pictures and tones in the file are the room's.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tessera::client::Notice;
use tessera::layout::{fit_rect, Fit};
use tessera::media::analysis::tone_power_db;
use tessera::media::color::Rgb;
use tessera::media::compositor::placements;
use tessera::media::pattern::{palette, tone_for};

const LIMIT: Duration = Duration::from_secs(60);

fn ffprobe(file: &Path, args: &[&str]) -> String {
    let out = Command::new("ffprobe").args(["-v", "error"]).args(args).arg(file).output().expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The file's duration in seconds as ffprobe reads it (0 if it cannot).
fn duration(file: &Path) -> f64 {
    ffprobe(file, &["-show_entries", "format=duration", "-of", "csv=p=0"]).parse().unwrap_or(0.0)
}

fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "mp4")).collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Checks what a finished or cut recording holds: both streams, enough
/// frames for its length, the room's tiles and both tones.
fn check_file(file: &Path, server: &Server, colours: &[Rgb]) -> f64 {
    let streams = ffprobe(file, &["-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"]);
    assert!(streams.contains("h264,640,360"), "{}: streams {streams}", file.display());
    assert!(streams.contains("opus"), "{}: streams {streams}", file.display());
    let secs = duration(file);
    let frames: f64 = ffprobe(
        file,
        &["-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"],
    )
    .parse()
    .unwrap_or(0.0);
    // The canvas runs at 15 fps; a draw waits for a new picture, so allow some slack.
    assert!(frames >= secs * 15.0 * 0.6, "{}: {frames} frames in {secs:.2} s", file.display());

    // A frame from the middle: each tile shows its participant.
    let at = format!("{:.2}", secs / 2.0);
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &at, "-i"])
        .arg(file)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg");
    let rgb = out.stdout;
    assert_eq!(rgb.len(), 640 * 360 * 3, "{}: a 640x360 picture", file.display());
    let grid = layout(server, "grid");
    for p in placements(&grid, &[0, 1], None, 640, 360) {
        let (dst, _) = fit_rect(p.inner, 320, 240, p.fit == Fit::Contain);
        let (cx, cy) = ((dst.x + dst.w / 2) as usize, (dst.y + dst.h / 2) as usize);
        let mut sum = [0u32; 3];
        for y in cy - 2..cy + 2 {
            for x in cx - 2..cx + 2 {
                for (c, s) in sum.iter_mut().enumerate() {
                    *s += rgb[(y * 640 + x) * 3 + c] as u32;
                }
            }
        }
        let got = Rgb::new((sum[0] / 16) as u8, (sum[1] / 16) as u8, (sum[2] / 16) as u8);
        let want = colours[p.id as usize];
        assert!(
            got.distance(want) < 45.0,
            "{}: tile {} at ({cx},{cy}) is {got}, expected {want}",
            file.display(),
            p.id
        );
    }

    // The mix: nobody is subtracted for the recording, so both tones are in.
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-vn", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg");
    let samples: Vec<f32> =
        out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect();
    assert!(
        samples.len() as f64 >= 48_000.0 * (secs - 1.0),
        "{}: {} audio samples in {secs:.2} s",
        file.display(),
        samples.len()
    );
    let tail = &samples[samples.len().saturating_sub(48_000)..];
    for i in 0..2 {
        let db = tone_power_db(tail, tone_for(i));
        assert!(db > -30.0, "{}: tone {} at {db:.1} dB", file.display(), tone_for(i));
    }
    secs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_fragmented_mp4_that_survive_kill_9() {
    let dir = std::env::temp_dir().join(format!("tessera-rec-{}", free_port()));
    let server = Server::start(&["--recordings", dir.to_str().unwrap()]);
    let a = join(server.client("rec", "a", 0)).await;
    let b = join(server.client("rec", "b", 1)).await;
    let grid = layout(&server, "grid");
    let colours = vec![("a".to_string(), palette(0)), ("b".to_string(), palette(1))];
    eventually(LIMIT, "both tiles", || {
        let s = a.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&a, &s, &grid, &colours)
    })
    .await;
    let control = |action: &str| format!(r#"{{"type":"record","action":"{action}","from":"a"}}"#).into_bytes();

    // Start, let it run, stop: a complete file.
    a.link().publish("tessera/rec/control", control("start"), false).await.unwrap();
    eventually(LIMIT, "the state says it records", || {
        a.room_state().filter(|s| s.recording).map(|_| ()).ok_or("not recording".to_string())
    })
    .await;
    eventually(LIMIT, "three seconds recorded", || match recordings(&dir).as_slice() {
        [f] => (duration(f) >= 3.0).then_some(()).ok_or(format!("{:.2} s", duration(f))),
        other => Err(format!("files {other:?}")),
    })
    .await;
    a.link().publish("tessera/rec/control", control("stop"), false).await.unwrap();
    eventually(LIMIT, "the state says it stopped", || {
        a.room_state().filter(|s| !s.recording).map(|_| ()).ok_or("still recording".to_string())
    })
    .await;
    let first = recordings(&dir)[0].clone();
    // It stops growing once the last fragment is out.
    let mut size = 0;
    eventually(LIMIT, "the stopped file is final", || {
        let now = std::fs::metadata(&first).map(|m| m.len()).unwrap_or(0);
        let same = now == size && now > 0;
        size = now;
        same.then_some(()).ok_or(format!("{now} bytes"))
    })
    .await;
    let secs = check_file(&first, &server, &[palette(0), palette(1)]);
    eprintln!("stopped recording: {secs:.2} s, {size} bytes");

    // Again, then kill -9 in the middle: the file plays to its last fragment.
    a.link().publish("tessera/rec/control", control("start"), false).await.unwrap();
    let started = Instant::now();
    eventually(LIMIT, "a second file", || {
        let files = recordings(&dir);
        (files.len() == 2 && duration(&files[1]) >= 4.0).then_some(()).ok_or(format!("{files:?}"))
    })
    .await;
    let cut = recordings(&dir)[1].clone();
    let _ = Command::new("kill").args(["-9", &server.pid().to_string()]).status();
    let ran = started.elapsed().as_secs_f64();
    let kept = check_file(&cut, &server, &[palette(0), palette(1)]);
    eprintln!("kill -9 after {ran:.2} s of recording: the file plays {kept:.2} s");
    assert!(ran - kept < 3.0, "lost {:.2} s (a fragment is 1 s)", ran - kept);
    a.vanish().await;
    b.vanish().await;
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_recordings_folder_says_so() {
    let server = Server::start(&[]);
    let a = join(server.client("norec", "a", 0)).await;
    a.link()
        .publish("tessera/norec/control", br#"{"type":"record","action":"start","from":"a"}"#.to_vec(), false)
        .await
        .unwrap();
    eventually(LIMIT, "a hears why", || {
        a.notices()
            .iter()
            .find_map(|n| match n {
                Notice::Error { code, message } if code == "recording-off" => Some(message.clone()),
                _ => None,
            })
            .filter(|m| m.contains("--recordings"))
            .map(|_| ())
            .ok_or(format!("{:?}", a.notices()))
    })
    .await;
    assert!(!a.room_state().unwrap().recording);
    a.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_room_is_a_live_hls_stream() {
    let dir = std::env::temp_dir().join(format!("tessera-hls-{}", free_port()));
    let server = Server::start(&["--recordings", dir.to_str().unwrap(), "--hls", "--record-rooms", "live"]);
    let port = server.http_port;
    assert_eq!(common::http::get(port, "/hls/live/index.m3u8").await.status, 404, "nothing before anyone is in");
    let a = join(server.client("live", "a", 0)).await;
    let b = join(server.client("live", "b", 1)).await;
    // Segments start on keyframes, asked for every 2 s: three whole ones soon.
    let mut playlist = String::new();
    eventually(LIMIT, "a playlist with three segments", || {
        let r = blocking_get(port, "/hls/live/index.m3u8");
        playlist = r.clone();
        (r.matches("#EXTINF").count() >= 3).then_some(()).ok_or(r)
    })
    .await;
    assert!(playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{playlist}");
    // ffprobe and ffmpeg read it over HTTP like any HLS client.
    let url = format!("http://127.0.0.1:{port}/hls/live/index.m3u8");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", &url])
        .output()
        .unwrap();
    let streams = String::from_utf8_lossy(&out.stdout);
    assert!(streams.contains("h264,640,360") && streams.contains("opus"), "HLS streams: {streams}");
    let frame = Command::new("ffmpeg")
        .args(["-v", "error", "-i", &url, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(frame.len(), 640 * 360 * 3, "a decoded picture from the live stream");
    a.leave().await;
    b.leave().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A blocking GET of `path`'s body (for use inside `eventually`).
fn blocking_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}
