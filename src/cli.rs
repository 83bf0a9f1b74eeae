//! Command-line front ends for `serve`, `client` and `layout`.

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::client::source::{AudioSource, SendSettings, VideoSource};
use tessera::client::{Client, ClientOptions, ClientRole, Notice};
use tessera::config::IceServer;
use tessera::layout::Layout;
use tessera::media::color::Rgb;
use tessera::media::compositor::{Compositor, Source};
use tessera::media::pattern::{palette, tone_for, TestPattern};
use tessera::peer::PeerOptions;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("tessera-io").build()?)
}

/// `tessera serve`.
pub fn serve(args: tessera::config::ServeArgs) -> Result<(), BoxError> {
    tessera::server::memory::limit_arenas();
    let config = args.resolve()?;
    runtime()?.block_on(async {
        let shutdown = async {
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: shutting down"),
                _ = terminate => tracing::info!("SIGTERM: shutting down"),
            }
        };
        tessera::server::serve(config, shutdown).await
    })?;
    Ok(())
}

/// Flags of `tessera client`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Room to join.
    #[arg(long)]
    room: String,
    /// Peer id (with --count, a suffix -1, -2, ... is added).
    #[arg(long, default_value_t = format!("client-{}", std::process::id()))]
    peer: String,
    /// Display name [default: the peer id].
    #[arg(long)]
    name: Option<String>,
    /// MQTT broker; several, comma-separated (the nodes of a broker
    /// cluster), are tried in turn.
    #[arg(long, env = "TESSERA_MQTT_URL", default_value = "mqtt://127.0.0.1:1883")]
    mqtt_url: String,
    /// CA certificate (PEM) for mqtts://.
    #[arg(long, env = "TESSERA_MQTT_CA")]
    mqtt_ca: Option<PathBuf>,
    /// Topic root.
    #[arg(long, env = "TESSERA_TOPIC_ROOT", default_value = "tessera")]
    topic_root: String,
    /// participant (send and receive), viewer (receive only) or source (send only).
    #[arg(long, value_enum, default_value_t = ClientRole::Participant)]
    role: ClientRole,
    /// Video to send: `scene` (a camera-like synthetic picture: texture in
    /// motion, drifting light, sensor noise; it codes like a camera),
    /// `pattern` (a flat test pattern, nearly free to code), `none`, a .y4m
    /// file (looped), `-` (live Y4M on stdin, e.g. from
    /// `ffmpeg ... -f yuv4mpegpipe -`) or a V4L2 camera: `camera`
    /// (/dev/video0) or its device path (needs ffmpeg).
    #[arg(long, default_value = "scene")]
    video: String,
    /// Scene or pattern colour [default: a distinct one per client].
    #[arg(long)]
    color: Option<Rgb>,
    /// Scene or pattern size, WIDTHxHEIGHT (a camera is asked for it).
    #[arg(long, default_value = "640x360", value_parser = parse_size)]
    size: (u32, u32),
    /// Frames per second sent.
    #[arg(long, default_value_t = 15)]
    fps: u32,
    /// Video bitrate sent, bits/s.
    #[arg(long, default_value_t = 500_000)]
    bitrate: u32,
    /// Audio to send: `tone`, `beep` (the tone in 200 ms beeps on each whole
    /// second: with pattern video, gives audio latency and A/V skew),
    /// `silence`, `none` or a .wav file (48 kHz).
    #[arg(long, default_value = "tone")]
    audio: String,
    /// Tone frequency in Hz [default: a distinct one per client].
    #[arg(long)]
    tone: Option<f64>,
    /// Ask for a smaller downstream, WIDTHxHEIGHT.
    #[arg(long, value_parser = parse_size)]
    view: Option<(u32, u32)>,
    /// Record the composite: .y4m (decoded) or .h264 (as received).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Record the mix: .wav.
    #[arg(long)]
    record_audio: Option<PathBuf>,
    /// Run this many clients in this process (distinct names, colours, tones).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// With --count: encode once and send the same pictures and sound as
    /// every client's own stream (each its own SSRC, sequence numbers and
    /// timestamps), so one core feeds many senders.
    #[arg(long)]
    fanout: bool,
    /// With --count: only the first K clients decode the composite (and
    /// measure latency); the others count what arrives [default: all].
    #[arg(long, value_name = "K")]
    decode: Option<usize>,
    /// Send the full source whatever size the server says the client is
    /// shown at (to measure what tile-sized ingest saves).
    #[arg(long)]
    ignore_hints: bool,
    /// Stop after this many seconds [default: at Ctrl-C].
    #[arg(long)]
    duration: Option<f64>,
    /// Print a line of stats every second.
    #[arg(long)]
    stats: bool,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
    /// Layout files (to find this process's tiles in the composite).
    #[arg(long, default_value = "layouts")]
    layouts: PathBuf,
    /// Address media binds to.
    #[arg(long, default_value = "127.0.0.1")]
    media_ip: std::net::IpAddr,
    /// Seconds between two joins with --count.
    #[arg(long, default_value_t = 0.2)]
    join_interval: f64,
    /// STUN/TURN server for the client's own connection, e.g.
    /// turn:127.0.0.1:3478?transport=udp (repeatable).
    #[arg(long = "ice-server", value_delimiter = ',')]
    ice_servers: Vec<String>,
    /// Username for the TURN servers.
    #[arg(long, default_value = "")]
    ice_username: String,
    /// Credential for the TURN servers.
    #[arg(long, default_value = "")]
    ice_credential: String,
    /// Use only relayed candidates (TURN), like iceTransportPolicy "relay".
    #[arg(long)]
    relay_only: bool,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("`{s}`: expected WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|_| format!("`{s}`: bad width"))?;
    let h: u32 = h.parse().map_err(|_| format!("`{s}`: bad height"))?;
    if w < 16 || h < 16 || w > 3840 || h > 2160 || !w.is_multiple_of(2) || !h.is_multiple_of(2) {
        return Err(format!("`{s}`: even sizes between 16x16 and 3840x2160"));
    }
    Ok((w, h))
}

impl ClientArgs {
    fn options(&self, i: usize) -> Result<ClientOptions, BoxError> {
        if self.relay_only && !self.ice_servers.iter().any(|u| u.starts_with("turn:") || u.starts_with("turns:")) {
            return Err("--relay-only needs a TURN server (--ice-server turn:HOST:PORT)".into());
        }
        for u in &self.ice_servers {
            if !["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)) {
                return Err(format!("--ice-server {u}: expected stun:, stuns:, turn: or turns:").into());
            }
        }
        let peer = if self.count > 1 { format!("{}-{}", self.peer, i + 1) } else { self.peer.clone() };
        let name = match (&self.name, self.count > 1) {
            (Some(n), true) => Some(format!("{n} {}", i + 1)),
            (Some(n), false) => Some(n.clone()),
            (None, _) => None,
        };
        let video = match self.video.as_str() {
            "scene" => VideoSource::Scene(self.color.unwrap_or_else(|| palette(i))),
            "pattern" => VideoSource::Pattern(self.color.unwrap_or_else(|| palette(i))),
            "none" => VideoSource::None,
            path if path.ends_with(".y4m") => VideoSource::Y4m(PathBuf::from(path)),
            "-" => VideoSource::Stdin,
            "camera" => VideoSource::Camera(PathBuf::from("/dev/video0")),
            path if path.starts_with("/dev/") => VideoSource::Camera(PathBuf::from(path)),
            other => {
                return Err(format!(
                    "--video {other}: expected scene, pattern, none, a .y4m file, - (Y4M on stdin), camera or a /dev/video* device"
                )
                .into())
            }
        };
        if let VideoSource::Camera(device) = &video {
            std::fs::metadata(device).map_err(|e| format!("--video {}: no such camera ({e})", device.display()))?;
        }
        if self.count > 1 && !self.fanout && matches!(video, VideoSource::Stdin | VideoSource::Camera(_)) {
            return Err(
                format!("--video {}: one live input cannot feed --count {} clients", self.video, self.count).into()
            );
        }
        let audio = match self.audio.as_str() {
            "tone" => AudioSource::Tone(self.tone.unwrap_or_else(|| tone_for(i))),
            "beep" => AudioSource::Beep(self.tone.unwrap_or_else(|| tone_for(i))),
            "silence" => AudioSource::Silence,
            "none" => AudioSource::None,
            path if path.ends_with(".wav") => AudioSource::Wav(PathBuf::from(path)),
            other => return Err(format!("--audio {other}: expected tone, beep, silence, none or a .wav file").into()),
        };
        let suffix = |p: &PathBuf| -> PathBuf {
            if self.count <= 1 {
                return p.clone();
            }
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let ext = p.extension().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            p.with_file_name(format!("{stem}-{}.{ext}", i + 1))
        };
        Ok(ClientOptions {
            url: self.mqtt_url.clone(),
            ca_file: self.mqtt_ca.clone(),
            topic_root: self.topic_root.clone(),
            room: self.room.clone(),
            peer: peer.clone(),
            name: name.clone(),
            role: self.role,
            send: SendSettings {
                video,
                audio,
                width: self.size.0,
                height: self.size.1,
                fps: self.fps,
                bitrate: self.bitrate,
                name: name.unwrap_or(peer),
            },
            view: self.view,
            record_video: self.record.as_ref().map(suffix),
            record_audio: self.record_audio.as_ref().map(suffix),
            layouts: self.layouts.clone(),
            peer_options: PeerOptions {
                bind_ip: self.media_ip,
                ice_servers: if self.ice_servers.is_empty() {
                    vec![]
                } else {
                    vec![IceServer {
                        urls: self.ice_servers.clone(),
                        username: self.ice_username.clone(),
                        credential: self.ice_credential.clone(),
                    }]
                },
                relay_only: self.relay_only,
                ..PeerOptions::default()
            },
            relay: None,
            decode: self.decode.is_none_or(|k| i < k),
            source: None,
            follow_hints: !self.ignore_hints,
        })
    }
}

fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied()
}

fn fmt_ms(v: Option<u32>) -> String {
    v.map_or("n/a".into(), |v| format!("{v} ms"))
}

/// `tessera client`.
pub fn client(args: ClientArgs) -> Result<(), BoxError> {
    if args.count == 0 {
        return Err("--count must be at least 1".into());
    }
    runtime()?.block_on(async move {
        // One media thread for every client with --fanout, made from the
        // first client's settings.
        let shared_source = if args.fanout {
            let first = args.options(0)?;
            let thread = tessera::client::source::spawn(&first.send, &args.peer)?;
            Some(tessera::client::SharedSource(Arc::new(thread)))
        } else {
            None
        };
        let mut clients = Vec::new();
        for i in 0..args.count {
            let mut options = args.options(i)?;
            options.source = shared_source.clone();
            let c = Client::join(options).await?;
            clients.push(c);
            if args.count > 1 {
                tokio::time::sleep(Duration::from_secs_f64(args.join_interval.max(0.0))).await;
            }
        }
        let started = Instant::now();
        let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last: Vec<(u64, u64)> = clients.iter().map(|c| (c.stats().frames, c.stats().video_bytes)).collect();
        // Frames before everyone had joined do not count toward the rate.
        let at_start: Vec<u64> = last.iter().map(|l| l.0).collect();
        let mut last_at = Instant::now();
        let mut all_latencies: Vec<u32> = Vec::new();
        let mut audio_latencies: Vec<f64> = Vec::new();
        let mut source_failed: Option<String> = None;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                _ = &mut ctrl_c => break,
                _ = tick.tick() => {}
            }
            let dt = last_at.elapsed().as_secs_f64();
            last_at = Instant::now();
            let mut lat: Vec<u32> = Vec::new();
            let (mut fps, mut kbps, mut decoded) = (0.0, 0.0, 0u64);
            for (c, prev) in clients.iter().zip(last.iter_mut()) {
                let s = c.stats();
                fps += (s.frames - prev.0) as f64 / dt;
                kbps += (s.video_bytes - prev.1) as f64 * 8.0 / 1000.0 / dt;
                decoded += s.frames;
                *prev = (s.frames, s.video_bytes);
                lat.extend(c.take_latencies());
                audio_latencies.extend(c.take_audio_latencies());
            }
            lat.sort_unstable();
            all_latencies.extend(&lat);
            if args.stats {
                let n = clients.len() as f64;
                let joined = clients.iter().filter_map(|c| c.stats().join_time).count();
                let frozen: Duration = clients.iter().map(|c| c.stats().frozen).sum();
                let freezes: u64 = clients.iter().map(|c| c.stats().freezes).sum();
                // What the server says the first client's link gets.
                let downstream = clients
                    .first()
                    .and_then(|c| c.room_state().and_then(|s| s.participants.into_iter().find(|p| p.peer == c.peer())))
                    .and_then(|p| p.downstream)
                    .map_or(String::new(), |d| {
                        format!(
                            " downstream: estimate={} kbps ({}) tier={} {}x{}@{} {} kbps",
                            d.estimate / 1000,
                            d.source,
                            d.tier,
                            d.width,
                            d.height,
                            d.fps,
                            d.bitrate / 1000
                        )
                    });
                println!(
                    "t={:.0}s clients={} joined={} fps/client={:.1} kbps/client={:.0} decoded={} latency p50={} p95={} freezes={} frozen={} ms{}",
                    started.elapsed().as_secs_f64(),
                    clients.len(),
                    joined,
                    fps / n,
                    kbps / n,
                    decoded,
                    fmt_ms(percentile(&lat, 0.5)),
                    fmt_ms(percentile(&lat, 0.95)),
                    freezes,
                    frozen.as_millis(),
                    downstream
                );
            }
            for c in &clients {
                for n in c.notices() {
                    match n {
                        Notice::Bye { reason } => {
                            tracing::warn!(peer = c.peer(), %reason, "session ended by the server")
                        }
                        Notice::Error { code, message } if code == "source" => source_failed = Some(message),
                        Notice::Error { .. } | Notice::Send(_) | Notice::Rejoin { .. } => {}
                    }
                }
            }
            if source_failed.is_some() || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        all_latencies.sort_unstable();
        audio_latencies.sort_unstable_by(f64::total_cmp);
        let audio_p50 = audio_latencies.get(audio_latencies.len() / 2).map(|l| l.round() as i64);
        let video_p50 = percentile(&all_latencies, 0.5);
        let skew = audio_p50.zip(video_p50).map(|(a, v)| a - v as i64);
        let errors: Vec<String> = clients
            .iter()
            .flat_map(|c| c.notices())
            .filter_map(|n| match n {
                Notice::Error { code, .. } => Some(code),
                _ => None,
            })
            .collect();
        let mut finals = Vec::new();
        for c in clients {
            finals.push(c.leave().await);
        }
        if let Some(message) = source_failed {
            return Err(format!("cannot send: {message}").into());
        }
        let mut joins: Vec<u32> = finals.iter().filter_map(|s| s.join_time).map(|d| d.as_millis() as u32).collect();
        joins.sort_unstable();
        let frames: Vec<u64> = finals.iter().map(|s| s.frames).collect();
        let summary = serde_json::json!({
            "clients": finals.len(),
            "seconds": elapsed,
            "frames_decoded": frames,
            "fps_per_client": frames.iter().zip(&at_start).map(|(f, s)| f - s).sum::<u64>() as f64 / finals.len() as f64 / elapsed.max(1e-9),
            "fps": frames.iter().zip(&at_start).map(|(f, s)| (f - s) as f64 / elapsed.max(1e-9)).collect::<Vec<f64>>(),
            "freezes": finals.iter().map(|s| s.freezes).collect::<Vec<u64>>(),
            "frozen_ms": finals.iter().map(|s| s.frozen.as_millis() as u64).collect::<Vec<u64>>(),
            "join_ms_p50": percentile(&joins, 0.5),
            "join_ms_max": joins.last(),
            "latency_ms_p50": percentile(&all_latencies, 0.5),
            "latency_ms_p95": percentile(&all_latencies, 0.95),
            "latency_samples": all_latencies.len(),
            "audio_latency_ms_p50": audio_p50,
            "audio_latency_samples": audio_latencies.len(),
            "av_skew_ms": skew,
            "errors": errors,
        });
        if args.json {
            println!("{summary}");
        } else {
            println!(
                "{} client(s), {:.1} s: {:.1} fps decoded per client, join p50 {}, latency p50 {} p95 {} ({} samples)",
                summary["clients"],
                elapsed,
                summary["fps_per_client"].as_f64().unwrap_or(0.0),
                fmt_ms(percentile(&joins, 0.5)),
                fmt_ms(percentile(&all_latencies, 0.5)),
                fmt_ms(percentile(&all_latencies, 0.95)),
                all_latencies.len()
            );
            if let (Some(a), Some(s)) = (audio_p50, skew) {
                println!(
                    "audio latency p50 {a} ms ({} beeps): sound {} ms {} the picture",
                    audio_latencies.len(),
                    s.abs(),
                    if s > 0 { "behind" } else { "ahead of" }
                );
            }
        }
        Ok::<(), BoxError>(())
    })
}

/// `tessera layout ...`.
#[derive(Subcommand, Debug)]
pub enum LayoutCommand {
    /// Validate layout files; print what each holds.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Render a layout with coloured test inputs to a PNG.
    Preview {
        /// The layout file.
        file: PathBuf,
        /// How many participants.
        #[arg(long, default_value_t = 4)]
        participants: usize,
        /// Canvas size [default: the layout's].
        #[arg(long, value_parser = parse_size)]
        size: Option<(u32, u32)>,
        /// Make the n-th participant (1-based) the active speaker.
        #[arg(long)]
        speaker: Option<usize>,
        /// Participants (1-based) shown without video (placeholder).
        #[arg(long, value_delimiter = ',')]
        no_video: Vec<usize>,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert FreeSWITCH video layouts (conference_layouts.conf.xml) to
    /// layout files: each <group> becomes one layout with a variant per
    /// member layout, each <layout> one layout.
    Import {
        /// FreeSWITCH's conference_layouts.conf.xml.
        file: PathBuf,
        /// Folder to write NAME.toml files into.
        #[arg(long)]
        out: PathBuf,
        /// Only these groups or layouts (converted names; repeatable).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Canvas of the converted layouts.
        #[arg(long, default_value = "1280x720", value_parser = parse_size)]
        size: (u32, u32),
        /// Frame rate of the converted layouts.
        #[arg(long, default_value_t = 30)]
        fps: u32,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
}

/// `tessera layout`.
pub fn layout(cmd: LayoutCommand) -> Result<(), BoxError> {
    match cmd {
        LayoutCommand::Import { file, out, only, size, fps, force } => {
            use tessera::layout::import::{import, ImportCanvas};
            let xml = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let canvas = ImportCanvas { width: size.0, height: size.1, fps };
            let (imported, errors) = import(&xml, canvas).map_err(|e| format!("{}: {e}", file.display()))?;
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            let mut written = 0;
            for l in imported.iter().filter(|l| only.is_empty() || only.contains(&l.name)) {
                let path = out.join(format!("{}.toml", l.name));
                if path.exists() && !force {
                    eprintln!("{}: exists, not replaced (--force replaces it)", path.display());
                    continue;
                }
                std::fs::write(&path, &l.toml).map_err(|e| format!("{}: {e}", path.display()))?;
                written += 1;
                println!("{}: written", path.display());
                for n in &l.notes {
                    println!("  note: {n}");
                }
            }
            for e in &errors {
                eprintln!("{}: {e}", file.display());
            }
            if written == 0 {
                return Err("no layout written".into());
            }
            if !errors.is_empty() {
                return Err(format!("{} layout(s) not converted", errors.len()).into());
            }
            Ok(())
        }
        LayoutCommand::Check { files } => {
            let mut failed = 0;
            for f in files {
                match Layout::load(&f) {
                    Ok(l) => {
                        let counts: Vec<String> = l
                            .variants
                            .iter()
                            .map(|v| {
                                let range =
                                    if v.min == v.max { v.min.to_string() } else { format!("{}-{}", v.min, v.max) };
                                format!("{range}: {} cells", v.cells.len())
                            })
                            .collect();
                        println!(
                            "{}: ok: `{}` {}x{} @{} fps; {}",
                            f.display(),
                            l.name,
                            l.canvas.width,
                            l.canvas.height,
                            l.canvas.fps,
                            counts.join(", ")
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if failed > 0 {
                return Err(format!("{failed} layout file(s) rejected").into());
            }
            Ok(())
        }
        LayoutCommand::Preview { file, participants, size, speaker, no_video, out } => {
            let layout = Arc::new(Layout::load(&file)?);
            let (w, h) = size.unwrap_or((layout.canvas.width, layout.canvas.height));
            let mut patterns = Vec::new();
            for i in 0..participants {
                let mut p = TestPattern::new(640, 360, palette(i), &format!("Participant {}", i + 1))?;
                p.render(400 + 250 * i as u64, 0);
                patterns.push(p);
            }
            let names: Vec<String> = (0..participants).map(|i| format!("Participant {}", i + 1)).collect();
            let sources: Vec<Source<'_>> = patterns
                .iter()
                .zip(&names)
                .enumerate()
                .map(|(i, (p, name))| Source {
                    id: i as u64,
                    name,
                    frame: (!no_video.contains(&(i + 1))).then(|| p.frame().as_frame()),
                    generation: 1,
                })
                .collect();
            let mut comp = Compositor::new(w, h)?;
            comp.render(&layout, &sources, speaker.map(|s| s.saturating_sub(1) as u64));
            tessera::media::convert::write_png(&comp.canvas().as_frame(), &out)?;
            println!("{}: {} participants, {w}x{h}", out.display(), participants);
            Ok(())
        }
    }
}
