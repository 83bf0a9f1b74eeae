//! tessera: a compositing MCU video-conferencing server.
//!
//! See `ARCHITECTURE.md` for the data path. `media` is the pure core
//! (frames, compositor, mixer, codecs); `layout` reads layout files.

#![warn(missing_docs)]

pub mod bwe;
pub mod client;
pub mod cluster;
pub mod config;
pub mod http;
pub mod layout;
pub mod media;
pub mod peer;
pub mod pipeline;
pub mod room;
pub mod rtp;
pub mod secret;
pub mod server;
pub mod signaling;
