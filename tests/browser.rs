//! The join page in a browser we did not write: two Debian Chromium
//! instances (each with its own fake camera file and fake microphone tone)
//! open `tessera serve`'s own page, served by its HTTP listener, and join
//! a room with a capture client. MQTT.js carries the signaling over the
//! embedded broker's websocket listener. Checked as a person would notice:
//! each page shows the others' pictures and plays their sound (not its
//! own), the mute button silences a page in the others' mix, the layout
//! picker changes the room's layout, and Leave takes a page out of the
//! others' composites at once.

mod common;

use common::browser::{solid_y4m, solid_y4m_sized, tone_wav, Chromium};
use common::*;
use std::time::{Duration, Instant};
use tessera::media::color::Rgb;
use tessera::media::pattern::{palette, tone_for};

const LIMIT: Duration = Duration::from_secs(60);

/// A page's tone (-12 dBFS in its WAV) as the desk client hears it after
/// Chromium's audio processing and the mix: -25 to -35 dB; a muted or
/// missing tone sits far below.
const HEARD: f64 = -40.0;

fn js_rgb(c: Rgb) -> String {
    format!("[{},{},{}]", c.r, c.g, c.b)
}

/// Share of page `id`'s composite near each colour.
async fn shares(b: &mut Chromium, id: &str, colours: &[Rgb]) -> Vec<f64> {
    let mut out = vec![];
    for c in colours {
        out.push(b.number(id, &format!("tessera.colourShare({})", js_rgb(*c))).await);
    }
    out
}

/// Level (dB) of each tone in what page `id` hears.
async fn levels(b: &mut Chromium, id: &str, tones: &[f64]) -> Vec<f64> {
    let mut out = vec![];
    for t in tones {
        out.push(b.number(id, &format!("tessera.toneLevel({t})")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_and_a_client_share_a_call() {
    let dir = std::env::temp_dir().join(format!("tessera-page-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let recordings = dir.join("recordings");
    let server = Server::start(&["--recordings", recordings.to_str().unwrap()]);
    let desk = join(server.client("web", "desk", 0)).await;
    let grid = layout(&server, "grid");
    let (red, blue, yellow) = (palette(0), palette(2), palette(3));
    let (desk_hz, a_hz, b_hz) = (tone_for(0), tone_for(2), tone_for(3));
    let mut browser = Chromium::start();
    for (id, colour, hz) in [("a", blue, a_hz), ("b", yellow, b_hz)] {
        let (y4m, wav) = (dir.join(format!("{id}.y4m")), dir.join(format!("{id}.wav")));
        if id == "b" {
            // Chromium sends three simulcast layers only from 960x540 up.
            solid_y4m_sized(&y4m, colour, 30, (960, 540));
        } else {
            solid_y4m(&y4m, colour, 30);
        }
        tone_wav(&wav, hz, 4.0);
        // Page b offers simulcast (three layers); the server picks one.
        let simulcast = if id == "b" { "&simulcast=1" } else { "" };
        let url = format!(
            "http://127.0.0.1:{}/room/web?autojoin=1&audio=raw&peer=page-{id}&name=Page%20{id}{simulcast}",
            server.http_port
        );
        // Page a is a phone-sized window: it asks for a smaller view.
        let window = if id == "a" { (420, 560) } else { (960, 600) };
        browser.open_sized(id, &url, &y4m, &wav, window).await;
    }

    // The server decodes both pages' cameras: desk sees them in their tiles.
    let colours = vec![("desk".to_string(), red), ("page-a".to_string(), blue), ("page-b".to_string(), yellow)];
    eventually(LIMIT, "desk sees both pages' cameras", || {
        let s = desk.room_state().ok_or("no state")?;
        (s.participants.len() == 3).then_some(()).ok_or(format!("{} participants", s.participants.len()))?;
        check_tiles(&desk, &s, &grid, &colours)
    })
    .await;

    // Each page shows the two others (a 2x2 grid: each tile is a quarter).
    for (id, others) in [("a", [red, yellow]), ("b", [red, blue])] {
        let d = Deadline::new(LIMIT, &format!("page {id} shows the others"));
        loop {
            let s = shares(&mut browser, id, &others).await;
            if s.iter().all(|&x| x > 0.1) {
                break;
            }
            d.wait(format!("shares of the others' colours {s:?}; logs {:?}", browser.logs(id).await)).await;
        }
        let members = browser.eval(id, "tessera.state && tessera.state.participants.length").await;
        assert_eq!(members, 3, "page {id} lists the members from the room state");
    }
    // Page a's small window asked for the smallest standard view that
    // covers its picture (420 px wide: 480x270) and gets that, from an
    // encoder of its own; page b's wide one asked for 960x540, which the
    // server holds to the 640x360 canvas (shared with the others).
    assert_eq!(browser.eval("a", "tessera.view").await, serde_json::json!({"width": 480, "height": 270}));
    assert_eq!(browser.eval("b", "tessera.view").await, serde_json::json!({"width": 960, "height": 540}));
    let d = Deadline::new(LIMIT, "page a receives its view size");
    loop {
        let size = browser
            .eval(
                "a",
                "[document.getElementById('composite').videoWidth, document.getElementById('composite').videoHeight]",
            )
            .await;
        if size == serde_json::json!([480, 270]) {
            break;
        }
        d.wait(format!("page a's picture is {size}")).await;
    }
    let b_size = browser.eval("b", "document.getElementById('composite').videoWidth").await;
    assert_eq!(b_size, 640, "page b gets the canvas");
    // Page a applied the server's send hint to its sender; page b's three
    // layers arrived and the server decodes one of them.
    let d = Deadline::new(LIMIT, "page a applies the send hint");
    loop {
        let hint = browser.eval("a", "tessera.hint").await;
        if hint["width"].as_u64().is_some_and(|w| w > 0) && hint["scale"].as_f64().is_some_and(|s| s >= 1.0) {
            break;
        }
        d.wait(format!("hint {hint}")).await;
    }
    let layers = browser
        .eval(
            "b",
            "tessera.pc.getSenders().find(s => s.track && s.track.kind === 'video').getParameters().encodings.length",
        )
        .await;
    assert_eq!(layers, 3, "page b sends three simulcast layers");
    // Its tile in the 2x2 grid is 320x180: of 240x135, 480x270 and 960x540
    // the server decodes the middle layer, the smallest that covers it.
    eventually(LIMIT, "the server decodes page b's layer that covers its tile", || {
        let log = server.log_text();
        let chosen: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("peer=page-b") && l.contains("decoding layer"))
            .filter_map(|l| l.split("decoding layer ").nth(1))
            .collect();
        chosen.last().is_some_and(|c| c.starts_with("rid=Some(\"h\")")).then_some(()).ok_or(format!("{chosen:?}"))
    })
    .await;

    // Everyone hears the two others and not themselves.
    eventually(LIMIT, "desk hears both pages", || {
        let l = tone_levels(&desk, 0.5, &[a_hz, b_hz]);
        l.iter().all(|&x| x > HEARD).then_some(()).ok_or(format!("page tones {l:?} dB"))
    })
    .await;
    for (id, own, others) in [("a", a_hz, [desk_hz, b_hz]), ("b", b_hz, [desk_hz, a_hz])] {
        let d = Deadline::new(LIMIT, &format!("page {id} plays the mix-minus"));
        loop {
            let heard = levels(&mut browser, id, &others).await;
            let mine = levels(&mut browser, id, &[own]).await[0];
            let quietest = heard.iter().cloned().fold(f64::INFINITY, f64::min);
            // WebAudio's analyser: a tone in the mix sits tens of dB above
            // the floor around a tone that is missing.
            if quietest > -60.0 && mine < quietest - 25.0 {
                eprintln!("page {id} hears the others at {heard:?} dB, itself at {mine:.1} dB");
                break;
            }
            d.wait(format!("others {heard:?} dB, own {mine:.1} dB")).await;
        }
    }

    // Mute on page a: its tone leaves desk's mix, b's stays.
    browser.click("a", "#mic").await;
    eventually(LIMIT, "page a's mute silences it in desk's mix", || {
        let l = tone_levels(&desk, 0.5, &[a_hz, b_hz]);
        (l[0] < HEARD - 20.0 && l[1] > HEARD).then_some(()).ok_or(format!("a {:.1} dB, b {:.1} dB", l[0], l[1]))
    })
    .await;
    browser.click("a", "#mic").await;
    eventually(LIMIT, "unmuted, page a is heard again", || {
        let l = tone_levels(&desk, 0.5, &[a_hz]);
        (l[0] > HEARD).then_some(()).ok_or(format!("a {:.1} dB", l[0]))
    })
    .await;

    // The layout picker changes the room's layout for everyone.
    browser.select("b", "#layout", "speaker").await;
    eventually(LIMIT, "the room takes page b's layout", || {
        let s = desk.room_state().ok_or("no state")?;
        (s.layout == "speaker").then_some(()).ok_or(format!("layout {}", s.layout))
    })
    .await;
    let shown = browser.eval("a", "document.getElementById('layout').value").await;
    assert_eq!(shown, "speaker", "page a's picker follows the room state");

    // Record from the page: the room state says so on every page, and a file grows.
    browser.click("a", "#record").await;
    eventually(LIMIT, "page a starts a recording", || {
        let s = desk.room_state().ok_or("no state")?;
        s.recording.then_some(()).ok_or("not recording".to_string())
    })
    .await;
    let d = Deadline::new(LIMIT, "page b shows the recording");
    while browser.eval("b", "document.getElementById('rec').hidden").await != false {
        d.wait("indicator hidden").await;
    }
    let shot = dir.join("page-in-call.png");
    browser.screenshot("b", &shot).await;
    if let Ok(to) = std::env::var("TESSERA_PAGE_SCREENSHOT") {
        std::fs::copy(&shot, to).unwrap();
    }
    browser.click("b", "#record").await;
    eventually(LIMIT, "page b stops it", || {
        let s = desk.room_state().ok_or("no state")?;
        (!s.recording).then_some(()).ok_or("still recording".to_string())
    })
    .await;
    let files = std::fs::read_dir(&recordings).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 1, "one recording in {}", recordings.display());

    // Leave on page b: gone from the state and from desk's picture at once.
    browser.select("b", "#layout", "grid").await;
    eventually(LIMIT, "back to the grid", || {
        let s = desk.room_state().ok_or("no state")?;
        (s.layout == "grid").then_some(()).ok_or(format!("layout {}", s.layout))?;
        check_tiles(&desk, &s, &grid, &colours)
    })
    .await;
    // Told to rejoin (as a cluster's new owner says when a node dies), page
    // a offers again on a new connection and is back in the composite.
    let before = Instant::now();
    desk.link()
        .publish("tessera/web/out/page-a", br#"{"type":"rejoin","reason":"moved","epoch":5}"#.to_vec(), false)
        .await
        .unwrap();
    let d = Deadline::new(LIMIT, "page a rejoins");
    loop {
        let rejoins = browser.eval("a", "tessera.rejoins").await;
        let state = browser.eval("a", "tessera.pc.connectionState").await;
        let share = shares(&mut browser, "a", &[red]).await[0];
        let back = desk.latest_frame().is_some_and(|f| f.at > before);
        let s = desk.room_state();
        let desk_sees = s.as_ref().is_some_and(|s| check_tiles(&desk, s, &grid, &colours).is_ok());
        if rejoins == 1 && state == "connected" && share > 0.1 && back && desk_sees {
            break;
        }
        d.wait(format!("rejoins {rejoins}, {state}, desk's share on a {share:.2}, desk sees a: {desk_sees}")).await;
    }
    eprintln!("page a rejoined in {} ms", before.elapsed().as_millis());

    browser.click("b", "#leave").await;
    let at = Instant::now();
    let two = vec![("desk".to_string(), red), ("page-a".to_string(), blue)];
    eventually(Duration::from_secs(2), "page b out of the state and of desk's composite", || {
        let s = desk.room_state().ok_or("no state")?;
        let peers: Vec<&str> = s.participants.iter().map(|p| p.peer.as_str()).collect();
        (peers.len() == 2 && !peers.contains(&"page-b")).then_some(()).ok_or(format!("in the room: {peers:?}"))?;
        check_tiles(&desk, &s, &grid, &two)
    })
    .await;
    eprintln!("page b's Leave honoured in {} ms", at.elapsed().as_millis());
    assert_eq!(browser.eval("b", "tessera.left").await, true);
    let errors = browser.eval("a", "tessera.errors").await;
    assert!(errors.as_array().is_some_and(|e| e.is_empty()), "page a showed errors: {errors}");

    browser.quit().await;
    desk.leave().await;
    std::fs::remove_dir_all(&dir).ok();
}
