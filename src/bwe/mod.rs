//! Downstream bandwidth: what each member's link carries, and which of a
//! view's quality tiers each member gets.
//!
//! Pure logic with time as an input, like the room: [`estimate`] turns the
//! feedback a receiver sends (transport-wide congestion control through
//! webrtc-rs's GCC, REMB, receiver-report loss and round trip) into one
//! estimate per member; [`tiers`] turns a view's members' estimates into
//! at most three shared encoders and who watches which. The session feeds
//! the first, the room task the second; tests drive both on a virtual
//! clock.

pub mod estimate;
pub mod tiers;
pub mod transport;
