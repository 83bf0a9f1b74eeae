//! Which tessera nodes are alive, from their heartbeats and presence.
//!
//! A node is live while its heartbeats keep coming (the last one less than
//! `dead_after` ago) and it has not said it is offline since; a draining
//! node is alive but takes no rooms. A last will may never come (a broker
//! node that crashes publishes none), so silence alone is enough.

use super::Beat;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Node {
    last_beat: Duration,
    beat: Beat,
    /// Said offline (its will, or a clean exit) after its last beat.
    offline: bool,
}

/// The nodes this one has heard of.
#[derive(Debug, Default)]
pub struct Membership {
    nodes: BTreeMap<String, Node>,
}

impl Membership {
    /// A heartbeat from `node`.
    pub fn beat(&mut self, now: Duration, node: &str, beat: Beat) {
        self.nodes.insert(node.to_owned(), Node { last_beat: now, beat, offline: false });
    }

    /// `node`'s presence says it is offline.
    pub fn offline(&mut self, node: &str) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.offline = true;
        }
    }

    /// Whether `node` is alive (draining or not).
    pub fn alive(&self, now: Duration, node: &str, dead_after: Duration) -> bool {
        self.nodes.get(node).is_some_and(|n| !n.offline && now.saturating_sub(n.last_beat) < dead_after)
    }

    /// Whether `node` is alive and takes rooms.
    pub fn eligible(&self, now: Duration, node: &str, dead_after: Duration) -> bool {
        self.alive(now, node, dead_after) && self.nodes.get(node).is_some_and(|n| !n.beat.draining)
    }

    /// Every node alive and taking rooms, with its weight.
    pub fn eligible_nodes(&self, now: Duration, dead_after: Duration) -> Vec<(&str, f64)> {
        self.nodes
            .iter()
            .filter(|(id, _)| self.eligible(now, id, dead_after))
            .map(|(id, n)| (id.as_str(), n.beat.weight))
            .collect()
    }

    /// Every node heard of, alive or not, with its last heartbeat.
    pub fn known(&self, now: Duration, dead_after: Duration) -> Vec<(&str, bool, &Beat)> {
        self.nodes.iter().map(|(id, n)| (id.as_str(), self.alive(now, id, dead_after), &n.beat)).collect()
    }

    /// Forgets nodes silent for `forget_after` (their rooms are long gone).
    pub fn forget(&mut self, now: Duration, forget_after: Duration) {
        self.nodes.retain(|_, n| now.saturating_sub(n.last_beat) < forget_after);
    }
}
