//! Everything a peer can put in a signaling message or topic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera::signaling::{legacy, protocol};

fuzz_target!(|data: &[u8]| {
    let _ = protocol::parse_client(data);
    let _ = protocol::parse_control(data);
    let _ = legacy::parse(data, "server");
    if let Ok(topic) = std::str::from_utf8(data) {
        let _ = protocol::Topics::new("tessera").parse(topic);
        let _ = legacy::room_for(topic);
    }
    if let Ok(sdp) = std::str::from_utf8(data) {
        let _ = tessera::peer::sdp::inspect_offer(sdp);
    }
});
