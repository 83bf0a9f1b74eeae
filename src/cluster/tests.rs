//! The cluster logic on a virtual clock.

use super::*;

const BEAT: Duration = Duration::from_millis(500);
const DEAD: Duration = Duration::from_secs(2);

fn node(id: &str) -> Cluster {
    Cluster::new(ClusterConfig { node: id.into(), weight: 1.0, beat_interval: BEAT, dead_after: DEAD }, Duration::ZERO)
}

fn beat(draining: bool) -> Beat {
    Beat { weight: 1.0, draining, rooms: 0, members: 0, capacity: 64, claims: Vec::new() }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Nodes a, b, c that all hear each other up to `until`.
fn three(until: Duration) -> Vec<Cluster> {
    let mut nodes = vec![node("a"), node("b"), node("c")];
    let mut t = Duration::ZERO;
    while t <= until {
        for n in &mut nodes {
            for id in ["a", "b", "c"] {
                n.beat(t, id, beat(false));
            }
        }
        t += BEAT;
    }
    nodes
}

fn claim(owner: &str, epoch: u64, peers: &[&str]) -> Claim {
    Claim {
        owner: owner.into(),
        epoch,
        peers: peers.iter().map(|p| p.to_string()).collect(),
        layout: None,
        recording: false,
    }
}

#[test]
fn a_node_serves_nothing_until_it_has_listened() {
    let mut a = node("a");
    a.beat(ms(0), "a", beat(false));
    assert!(!a.serves(ms(1000), "r"), "not settled");
    a.beat(ms(1500), "a", beat(false));
    assert!(a.serves(DEAD, "r"), "alone, settled: every room is its own");
}

#[test]
fn a_node_that_stops_hearing_its_own_beats_takes_nothing_over() {
    // a stalls (its queue unread) past the dead time: when it runs again,
    // every beat it knows is old, its own too. It must not take b's room
    // (b lives), nor serve new ones, until it hears again.
    let b_beat = Beat { claims: vec![("r".into(), 7)], ..beat(false) };
    let mut a = node("a");
    let mut t = Duration::ZERO;
    while t <= ms(3000) {
        a.beat(t, "a", beat(false));
        a.beat(t, "b", b_beat.clone());
        a.beat(t, "c", beat(false));
        t += BEAT;
    }
    a.claim_seen("r", Some(claim("b", 7, &["p"])));
    let stalled = ms(3000) + DEAD + BEAT;
    assert!(a.takeovers(stalled, |_| false).is_empty(), "took a live node's room");
    assert!(!a.serves(stalled, "new"), "served a new room while deaf");
    // Its queue read: beats from everyone, its own included.
    a.beat(stalled, "a", beat(false));
    a.beat(stalled, "b", b_beat);
    a.beat(stalled, "c", beat(false));
    assert!(a.takeovers(stalled, |_| false).is_empty(), "b lives: its room stays");
    // Now b really goes quiet while a hears itself: the room goes to the
    // rendezvous winner of a and c.
    let mut t = stalled;
    while t <= stalled + DEAD + BEAT {
        t += BEAT;
        a.beat(t, "a", beat(false));
        a.beat(t, "c", beat(false));
    }
    let taken = a.takeovers(t, |_| false);
    assert_eq!(taken.iter().any(|o| o.room == "r"), a.rendezvous(t, "r"), "{taken:?}");
}

#[test]
fn exactly_one_node_serves_each_new_room() {
    let nodes = three(ms(3000));
    let now = ms(3000);
    let mut per_node = [0; 3];
    for i in 0..60 {
        let room = format!("room{i}");
        let servers: Vec<usize> = (0..3).filter(|&n| nodes[n].serves(now, &room)).collect();
        assert_eq!(servers.len(), 1, "{room}: {servers:?}");
        per_node[servers[0]] += 1;
    }
    assert!(per_node.iter().all(|&c| c > 5), "{per_node:?}");
}

#[test]
fn a_claim_by_a_live_node_sticks_when_a_node_joins() {
    let mut nodes = three(ms(3000));
    // Rooms claimed by their rendezvous owners among a, b, c.
    let now = ms(3000);
    let rooms: Vec<String> = (0..40).map(|i| format!("room{i}")).collect();
    let mut owners = Vec::new();
    for room in &rooms {
        let owner = ["a", "b", "c"].into_iter().zip(&nodes).find(|(_, n)| n.serves(now, room)).unwrap().0;
        owners.push(owner);
        for n in &mut nodes {
            n.claim_seen(room, Some(claim(owner, 1, &["p1", "p2"])));
        }
    }
    // d joins: a, b and c hear it; d hears everyone and every claim.
    let mut d = node("d");
    let mut t = now;
    while t <= now + ms(3000) {
        for n in nodes.iter_mut().chain(std::iter::once(&mut d)) {
            for id in ["a", "b", "c", "d"] {
                // Each node's beat lists the rooms it serves.
                let mut b = beat(false);
                b.claims = rooms.iter().zip(&owners).filter(|(_, o)| **o == id).map(|(r, _)| (r.clone(), 1)).collect();
                n.beat(t, id, b);
            }
        }
        t += BEAT;
    }
    for room in &rooms {
        d.claim_seen(room, Some(nodes[0].claim(room).unwrap().clone()));
    }
    let later = now + ms(3000);
    for (room, owner) in rooms.iter().zip(&owners) {
        assert!(!d.serves(later, room), "{room} is {owner}'s live call");
    }
    assert!(d.takeovers(later, |_| false).is_empty());
    // New rooms reach d.
    assert!((0..40).any(|i| d.serves(later, &format!("new{i}"))));
}

#[test]
fn a_dead_owners_rooms_go_to_one_survivor_with_their_members() {
    let mut nodes = three(ms(3000));
    let rooms: Vec<String> = (0..30).map(|i| format!("room{i}")).collect();
    for room in &rooms {
        for n in &mut nodes {
            n.claim_seen(room, Some(claim("c", 7, &["x", "y"])));
        }
    }
    // c stops beating after 3000 ms; a and b go on.
    let mut t = ms(3500);
    let mut taken: Vec<(String, Takeover)> = Vec::new();
    while t <= ms(7000) {
        for n in nodes.iter_mut().take(2) {
            n.beat(t, "a", beat(false));
            n.beat(t, "b", beat(false));
        }
        for n in nodes.iter_mut().take(2) {
            let who = n.node().to_owned();
            taken.extend(n.takeovers(t, |_| false).into_iter().map(|x| (who.clone(), x)));
        }
        if !taken.is_empty() {
            // Detected within dead_after of the last beat.
            assert!(t <= ms(3000) + DEAD + BEAT, "taken at {t:?}");
            break;
        }
        t += BEAT;
    }
    assert_eq!(taken.len(), rooms.len(), "every room once: {taken:?}");
    for (_, x) in &taken {
        assert_eq!(x.from.as_deref(), Some("c"));
        assert_eq!(x.after_epoch, 7);
        assert_eq!(x.peers, ["x", "y"]);
    }
    assert!(taken.iter().any(|(w, _)| w == "a") && taken.iter().any(|(w, _)| w == "b"), "spread over survivors");
    // Not handed out twice.
    assert!(nodes[0].takeovers(t, |_| false).is_empty());
}

#[test]
fn a_will_counts_at_once() {
    let mut nodes = three(ms(3000));
    nodes[0].claim_seen("r", Some(claim("c", 1, &["x"])));
    nodes[0].offline("c");
    assert!(nodes[0].eligible(ms(3000)).iter().all(|(n, _)| *n != "c"));
    // With c gone, r goes to a or b; a takes it over only if it wins.
    let a_wins = rendezvous::owner("r", [("a", 1.0), ("b", 1.0)]) == Some("a");
    assert_eq!(nodes[0].takeovers(ms(3000), |_| false).len(), usize::from(a_wins));
}

#[test]
fn a_draining_node_takes_nothing_and_loses_its_rooms() {
    let mut nodes = three(ms(3000));
    for n in &mut nodes {
        n.claim_seen("r", Some(claim("a", 3, &["x"])));
        n.beat(ms(3100), "a", beat(true));
    }
    nodes[0].drain();
    assert!(!nodes[0].serves(ms(3100), "r"));
    assert!(!nodes[0].serves(ms(3100), "fresh"));
    assert!(nodes[0].takeovers(ms(3100), |_| false).is_empty());
    let takers: Vec<usize> = (1..3).filter(|&i| !nodes[i].takeovers(ms(3100), |_| false).is_empty()).collect();
    assert_eq!(takers.len(), 1, "one of b and c takes r: {takers:?}");
}

#[test]
fn the_higher_epoch_wins_and_ties_go_by_id() {
    let mut a = node("a");
    a.claim_seen("r", Some(claim("b", 5, &[])));
    assert!(a.beaten("r", 4).is_some());
    assert!(a.beaten("r", 6).is_none());
    assert!(a.beaten("r", 5).is_some(), "b > a at equal epochs");
    a.claim_seen("r", Some(claim("b", 3, &[])));
    assert_eq!(a.claim("r").map(|c| c.epoch), Some(5), "a stale claim delivered late is ignored");
    a.claim_seen("r", Some(claim("a", 9, &[])));
    assert!(a.beaten("r", 1).is_none(), "its own claim never beats it");
    a.claim_seen("r", None);
    a.claim_seen("r", Some(claim("b", 2, &[])));
    assert_eq!(a.claim("r").map(|c| c.epoch), Some(2), "after a clear, any claim counts");
    assert_eq!(next_epoch(5, 3), 6);
    assert_eq!(next_epoch(5, 1_000), 1_000);
}

#[test]
fn knocks_on_an_unserved_room_are_remembered_for_the_taker() {
    let mut nodes = three(ms(3000));
    // c owns r but dies before it publishes a claim; p knocked meanwhile.
    for n in &mut nodes {
        n.heard(ms(3000), "r", "p");
        n.heard(ms(3000), "r", "gone");
        n.left("r", "gone");
    }
    let c_owns = rendezvous::owner("r", [("a", 1.0), ("b", 1.0), ("c", 1.0)]) == Some("c");
    let t = ms(3000) + DEAD + BEAT;
    for n in nodes.iter_mut().take(2) {
        n.beat(t, "a", beat(false));
        n.beat(t, "b", beat(false));
    }
    let all: Vec<Takeover> = nodes.iter_mut().take(2).flat_map(|n| n.takeovers(t, |_| false)).collect();
    if c_owns {
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].peers, ["p"]);
        assert_eq!(all[0].from, None);
    } else {
        // Its owner is alive: the knock was answered there.
        assert!(all.is_empty() || all.iter().all(|x| x.peers == ["p"]));
    }
    // Knocks expire.
    let mut lone = node("a");
    lone.heard(ms(0), "q", "p");
    lone.beat(ms(20_000), "a", beat(false));
    assert!(lone.takeovers(ms(20_000), |_| false).is_empty());
}

#[test]
fn claims_read_from_room_states() {
    let state = br#"{"room":"r","owner":"n2","epoch":17,"layout":"pip","recording":true,"participants":[{"peer":"a"},{"peer":"b"}]}"#;
    let mut expected = claim("n2", 17, &["a", "b"]);
    expected.layout = Some("pip".into());
    expected.recording = true;
    assert_eq!(Claim::from_state(state), Some(expected));
    assert_eq!(Claim::from_state(br#"{"room":"r","participants":[]}"#), None, "no owner: not a cluster node");
    assert_eq!(Claim::from_state(b"\xff junk"), None);
}

#[test]
fn a_node_that_lost_the_broker_listens_again_before_it_takes_anything() {
    let mut nodes = three(ms(3000));
    nodes[0].claim_seen("r", Some(claim("b", 1, &["x"])));
    nodes[0].deaf();
    // Off the bus, every beat goes stale: it must not take b's room.
    assert!(nodes[0].takeovers(ms(9000), |_| false).is_empty());
    nodes[0].listening(ms(9000));
    assert!(nodes[0].takeovers(ms(9500), |_| false).is_empty(), "not settled yet");
    nodes[0].beat(ms(9500), "b", beat(false));
    nodes[0].beat(ms(10_500), "b", beat(false));
    assert!(nodes[0].takeovers(ms(11_000), |_| false).is_empty(), "b is alive");
}

#[test]
fn a_claim_in_a_heartbeat_counts_like_the_retained_one() {
    let mut a = node("a");
    a.claim_seen("r", Some(claim("a", 5, &["x", "y"])));
    let mut b_beat = beat(false);
    b_beat.claims = vec![("r".into(), 9), ("q".into(), 2)];
    a.beat(ms(0), "b", b_beat);
    let r = a.claim("r").unwrap();
    assert_eq!((r.owner.as_str(), r.epoch), ("b", 9), "b's newer claim wins over a's");
    assert_eq!(r.peers, ["x", "y"], "the members known stay");
    assert!(a.beaten("r", 5).is_some(), "a yields r");
    assert_eq!(a.claim("q").map(|c| c.epoch), Some(2));
    // An older claim in a beat changes nothing.
    let mut old = beat(false);
    old.claims = vec![("r".into(), 1)];
    a.beat(ms(500), "c", old);
    assert_eq!(a.claim("r").map(|c| c.owner.as_str()), Some("b"));
}

#[test]
fn a_room_its_owner_no_longer_lists_belongs_to_nobody() {
    let mut nodes = three(ms(3000));
    // b claims r (members x, y) but its beats stop listing it (b restarted).
    nodes[0].claim_seen("r", Some(claim("b", 4, &["x", "y"])));
    nodes[0].beat(ms(3100), "b", beat(false));
    assert_eq!(nodes[0].claim("r").map(|c| c.owner.as_str()), Some(""));
    let a_wins = rendezvous::owner("r", [("a", 1.0), ("b", 1.0), ("c", 1.0)]) == Some("a");
    let taken = nodes[0].takeovers(ms(3100), |_| false);
    assert_eq!(taken.len(), usize::from(a_wins), "{taken:?}");
    if let Some(t) = taken.first() {
        assert_eq!(t.peers, ["x", "y"], "the members are told to rejoin");
        assert_eq!(t.after_epoch, 4);
    }
}
