//! A long-lived MQTT connection (rumqttc) for the server and the client:
//! reconnects with backoff, re-subscribes and re-announces itself after
//! every reconnect, and hands incoming messages to its owner on a channel.
//!
//! The event loop runs in its own task; [`Link`] is a cheap handle to
//! publish through. Nothing in the loop ever awaits the request channel
//! (it is the only thing that drains it).

use bytes::Bytes;
use rumqttc::{AsyncClient, ConnectionError, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Largest packet a link sends or accepts (as large as the embedded
/// broker's, so an oversized message reaches the server to be refused).
pub const LINK_MAX_PACKET: usize = super::broker::BROKER_MAX_PAYLOAD + 1024;

/// Every subscription takes messages at QoS 0. A clean session keeps
/// nothing across a reconnect, so QoS 1 would add only acks; and a broker
/// may back QoS 1 subscriptions with state it must replicate (NATS makes a
/// JetStream consumer for each, and after losing a node it refuses them
/// for tens of seconds while it elects leaders, and stalls on deleting
/// them when a client drops). Publishers still use QoS 1 where a message
/// must reach the broker.
const SUBSCRIBE_QOS: QoS = QoS::AtMostOnce;

/// Errors setting up a link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The URL is not a usable MQTT URL.
    #[error("bad MQTT URL {0}: {1}")]
    Url(String, String),
    /// The CA file could not be read or parsed.
    #[error("CA file {0}: {1}")]
    Ca(String, String),
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// The link is closed.
    #[error("MQTT link closed")]
    Closed,
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// `mqtt://[user:pass@]host:port` or `mqtts://...`; several, separated
    /// by commas (the nodes of a broker cluster), are tried in turn: the
    /// link moves to the next whenever a connection fails or drops.
    pub url: String,
    /// MQTT client id (unique per connection).
    pub client_id: String,
    /// CA certificate (PEM) for `mqtts://`; default: the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Last will: topic, payload, retain.
    pub will: Option<(String, Vec<u8>, bool)>,
    /// Topic filters to (re)subscribe after each connect.
    pub subscriptions: Vec<String>,
    /// Published after each (re)connect, once subscribed: topic, payload, retain.
    pub announce: Vec<(String, Vec<u8>, bool)>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

/// What the link reports.
#[derive(Debug)]
pub enum LinkEvent {
    /// (Re)connected and subscribed: the owner should resynchronise.
    Ready,
    /// A message on a subscribed topic.
    Message {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Bytes,
    },
    /// The connection dropped; it is being retried.
    Down(String),
}

/// Handle to publish through a link.
#[derive(Clone)]
pub struct Link {
    client: AsyncClient,
    connected: watch::Receiver<bool>,
    stop: Arc<tokio::sync::Notify>,
}

impl Link {
    /// Connects (in the background) and returns the handle and its events.
    pub fn connect(options: LinkOptions) -> Result<(Link, mpsc::Receiver<LinkEvent>), LinkError> {
        let brokers = options
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| mqtt_options(u, &options))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(first) = brokers.first().cloned() else {
            return Err(LinkError::Url(options.url.clone(), "no broker URL".into()));
        };
        let (client, eventloop) = AsyncClient::new(first, 1024);
        let (tx, rx) = mpsc::channel(1024);
        let (connected_tx, connected) = watch::channel(false);
        let stop = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(run(client.clone(), eventloop, brokers, options, tx, connected_tx, stop.clone()));
        Ok((Link { client, connected, stop }, rx))
    }

    /// Publishes with QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>, retain: bool) -> Result<(), LinkError> {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload.into()).await.map_err(|_| LinkError::Closed)
    }

    /// Publishes with QoS 0: for heartbeats, which must not wait behind a
    /// broker's store (NATS keeps QoS 1 messages in JetStream, which stalls
    /// for seconds while it elects new leaders after losing a node).
    pub async fn publish_at_most_once(&self, topic: &str, payload: impl Into<Bytes>) -> Result<(), LinkError> {
        self.client.publish(topic, QoS::AtMostOnce, false, payload.into()).await.map_err(|_| LinkError::Closed)
    }

    /// Subscribes now (the link also re-subscribes after reconnects only
    /// to the filters given at connect).
    pub async fn subscribe(&self, filter: &str) -> Result<(), LinkError> {
        self.client.subscribe(filter, SUBSCRIBE_QOS).await.map_err(|_| LinkError::Closed)
    }

    /// Waits until the link is connected and subscribed (or `limit` passes).
    pub async fn ready(&self, limit: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(limit, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// Drops the connection without a DISCONNECT, as a crashed client
    /// would: the broker publishes the last will.
    pub fn kill(&self) {
        self.stop.notify_one();
    }

    /// Disconnects cleanly (no last will) and stops reconnecting.
    pub async fn close(&self) {
        let _ = self.client.disconnect().await;
        // Let the event loop flush the DISCONNECT, then stop it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.stop.notify_one();
    }
}

/// The connection settings for one broker URL.
fn mqtt_options(url: &str, options: &LinkOptions) -> Result<MqttOptions, LinkError> {
    let mut mqtt = parse_url(url, &options.client_id)?;
    mqtt.set_clean_session(true)
        .set_keep_alive(options.keep_alive.max(Duration::from_secs(1)))
        .set_max_packet_size(LINK_MAX_PACKET, LINK_MAX_PACKET);
    if let Some((topic, payload, retain)) = &options.will {
        mqtt.set_last_will(LastWill::new(topic, payload.clone(), QoS::AtLeastOnce, *retain));
    }
    // rumqttc's own TLS default panics on an unreadable system store:
    // build the configuration here, for mqtts:// and for a given CA.
    if let Some(ca) = &options.ca_file {
        mqtt.set_transport(tls_with_ca(ca)?);
    } else if matches!(mqtt.transport(), rumqttc::Transport::Tls(_)) {
        mqtt.set_transport(tls_with_system_roots()?);
    }
    Ok(mqtt)
}

/// Parses `mqtt://user:pass@host:port`, percent-decoding the credentials
/// (rumqttc keeps them encoded).
fn parse_url(url: &str, client_id: &str) -> Result<MqttOptions, LinkError> {
    let sep = if url.contains('?') { '&' } else { '?' };
    let full = format!("{url}{sep}client_id={client_id}");
    let mut o = MqttOptions::parse_url(full).map_err(|e| LinkError::Url(url.to_owned(), e.to_string()))?;
    if let Some(login) = o.credentials() {
        let dec = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        o.set_credentials(dec(&login.username), dec(&login.password));
    }
    Ok(o)
}

/// TLS trusting the system's roots (or `SSL_CERT_FILE` / `SSL_CERT_DIR`);
/// unreadable certificates are skipped, none at all is an error.
fn tls_with_system_roots() -> Result<rumqttc::Transport, LinkError> {
    use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "system certificate skipped");
    }
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(LinkError::Tls("no usable system root certificate; give the broker's CA with --mqtt-ca".into()));
    }
    let cfg = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(cfg))))
}

fn tls_with_ca(path: &Path) -> Result<rumqttc::Transport, LinkError> {
    use rumqttc::tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    use rumqttc::tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| LinkError::Ca(shown.clone(), e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| LinkError::Ca(shown.clone(), e.to_string()))?;
        roots.add(cert).map_err(|e| LinkError::Ca(shown.clone(), e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(LinkError::Ca(shown, "no certificate in the file".into()));
    }
    let cfg = ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(cfg))))
}

async fn run(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    brokers: Vec<MqttOptions>,
    options: LinkOptions,
    tx: mpsc::Sender<LinkEvent>,
    connected: watch::Sender<bool>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut next_backoff = Duration::from_millis(100);
    let mut attempt = 0u32;
    let mut pending_subacks = 0usize;
    let mut refused = false;
    let mut resubscribe: Option<tokio::time::Instant> = None;
    let mut broker = 0usize;
    let subscribe_all = |pending: &mut usize| {
        *pending = 0;
        for f in &options.subscriptions {
            if client.try_subscribe(f.clone(), SUBSCRIBE_QOS).is_ok() {
                *pending += 1;
            }
        }
    };
    loop {
        let polled = tokio::select! {
            _ = stop.notified() => return,
            _ = sleep_until(resubscribe), if resubscribe.is_some() => {
                resubscribe = None;
                refused = false;
                subscribe_all(&mut pending_subacks);
                continue;
            }
            p = eventloop.poll() => p,
        };
        match polled {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                next_backoff = Duration::from_millis(100);
                // Clean session: subscriptions are gone after every reconnect.
                refused = false;
                resubscribe = None;
                subscribe_all(&mut pending_subacks);
                if pending_subacks == 0 {
                    announce(&client, &options, &connected, &tx).await;
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) if pending_subacks > 0 => {
                pending_subacks -= 1;
                refused |= ack.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                if pending_subacks == 0 && refused {
                    // Ready only once every subscription holds.
                    tracing::warn!("the broker refused a subscription; trying again in 1 s");
                    resubscribe = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                } else if pending_subacks == 0 {
                    announce(&client, &options, &connected, &tx).await;
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                let event = LinkEvent::Message { topic: p.topic, payload: p.payload };
                if tx.send(event).await.is_err() {
                    return; // owner gone
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                connected.send_replace(false);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                connected.send_replace(false);
                let why = describe(&e);
                // Jitter: clients that lost one broker together do not all
                // knock on the next at the same instant (NATS refuses a
                // client id whose previous connect it is still processing).
                attempt = attempt.wrapping_add(1);
                let backoff = next_backoff.mul_f64(0.5 + jitter(&options.client_id, attempt));
                tracing::debug!(error = %why, retry_in = ?backoff, "MQTT connection down");
                if tx.send(LinkEvent::Down(why)).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = stop.notified() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                // Several brokers: wait longer, the others' recovery is slow.
                let most = if brokers.len() > 1 { MAX_BACKOFF } else { MAX_BACKOFF / 2 };
                next_backoff = (next_backoff * 2).min(most);
                if brokers.len() > 1 {
                    // The next node of the cluster.
                    broker = (broker + 1) % brokers.len();
                    eventloop.mqtt_options = brokers[broker].clone();
                    let (host, port) = eventloop.mqtt_options.broker_address();
                    tracing::info!(%host, port, "trying the next broker");
                }
            }
        }
    }
}

/// Sleeps until `at` (never without one).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn announce(
    client: &AsyncClient,
    options: &LinkOptions,
    connected: &watch::Sender<bool>,
    tx: &mpsc::Sender<LinkEvent>,
) {
    for (topic, payload, retain) in &options.announce {
        let _ = client.try_publish(topic.clone(), QoS::AtLeastOnce, *retain, payload.clone());
    }
    connected.send_replace(true);
    let _ = tx.send(LinkEvent::Ready).await;
}

/// Longest wait between two connection attempts with several brokers
/// (half with one), before jitter.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// A number in [0, 1) that differs between clients and attempts.
fn jitter(client_id: &str, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in client_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn describe(e: &ConnectionError) -> String {
    e.to_string()
}
