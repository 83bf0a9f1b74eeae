//! Several tessera nodes (`--cluster`) on a 3-node NATS cluster, each
//! process started and stopped here, all on loopback: rooms spread over
//! the nodes and each is served by exactly one; a killed node's rooms come
//! back on the others; a new node takes new rooms and cuts no call; a
//! node stopped with SIGTERM hands its rooms over; a stopped NATS node's
//! clients move to another and keep their calls.

mod common;

use common::nats::NatsCluster;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tessera::client::Client;
use tessera::media::pattern::palette;

const LIMIT: Duration = Duration::from_secs(60);
const ROOMS: usize = 12;
/// How long a NATS cluster may take to let a lost node's clients back in.
const NATS_RECOVERY: Duration = Duration::from_secs(150);

fn node_id(n: usize) -> String {
    format!("node{n}")
}

/// A cluster node on NATS node `nats_node` (able to move to the others).
fn start_node(nats: &NatsCluster, n: usize, nats_node: usize) -> Server {
    let id = node_id(n);
    Server::start_external(&nats.urls_from(nats_node), &["--server-id", &id, "--cluster", "--max-participants", "4"])
}

/// Waits until `server` has heard the other nodes and serves rooms.
async fn settled(server: &Server) {
    eventually(LIMIT, "the node settles", || {
        server.log_text().contains("cluster settled").then_some(()).ok_or_else(|| "not yet".to_string())
    })
    .await;
}

struct Room {
    name: String,
    a: Client,
    b: Client,
}

impl Room {
    fn owner(&self) -> Option<String> {
        self.a.room_state().and_then(|s| s.owner)
    }

    /// Both clients see both, in a composite decoded after `since`.
    fn composite_since(&self, since: Instant, grid: &tessera::layout::Layout) -> Result<(), String> {
        let colours = [(format!("{}a", self.name), palette(0)), (format!("{}b", self.name), palette(1))];
        for c in [&self.a, &self.b] {
            let s = c.room_state().ok_or("no state")?;
            if s.participants.len() != 2 {
                return Err(format!("{}: {} participants", self.name, s.participants.len()));
            }
            let latest = c.latest_frame().ok_or("no frame")?;
            if latest.at < since {
                return Err(format!("{}: no new picture", self.name));
            }
            check_tiles(c, &s, grid, &colours)?;
        }
        Ok(())
    }

    /// Both clients see both, in a composite decoded after `since`, in
    /// either order (whatever room state a client last got: a broker
    /// cluster that lost a node delivers retained states late).
    fn both_shown_since(&self, since: Instant, grid: &tessera::layout::Layout) -> Result<(), String> {
        let (a, b) = (format!("{}a", self.name), format!("{}b", self.name));
        let colours = [(a.clone(), palette(0)), (b.clone(), palette(1))];
        for c in [&self.a, &self.b] {
            let latest = c.latest_frame().ok_or("no frame")?;
            if latest.at < since {
                return Err(format!("{}: no new picture", self.name));
            }
            let mut last = Ok(());
            for order in [[&a, &b], [&b, &a]] {
                let state: tessera::signaling::protocol::RoomState = serde_json::from_value(serde_json::json!({
                    "room": self.name, "layout": "grid", "canvas": {"width": 640, "height": 360, "fps": 15},
                    "participants": order.iter().map(|p| serde_json::json!({
                        "peer": p, "name": p, "audio": true, "video": true, "speaking": false, "role": "participant"
                    })).collect::<Vec<_>>(),
                    "speaker": null
                }))
                .map_err(|e| e.to_string())?;
                last = check_tiles(c, &state, grid, &colours);
                if last.is_ok() {
                    break;
                }
            }
            last?;
        }
        Ok(())
    }
}

async fn open_rooms(servers: &[Server], nats: &NatsCluster, names: &[String]) -> Vec<Room> {
    let mut joins = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for (k, side) in ["a", "b"].into_iter().enumerate() {
            let mut o = servers[0].client(name, &format!("{name}{side}"), k);
            o.url = nats.urls_from((i + k) % 3);
            o.send.fps = 10;
            joins.push(tokio::spawn(join(o)));
        }
    }
    let mut clients = Vec::new();
    for j in joins {
        clients.push(j.await.unwrap());
    }
    let mut rooms = Vec::new();
    let mut it = clients.into_iter();
    for name in names {
        let (a, b) = (it.next().unwrap(), it.next().unwrap());
        rooms.push(Room { name: name.clone(), a, b });
    }
    rooms
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_fail_over_move_and_survive_a_broker_node() {
    // The clients' side of each move, for when this test fails.
    let log = std::fs::File::create(std::env::temp_dir().join("tessera-cluster-clients.log")).unwrap();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .with_env_filter("tessera::client=debug,tessera::signaling=debug")
        .try_init();
    let mut nats = NatsCluster::start();
    let mut servers: Vec<Server> = (0..3).map(|n| start_node(&nats, n, n)).collect();
    for s in &servers {
        settled(s).await;
    }
    let grid = layout(&servers[0], "grid");
    let names: Vec<String> = (0..ROOMS).map(|i| format!("r{i}")).collect();
    let rooms = open_rooms(&servers, &nats, &names).await;
    let since = Instant::now() - Duration::from_secs(3600);
    eventually(LIMIT, "every room's clients see each other", || {
        rooms.iter().try_for_each(|r| r.composite_since(since, &grid))
    })
    .await;

    // Each room is served by exactly one node, and every node serves some:
    // the owners the room states name match the rooms each node runs
    // (its /metrics), once the states and the gauges are current.
    let deadline = Deadline::new(Duration::from_secs(20), "owners and room counts agree");
    let (owners, per_node) = loop {
        let owners: BTreeMap<String, String> =
            rooms.iter().map(|r| (r.name.clone(), r.owner().unwrap_or_default())).collect();
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for o in owners.values() {
            *per_node.entry(o.clone()).or_default() += 1;
        }
        let mut gauges = BTreeMap::new();
        for (n, s) in servers.iter().enumerate() {
            let metrics = common::http::get(s.http_port, "/metrics").await.body;
            let rooms_gauge = metrics
                .lines()
                .find_map(|l| l.strip_prefix("tessera_rooms "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(-1.0) as usize;
            gauges.insert(node_id(n), rooms_gauge);
        }
        let agree = rooms.iter().all(|r| r.b.room_state().and_then(|s| s.owner) == r.owner());
        if agree && per_node == gauges {
            break (owners, per_node);
        }
        deadline.wait(format!("owners {per_node:?}, rooms run {gauges:?}")).await;
    };
    eprintln!("rooms per node: {per_node:?}");
    assert_eq!(per_node.len(), 3, "every node serves some rooms: {per_node:?}");

    // What the bus carries at steady state, per room.
    let (probe, mut events) = raw_link(&nats.url(0), "probe-bus", &["tessera/#"]).await;
    let counting = Instant::now() + Duration::from_secs(1);
    let window = Duration::from_secs(8);
    let (mut beats, mut states, mut other) = (0u32, 0u32, 0u32);
    while let Ok(Some(ev)) = tokio::time::timeout_at((counting + window).into(), events.recv()).await {
        let tessera::signaling::link::LinkEvent::Message { topic, .. } = ev else { continue };
        if Instant::now() < counting {
            continue; // retained messages on subscribing
        }
        match topic.rsplit('/').next() {
            Some("beat") => beats += 1,
            Some("state") => states += 1,
            _ => other += 1,
        }
    }
    probe.close().await;
    let per = |n: u32| f64::from(n) / window.as_secs_f64() / ROOMS as f64;
    eprintln!(
        "bus at steady state, per room per second: {:.2} room states, {:.2} other messages; {:.1} heartbeats a second in all",
        per(states),
        per(other),
        f64::from(beats) / window.as_secs_f64()
    );

    // kill -9 the node with the most rooms.
    let (victim, _) = per_node.iter().max_by_key(|(_, c)| **c).map(|(n, c)| (n.to_string(), *c)).unwrap();
    let v: usize = victim.trim_start_matches("node").parse().unwrap();
    let frozen_before: Vec<Duration> = rooms.iter().map(|r| r.a.stats().frozen + r.b.stats().frozen).collect();
    // (An offer lost on the way is made again after 6 s: that counts too.)
    let rejoined_before: Vec<u64> = rooms.iter().map(|r| r.a.stats().rejoins + r.b.stats().rejoins).collect();
    let kill = Instant::now();
    servers[v].kill();
    let moved: Vec<&Room> = rooms.iter().filter(|r| owners[&r.name] == victim).collect();
    let mut back: BTreeMap<String, Duration> = BTreeMap::new();
    let deadline = Deadline::new(LIMIT, "the killed node's rooms come back");
    while back.len() < moved.len() {
        for r in &moved {
            if !back.contains_key(&r.name)
                && r.owner().is_some_and(|o| o != victim)
                && r.composite_since(kill, &grid).is_ok()
            {
                back.insert(r.name.clone(), kill.elapsed());
            }
        }
        let missing: Vec<String> = moved
            .iter()
            .filter(|r| !back.contains_key(&r.name))
            .map(|r| format!("{}: {:?}", r.name, r.composite_since(kill, &grid)))
            .collect();
        if !missing.is_empty() {
            if kill.elapsed() > Duration::from_secs(3) && kill.elapsed().subsec_millis() < 100 {
                eprintln!("{:?} after the kill: {missing:?}", kill.elapsed());
            }
            deadline.wait(format!("{missing:?}")).await;
        }
    }
    let mut times: Vec<Duration> = back.values().copied().collect();
    times.sort();
    eprintln!(
        "failover, kill -9 to composite over {} rooms: p50 {:?}, p95 {:?}, max {:?}; all {back:?}",
        times.len(),
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times.last().unwrap()
    );
    // Rooms on the other nodes went on untouched.
    for ((r, before), rejoined) in rooms.iter().zip(&frozen_before).zip(&rejoined_before) {
        if owners[&r.name] != victim {
            let rejoins = r.a.stats().rejoins + r.b.stats().rejoins;
            assert_eq!(rejoins, *rejoined, "{} was not on the killed node", r.name);
            let frozen = r.a.stats().frozen + r.b.stats().frozen - *before;
            assert!(frozen < Duration::from_secs(1), "{} froze {frozen:?} though its node lived", r.name);
        }
    }

    // A new node: no live call is cut; new rooms reach it.
    let newcomer = 3;
    servers.push(start_node(&nats, newcomer, 0));
    settled(&servers[newcomer]).await;
    let rejoins_before: u64 = rooms.iter().map(|r| r.a.stats().rejoins + r.b.stats().rejoins).sum();
    let live: Vec<(String, f64)> = (0..4).filter(|&n| n != v).map(|n| (node_id(n), 1.0)).collect();
    let fresh: Vec<String> = (0..200)
        .map(|i| format!("new{i}"))
        .filter(|room| {
            tessera::cluster::rendezvous::owner(room, live.iter().map(|(n, w)| (n.as_str(), *w)))
                == Some(node_id(newcomer).as_str())
        })
        .take(2)
        .collect();
    let new_rooms = open_rooms(&servers, &nats, &fresh).await;
    eventually(LIMIT, "the new node serves new rooms", || {
        new_rooms.iter().try_for_each(|r| {
            r.composite_since(since, &grid)?;
            (r.owner() == Some(node_id(newcomer))).then_some(()).ok_or(format!("{}: owner {:?}", r.name, r.owner()))
        })
    })
    .await;
    let rejoins_after: u64 = rooms.iter().map(|r| r.a.stats().rejoins + r.b.stats().rejoins).sum();
    assert_eq!(rejoins_after, rejoins_before, "a node joining cut no call");
    eprintln!("rooms moved when node3 joined: {}", rejoins_after - rejoins_before);

    // SIGTERM a node with rooms: they move, nobody out of a composite for long.
    let owners_now: BTreeMap<String, String> = rooms.iter().map(|r| (r.name.clone(), r.owner().unwrap())).collect();
    let drained = (0..3).find(|&n| n != v && owners_now.values().any(|o| *o == node_id(n))).unwrap();
    let moving: Vec<&Room> = rooms.iter().filter(|r| owners_now[&r.name] == node_id(drained)).collect();
    let longest_before: Vec<Duration> =
        moving.iter().map(|r| r.a.stats().longest_freeze.max(r.b.stats().longest_freeze)).collect();
    let term = Instant::now();
    servers[drained].terminate();
    eventually(LIMIT, "the drained node's rooms move", || {
        moving.iter().try_for_each(|r| {
            let o = r.owner().unwrap_or_default();
            if o == node_id(drained) {
                return Err(format!("{} still on {o}", r.name));
            }
            r.composite_since(term, &grid)
        })
    })
    .await;
    let drain_moved = term.elapsed();
    eventually(LIMIT, "the drained node exits", || {
        servers[drained].exited().then_some(()).ok_or_else(|| "running".to_string())
    })
    .await;
    let drain_exit = term.elapsed();
    let mut gaps = Vec::new();
    for (r, before) in moving.iter().zip(&longest_before) {
        let longest = r.a.stats().longest_freeze.max(r.b.stats().longest_freeze);
        gaps.push(if longest > *before { longest } else { Duration::ZERO });
    }
    eprintln!(
        "drain: {} rooms moved in {drain_moved:?}, node exited after {drain_exit:?}, longest composite gap per room {gaps:?}",
        moving.len()
    );
    for (r, g) in moving.iter().zip(&gaps) {
        assert!(*g < Duration::from_secs(2), "{}: out of a composite for {g:?} while its node drained", r.name);
    }
    assert!(servers[drained].log_text().contains("drained: every room moved"), "{}", servers[drained].log_text());

    // Stop one NATS node: calls go on; its clients move to another node.
    let stopped_nats = 1;
    let frozen_before: Vec<Duration> = rooms.iter().map(|r| r.a.stats().frozen + r.b.stats().frozen).collect();
    let stop = Instant::now();
    nats.kill(stopped_nats);
    let live_servers: Vec<&Server> =
        servers.iter().enumerate().filter(|(n, _)| *n != v && *n != drained).map(|(_, s)| s).collect();
    // Every room still served, its clients still in a composite (those of
    // the stopped NATS node reconnected to another). A room whose node was
    // on the stopped NATS node moves, and its clients there can rejoin only
    // once NATS lets them back in: NATS's pace (see NATS_RECOVERY).
    eventually(NATS_RECOVERY, "every call survives the NATS node", || {
        rooms.iter().try_for_each(|r| {
            let o = r.owner().ok_or("no owner")?;
            if o == victim || o == node_id(drained) {
                return Err(format!("{} on a stopped node", r.name));
            }
            r.both_shown_since(stop + Duration::from_secs(2), &grid).map_err(|e| {
                let describe = |c: &Client| {
                    let s = c.room_state();
                    format!(
                        "{}: owner {:?} peers {:?} rejoins {} notices {:?}",
                        c.peer(),
                        s.as_ref().and_then(|s| s.owner.clone()),
                        s.map(|s| s.participants.iter().map(|p| p.peer.clone()).collect::<Vec<_>>()),
                        c.stats().rejoins,
                        c.notices().iter().rev().take(3).collect::<Vec<_>>()
                    )
                };
                format!("{e}; {}; {}", describe(&r.a), describe(&r.b))
            })
        })
    })
    .await;
    eprintln!("NATS node stopped: every call back in a composite after {:?}", stop.elapsed());
    // Signaling works again for the clients that were on it: a control
    // message from each room's client on the stopped node changes the
    // layout (sent again until it lands: the client may still be moving).
    let on_stopped: Vec<(&Room, &Client)> = rooms
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match (i % 3 == stopped_nats, (i + 1) % 3 == stopped_nats) {
            (true, _) => Some((r, &r.a)),
            (_, true) => Some((r, &r.b)),
            _ => None,
        })
        .collect();
    // NATS 2.9.10 takes 10-50 s to let every client of a lost node back in
    // (JetStream leader elections, refused session takeovers): its pace,
    // not tessera's, sets this limit.
    let deadline = Deadline::new(NATS_RECOVERY, "clients of the stopped NATS node signal again");
    loop {
        let missing: Vec<String> = on_stopped
            .iter()
            .filter(|(r, _)| r.a.room_state().map(|s| s.layout).as_deref() != Some("speaker"))
            .map(|(r, _)| r.name.clone())
            .collect();
        if missing.is_empty() {
            break;
        }
        for (r, c) in &on_stopped {
            if missing.contains(&r.name) {
                let topic = format!("tessera/{}/control", r.name);
                let _ = c.link().publish(&topic, br#"{"type":"layout","layout":"speaker"}"#.to_vec(), false).await;
            }
        }
        let mut why = Vec::new();
        for (r, c) in &on_stopped {
            if missing.contains(&r.name) {
                let up = c.link().ready(Duration::ZERO).await;
                why.push(format!(
                    "{} (link up {up}, a: {:?}/{:?}, b: {:?}/{:?})",
                    r.name,
                    r.a.room_state().map(|s| (s.layout, s.owner)),
                    r.a.stats().rejoins,
                    r.b.room_state().map(|s| (s.layout, s.owner)),
                    r.b.stats().rejoins
                ));
            }
        }
        if stop.elapsed().as_secs().is_multiple_of(10) {
            eprintln!("{:?}: {why:?}", stop.elapsed());
        }
        for _ in 0..10 {
            deadline.wait(format!("{why:?}")).await;
        }
    }
    eprintln!("NATS node stopped: its clients signal again after {:?}", stop.elapsed());
    let worst = rooms
        .iter()
        .zip(&frozen_before)
        .map(|(r, b)| (r.a.stats().frozen + r.b.stats().frozen).saturating_sub(*b))
        .max()
        .unwrap_or_default();
    eprintln!("NATS node stopped: the worst room froze {worst:?} in total");
    drop(live_servers);

    for r in rooms.into_iter().chain(new_rooms) {
        r.a.leave().await;
        r.b.leave().await;
    }
}

/// Two nodes on one Mosquitto: rooms spread, and a killed node's rooms come
/// back on the other (Mosquitto publishes the dead node's will at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_mosquitto() {
    let mq = common::mosquitto::Mosquitto::anonymous();
    let url = mq.anonymous_url();
    let mut servers: Vec<Server> = (0..2)
        .map(|n| {
            Server::start_external(&url, &["--server-id", &format!("mq{n}"), "--cluster", "--max-participants", "4"])
        })
        .collect();
    for s in &servers {
        settled(s).await;
    }
    let grid = layout(&servers[0], "grid");
    // Rooms that hash to each node (two each).
    let nodes = [("mq0", 1.0), ("mq1", 1.0)];
    let mut names = Vec::new();
    for want in ["mq0", "mq1"] {
        names.extend(
            (0..100)
                .map(|i| format!("m{i}"))
                .filter(|r| tessera::cluster::rendezvous::owner(r, nodes) == Some(want))
                .take(2),
        );
    }
    let mut joins = Vec::new();
    for name in &names {
        for (k, side) in ["a", "b"].into_iter().enumerate() {
            let mut o = servers[0].client(name, &format!("{name}{side}"), k);
            o.url = url.clone();
            o.send.fps = 10;
            joins.push(tokio::spawn(join(o)));
        }
    }
    let mut clients = Vec::new();
    for j in joins {
        clients.push(j.await.unwrap());
    }
    let mut it = clients.into_iter();
    let rooms: Vec<Room> =
        names.iter().map(|n| Room { name: n.clone(), a: it.next().unwrap(), b: it.next().unwrap() }).collect();
    let since = Instant::now() - Duration::from_secs(3600);
    eventually(LIMIT, "every room on the node it hashes to", || {
        rooms.iter().try_for_each(|r| {
            r.composite_since(since, &grid)?;
            let want = tessera::cluster::rendezvous::owner(&r.name, nodes).map(str::to_owned);
            (r.owner() == want).then_some(()).ok_or(format!("{}: owner {:?}, not {want:?}", r.name, r.owner()))
        })
    })
    .await;
    let kill = Instant::now();
    servers[1].kill();
    eventually(LIMIT, "mq1's rooms back on mq0", || {
        rooms.iter().try_for_each(|r| {
            (r.owner().as_deref() == Some("mq0")).then_some(()).ok_or(format!("{}: {:?}", r.name, r.owner()))?;
            if names[2..].contains(&r.name) {
                r.composite_since(kill, &grid)?;
            }
            Ok(())
        })
    })
    .await;
    eprintln!("Mosquitto: kill -9 to both rooms back in {:?}", kill.elapsed());
    for r in &rooms[..2] {
        assert_eq!(r.a.stats().rejoins + r.b.stats().rejoins, 0, "{} stayed on mq0 untouched", r.name);
    }
    for r in rooms {
        r.a.leave().await;
        r.b.leave().await;
    }
}
