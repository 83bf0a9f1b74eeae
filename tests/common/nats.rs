//! A 3-node NATS cluster with MQTT on loopback, from the shipped
//! configuration in `deploy/nats/` with its ports and store moved to free
//! ones, so tests can run side by side.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped node configurations' fixed ports, in the order they appear:
/// client, cluster, MQTT, websocket for node 1 (nodes 2 and 3 add 1 and 2).
const SHIPPED: [u16; 4] = [4222, 6222, 1891, 8091];

/// Three running `nats-server` nodes.
pub struct NatsCluster {
    nodes: Vec<Child>,
    /// Each node's MQTT port.
    pub mqtt: Vec<u16>,
    dir: PathBuf,
}

impl NatsCluster {
    /// Starts the three nodes and waits until each answers MQTT (a second
    /// time on fresh ports if a node does not come up: a port picked free
    /// can be taken by someone else before the node binds it).
    pub fn start() -> NatsCluster {
        match Self::try_start() {
            Ok(c) => c,
            Err(first) => {
                eprintln!("NATS did not start, trying other ports:\n{first}");
                Self::try_start().unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    fn try_start() -> Result<NatsCluster, String> {
        let dir = std::env::temp_dir().join(format!("tessera-nats-{}", super::free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        // Free ports for every shipped one: [kind][node].
        let ports: Vec<Vec<u16>> = (0..4).map(|_| (0..3).map(|_| super::free_port()).collect()).collect();
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nats");
        let mut nodes = Vec::new();
        for n in 0..3 {
            let mut text = std::fs::read_to_string(shipped.join(format!("node{}.conf", n + 1))).unwrap();
            for (base, free) in SHIPPED.iter().zip(&ports) {
                for (m, port) in free.iter().enumerate() {
                    text = text.replace(&format!("127.0.0.1:{}", base + m as u16), &format!("127.0.0.1:{port}"));
                }
            }
            text = text.replace("/var/lib/tessera-nats", dir.to_str().unwrap());
            let conf = dir.join(format!("node{}.conf", n + 1));
            std::fs::write(&conf, text).unwrap();
            let log = std::fs::File::create(dir.join(format!("node{}.log", n + 1))).unwrap();
            nodes.push(
                Command::new("nats-server")
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("nats-server (package nats-server; scripts/install-deps installs it)"),
            );
        }
        let cluster = NatsCluster { nodes, mqtt: ports[2].clone(), dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        for &p in &cluster.mqtt {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                if Instant::now() >= deadline {
                    return Err(format!("NATS MQTT port {p} never opened:\n{}", cluster.logs()));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// `mqtt://127.0.0.1:port` of node `n` (0-based).
    pub fn url(&self, n: usize) -> String {
        format!("mqtt://127.0.0.1:{}", self.mqtt[n])
    }

    /// Every node's MQTT URL, starting with node `n`'s: what a client of
    /// node `n` that can move to the others is given.
    pub fn urls_from(&self, n: usize) -> String {
        (0..3).map(|k| self.url((n + k) % 3)).collect::<Vec<_>>().join(",")
    }

    /// Stops node `n` (SIGKILL).
    pub fn kill(&mut self, n: usize) {
        let _ = self.nodes[n].kill();
        let _ = self.nodes[n].wait();
    }

    /// Every node's log.
    pub fn logs(&self) -> String {
        (1..=3).map(|n| std::fs::read_to_string(self.dir.join(format!("node{n}.log"))).unwrap_or_default()).collect()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
