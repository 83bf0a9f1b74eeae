//! A sender's Opus stream: packets cut from the input through the jitter
//! buffer into the decoder, with loss concealment and FEC as the mixer
//! thread would run them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tessera::media::frame::AudioFrame;
use tessera::media::opus::{OpusDecoder, Reframer};
use tessera::rtp::jitter::{JitterBuffer, Pop};

fuzz_target!(|data: &[u8]| {
    let Ok(mut decoder) = OpusDecoder::new() else { return };
    let mut jitter = JitterBuffer::new();
    let mut reframer = Reframer::new();
    let mut frame = AudioFrame::silence();
    let mut rest = data;
    // Each packet: seq (2), length (1), payload.
    while rest.len() >= 3 {
        let seq = u16::from_be_bytes([rest[0], rest[1]]);
        let len = (rest[2] as usize).min(rest.len() - 3);
        jitter.push(seq, rest[3..3 + len].to_vec());
        rest = &rest[3 + len..];
        match jitter.pop() {
            Pop::Packet(p) => {
                if let Ok(samples) = decoder.decode(&p) {
                    reframer.push(samples);
                }
            }
            Pop::Lost { next: Some(next) } => {
                let _ = decoder.recover(&next, &mut frame);
            }
            Pop::Lost { next: None } => {
                let _ = decoder.conceal(&mut frame);
            }
            Pop::Empty => {}
        }
        while reframer.pop(&mut frame) {}
    }
});
