//! One video decoder thread per received stream: access units in,
//! pictures out to a [`PictureSink`] (on the server, the sender's
//! [`FrameSlot`]). Decoding never runs on a tokio worker.

use super::slot::FrameSlot;
use crate::media::h264::{is_keyframe, sps_size, H264Decoder};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Access units queued per decoder before new ones are dropped.
const QUEUE: usize = 8;

/// Where decoded pictures go (called on the decoder thread).
pub trait PictureSink: Send + 'static {
    /// A new picture, lent until the call returns.
    fn picture(&mut self, frame: &crate::media::frame::FrameRef<'_>);

    /// Every access unit, before it is decoded (for recorders).
    fn unit(&mut self, _unit: &[u8]) {}
}

impl PictureSink for Arc<FrameSlot> {
    fn picture(&mut self, frame: &crate::media::frame::FrameRef<'_>) {
        self.publish(frame, Instant::now());
    }
}

/// Feeds one sender's decoder thread. Dropping it stops the thread.
pub struct VideoDecoder {
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
    /// Set by the thread while it waits for a keyframe (from a decode
    /// error until a picture decodes again); the reader sends PLIs.
    pub keyframe_needed: Arc<AtomicBool>,
}

/// Why an access unit was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Queue {
    /// Queued.
    Ok,
    /// The decoder is behind; the unit was dropped (ask for a keyframe).
    Full,
    /// The decoder is gone.
    Closed,
}

impl VideoDecoder {
    /// Starts a decoder thread named `name` handing pictures to `sink`.
    pub fn spawn(name: String, sink: impl PictureSink) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let keyframe_needed = Arc::new(AtomicBool::new(false));
        let flag = keyframe_needed.clone();
        let thread = std::thread::Builder::new().name(name).spawn(move || run(rx, sink, flag))?;
        Ok(Self { tx: Some(tx), thread: Some(thread), keyframe_needed })
    }

    /// Queues an access unit (Annex B) without blocking.
    pub fn push(&self, unit: Vec<u8>) -> Queue {
        let Some(tx) = &self.tx else { return Queue::Closed };
        match tx.try_send(unit) {
            Ok(()) => Queue::Ok,
            Err(TrySendError::Full(_)) => Queue::Full,
            Err(TrySendError::Disconnected(_)) => Queue::Closed,
        }
    }
}

impl Drop for VideoDecoder {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: Receiver<Vec<u8>>, mut sink: impl PictureSink, keyframe_needed: Arc<AtomicBool>) {
    let mut decoder = match H264Decoder::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start H.264 decoder");
            return;
        }
    };
    let mut errors = 0u64;
    // The largest picture area this decoder has been given: openh264 keeps
    // buffers for it, so when a sender drops to a much smaller size (its
    // tile's) the decoder is made anew rather than holding them.
    let mut largest = 0u64;
    // After an error, pictures would reference what could not be decoded:
    // skip to the next keyframe instead of showing corruption.
    let mut broken = false;
    while let Ok(unit) = rx.recv() {
        if broken && !is_keyframe(&unit) {
            continue;
        }
        sink.unit(&unit);
        if let Some(Ok((w, h))) = sps_size(&unit) {
            let area = w as u64 * h as u64;
            if area * 4 <= largest {
                match H264Decoder::new() {
                    Ok(d) => {
                        tracing::trace!(w, h, "smaller stream: a fresh decoder");
                        decoder = d;
                        largest = area;
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot make a fresh decoder"),
                }
            }
            largest = largest.max(area);
        }
        match decoder.decode(&unit) {
            Ok(Some(picture)) => {
                tracing::trace!(w = picture.frame().width(), "picture");
                if std::mem::replace(&mut broken, false) {
                    keyframe_needed.store(false, Ordering::Relaxed);
                }
                sink.picture(&picture.frame());
            }
            Ok(None) => tracing::trace!(bytes = unit.len(), "no picture"),
            Err(e) => {
                errors += 1;
                broken = true;
                // Named and described in `server::metrics`.
                metrics::counter!("tessera_decode_errors_total").increment(1);
                tracing::trace!(error = %e, errors, "decode error; asking for a keyframe");
                keyframe_needed.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::h264::{H264Config, H264Encoder};
    use crate::media::pattern::{palette, TestPattern};
    use std::time::Duration;

    #[test]
    fn decodes_into_the_slot() {
        let slot = FrameSlot::new();
        let dec = VideoDecoder::spawn("t".into(), slot.clone()).unwrap();
        let mut enc = H264Encoder::new(H264Config::new(320, 240, 15, 300_000)).unwrap();
        let mut p = TestPattern::new(320, 240, palette(0), "x").unwrap();
        for i in 0..5u64 {
            let f = p.render(i * 66, 0);
            let unit = enc.encode(&f, Duration::from_millis(i * 66)).unwrap().unwrap().data.to_vec();
            assert_eq!(dec.push(unit), Queue::Ok);
        }
        drop(dec);
        assert_eq!(slot.decoded(), 5);
        assert_eq!(slot.latest().unwrap().frame.width(), 320);
    }
}
