//! tessera: a compositing MCU video-conferencing server.
//!
//! See `ARCHITECTURE.md` for the data path. `media` is the pure core
//! (frames, compositor, mixer, codecs); `layout` reads layout files.

#![warn(missing_docs)]

pub mod layout;
pub mod media;
