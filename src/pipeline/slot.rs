//! The latest decoded picture of one sender, shared between its decoder
//! thread (writer) and the view threads (readers).
//!
//! Pictures live in a small pool: the decoder copies each new picture into
//! a buffer no reader holds any more, so steady state allocates nothing and
//! a reader never waits for the decoder.

use super::pulse::Pulse;
use crate::media::frame::{FrameRef, VideoFrame};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Buffers kept per sender (one being written, one shown, one spare).
const POOL: usize = 3;

/// A picture as readers get it.
#[derive(Clone)]
pub struct Latest {
    /// The picture.
    pub frame: Arc<VideoFrame>,
    /// Increases with every new picture.
    pub generation: u64,
    /// When it was decoded.
    pub at: Instant,
}

/// One sender's latest picture.
#[derive(Default)]
pub struct FrameSlot {
    latest: Mutex<Option<Latest>>,
    pool: Mutex<Vec<Arc<VideoFrame>>>,
    generation: AtomicU64,
    decoded: AtomicU64,
    /// Beaten for every new picture (the room's views wait on it).
    pulse: Option<Arc<Pulse>>,
}

impl FrameSlot {
    /// An empty slot.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// An empty slot that beats `pulse` for every new picture.
    pub fn with_pulse(pulse: Arc<Pulse>) -> Arc<Self> {
        Arc::new(Self { pulse: Some(pulse), ..Self::default() })
    }

    /// Stores a copy of `picture` as the latest (called by the decoder).
    pub fn publish(&self, picture: &FrameRef<'_>, now: Instant) {
        let mut buffer = self.spare();
        match Arc::get_mut(&mut buffer) {
            Some(frame) => {
                if frame.copy_from(picture).is_err() {
                    return;
                }
            }
            None => return,
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let previous = self.lock_latest().replace(Latest { frame: buffer, generation, at: now });
        if let Some(p) = &self.pulse {
            p.beat();
        }
        if let Some(old) = previous {
            if let Ok(mut pool) = self.pool.lock() {
                if pool.len() < POOL {
                    pool.push(old.frame);
                }
            }
        }
    }

    /// A buffer nobody else holds (reused when possible).
    fn spare(&self) -> Arc<VideoFrame> {
        if let Ok(mut pool) = self.pool.lock() {
            if let Some(i) = pool.iter().position(|f| Arc::strong_count(f) == 1) {
                return pool.swap_remove(i);
            }
        }
        Arc::new(VideoFrame::default())
    }

    fn lock_latest(&self) -> std::sync::MutexGuard<'_, Option<Latest>> {
        // A panic while holding this lock leaves a valid Option behind.
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest picture, if any.
    pub fn latest(&self) -> Option<Latest> {
        self.lock_latest().clone()
    }

    /// Forgets the picture (the sender stopped sending video).
    pub fn clear(&self) {
        self.lock_latest().take();
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Pictures decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::color::Rgb;

    #[test]
    fn publishes_copies_and_recycles_buffers() {
        let slot = FrameSlot::new();
        assert!(slot.latest().is_none());
        let red = VideoFrame::new(64, 32, Rgb::new(255, 0, 0).to_yuv()).unwrap();
        let now = Instant::now();
        slot.publish(&red.as_frame(), now);
        let first = slot.latest().unwrap();
        assert_eq!(first.generation, 1);
        assert_eq!(first.frame.as_bytes(), red.as_bytes());
        // A reader holding a picture keeps it intact while new ones arrive.
        let blue = VideoFrame::new(64, 32, Rgb::new(0, 0, 255).to_yuv()).unwrap();
        for _ in 0..10 {
            slot.publish(&blue.as_frame(), now);
        }
        assert_eq!(first.frame.as_bytes(), red.as_bytes());
        let last = slot.latest().unwrap();
        assert_eq!(last.generation, 11);
        assert_eq!(last.frame.as_bytes(), blue.as_bytes());
        assert!(slot.pool.lock().unwrap().len() <= POOL);
        slot.clear();
        assert!(slot.latest().is_none());
    }
}
