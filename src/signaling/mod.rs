//! MQTT signaling: the wire protocol (pure) and the broker link.

pub mod broker;
pub mod legacy;
pub mod link;
pub mod passwords;
pub mod protocol;
