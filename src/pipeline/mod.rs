//! The threads that run the media core for a room: a decoder per video
//! sender, a compositor + encoder per downstream view, one audio mixer.
//! They talk to the async world through channels and shared slots only;
//! no codec ever runs on a tokio worker thread.

pub mod audio;
pub mod cadence;
pub mod decode;
pub mod pulse;
pub mod scene;
pub mod slot;
pub mod tier;
pub mod view;
