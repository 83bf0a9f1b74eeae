//! A browser we did not write: Debian's headless Chromium (fake camera fed
//! from a Y4M file, fake microphone), driven by playwright-core, joins a
//! room from a test page speaking protocol v1 with MQTT.js over the
//! embedded broker's websocket listener. Both directions are checked: the
//! server decodes Chromium's H.264 (its tile shows the file's colour in
//! another participant's composite), and Chromium decodes the composite
//! (its framesDecoded grows and its pixels show the other participant).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tessera::media::color::Rgb;
use tessera::media::compositor::placements;
use tessera::media::frame::VideoFrame;
use tessera::media::pattern::palette;

const LIMIT: Duration = Duration::from_secs(60);

/// A Y4M file of `frames` flat 320x240 pictures in `color`.
fn solid_y4m(path: &Path, color: Rgb, frames: usize) {
    let frame = VideoFrame::new(320, 240, color.to_yuv()).unwrap();
    let f = frame.as_frame();
    let pack = |p: &tessera::media::frame::PlaneRef<'_>| -> Vec<u8> {
        (0..p.height()).flat_map(|y| p.row(y).to_vec()).collect()
    };
    let (y, u, v) = (pack(&f.y), pack(&f.u), pack(&f.v));
    let file = std::fs::File::create(path).unwrap();
    let mut enc = y4m::encode(320, 240, y4m::Ratio::new(30, 1))
        .with_colorspace(y4m::Colorspace::C420)
        .write_header(file)
        .unwrap();
    for _ in 0..frames {
        enc.write_frame(&y4m::Frame::new([&y, &u, &v], None)).unwrap();
    }
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_joins_and_both_directions_work() {
    assert!(
        browser_dir().join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and tests/browser/node_modules: run scripts/install-deps"
    );
    let server = Server::start(&[]);
    let desk = join(server.client("b1", "desk", 0)).await;

    let y4m = std::env::temp_dir().join(format!("tessera-chromium-{}.y4m", free_port()));
    let blue = palette(2);
    solid_y4m(&y4m, blue, 30);

    // Where the composite puts desk (first) and Chromium (second).
    let grid = layout(&server, "grid");
    let tiles = placements(&grid, &[0, 1], None, 640, 360);
    let centre = |id: u64| {
        let p = tiles.iter().find(|p| p.id == id).unwrap();
        (p.inner.x + p.inner.w / 2, p.inner.y + p.inner.h / 2)
    };
    let points = format!("{},{};{},{}", centre(0).0, centre(0).1, centre(1).0, centre(1).1);

    let ws = format!("ws://127.0.0.1:{}/mqtt", server.ws_port);
    let node = {
        let (y4m, points) = (y4m.clone(), points.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(browser_dir().join("run.mjs"))
                .args([
                    "--ws",
                    &ws,
                    "--room",
                    "b1",
                    "--peer",
                    "chromium",
                    "--points",
                    &points,
                    "--frames",
                    "30",
                    "--timeout",
                    "60000",
                ])
                .arg("--y4m")
                .arg(&y4m)
                .output()
                .expect("node")
        })
    };

    // The server decodes Chromium's H.264: desk sees a blue tile where Chromium sits.
    let colors = vec![("desk".to_string(), palette(0)), ("chromium".to_string(), blue)];
    eventually(LIMIT, "desk sees Chromium's camera", || {
        let s = desk.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or(format!("{} participants", s.participants.len()))?;
        check_tiles(&desk, &s, &grid, &colors)
    })
    .await;

    let out = node.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line =
        stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
            panic!("no result from the browser:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
        });
    let r: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(r["ok"], true, "browser run failed: {r:#}\n{}", server.log_text());
    let (first, second) = (&r["first"], &r["second"]);
    assert!(second["framesDecoded"].as_u64() > first["framesDecoded"].as_u64(), "framesDecoded did not grow: {r}");
    assert_eq!((first["width"].as_u64(), first["height"].as_u64()), (Some(640), Some(360)));
    // Chromium's copy of the composite: desk's red where desk is, its own blue where it is.
    let rgb = |v: &serde_json::Value| {
        let a: Vec<f64> = v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        Rgb::new(a[0] as u8, a[1] as u8, a[2] as u8)
    };
    let samples = second["samples"].as_array().unwrap();
    assert!(rgb(&samples[0]).distance(palette(0)) < 45.0, "desk's tile in Chromium: {}", rgb(&samples[0]));
    assert!(rgb(&samples[1]).distance(blue) < 45.0, "Chromium's tile in Chromium: {}", rgb(&samples[1]));
    assert!(r["last"]["report"]["errors"].as_array().is_some_and(|e| e.is_empty()), "{r}");
    std::fs::remove_file(&y4m).ok();
    desk.leave().await;
}
