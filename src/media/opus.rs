//! Opus at 48 kHz, 20 ms frames, mono, with loss concealment and in-band
//! FEC.
//!
//! The mix is mono, so the encoder is mono (a valid `opus/48000/2` stream)
//! and the decoder downmixes whatever a peer sends. A peer may send packets
//! of 2.5 to 120 ms; [`OpusDecoder::decode`] returns every sample and
//! [`Reframer`] cuts them into the 20 ms frames the mixer ticks on.

use super::frame::{AudioFrame, SAMPLES_PER_FRAME, SAMPLE_RATE};
use opus::{Application, Bitrate, Channels};

/// Longest Opus packet duration: 120 ms.
const MAX_SAMPLES: usize = SAMPLE_RATE as usize * 120 / 1000;
/// Largest encoded packet we produce.
const MAX_PACKET: usize = 1500;

/// Errors from the Opus codec.
#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    /// libopus refused a setting or failed to set up.
    #[error("cannot configure Opus: {0}")]
    Config(String),
    /// Encoding failed.
    #[error("Opus encode failed: {0}")]
    Encode(String),
    /// The packet is corrupt.
    #[error("Opus decode failed: {0}")]
    Decode(String),
}

/// Mono Opus encoder for 20 ms frames.
pub struct OpusEncoder {
    encoder: opus::Encoder,
    out: Vec<u8>,
}

impl OpusEncoder {
    /// An encoder at `bitrate` bits per second, tuned for voice.
    pub fn new(bitrate: u32) -> Result<Self, OpusError> {
        let config = |e: opus::Error| OpusError::Config(e.to_string());
        let mut encoder = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip).map_err(config)?;
        encoder.set_bitrate(Bitrate::Bits(bitrate.clamp(6_000, 510_000) as i32)).map_err(config)?;
        Ok(Self { encoder, out: vec![0; MAX_PACKET] })
    }

    /// Turns in-band FEC on (for a peer that offered `useinbandfec=1`),
    /// planning for `loss_percent` packet loss.
    pub fn set_fec(&mut self, on: bool, loss_percent: u8) -> Result<(), OpusError> {
        let config = |e: opus::Error| OpusError::Config(e.to_string());
        self.encoder.set_inband_fec(on).map_err(config)?;
        self.encoder.set_packet_loss_perc(if on { loss_percent.min(100) as i32 } else { 0 }).map_err(config)
    }

    /// Encodes 20 ms.
    pub fn encode(&mut self, frame: &AudioFrame) -> Result<&[u8], OpusError> {
        let n =
            self.encoder.encode_float(&frame.samples, &mut self.out).map_err(|e| OpusError::Encode(e.to_string()))?;
        Ok(&self.out[..n])
    }
}

/// Opus decoder (any channel count in, mono out).
pub struct OpusDecoder {
    decoder: opus::Decoder,
    pcm: Vec<f32>,
}

impl OpusDecoder {
    /// A new decoder.
    pub fn new() -> Result<Self, OpusError> {
        let decoder = opus::Decoder::new(SAMPLE_RATE, Channels::Mono).map_err(|e| OpusError::Config(e.to_string()))?;
        Ok(Self { decoder, pcm: vec![0.0; MAX_SAMPLES] })
    }

    /// Decodes one packet; returns its samples (any length up to 120 ms).
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[f32], OpusError> {
        if packet.is_empty() {
            return Err(OpusError::Decode("empty packet".into()));
        }
        let n =
            self.decoder.decode_float(packet, &mut self.pcm, false).map_err(|e| OpusError::Decode(e.to_string()))?;
        Ok(&self.pcm[..n])
    }

    /// Conceals one lost 20 ms frame (packet loss concealment).
    pub fn conceal(&mut self, out: &mut AudioFrame) -> Result<(), OpusError> {
        let n =
            self.decoder.decode_float(&[], &mut out.samples, false).map_err(|e| OpusError::Decode(e.to_string()))?;
        out.samples[n.min(SAMPLES_PER_FRAME)..].fill(0.0);
        Ok(())
    }

    /// Recovers a lost 20 ms frame from the FEC data in the packet that
    /// followed it. Without FEC data in `next`, this conceals instead.
    pub fn recover(&mut self, next: &[u8], out: &mut AudioFrame) -> Result<(), OpusError> {
        if next.is_empty() {
            return self.conceal(out);
        }
        let n =
            self.decoder.decode_float(next, &mut out.samples, true).map_err(|e| OpusError::Decode(e.to_string()))?;
        out.samples[n.min(SAMPLES_PER_FRAME)..].fill(0.0);
        Ok(())
    }
}

/// Cuts a stream of samples of any packet size into 20 ms frames.
#[derive(Default)]
pub struct Reframer {
    pending: Vec<f32>,
}

impl Reframer {
    /// An empty reframer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends samples.
    pub fn push(&mut self, samples: &[f32]) {
        // Never hold more than 200 ms: a sender far ahead of real time is
        // trimmed rather than buffered without bound.
        const CAP: usize = SAMPLES_PER_FRAME * 10;
        self.pending.extend_from_slice(samples);
        if self.pending.len() > CAP {
            let excess = self.pending.len() - CAP;
            self.pending.drain(..excess);
        }
    }

    /// Takes the next whole 20 ms frame, if there is one.
    pub fn pop(&mut self, out: &mut AudioFrame) -> bool {
        if self.pending.len() < SAMPLES_PER_FRAME {
            return false;
        }
        out.samples.copy_from_slice(&self.pending[..SAMPLES_PER_FRAME]);
        self.pending.drain(..SAMPLES_PER_FRAME);
        true
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::tone_power_db;
    use crate::media::pattern::Tone;

    fn tone_packets(freq: f64, n: usize, fec: bool) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new(48_000).unwrap();
        enc.set_fec(fec, 20).unwrap();
        let mut tone = Tone::new(freq, 0.3);
        let mut frame = AudioFrame::silence();
        (0..n)
            .map(|_| {
                tone.next_frame(&mut frame);
                enc.encode(&frame).unwrap().to_vec()
            })
            .collect()
    }

    #[test]
    fn a_tone_survives_the_round_trip() {
        let packets = tone_packets(740.0, 25, false);
        let mut dec = OpusDecoder::new().unwrap();
        let mut pcm = Vec::new();
        for p in &packets {
            let s = dec.decode(p).unwrap();
            assert_eq!(s.len(), SAMPLES_PER_FRAME);
            pcm.extend_from_slice(s);
        }
        let tail = &pcm[pcm.len() - 4800..];
        let p = tone_power_db(tail, 740.0);
        assert!((p - 20.0 * 0.3f64.log10()).abs() < 1.5, "tone at {p:.1} dB");
        assert!(tone_power_db(tail, 1200.0) < p - 30.0);
    }

    #[test]
    fn loss_is_concealed_and_fec_recovers_the_lost_frame() {
        let packets = tone_packets(600.0, 30, true);
        let mut dec = OpusDecoder::new().unwrap();
        for p in &packets[..20] {
            dec.decode(p).unwrap();
        }
        // Packet 20 is lost; 21 carries its FEC copy.
        let mut recovered = AudioFrame::silence();
        dec.recover(&packets[21], &mut recovered).unwrap();
        let p = tone_power_db(&recovered.samples, 600.0);
        assert!(p > -16.0, "FEC frame tone at {p:.1} dB");
        dec.decode(&packets[21]).unwrap();
        // Two more lost with no packet after: concealment keeps a signal going.
        let mut concealed = AudioFrame::silence();
        dec.conceal(&mut concealed).unwrap();
        assert!(concealed.rms() > 0.01, "concealment produced silence");
    }

    #[test]
    fn corrupt_packets_are_errors() {
        let mut dec = OpusDecoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        // TOC for a code-3 packet claiming 48 frames with no data behind it.
        assert!(dec.decode(&[0xff, 0xff]).is_err());
        // The decoder still works afterwards.
        let packets = tone_packets(500.0, 2, false);
        assert!(dec.decode(&packets[0]).is_ok());
    }

    #[test]
    fn odd_packet_sizes_are_reframed_to_20_ms() {
        let mut r = Reframer::new();
        let mut out = AudioFrame::silence();
        r.push(&[0.5; 480]); // 10 ms
        assert!(!r.pop(&mut out));
        r.push(&[0.25; 2880]); // 60 ms
        assert!(r.pop(&mut out));
        assert_eq!(out.samples[0], 0.5);
        assert_eq!(out.samples[480], 0.25);
        assert!(r.pop(&mut out) && r.pop(&mut out) && !r.pop(&mut out));
        assert_eq!(r.len(), 3360 - 2880);
    }
}
