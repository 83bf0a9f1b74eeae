//! Churn: 200 participants join, send and leave one room while two others
//! stay. The server's memory, threads, sockets and tasks come back to
//! where they were, and the two who stayed never stop receiving.
//!
//! The server runs on Mosquitto here, so the process measured is the
//! server alone: the embedded rumqttd keeps a log for every subscription
//! filter it has ever seen (~160 KiB per distinct client id, see the
//! README's notes on the embedded broker).

mod common;

use common::*;
use std::time::{Duration, Instant};
use tessera::signaling::link::LinkEvent;

const LIMIT: Duration = Duration::from_secs(60);
const CYCLES: usize = 200;
const WORKERS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    rss_kb: u64,
    threads: u64,
    sockets: u64,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count() as u64;
    Usage { rss_kb: field("VmRSS:"), threads: field("Threads:"), sockets }
}

/// The server's own count of live async tasks and heap bytes in use, from
/// a fresh presence message (sent right after a heap trim).
async fn tasks(server: &Server, id: &str) -> (u64, u64) {
    let presence = format!("tessera/_servers/{id}");
    let (link, mut events) = raw_link(&server.url, &format!("probe-{}", free_port()), &[&presence]).await;
    // The retained presence first, then fresh ones every 5 s: take a fresh one.
    let mut seen = 0;
    let n = loop {
        match tokio::time::timeout(LIMIT, events.recv()).await {
            Ok(Some(LinkEvent::Message { payload, .. })) => {
                seen += 1;
                if seen >= 2 {
                    let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                    break (v["tasks"].as_u64().unwrap(), v["heap_bytes"].as_u64().unwrap());
                }
            }
            Ok(Some(_)) => {}
            other => panic!("no presence: {other:?}"),
        }
    };
    link.close().await;
    n
}

async fn cycle(server: &Server, peer: String, index: usize) {
    let c = join(server.client("churn", &peer, index)).await;
    // Until a first composite frame: the server decoded and encoded for it.
    eventually(LIMIT, "first frame", || (c.stats().frames > 0).then_some(()).ok_or("none".to_string())).await;
    c.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_joins_and_leaves_leak_nothing() {
    let mq = common::mosquitto::Mosquitto::anonymous();
    let server = std::sync::Arc::new(Server::start_external(
        &mq.anonymous_url(),
        &["--server-id", "churner", "--max-participants", "16"],
    ));
    let pid = server.pid();
    let stay_a = join(server.client("churn", "stay-a", 0)).await;
    let stay_b = join(server.client("churn", "stay-b", 1)).await;

    // Warm up with as many cycles as one measured half, at the same
    // concurrency (first-use allocations, thread pools, the allocator's
    // high-water mark: with two malloc arenas it takes ~200 cycles to
    // plateau, so a shorter warm-up leaves the first half still climbing),
    // then take the baseline.
    let mut warm = Vec::new();
    for w in 0..WORKERS {
        let server = server.clone();
        warm.push(tokio::spawn(async move {
            for i in 0..CYCLES / WORKERS / 2 {
                cycle(&server, format!("warm-{w}-{i}"), 2 + (w + i) % 8).await;
            }
        }));
    }
    for w in warm {
        w.await.unwrap();
    }
    let settled = |server: &Server| {
        let s = stay_a.room_state();
        s.map(|s| s.participants.len() == 2).unwrap_or(false) && server.log_text().contains("churn")
    };
    eventually(LIMIT, "warm-up members gone", || settled(&server).then_some(()).ok_or("not yet".to_string())).await;
    tokio::time::sleep(Duration::from_secs(12)).await; // idle blocking threads retire after 10 s
                                                       // A fresh presence message means the server just trimmed its heap.
    let (base_tasks, base_heap) = tasks(&server, "churner").await;
    let base = usage(pid);

    // Two halves: what the first leaves behind is the allocator's
    // high-water mark; anything the second adds on top would be a leak.
    let started = Instant::now();
    let mut halves = Vec::new();
    for half in 0..2 {
        let frames = stay_a.stats().frames;
        let t = Instant::now();
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let server = server.clone();
            workers.push(tokio::spawn(async move {
                for i in 0..CYCLES / WORKERS / 2 {
                    cycle(&server, format!("churn-{half}-{w}-{i}"), 2 + (w + i) % 8).await;
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        assert!(stay_a.stats().frames > frames + 15 * t.elapsed().as_secs() / 2, "stay-a stalled during the churn");
        eventually(LIMIT, "churners gone", || settled(&server).then_some(()).ok_or("not yet".to_string())).await;
        let u = eventually(LIMIT, "threads and sockets back to the baseline", || {
            let u = usage(pid);
            (u.threads <= base.threads && u.sockets <= base.sockets).then_some(u).ok_or(format!("{u:?} vs {base:?}"))
        })
        .await;
        let (mut n, mut heap) = tasks(&server, "churner").await;
        let deadline = Instant::now() + LIMIT;
        while n > base_tasks && Instant::now() < deadline {
            (n, heap) = tasks(&server, "churner").await;
        }
        halves.push((usage(pid), n, heap, u));
    }
    let churn_time = started.elapsed();
    let ((mid, mid_tasks, mid_heap, _), (after, after_tasks, after_heap, _)) = (halves[0], halves[1]);
    println!(
        "churn: {CYCLES} join/leave cycles in {:.1} s; heap in use {} -> {} (after {}) -> {} KiB; RSS {} -> {} -> {} KiB, threads {} -> {}, sockets {} -> {}, tasks {} -> {} -> {}",
        churn_time.as_secs_f64(),
        base_heap / 1024,
        mid_heap / 1024,
        CYCLES / 2,
        after_heap / 1024,
        base.rss_kb,
        mid.rss_kb,
        after.rss_kb,
        base.threads,
        after.threads,
        base.sockets,
        after.sockets,
        base_tasks,
        mid_tasks,
        after_tasks
    );
    assert!(after_tasks <= base_tasks, "tasks leaked: {base_tasks} -> {after_tasks}");
    // A leak grows the heap in use; RSS also holds freed memory the
    // allocator keeps (it wanders by several MB with fragmentation), so it
    // is only bounded.
    assert!(
        after_heap < mid_heap + 1024 * 1024 && after_heap < base_heap + 2 * 1024 * 1024,
        "heap in use grew: {base_heap} -> {mid_heap} -> {after_heap} bytes"
    );
    assert!(after.rss_kb < base.rss_kb + 16 * 1024, "RSS grew from {} to {} KiB", base.rss_kb, after.rss_kb);
    stay_a.leave().await;
    stay_b.leave().await;
}
