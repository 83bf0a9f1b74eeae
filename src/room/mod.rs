//! A room as a state machine: who is in it, in what role, with which
//! layout and downstream views, and who is speaking.
//!
//! Inputs (joins, leaves, control commands, audio levels, ticks, each with
//! its timestamp) go in through its methods ([`Room::join`],
//! [`Room::leave`], [`Room::control`], [`Room::levels`], [`Room::tick`]);
//! outputs (room state to
//! publish, errors and byes for peers, the scene and view assignments the
//! media threads follow) come out of [`Room::poll_output`]. No I/O, no
//! clock, no locks: the server's room task owns one and wires it up.

pub mod hints;
mod view;

pub use view::ViewKey;

use crate::layout::Layout;
use crate::media::level::SpeakerDetector;
use crate::signaling::protocol::{
    CanvasState, Control, ControlMessage, DownstreamState, ErrorCode, ParticipantState, ProtocolError, RoomState,
    SendHint, ViewRequest,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How a participant takes part, from its transceiver directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends and receives (`sendrecv`): a tile, and gets the composite.
    Participant,
    /// Receives only (`recvonly`): a display; gets the composite, is no tile.
    Viewer,
    /// Sends only (`sendonly`): a camera; a tile, gets nothing back.
    Source,
}

impl Role {
    /// The role's name in the room state.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Participant => "participant",
            Role::Viewer => "viewer",
            Role::Source => "source",
        }
    }

    /// Whether this role is a tile on the canvas.
    pub fn is_tile(self) -> bool {
        matches!(self, Role::Participant | Role::Source)
    }

    /// Whether this role receives the room's media.
    pub fn receives(self) -> bool {
        matches!(self, Role::Participant | Role::Viewer)
    }
}

/// One member of the room.
#[derive(Clone, Debug, PartialEq)]
pub struct Participant {
    /// Peer id.
    pub peer: String,
    /// Numeric id the media threads use.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Offers audio.
    pub audio: bool,
    /// Offers video.
    pub video: bool,
    /// Muted by room control.
    pub muted: bool,
    /// The downstream it receives (None for sources).
    pub view: Option<ViewKey>,
    /// The size it asked for.
    pub view_request: Option<(u32, u32)>,
}

/// Room-wide settings.
#[derive(Clone, Debug)]
pub struct RoomConfig {
    /// Most members (all roles).
    pub max_participants: usize,
    /// Downstream video bitrate at the layout's canvas size (bits/s).
    pub video_bitrate: u32,
    /// How long a challenger must lead to take the speaker tile.
    pub speaker_hold: Duration,
    /// Least time between two state publications caused only by
    /// who-is-speaking changes.
    pub state_interval: Duration,
    /// Bitrate asked of a sender shown at 1280x720 and 30 fps (smaller
    /// tiles are asked for less: see [`hints::bitrate_for`]).
    pub ingest_bitrate: u32,
    /// Whether this server records rooms (a recordings folder is set).
    pub can_record: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            max_participants: 16,
            video_bitrate: 1_500_000,
            speaker_hold: Duration::from_millis(1500),
            state_interval: Duration::from_millis(250),
            ingest_bitrate: 1_500_000,
            can_record: false,
        }
    }
}

/// A join request, after its SDP offer was read.
#[derive(Clone, Debug)]
pub struct Join {
    /// Peer id.
    pub peer: String,
    /// Display name (defaults to the peer id).
    pub name: Option<String>,
    /// Role from the offer's directions.
    pub role: Role,
    /// Offers audio.
    pub audio: bool,
    /// Offers video.
    pub video: bool,
    /// Downstream size asked for.
    pub view: Option<ViewRequest>,
}

/// Why someone left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leave {
    /// Sent `leave` (or its last will did).
    Requested,
    /// Removed by room control.
    Kicked,
    /// The connection failed or timed out.
    Lost(String),
    /// The server is shutting down.
    Shutdown,
}

/// What the room asks its owner to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Publish this (retained) room state.
    State(RoomState),
    /// Refuse something a peer (or the control topic, with `None`) sent.
    Error {
        /// Who to tell (`None`: the control error topic).
        peer: Option<String>,
        /// The refusal.
        error: ProtocolError,
    },
    /// End a peer's session, telling it why (`bye`).
    Bye {
        /// Who.
        peer: String,
        /// Why.
        reason: String,
    },
    /// End a peer's session without a message (it left by itself).
    Close {
        /// Who.
        peer: String,
    },
    /// The tiles changed: layout, members in join order, speaker.
    Scene(Scene),
    /// The set of downstream views and who watches each changed.
    Views(BTreeMap<ViewKey, Vec<String>>),
    /// A member's audio was muted or unmuted.
    Mute {
        /// Media id.
        id: u64,
        /// Muted now.
        muted: bool,
    },
    /// Start (`true`) or stop recording the room; the recorder watches
    /// the canvas-size view as [`RECORDER`].
    Recording(bool),
    /// Tell a sender what to send (tile-sized ingest).
    SendHint {
        /// Who.
        peer: String,
        /// What.
        hint: SendHint,
    },
    /// Nobody is left: close the room (and clear its retained state).
    Empty,
}

/// What the media threads draw.
#[derive(Clone, Debug)]
pub struct Scene {
    /// Layout.
    pub layout: Arc<Layout>,
    /// Tiles in join order: media id and name.
    pub tiles: Vec<(u64, String)>,
    /// Active speaker's media id.
    pub speaker: Option<u64>,
}

impl PartialEq for Scene {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.layout, &other.layout) && self.tiles == other.tiles && self.speaker == other.speaker
    }
}

/// One room.
pub struct Room {
    id: String,
    config: RoomConfig,
    layouts: Arc<BTreeMap<String, Arc<Layout>>>,
    layout: Arc<Layout>,
    members: Vec<Participant>,
    departing: std::collections::BTreeSet<String>,
    next_id: u64,
    detector: SpeakerDetector,
    speaking: Vec<u64>,
    outputs: VecDeque<Output>,
    state_due: bool,
    last_state: Option<Duration>,
    now: Duration,
    hints: hints::Debouncer,
    downstream: BTreeMap<String, DownstreamState>,
    /// An estimate changed (not a tier): published at most every
    /// [`LINK_STATE_INTERVAL`].
    link_due: bool,
    last_link_state: Option<Duration>,
    recording: bool,
}

/// The recorder's name among a view's watchers (not a valid peer id, so
/// no member can be mistaken for it).
pub const RECORDER: &str = "@recorder";

/// Least time between two state publications caused only by changed
/// downstream estimates.
pub const LINK_STATE_INTERVAL: Duration = Duration::from_secs(2);

impl Room {
    /// A new, empty room with `layout`.
    pub fn new(id: &str, layout: Arc<Layout>, layouts: Arc<BTreeMap<String, Arc<Layout>>>, config: RoomConfig) -> Self {
        Self {
            id: id.to_owned(),
            detector: SpeakerDetector::new(config.speaker_hold),
            config,
            layouts,
            layout,
            members: Vec::new(),
            departing: Default::default(),
            next_id: 1,
            speaking: Vec::new(),
            outputs: VecDeque::new(),
            state_due: false,
            last_state: None,
            now: Duration::ZERO,
            hints: hints::Debouncer::new(),
            downstream: BTreeMap::new(),
            link_due: false,
            last_link_state: None,
            recording: false,
        }
    }

    /// Room id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Members in join order.
    pub fn members(&self) -> &[Participant] {
        &self.members
    }

    /// The member with peer id `peer`.
    pub fn member(&self, peer: &str) -> Option<&Participant> {
        self.members.iter().find(|m| m.peer == peer)
    }

    /// Current layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Whether `peer` may join now (a re-join always may).
    pub fn admits(&self, peer: &str) -> Result<(), ProtocolError> {
        // Members on their way out do not hold a place.
        let counted = self.members.len() - self.members.iter().filter(|m| self.departing.contains(&m.peer)).count();
        if self.member(peer).is_some() || counted < self.config.max_participants {
            Ok(())
        } else {
            Err(ProtocolError::new(
                ErrorCode::RoomFull,
                format!("room {} has {} participants, the most allowed", self.id, self.config.max_participants),
            ))
        }
    }

    /// Marks a member as leaving (it said so; its owner waits for its media
    /// to stop before [`Room::leave`]): its place is free for newcomers.
    pub fn depart(&mut self, peer: &str) {
        if self.member(peer).is_some() {
            self.departing.insert(peer.to_owned());
        }
    }

    /// Cancels [`Room::depart`]: the member stays after all.
    pub fn stay(&mut self, peer: &str) {
        self.departing.remove(peer);
    }

    /// Adds (or replaces) a member. Returns its media id.
    pub fn join(&mut self, now: Duration, join: Join) -> Result<u64, ProtocolError> {
        self.now = now;
        self.admits(&join.peer)?;
        self.departing.remove(&join.peer);
        let id = self.next_id;
        self.next_id += 1;
        let view_request = join.view.map(|v| (v.width, v.height));
        let view = join.role.receives().then(|| self.view_for(view_request));
        let member = Participant {
            name: join.name.unwrap_or_else(|| join.peer.clone()),
            peer: join.peer,
            id,
            role: join.role,
            audio: join.audio,
            video: join.video,
            muted: false,
            view,
            view_request,
        };
        match self.members.iter().position(|m| m.peer == member.peer) {
            // A re-join keeps its place in the join order.
            Some(i) => {
                let old = std::mem::replace(&mut self.members[i], member);
                self.detector.remove(old.id);
                self.outputs.push_back(Output::Close { peer: old.peer });
            }
            None => self.members.push(member),
        }
        self.changed();
        Ok(id)
    }

    /// Removes a member.
    pub fn leave(&mut self, now: Duration, peer: &str, why: Leave) {
        self.now = now;
        self.departing.remove(peer);
        let Some(i) = self.members.iter().position(|m| m.peer == peer) else { return };
        let gone = self.members.remove(i);
        self.downstream.remove(&gone.peer);
        self.detector.remove(gone.id);
        self.speaking.retain(|&s| s != gone.id);
        self.outputs.push_back(match why {
            Leave::Requested => Output::Close { peer: gone.peer },
            Leave::Kicked => Output::Bye { peer: gone.peer, reason: "kicked".into() },
            Leave::Lost(reason) => Output::Bye { peer: gone.peer, reason },
            Leave::Shutdown => Output::Bye { peer: gone.peer, reason: "server shutting down".into() },
        });
        if self.members.is_empty() {
            self.outputs.push_back(Output::Empty);
        } else {
            self.changed();
        }
    }

    /// Applies a control command.
    pub fn control(&mut self, now: Duration, msg: ControlMessage) {
        self.now = now;
        let refuse =
            |code, message: String| Output::Error { peer: msg.from.clone(), error: ProtocolError::new(code, message) };
        match msg.command {
            Control::Layout(name) => match self.layouts.get(&name) {
                Some(layout) => {
                    if !Arc::ptr_eq(layout, &self.layout) {
                        self.layout = layout.clone();
                        // Views are keyed by layout: everyone's view moves.
                        let bitrate = self.config.video_bitrate;
                        for m in &mut self.members {
                            if m.view.is_some() {
                                m.view = Some(ViewKey::new(layout, m.view_request, bitrate));
                            }
                        }
                        self.changed();
                    }
                }
                None => {
                    let known: Vec<&str> = self.layouts.keys().map(String::as_str).collect();
                    self.outputs.push_back(refuse(
                        ErrorCode::UnknownLayout,
                        format!("no layout `{name}` (known: {})", known.join(", ")),
                    ))
                }
            },
            Control::Mute { peer, audio } => match self.members.iter_mut().find(|m| m.peer == peer) {
                Some(m) => {
                    if m.muted != audio {
                        m.muted = audio;
                        let id = m.id;
                        self.outputs.push_back(Output::Mute { id, muted: audio });
                        self.state_due = true;
                        self.flush_state();
                    }
                }
                None => {
                    self.outputs.push_back(refuse(ErrorCode::UnknownPeer, format!("no `{peer}` in room {}", self.id)))
                }
            },
            Control::Kick { peer } => {
                if self.member(&peer).is_some() {
                    self.leave(now, &peer, Leave::Kicked);
                } else {
                    self.outputs.push_back(refuse(ErrorCode::UnknownPeer, format!("no `{peer}` in room {}", self.id)))
                }
            }
            Control::Record(on) => {
                if !self.config.can_record {
                    self.outputs.push_back(refuse(
                        ErrorCode::RecordingOff,
                        "this server does not record (tessera serve --recordings DIR)".into(),
                    ));
                } else if on != self.recording {
                    self.recording = on;
                    self.outputs.push_back(Output::Recording(on));
                    self.outputs.push_back(Output::Views(self.views()));
                    self.state_due = true;
                    self.last_state = None;
                    self.flush_state();
                }
            }
        }
    }

    /// Whether the room is being recorded.
    pub fn recording(&self) -> bool {
        self.recording
    }

    /// Feeds one 20 ms tick of audio levels (media id, -dBov).
    pub fn levels(&mut self, now: Duration, levels: &[(u64, u8)]) {
        self.now = now;
        let muted: Vec<u64> = self.members.iter().filter(|m| m.muted).map(|m| m.id).collect();
        // Muted members are silence as far as the floor is concerned.
        let fed = levels.iter().map(|&(id, l)| (id, if muted.contains(&id) { 127 } else { l }));
        if self.detector.update(now, fed).is_some() {
            self.outputs.push_back(Output::Scene(self.scene()));
            self.state_due = true;
            self.refresh_hints(false);
        }
        let speaking: Vec<u64> =
            self.members.iter().map(|m| m.id).filter(|&id| self.detector.is_speaking(id)).collect();
        if speaking != self.speaking {
            self.speaking = speaking;
            self.state_due = true;
        }
        self.flush_state();
    }

    /// What the room last said of `peer`'s downstream.
    pub fn downstream_of(&self, peer: &str) -> Option<&DownstreamState> {
        self.downstream.get(peer)
    }

    /// Notes a member's downstream (estimate and tier). A new tier is
    /// published soon; a new estimate alone at most every
    /// [`LINK_STATE_INTERVAL`].
    pub fn set_downstream(&mut self, now: Duration, peer: &str, state: DownstreamState) {
        self.now = now;
        if self.member(peer).is_none() {
            return;
        }
        if let Some(old) = self.downstream.get(peer).filter(|old| old.tier != state.tier) {
            tracing::debug!(peer, from = old.tier, to = state.tier, estimate = state.estimate, "tier changes");
        }
        match self.downstream.get(peer) {
            Some(old) if *old == state => return,
            Some(old) if old.tier == state.tier => self.link_due = true,
            _ => self.state_due = true,
        }
        self.downstream.insert(peer.to_owned(), state);
        self.flush_state();
    }

    /// Advances time (publishes throttled state changes).
    pub fn tick(&mut self, now: Duration) {
        self.now = now;
        if self.link_due && self.last_link_state.is_none_or(|t| now.saturating_sub(t) >= LINK_STATE_INTERVAL) {
            self.link_due = false;
            self.last_link_state = Some(now);
            self.state_due = true;
        }
        self.flush_state();
        if self.hints.pending() {
            self.refresh_hints(false);
        }
    }

    /// Everyone leaves (server shutdown).
    pub fn shutdown(&mut self, now: Duration) {
        let peers: Vec<String> = self.members.iter().map(|m| m.peer.clone()).collect();
        for p in peers {
            self.leave(now, &p, Leave::Shutdown);
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The room state as published.
    pub fn state(&self) -> RoomState {
        RoomState {
            room: self.id.clone(),
            layout: self.layout.name.clone(),
            canvas: CanvasState {
                width: self.layout.canvas.width,
                height: self.layout.canvas.height,
                fps: self.layout.canvas.fps,
            },
            participants: self
                .members
                .iter()
                .map(|m| ParticipantState {
                    peer: m.peer.clone(),
                    name: m.name.clone(),
                    audio: m.audio && !m.muted,
                    video: m.video,
                    speaking: self.speaking.contains(&m.id),
                    role: m.role.as_str().to_owned(),
                    downstream: self.downstream.get(&m.peer).cloned(),
                })
                .collect(),
            speaker: self
                .detector
                .speaker()
                .and_then(|id| self.members.iter().find(|m| m.id == id))
                .map(|m| m.peer.clone()),
            recording: self.recording,
            owner: None,
            epoch: None,
        }
    }

    /// What the media threads should draw now.
    pub fn scene(&self) -> Scene {
        Scene {
            layout: self.layout.clone(),
            tiles: self.members.iter().filter(|m| m.role.is_tile()).map(|m| (m.id, m.name.clone())).collect(),
            speaker: self.detector.speaker(),
        }
    }

    /// Who watches which view.
    pub fn views(&self) -> BTreeMap<ViewKey, Vec<String>> {
        let mut views: BTreeMap<ViewKey, Vec<String>> = BTreeMap::new();
        for m in &self.members {
            if let Some(v) = &m.view {
                views.entry(v.clone()).or_default().push(m.peer.clone());
            }
        }
        if self.recording && !self.members.is_empty() {
            views.entry(self.view_for(None)).or_default().push(RECORDER.to_owned());
        }
        views
    }

    fn view_for(&self, size: Option<(u32, u32)>) -> ViewKey {
        ViewKey::new(&self.layout, size, self.config.video_bitrate)
    }

    /// Membership or layout changed: new scene, views and state, at once.
    fn changed(&mut self) {
        self.outputs.push_back(Output::Scene(self.scene()));
        self.outputs.push_back(Output::Views(self.views()));
        self.state_due = true;
        self.last_state = None; // not throttled
        self.flush_state();
        self.refresh_hints(true);
    }

    /// The send hints the views call for now, by media id.
    pub fn wanted_hints(&self) -> BTreeMap<u64, SendHint> {
        let views = self.views();
        let shapes: Vec<hints::ViewShape<'_>> = views
            .keys()
            .filter_map(|k| {
                let layout = self.layouts.get(&k.layout)?;
                Some(hints::ViewShape { layout, width: k.width, height: k.height, fps: k.fps })
            })
            .collect();
        let tiles: Vec<u64> = self.members.iter().filter(|m| m.role.is_tile() && m.video).map(|m| m.id).collect();
        let all: Vec<u64> = self.members.iter().filter(|m| m.role.is_tile()).map(|m| m.id).collect();
        let wanted = hints::wanted(&shapes, &all, self.detector.speaker(), self.config.ingest_bitrate);
        wanted.into_iter().filter(|(id, _)| tiles.contains(id)).collect()
    }

    /// Tells senders about hints that are due (`membership`: members or
    /// the layout changed, rather than the speaker).
    fn refresh_hints(&mut self, membership: bool) {
        let wanted = self.wanted_hints();
        for (id, hint) in self.hints.update(self.now, &wanted, membership) {
            if let Some(m) = self.members.iter().find(|m| m.id == id) {
                self.outputs.push_back(Output::SendHint { peer: m.peer.clone(), hint });
            }
        }
    }

    fn flush_state(&mut self) {
        if !self.state_due || self.members.is_empty() {
            return;
        }
        if let Some(last) = self.last_state {
            if self.now.saturating_sub(last) < self.config.state_interval {
                return;
            }
        }
        self.state_due = false;
        self.last_state = Some(self.now);
        self.outputs.push_back(Output::State(self.state()));
    }
}

#[cfg(test)]
mod tests;
