//! The pure media core: frames, scaler, compositor, mixer, codec wrappers.
//!
//! Nothing in here touches the network, spawns a task or reads a clock:
//! time comes in as timestamps, work happens when a caller asks for it.
//! The benches and most tests drive this module directly.

pub mod analysis;
pub mod color;
pub mod compositor;
pub mod convert;
pub mod draw;
pub mod fmp4;
pub mod frame;
pub mod h264;
pub mod level;
pub mod mixer;
pub mod opus;
pub mod pattern;
pub mod scale;
pub mod scene;
