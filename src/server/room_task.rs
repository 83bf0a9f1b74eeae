//! The task that owns one room: its [`Room`] state machine, its members'
//! sessions and its media threads (views, audio mixer). Everything that
//! happens to the room arrives here as a [`RoomEvent`]; the room's outputs
//! are carried out here.

use super::events::{LinkReport, RoomEvent, SessionEvent};
use super::session::{self, SessionHandle, SessionStart, MAX_PENDING_CANDIDATES};
use super::Shared;
use crate::bwe::tiers::TierPlan;
use crate::layout::Layout;
use crate::peer::sdp::inspect_offer;
use crate::pipeline::audio::AudioMixer;
use crate::pipeline::scene::{SceneSnapshot, SharedScene, Tile};
use crate::pipeline::view::View;
use crate::room::{Join, Leave, Output, Role, Room, RoomConfig, Scene, ViewKey, RECORDER};
use crate::signaling::legacy::Outbox;
use crate::signaling::protocol::{
    Candidate, ClientMessage, Control, ControlMessage, DownstreamState, ErrorCode, ProtocolError, ServerMessage,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Inbox size of a room task.
pub const INBOX: usize = 256;
/// A leave is carried out once the member's media has stopped this long.
const LEAVE_CONFIRM: Duration = Duration::from_millis(250);
/// A leave whose member keeps sending media this long is ignored.
const LEAVE_DOUBT: Duration = Duration::from_secs(5);
/// A member who sends no media (a viewer) counts as there while its RTCP
/// is this fresh: receivers report about once a second.
const RTCP_QUIET: Duration = Duration::from_millis(2500);
/// An explicit leave this soon after the server's broker link came back
/// is doubted like a last will: clients of older versions sent wills that
/// look like explicit leaves, and a restarted broker replays them now.
const LINK_BACK_DOUBT: Duration = Duration::from_secs(10);
/// How long candidates wait for their offer.
const PENDING_CANDIDATES_KEPT: Duration = Duration::from_secs(5);

/// Counters the dispatcher reads to know when a room may be removed.
#[derive(Default)]
pub struct RoomTracker {
    /// Dispatcher events the room task has finished handling.
    pub processed: AtomicU64,
    /// Members plus sessions being negotiated.
    pub members: AtomicUsize,
}

struct Member {
    session: SessionHandle,
    outbox: Outbox,
    view: Option<ViewKey>,
    connected: bool,
    /// When it connected, until its second keyframe was asked for.
    connected_at: Option<Instant>,
}

impl Member {
    /// Whether the member is plainly still in the call: its media flows,
    /// or, for one who sends none, its receiver reports still come.
    fn still_there(&self) -> bool {
        if self.session.info.sends() {
            self.session.silent_for() < LEAVE_CONFIRM
        } else {
            self.connected && self.session.rtcp_silent_for() < RTCP_QUIET
        }
    }
}

pub(super) struct RoomTask {
    room: Room,
    shared: Arc<Shared>,
    inbox_tx: mpsc::Sender<RoomEvent>,
    members: HashMap<String, Member>,
    /// Members whose last will came while their media still flowed, since when.
    leaving: HashMap<String, Instant>,
    /// When the broker link last came back after a drop.
    link_back: Option<Instant>,
    /// Candidates from peers with no session yet, with when the first came.
    pending: HashMap<String, (Instant, Vec<Candidate>)>,
    generation: u64,
    views: BTreeMap<ViewKey, View>,
    /// Each view's tiers.
    plans: BTreeMap<ViewKey, TierPlan>,
    /// Members' downstream estimates.
    links: HashMap<String, LinkReport>,
    audio: AudioMixer,
    levels: mpsc::Receiver<Vec<(u64, u8)>>,
    scene: SharedScene,
    tracker: Arc<RoomTracker>,
    idle_tx: mpsc::Sender<String>,
    idle_due: bool,
    was_idle: bool,
    start: Instant,
    /// Turns view counters into the means `/metrics` shows.
    meter: super::metrics::RoomMeter,
    ticks: u64,
    /// The room's recording, while it records.
    recorder: Option<super::recorder::Recorder>,
    /// When the recorder last asked for a keyframe (live HLS segments).
    hls_keyframe: Option<Instant>,
    /// This node's fencing epoch for the room (cluster nodes only).
    epoch: Option<u64>,
}

/// A cluster node republishes its rooms' states every this many ticks
/// (of 200 ms: every 5 s).
const STATE_REFRESH_TICKS: u64 = 25;

/// When a newly connected member gets a second keyframe.
const SECOND_KEYFRAME: Duration = Duration::from_secs(1);

/// The recorder's id among the mixer's outputs (members count up from 1).
const RECORDER_AUDIO: u64 = u64::MAX;

impl RoomTask {
    /// Spawns the task for room `id`.
    pub(super) fn spawn(
        id: &str,
        shared: Arc<Shared>,
        idle_tx: mpsc::Sender<String>,
        epoch: Option<u64>,
    ) -> std::io::Result<(mpsc::Sender<RoomEvent>, Arc<RoomTracker>, tokio::task::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(INBOX);
        let (levels_tx, levels) = mpsc::channel(16);
        let audio = AudioMixer::spawn(format!("audio-{id}"), shared.config.audio_bitrate, levels_tx)?;
        let layout = shared.default_layout.clone();
        let config = RoomConfig {
            max_participants: shared.config.max_participants,
            video_bitrate: shared.config.video_bitrate,
            speaker_hold: shared.config.speaker_hold,
            ingest_bitrate: shared.config.ingest_bitrate,
            can_record: shared.config.recordings.is_some(),
            ..RoomConfig::default()
        };
        let mut room = Room::new(id, layout.clone(), shared.layouts.clone(), config);
        if shared.config.record_rooms.iter().any(|r| r == "*" || r == id) {
            room.control(Duration::ZERO, ControlMessage { from: None, command: Control::Record(true) });
        }
        let scene = SharedScene::new(SceneSnapshot {
            layout,
            tiles: Vec::new(),
            speaker: None,
            video_timeout: shared.config.video_timeout,
        });
        let tracker = Arc::new(RoomTracker::default());
        let task = RoomTask {
            room,
            shared,
            inbox_tx: tx.clone(),
            members: HashMap::new(),
            leaving: HashMap::new(),
            link_back: None,
            pending: HashMap::new(),
            generation: 0,
            views: BTreeMap::new(),
            plans: BTreeMap::new(),
            links: HashMap::new(),
            audio,
            levels,
            scene,
            tracker: tracker.clone(),
            idle_tx,
            idle_due: false,
            was_idle: false,
            start: Instant::now(),
            meter: super::metrics::RoomMeter::default(),
            ticks: 0,
            recorder: None,
            hls_keyframe: None,
            epoch,
        };
        let span = tracing::info_span!("room", room = %id);
        let handle = tokio::spawn(tracing::Instrument::instrument(task.run(rx), span));
        Ok((tx, tracker, handle))
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<RoomEvent>) {
        tracing::info!("room opened");
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                ev = inbox.recv() => {
                    let Some(ev) = ev else { break };
                    if matches!(ev, RoomEvent::Close) {
                        break;
                    }
                    if matches!(ev, RoomEvent::Moved) {
                        tracing::info!(members = self.members.len(), "the room moved to another node");
                        let peers: Vec<String> = self.members.keys().cloned().collect();
                        for peer in peers {
                            self.reply(&peer, ServerMessage::Bye { reason: "moved".into() }).await;
                        }
                        break;
                    }
                    if let RoomEvent::Shutdown(done) = ev {
                        let now = self.now();
                        self.room.shutdown(now);
                        self.apply_outputs().await;
                        self.close_all();
                        let _ = done.send(());
                        break;
                    }
                    // Only what the dispatcher sent counts (it compares with what it sent).
                    let counted = matches!(ev, RoomEvent::Client { .. } | RoomEvent::Control(_) | RoomEvent::Resync);
                    self.handle(ev).await;
                    self.apply_outputs().await;
                    if counted {
                        self.tracker.processed.fetch_add(1, Ordering::Release);
                    }
                }
                Some(levels) = self.levels.recv() => {
                    let now = self.now();
                    self.room.levels(now, &levels);
                    self.apply_outputs().await;
                }
                _ = tick.tick() => {
                    self.second_keyframes();
                    self.hls_keyframes();
                    self.check_silence();
                    self.replan();
                    let now = self.now();
                    self.room.tick(now);
                    self.apply_outputs().await;
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(5) {
                        self.figures();
                    }
                    // A cluster node publishes its room's state again now
                    // and then: a broker cluster that lost a node can hand
                    // a reconnecting client an old retained state (NATS
                    // 2.9 does), and the state is also the owner's claim.
                    if self.epoch.is_some() && self.ticks.is_multiple_of(STATE_REFRESH_TICKS) && !self.room.members().is_empty() {
                        let state = self.room.state();
                        self.publish_state(&state).await;
                    }
                }
            }
            self.tracker.members.store(self.members.len() + self.pending.len(), Ordering::Release);
            // Tell the dispatcher only now, with the counters it checks up to
            // date; again after each event while empty (one may have been in
            // flight when it last checked).
            let empty = self.members.is_empty() && self.pending.is_empty() && self.room.members().is_empty();
            let due = std::mem::take(&mut self.idle_due);
            if empty && (due || self.was_idle) {
                let _ = self.idle_tx.try_send(self.room.id().to_owned());
            }
            self.was_idle = empty;
        }
        self.close_all();
        self.figures();
        // Drop the room's threads and buffers before trimming.
        drop(self);
        super::memory::trim();
        tracing::info!("room closed");
    }

    /// Starts or stops the room's recording (the room said so).
    async fn set_recording(&mut self, on: bool) {
        if !on {
            self.stop_recording();
            return;
        }
        let (Some(dir), None) = (self.shared.config.recordings.clone(), self.recorder.as_ref()) else { return };
        let canvas = &self.room.state().canvas;
        let hls = self.shared.hls.clone();
        match super::recorder::Recorder::start(&dir, self.room.id(), canvas.width, canvas.height, hls) {
            Ok(rec) => {
                self.audio.add_output(RECORDER_AUDIO, rec.audio_tx.clone(), false);
                self.recorder = Some(rec);
                super::metrics::recording_started();
                // The room's next Views output subscribes it to the canvas view.
            }
            Err(e) => {
                tracing::error!(error = %e, "recording not started");
                let error = ProtocolError::new(ErrorCode::Internal, format!("recording not started: {e}"));
                let topic = self.shared.topics.control_errors(self.room.id());
                let _ = self.shared.link.publish(&topic, ServerMessage::from(error).to_json(), false).await;
                self.room.control(self.now(), ControlMessage { from: None, command: Control::Record(false) });
            }
        }
    }

    fn stop_recording(&mut self) {
        if let Some(rec) = self.recorder.take() {
            self.audio.remove_output(RECORDER_AUDIO);
            for view in self.views.values() {
                view.unsubscribe(RECORDER);
            }
            tracing::info!(file = %rec.path.display(), "recording stopping");
        }
    }

    fn close_all(&mut self) {
        self.stop_recording();
        self.members.clear();
        self.views.clear();
        self.pending.clear();
        self.tracker.members.store(0, Ordering::Release);
    }

    /// Where messages to `peer` go: its member's outbox, else its v1 topic.
    fn outbox(&self, peer: &str) -> Outbox {
        match self.members.get(peer) {
            Some(m) => m.outbox.clone(),
            None => Outbox::Native {
                topic: self.shared.topics.peer_out(self.room.id(), peer),
                epoch: self.epoch,
                offer: None,
            },
        }
    }

    async fn reply(&self, peer: &str, msg: ServerMessage) {
        self.send(&self.outbox(peer), msg).await;
    }

    async fn send(&self, outbox: &Outbox, msg: ServerMessage) {
        if let ServerMessage::Error { code, .. } = &msg {
            super::metrics::signaling_error(*code);
        }
        let (topic, payload) = outbox.encode(&msg);
        if let Err(e) = self.shared.link.publish(&topic, payload, false).await {
            tracing::debug!(error = %e, "reply not sent");
        }
    }

    async fn handle(&mut self, ev: RoomEvent) {
        let now = self.now();
        if let RoomEvent::Session { peer, generation, event: SessionEvent::Connected } = &ev {
            if let Some(m) = self.members.get_mut(peer).filter(|m| m.session.generation == *generation) {
                m.connected = true;
                m.connected_at = Some(Instant::now());
            }
        }
        match ev {
            RoomEvent::Client { peer, msg, outbox } => match msg {
                ClientMessage::Offer { sdp, name, view, id } => {
                    self.offer(peer, sdp, name, view, outbox.with_epoch(self.epoch).with_offer(id)).await
                }
                ClientMessage::Candidate(c) => match self.members.get(&peer) {
                    Some(m) => m.session.candidate(c),
                    None => {
                        let (_, queue) = self.pending.entry(peer).or_insert_with(|| (Instant::now(), Vec::new()));
                        if queue.len() < MAX_PENDING_CANDIDATES {
                            queue.push(c);
                        }
                    }
                },
                ClientMessage::Leave { will } => {
                    self.pending.remove(&peer);
                    // An explicit leave is honoured at once, whatever the
                    // member's media does. A last will is usually a client
                    // gone away too, but a broker that restarts publishes the
                    // wills of clients that are still in the call: then trust
                    // the media (or a viewer's RTCP) over the signaling while
                    // the member is plainly there, and decide once it stops.
                    let doubtful = will || self.link_back.is_some_and(|t| t.elapsed() < LINK_BACK_DOUBT);
                    let alive = self.members.get(&peer).is_some_and(Member::still_there);
                    if doubtful && alive {
                        tracing::debug!(peer = %peer, will, "leave doubted while the member's media flows");
                        self.room.depart(&peer);
                        self.leaving.entry(peer).or_insert_with(Instant::now);
                    } else {
                        self.leaving.remove(&peer);
                        self.room.leave(now, &peer, Leave::Requested);
                    }
                }
            },
            RoomEvent::Control(msg) => self.room.control(now, msg),
            RoomEvent::Session { peer, generation, event } => {
                let Some(member) = self.members.get(&peer) else { return };
                if member.session.generation != generation {
                    return; // from a replaced session
                }
                match event {
                    SessionEvent::Refused(error) => {
                        let outbox = self.outbox(&peer);
                        self.members.remove(&peer);
                        self.room.leave(now, &peer, Leave::Requested);
                        self.send(&outbox, error.into()).await;
                    }
                    SessionEvent::Connected => {
                        tracing::info!(peer = %peer, "connected");
                        if let Some(view) = member.view.as_ref().and_then(|v| self.views.get(v)) {
                            view.request_keyframe_for(&peer);
                        }
                    }
                    SessionEvent::Downstream(link) => {
                        self.links.insert(peer.clone(), link);
                        self.replan();
                    }
                    SessionEvent::VideoStarted => tracing::debug!(peer = %peer, "video started"),
                    SessionEvent::VideoRefused(error) => {
                        let outbox = self.outbox(&peer);
                        self.send(&outbox, error.into()).await;
                    }
                    SessionEvent::KeyframeRequest => {
                        tracing::debug!(peer = %peer, "keyframe asked for");
                        if let Some(view) = member.view.as_ref().and_then(|v| self.views.get(v)) {
                            view.request_keyframe_for(&peer);
                        }
                    }
                    SessionEvent::Resync => {
                        if let Some(view) = member.view.as_ref().and_then(|v| self.views.get(v)) {
                            view.resync(&peer);
                        }
                    }
                    SessionEvent::Lost(reason) => {
                        tracing::info!(peer = %peer, %reason, "session lost");
                        self.room.leave(now, &peer, Leave::Lost(reason));
                    }
                }
            }
            RoomEvent::Resync => {
                self.link_back = Some(Instant::now());
                if !self.room.members().is_empty() {
                    let state = self.room.state();
                    self.publish_state(&state).await;
                }
            }
            RoomEvent::Claim => {
                let state = self.room.state();
                self.publish_state(&state).await;
            }
            RoomEvent::Shutdown(_) | RoomEvent::Close | RoomEvent::Moved => {}
        }
    }

    async fn offer(
        &mut self,
        peer: String,
        sdp: String,
        name: Option<String>,
        view: Option<crate::signaling::protocol::ViewRequest>,
        outbox: Outbox,
    ) {
        if let Err(e) = self.room.admits(&peer) {
            return self.send(&outbox, e.into()).await;
        }
        let info = match inspect_offer(&sdp) {
            Ok(i) => i,
            Err(e) => return self.send(&outbox, e.into()).await,
        };
        let role = match (info.sends(), info.receives()) {
            (true, true) => Role::Participant,
            (true, false) => Role::Source,
            _ => Role::Viewer,
        };
        let join = Join { peer: peer.clone(), name, role, audio: info.audio.sends, video: info.video.sends, view };
        let now = self.now();
        // A re-join: the old session goes first (the room closes it too).
        self.members.remove(&peer);
        self.leaving.remove(&peer);
        let id = match self.room.join(now, join) {
            Ok(id) => id,
            Err(e) => return self.send(&outbox, e.into()).await,
        };
        self.generation += 1;
        let session = session::start(SessionStart {
            room: self.room.id().to_owned(),
            peer: peer.clone(),
            generation: self.generation,
            id,
            sdp,
            info,
            early_candidates: self.pending.remove(&peer).map(|(_, c)| c).unwrap_or_default(),
            options: self.shared.peer_options.clone(),
            link: self.shared.link.clone(),
            outbox: outbox.clone(),
            room_tx: self.inbox_tx.clone(),
            ingest_limit: self.shared.config.max_ingest,
            pulse: self.scene.pulse().clone(),
            estimate: self
                .room
                .member(&peer)
                .and_then(|m| m.view.as_ref())
                .map(|v| estimate_bounds(v.bitrate, self.shared.config.audio_bitrate)),
        });
        if info.audio.sends {
            self.audio.add_input(id, session.audio_input.clone());
        }
        if info.audio.receives {
            self.audio.add_output(id, session.audio_tx.clone(), info.opus_fec);
        }
        tracing::info!(peer = %peer, role = role.as_str(), "joined");
        self.members.insert(peer, Member { session, outbox, view: None, connected: false, connected_at: None });
        // The room's Scene/Views outputs (queued by join) now find the session.
    }

    async fn publish_state(&self, state: &crate::signaling::protocol::RoomState) {
        let topic = self.shared.topics.state(self.room.id());
        let mut state = state.clone();
        if self.epoch.is_some() {
            state.owner = Some(self.shared.config.server_id.clone());
            state.epoch = self.epoch;
        }
        let payload = serde_json::to_vec(&state).unwrap_or_default();
        if let Err(e) = self.shared.link.publish(&topic, payload, true).await {
            tracing::debug!(error = %e, "state not published");
        }
    }

    async fn apply_outputs(&mut self) {
        while let Some(out) = self.room.poll_output() {
            match out {
                Output::State(state) => self.publish_state(&state).await,
                Output::Error { peer: Some(peer), error } => self.reply(&peer, error.into()).await,
                Output::Error { peer: None, error } => {
                    let topic = self.shared.topics.control_errors(self.room.id());
                    let _ = self.shared.link.publish(&topic, ServerMessage::from(error).to_json(), false).await;
                }
                Output::Bye { peer, reason } => {
                    self.reply(&peer, ServerMessage::Bye { reason }).await;
                    self.remove_member(&peer);
                }
                Output::Close { peer } => self.remove_member(&peer),
                Output::Scene(scene) => self.set_scene(scene),
                Output::Views(views) => self.set_views(views),
                Output::Mute { id, muted } => self.audio.mute(id, muted),
                Output::Recording(on) => self.set_recording(on).await,
                Output::SendHint { peer, hint } => {
                    if let Some(m) = self.members.get(&peer) {
                        m.session.set_need(Some((hint.width, hint.height)));
                    }
                    // The seed app knows no such message.
                    let outbox = self.outbox(&peer);
                    if matches!(outbox, Outbox::Native { .. }) {
                        tracing::debug!(peer = %peer, ?hint, "send hint");
                        self.send(&outbox, ServerMessage::Send(hint)).await;
                    }
                }
                Output::Empty => {
                    // Clear the retained state; the dispatcher removes idle rooms.
                    let topic = self.shared.topics.state(self.room.id());
                    let _ = self.shared.link.publish(&topic, Vec::new(), true).await;
                    self.idle_due = true;
                }
            }
        }
    }

    fn remove_member(&mut self, peer: &str) {
        if self.room.member(peer).is_some() {
            // Still a member: this closes a session a re-join replaced,
            // which `offer` already dropped. Keep the new one.
            return;
        }
        if let Some(m) = self.members.remove(peer) {
            self.audio.remove_input(m.session.id);
            self.audio.remove_output(m.session.id);
            if let Some(view) = m.view.as_ref().and_then(|v| self.views.get(v)) {
                view.unsubscribe(peer);
            }
            self.links.remove(peer);
            tracing::info!(peer = %peer, "left");
        }
    }

    fn set_scene(&mut self, scene: Scene) {
        let tiles = scene
            .tiles
            .iter()
            .filter_map(|(id, name)| {
                let slot = self.members.values().find(|m| m.session.id == *id).map(|m| m.session.slot.clone())?;
                Some(Tile { id: *id, name: name.clone(), slot })
            })
            .collect();
        self.scene.set(SceneSnapshot {
            layout: scene.layout,
            tiles,
            speaker: scene.speaker,
            video_timeout: self.shared.config.video_timeout,
        });
    }

    fn layout_of(&self, key: &ViewKey) -> Option<Arc<Layout>> {
        self.shared.layouts.get(&key.layout).cloned()
    }

    fn set_views(&mut self, wanted: BTreeMap<ViewKey, Vec<String>>) {
        // Members who receive video, by view.
        let mut keep = BTreeMap::new();
        for (key, peers) in wanted {
            let peers: Vec<String> = peers
                .into_iter()
                .filter(|p| {
                    (p == RECORDER && self.recorder.is_some())
                        || self.members.get(p).is_some_and(|m| m.session.info.video.receives)
                })
                .collect();
            if !peers.is_empty() && self.layout_of(&key).is_some() {
                keep.insert(key, peers);
            }
        }
        self.views.retain(|k, _| keep.contains_key(k));
        for (key, peers) in keep {
            if !self.views.contains_key(&key) {
                let name = format!("view-{}-{}x{}", self.room.id(), key.width, key.height);
                let audio = self.shared.config.audio_bitrate;
                match View::spawn(key.clone(), audio, self.scene.clone(), self.shared.config.fast_encode, name) {
                    Ok(v) => {
                        self.views.insert(key.clone(), v);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a view thread");
                        continue;
                    }
                }
            }
            let Some(view) = self.views.get(&key) else { continue };
            let current = view.subscribers();
            for peer in &peers {
                if peer == RECORDER {
                    if let Some(rec) = self.recorder.as_ref().filter(|_| !current.contains(peer)) {
                        view.subscribe(RECORDER, rec.video_tx.clone());
                        view.request_keyframe_for(RECORDER);
                    }
                    continue;
                }
                let Some(m) = self.members.get_mut(peer) else { continue };
                if !current.contains(peer) || m.view.as_ref() != Some(&key) {
                    view.subscribe(peer, m.session.video_tx.clone());
                    m.view = Some(key.clone());
                    if m.connected {
                        // Switched views (a layout change): start it with a keyframe.
                        view.request_keyframe_for(peer);
                    }
                }
            }
            for old in current.iter().filter(|p| !peers.contains(p)) {
                view.unsubscribe(old);
            }
        }
        self.replan();
    }

    /// Re-plans every view's tiers from its members' estimates, moves
    /// members between tiers, and tells the room what each one gets.
    fn replan(&mut self) {
        let now = self.now();
        let audio = self.shared.config.audio_bitrate;
        self.plans.retain(|k, _| self.views.contains_key(k));
        let mut told = Vec::new();
        for (key, view) in &self.views {
            let initial = estimate_bounds(key.bitrate, audio).initial;
            let estimates: BTreeMap<String, u32> = view
                .subscribers()
                .into_iter()
                .map(|p| {
                    // The recorder sits on no link: it always gets the full rate.
                    let e = if p == RECORDER { u32::MAX } else { self.links.get(&p).map_or(initial, |l| l.estimate) };
                    (p, e)
                })
                .collect();
            let plan = self.plans.entry(key.clone()).or_insert_with(|| TierPlan::new(*view.rate()));
            let p = plan.update(now, &estimates);
            view.set_tiers(p.tiers.clone(), &p.members);
            for peer in p.members.keys() {
                let (Some(link), Some((rank, tier))) = (self.links.get(peer), p.tier_of(peer)) else {
                    continue;
                };
                let shape = tier.shape;
                told.push((
                    peer.clone(),
                    DownstreamState {
                        estimate: link.estimate,
                        source: link.source.as_str().to_owned(),
                        loss: (link.loss * 1000.0).round() / 10.0,
                        rtt_ms: link.rtt.map(|r| r.as_millis() as u32),
                        tier: rank.min(u8::MAX as usize) as u8,
                        bitrate: shape.bitrate,
                        width: shape.width,
                        height: shape.height,
                        fps: shape.fps,
                    },
                ));
            }
        }
        for (peer, state) in told {
            self.room.set_downstream(now, &peer, state);
        }
    }

    /// Copies the room's figures to `/metrics`.
    fn figures(&mut self) {
        let mut roles = [(Role::Participant.as_str(), 0), (Role::Viewer.as_str(), 0), (Role::Source.as_str(), 0)];
        for m in self.room.members() {
            if let Some(r) = roles.iter_mut().find(|(name, _)| *name == m.role.as_str()) {
                r.1 += 1;
            }
        }
        let views: Vec<_> = self
            .views
            .iter()
            .map(|(k, v)| {
                let name = format!("{}-{}x{}@{}", k.layout, k.width, k.height, k.fps);
                self.meter.view(name, v.tier_count(), v.subscribers().len(), &v.stats)
            })
            .collect();
        self.meter.retain(&views.iter().map(|v| v.name.clone()).collect::<Vec<_>>());
        let members = self
            .links
            .iter()
            .map(|(peer, link)| super::metrics::MemberFigures {
                peer: peer.clone(),
                estimate: link.estimate,
                sent: link.sent,
                loss: link.loss,
                tier: self.room.downstream_of(peer).map(|d| u32::from(d.tier)),
            })
            .collect();
        super::metrics::room(&super::metrics::RoomFigures {
            room: self.room.id(),
            roles,
            recording: self.recorder.is_some(),
            views,
            members,
        });
    }

    /// A second keyframe [`SECOND_KEYFRAME`] after a member connects: the
    /// first can be lost before its receiver is ready (seen over TURN,
    /// where the first packets arrive before the receive track exists).
    fn second_keyframes(&mut self) {
        for (peer, m) in &mut self.members {
            if m.connected_at.is_some_and(|t| t.elapsed() >= SECOND_KEYFRAME) {
                m.connected_at = None;
                if let Some(view) = m.view.as_ref().and_then(|v| self.views.get(v)) {
                    view.request_keyframe_for(peer);
                }
            }
        }
    }

    /// While a room is on live HLS, a keyframe for the recorder every
    /// [`super::hls::SEGMENT`]: each one starts a segment a player can join at.
    fn hls_keyframes(&mut self) {
        if self.shared.hls.is_none() || self.recorder.is_none() {
            return;
        }
        if self.hls_keyframe.is_some_and(|t| t.elapsed() < super::hls::SEGMENT) {
            return;
        }
        self.hls_keyframe = Some(Instant::now());
        for view in self.views.values().filter(|v| v.subscribers().iter().any(|p| p == RECORDER)) {
            view.request_keyframe_for(RECORDER);
        }
    }

    fn check_silence(&mut self) {
        let timeout = self.shared.config.silence_timeout;
        let now = self.now();
        // Leaves waiting for the member's media to stop.
        let mut confirmed = Vec::new();
        let mut stayed = Vec::new();
        self.leaving.retain(|peer, since| match self.members.get(peer) {
            None => false,
            Some(m) if !m.still_there() => {
                confirmed.push(peer.clone());
                false
            }
            Some(_) if since.elapsed() > LEAVE_DOUBT => {
                tracing::info!(peer = %peer, "ignored a leave: the member's media or reports never stopped (a broker restart's last will?)");
                stayed.push(peer.clone());
                false
            }
            Some(_) => true,
        });
        for peer in stayed {
            self.room.stay(&peer);
        }
        for peer in confirmed {
            self.room.leave(now, &peer, Leave::Requested);
        }
        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| (m.session.info.sends()) && m.session.silent_for() > timeout)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in silent {
            let reason = format!("no media for {} s", timeout.as_secs());
            tracing::info!(peer = %peer, %reason, "removing silent sender");
            self.room.leave(now, &peer, Leave::Lost(reason));
        }
        // Candidates for offers that never came (or that came after their
        // peer left) are dropped after a while.
        self.pending.retain(|_, (since, _)| since.elapsed() < PENDING_CANDIDATES_KEPT);
    }
}

/// Where a member's downstream estimate starts, and its bounds: high
/// enough that everyone starts on the view's full-rate tier (a bad link
/// shows itself within a second or two), never under what audio and the
/// least video tier need (a pacer slower than that would only fill and
/// flush), at most three times the start.
fn estimate_bounds(view_bitrate: u32, audio_bitrate: u32) -> crate::bwe::estimate::Config {
    let full = crate::bwe::tiers::estimate_for(view_bitrate, audio_bitrate);
    let initial = (full as f64 * 1.05) as u32;
    let least = crate::bwe::tiers::estimate_for(crate::bwe::tiers::MIN_RATE, audio_bitrate);
    crate::bwe::estimate::Config {
        initial,
        min: least.min(initial),
        max: initial.saturating_mul(3),
        audio: crate::bwe::tiers::audio_wire(audio_bitrate),
    }
}

/// Why a message could not be routed to a room (for the dispatcher).
pub fn too_many_rooms(max: usize) -> ProtocolError {
    ProtocolError::new(ErrorCode::TooManyRooms, format!("the server has {max} rooms, the most allowed"))
}
