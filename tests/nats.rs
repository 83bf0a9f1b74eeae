//! tessera on a clustered broker: three NATS nodes (the shipped
//! `deploy/nats/` configuration) speaking MQTT, the server on node 1, its
//! clients on nodes 2 and 3. Offers, answers, candidates, the retained
//! room state and a crashed client's last will all cross the cluster.

mod common;

use common::nats::NatsCluster;
use common::*;
use std::time::Duration;
use tessera::media::pattern::palette;
use tessera::signaling::link::LinkEvent;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_three_nats_nodes() {
    let nats = NatsCluster::start();
    // MQTT connects stall until JetStream has a leader: the server waits for it.
    let server = Server::start_external(&nats.url(0), &["--server-id", "srv-nats"]);
    let mut a = server.client("nats", "a", 0);
    a.url = nats.url(1);
    let a = join(a).await;
    let mut b = server.client("nats", "b", 1);
    b.url = nats.url(2);
    let b = join(b).await;
    let grid = layout(&server, "grid");
    let colours = vec![("a".to_string(), palette(0)), ("b".to_string(), palette(1))];
    eventually(LIMIT, "a and b, on different NATS nodes, see each other", || {
        let s = a.room_state().ok_or("no state")?;
        (s.participants.len() == 2).then_some(()).ok_or("not yet")?;
        check_tiles(&a, &s, &grid, &colours)?;
        check_tiles(&b, &s, &grid, &colours)
    })
    .await;

    // The retained state reaches a newcomer on node 3.
    let (probe, mut events) = raw_link(&nats.url(2), "probe-nats", &["tessera/nats/state"]).await;
    let state = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.recv().await {
            if let LinkEvent::Message { payload, .. } = ev {
                return Some(payload);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the retained state on node 3");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(2), "{state}");
    probe.close().await;

    // a crashes: node 2 publishes its will, the server on node 1 acts on it.
    a.link().kill();
    drop(a);
    eventually(LIMIT, "a's will crosses the cluster", || {
        let s = b.room_state().ok_or("no state")?;
        let peers: Vec<&str> = s.participants.iter().map(|p| p.peer.as_str()).collect();
        (peers == ["b"]).then_some(()).ok_or(format!("{peers:?}"))
    })
    .await;
    b.leave().await;
}
