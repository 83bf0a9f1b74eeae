//! Routes signaling messages to room tasks, creating rooms on demand and
//! removing them once idle; enforces the per-peer rate limit and the room
//! limit; answers what cannot be routed.

use super::rate::Bucket;
use super::room_task::{too_many_rooms, RoomEvent, RoomTask, RoomTracker};
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
}

impl Dispatcher {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        let (idle_tx, idle_rx) = mpsc::channel(256);
        Self { shared, rooms: HashMap::new(), buckets: HashMap::new(), idle_tx, idle_rx, was_ready: false }
    }

    pub(super) async fn run(mut self, mut events: mpsc::Receiver<LinkEvent>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        let mut presence = tokio::time::interval(PRESENCE_INTERVAL);
        let mut figures = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                ev = events.recv() => match ev {
                    Some(LinkEvent::Message { topic, payload }) => self.message(&topic, &payload).await,
                    Some(LinkEvent::Ready) => {
                        if std::mem::replace(&mut self.was_ready, true) {
                            super::metrics::broker_reconnect();
                        }
                        for room in self.rooms.values_mut() {
                            room.sent += 1;
                            let _ = room.tx.send(RoomEvent::Resync).await;
                        }
                    }
                    Some(LinkEvent::Down(why)) => tracing::warn!(%why, "broker connection lost; reconnecting"),
                    None => break,
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
        let processed = entry.tracker.processed.load(Ordering::Acquire);
        let members = entry.tracker.members.load(Ordering::Acquire);
        tracing::trace!(room, processed, sent = entry.sent, members, "idle room?");
        if processed == entry.sent && members == 0 {
            // Nothing is on its way to it and nobody is in it: close it. A
            // message for this room from now on starts a new task.
            if let Some(entry) = self.rooms.remove(room) {
                tokio::spawn(async move {
                    let _ = entry.tx.send(RoomEvent::Close).await;
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
        let native = |topic: String| Outbox::Native { topic };
        let target = match topics.parse(topic) {
            Ok(t) => t,
            Err((answer, e)) => return self.refuse(answer.map(native), e).await,
        };
        match target {
            Inbound::Peer { room, peer } => {
                if payload.is_empty() {
                    return; // an empty (retained-clearing) publish is not a message
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
            match RoomTask::spawn(room, self.shared.clone(), self.idle_tx.clone()) {
                Ok((tx, tracker, task)) => {
                    self.rooms.insert(room.to_owned(), RoomEntry { tx, tracker, sent: 0, task });
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
