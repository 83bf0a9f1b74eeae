//! A lossy UDP relay for impairment tests: a client sends to the relay,
//! which forwards to the server (and back) dropping a share of the packets
//! at random in each direction.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Packets forwarded and dropped, both directions.
#[derive(Default)]
pub struct RelayStats {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct LossyRelay {
    loss: f64,
    pub stats: Arc<RelayStats>,
    stop: Arc<AtomicBool>,
    routes: Mutex<Vec<(SocketAddr, SocketAddr)>>,
}

impl LossyRelay {
    /// A relay that drops `loss` (0..1) of the packets each way.
    pub fn new(loss: f64) -> Arc<Self> {
        Arc::new(Self { loss, stats: Arc::default(), stop: Arc::default(), routes: Mutex::new(Vec::new()) })
    }

    /// The relay address that reaches `server` (made on first use).
    pub fn route(self: &Arc<Self>, server: SocketAddr) -> SocketAddr {
        let mut routes = self.routes.lock().unwrap();
        if let Some((_, front)) = routes.iter().find(|(s, _)| *s == server) {
            return *front;
        }
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (f2, b2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        // client -> server
        self.spawn(
            front,
            move |buf, from, rng, me| {
                *me.1.lock().unwrap() = Some(from);
                if !rng.lose() {
                    let _ = b2.send_to(buf, server);
                    return true;
                }
                false
            },
            client.clone(),
        );
        // server -> client
        self.spawn(
            back,
            move |buf, _from, rng, me| {
                if let Some(c) = *me.1.lock().unwrap() {
                    if !rng.lose() {
                        let _ = f2.send_to(buf, c);
                        return true;
                    }
                }
                false
            },
            client,
        );
        routes.push((server, addr));
        addr
    }

    fn spawn(
        self: &Arc<Self>,
        socket: UdpSocket,
        forward: impl Fn(&[u8], SocketAddr, &mut Rng, &(u8, Arc<Mutex<Option<SocketAddr>>>)) -> bool + Send + 'static,
        client: Arc<Mutex<Option<SocketAddr>>>,
    ) {
        let (stop, stats, loss) = (self.stop.clone(), self.stats.clone(), self.loss);
        std::thread::spawn(move || {
            let mut rng = Rng { state: socket.local_addr().unwrap().port() as u64 | 1, loss };
            let me = (0u8, client);
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if forward(&buf[..n], from, &mut rng, &me) {
                        stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
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
    fn lose(&mut self) -> bool {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % 10_000) as f64 / 10_000.0 < self.loss
    }
}
