//! Mosquitto for the tests: the shipped configuration (`deploy/mosquitto/`)
//! moved to free ports and a temporary folder, or a plain anonymous one.

use super::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Users of the shipped configuration in tests, with their passwords.
pub const USERS: &[(&str, &str)] =
    &[("tessera-server", "server-secret"), ("alice", "a-pw"), ("bob", "b-pw"), ("carol", "c-pw"), ("mallory", "m-pw")];

/// Mosquitto running `deploy/mosquitto/mosquitto.conf`, moved to free
/// ports and a temporary folder.
pub struct Mosquitto {
    child: Option<Child>,
    conf: PathBuf,
    /// Its MQTT port.
    pub port: u16,
    /// Its MQTT-over-websocket port (for pages).
    pub ws_port: u16,
    /// Its MQTT-over-TLS port and the CA (PEM file) that signed its
    /// certificate, when started with [`Mosquitto::start_tls`].
    pub tls: Option<(u16, PathBuf)>,
    dir: PathBuf,
}

impl Mosquitto {
    /// Mosquitto with the shipped configuration and [`USERS`].
    pub fn start() -> Mosquitto {
        Self::start_with(false)
    }

    /// [`Mosquitto::start`] plus a TLS listener (the lines
    /// `deploy/mosquitto/README.md` gives) with a certificate for
    /// 127.0.0.1 signed by a CA made for the test.
    pub fn start_tls() -> Mosquitto {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Mosquitto {
        let dir = std::env::temp_dir().join(format!("tessera-mosquitto-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/mosquitto");
        std::fs::copy(shipped.join("acl"), dir.join("acl")).unwrap();
        let passwd = dir.join("passwd");
        for (i, (user, pass)) in USERS.iter().enumerate() {
            let mut cmd = Command::new("mosquitto_passwd");
            if i == 0 {
                cmd.arg("-c");
            }
            let st = cmd
                .arg("-b")
                .arg(&passwd)
                .args([user, pass])
                .status()
                .expect("mosquitto_passwd (scripts/install-deps)");
            assert!(st.success());
        }
        let (port, ws_port) = (free_port(), free_port());
        let conf = std::fs::read_to_string(shipped.join("mosquitto.conf"))
            .unwrap()
            .replace("/etc/mosquitto/tessera/", &format!("{}/", dir.display()))
            .replace("listener 1883 127.0.0.1", &format!("listener {port} 127.0.0.1"))
            .replace("listener 8083 lo", &format!("listener {ws_port} lo"));
        assert!(conf.contains(&format!("listener {port}")), "the shipped config changed shape");
        let mut conf = conf;
        let tls = tls.then(|| {
            let tls_port = free_port();
            let ca = make_certificates(&dir);
            conf.push_str(&format!(
                "\nlistener {tls_port} 127.0.0.1\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nuse_username_as_clientid true\n",
                d = dir.display()
            ));
            (tls_port, ca)
        });
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // Started as root, Mosquitto drops to its own user: let it read the files.
        if is_root() {
            let _ = Command::new("chown").arg("-R").arg("mosquitto:mosquitto").arg(&dir).status();
            let _ = Command::new("chmod").arg("755").arg(&dir).status();
        }
        let mut m = Mosquitto { child: None, conf: conf_path, port, ws_port, tls, dir };
        m.run();
        m
    }

    /// Starts (or restarts) the process.
    pub fn run(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log")).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    /// Stops the process (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    /// The broker URL for `user` of [`USERS`].
    pub fn url(&self, user: &str) -> String {
        let pass = USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p).unwrap();
        format!("mqtt://{user}:{pass}@127.0.0.1:{}", self.port)
    }

    /// The `mqtts://` URL for `user` of [`USERS`] (after [`Mosquitto::start_tls`]).
    pub fn tls_url(&self, user: &str) -> String {
        let pass = USERS.iter().find(|(u, _)| *u == user).map(|(_, p)| *p).unwrap();
        format!("mqtts://{user}:{pass}@127.0.0.1:{}", self.tls.as_ref().expect("start_tls").0)
    }
}

/// Writes a CA (`ca.pem`) and a server certificate for 127.0.0.1 and
/// localhost signed by it (`server.pem`, `server.key`) into `dir`;
/// returns the CA's path.
fn make_certificates(dir: &std::path::Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "tessera test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    ca_path
}

impl Mosquitto {
    /// A plain Mosquitto: anonymous clients, no ACL (for load and churn).
    pub fn anonymous() -> Mosquitto {
        let dir = std::env::temp_dir().join(format!("tessera-mosquitto-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\n"
            ),
        )
        .unwrap();
        let mut m = Mosquitto { child: None, conf, port, ws_port: 0, tls: None, dir };
        m.run();
        m
    }

    /// The broker URL for anonymous clients.
    pub fn anonymous_url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}
