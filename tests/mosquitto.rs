//! tessera behind Mosquitto with the shipped configuration
//! (`deploy/mosquitto/`): authentication, the per-client ACL, and a broker
//! restart in the middle of a call.

mod common;

use common::mosquitto::Mosquitto;
use common::*;
use std::time::Duration;
use tessera::client::Notice;
use tessera::media::pattern::palette;
use tessera::signaling::link::{Link, LinkEvent};

const LIMIT: Duration = Duration::from_secs(30);

fn as_user(server: &Server, mq: &Mosquitto, room: &str, peer: &str, index: usize) -> tessera::client::ClientOptions {
    let mut o = server.client(room, peer, index);
    o.url = mq.url(peer);
    o
}

async fn raw(mq: &Mosquitto, user: &str, filters: &[&str]) -> (Link, tokio::sync::mpsc::Receiver<LinkEvent>) {
    raw_link(&mq.url(user), user, filters).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_runs_through_mosquitto_and_the_acl_confines_each_client() {
    let mq = Mosquitto::start();
    let server = Server::start_external(&mq.url("tessera-server"), &["--server-id", "srv-mq"]);
    let alice = join(as_user(&server, &mq, "m1", "alice", 0)).await;
    let bob = join(as_user(&server, &mq, "m1", "bob", 1)).await;
    let grid = layout(&server, "grid");
    let colors = vec![("alice".to_string(), palette(0)), ("bob".to_string(), palette(1))];
    eventually(LIMIT, "alice and bob see each other", || {
        let s = alice.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&alice, &s, &grid, &colors)?;
        check_tiles(&bob, &s, &grid, &colors)
    })
    .await;

    // mallory may listen to her own outbox and to alice's; only her own delivers.
    let (mallory, mut events) = raw(&mq, "mallory", &["tessera/m1/out/mallory", "tessera/m1/out/alice"]).await;
    // She writes into alice's inbox: the broker drops it, alice stays.
    mallory.publish("tessera/m1/in/alice", br#"{"type":"leave"}"#.to_vec(), false).await.unwrap();
    // The server refuses a layout for alice: the refusal goes to alice's outbox.
    mallory
        .publish("tessera/m1/control", br#"{"type":"layout","layout":"nope","from":"alice"}"#.to_vec(), false)
        .await
        .unwrap();
    // Then something of her own that gets an answer, which comes after all of the above.
    mallory.publish("tessera/m1/in/mallory", b"not json".to_vec(), false).await.unwrap();
    loop {
        match tokio::time::timeout(LIMIT, events.recv()).await {
            Ok(Some(LinkEvent::Message { topic, payload })) => {
                assert_eq!(
                    topic,
                    "tessera/m1/out/mallory",
                    "mallory read someone else's topic: {}",
                    String::from_utf8_lossy(&payload)
                );
                assert!(String::from_utf8_lossy(&payload).contains("bad-json"));
                break;
            }
            Ok(Some(_)) => {}
            _ => panic!("mallory got no answer"),
        }
    }
    // The control message never reached the server (mallory may not write
    // there) and the leave never reached it either: alice is still in the room.
    assert!(!alice.notices().iter().any(|n| matches!(n, Notice::Error { code, .. } if code == "unknown-layout")));
    let s = alice.room_state().unwrap();
    assert!(s.participants.iter().any(|p| p.peer == "alice"), "mallory made alice leave");
    mallory.close().await;

    // A client may not pretend to be another: mallory's credentials with
    // alice's client id still act as mallory (use_username_as_clientid).
    let (fake, mut fake_events) =
        raw_link(&mq.url("mallory"), "alice", &["tessera/m1/out/alice", "tessera/m1/out/mallory"]).await;
    fake.publish("tessera/m1/in/mallory", b"[]".to_vec(), false).await.unwrap();
    loop {
        match tokio::time::timeout(LIMIT, fake_events.recv()).await {
            Ok(Some(LinkEvent::Message { topic, .. })) => {
                assert_eq!(topic, "tessera/m1/out/mallory");
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(alice.room_state().unwrap().participants.iter().any(|p| p.peer == "alice"));
    fake.close().await;
    for c in [alice, bob] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_survives_a_broker_restart_and_joins_work_after() {
    let mut mq = Mosquitto::start();
    let server = Server::start_external(&mq.url("tessera-server"), &["--server-id", "srv-restart"]);
    let alice = join(as_user(&server, &mq, "m2", "alice", 0)).await;
    let bob = join(as_user(&server, &mq, "m2", "bob", 1)).await;
    eventually(LIMIT, "two in the room", || {
        let s = alice.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet".to_string())
    })
    .await;

    mq.stop();
    // Media does not go through the broker: it keeps flowing while it is down.
    let before = alice.stats().frames;
    eventually(LIMIT, "frames while the broker is down", || {
        (alice.stats().frames > before + 30).then_some(()).ok_or(format!("stalled\n{}", server.log_text()))
    })
    .await;
    mq.run();

    // The server reconnects, resubscribes and republishes the room's
    // retained state (Mosquitto runs without persistence: it was lost).
    let (watch, mut events) = raw(&mq, "carol", &["tessera/m2/state"]).await;
    let state = loop {
        match tokio::time::timeout(LIMIT, events.recv()).await {
            Ok(Some(LinkEvent::Message { payload, .. })) if !payload.is_empty() => {
                break serde_json::from_slice::<tessera::signaling::protocol::RoomState>(&payload).unwrap();
            }
            Ok(Some(_)) => {}
            other => panic!("no state after the restart: {other:?}\n{}", server.log_text()),
        }
    };
    assert_eq!(state.participants.len(), 2);
    watch.close().await;

    // New joins work.
    let carol = join(as_user(&server, &mq, "m2", "carol", 2)).await;
    eventually(LIMIT, "carol joined", || {
        let s = alice.room_state().ok_or("no state")?;
        (s.participants.len() == 3).then_some(()).ok_or(format!("{} participants", s.participants.len()))
    })
    .await;
    let frames = carol.stats().frames;
    eventually(LIMIT, "carol receives", || {
        (carol.stats().frames > frames + 10).then_some(()).ok_or("no frames".to_string())
    })
    .await;
    for c in [alice, bob, carol] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_mosquitto_with_a_given_ca_or_the_system_roots() {
    let mq = Mosquitto::start_tls();
    let ca = mq.tls.as_ref().unwrap().1.to_string_lossy().into_owned();
    // The server trusts the broker through the system roots (here the
    // test CA, through SSL_CERT_FILE); alice through --mqtt-ca; bob uses
    // the plain listener of the same broker.
    let server = Server::start_external_env(
        &mq.tls_url("tessera-server"),
        &["--server-id", "srv-tls"],
        &[("SSL_CERT_FILE", &ca)],
    );
    let mut a = as_user(&server, &mq, "t1", "alice", 0);
    a.url = mq.tls_url("alice");
    a.ca_file = Some(ca.clone().into());
    let alice = join(a).await;
    let bob = join(as_user(&server, &mq, "t1", "bob", 1)).await;
    let grid = layout(&server, "grid");
    let colors = vec![("alice".to_string(), palette(0)), ("bob".to_string(), palette(1))];
    eventually(LIMIT, "alice (TLS) and bob see each other", || {
        let s = alice.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&alice, &s, &grid, &colors)?;
        check_tiles(&bob, &s, &grid, &colors)
    })
    .await;
    // Without the CA, the broker's certificate is refused, with a reason.
    let (_carol, mut events) = Link::connect(link_options(&mq.tls_url("carol"), "carol", &[])).unwrap();
    let refused = tokio::time::timeout(LIMIT, async {
        loop {
            match events.recv().await {
                Some(LinkEvent::Down(reason)) => return reason,
                Some(LinkEvent::Ready) => panic!("connected to a broker it should not trust"),
                Some(_) => {}
                None => panic!("link ended"),
            }
        }
    })
    .await
    .expect("no refusal");
    assert!(refused.to_lowercase().contains("certificate"), "refused for: {refused}");
    // A CA file that holds no certificate stops the server with the file's name.
    let bad = std::env::temp_dir().join(format!("tessera-bad-ca-{}.pem", free_port()));
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--mqtt-url", &mq.tls_url("tessera-server"), "--mqtt-ca"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&*bad.to_string_lossy()), "{err}");
    std::fs::remove_file(&bad).ok();
    for c in [alice, bob] {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_page_logs_in_to_mosquitto_through_its_websocket_listener() {
    use common::browser::{solid_y4m, tone_wav, Chromium};
    let mq = Mosquitto::start();
    let page_url = format!("ws://127.0.0.1:{}/mqtt", mq.ws_port);
    let server =
        Server::start_external(&mq.url("tessera-server"), &["--server-id", "srv-page", "--page-mqtt-url", &page_url]);
    let bob = join(as_user(&server, &mq, "mp", "bob", 1)).await;
    let dir = std::env::temp_dir().join(format!("tessera-mq-page-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (y4m, wav) = (dir.join("a.y4m"), dir.join("a.wav"));
    solid_y4m(&y4m, palette(0), 30);
    tone_wav(&wav, tessera::media::pattern::tone_for(0), 2.0);
    let mut browser = Chromium::start();
    // No login yet: Mosquitto refuses the connection and the page asks for one.
    browser.open("a", &format!("http://127.0.0.1:{}/room/mp?autojoin=1", server.http_port), &y4m, &wav).await;
    let d = Deadline::new(LIMIT, "the page asks for a login");
    while browser.eval("a", "document.getElementById('credentials').hidden").await != false {
        d.wait(format!("errors {}", browser.eval("a", "tessera.errors").await)).await;
    }
    browser.fill("a", "#user", "alice").await;
    browser.fill("a", "#password", "a-pw").await;
    browser.click("a", "#go").await;
    let grid = layout(&server, "grid");
    let colours = vec![("alice".to_string(), palette(0)), ("bob".to_string(), palette(1))];
    eventually(LIMIT, "alice's page is in bob's composite", || {
        let s = bob.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&bob, &s, &grid, &colours)
    })
    .await;
    // And the page shows bob, through the broker's websocket listener.
    let d = Deadline::new(LIMIT, "alice's page shows bob");
    loop {
        let c = palette(1);
        let share = browser.number("a", &format!("tessera.colourShare([{},{},{}])", c.r, c.g, c.b)).await;
        if share > 0.1 {
            break;
        }
        d.wait(format!("bob's colour share {share:.3}")).await;
    }
    browser.quit().await;
    bob.leave().await;
    std::fs::remove_dir_all(&dir).ok();
}
