//! A UDP relay for impairment tests: a client sends to the relay, which
//! forwards to the server and back. It can drop a share of the packets at
//! random in each direction (loss), and it can make the way back to the
//! client a bottleneck: a token bucket at a set rate in front of a
//! bounded queue (packets that find the queue full are lost), like a slow
//! link shared by everything the relay carries. The cap can change while
//! media flows.
//!
//! Like a NAT, each client address behind a route gets its own address
//! towards the server, so a client with several sockets (a browser with
//! one per interface) is told apart, and answers reach the socket that
//! asked.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Packets and bytes forwarded and dropped.
#[derive(Default)]
pub struct RelayStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    /// Server to client only.
    pub down_forwarded: AtomicU64,
    pub down_dropped: AtomicU64,
    pub down_bytes: AtomicU64,
}

/// A bottleneck: rate and how long its queue may be.
#[derive(Clone, Copy, Debug)]
pub struct Cap {
    pub bps: u64,
    pub queue: Duration,
}

/// A packet on its way to a client: from which relay socket, to whom.
struct Queued {
    data: Vec<u8>,
    via: Arc<UdpSocket>,
    to: SocketAddr,
}

struct Bottleneck {
    cap: Option<Cap>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    tokens: f64,
    refilled: Instant,
}

pub struct LossyRelay {
    loss: f64,
    pub stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    routes: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    down: Arc<Mutex<Bottleneck>>,
}

impl LossyRelay {
    /// A relay that drops `loss` (0..1) of the packets each way.
    pub fn new(loss: f64) -> Arc<Self> {
        let relay = Arc::new(Self {
            loss,
            stats: Arc::default(),
            stop: Arc::default(),
            routes: Mutex::new(Vec::new()),
            down: Arc::new(Mutex::new(Bottleneck {
                cap: None,
                queue: VecDeque::new(),
                queued_bytes: 0,
                tokens: 0.0,
                refilled: Instant::now(),
            })),
        });
        relay.spawn_drain();
        relay
    }

    /// A lossless relay whose way back to the client is capped (or not).
    pub fn capped(cap: Option<Cap>) -> Arc<Self> {
        let r = Self::new(0.0);
        r.set_cap(cap);
        r
    }

    /// Changes the bottleneck on the way back to the client.
    pub fn set_cap(&self, cap: Option<Cap>) {
        let mut b = self.down.lock().unwrap();
        b.cap = cap;
        b.tokens = 0.0;
        b.refilled = Instant::now();
    }

    /// The relay address that reaches `server` (made on first use).
    pub fn route(self: &Arc<Self>, server: SocketAddr) -> SocketAddr {
        let mut routes = self.routes.lock().unwrap();
        if let Some((_, front)) = routes.iter().find(|(s, _)| *s == server) {
            return *front;
        }
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        front.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let addr = front.local_addr().unwrap();
        let relay = self.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(addr.port(), relay.loss);
            let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 2048];
            while !relay.stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                let back = backs.entry(from).or_insert_with(|| relay.open_back(front.clone(), from));
                if rng.lose() {
                    relay.stats.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = back.send_to(&buf[..n], server);
                    relay.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        routes.push((server, addr));
        addr
    }

    /// The socket that speaks to the server for `client` (reached through
    /// `front`), and its thread carrying the server's packets back.
    fn open_back(self: &Arc<Self>, front: Arc<UdpSocket>, client: SocketAddr) -> Arc<UdpSocket> {
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        back.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let (relay, socket) = (self.clone(), back.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(socket.local_addr().unwrap().port(), relay.loss);
            let mut buf = vec![0u8; 2048];
            let stats = &relay.stats;
            while !relay.stop.load(Ordering::Relaxed) {
                let Ok((n, _)) = socket.recv_from(&mut buf) else { continue };
                if rng.lose() {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    stats.down_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mut b = relay.down.lock().unwrap();
                match b.cap {
                    None => {
                        drop(b);
                        let _ = front.send_to(&buf[..n], client);
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        stats.down_forwarded.fetch_add(1, Ordering::Relaxed);
                        stats.down_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Some(cap) => {
                        let limit = (cap.bps as f64 / 8.0 * cap.queue.as_secs_f64()) as usize;
                        if b.queued_bytes + n > limit.max(1500) {
                            stats.dropped.fetch_add(1, Ordering::Relaxed);
                            stats.down_dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            b.queued_bytes += n;
                            b.queue.push_back(Queued { data: buf[..n].to_vec(), via: front.clone(), to: client });
                        }
                    }
                }
            }
        });
        back
    }

    /// The bottleneck's drain: sends queued packets as the tokens allow.
    fn spawn_drain(self: &Arc<Self>) {
        let (stop, stats, down) = (self.stop.clone(), self.stats.clone(), self.down.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut out = Vec::new();
                {
                    let mut b = down.lock().unwrap();
                    match b.cap {
                        Some(cap) => {
                            let now = Instant::now();
                            let dt = now.saturating_duration_since(b.refilled).as_secs_f64();
                            b.refilled = now;
                            // At most two packets' worth of burst.
                            b.tokens = (b.tokens + dt * cap.bps as f64 / 8.0).min(3000.0);
                            while b.queue.front().is_some_and(|p| p.data.len() as f64 <= b.tokens) {
                                let Some(p) = b.queue.pop_front() else { break };
                                b.tokens -= p.data.len() as f64;
                                b.queued_bytes -= p.data.len();
                                out.push(p);
                            }
                        }
                        None => {
                            // Cap lifted: what waits goes at once.
                            b.queued_bytes = 0;
                            out.extend(b.queue.drain(..));
                        }
                    }
                }
                for p in &out {
                    let _ = p.via.send_to(&p.data, p.to);
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    stats.down_forwarded.fetch_add(1, Ordering::Relaxed);
                    stats.down_bytes.fetch_add(p.data.len() as u64, Ordering::Relaxed);
                }
                if out.is_empty() {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        });
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub struct Rng {
    state: u64,
    loss: f64,
}

impl Rng {
    fn new(seed: u16, loss: f64) -> Self {
        Self { state: seed as u64 | 1, loss }
    }

    fn lose(&mut self) -> bool {
        if self.loss <= 0.0 {
            return false;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % 10_000) as f64 / 10_000.0 < self.loss
    }
}
