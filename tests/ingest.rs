//! Tile-sized ingest and its limits: senders are asked for the size they
//! are shown at and send it; a stream larger than the server decodes is
//! refused with an error, and the room goes on.

mod common;

use common::*;
use std::time::Duration;
use tessera::client::Notice;
use tessera::media::pattern::palette;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_send_the_size_of_their_tile() {
    let server = Server::start(&[]);
    let mut clients = Vec::new();
    for (i, peer) in ["t1", "t2", "t3", "t4"].iter().enumerate() {
        let mut o = server.client("ts", peer, i);
        // Twice the size a 2x2 tile of the 640x360 canvas shows.
        o.send.width = 640;
        o.send.height = 480;
        clients.push(join(o).await);
    }
    let grid = layout(&server, "grid");
    let colors: Vec<(String, _)> = (0..4).map(|i| (format!("t{}", i + 1), palette(i))).collect();
    // Each is asked for its tile (about 320x180 of the 640x360 canvas),
    // scales its 4:3 picture to just cover it, and the composite is right.
    eventually(LIMIT, "every sender at its tile's size", || {
        let sizes = tessera::client::stamp::local_senders();
        for c in &clients {
            let hint = c
                .notices()
                .iter()
                .rev()
                .find_map(|n| if let Notice::Send(h) = n { Some(*h) } else { None })
                .ok_or(format!("{} has no hint", c.peer()))?;
            if hint.width > 330 || hint.height > 190 {
                return Err(format!("{} still asked for {hint:?}", c.peer()));
            }
            let (w, h) = sizes.get(c.peer()).copied().ok_or("not sending")?;
            // Covers the box, and just: one side fits it (to rounding).
            if w < hint.width || h < hint.height || (w > hint.width + 2 && h > hint.height + 2) {
                return Err(format!("{} sends {w}x{h} for {hint:?}", c.peer()));
            }
        }
        let s = clients[0].room_state().ok_or("no state")?;
        check_tiles(&clients[0], &s, &grid, &colors)
    })
    .await;
    // The server decodes what they send: smaller pictures.
    let log = server.log_text();
    assert!(log.lines().any(|l| l.contains("decoding layer") && l.contains("size=Some((3")), "{log}");
    for c in clients {
        c.leave().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_above_the_ingest_limit_is_refused_and_the_room_goes_on() {
    let server = Server::start(&["--max-ingest", "320x240"]);
    let small = join(server.client("lim", "small", 0)).await;
    let mut o = server.client("lim", "huge", 1);
    o.send.width = 640;
    o.send.height = 480;
    let huge = join(o).await;
    let refusal = eventually(LIMIT, "an error for the oversized sender", || {
        huge.notices()
            .into_iter()
            .find_map(|n| match n {
                Notice::Error { code, message } if code == "video-too-large" => Some(message),
                _ => None,
            })
            .ok_or("none yet".to_string())
    })
    .await;
    assert!(refusal.contains("480") && refusal.contains("320x240"), "{refusal}");
    // Both stay in the room; small's tile shows it, huge's the placeholder.
    let grid = layout(&server, "grid");
    eventually(LIMIT, "small shown, huge not decoded", || {
        let s = small.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not both")?;
        check_tiles(&small, &s, &grid, &[("small".to_string(), palette(0))])?;
        let f = small.latest_frame().ok_or("no frame")?;
        let frame = f.frame.as_frame();
        let p = tessera::media::compositor::placements(&grid, &[0, 1], None, 640, 360);
        let cell = p.iter().find(|p| p.id == 1).ok_or("no tile")?.inner;
        let got = tessera::media::convert::mean_rgb(
            &frame,
            (cell.x + cell.w / 8) as usize,
            (cell.y + cell.h / 2) as usize,
            4,
            4,
        );
        (got.distance(grid.placeholder.color) < 30.0)
            .then_some(())
            .ok_or(format!("huge's tile is {got}, not the placeholder"))
    })
    .await;
    assert!(!server.log_text().contains("panicked"));
    for c in [small, huge] {
        c.leave().await;
    }
}
