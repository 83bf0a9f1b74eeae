//! Several tessera nodes on one broker (or broker cluster): which node
//! serves which room. Pure: heartbeats, presence, retained room states and
//! time go in; answers (serve this room? take these rooms over? yield
//! this one?) come out. `server::dispatch` is the thin edge around it.
//!
//! - Every node beats on `{root}/_servers/{id}/beat` (non-retained) and
//!   counts another as dead when its beats stop for `dead_after`, or at
//!   once when its presence says offline (its will, or a clean exit).
//! - A room belongs to the node that claims it in its retained state
//!   (`owner`, `epoch`) while that node is alive and not draining.
//!   Otherwise it belongs to the rendezvous winner among the live nodes
//!   that take rooms ([`rendezvous`]); a new node therefore gets new rooms
//!   and never cuts a live call.
//! - Epochs only grow (they start from the wall clock in ms and a take-over
//!   adds one): when two nodes briefly both serve a room, the lower
//!   `(epoch, owner)` yields.
//! - A node taking a room over (its owner died or drains) tells the
//!   members of the last claim, and anyone it heard knocking lately, to
//!   rejoin.

mod membership;
pub mod rendezvous;
#[cfg(test)]
mod tests;

pub use membership::Membership;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How this node takes part.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (its server id).
    pub node: String,
    /// Its rendezvous weight (its capacity relative to the others).
    pub weight: f64,
    /// How often it beats.
    pub beat_interval: Duration,
    /// Silence after which a node counts as dead.
    pub dead_after: Duration,
}

/// A heartbeat, `{root}/_servers/{id}/beat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    /// Rendezvous weight.
    pub weight: f64,
    /// Handing its rooms over before it exits: it takes no rooms.
    #[serde(default)]
    pub draining: bool,
    /// Rooms it serves.
    #[serde(default)]
    pub rooms: usize,
    /// Members in them.
    #[serde(default)]
    pub members: usize,
    /// Most rooms it takes.
    #[serde(default)]
    pub capacity: usize,
    /// The rooms it serves, with its epoch for each: the same claims as
    /// the rooms' retained states, on a path that does not depend on the
    /// broker's retained store (which a recovering NATS serves stale).
    #[serde(default)]
    pub claims: Vec<(String, u64)>,
}

/// A room's owner as its retained state says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Node id.
    pub owner: String,
    /// Fencing epoch.
    pub epoch: u64,
    /// The members it listed.
    pub peers: Vec<String>,
    /// The room's layout then.
    pub layout: Option<String>,
    /// Whether it was recording.
    pub recording: bool,
}

impl Claim {
    /// The claim in a retained room state; `None` for a state without an
    /// owner (a server outside any cluster) or one that does not parse.
    pub fn from_state(payload: &[u8]) -> Option<Claim> {
        #[derive(Deserialize)]
        struct Peer {
            peer: String,
        }
        #[derive(Deserialize)]
        struct State {
            owner: String,
            epoch: u64,
            #[serde(default)]
            participants: Vec<Peer>,
            #[serde(default)]
            layout: Option<String>,
            #[serde(default)]
            recording: bool,
        }
        let s: State = serde_json::from_slice(payload).ok()?;
        Some(Claim {
            owner: s.owner,
            epoch: s.epoch,
            peers: s.participants.into_iter().map(|p| p.peer).collect(),
            layout: s.layout,
            recording: s.recording,
        })
    }

    /// Whether this claim wins over `(epoch, owner)`.
    pub fn beats(&self, epoch: u64, owner: &str) -> bool {
        (self.epoch, self.owner.as_str()) > (epoch, owner)
    }
}

/// A room this node is to take over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    /// Room id.
    pub room: String,
    /// Its previous owner, if it had a claim.
    pub from: Option<String>,
    /// The epoch of the last claim (the new one must be above it).
    pub after_epoch: u64,
    /// Who to tell to rejoin.
    pub peers: Vec<String>,
    /// The layout to keep.
    pub layout: Option<String>,
    /// Whether to go on recording.
    pub recording: bool,
}

/// How long a knock on a room this node does not serve is remembered.
const RECENT: Duration = Duration::from_secs(10);
/// Least time between two take-over attempts of one room.
const RETRY: Duration = Duration::from_secs(5);
/// Nodes silent this long are forgotten.
const FORGET: Duration = Duration::from_secs(300);

/// One node's view of the cluster.
#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    started: Duration,
    members: Membership,
    claims: HashMap<String, Claim>,
    /// Rooms served elsewhere (or by nobody yet): peers that offered lately.
    recent: HashMap<String, HashMap<String, Duration>>,
    /// When each room's take-over was last handed out.
    attempted: HashMap<String, Duration>,
    draining: bool,
    /// Connected to the broker (it hears the others).
    hearing: bool,
}

impl Cluster {
    /// A node starting at `now`.
    pub fn new(config: ClusterConfig, now: Duration) -> Self {
        Self {
            config,
            started: now,
            members: Membership::default(),
            claims: HashMap::new(),
            recent: HashMap::new(),
            attempted: HashMap::new(),
            draining: false,
            hearing: true,
        }
    }

    /// The node lost its broker connection: what it knows of the others
    /// goes stale, so it starts and takes over nothing.
    pub fn deaf(&mut self) {
        self.hearing = false;
    }

    /// The node is connected (again) at `now`: it serves new rooms once it
    /// has listened for `dead_after`, as at its start.
    pub fn listening(&mut self, now: Duration) {
        self.hearing = true;
        self.started = now;
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// A heartbeat from `node` (this one's own come back too).
    pub fn beat(&mut self, now: Duration, node: &str, beat: Beat) {
        if node != self.config.node {
            for (room, epoch) in &beat.claims {
                match self.claims.get_mut(room) {
                    Some(known)
                        if !known.beats(*epoch, node) && (known.epoch, known.owner.as_str()) != (*epoch, node) =>
                    {
                        // A newer claim than the state said: keep the members
                        // and layout known, under the new owner.
                        known.owner = node.to_owned();
                        known.epoch = *epoch;
                    }
                    Some(_) => {}
                    None => {
                        let claim = Claim {
                            owner: node.to_owned(),
                            epoch: *epoch,
                            peers: Vec::new(),
                            layout: None,
                            recording: false,
                        };
                        self.claims.insert(room.clone(), claim);
                    }
                }
            }
            // A live node that does not list a room it is said to own does
            // not serve it (it closed, or the node restarted): the claim is
            // nobody's, and its members go to whoever the room hashes to.
            for (room, claim) in self.claims.iter_mut() {
                if claim.owner == node && !beat.claims.iter().any(|(r, _)| r == room) {
                    claim.owner.clear();
                }
            }
        }
        self.members.beat(now, node, beat);
    }

    /// `node` said it is offline (its will, or a clean exit).
    pub fn offline(&mut self, node: &str) {
        self.members.offline(node);
    }

    /// A room's retained state: its claim, or `None` once cleared. Claims
    /// only move forward: one below the claim already known is a stale
    /// state delivered late (a broker recovering from a lost node may).
    pub fn claim_seen(&mut self, room: &str, claim: Option<Claim>) {
        match claim {
            Some(c) => {
                let known = self.claims.get(room);
                if known.is_none_or(|k| !k.beats(c.epoch, &c.owner)) {
                    self.claims.insert(room.to_owned(), c);
                }
            }
            None => {
                self.claims.remove(room);
            }
        }
    }

    /// The claim last seen for `room`.
    pub fn claim(&self, room: &str) -> Option<&Claim> {
        self.claims.get(room)
    }

    /// `peer` offered (or sent a candidate) in `room`, which this node does
    /// not serve: if the room comes to this node, `peer` is told to rejoin.
    pub fn heard(&mut self, now: Duration, room: &str, peer: &str) {
        self.recent.entry(room.to_owned()).or_default().insert(peer.to_owned(), now);
    }

    /// `peer` left `room` (which this node does not serve).
    pub fn left(&mut self, room: &str, peer: &str) {
        if let Some(peers) = self.recent.get_mut(room) {
            peers.remove(peer);
        }
    }

    /// Stop taking rooms: the others take this node's rooms over.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether this node drains.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Whether the node has listened long enough to know the others, and
    /// still hears the bus: its own heartbeats come back. A node whose own
    /// beats are overdue as long as a dead node's is itself cut off or
    /// stalled (a starved process reads its queue late), and would see
    /// every other node dead at once: it takes nothing until it hears
    /// itself again.
    pub fn settled(&self, now: Duration) -> bool {
        self.hearing
            && now.saturating_sub(self.started) >= self.config.dead_after
            && self.members.alive(now, &self.config.node, self.config.dead_after)
    }

    /// Live nodes that take rooms, this one included unless it drains.
    pub fn eligible(&self, now: Duration) -> Vec<(&str, f64)> {
        let dead_after = self.config.dead_after;
        let mut nodes: Vec<(&str, f64)> =
            self.members.eligible_nodes(now, dead_after).into_iter().filter(|(n, _)| *n != self.config.node).collect();
        if !self.draining {
            nodes.push((&self.config.node, self.config.weight));
        }
        nodes
    }

    /// Nodes other than this one that take rooms.
    pub fn others(&self, now: Duration) -> usize {
        self.eligible(now).iter().filter(|(n, _)| *n != self.config.node).count()
    }

    /// Every node heard of: id, alive, last beat.
    pub fn known(&self, now: Duration) -> Vec<(&str, bool, &Beat)> {
        self.members.known(now, self.config.dead_after)
    }

    /// Whether this node is to serve `room`, which it does not serve yet.
    pub fn serves(&self, now: Duration, room: &str) -> bool {
        if !self.settled(now) || self.draining {
            return false;
        }
        if let Some(c) = self.claims.get(room) {
            if c.owner != self.config.node && self.members.eligible(now, &c.owner, self.config.dead_after) {
                return false;
            }
        }
        self.rendezvous(now, room)
    }

    /// Whether `room` hashes to this node among the live ones: it answers
    /// what nobody serves (refusals of bad topics, control of empty rooms).
    pub fn rendezvous(&self, now: Duration, room: &str) -> bool {
        rendezvous::owner(room, self.eligible(now)) == Some(self.config.node.as_str())
    }

    /// The claim of another node that wins over this node's `epoch` for
    /// `room`: this node then yields the room.
    pub fn beaten(&self, room: &str, epoch: u64) -> Option<&Claim> {
        self.claims.get(room).filter(|c| c.owner != self.config.node && c.beats(epoch, &self.config.node))
    }

    /// Rooms this node is to take over now: claimed by a node that died or
    /// drains (or knocked on while nobody served them) and that now belong
    /// here. `hosted` says which rooms it already serves.
    pub fn takeovers(&mut self, now: Duration, hosted: impl Fn(&str) -> bool) -> Vec<Takeover> {
        for peers in self.recent.values_mut() {
            peers.retain(|_, t| now.saturating_sub(*t) < RECENT);
        }
        self.recent.retain(|_, p| !p.is_empty());
        self.attempted.retain(|_, t| now.saturating_sub(*t) < RETRY);
        self.members.forget(now, FORGET);
        let rooms: HashSet<String> = self.claims.keys().chain(self.recent.keys()).cloned().collect();
        let mut out = Vec::new();
        for room in rooms {
            if hosted(&room) || self.attempted.contains_key(&room) || !self.serves(now, &room) {
                continue;
            }
            let claim = self.claims.get(&room);
            let mut peers: Vec<String> = claim.map(|c| c.peers.clone()).unwrap_or_default();
            for p in self.recent.get(&room).into_iter().flat_map(|r| r.keys()) {
                if !peers.contains(p) {
                    peers.push(p.clone());
                }
            }
            if peers.is_empty() {
                continue;
            }
            self.attempted.insert(room.clone(), now);
            self.recent.remove(&room);
            out.push(Takeover {
                from: claim.map(|c| c.owner.clone()),
                after_epoch: claim.map_or(0, |c| c.epoch),
                layout: claim.and_then(|c| c.layout.clone()),
                recording: claim.is_some_and(|c| c.recording),
                room,
                peers,
            });
        }
        out.sort_by(|a, b| a.room.cmp(&b.room));
        out
    }
}

/// An epoch above `after` that also grows with the wall clock (`now_ms`),
/// so a room closed and opened again never goes back.
pub fn next_epoch(after: u64, now_ms: u64) -> u64 {
    (after + 1).max(now_ms)
}
