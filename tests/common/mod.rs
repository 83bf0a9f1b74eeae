//! Shared by the integration tests: a real `tessera serve` process on free
//! loopback ports (embedded broker), clients, and waiting with deadlines.
#![allow(dead_code)]

pub mod browser;
pub mod http;
pub mod mosquitto;
pub mod nats;
pub mod relay;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::client::source::{AudioSource, VideoSource};
use tessera::client::{Client, ClientOptions, ClientRole};
use tessera::layout::{fit_rect, Fit, Layout};
use tessera::media::color::Rgb;
use tessera::media::compositor::placements;
use tessera::media::convert::mean_rgb;
use tessera::media::pattern::{palette, tone_for};
use tessera::signaling::link::{Link, LinkEvent, LinkOptions};
use tessera::signaling::protocol::RoomState;

/// Options for a plain MQTT connection as `id` to `url`, subscribed to
/// `filters` (no will, nothing announced).
pub fn link_options(url: &str, id: &str, filters: &[&str]) -> LinkOptions {
    LinkOptions {
        url: url.to_owned(),
        client_id: id.to_owned(),
        ca_file: None,
        will: None,
        subscriptions: filters.iter().map(|f| f.to_string()).collect(),
        announce: vec![],
        keep_alive: Duration::from_secs(5),
    }
}

/// A raw MQTT client (see [`link_options`]), connected and subscribed.
pub async fn raw_link(url: &str, id: &str, filters: &[&str]) -> (Link, tokio::sync::mpsc::Receiver<LinkEvent>) {
    let (link, events) = Link::connect(link_options(url, id, filters)).unwrap();
    assert!(link.ready(Duration::from_secs(10)).await, "{id} cannot connect to {url}");
    (link, events)
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The shipped layouts with a small canvas (640x360 at 15 fps), so tests
/// with live media stay light on two shared cores.
pub fn small_layouts() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-test-layouts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("layouts");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let small = text
                .replace("width = 1280", "width = 640")
                .replace("height = 720", "height = 360")
                .replace("fps = 30", "fps = 15");
            std::fs::write(dir.join(path.file_name().unwrap()), small).unwrap();
        }
    }
    dir
}

/// A running `tessera serve`.
pub struct Server {
    child: Child,
    /// `mqtt://127.0.0.1:port` of its embedded broker.
    pub url: String,
    /// Its websocket port.
    pub ws_port: u16,
    /// Its HTTP listener's port (join page, /metrics).
    pub http_port: u16,
    /// The layouts folder it uses.
    pub layouts: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

impl Server {
    /// Starts a server with extra flags and waits until signaling is ready
    /// (with the shipped layouts shrunk to 640x360 at 15 fps).
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_layouts(extra, small_layouts())
    }

    /// Starts a server using the layouts in `layouts`.
    pub fn start_with_layouts(extra: &[&str], layouts: PathBuf) -> Server {
        Self::launch(extra, layouts, None, &[])
    }

    /// Starts a server on an external broker (`--mqtt-url`).
    pub fn start_external(url: &str, extra: &[&str]) -> Server {
        Self::launch(extra, small_layouts(), Some(url), &[])
    }

    /// [`Server::start_external`] with extra environment variables.
    pub fn start_external_env(url: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::launch(extra, small_layouts(), Some(url), env)
    }

    fn launch(extra: &[&str], layouts: PathBuf, external: Option<&str>, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let ws_port = free_port();
        let http_port = free_port();
        let mut args: Vec<String> = vec!["serve".into(), "--http-addr".into(), format!("127.0.0.1:{http_port}")];
        match external {
            Some(url) => args.extend(["--mqtt-url".to_string(), url.to_string()]),
            None => args.extend([
                "--broker-port".to_string(),
                port.to_string(),
                "--broker-ws-port".to_string(),
                ws_port.to_string(),
            ]),
        }
        let log = std::env::temp_dir().join(format!("tessera-serve-{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(&args)
            .arg("--layouts")
            .arg(&layouts)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn,tessera=debug,tessera::server::dispatch=trace,rumqttd=off,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tessera serve");
        let url = external.map_or(format!("mqtt://127.0.0.1:{port}"), str::to_owned);
        let server = Server { child, url, ws_port, http_port, layouts, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.log_text().contains("signaling ready") {
            assert!(Instant::now() < deadline, "server did not start:\n{}", server.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Options for a participant `peer` in `room`, coloured and toned by `index`.
    pub fn client(&self, room: &str, peer: &str, index: usize) -> ClientOptions {
        let mut o = ClientOptions::new(&self.url, room, peer);
        o.layouts = self.layouts.clone();
        o.send.video = VideoSource::Pattern(palette(index));
        o.send.audio = AudioSource::Tone(tone_for(index));
        o.send.width = 320;
        o.send.height = 240;
        o.send.fps = 15;
        o
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a rolling restart's stop) and returns at once.
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Asks the server to stop (Ctrl-C) and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Joins a client and waits until it is connected.
pub async fn join(options: ClientOptions) -> Client {
    let peer = options.peer.clone();
    let c = Client::join(options).await.unwrap_or_else(|e| panic!("{peer} cannot join: {e}"));
    assert!(c.wait_connected(Duration::from_secs(20)).await, "{peer} never connected: {:?}", c.notices());
    c
}

/// A viewer's options.
pub fn viewer(mut o: ClientOptions, view: Option<(u32, u32)>) -> ClientOptions {
    o.role = ClientRole::Viewer;
    o.view = view;
    o
}

/// Polls `check` every 100 ms until it returns `Ok` or `limit` passes;
/// then panics with the last error.
pub async fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits in a polling loop: [`Deadline::wait`] sleeps 100 ms, or panics
/// with the last reason once the limit has passed.
pub struct Deadline {
    at: std::time::Instant,
    what: String,
}

impl Deadline {
    /// A deadline `limit` from now for `what`.
    pub fn new(limit: Duration, what: &str) -> Deadline {
        Deadline { at: std::time::Instant::now() + limit, what: what.to_owned() }
    }

    /// Sleeps before the next try; panics with `why` when time is up.
    pub async fn wait(&self, why: impl std::fmt::Display) {
        assert!(std::time::Instant::now() < self.at, "{}: not in time: {why}", self.what);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Loads a layout by name from the server's layout folder.
pub fn layout(server: &Server, name: &str) -> Arc<Layout> {
    Arc::new(Layout::load(server.layouts.join(format!("{name}.toml"))).unwrap())
}

/// Checks a composite against the room state: every tile shows its
/// participant's colour (`colors` maps peer id to colour); returns a
/// description of the first mismatch.
pub fn check_tiles(
    client: &Client,
    state: &RoomState,
    layout: &Layout,
    colors: &[(String, Rgb)],
) -> Result<(), String> {
    let latest = client.latest_frame().ok_or("no frame yet")?;
    let frame = latest.frame.as_frame();
    let (w, h) = (frame.width() as u32, frame.height() as u32);
    let peers: Vec<&str> = state.participants.iter().filter(|p| p.role != "viewer").map(|p| p.peer.as_str()).collect();
    let ids: Vec<u64> = (0..peers.len() as u64).collect();
    let speaker = state.speaker.as_ref().and_then(|s| peers.iter().position(|p| p == s)).map(|i| i as u64);
    let placed = placements(layout, &ids, speaker, w, h);
    if placed.is_empty() {
        return Err("no tiles".into());
    }
    for p in &placed {
        let peer = peers[p.id as usize];
        let Some((_, color)) = colors.iter().find(|(id, _)| id == peer) else { continue };
        // Covered by a later (higher) tile? Then skip.
        if placed.iter().skip_while(|q| q.id != p.id).skip(1).any(|q| q.cell.intersects(&p.cell)) {
            continue;
        }
        let (dst, _) = fit_rect(p.inner, 320, 240, p.fit == Fit::Contain);
        let (cx, cy) = ((dst.x + dst.w / 2) as usize, (dst.y + dst.h / 2) as usize);
        let got = mean_rgb(&frame, cx.saturating_sub(2), cy.saturating_sub(2), 4, 4);
        if got.distance(*color) > 40.0 {
            return Err(format!("tile of {peer} at ({cx},{cy}) is {got}, expected {color}"));
        }
    }
    Ok(())
}

/// Tone power (dB) of each frequency in the last `seconds` of a client's mix.
pub fn tone_levels(client: &Client, seconds: f64, freqs: &[f64]) -> Vec<f64> {
    let samples = client.recent_audio((48_000.0 * seconds) as usize);
    freqs.iter().map(|&f| tessera::media::analysis::tone_power_db(&samples, f)).collect()
}

/// The message retained on `topic`, if any. Subscribes to the topic's
/// folder, then publishes a sentinel beside it: retained messages arrive
/// before the sentinel on the same subscription, so no timeout decides.
pub async fn retained(server: &Server, topic: &str) -> Option<Vec<u8>> {
    let folder = topic.rsplit_once('/').map(|(f, _)| f).unwrap_or(topic);
    let sentinel = format!("{folder}/zz-sentinel-{}", free_port());
    let (link, mut events) = raw_link(&server.url, &format!("probe-{}", free_port()), &[&format!("{folder}/#")]).await;
    link.publish(&sentinel, b"x".to_vec(), false).await.unwrap();
    let mut found = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let LinkEvent::Message { topic: t, payload } = ev {
            if t == sentinel {
                break;
            }
            if t == topic {
                found = Some(payload.to_vec());
            }
        }
    }
    link.close().await;
    found
}
