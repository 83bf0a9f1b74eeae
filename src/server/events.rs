//! What a room task and its members' sessions tell each other: the
//! events a room receives ([`RoomEvent`], from the dispatcher and from its
//! sessions) and what a session reports ([`SessionEvent`]). Both sides
//! import this module; neither imports the other for it.

use crate::bwe::estimate::Source;
use crate::signaling::legacy::Outbox;
use crate::signaling::protocol::{ClientMessage, ControlMessage, ProtocolError};
use std::time::Duration;
use tokio::sync::oneshot;

/// Everything that happens to a room.
pub enum RoomEvent {
    /// A member's signaling message.
    Client {
        /// Peer id.
        peer: String,
        /// The message.
        msg: ClientMessage,
        /// Where answers to this peer go.
        outbox: Outbox,
    },
    /// A control command.
    Control(ControlMessage),
    /// Something a session saw.
    Session {
        /// Peer id.
        peer: String,
        /// Which session of that peer.
        generation: u64,
        /// What.
        event: SessionEvent,
    },
    /// The broker connection came back: publish state again.
    Resync,
    /// Everyone out; reply when done.
    Shutdown(oneshot::Sender<()>),
    /// The room is idle and forgotten by the dispatcher: stop.
    Close,
    /// Publish the room's state now, as its claim (a cluster node that
    /// took the room over, before anyone rejoined).
    Claim,
    /// Another node of the cluster serves the room now: every member gets
    /// `bye` with reason `moved` and the task stops, leaving the room's
    /// retained state (the other node's) alone.
    Moved,
}

/// What a session reports.
pub enum SessionEvent {
    /// The offer could not be used.
    Refused(ProtocolError),
    /// Media can flow.
    Connected,
    /// The member's video started arriving.
    VideoStarted,
    /// The member asked for a keyframe of its view.
    KeyframeRequest,
    /// The member's downstream skipped frames: it starts again on a
    /// keyframe, soon.
    Resync,
    /// The member's video is refused (it stays in the room).
    VideoRefused(ProtocolError),
    /// What the member's downstream link carries.
    Downstream(LinkReport),
    /// The connection is gone.
    Lost(String),
}

/// What a session reports of its member's downstream link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkReport {
    /// Estimate, bits/s.
    pub estimate: u32,
    /// What limits it.
    pub source: Source,
    /// Loss in the last receiver report (0..1).
    pub loss: f64,
    /// Round trip, if known.
    pub rtt: Option<Duration>,
    /// Video sent over the last second, bits/s.
    pub sent: u32,
}
