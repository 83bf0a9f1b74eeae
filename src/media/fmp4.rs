//! Fragmented MP4 (ISO BMFF) of a room's composite and mix: H.264 from a
//! view's encoder, Opus from the mixer, muxed by `muxide`.
//!
//! The file is an init segment (`ftyp` + `moov`, written at the first
//! keyframe, whose SPS and PPS it carries) followed by `moof` + `mdat`
//! fragments of about [`Fmp4Writer::new`]'s `fragment` length. A fragment
//! is complete on disk before the next starts, so a file cut off anywhere
//! (a crash, `kill -9`) plays up to its last whole fragment.
//!
//! Pure: samples and their media times go in, bytes to append come out.

use crate::media::h264::{nal_type, nal_units};
use muxide::api::AudioCodec;
use muxide::fragmented::{FragmentAudioConfig, FragmentConfig, FragmentedMuxer};
use std::time::Duration;

/// Video timescale (RTP's H.264 clock).
const VIDEO_HZ: u64 = 90_000;
/// Opus always counts 48 kHz samples.
const AUDIO_HZ: u64 = 48_000;
/// Samples in one 20 ms Opus packet.
const OPUS_PACKET: u64 = 960;

/// Why a sample could not be muxed.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// The first keyframe lacked an SPS or a PPS.
    #[error("the first keyframe has no SPS/PPS")]
    NoParameterSets,
    /// The muxer refused the track setup or a sample.
    #[error("fMP4 muxer: {0}")]
    Mux(String),
}

/// One piece of the output, for a consumer that needs the boundaries (a
/// live HLS playlist): see [`Fmp4Writer::keep_pieces`].
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// The init segment (`ftyp` + `moov`).
    Init(Vec<u8>),
    /// One `moof` + `mdat`.
    Fragment {
        /// Media time of its first video sample.
        start: Duration,
        /// It starts with a keyframe (a fragment is cut before every one).
        keyframe: bool,
        /// The bytes.
        data: Vec<u8>,
    },
}

/// Turns timed samples into fMP4 bytes.
pub struct Fmp4Writer {
    width: u32,
    height: u32,
    fragment: Duration,
    muxer: Option<FragmentedMuxer>,
    /// Media time of the first keyframe: both tracks count from it.
    start: Option<Duration>,
    last_video: Option<u64>,
    audio_packets: u64,
    video_frames: u64,
    out: Vec<u8>,
    /// Pieces kept for [`Fmp4Writer::take_pieces`], if wanted.
    pieces: Option<Vec<Piece>>,
    /// The open fragment's first video time and whether that was a keyframe.
    open: Option<(Duration, bool)>,
}

impl Fmp4Writer {
    /// A writer for a `width` x `height` picture, cutting fragments of
    /// about `fragment`.
    pub fn new(width: u32, height: u32, fragment: Duration) -> Self {
        Self {
            width,
            height,
            fragment,
            muxer: None,
            start: None,
            last_video: None,
            audio_packets: 0,
            video_frames: 0,
            out: Vec::new(),
            pieces: None,
            open: None,
        }
    }

    /// Also keep the output as [`Piece`]s (init, then fragments with their
    /// start times), for [`Fmp4Writer::take_pieces`].
    pub fn keep_pieces(mut self) -> Self {
        self.pieces = Some(Vec::new());
        self
    }

    /// The pieces made since the last call (empty unless [`Fmp4Writer::keep_pieces`]).
    pub fn take_pieces(&mut self) -> Vec<Piece> {
        self.pieces.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Adds an Annex B access unit shown at `at`. Nothing is written
    /// before the first keyframe.
    pub fn video(&mut self, annex_b: &[u8], keyframe: bool, at: Duration) -> Result<(), Fmp4Error> {
        if self.muxer.is_none() {
            if !keyframe {
                return Ok(());
            }
            self.open(annex_b)?;
            self.start = Some(at);
        }
        let Some(start) = self.start else { return Ok(()) };
        let mut dts = (at.saturating_sub(start).as_micros() as u64) * VIDEO_HZ / 1_000_000;
        // Equal or backward times (a clock step): keep the track moving.
        if let Some(last) = self.last_video {
            dts = dts.max(last + 1);
        }
        self.last_video = Some(dts);
        // Every keyframe starts a fragment, so a player can start at any.
        if keyframe && self.open.is_some() {
            self.cut();
        }
        let sample = length_prefixed(annex_b);
        let Some(muxer) = self.muxer.as_mut() else { return Ok(()) };
        muxer.write_video(dts, dts, &sample, keyframe).map_err(|e| Fmp4Error::Mux(e.to_string()))?;
        self.open.get_or_insert((Duration::from_micros(dts * 1_000_000 / VIDEO_HZ), keyframe));
        self.video_frames += 1;
        self.cut_if_due();
        Ok(())
    }

    /// Adds one 20 ms Opus packet that arrived at `at` (dropped before the
    /// first keyframe; after it, packets follow each other without gaps).
    pub fn audio(&mut self, packet: &[u8], at: Duration) -> Result<(), Fmp4Error> {
        let Some(start) = self.start else { return Ok(()) };
        if at < start || packet.is_empty() {
            return Ok(());
        }
        let dts = self.audio_packets * OPUS_PACKET;
        let Some(muxer) = self.muxer.as_mut() else { return Ok(()) };
        muxer.write_audio(dts, dts, packet).map_err(|e| Fmp4Error::Mux(e.to_string()))?;
        self.audio_packets += 1;
        self.cut_if_due();
        Ok(())
    }

    /// Bytes ready to append to the file (init segment and whole fragments).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Ends the recording: the last, partial fragment and anything pending.
    pub fn finish(&mut self) -> Vec<u8> {
        self.cut();
        self.take()
    }

    /// Video frames and audio packets muxed so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.video_frames, self.audio_packets)
    }

    /// Audio muxed so far.
    pub fn audio_duration(&self) -> Duration {
        Duration::from_micros(self.audio_packets * OPUS_PACKET * 1_000_000 / AUDIO_HZ)
    }

    fn open(&mut self, keyframe: &[u8]) -> Result<(), Fmp4Error> {
        let find = |t: u8| nal_units(keyframe).find(|n| nal_type(n) == Some(t)).map(<[u8]>::to_vec);
        let (Some(sps), Some(pps)) = (find(7), find(8)) else { return Err(Fmp4Error::NoParameterSets) };
        let mut config = FragmentConfig::new(self.width, self.height, VIDEO_HZ as u32)
            .with_fragment_duration_ms(self.fragment.as_millis().clamp(100, 10_000) as u32);
        config.sps = sps;
        config.pps = pps;
        let audio = FragmentAudioConfig { codec: AudioCodec::Opus, sample_rate: AUDIO_HZ as u32, channels: 1 };
        let mut muxer = FragmentedMuxer::new_with_audio(config, audio).map_err(|e| Fmp4Error::Mux(e.to_string()))?;
        let init = muxer.init_segment();
        self.out.extend_from_slice(&init);
        if let Some(p) = self.pieces.as_mut() {
            p.push(Piece::Init(init));
        }
        self.muxer = Some(muxer);
        Ok(())
    }

    fn cut_if_due(&mut self) {
        if self.muxer.as_ref().is_some_and(FragmentedMuxer::ready_to_flush) {
            self.cut();
        }
    }

    /// Ends the open fragment.
    fn cut(&mut self) {
        let Some(data) = self.muxer.as_mut().and_then(FragmentedMuxer::flush_segment) else { return };
        self.out.extend_from_slice(&data);
        let last = Duration::from_micros(self.last_video.unwrap_or(0) * 1_000_000 / VIDEO_HZ);
        let (start, keyframe) = self.open.take().unwrap_or((last, false));
        if let Some(p) = self.pieces.as_mut() {
            p.push(Piece::Fragment { start, keyframe, data });
        }
    }
}

/// Annex B to the 4-byte length prefixes MP4 samples use. Parameter sets
/// stay in band too, so a decoder that joins at any keyframe has them.
fn length_prefixed(annex_b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(annex_b.len() + 16);
    for nal in nal_units(annex_b).filter(|n| !n.is_empty()) {
        out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::{AudioFrame, VideoFrame};
    use crate::media::h264::{H264Config, H264Encoder};
    use crate::media::opus::OpusEncoder;

    fn boxes(mut data: &[u8]) -> Vec<String> {
        let mut names = vec![];
        while data.len() >= 8 {
            let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
            names.push(String::from_utf8_lossy(&data[4..8]).into_owned());
            if size < 8 || size > data.len() {
                break;
            }
            data = &data[size..];
        }
        names
    }

    #[test]
    fn keyframes_start_fragments_and_pieces_say_where() {
        let mut enc = H264Encoder::new(H264Config::new(160, 90, 10, 100_000)).unwrap();
        let mut w = Fmp4Writer::new(160, 90, Duration::from_secs(10)).keep_pieces();
        let frame = VideoFrame::new(160, 90, crate::media::pattern::palette(1).to_yuv()).unwrap();
        for i in 0..30u64 {
            let t = Duration::from_millis(i * 100);
            if i % 10 == 0 {
                enc.force_keyframe();
            }
            let au = enc.encode(&frame.as_frame(), t).unwrap().expect("a frame");
            let (data, keyframe) = (au.data.to_vec(), au.keyframe);
            w.video(&data, keyframe, t).unwrap();
        }
        w.finish();
        let pieces = w.take_pieces();
        assert!(matches!(pieces[0], Piece::Init(_)));
        let starts: Vec<(Duration, bool)> = pieces[1..]
            .iter()
            .map(|p| match p {
                Piece::Fragment { start, keyframe, .. } => (*start, *keyframe),
                Piece::Init(_) => panic!("one init"),
            })
            .collect();
        let s = |ms| Duration::from_millis(ms);
        assert_eq!(starts, [(s(0), true), (s(1000), true), (s(2000), true)]);
    }

    #[test]
    fn annex_b_becomes_length_prefixed() {
        let au = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5, 6];
        assert_eq!(length_prefixed(&au), vec![0, 0, 0, 3, 0x67, 1, 2, 0, 0, 0, 2, 0x68, 3, 0, 0, 0, 4, 0x65, 4, 5, 6]);
    }

    #[test]
    fn real_codecs_make_an_init_segment_then_whole_fragments() {
        let mut enc = H264Encoder::new(H264Config::new(320, 180, 15, 300_000)).unwrap();
        let mut opus = OpusEncoder::new(32_000).unwrap();
        let mut w = Fmp4Writer::new(320, 180, Duration::from_secs(1));
        let mut file = Vec::new();
        // Audio before the first keyframe is not kept.
        w.audio(&[0xfc, 0xff, 0xfe], Duration::ZERO).unwrap();
        assert!(w.take().is_empty());
        let frame = VideoFrame::new(320, 180, crate::media::pattern::palette(2).to_yuv()).unwrap();
        let silence = AudioFrame::silence();
        for i in 0..45u64 {
            let t = Duration::from_millis(10 + i * 1000 / 15);
            if i == 0 {
                enc.force_keyframe();
            }
            let au = enc.encode(&frame.as_frame(), t).unwrap().expect("a frame");
            let (data, keyframe) = (au.data.to_vec(), au.keyframe);
            w.video(&data, keyframe, t).unwrap();
            for j in 0..3 {
                let p = opus.encode(&silence).unwrap().to_vec();
                w.audio(&p, t + Duration::from_millis(j * 20)).unwrap();
            }
            file.extend(w.take());
        }
        let before_finish = boxes(&file);
        assert_eq!(&before_finish[..2], ["ftyp", "moov"]);
        assert!(before_finish.iter().filter(|b| *b == "moof").count() >= 2, "{before_finish:?}");
        file.extend(w.finish());
        let all = boxes(&file);
        assert_eq!(all.iter().filter(|b| *b == "moof").count(), all.iter().filter(|b| *b == "mdat").count());
        assert_eq!(w.counts(), (45, 135));
        assert_eq!(w.audio_duration(), Duration::from_millis(2700));
    }
}
