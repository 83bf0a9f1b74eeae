//! `tessera serve`: the tokio shell around the rooms.
//!
//! It starts the embedded broker (unless told to use another), connects
//! to it, and dispatches each signaling message to its room's task,
//! refusing what is malformed, too large, too fast or over a limit. On
//! shutdown every member gets a `bye`, room states are cleared and the
//! server's presence turns offline.

mod dispatch;
pub mod events;
pub mod hls;
pub mod memory;
pub mod metrics;
mod rate;
pub mod recorder;
pub mod room_task;
pub mod session;
mod video_in;

use crate::config::{Broker, ServerConfig};
use crate::layout::Layout;
use crate::peer::PeerOptions;
use crate::signaling::broker::{self, BrokerAddrs};
use crate::signaling::link::{Link, LinkOptions};
use crate::signaling::passwords::Logins;
use crate::signaling::protocol::Topics;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The default layout is missing or invalid.
    #[error("layout `{0}` not found in {1} (see the errors above)")]
    NoLayout(String, String),
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// The MQTT link could not be set up.
    #[error(transparent)]
    Link(#[from] crate::signaling::link::LinkError),
    /// The HTTP listener could not start.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// The embedded broker's password file cannot be used.
    #[error(transparent)]
    Passwords(#[from] crate::signaling::passwords::PasswordError),
    /// No secret for the server's own broker login.
    #[error("the system's random source failed")]
    Random,
}

/// What every room shares.
pub struct Shared {
    /// Resolved configuration.
    pub config: ServerConfig,
    /// Layouts by name.
    pub layouts: Arc<BTreeMap<String, Arc<Layout>>>,
    /// The layout new rooms start with.
    pub default_layout: Arc<Layout>,
    /// Topic names.
    pub topics: Topics,
    /// The broker connection.
    pub link: Link,
    /// How peer connections are built.
    pub peer_options: PeerOptions,
    /// Live HLS of recorded rooms, when on.
    pub hls: Option<Arc<hls::HlsRegistry>>,
}

/// Runs the server until `shutdown` completes.
pub async fn serve(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let (layouts, errors) = crate::layout::load_dir(&config.layouts);
    for e in &errors {
        tracing::error!("{e}");
    }
    let default_layout = layouts
        .get(&config.layout)
        .cloned()
        .ok_or_else(|| ServeError::NoLayout(config.layout.clone(), config.layouts.display().to_string()))?;
    tracing::info!(layouts = ?layouts.keys().collect::<Vec<_>>(), default = %config.layout, "layouts loaded");
    // Bound first: a taken port stops the server before it joins the broker.
    let http = match config.http {
        Some(addr) => Some(crate::http::bind(addr).await?),
        None => None,
    };

    let url = match &config.broker {
        Broker::Embedded { bind, port, ws_port, passwords } => {
            // With logins on, the server signs in with a password only it knows.
            let internal = match passwords {
                Some(_) => Some((config.server_id.clone(), random_secret()?)),
                None => None,
            };
            let logins = match (passwords, &internal) {
                (Some(path), Some(login)) => {
                    let l = Logins::load(path, login.clone())?;
                    tracing::info!(file = %path.display(), users = l.len(), "embedded broker checks logins");
                    Some(Arc::new(l))
                }
                _ => None,
            };
            broker::start(BrokerAddrs {
                tcp: SocketAddr::new(*bind, *port),
                tcp_v5: None,
                ws: Some(SocketAddr::new(*bind, *ws_port)),
                logins,
            })?;
            let host = if bind.is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], *port))
            } else {
                SocketAddr::new(*bind, *port)
            };
            match internal {
                Some((user, pass)) => format!("mqtt://{user}:{pass}@{host}"),
                None => format!("mqtt://{host}"),
            }
        }
        Broker::External { url, .. } => url.clone(),
    };
    let topics = Topics::new(config.topic_root.clone());
    let presence = topics.server(&config.server_id);
    let (link, events) = Link::connect(LinkOptions {
        url: url.clone(),
        client_id: config.server_id.clone(),
        ca_file: match &config.broker {
            Broker::External { ca, .. } => ca.clone(),
            Broker::Embedded { .. } => None,
        },
        will: Some((presence.clone(), br#"{"online":false}"#.to_vec(), true)),
        subscriptions: [topics.peer_filter(), topics.control_filter()]
            .into_iter()
            .chain(config.legacy_topic.clone())
            // A cluster node listens to the others' beats and room claims.
            .chain(config.cluster.iter().flat_map(|_| [topics.servers_filter(), topics.state_filter()]))
            .chain(config.cluster.filter(|c| !c.beat_connection).map(|_| topics.beats_filter()))
            .collect(),
        announce: vec![(presence.clone(), br#"{"online":true}"#.to_vec(), true)],
        keep_alive: Duration::from_secs(5),
    })?;
    if link.ready(Duration::from_secs(10)).await {
        tracing::info!(broker = %redact(&url), root = %topics.root(), id = %config.server_id, "signaling ready");
    } else {
        tracing::warn!(broker = %redact(&url), "broker not reachable yet; retrying in the background");
    }
    let peer_options = PeerOptions {
        bind_ip: config.media_ip,
        ports: config.udp_ports,
        ice_servers: config.ice_servers.clone(),
        public_ip: config.public_ip,
        ..PeerOptions::default()
    };
    let hls = config.hls.then(|| Arc::new(hls::HlsRegistry::default()));
    let (http_stop, http_task) = match http {
        Some(listener) => {
            let page = page_config(&config, &layouts);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let whip = crate::http::whip::Whip::new(crate::http::whip::WhipConfig {
                url: url.clone(),
                ca_file: match &config.broker {
                    Broker::External { ca, .. } => ca.clone(),
                    Broker::Embedded { .. } => None,
                },
                topic_root: config.topic_root.clone(),
                client_prefix: config.server_id.clone(),
                tokens: config.whip_tokens.clone(),
            });
            let state = crate::http::HttpState { page, metrics: metrics::Metrics::install(), whip, hls: hls.clone() };
            let task = tokio::spawn(crate::http::serve(listener, state, async move {
                let _ = stopped.await;
            }));
            (Some(stop), Some(task))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared {
        layouts: Arc::new(layouts),
        default_layout,
        topics,
        link: link.clone(),
        peer_options,
        hls,
        config,
    });
    // A cluster node beats on a connection of its own, carrying nothing
    // else: a broker that processes each connection's packets in order
    // (NATS stores retained QoS 1 messages in JetStream first, for seconds
    // while it elects leaders) must not hold a heartbeat behind a room state.
    let beats = match &shared.config.cluster {
        Some(c) if c.beat_connection => Some(Link::connect(LinkOptions {
            url: url.clone(),
            client_id: format!("{}-beat", shared.config.server_id),
            ca_file: match &shared.config.broker {
                Broker::External { ca, .. } => ca.clone(),
                Broker::Embedded { .. } => None,
            },
            will: None,
            subscriptions: vec![shared.topics.beats_filter()],
            announce: vec![],
            keep_alive: Duration::from_secs(5),
        })?),
        _ => None,
    };
    let beat_link = beats.as_ref().map(|(l, _)| l.clone());
    dispatch::Dispatcher::new(shared, beats).run(events, shutdown).await;
    if let Some(l) = beat_link {
        l.close().await;
    }
    let _ = link.publish(&presence, br#"{"online":false}"#.to_vec(), true).await;
    link.close().await;
    if let (Some(stop), Some(task)) = (http_stop, http_task) {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the join page is told about this server.
fn page_config(config: &ServerConfig, layouts: &BTreeMap<String, Arc<Layout>>) -> crate::http::PageConfig {
    crate::http::PageConfig {
        protocol: 1,
        topic_root: config.topic_root.clone(),
        mqtt_url: config.page_mqtt_url.clone(),
        ws_port: match &config.broker {
            Broker::Embedded { ws_port, .. } => Some(*ws_port),
            Broker::External { .. } => None,
        },
        recording: config.recordings.is_some(),
        turn: config
            .page_turn
            .as_ref()
            .map(|(urls, secret)| crate::http::PageTurn { urls: urls.clone(), secret: secret.clone() }),
        login: matches!(&config.broker, Broker::Embedded { passwords: Some(_), .. }),
        layouts: layouts.keys().cloned().collect(),
        default_layout: config.layout.clone(),
        ice_servers: config
            .ice_servers
            .iter()
            .flat_map(|s| s.urls.iter())
            .filter(|u| u.starts_with("stun:") || u.starts_with("stuns:"))
            .cloned()
            .collect(),
    }
}

/// 32 hex digits from the system's random source.
fn random_secret() -> Result<String, ServeError> {
    crate::secret::random_hex(16).ok_or(ServeError::Random)
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(super::redact("mqtt://bob:secret@host:1883"), "mqtt://bob:***@host:1883");
        assert_eq!(super::redact("mqtt://host:1883"), "mqtt://host:1883");
    }
}
