//! A sender's RTP stream: packets (sequence number, timestamp, marker,
//! payload) cut from the input, through the reorder buffer and the
//! depacketizer, then every access unit into the H.264 decoder.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tessera::media::h264::H264Decoder;
use tessera::rtp::assembler::{Assembled, H264Assembler};

fuzz_target!(|data: &[u8]| {
    let mut assembler = H264Assembler::new();
    let Ok(mut decoder) = H264Decoder::new() else { return };
    let mut rest = data;
    let mut now = Duration::ZERO;
    // Each packet: seq (2), timestamp delta (1), flags (1), length (1), payload.
    while rest.len() >= 5 {
        let seq = u16::from_be_bytes([rest[0], rest[1]]);
        let ts = rest[2] as u32 * 3000;
        let marker = rest[3] & 1 == 1;
        now += Duration::from_millis((rest[3] >> 1) as u64);
        let len = (rest[4] as usize).min(rest.len() - 5);
        let payload = Bytes::copy_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        for out in assembler.push(seq, ts, marker, payload, now) {
            if let Assembled::Frame { data, .. } = out {
                if let Ok(Some(picture)) = decoder.decode(&data) {
                    let _ = picture.frame().width();
                }
            }
        }
    }
    // Whatever the stream, a raw access unit of the whole input too.
    let _ = decoder.decode(data);
});
