//! The embedded MQTT broker (rumqttd) `tessera serve` starts by default:
//! MQTT 3.1.1 and 5 over TCP, MQTT 3.1.1 over websockets for browsers.
//!
//! rumqttd has no stop and only logs bind failures, so this checks each
//! port before starting and waits until each answers after. It lives as
//! long as the process.

use super::passwords::Logins;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest packet the embedded broker accepts. Above the signaling limit
/// (64 KiB) on purpose: an oversized message reaches the server, which
/// answers `too-large`, instead of silently cutting the sender off.
pub const BROKER_MAX_PAYLOAD: usize = 2 * 1024 * 1024;

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A port is taken.
    #[error("cannot listen on {0}: {1}")]
    PortInUse(SocketAddr, std::io::Error),
    /// It started but a listener never answered.
    #[error("embedded broker not listening on {0}")]
    NotListening(SocketAddr),
    /// Its thread ended.
    #[error("embedded broker exited at start")]
    Exited,
    /// The thread could not start.
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
}

/// Where the embedded broker listens, and who may connect.
#[derive(Clone, Debug)]
pub struct BrokerAddrs {
    /// MQTT over TCP (3.1.1).
    pub tcp: SocketAddr,
    /// MQTT 5 over TCP, if wanted.
    pub tcp_v5: Option<SocketAddr>,
    /// MQTT 3.1.1 over websockets (`ws://host:port/mqtt`).
    pub ws: Option<SocketAddr>,
    /// Logins every listener checks; `None`: anyone may connect.
    pub logins: Option<Arc<Logins>>,
}

fn settings(name: &str, listen: SocketAddr, logins: &Option<Arc<Logins>>) -> ServerSettings {
    let mut s = ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 5_000,
            max_payload_size: BROKER_MAX_PAYLOAD,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    if let Some(logins) = logins.clone() {
        s.set_auth_handler(move |client_id: String, user: String, password: String| {
            let ok = logins.allows(&client_id, &user, &password);
            if !ok {
                tracing::info!(client = %client_id, user = %user, "broker refused a login");
            }
            std::future::ready(ok)
        });
    }
    s
}

fn config(addrs: &BrokerAddrs) -> Config {
    Config {
        id: 0,
        router: RouterConfig {
            // Far above any real load: past this rumqttd can wedge a listener
            // when a refused client reconnects (upstream issue 1062).
            max_connections: 100_000,
            max_outgoing_packet_count: 200,
            // Per subscription filter; a subscriber further behind loses
            // messages, so leave room for signaling bursts.
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("tcp".to_owned(), settings("tcp", addrs.tcp, &addrs.logins))])),
        v5: addrs.tcp_v5.map(|a| HashMap::from([("tcp-v5".to_owned(), settings("tcp-v5", a, &addrs.logins))])),
        ws: addrs.ws.map(|a| HashMap::from([("ws".to_owned(), settings("ws", a, &addrs.logins))])),
        ..Default::default()
    }
}

/// Starts the broker on its own threads and returns once every listener answers.
pub fn start(addrs: BrokerAddrs) -> Result<(), BrokerError> {
    let listeners: Vec<SocketAddr> = std::iter::once(addrs.tcp).chain(addrs.tcp_v5).chain(addrs.ws).collect();
    for &a in &listeners {
        TcpListener::bind(a).map_err(|e| BrokerError::PortInUse(a, e))?;
    }
    let cfg = config(&addrs);
    let handle = std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(cfg);
            match broker.start() {
                Ok(()) => tracing::error!("embedded broker: every listener stopped"),
                Err(e) => tracing::error!(error = %e, "embedded broker stopped"),
            }
        })
        .map_err(BrokerError::Thread)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    for &a in &listeners {
        loop {
            if TcpStream::connect_timeout(&a, Duration::from_millis(100)).is_ok() {
                break;
            }
            if handle.is_finished() {
                return Err(BrokerError::Exited);
            }
            if Instant::now() > deadline {
                return Err(BrokerError::NotListening(a));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let login = if addrs.logins.is_some() { "password file" } else { "none (loopback only)" };
    tracing::info!(tcp = %addrs.tcp, ws = ?addrs.ws, login, "embedded MQTT broker listening");
    Ok(())
}
