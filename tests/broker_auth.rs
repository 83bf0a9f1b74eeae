//! Nobody gets into the embedded broker who does not belong: a password
//! file written by Mosquitto's own `mosquitto_passwd` turns logins on;
//! without one the broker will not listen beyond loopback. Checked with
//! real MQTT connections, a capture client and the join page in Chromium
//! (which asks for the login, says when it is wrong, and joins with it).

mod common;

use common::browser::{solid_y4m, tone_wav, Chromium};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tessera::media::pattern::{palette, tone_for};
use tessera::signaling::link::Link;

const LIMIT: Duration = Duration::from_secs(60);

fn passwd(file: &Path, user: &str, password: &str) {
    let mut cmd = Command::new("mosquitto_passwd");
    if !file.exists() {
        cmd.arg("-c");
    }
    let ok = cmd.arg("-b").arg(file).args([user, password]).status().expect("mosquitto_passwd (package mosquitto)");
    assert!(ok.success());
}

/// Whether `id` with this login gets connected within 3 s.
async fn can_connect(url: &str, id: &str) -> bool {
    let (link, _events) = Link::connect(link_options(url, id, &[])).unwrap();
    let ok = link.ready(Duration::from_secs(3)).await;
    link.close().await;
    ok
}

fn with_login(url: &str, user: &str, password: &str) -> String {
    url.replacen("mqtt://", &format!("mqtt://{user}:{password}@"), 1)
}

#[test]
fn the_embedded_broker_will_not_listen_beyond_loopback_without_logins() {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--broker-bind", "0.0.0.0", "--http-addr", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no login at all") && err.contains("--broker-passwords"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_checked_and_the_page_asks_for_one() {
    let dir = std::env::temp_dir().join(format!("tessera-auth-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("passwords");
    passwd(&pw, "alice", "secret");
    passwd(&pw, "bob", "hunter 2");
    // A file the broker cannot use stops the server with the line at fault.
    let bad = dir.join("bad");
    std::fs::write(&bad, "carol:plain\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--http-addr", "off", "--broker-port", &free_port().to_string()])
        .arg("--broker-passwords")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: the password is not hashed"));

    // The server signs itself in (Server::start waits for "signaling ready").
    let server = Server::start(&["--broker-passwords", pw.to_str().unwrap()]);
    let url = server.url.clone();
    assert!(!can_connect(&url, "alice").await, "no login: refused");
    assert!(!can_connect(&with_login(&url, "alice", "wrong"), "alice").await, "wrong password: refused");
    assert!(!can_connect(&with_login(&url, "mallory", "secret"), "mallory").await, "unknown user: refused");
    assert!(!can_connect(&with_login(&url, "alice", "secret"), "bob").await, "alice as bob: refused");
    assert!(can_connect(&with_login(&url, "alice", "secret"), "alice").await, "alice as herself: let in");

    // A capture client joins with its login.
    let mut o = server.client("locked", "alice", 0);
    o.url = with_login(&url, "alice", "secret");
    let alice = join(o).await;

    // The page: the config says a login is wanted, so the form asks for it.
    let cfg = common::http::get(server.http_port, "/config.json").await.body;
    assert!(cfg.contains("\"login\":true"), "{cfg}");
    let (y4m, wav) = (dir.join("bob.y4m"), dir.join("bob.wav"));
    solid_y4m(&y4m, palette(4), 30);
    tone_wav(&wav, tone_for(4), 2.0);
    let mut browser = Chromium::start();
    browser.open("bob", &format!("http://127.0.0.1:{}/room/locked", server.http_port), &y4m, &wav).await;
    assert_eq!(browser.eval("bob", "document.getElementById('credentials').hidden").await, false);
    browser.fill("bob", "#user", "bob").await;
    browser.fill("bob", "#password", "wrong").await;
    browser.click("bob", "#go").await;
    let d = Deadline::new(LIMIT, "the page says the login is wrong");
    loop {
        let text = browser.eval("bob", "document.getElementById('join-error').textContent").await;
        if text.as_str().is_some_and(|t| t.contains("refused this user name or password")) {
            break;
        }
        d.wait(format!("join error {text}")).await;
    }
    browser.fill("bob", "#password", "hunter 2").await;
    browser.click("bob", "#go").await;
    let colours = vec![("alice".to_string(), palette(0)), ("bob".to_string(), palette(4))];
    let grid = layout(&server, "grid");
    eventually(LIMIT, "bob's page joins with its login", || {
        let s = alice.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or(format!("{} participants", s.participants.len()))?;
        check_tiles(&alice, &s, &grid, &colours)
    })
    .await;
    browser.quit().await;
    alice.leave().await;
    std::fs::remove_dir_all(&dir).ok();
}
