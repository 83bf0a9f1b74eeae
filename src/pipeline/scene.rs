//! The scene the view threads draw: layout, tiles in join order (each with
//! its sender's picture slot) and the active speaker. The room task
//! replaces it whole; view threads take a cheap snapshot every frame.

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

/// The scene, shared.
#[derive(Clone)]
pub struct SharedScene(Arc<RwLock<Arc<SceneSnapshot>>>);

impl SharedScene {
    /// A scene starting as `initial`.
    pub fn new(initial: SceneSnapshot) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(initial))))
    }

    /// The current scene.
    pub fn snapshot(&self) -> Arc<SceneSnapshot> {
        // The Arc inside stays valid whatever a panicking writer did.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the scene.
    pub fn set(&self, scene: SceneSnapshot) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(scene);
    }
}
