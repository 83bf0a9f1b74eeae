//! The dispatcher's cluster edge (`--cluster`): heartbeats out, beats,
//! presence and room claims in, to [`crate::cluster::Cluster`]; carries
//! out what it decides: leave a room to its owner, take rooms over and
//! tell their members to rejoin, yield a room to a higher epoch, drain.

use super::{Dispatcher, RoomEntry};
use crate::cluster::{next_epoch, Beat, Claim, Takeover};
use crate::server::events::RoomEvent;
use crate::server::room_task::RoomTask;
use crate::signaling::legacy::Outbox;
use crate::signaling::link::Link;
use crate::signaling::protocol::{parse_client, ClientMessage, Control, ControlMessage, ServerMessage};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// A room taken over stays open this long for its members to rejoin.
const REJOIN_HOLD: Duration = Duration::from_secs(15);
/// A draining node waits at most this long for its rooms to move.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// A dispatcher whose last heartbeat is this old no longer beats.
const WEDGED: Duration = Duration::from_secs(10);

impl Dispatcher {
    fn cluster_now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether this node handles `room`'s messages: it serves the room, or
    /// is the node to start it (always, outside a cluster).
    pub(super) fn responsible(&self, room: &str) -> bool {
        match &self.cluster {
            None => true,
            Some(c) => self.rooms.contains_key(room) || c.serves(self.cluster_now(), room),
        }
    }

    /// A message for a room another node serves (or nobody yet): remember
    /// who knocked, in case the room comes here.
    pub(super) fn knock(&mut self, room: &str, peer: &str, payload: &[u8]) {
        let now = self.cluster_now();
        let Some(cluster) = self.cluster.as_mut() else { return };
        match parse_client(payload) {
            Ok(ClientMessage::Offer { .. } | ClientMessage::Candidate(_)) => cluster.heard(now, room, peer),
            Ok(ClientMessage::Leave { .. }) => cluster.left(room, peer),
            Err(_) => {}
        }
    }

    /// The epoch for a room this node starts (cluster nodes only).
    pub(super) fn new_epoch(&self, room: &str) -> Option<u64> {
        let cluster = self.cluster.as_ref()?;
        let after = cluster.claim(room).map_or(0, |c| c.epoch);
        Some(next_epoch(after, wall_ms()))
    }

    /// A room's retained state: note its claim; yield the room if another
    /// node's claim wins over this node's.
    pub(super) fn room_state(&mut self, room: &str, payload: &[u8]) {
        let Some(cluster) = self.cluster.as_mut() else { return };
        let claim = if payload.is_empty() { None } else { Claim::from_state(payload) };
        cluster.claim_seen(room, claim);
        self.yield_if_beaten(room);
    }

    /// Yields `room` if another node's claim wins over this node's.
    fn yield_if_beaten(&mut self, room: &str) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        let Some(epoch) = self.rooms.get(room).and_then(|e| e.epoch) else { return };
        if let Some(winner) = cluster.beaten(room, epoch) {
            tracing::info!(room, owner = %winner.owner, epoch = winner.epoch, mine = epoch, "room moved: yielding");
            super::super::metrics::room_moved();
            if let Some(entry) = self.rooms.remove(room) {
                tokio::spawn(async move {
                    let _ = entry.tx.send(RoomEvent::Moved).await;
                });
            }
        }
    }

    /// A server's presence: offline counts at once (a will, or a clean exit).
    pub(super) fn presence(&mut self, node: &str, payload: &[u8]) {
        let Some(cluster) = self.cluster.as_mut() else { return };
        let online = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("online").and_then(|o| o.as_bool()));
        if online == Some(false) && node != cluster.node() {
            tracing::info!(node, "node offline");
            cluster.offline(node);
        }
    }

    /// A node's heartbeat.
    pub(super) fn beat(&mut self, node: &str, payload: &[u8]) {
        let now = self.cluster_now();
        let Some(cluster) = self.cluster.as_mut() else { return };
        match serde_json::from_slice::<Beat>(payload) {
            Ok(beat) => {
                let rooms: Vec<String> = beat.claims.iter().map(|(r, _)| r.clone()).collect();
                cluster.beat(now, node, beat);
                for room in rooms {
                    self.yield_if_beaten(&room);
                }
            }
            Err(e) => tracing::debug!(node, error = %e, "unreadable heartbeat"),
        }
    }

    /// Shutdown asked for: a cluster node with rooms and somewhere to send
    /// them drains first (returns true); anything else stops at once.
    pub(super) async fn start_drain(&mut self) -> bool {
        let now = self.cluster_now();
        let busy = self.rooms.values().any(|r| r.tracker.members.load(Ordering::Acquire) > 0);
        let Some(cluster) = self.cluster.as_mut() else { return false };
        if !busy || cluster.others(now) == 0 {
            return false;
        }
        cluster.drain();
        self.drain_until = Some(Instant::now() + DRAIN_LIMIT);
        tracing::info!(rooms = self.rooms.len(), "draining: handing rooms over");
        self.publish_beat();
        true
    }

    /// Every heartbeat interval: beat, take rooms over; while draining,
    /// whether it is done (returns true to stop).
    pub(super) async fn cluster_tick(&mut self) -> bool {
        self.publish_beat();
        let now = self.cluster_now();
        self.log_membership(now);
        let rooms = &self.rooms;
        let takeovers = match self.cluster.as_mut() {
            Some(c) => c.takeovers(now, |room| rooms.contains_key(room)),
            None => Vec::new(),
        };
        for t in takeovers {
            self.take_over(t).await;
        }
        match self.drain_until {
            None => false,
            Some(limit) => {
                let busy = self.rooms.values().filter(|r| r.tracker.members.load(Ordering::Acquire) > 0).count();
                if busy == 0 {
                    tracing::info!("drained: every room moved");
                } else if Instant::now() >= limit {
                    tracing::warn!(rooms = busy, "drain limit reached; closing the rest");
                }
                busy == 0 || Instant::now() >= limit
            }
        }
    }

    /// A connection went down or came back (`signaling`, `beats`: its new
    /// state). While either is down the node's view of the others is
    /// stale: it takes nothing until it has listened again for a while.
    pub(super) fn links_changed(&mut self, signaling: Option<bool>, beats: Option<bool>) {
        let was = self.links_up.0 && self.links_up.1;
        self.links_up = (signaling.unwrap_or(self.links_up.0), beats.unwrap_or(self.links_up.1));
        let up = self.links_up.0 && self.links_up.1;
        let now = self.cluster_now();
        match (&mut self.cluster, was, up) {
            (Some(c), false, true) => c.listening(now),
            (Some(c), true, false) => c.deaf(),
            _ => {}
        }
    }

    /// Logs nodes coming and going, and when this node starts serving.
    fn log_membership(&mut self, now: Duration) {
        let Some(cluster) = &self.cluster else { return };
        let alive: std::collections::BTreeSet<String> =
            cluster.known(now).into_iter().filter(|(_, up, _)| *up).map(|(n, _, _)| n.to_owned()).collect();
        for n in alive.difference(&self.alive.0) {
            tracing::info!(node = %n, "node up");
        }
        for n in self.alive.0.difference(&alive) {
            tracing::warn!(node = %n, "node down");
        }
        let settled = cluster.settled(now);
        if settled && !self.alive.1 {
            tracing::info!(nodes = alive.len(), "cluster settled: serving rooms");
        }
        self.alive = (alive, settled);
    }

    /// Hands the newest heartbeat to [`beat_sender`].
    fn publish_beat(&self) {
        let Some(cluster) = &self.cluster else { return };
        let members: usize = self.rooms.values().map(|r| r.tracker.members.load(Ordering::Relaxed)).sum();
        let beat = Beat {
            weight: cluster.config().weight,
            draining: cluster.draining(),
            rooms: self.rooms.len(),
            members,
            capacity: self.shared.config.max_rooms,
            claims: self.rooms.iter().filter_map(|(room, e)| e.epoch.map(|ep| (room.clone(), ep))).collect(),
        };
        self.beat_now.send_replace(Some((Instant::now(), serde_json::to_vec(&beat).unwrap_or_default())));
    }

    /// Starts `t.room` here with an epoch above the last claim's, publishes
    /// the claim and tells its members to rejoin.
    async fn take_over(&mut self, t: Takeover) {
        if self.rooms.len() >= self.shared.config.max_rooms {
            tracing::warn!(room = %t.room, "cannot take the room over: this node has the most rooms allowed");
            return;
        }
        let epoch = next_epoch(t.after_epoch, wall_ms());
        let (tx, tracker, task) = match RoomTask::spawn(&t.room, self.shared.clone(), self.idle_tx.clone(), Some(epoch))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(room = %t.room, error = %e, "cannot take the room over");
                return;
            }
        };
        tracing::info!(room = %t.room, from = ?t.from, epoch, members = t.peers.len(), "taking the room over");
        super::super::metrics::room_taken_over();
        // The room keeps its layout and its recording (a new file).
        let mut sent = 0;
        let carried =
            t.layout.iter().map(|l| Control::Layout(l.clone())).chain(t.recording.then_some(Control::Record(true)));
        for command in carried {
            if tx.send(RoomEvent::Control(ControlMessage { from: None, command })).await.is_ok() {
                sent += 1;
            }
        }
        let _ = tx.send(RoomEvent::Claim).await;
        let hold_until = Some(Instant::now() + REJOIN_HOLD);
        self.rooms.insert(t.room.clone(), RoomEntry { tx, tracker, sent, task, epoch: Some(epoch), hold_until });
        let reason = if t.from.is_some() { "moved" } else { "served" };
        for peer in &t.peers {
            let out =
                Outbox::Native { topic: self.shared.topics.peer_out(&t.room, peer), epoch: Some(epoch), offer: None };
            let (topic, payload) = out.encode(&ServerMessage::Rejoin { reason: reason.into() });
            let _ = self.shared.link.publish(&topic, payload, false).await;
        }
    }
}

/// Publishes the dispatcher's newest heartbeat on `topic` as soon as it
/// changes, and again every `every` when it does not, from a task of its
/// own: a dispatcher waiting on a slow broker (the acks of room claims and
/// rejoins while a broker cluster recovers from a lost node) must not fall
/// silent and be taken for dead while its rooms run. A heartbeat older
/// than [`WEDGED`] is not sent: a dispatcher stuck that long is as good as
/// dead, and its rooms should move.
pub(super) async fn beat_sender(
    link: Link,
    topic: String,
    every: Duration,
    mut beat: watch::Receiver<Option<(Instant, Vec<u8>)>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = beat.changed() => {
                if changed.is_err() {
                    return;
                }
                tick.reset();
            }
        }
        let payload = match &*beat.borrow_and_update() {
            Some((at, payload)) if at.elapsed() < WEDGED => payload.clone(),
            _ => continue,
        };
        let _ = link.publish_at_most_once(&topic, payload).await;
    }
}

/// Milliseconds since the Unix epoch (epochs grow with it).
fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
