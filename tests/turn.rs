//! TURN: Debian's coturn, started on loopback by the test, relays a
//! capture client that may use relayed candidates only (what
//! `iceTransportPolicy: "relay"` does in a browser, and what a phone
//! behind a strict NAT ends up with). Its media reaches the room and the
//! composite reaches it, through the relay; coturn's log shows the
//! allocation and the bytes it carried.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessera::config::IceServer;
use tessera::media::pattern::palette;

const LIMIT: Duration = Duration::from_secs(60);

struct Coturn {
    child: Child,
    log: std::path::PathBuf,
    port: u16,
}

impl Coturn {
    /// The README's TURN example, on a free port (long-term credentials).
    fn start() -> Coturn {
        Self::start_with(&["--lt-cred-mech", "--user=tessera:turn-secret"])
    }

    /// coturn with `auth` (its credential flags).
    fn start_with(auth: &[&str]) -> Coturn {
        let port = free_port();
        let relay = 49_152 + (std::process::id() % 100) as u16 * 100;
        let log = std::env::temp_dir().join(format!("tessera-coturn-{port}.log"));
        let args = [
            "-n".to_string(),
            "--verbose".into(),
            "--no-cli".into(),
            "--no-tls".into(),
            "--no-dtls".into(),
            "--listening-ip=127.0.0.1".into(),
            "--relay-ip=127.0.0.1".into(),
            format!("--listening-port={port}"),
            format!("--min-port={relay}"),
            format!("--max-port={}", relay + 99),
            "--realm=tessera".into(),
            "--allow-loopback-peers".into(),
            "--log-file=stdout".into(),
            "--simple-log".into(),
            format!("--pidfile={}", std::env::temp_dir().join(format!("tessera-coturn-{port}.pid")).display()),
        ];
        let args: Vec<String> = args.into_iter().chain(auth.iter().map(|a| a.to_string())).collect();
        eprintln!("turnserver {}", args.join(" "));
        let child = Command::new("turnserver")
            .args(&args)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (package coturn; scripts/install-deps installs it)");
        let c = Coturn { child, log, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        // It listens on TCP beside UDP: once TCP answers, both are up.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "coturn did not start:\n{}", c.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_client_joins_through_coturn() {
    let turn = Coturn::start();
    let server = Server::start(&[]);
    let desk = join(server.client("turn", "desk", 0)).await;
    let mut o = server.client("turn", "far", 1);
    o.peer_options.ice_servers = vec![IceServer {
        urls: vec![format!("turn:127.0.0.1:{}?transport=udp", turn.port)],
        username: "tessera".into(),
        credential: "turn-secret".into(),
    }];
    o.peer_options.relay_only = true;
    let far = join(o).await;

    let grid = layout(&server, "grid");
    let colours = vec![("desk".to_string(), palette(0)), ("far".to_string(), palette(1))];
    for (who, c) in [("desk", &desk), ("far", &far)] {
        eventually(LIMIT, &format!("{who} sees both tiles"), || {
            let s = c.room_state().ok_or("no state")?;
            (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
            check_tiles(c, &s, &grid, &colours)
        })
        .await;
    }
    // coturn made an allocation for the user, and relays its traffic.
    let log = turn.log_text();
    assert!(log.contains("user <tessera>: incoming packet ALLOCATE processed, success"), "no allocation:\n{log}");
    assert!(log.contains("CHANNEL_BIND processed, success"), "no channel to the server:\n{log}");
    far.leave().await;
    desk.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_relay_only_ice_joins_with_time_limited_credentials() {
    use common::browser::{solid_y4m, tone_wav, Chromium};
    let secret = "page-turn-secret";
    let turn = Coturn::start_with(&["--use-auth-secret", &format!("--static-auth-secret={secret}")]);
    let turn_url = format!("turn:127.0.0.1:{}?transport=udp", turn.port);
    let server = Server::start(&["--page-turn-url", &turn_url, "--page-turn-secret", secret]);
    // The page's settings carry a TURN entry with fresh credentials, never the secret.
    let cfg = common::http::get(server.http_port, "/config.json").await.body;
    assert!(cfg.contains(&turn_url) && cfg.contains(":tessera") && !cfg.contains(secret), "{cfg}");
    let desk = join(server.client("pt", "desk", 0)).await;
    let dir = std::env::temp_dir().join(format!("tessera-turn-page-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (y4m, wav) = (dir.join("p.y4m"), dir.join("p.wav"));
    solid_y4m(&y4m, palette(1), 30);
    tone_wav(&wav, tessera::media::pattern::tone_for(1), 2.0);
    let mut browser = Chromium::start();
    let url = format!("http://127.0.0.1:{}/room/pt?autojoin=1&relay=1&peer=relayed", server.http_port);
    browser.open("p", &url, &y4m, &wav).await;
    let grid = layout(&server, "grid");
    let colours = vec![("desk".to_string(), palette(0)), ("relayed".to_string(), palette(1))];
    eventually(LIMIT, "the relay-only page is in desk's composite", || {
        let s = desk.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&desk, &s, &grid, &colours)
    })
    .await;
    // Chromium used only relayed candidates, and coturn took the page's credentials.
    let pair = browser
        .eval(
            "p",
            "tessera.pc.getStats().then(r => { let t = null; r.forEach(s => { if (s.type === 'local-candidate' && s.candidateType) t = t || s.candidateType; }); return t; })",
        )
        .await;
    assert_eq!(pair, "relay", "the page's candidates");
    let log = turn.log_text();
    assert!(
        log.contains(":tessera>: incoming packet ALLOCATE processed, success"),
        "no allocation for the page:\n{log}"
    );
    browser.quit().await;
    desk.leave().await;
    std::fs::remove_dir_all(&dir).ok();
}
