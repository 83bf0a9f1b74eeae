//! `tessera serve` settings: a TOML file, `TESSERA_*` environment
//! variables and command-line flags, in rising order of precedence.

use clap::Args;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The file is not valid.
    #[error("config {0}: {1}")]
    Parse(PathBuf, String),
    /// A value is out of range or inconsistent.
    #[error("config: {0}")]
    Invalid(String),
}

/// One STUN or TURN server.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, `turns:...`.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default)]
    pub username: String,
    /// TURN credential.
    #[serde(default)]
    pub credential: String,
}

/// Flags (and `TESSERA_*` variables) of `tessera serve`. Every value may
/// also come from the config file; a flag wins over the file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML config file (same keys as these flags, with `_` for `-`).
    #[arg(long, short = 'c', env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,

    /// External MQTT broker, e.g. mqtt://user:pass@host:1883 or
    /// mqtts://user:pass@host:8883; several, comma-separated (the nodes of
    /// a broker cluster), are tried in turn. Without it an embedded broker
    /// is started.
    #[arg(long, env = "TESSERA_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// CA certificate (PEM) to trust for mqtts:// (default: the system roots).
    #[arg(long, env = "TESSERA_MQTT_CA")]
    pub mqtt_ca: Option<PathBuf>,
    /// Address the embedded broker listens on.
    #[arg(long, env = "TESSERA_BROKER_BIND")]
    pub broker_bind: Option<IpAddr>,
    /// Embedded broker's MQTT (TCP) port [default: 1883].
    #[arg(long, env = "TESSERA_BROKER_PORT")]
    pub broker_port: Option<u16>,
    /// Embedded broker's websocket port for browsers (MQTT 3.1.1 over ws) [default: 8083].
    #[arg(long, env = "TESSERA_BROKER_WS_PORT")]
    pub broker_ws_port: Option<u16>,
    /// Mosquitto password file (`mosquitto_passwd`) the embedded broker
    /// checks logins against; each client's id must be its user name.
    /// Required to bind the embedded broker beyond loopback.
    #[arg(long, env = "TESSERA_BROKER_PASSWORDS")]
    pub broker_passwords: Option<PathBuf>,
    /// Topic root [default: tessera].
    #[arg(long, env = "TESSERA_TOPIC_ROOT")]
    pub topic_root: Option<String>,
    /// Also serve the seed phone protocol on this MQTT topic (one shared
    /// topic, `{"command":"signal","clientid":...}` messages) as a room.
    #[arg(long, env = "TESSERA_LEGACY_TOPIC")]
    pub legacy_topic: Option<String>,
    /// This server's id in `{root}/_servers/{id}` [default: tessera-PID, PID being its process id].
    #[arg(long, env = "TESSERA_SERVER_ID")]
    pub server_id: Option<String>,

    /// Address WebRTC media binds to [default: 127.0.0.1].
    #[arg(long, env = "TESSERA_MEDIA_IP")]
    pub media_ip: Option<IpAddr>,
    /// UDP ports for media, as FIRST-LAST [default: any free port].
    #[arg(long, env = "TESSERA_UDP_PORTS")]
    pub udp_ports: Option<String>,
    /// Public address to advertise in candidates (1:1 NAT), if not the bind address.
    #[arg(long, env = "TESSERA_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,
    /// STUN/TURN server URL (repeatable).
    #[arg(long = "ice-server", env = "TESSERA_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,
    /// Username for the TURN servers given with --ice-server.
    #[arg(long, env = "TESSERA_ICE_USERNAME")]
    pub ice_username: Option<String>,
    /// Credential for the TURN servers given with --ice-server.
    #[arg(long, env = "TESSERA_ICE_CREDENTIAL")]
    pub ice_credential: Option<String>,

    /// TURN server for join pages, e.g. turn:turn.example:3478 (repeatable);
    /// pages get time-limited credentials made with --page-turn-secret.
    #[arg(long = "page-turn-url", env = "TESSERA_PAGE_TURN_URLS", value_delimiter = ',')]
    pub page_turn_urls: Vec<String>,
    /// The TURN server's shared secret (coturn --use-auth-secret
    /// --static-auth-secret=...), for the pages' credentials.
    #[arg(long, env = "TESSERA_PAGE_TURN_SECRET")]
    pub page_turn_secret: Option<String>,

    /// Address of the HTTP listener (join page, /metrics), or `off`
    /// [default: 127.0.0.1:8080].
    #[arg(long, env = "TESSERA_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// The broker's websocket URL the join page connects to, e.g.
    /// wss://broker.example:8084/mqtt [default with the embedded broker:
    /// its websocket port on the page's host].
    #[arg(long, env = "TESSERA_PAGE_MQTT_URL")]
    pub page_mqtt_url: Option<String>,

    /// Bearer token for WHIP ingest and WHEP playback in every room
    /// (per room: `whip_tokens` in the config file); without one the
    /// endpoints refuse.
    #[arg(long, env = "TESSERA_WHIP_TOKEN")]
    pub whip_token: Option<String>,
    /// Folder for recordings (fragmented MP4, one file per recording);
    /// without it rooms cannot be recorded.
    #[arg(long, env = "TESSERA_RECORDINGS")]
    pub recordings: Option<PathBuf>,
    /// Also serve recorded rooms as live HLS (`/hls/ROOM/index.m3u8`);
    /// asks the recorded view for a keyframe every 2 s. Needs --recordings.
    #[arg(long, env = "TESSERA_HLS", num_args = 0..=1, default_missing_value = "true")]
    pub hls: Option<bool>,
    /// Rooms recorded from their start, comma-separated (`*`: every room);
    /// needs --recordings.
    #[arg(long, env = "TESSERA_RECORD_ROOMS", value_delimiter = ',')]
    pub record_rooms: Vec<String>,

    /// Folder of layout files [default: layouts].
    #[arg(long, env = "TESSERA_LAYOUTS")]
    pub layouts: Option<PathBuf>,
    /// Layout of new rooms [default: grid].
    #[arg(long, env = "TESSERA_LAYOUT")]
    pub layout: Option<String>,
    /// Downstream video bitrate at the layout's canvas size, bits/s [default: 1500000].
    #[arg(long, env = "TESSERA_VIDEO_BITRATE")]
    pub video_bitrate: Option<u32>,
    /// Downstream Opus bitrate, bits/s [default: 32000].
    #[arg(long, env = "TESSERA_AUDIO_BITRATE")]
    pub audio_bitrate: Option<u32>,
    /// Largest picture a sender may send, WIDTHxHEIGHT (either
    /// orientation); larger streams are refused, not decoded [default: 1920x1080].
    #[arg(long, env = "TESSERA_MAX_INGEST")]
    pub max_ingest: Option<String>,
    /// Bitrate asked of a sender shown at 1280x720 and 30 fps, bits/s
    /// (senders in smaller tiles are asked for less) [default: 1500000].
    #[arg(long, env = "TESSERA_INGEST_BITRATE")]
    pub ingest_bitrate: Option<u32>,
    /// Fastest encoder setting (lower quality) for the downstream.
    #[arg(long, env = "TESSERA_FAST_ENCODE")]
    pub fast_encode: Option<bool>,

    /// Most rooms at once [default: 64].
    #[arg(long, env = "TESSERA_MAX_ROOMS")]
    pub max_rooms: Option<usize>,
    /// Most members per room [default: 16].
    #[arg(long, env = "TESSERA_MAX_PARTICIPANTS")]
    pub max_participants: Option<usize>,
    /// Signaling messages a peer may send per second, sustained [default: 20].
    #[arg(long, env = "TESSERA_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Milliseconds a new voice must lead before taking the speaker tile [default: 1500].
    #[arg(long, env = "TESSERA_SPEAKER_HOLD_MS")]
    pub speaker_hold_ms: Option<u64>,
    /// Seconds without any media from a sender (or with the connection
    /// down) before it is removed [default: 20].
    #[arg(long, env = "TESSERA_SILENCE_TIMEOUT_SECS")]
    pub silence_timeout_secs: Option<u64>,
    /// Seconds a sender's picture may freeze before its tile shows the
    /// placeholder [default: 5].
    #[arg(long, env = "TESSERA_VIDEO_TIMEOUT_SECS")]
    pub video_timeout_secs: Option<u64>,

    /// Run as one node of several on the same broker and topic root: beat,
    /// share the rooms out, take over the rooms of a node that dies, and
    /// hand rooms over on SIGTERM (see docs/cluster.md).
    #[arg(long, env = "TESSERA_CLUSTER", num_args = 0..=1, default_missing_value = "true")]
    pub cluster: Option<bool>,
    /// This node's share of new rooms against the others' [default: 1].
    #[arg(long, env = "TESSERA_CLUSTER_WEIGHT")]
    pub cluster_weight: Option<f64>,
    /// Milliseconds between heartbeats [default: 500].
    #[arg(long, env = "TESSERA_CLUSTER_BEAT_MS")]
    pub cluster_beat_ms: Option<u64>,
    /// Milliseconds of silence after which a node counts as dead [default: 2000].
    #[arg(long, env = "TESSERA_CLUSTER_DEAD_MS")]
    pub cluster_dead_ms: Option<u64>,
    /// Beat on a second broker connection (client id `{server-id}-beat`)
    /// [default: true]; turn it off for a broker that makes client ids
    /// of user names (Mosquitto's `use_username_as_clientid`).
    #[arg(long, env = "TESSERA_CLUSTER_BEAT_CONNECTION")]
    pub cluster_beat_connection: Option<bool>,
}

/// The config file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    mqtt_url: Option<String>,
    mqtt_ca: Option<PathBuf>,
    broker_bind: Option<IpAddr>,
    broker_port: Option<u16>,
    broker_ws_port: Option<u16>,
    broker_passwords: Option<PathBuf>,
    topic_root: Option<String>,
    legacy_topic: Option<String>,
    server_id: Option<String>,
    media_ip: Option<IpAddr>,
    udp_ports: Option<String>,
    public_ip: Option<IpAddr>,
    #[serde(default)]
    ice_servers: Vec<IceServer>,
    http_addr: Option<String>,
    page_mqtt_url: Option<String>,
    #[serde(default)]
    page_turn_urls: Vec<String>,
    page_turn_secret: Option<String>,
    recordings: Option<PathBuf>,
    #[serde(default)]
    record_rooms: Vec<String>,
    whip_token: Option<String>,
    hls: Option<bool>,
    #[serde(default)]
    whip_tokens: std::collections::BTreeMap<String, String>,
    layouts: Option<PathBuf>,
    layout: Option<String>,
    video_bitrate: Option<u32>,
    audio_bitrate: Option<u32>,
    fast_encode: Option<bool>,
    max_ingest: Option<String>,
    ingest_bitrate: Option<u32>,
    max_rooms: Option<usize>,
    max_participants: Option<usize>,
    rate_limit: Option<u32>,
    speaker_hold_ms: Option<u64>,
    silence_timeout_secs: Option<u64>,
    video_timeout_secs: Option<u64>,
    cluster: Option<bool>,
    cluster_weight: Option<f64>,
    cluster_beat_ms: Option<u64>,
    cluster_dead_ms: Option<u64>,
    cluster_beat_connection: Option<bool>,
}

/// How a cluster node beats and judges the others.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterSettings {
    /// Rendezvous weight.
    pub weight: f64,
    /// Between heartbeats.
    pub beat: Duration,
    /// Silence that makes a node dead.
    pub dead_after: Duration,
    /// Beat on a connection of its own.
    pub beat_connection: bool,
}

/// Where signaling goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broker {
    /// Start rumqttd in-process.
    Embedded {
        /// Bind address.
        bind: IpAddr,
        /// MQTT TCP port.
        port: u16,
        /// Websocket port.
        ws_port: u16,
        /// Password file, if logins are checked.
        passwords: Option<PathBuf>,
    },
    /// Connect to this broker.
    External {
        /// `mqtt://` or `mqtts://` URL.
        url: String,
        /// CA to trust for TLS.
        ca: Option<PathBuf>,
    },
}

/// The resolved server configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Broker.
    pub broker: Broker,
    /// Topic root.
    pub topic_root: String,
    /// Presence id (also the server's clientid on the legacy topic).
    pub server_id: String,
    /// The seed protocol's shared topic, if served.
    pub legacy_topic: Option<String>,
    /// Media bind address.
    pub media_ip: IpAddr,
    /// UDP port range.
    pub udp_ports: Option<(u16, u16)>,
    /// Advertised address.
    pub public_ip: Option<IpAddr>,
    /// STUN/TURN.
    pub ice_servers: Vec<IceServer>,
    /// HTTP listener, if any.
    pub http: Option<SocketAddr>,
    /// The websocket URL the join page is given.
    pub page_mqtt_url: Option<String>,
    /// TURN for pages: URLs and the shared secret for their credentials.
    pub page_turn: Option<(Vec<String>, String)>,
    /// Where recordings go, if rooms may be recorded.
    pub recordings: Option<PathBuf>,
    /// Rooms recorded from their start (`*`: all).
    pub record_rooms: Vec<String>,
    /// Live HLS of recorded rooms.
    pub hls: bool,
    /// WHIP/WHEP Bearer tokens by room (`*`: any room).
    pub whip_tokens: std::collections::BTreeMap<String, String>,
    /// Layout folder.
    pub layouts: PathBuf,
    /// Default layout.
    pub layout: String,
    /// Video bitrate at canvas size.
    pub video_bitrate: u32,
    /// Opus bitrate.
    pub audio_bitrate: u32,
    /// Fast encoder preset.
    pub fast_encode: bool,
    /// Largest picture decoded from a sender.
    pub max_ingest: (u32, u32),
    /// Bitrate asked of a 720p30 sender.
    pub ingest_bitrate: u32,
    /// Room limit.
    pub max_rooms: usize,
    /// Member limit per room.
    pub max_participants: usize,
    /// Messages per second per peer.
    pub rate_limit: u32,
    /// Speaker hysteresis.
    pub speaker_hold: Duration,
    /// Media silence timeout.
    pub silence_timeout: Duration,
    /// Frozen-picture timeout.
    pub video_timeout: Duration,
    /// One node of several (`--cluster`).
    pub cluster: Option<ClusterSettings>,
}

impl ServeArgs {
    /// Merges file, environment and flags into a checked configuration.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mqtt_url = self.mqtt_url.or(file.mqtt_url);
        let broker = match mqtt_url {
            Some(url) => {
                for one in url.split(',').map(str::trim) {
                    if !(one.starts_with("mqtt://") || one.starts_with("mqtts://")) {
                        return Err(ConfigError::Invalid(format!("--mqtt-url {one}: expected mqtt:// or mqtts://")));
                    }
                }
                Broker::External { url, ca: self.mqtt_ca.or(file.mqtt_ca) }
            }
            None => {
                let bind = self.broker_bind.or(file.broker_bind).unwrap_or(IpAddr::from([127, 0, 0, 1]));
                let passwords = self.broker_passwords.or(file.broker_passwords);
                if !bind.is_loopback() && passwords.is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "the embedded broker would listen on {bind} with no login at all: give it a password \
                         file (--broker-passwords, written by mosquitto_passwd), or keep it on 127.0.0.1; \
                         per-topic ACLs need Mosquitto or NATS (--mqtt-url)"
                    )));
                }
                Broker::Embedded {
                    bind,
                    port: self.broker_port.or(file.broker_port).unwrap_or(1883),
                    ws_port: self.broker_ws_port.or(file.broker_ws_port).unwrap_or(8083),
                    passwords,
                }
            }
        };
        let topic_root = self.topic_root.or(file.topic_root).unwrap_or_else(|| "tessera".into());
        if topic_root.is_empty() || topic_root.contains(['+', '#']) || topic_root.ends_with('/') {
            return Err(ConfigError::Invalid(format!(
                "topic root `{topic_root}` must be a plain topic without wildcards"
            )));
        }
        let server_id = self.server_id.or(file.server_id).unwrap_or_else(|| format!("tessera-{}", std::process::id()));
        if !crate::signaling::protocol::valid_id(&server_id) {
            return Err(ConfigError::Invalid(format!("server id `{server_id}` must match [A-Za-z0-9_-]{{1,64}}")));
        }
        let legacy_topic = self.legacy_topic.or(file.legacy_topic);
        if let Some(t) = &legacy_topic {
            if t.is_empty() || t.contains(['+', '#']) {
                return Err(ConfigError::Invalid(format!(
                    "legacy topic `{t}` must be a plain topic without wildcards"
                )));
            }
        }
        let udp_ports = match self.udp_ports.or(file.udp_ports) {
            None => None,
            Some(s) => Some(parse_ports(&s)?),
        };
        let mut ice_servers = file.ice_servers;
        if !self.ice_servers.is_empty() {
            ice_servers = vec![IceServer {
                urls: self.ice_servers,
                username: self.ice_username.unwrap_or_default(),
                credential: self.ice_credential.unwrap_or_default(),
            }];
        }
        for s in &ice_servers {
            for u in &s.urls {
                if !["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| u.starts_with(p)) {
                    return Err(ConfigError::Invalid(format!(
                        "ICE server `{u}` must start with stun:, stuns:, turn: or turns:"
                    )));
                }
            }
        }
        let http = match self.http_addr.or(file.http_addr).as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            Some("off") => None,
            Some(a) => Some(a.parse().map_err(|_| {
                ConfigError::Invalid(format!("HTTP address `{a}`: expected IP:PORT, e.g. 127.0.0.1:8080, or off"))
            })?),
        };
        let page_mqtt_url = self.page_mqtt_url.or(file.page_mqtt_url);
        if let Some(u) = &page_mqtt_url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                return Err(ConfigError::Invalid(format!("page MQTT URL `{u}` must start with ws:// or wss://")));
            }
        }
        let turn_urls = if self.page_turn_urls.is_empty() { file.page_turn_urls } else { self.page_turn_urls };
        let page_turn = match (turn_urls.is_empty(), self.page_turn_secret.or(file.page_turn_secret)) {
            (true, None) => None,
            (false, Some(secret)) if !secret.is_empty() => {
                if let Some(u) = turn_urls.iter().find(|u| !(u.starts_with("turn:") || u.starts_with("turns:"))) {
                    return Err(ConfigError::Invalid(format!("page TURN URL `{u}` must start with turn: or turns:")));
                }
                Some((turn_urls, secret))
            }
            _ => {
                return Err(ConfigError::Invalid(
                    "--page-turn-url and --page-turn-secret go together (the secret makes the pages' credentials)"
                        .into(),
                ))
            }
        };
        let recordings = self.recordings.or(file.recordings);
        let record_rooms = if self.record_rooms.is_empty() { file.record_rooms } else { self.record_rooms };
        for r in &record_rooms {
            if r != "*" && !crate::signaling::protocol::valid_id(r) {
                return Err(ConfigError::Invalid(format!("record room `{r}` is not a room name (or `*`)")));
            }
        }
        if !record_rooms.is_empty() && recordings.is_none() {
            return Err(ConfigError::Invalid("--record-rooms needs --recordings DIR".into()));
        }
        let hls = self.hls.or(file.hls).unwrap_or(false);
        if hls && recordings.is_none() {
            return Err(ConfigError::Invalid("--hls serves recorded rooms: it needs --recordings DIR".into()));
        }
        let mut whip_tokens = file.whip_tokens;
        if let Some(t) = self.whip_token.or(file.whip_token) {
            whip_tokens.insert("*".into(), t);
        }
        for (room, token) in &whip_tokens {
            if room != "*" && !crate::signaling::protocol::valid_id(room) {
                return Err(ConfigError::Invalid(format!("WHIP token for `{room}`: not a room name (or `*`)")));
            }
            if token.len() < 8 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::Invalid(format!(
                    "WHIP token for `{room}`: use at least 8 characters, no spaces"
                )));
            }
        }
        let positive = |name: &str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid(format!("{name} must be above 0")))
            } else {
                Ok(v)
            }
        };
        Ok(ServerConfig {
            broker,
            topic_root,
            server_id,
            legacy_topic,
            media_ip: self.media_ip.or(file.media_ip).unwrap_or(IpAddr::from([127, 0, 0, 1])),
            udp_ports,
            public_ip: self.public_ip.or(file.public_ip),
            ice_servers,
            http,
            page_mqtt_url,
            page_turn,
            recordings,
            record_rooms,
            hls,
            whip_tokens,
            layouts: self.layouts.or(file.layouts).unwrap_or_else(|| PathBuf::from("layouts")),
            layout: self.layout.or(file.layout).unwrap_or_else(|| "grid".into()),
            video_bitrate: positive(
                "video bitrate",
                self.video_bitrate.or(file.video_bitrate).unwrap_or(1_500_000) as u64,
            )? as u32,
            audio_bitrate: positive(
                "audio bitrate",
                self.audio_bitrate.or(file.audio_bitrate).unwrap_or(32_000) as u64,
            )? as u32,
            fast_encode: self.fast_encode.or(file.fast_encode).unwrap_or(false),
            max_ingest: match self.max_ingest.or(file.max_ingest) {
                None => (1920, 1080),
                Some(s) => parse_size(&s)?,
            },
            ingest_bitrate: positive(
                "ingest bitrate",
                self.ingest_bitrate.or(file.ingest_bitrate).unwrap_or(1_500_000) as u64,
            )? as u32,
            max_rooms: positive("max rooms", self.max_rooms.or(file.max_rooms).unwrap_or(64) as u64)? as usize,
            max_participants: positive(
                "max participants",
                self.max_participants.or(file.max_participants).unwrap_or(16) as u64,
            )? as usize,
            rate_limit: positive("rate limit", self.rate_limit.or(file.rate_limit).unwrap_or(20) as u64)? as u32,
            speaker_hold: Duration::from_millis(self.speaker_hold_ms.or(file.speaker_hold_ms).unwrap_or(1500)),
            silence_timeout: Duration::from_secs(positive(
                "silence timeout",
                self.silence_timeout_secs.or(file.silence_timeout_secs).unwrap_or(20),
            )?),
            video_timeout: Duration::from_secs(positive(
                "video timeout",
                self.video_timeout_secs.or(file.video_timeout_secs).unwrap_or(5),
            )?),
            cluster: match self.cluster.or(file.cluster).unwrap_or(false) {
                false => None,
                true => {
                    let weight = self.cluster_weight.or(file.cluster_weight).unwrap_or(1.0);
                    if !(weight.is_finite() && weight > 0.0) {
                        return Err(ConfigError::Invalid(format!("cluster weight {weight} must be above 0")));
                    }
                    let beat = positive("cluster beat", self.cluster_beat_ms.or(file.cluster_beat_ms).unwrap_or(500))?;
                    let dead = positive("cluster dead", self.cluster_dead_ms.or(file.cluster_dead_ms).unwrap_or(2000))?;
                    if dead < beat * 2 {
                        return Err(ConfigError::Invalid(format!(
                            "--cluster-dead-ms {dead} must be at least two heartbeats ({} ms)",
                            beat * 2
                        )));
                    }
                    Some(ClusterSettings {
                        weight,
                        beat: Duration::from_millis(beat),
                        dead_after: Duration::from_millis(dead),
                        beat_connection: self.cluster_beat_connection.or(file.cluster_beat_connection).unwrap_or(true),
                    })
                }
            },
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e.message().to_owned()))
}

fn parse_size(s: &str) -> Result<(u32, u32), ConfigError> {
    let bad = || ConfigError::Invalid(format!("size `{s}`: expected WIDTHxHEIGHT, e.g. 1920x1080"));
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if w < 16 || h < 16 || w > 8192 || h > 8192 {
        return Err(bad());
    }
    Ok((w, h))
}

fn parse_ports(s: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || ConfigError::Invalid(format!("UDP ports `{s}`: expected FIRST-LAST, e.g. 40000-40999"));
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_an_embedded_broker_on_loopback() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(
            c.broker,
            Broker::Embedded { bind: IpAddr::from([127, 0, 0, 1]), port: 1883, ws_port: 8083, passwords: None }
        );
        assert_eq!(c.topic_root, "tessera");
        assert_eq!(c.layout, "grid");
        assert_eq!(c.max_participants, 16);
        assert_eq!(c.http, Some(SocketAddr::from(([127, 0, 0, 1], 8080))));
        let off = ServeArgs { http_addr: Some("off".into()), ..Default::default() }.resolve().unwrap();
        assert_eq!(off.http, None);
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("tessera-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serve.toml");
        std::fs::write(
            &path,
            "topic_root = \"conf\"\nmax_rooms = 3\nudp_ports = \"40000-40010\"\n[[ice_servers]]\nurls = [\"turn:127.0.0.1:3478\"]\nusername = \"u\"\ncredential = \"p\"\n",
        )
        .unwrap();
        let args = ServeArgs { config: Some(path.clone()), max_rooms: Some(5), ..Default::default() };
        let c = args.resolve().unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(c.topic_root, "conf");
        assert_eq!(c.max_rooms, 5);
        assert_eq!(c.udp_ports, Some((40000, 40010)));
        assert_eq!(c.ice_servers[0].username, "u");
    }

    #[test]
    fn bad_values_are_explained() {
        for (args, needle) in [
            (ServeArgs { mqtt_url: Some("http://x".into()), ..Default::default() }, "mqtt://"),
            (ServeArgs { udp_ports: Some("5-1".into()), ..Default::default() }, "FIRST-LAST"),
            (ServeArgs { topic_root: Some("a/#".into()), ..Default::default() }, "wildcards"),
            (ServeArgs { max_rooms: Some(0), ..Default::default() }, "max rooms"),
            (ServeArgs { broker_bind: Some(IpAddr::from([0, 0, 0, 0])), ..Default::default() }, "no login at all"),
            (ServeArgs { record_rooms: vec!["a".into()], ..Default::default() }, "needs --recordings"),
            (
                ServeArgs { record_rooms: vec!["a/b".into()], recordings: Some("r".into()), ..Default::default() },
                "not a room name",
            ),
            (ServeArgs { ice_servers: vec!["http://x".into()], ..Default::default() }, "stun:"),
            (ServeArgs { server_id: Some("a b".into()), ..Default::default() }, "server id"),
            (ServeArgs { max_ingest: Some("huge".into()), ..Default::default() }, "WIDTHxHEIGHT"),
            (ServeArgs { http_addr: Some("8080".into()), ..Default::default() }, "IP:PORT"),
            (ServeArgs { page_mqtt_url: Some("mqtt://x".into()), ..Default::default() }, "ws://"),
        ] {
            let e = args.resolve().unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let missing = ServeArgs { config: Some("/nonexistent/x.toml".into()), ..Default::default() };
        assert!(missing.resolve().unwrap_err().to_string().contains("/nonexistent/x.toml"));
    }
}
