//! The scene the view threads draw: layout, tiles in join order (each with
//! its sender's picture slot) and the active speaker. The room task
//! replaces it whole; view threads take a cheap snapshot every frame.

use super::pulse::Pulse;
use super::slot::FrameSlot;
use crate::layout::Layout;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One tile.
#[derive(Clone)]
pub struct Tile {
    /// Media id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// The sender's latest picture.
    pub slot: Arc<FrameSlot>,
}

/// Everything a view needs for one frame.
#[derive(Clone)]
pub struct SceneSnapshot {
    /// Layout.
    pub layout: Arc<Layout>,
    /// Tiles in join order.
    pub tiles: Vec<Tile>,
    /// Active speaker's media id.
    pub speaker: Option<u64>,
    /// A picture older than this shows the placeholder instead.
    pub video_timeout: Duration,
}

/// The scene, shared, with the pulse its pictures and changes beat.
#[derive(Clone)]
pub struct SharedScene(Arc<RwLock<Arc<SceneSnapshot>>>, Arc<Pulse>);

impl SharedScene {
    /// A scene starting as `initial`.
    pub fn new(initial: SceneSnapshot) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(initial))), Arc::new(Pulse::new()))
    }

    /// Beaten by every new picture of a tile (give it to their slots) and
    /// every scene change.
    pub fn pulse(&self) -> &Arc<Pulse> {
        &self.1
    }

    /// The current scene.
    pub fn snapshot(&self) -> Arc<SceneSnapshot> {
        // The Arc inside stays valid whatever a panicking writer did.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the scene.
    pub fn set(&self, scene: SceneSnapshot) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(scene);
        self.1.beat();
    }
}
