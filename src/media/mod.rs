//! The pure media core: frames, scaler, compositor, mixer, codec wrappers.
//!
//! Nothing in here touches the network, spawns a task or reads a clock:
//! time comes in as timestamps, work happens when a caller asks for it.
//! The benches and most tests drive this module directly.

pub mod color;
pub mod frame;
pub mod compositor;
pub mod convert;
pub mod draw;
pub mod pattern;
pub mod scale;
