//! RTP receive helpers, pure: H.264 access-unit assembly with a reorder
//! buffer, and the audio jitter buffer.

pub mod assembler;
pub mod jitter;
pub mod seq;
