//! Debian's Chromium, driven by playwright-core through
//! `tests/browser/drive.mjs` (one JSON command per line), and the fake
//! camera and microphone files it reads.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tessera::media::color::Rgb;
use tessera::media::frame::VideoFrame;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long one command may take (a browser launch on a loaded CI core).
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// `tests/browser`, where the driver and its node modules live.
pub fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// A Y4M file of `frames` flat 320x240 pictures in `color`.
pub fn solid_y4m(path: &Path, color: Rgb, frames: usize) {
    solid_y4m_sized(path, color, frames, (320, 240));
}

/// A Y4M file of `frames` flat pictures of `size` in `color`.
pub fn solid_y4m_sized(path: &Path, color: Rgb, frames: usize, (width, height): (u32, u32)) {
    let frame = VideoFrame::new(width as usize, height as usize, color.to_yuv()).unwrap();
    let f = frame.as_frame();
    let pack = |p: &tessera::media::frame::PlaneRef<'_>| -> Vec<u8> {
        (0..p.height()).flat_map(|y| p.row(y).to_vec()).collect()
    };
    let (y, u, v) = (pack(&f.y), pack(&f.u), pack(&f.v));
    let file = std::fs::File::create(path).unwrap();
    let mut enc = y4m::encode(width as usize, height as usize, y4m::Ratio::new(30, 1))
        .with_colorspace(y4m::Colorspace::C420)
        .write_header(file)
        .unwrap();
    for _ in 0..frames {
        enc.write_frame(&y4m::Frame::new([&y, &u, &v], None)).unwrap();
    }
}

/// A WAV file of `seconds` of a sine at `hz` (48 kHz mono, -12 dBFS),
/// which Chromium loops as its fake microphone.
pub fn tone_wav(path: &Path, hz: f64, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (48_000.0 * seconds) as usize;
    for i in 0..n {
        let s = 0.25 * (2.0 * std::f64::consts::PI * hz * i as f64 / 48_000.0).sin();
        w.write_sample((s * i16::MAX as f64) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// The driver process; each `open` starts one Chromium.
pub struct Chromium {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Chromium {
    /// Starts the driver (no browser yet).
    pub fn start() -> Chromium {
        assert!(
            browser_dir().join("node_modules/playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
            "the browser tests need Chromium and tests/browser/node_modules: run scripts/install-deps"
        );
        let mut child = Command::new("node")
            .arg(browser_dir().join("drive.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Chromium { child, stdin, stdout }
    }

    /// Sends one command; its reply, or the driver's error.
    pub async fn call(&mut self, cmd: Value) -> Result<Value, String> {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(COMMAND_LIMIT, self.stdout.next_line())
            .await
            .map_err(|_| format!("no reply to {cmd} in {COMMAND_LIMIT:?}"))?
            .map_err(|e| e.to_string())?
            .ok_or("the driver exited")?;
        let v: Value = serde_json::from_str(&reply).map_err(|e| format!("{e}: {reply}"))?;
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(format!("{cmd}: {}", v["error"]))
        }
    }

    async fn must(&mut self, cmd: Value) -> Value {
        let what = cmd.to_string();
        self.call(cmd).await.unwrap_or_else(|e| panic!("browser command {what} failed: {e}"))
    }

    /// A new browser `id` with these fake devices, at `url` (a 960x600 window).
    pub async fn open(&mut self, id: &str, url: &str, y4m: &Path, wav: &Path) {
        self.open_sized(id, url, y4m, wav, (960, 600)).await;
    }

    /// [`Chromium::open`] with a window of `size` (CSS pixels).
    pub async fn open_sized(&mut self, id: &str, url: &str, y4m: &Path, wav: &Path, size: (u32, u32)) {
        self.open_with(id, url, y4m, wav, size, None).await;
    }

    /// [`Chromium::open_sized`], with `init` run in the page before its
    /// own scripts.
    pub async fn open_with(
        &mut self,
        id: &str,
        url: &str,
        y4m: &Path,
        wav: &Path,
        size: (u32, u32),
        init: Option<&str>,
    ) {
        let mut cmd =
            json!({"op": "open", "id": id, "url": url, "y4m": y4m, "wav": wav, "width": size.0, "height": size.1});
        if let Some(js) = init {
            cmd["init"] = json!(js);
        }
        self.must(cmd).await;
    }

    /// Evaluates a JavaScript expression in page `id` (promises awaited).
    pub async fn eval(&mut self, id: &str, js: &str) -> Value {
        self.must(json!({"op": "eval", "id": id, "js": js})).await["value"].take()
    }

    /// [`Chromium::eval`] read as a number (`-Infinity` included).
    pub async fn number(&mut self, id: &str, js: &str) -> f64 {
        let v = self.eval(id, js).await;
        v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(f64::NAN)
    }

    /// Clicks what `selector` finds.
    pub async fn click(&mut self, id: &str, selector: &str) {
        self.must(json!({"op": "click", "id": id, "selector": selector})).await;
    }

    /// Picks `value` in the `<select>` `selector` finds.
    pub async fn select(&mut self, id: &str, selector: &str, value: &str) {
        self.must(json!({"op": "select", "id": id, "selector": selector, "value": value})).await;
    }

    /// Types `value` into the input `selector` finds.
    pub async fn fill(&mut self, id: &str, selector: &str, value: &str) {
        self.must(json!({"op": "fill", "id": id, "selector": selector, "value": value})).await;
    }

    /// Saves a screenshot of page `id`.
    pub async fn screenshot(&mut self, id: &str, path: &Path) {
        self.must(json!({"op": "screenshot", "id": id, "path": path})).await;
    }

    /// What page `id` logged to its console.
    pub async fn logs(&mut self, id: &str) -> Vec<String> {
        let v = self.call(json!({"op": "logs", "id": id})).await.map(|mut v| v["value"].take()).unwrap_or_default();
        v.as_array().map(|a| a.iter().filter_map(|l| l.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    }

    /// Closes every browser and the driver.
    pub async fn quit(mut self) {
        let _ = self.call(json!({"op": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
