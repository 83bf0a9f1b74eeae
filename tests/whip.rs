//! WHIP ingest and WHEP playback on the HTTP listener: Chromium publishes
//! its camera with a plain `fetch` POST of its offer to `/whip/ROOM` and
//! plays the room's composite from `/whep/ROOM`, beside a capture client;
//! `DELETE` on the `Location` leaves at once. Every bad request gets a
//! clear HTTP refusal and the server goes on serving.

mod common;

use common::browser::{solid_y4m, tone_wav, Chromium};
use common::http::send;
use common::*;
use std::time::{Duration, Instant};
use tessera::media::pattern::{palette, tone_for};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "whip-test-token";

/// JavaScript run in the page: one WHIP (`send`) or WHEP connection,
/// candidates gathered into the offer (no trickle), kept as window[name].
fn connect_js(kind: &str, room: &str, name: &str) -> String {
    let send = kind == "whip";
    format!(
        r#"(async () => {{
  const pc = new RTCPeerConnection();
  if ({send}) {{
    const media = await navigator.mediaDevices.getUserMedia({{ video: true, audio: true }});
    for (const t of media.getTracks()) pc.addTransceiver(t, {{ direction: "sendonly" }});
  }} else {{
    pc.addTransceiver("audio", {{ direction: "recvonly" }});
    pc.addTransceiver("video", {{ direction: "recvonly" }});
    const video = document.createElement("video");
    video.muted = true; video.autoplay = true; video.playsInline = true;
    document.body.append(video);
    pc.ontrack = (e) => {{ video.srcObject = e.streams[0] || new MediaStream([e.track]); video.play().catch(() => {{}}); }};
    window.{name}Video = video;
  }}
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {{
    if (pc.iceGatheringState === "complete") return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
    setTimeout(done, 3000);
  }});
  const r = await fetch("/{kind}/{room}", {{
    method: "POST",
    headers: {{ "content-type": "application/sdp", authorization: "Bearer {TOKEN}" }},
    body: pc.localDescription.sdp,
  }});
  const text = await r.text();
  if (r.status !== 201) return {{ status: r.status, text }};
  await pc.setRemoteDescription({{ type: "answer", sdp: text }});
  window.{name} = {{ pc, location: r.headers.get("location") }};
  return {{ status: r.status, location: r.headers.get("location"), type: r.headers.get("content-type") }};
}})()"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_with_whip_and_plays_with_whep() {
    let server = Server::start(&["--whip-token", TOKEN]);
    let desk = join(server.client("wh", "desk", 0)).await;
    let dir = std::env::temp_dir().join(format!("tessera-whip-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (y4m, wav) = (dir.join("cam.y4m"), dir.join("mic.wav"));
    solid_y4m(&y4m, palette(2), 30);
    tone_wav(&wav, tone_for(2), 2.0);
    let mut browser = Chromium::start();
    browser.open("p", &format!("http://127.0.0.1:{}/", server.http_port), &y4m, &wav).await;

    let r = browser.eval("p", &connect_js("whip", "wh", "pub")).await;
    assert_eq!(r["status"], 201, "WHIP POST: {r}");
    assert_eq!(r["type"], "application/sdp");
    let location = r["location"].as_str().unwrap().to_owned();
    assert!(location.starts_with("/whip/wh/"), "{location}");

    // The server decodes Chromium's camera: desk sees its tile.
    let grid = layout(&server, "grid");
    eventually(LIMIT, "desk sees the WHIP source", || {
        let s = desk.room_state().ok_or("no state")?;
        let source = s.participants.iter().find(|p| p.peer.starts_with("whip-")).ok_or("no whip member")?;
        (source.role == "source").then_some(()).ok_or(format!("role {}", source.role))?;
        let colours = vec![("desk".to_string(), palette(0)), (source.peer.clone(), palette(2))];
        check_tiles(&desk, &s, &grid, &colours)
    })
    .await;

    // WHEP: the composite plays in the page, both tiles in it.
    let r = browser.eval("p", &connect_js("whep", "wh", "play")).await;
    assert_eq!(r["status"], 201, "WHEP POST: {r}");
    let share = |c: tessera::media::color::Rgb| {
        format!(
            "(() => {{ const v = window.playVideo; if (!v || !v.videoWidth) return 0;
              const c = document.createElement('canvas'); c.width = 160; c.height = 90;
              const x = c.getContext('2d'); x.drawImage(v, 0, 0, 160, 90);
              const d = x.getImageData(0, 0, 160, 90).data; let n = 0;
              for (let i = 0; i < d.length; i += 4) {{
                const dr = d[i] - {}, dg = d[i + 1] - {}, db = d[i + 2] - {};
                if (Math.sqrt(dr * dr + dg * dg + db * db) < 40) n++;
              }}
              return n / (160 * 90); }})()",
            c.r, c.g, c.b
        )
    };
    let d = Deadline::new(LIMIT, "the WHEP player shows both tiles");
    loop {
        let (red, blue) =
            (browser.number("p", &share(palette(0))).await, browser.number("p", &share(palette(2))).await);
        if red > 0.1 && blue > 0.1 {
            break;
        }
        d.wait(format!("shares red {red:.3}, blue {blue:.3}")).await;
    }
    let state = desk.room_state().unwrap();
    assert!(state.participants.iter().any(|p| p.peer.starts_with("whep-") && p.role == "viewer"), "{state:?}");

    // DELETE ends the WHIP session at once.
    let path = location.clone();
    let r = browser
        .eval(
            "p",
            &format!(
                r#"fetch("{path}", {{ method: "DELETE", headers: {{ authorization: "Bearer {TOKEN}" }} }}).then(r => r.status)"#
            ),
        )
        .await;
    assert_eq!(r, 200);
    let at = Instant::now();
    eventually(Duration::from_secs(2), "the WHIP source is gone", || {
        let s = desk.room_state().ok_or("no state")?;
        let peers: Vec<&str> = s.participants.iter().map(|p| p.peer.as_str()).collect();
        (!peers.iter().any(|p| p.starts_with("whip-"))).then_some(()).ok_or(format!("{peers:?}"))
    })
    .await;
    eprintln!("WHIP DELETE honoured in {} ms", at.elapsed().as_millis());
    let again =
        send(server.http_port, "DELETE", &location, &[("Authorization", &format!("Bearer {TOKEN}"))], b"").await;
    assert_eq!(again.status, 404, "a session ends once");
    browser.quit().await;
    desk.leave().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// Method, path, headers, body; the status and words the answer must have.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_whip_requests_are_refused_clearly() {
    let server = Server::start(&["--whip-token", TOKEN]);
    let port = server.http_port;
    let auth = format!("Bearer {TOKEN}");
    let sdp = [("Content-Type", "application/sdp"), ("Authorization", auth.as_str())];
    let offer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
    let cases: Vec<Case> = vec![
        ("POST", "/whip/r1", vec![("Content-Type", "application/sdp")], offer.to_vec(), 401, "Bearer token"),
        (
            "POST",
            "/whip/r1",
            vec![("Content-Type", "application/sdp"), ("Authorization", "Bearer nope")],
            offer.to_vec(),
            403,
            "wrong token",
        ),
        (
            "POST",
            "/whip/r1",
            vec![("Content-Type", "text/plain"), ("Authorization", auth.as_str())],
            offer.to_vec(),
            415,
            "application/sdp",
        ),
        ("POST", "/whip/r1", sdp.to_vec(), b"hello".to_vec(), 400, "not an SDP offer"),
        ("POST", "/whip/bad%20room", sdp.to_vec(), offer.to_vec(), 400, "not a room name"),
        ("POST", "/whip/r1", sdp.to_vec(), vec![b'v'; 70 * 1024], 413, ""),
        ("POST", "/whep/r1", sdp.to_vec(), offer.to_vec(), 400, "only receives"),
        ("POST", "/whip/r1", sdp.to_vec(), b"v=0\r\na=recvonly\r\n".to_vec(), 400, "must send media"),
        // Offers the server cannot use: its own refusals, as HTTP.
        ("POST", "/whip/r1", sdp.to_vec(), offer.to_vec(), 400, "no-h264"),
        ("POST", "/whip/r1", sdp.to_vec(), b"v=0\r\nnot sdp at all a=sendonly\r\n".to_vec(), 400, "bad-sdp"),
        ("DELETE", "/whip/r1/0123456789abcdef", vec![("Authorization", auth.as_str())], vec![], 404, "no such session"),
        ("PATCH", "/whip/r1/0123456789abcdef", sdp.to_vec(), b"a=candidate:1".to_vec(), 405, "trickle"),
        ("GET", "/whip/r1", vec![], vec![], 405, ""),
    ];
    for (method, path, headers, body, status, says) in cases {
        let r = send(port, method, path, &headers, &body).await;
        assert_eq!(r.status, status, "{method} {path}: {} {}", r.status, r.body);
        assert!(r.body.contains(says), "{method} {path}: {}", r.body);
    }
    // A server with no token configured has WHIP off.
    let off = Server::start(&[]);
    let r = send(off.http_port, "POST", "/whip/r1", &sdp, offer).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("--whip-token"), "{}", r.body);
    assert_eq!(common::http::get(port, "/healthz").await.body, "ok\n", "still serving");
}
