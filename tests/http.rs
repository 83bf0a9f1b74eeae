//! `tessera serve`'s HTTP listener over real TCP: the join page and its
//! files, the settings the page reads, bad requests, and `/metrics`
//! scraped during a real call, checked by Prometheus's own `promtool`.

mod common;

use common::http::{exchange, get, request};
use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_its_files_and_its_settings_are_served() {
    let server = Server::start(&[]);
    let port = server.http_port;

    for path in ["/", "/room/demo-1"] {
        let r = get(port, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("text/html")), "{path}: {:?}", r.headers);
        assert!(r.body.contains("<script src=\"/app.js\">"), "{path} is the join page");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("default-src 'self'"), "{path}: scripts only from this server: {csp}");
    }
    let js = get(port, "/app.js").await;
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").is_some_and(|t| t.starts_with("text/javascript")));
    assert!(js.body.contains("protocol v1"), "the page's script");
    // MQTT.js comes from this server, byte for byte what the repository ships.
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/web/vendor/mqtt.min.js")).unwrap();
    let served = get(port, "/vendor/mqtt.min.js").await;
    assert_eq!((served.status, served.body.len()), (200, shipped.len()));
    assert!(served.body == shipped);
    assert!(get(port, "/vendor/mqtt.LICENSE.md").await.body.contains("MIT"), "MQTT.js's licence is served beside it");
    assert_eq!(get(port, "/style.css").await.status, 200);
    assert_eq!(get(port, "/healthz").await.body, "ok\n");

    // The settings the page joins with: this server's websocket port and layouts.
    let cfg = get(port, "/config.json").await;
    assert_eq!(cfg.status, 200);
    let cfg: serde_json::Value = serde_json::from_str(&cfg.body).unwrap();
    assert_eq!(cfg["protocol"], 1);
    assert_eq!(cfg["topicRoot"], "tessera");
    assert_eq!(cfg["wsPort"], server.ws_port);
    let layouts: Vec<&str> = cfg["layouts"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    for l in ["grid", "speaker", "pip"] {
        assert!(layouts.contains(&l), "layout {l} offered: {layouts:?}");
    }
    assert_eq!(cfg["defaultLayout"], "grid");

    // Bad requests get clear answers, and the listener goes on serving.
    let bad_room = get(port, "/room/no%20spaces").await;
    assert_eq!(bad_room.status, 400);
    assert!(bad_room.body.contains("not a room name"), "{}", bad_room.body);
    let missing = get(port, "/nothing-here").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("join page is at /"));
    assert_eq!(request(port, "POST", "/config.json").await.status, 405);
    assert_eq!(request(port, "DELETE", "/").await.status, 405);
    let long = format!("/room/{}", "x".repeat(100));
    assert_eq!(get(port, &long).await.status, 400);
    for garbage in [
        &b"HELLO\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00",
        b"GET /\xff\xfe HTTP/1.1\r\n\r\n",
    ] {
        if let Ok(r) = exchange(port, garbage).await {
            assert!((400..500).contains(&r.status) || r.status == 505, "{garbage:?} answered {}", r.status);
        }
    }
    let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(1 << 20));
    if let Ok(r) = exchange(port, huge.as_bytes()).await {
        assert_ne!(r.status, 200, "a 1 MiB header is refused");
    }
    assert_eq!(get(port, "/").await.status, 200, "still serving after bad requests");
    assert!(server.stop().success());
}

/// Sum of the samples of `name` whose labels contain every `labels` pair.
fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n != name || !labels.iter().all(|want| l.contains(want)) {
            continue;
        }
        *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(f64::NAN);
    }
    found
}

fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool (package prometheus; scripts/install-deps installs it): {e}"))?;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // promtool also lints style (e.g. counters without _total); only
    // errors in the format fail it, and it says which.
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_call_and_pass_promtool() {
    let server = Server::start(&[]);
    let port = server.http_port;
    let before = get(port, "/metrics").await;
    assert_eq!(before.status, 200);
    assert!(before.header("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));

    let a = join(server.client("m1", "a", 0)).await;
    let b = join(server.client("m1", "b", 1)).await;
    let tv = join(viewer(server.client("m1", "tv", 2), Some((320, 180)))).await;
    let mut text;
    let deadline = Deadline::new(LIMIT, "metrics show the call");
    loop {
        text = get(port, "/metrics").await.body;
        let room = r#"room="m1""#;
        let checks = [
            ("rooms", metric(&text, "tessera_rooms", &[]) == Some(1.0)),
            ("participants", metric(&text, "tessera_room_members", &[room, r#"role="participant""#]) == Some(2.0)),
            ("viewers", metric(&text, "tessera_room_members", &[room, r#"role="viewer""#]) == Some(1.0)),
            ("views", metric(&text, "tessera_room_views", &[room]).is_some_and(|v| v >= 2.0)),
            ("encoded", metric(&text, "tessera_view_frames_encoded_total", &[room]).is_some_and(|v| v > 10.0)),
            ("rendered", metric(&text, "tessera_view_frames_rendered_total", &[room]).is_some_and(|v| v > 10.0)),
            ("encode time", metric(&text, "tessera_view_encode_seconds", &[room]).is_some_and(|v| v > 0.0 && v < 1.0)),
            ("render time", metric(&text, "tessera_view_render_seconds", &[room]).is_some_and(|v| v > 0.0 && v < 1.0)),
            (
                "estimate",
                metric(&text, "tessera_member_downstream_estimate_bps", &[room, r#"peer="tv""#])
                    .is_some_and(|v| v > 50_000.0),
            ),
            (
                "sent",
                metric(&text, "tessera_member_downstream_sent_bps", &[room, r#"peer="a""#])
                    .is_some_and(|v| v > 1_000.0),
            ),
        ];
        let missing: Vec<&str> = checks.iter().filter(|(_, ok)| !ok).map(|(n, _)| *n).collect();
        if missing.is_empty() {
            break;
        }
        deadline.wait(format!("missing {missing:?} in\n{text}")).await;
    }
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool check metrics failed: {e}\n{text}"));

    // A refusal is counted by its code.
    let (probe, _events) = raw_link(&server.url, "prober", &["tessera/m1/out/prober"]).await;
    probe.publish("tessera/m1/in/prober", b"{not json".to_vec(), false).await.unwrap();
    let deadline = Deadline::new(LIMIT, "the bad message is counted");
    loop {
        text = get(port, "/metrics").await.body;
        if metric(&text, "tessera_signaling_errors_total", &[r#"code="bad-json""#]).is_some_and(|v| v >= 1.0) {
            break;
        }
        deadline.wait("no bad-json count").await;
    }
    probe.close().await;

    // Members who leave leave the figures.
    b.leave().await;
    tv.leave().await;
    let deadline = Deadline::new(LIMIT, "the figures follow the leaves");
    loop {
        text = get(port, "/metrics").await.body;
        let room = r#"room="m1""#;
        if metric(&text, "tessera_room_members", &[room, r#"role="participant""#]) == Some(1.0)
            && metric(&text, "tessera_room_members", &[room, r#"role="viewer""#]).unwrap_or(0.0) == 0.0
        {
            break;
        }
        deadline.wait("members not updated").await;
    }
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool check metrics failed: {e}\n{text}"));
    a.leave().await;
}
