//! Routes signaling messages to room tasks, creating rooms on demand and
//! removing them once idle; enforces the per-peer rate limit and the room
//! limit; answers what cannot be routed. On a cluster node it also beats,
//! leaves other nodes' rooms alone, takes over rooms and drains
//! ([`cluster`]).

mod cluster;

use super::events::RoomEvent;
use super::rate::Bucket;
use super::room_task::{too_many_rooms, RoomTask, RoomTracker};
use super::Shared;
use crate::signaling::legacy::{self, Legacy, Outbox};
use crate::signaling::link::LinkEvent;
use crate::signaling::protocol::{
    parse_client, parse_control, ClientMessage, ErrorCode, Inbound, ProtocolError, ServerMessage,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

struct RoomEntry {
    tx: mpsc::Sender<RoomEvent>,
    tracker: Arc<RoomTracker>,
    sent: u64,
    task: tokio::task::JoinHandle<()>,
    /// This node's epoch for the room (cluster nodes only).
    epoch: Option<u64>,
    /// A room taken over stays open this long for its members to rejoin.
    hold_until: Option<Instant>,
}

/// How often the server's presence (with its load) is republished.
const PRESENCE_INTERVAL: Duration = Duration::from_secs(5);

pub(super) struct Dispatcher {
    shared: Arc<Shared>,
    rooms: HashMap<String, RoomEntry>,
    buckets: HashMap<(String, String), Bucket>,
    idle_tx: mpsc::Sender<String>,
    idle_rx: mpsc::Receiver<String>,
    /// The broker link was ready once (later readies are reconnects).
    was_ready: bool,
    /// This node's view of the cluster (`--cluster`).
    cluster: Option<crate::cluster::Cluster>,
    /// The cluster's clock starts here.
    start: Instant,
    /// Draining (SIGTERM on a cluster node) until then at the latest.
    drain_until: Option<Instant>,
    /// Cluster nodes alive at the last heartbeat tick, and whether the
    /// node had settled then (for the log).
    alive: (std::collections::BTreeSet<String>, bool),
    /// A cluster node's heartbeat connection, and its events.
    beats: Option<(crate::signaling::link::Link, mpsc::Receiver<LinkEvent>)>,
    /// The newest heartbeat, which [`cluster::beat_sender`] publishes every
    /// beat interval from a task of its own.
    beat_now: tokio::sync::watch::Sender<Option<(Instant, Vec<u8>)>>,
    /// Whether the signaling and heartbeat connections are up.
    links_up: (bool, bool),
}

impl Dispatcher {
    pub(super) fn new(
        shared: Arc<Shared>,
        beats: Option<(crate::signaling::link::Link, mpsc::Receiver<LinkEvent>)>,
    ) -> Self {
        let (idle_tx, idle_rx) = mpsc::channel(256);
        let cluster = shared.config.cluster.map(|c| {
            crate::cluster::Cluster::new(
                crate::cluster::ClusterConfig {
                    node: shared.config.server_id.clone(),
                    weight: c.weight,
                    beat_interval: c.beat,
                    dead_after: c.dead_after,
                },
                Duration::ZERO,
            )
        });
        // It hears the others once both its connections are up.
        let mut cluster = cluster;
        if let Some(c) = cluster.as_mut() {
            c.deaf();
        }
        Self {
            shared,
            rooms: HashMap::new(),
            buckets: HashMap::new(),
            idle_tx,
            idle_rx,
            was_ready: false,
            cluster,
            start: Instant::now(),
            drain_until: None,
            alive: Default::default(),
            links_up: (false, beats.is_none()),
            beats,
            beat_now: tokio::sync::watch::channel(None).0,
        }
    }

    pub(super) async fn run(mut self, mut events: mpsc::Receiver<LinkEvent>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        let mut presence = tokio::time::interval(PRESENCE_INTERVAL);
        let mut figures = tokio::time::interval(Duration::from_secs(1));
        let beat_every = self.shared.config.cluster.map_or(Duration::from_secs(3600), |c| c.beat);
        let mut beat = tokio::time::interval(beat_every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let beat_sender = self.cluster.as_ref().map(|c| {
            let link = self.beats.as_ref().map_or(&self.shared.link, |(l, _)| l).clone();
            let topic = self.shared.topics.beat(c.node());
            tokio::spawn(cluster::beat_sender(link, topic, beat_every, self.beat_now.subscribe()))
        });
        loop {
            tokio::select! {
                _ = &mut shutdown, if self.drain_until.is_none() => {
                    if !self.start_drain().await {
                        break;
                    }
                }
                _ = beat.tick(), if self.cluster.is_some() => {
                    if self.cluster_tick().await {
                        break;
                    }
                }
                ev = events.recv() => match ev {
                    Some(LinkEvent::Message { topic, payload }) => self.message(&topic, &payload).await,
                    Some(LinkEvent::Ready) => {
                        if std::mem::replace(&mut self.was_ready, true) {
                            super::metrics::broker_reconnect();
                        }
                        self.links_changed(Some(true), None);
                        for room in self.rooms.values_mut() {
                            room.sent += 1;
                            let _ = room.tx.send(RoomEvent::Resync).await;
                        }
                    }
                    Some(LinkEvent::Down(why)) => {
                        tracing::warn!(%why, "broker connection lost; reconnecting");
                        self.links_changed(Some(false), None);
                    }
                    None => break,
                },
                Some(ev) = next_beat(&mut self.beats) => match ev {
                    LinkEvent::Message { topic, payload } => self.message(&topic, &payload).await,
                    LinkEvent::Ready => self.links_changed(None, Some(true)),
                    LinkEvent::Down(why) => {
                        tracing::warn!(%why, "heartbeat connection lost; reconnecting");
                        self.links_changed(None, Some(false));
                    }
                },
                Some(room) = self.idle_rx.recv() => self.maybe_remove(&room),
                _ = figures.tick() => super::metrics::server(self.rooms.len()),
                _ = presence.tick() => {
                    self.publish_presence().await;
                    // Sessions end asynchronously: hand back what they freed.
                    super::memory::trim();
                }
                _ = sweep.tick() => {
                    let now = Instant::now();
                    self.buckets.retain(|_, b| !b.idle_since(now, Duration::from_secs(60)));
                    let finished: Vec<String> = self.rooms.iter().filter(|(_, r)| r.task.is_finished()).map(|(k, _)| k.clone()).collect();
                    for room in finished {
                        self.rooms.remove(&room);
                    }
                    let idle: Vec<String> = self.rooms.keys().cloned().collect();
                    for room in idle {
                        self.maybe_remove(&room);
                    }
                }
            }
        }
        // A node that stops beats no more (its will or its clean exit follows).
        if let Some(task) = beat_sender {
            task.abort();
        }
        self.shutdown().await;
    }

    /// Presence with load figures, for monitoring: rooms, members (and
    /// sessions being set up), tokio tasks alive, heap bytes in use.
    async fn publish_presence(&self) {
        let members: usize = self.rooms.values().map(|r| r.tracker.members.load(Ordering::Relaxed)).sum();
        let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let heap = super::memory::heap_in_use();
        let payload = serde_json::json!({
            "online": true, "rooms": self.rooms.len(), "members": members, "tasks": tasks, "heap_bytes": heap,
        });
        let topic = self.shared.topics.server(&self.shared.config.server_id);
        let _ = self.shared.link.publish(&topic, payload.to_string().into_bytes(), true).await;
    }

    async fn shutdown(&mut self) {
        tracing::info!(rooms = self.rooms.len(), "shutting down");
        let mut waits = Vec::new();
        for (_, room) in self.rooms.drain() {
            let (done, wait) = oneshot::channel();
            if room.tx.send(RoomEvent::Shutdown(done)).await.is_ok() {
                waits.push((wait, room.task));
            }
        }
        for (wait, task) in waits {
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Removes an idle room if nothing is on its way to it.
    fn maybe_remove(&mut self, room: &str) {
        let Some(entry) = self.rooms.get(room) else { return };
        if entry.hold_until.is_some_and(|t| Instant::now() < t) {
            return; // taken over: its members have a moment to rejoin
        }
        let processed = entry.tracker.processed.load(Ordering::Acquire);
        let members = entry.tracker.members.load(Ordering::Acquire);
        tracing::trace!(room, processed, sent = entry.sent, members, "idle room?");
        if processed == entry.sent && members == 0 {
            // Nothing is on its way to it and nobody is in it: close it. A
            // message for this room from now on starts a new task.
            if let Some(entry) = self.rooms.remove(room) {
                // A claim published for members who never came back is
                // cleared too (the room itself clears it when its last
                // member leaves).
                let clear =
                    entry.hold_until.is_some().then(|| (self.shared.link.clone(), self.shared.topics.state(room)));
                tokio::spawn(async move {
                    let _ = entry.tx.send(RoomEvent::Close).await;
                    if let Some((link, topic)) = clear {
                        let _ = link.publish(&topic, Vec::new(), true).await;
                    }
                });
            }
        }
    }

    async fn refuse(&self, to: Option<Outbox>, e: ProtocolError) {
        tracing::debug!(error = %e, "refused");
        super::metrics::signaling_error(e.code);
        if let Some(to) = to {
            let (topic, payload) = to.encode(&ServerMessage::from(e));
            let _ = self.shared.link.publish(&topic, payload, false).await;
        }
    }

    /// Takes a token from `(room, peer)`'s bucket; refuses (at most once a
    /// second) when there is none.
    async fn within_rate(&mut self, room: &str, peer: &str, to: &Outbox) -> bool {
        let now = Instant::now();
        let rate = self.shared.config.rate_limit;
        let bucket = self.buckets.entry((room.to_owned(), peer.to_owned())).or_insert_with(|| Bucket::new(now, rate));
        if bucket.take(now, rate) {
            return true;
        }
        if bucket.last_refusal.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            bucket.last_refusal = Some(now);
            let e =
                ProtocolError::new(ErrorCode::RateLimited, format!("more than {rate} messages a second; slow down"));
            self.refuse(Some(to.clone()), e).await;
        }
        false
    }

    async fn message(&mut self, topic: &str, payload: &[u8]) {
        if self.shared.config.legacy_topic.as_deref() == Some(topic) {
            return self.legacy(topic, payload).await;
        }
        let topics = self.shared.topics.clone();
        let native = |topic: String| Outbox::Native { topic, epoch: None, offer: None };
        let target = match topics.parse(topic) {
            Ok(t) => t,
            Err((answer, e)) => {
                // On a cluster, one node answers: the topic's rendezvous winner.
                if self.cluster.as_ref().is_some_and(|c| !c.rendezvous(self.start.elapsed(), topic)) {
                    return;
                }
                return self.refuse(answer.map(native), e).await;
            }
        };
        match target {
            Inbound::State { room } => self.room_state(&room, payload),
            Inbound::Presence { node } => self.presence(&node, payload),
            Inbound::Beat { node } => self.beat(&node, payload),
            Inbound::Peer { room, peer } => {
                if payload.is_empty() {
                    return; // an empty (retained-clearing) publish is not a message
                }
                if !self.responsible(&room) {
                    return self.knock(&room, &peer, payload);
                }
                let outbox = native(topics.peer_out(&room, &peer));
                if !self.within_rate(&room, &peer, &outbox).await {
                    return;
                }
                let msg = match parse_client(payload) {
                    Ok(m) => m,
                    Err(e) => return self.refuse(Some(outbox), e).await,
                };
                let creates = matches!(msg, ClientMessage::Offer { .. } | ClientMessage::Candidate(_));
                self.route(&room, creates, Some(outbox.clone()), RoomEvent::Client { peer, msg, outbox }).await;
            }
            Inbound::Control { room } => {
                if !self.responsible(&room) {
                    return;
                }
                let errors = native(topics.control_errors(&room));
                let msg = match parse_control(payload) {
                    Ok(m) => m,
                    Err(e) => return self.refuse(Some(errors), e).await,
                };
                let answer = msg.from.as_ref().map(|f| native(topics.peer_out(&room, f))).unwrap_or(errors);
                if self.rooms.contains_key(&room) {
                    self.route(&room, false, Some(answer), RoomEvent::Control(msg)).await;
                } else {
                    let e = ProtocolError::new(ErrorCode::UnknownPeer, format!("room {room} has nobody in it"));
                    self.refuse(Some(answer), e).await;
                }
            }
        }
    }

    /// A message on the seed protocol's shared topic (`--legacy-topic`).
    async fn legacy(&mut self, topic: &str, payload: &[u8]) {
        let server = self.shared.config.server_id.clone();
        let outbox =
            |peer: &str| Outbox::Legacy { topic: topic.to_owned(), server: server.clone(), peer: peer.to_owned() };
        match legacy::parse(payload, &server) {
            Legacy::Ignore => {}
            Legacy::Refused { peer: Some(peer), error } => self.refuse(Some(outbox(&peer)), error).await,
            Legacy::Refused { peer: None, error } => tracing::debug!(%error, "legacy message refused"),
            Legacy::Message { peer, msg } => {
                let room = legacy::room_for(topic);
                let to = outbox(&peer);
                if !self.within_rate(&room, &peer, &to).await {
                    return;
                }
                let creates = matches!(msg, ClientMessage::Offer { .. } | ClientMessage::Candidate(_));
                self.route(&room, creates, Some(to.clone()), RoomEvent::Client { peer, msg, outbox: to }).await;
            }
        }
    }

    /// Sends `ev` to `room`'s task, starting one if `create` and allowed.
    async fn route(&mut self, room: &str, create: bool, answer: Option<Outbox>, ev: RoomEvent) {
        if !self.rooms.contains_key(room) {
            if !create {
                return;
            }
            let max = self.shared.config.max_rooms;
            if self.rooms.len() >= max {
                return self.refuse(answer, too_many_rooms(max)).await;
            }
            let epoch = self.new_epoch(room);
            match RoomTask::spawn(room, self.shared.clone(), self.idle_tx.clone(), epoch) {
                Ok((tx, tracker, task)) => {
                    let entry = RoomEntry { tx, tracker, sent: 0, task, epoch, hold_until: None };
                    self.rooms.insert(room.to_owned(), entry);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a room");
                    return self.refuse(answer, ProtocolError::new(ErrorCode::Internal, "cannot start the room")).await;
                }
            }
        }
        let Some(entry) = self.rooms.get_mut(room) else { return };
        entry.sent += 1;
        if entry.tx.send(ev).await.is_err() {
            // The task is gone (it panicked or ended): forget it; the
            // client's next message starts a fresh room.
            self.rooms.remove(room);
            self.refuse(answer, ProtocolError::new(ErrorCode::Internal, "room restarted; send again")).await;
        }
    }
}

/// The next event of a cluster node's heartbeat connection (never, outside a cluster).
async fn next_beat(beats: &mut Option<(crate::signaling::link::Link, mpsc::Receiver<LinkEvent>)>) -> Option<LinkEvent> {
    match beats {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}
