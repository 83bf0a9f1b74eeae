//! H.264 through OpenH264: a constrained-baseline encoder for the
//! downstream and a decoder that lends its picture without copying.
//!
//! Bitstreams are Annex B (start codes) in both directions; RTP
//! (de)packetizing is the transport's business. Neither side ever panics on
//! what it is given: a corrupt or truncated stream is an [`H264Error`].

use super::frame::{FrameRef, PlaneRef};
use openh264::decoder::{Decoder, DecoderConfig, Flush};
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Level, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};
use std::time::Duration;

/// Errors from the H.264 codec.
#[derive(Debug, thiserror::Error)]
pub enum H264Error {
    /// The encoder could not be set up with these parameters.
    #[error("cannot configure the H.264 encoder: {0}")]
    Config(String),
    /// Encoding a frame failed.
    #[error("H.264 encode failed: {0}")]
    Encode(String),
    /// The bitstream is corrupt or incomplete.
    #[error("H.264 decode failed: {0}")]
    Decode(String),
    /// The decoder produced a picture we cannot use.
    #[error("decoded picture has an unusable layout: {0}")]
    Picture(String),
}

/// Encoder settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct H264Config {
    /// Width (even).
    pub width: u32,
    /// Height (even).
    pub height: u32,
    /// Target bitrate in bits per second.
    pub bitrate: u32,
    /// Frame rate the rate control plans for.
    pub fps: f32,
    /// A keyframe every this many frames (0: only when forced).
    pub keyframe_interval: u32,
    /// Trade speed for quality.
    pub fast: bool,
}

impl H264Config {
    /// Settings for `width` x `height` at `fps` and `bitrate`, a keyframe
    /// every 10 seconds.
    pub fn new(width: u32, height: u32, fps: u32, bitrate: u32) -> Self {
        Self { width, height, bitrate, fps: fps as f32, keyframe_interval: fps.saturating_mul(10), fast: false }
    }

    fn level(&self) -> Level {
        let macroblocks_per_second = (self.width as f32 / 16.0).ceil() * (self.height as f32 / 16.0).ceil() * self.fps;
        match macroblocks_per_second as u32 {
            0..=11_880 => Level::Level_3_0,
            11_881..=108_000 => Level::Level_3_1,
            108_001..=216_000 => Level::Level_3_2,
            _ => Level::Level_4_1,
        }
    }
}

/// One encoded access unit.
#[derive(Debug)]
pub struct EncodedVideo<'a> {
    /// Annex B NAL units.
    pub data: &'a [u8],
    /// An IDR picture (decodable on its own, with SPS/PPS in front).
    pub keyframe: bool,
}

/// Constrained-baseline H.264 encoder.
pub struct H264Encoder {
    encoder: Encoder,
    config: H264Config,
    out: Vec<u8>,
    /// openh264 sets itself up on the first picture; options can only be
    /// changed after that.
    started: bool,
    /// The frame rate openh264 itself was set up with.
    planned_fps: f32,
    /// The encoder's bitrate ceiling now (raised and lowered with the bitrate).
    max_bitrate: u32,
    /// Rate control skipped the last picture, so it may not skip this one
    /// (see [`H264Encoder::encode`]).
    skipped: bool,
}

impl H264Encoder {
    /// A new encoder.
    pub fn new(config: H264Config) -> Result<Self, H264Error> {
        if config.width < 16
            || config.height < 16
            || !config.width.is_multiple_of(2)
            || !config.height.is_multiple_of(2)
        {
            return Err(H264Error::Config(format!(
                "{}x{} is not an even size of at least 16x16",
                config.width, config.height
            )));
        }
        if !(1.0..=120.0).contains(&config.fps) || config.bitrate < 10_000 {
            return Err(H264Error::Config(format!("{} fps at {} bps is out of range", config.fps, config.bitrate)));
        }
        let cfg = EncoderConfig::new()
            .profile(Profile::Baseline)
            .level(config.level())
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(config.bitrate))
            .max_frame_rate(FrameRate::from_hz(config.fps))
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.keyframe_interval))
            .complexity(if config.fast { Complexity::Low } else { Complexity::Medium })
            .num_threads(1);
        let encoder =
            Encoder::with_api_config(OpenH264API::from_source(), cfg).map_err(|e| H264Error::Config(e.to_string()))?;
        Ok(Self {
            encoder,
            config,
            out: Vec::with_capacity(64 * 1024),
            started: false,
            planned_fps: config.fps,
            max_bitrate: config.bitrate,
            skipped: false,
        })
    }

    /// Changes the target bitrate from the next picture on, without a
    /// keyframe (the rate control follows within a few frames).
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), H264Error> {
        let bitrate = bitrate.max(10_000);
        if bitrate == self.config.bitrate {
            return Ok(());
        }
        self.config.bitrate = bitrate;
        self.apply_rate()
    }

    /// Changes how often pictures come, without a keyframe. openh264 resets
    /// (and sends an IDR) when its own frame rate changes, and budgets each
    /// picture at bitrate / frame rate; so its frame rate stays what it was
    /// made with, and the bitrate it is given is scaled instead.
    pub fn set_fps(&mut self, fps: f32) -> Result<(), H264Error> {
        let fps = fps.clamp(1.0, 120.0);
        if fps == self.config.fps {
            return Ok(());
        }
        self.config.fps = fps;
        self.apply_rate()
    }

    fn apply_rate(&mut self) -> Result<(), H264Error> {
        if !self.started {
            let planned = H264Config { bitrate: self.config.bitrate, fps: self.config.fps, ..self.config };
            let rebuilt = Self::new(planned)?;
            self.encoder = rebuilt.encoder;
            self.planned_fps = planned.fps;
            self.max_bitrate = planned.bitrate;
            return Ok(());
        }
        let scaled =
            (self.config.bitrate as f64 * self.planned_fps as f64 / self.config.fps as f64).min(i32::MAX as f64);
        // openh264 refuses a bitrate above its maximum (made equal to the
        // first bitrate): move the maximum with it, before a rise and
        // after a fall.
        let rising = scaled > self.max_bitrate as f64;
        let options = if rising {
            [openh264_sys2::ENCODER_OPTION_MAX_BITRATE, openh264_sys2::ENCODER_OPTION_BITRATE]
        } else {
            [openh264_sys2::ENCODER_OPTION_BITRATE, openh264_sys2::ENCODER_OPTION_MAX_BITRATE]
        };
        for option in options {
            // The maximum that refuses is the (one) spatial layer's own.
            let layer = if option == openh264_sys2::ENCODER_OPTION_MAX_BITRATE {
                openh264_sys2::SPATIAL_LAYER_0
            } else {
                openh264_sys2::SPATIAL_LAYER_ALL
            };
            let mut info = openh264_sys2::SBitrateInfo { iLayer: layer, iBitrate: scaled as i32 };
            // SAFETY: the encoder is initialised (it has encoded a picture),
            // and both options read one SBitrateInfo, which lives on this
            // stack frame for the whole call.
            let rc = unsafe { self.encoder.raw_api().set_option(option, std::ptr::addr_of_mut!(info).cast()) };
            if rc != 0 {
                return Err(H264Error::Config(format!("openh264 refused bitrate {scaled:.0} (code {rc})")));
            }
        }
        self.max_bitrate = scaled as u32;
        Ok(())
    }

    /// Lets rate control skip pictures, or not.
    fn set_frame_skip(&mut self, on: bool) -> Result<(), H264Error> {
        let mut value = on;
        // SAFETY: the encoder is initialised (made in `new`); the option
        // reads one bool, which lives on this stack frame for the call.
        let rc = unsafe {
            self.encoder
                .raw_api()
                .set_option(openh264_sys2::ENCODER_OPTION_RC_FRAME_SKIP, std::ptr::addr_of_mut!(value).cast())
        };
        if rc != 0 {
            return Err(H264Error::Config(format!("openh264 refused frame skip {on} (code {rc})")));
        }
        Ok(())
    }

    /// Makes the next encoded frame an IDR.
    pub fn force_keyframe(&mut self) {
        self.encoder.force_intra_frame();
    }

    /// Encodes one picture (it must be the configured size). `None` when
    /// rate control skipped the frame.
    pub fn encode(&mut self, frame: &FrameRef<'_>, pts: Duration) -> Result<Option<EncodedVideo<'_>>, H264Error> {
        if frame.width() as u32 != self.config.width || frame.height() as u32 != self.config.height {
            return Err(H264Error::Encode(format!(
                "picture is {}x{}, encoder is {}x{}",
                frame.width(),
                frame.height(),
                self.config.width,
                self.config.height
            )));
        }
        // Rate control may skip a picture when it is over budget, but not
        // two in a row: at 15 fps two skips leave a 200 ms hole, which a
        // viewer sees (and WebRTC counts) as a freeze; the picture after
        // a skip is coded coarser instead.
        let no_skip = self.skipped;
        if no_skip {
            self.set_frame_skip(false)?;
        }
        let ts = Timestamp::from_millis(pts.as_millis().min(u64::MAX as u128) as u64);
        let bitstream = self.encoder.encode_at(frame, ts).map_err(|e| H264Error::Encode(e.to_string()))?;
        self.started = true;
        let kind = bitstream.frame_type();
        self.out.clear();
        bitstream.write_vec(&mut self.out);
        let skipped = matches!(kind, FrameType::Skip | FrameType::Invalid) || self.out.is_empty();
        self.skipped = skipped && !no_skip;
        if no_skip {
            self.set_frame_skip(true)?;
        }
        if skipped {
            return Ok(None);
        }
        Ok(Some(EncodedVideo { data: &self.out, keyframe: kind == FrameType::IDR }))
    }
}

/// H.264 decoder (single-threaded: OpenH264's decoder threads are unsafe).
pub struct H264Decoder {
    decoder: Decoder,
}

impl H264Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, H264Error> {
        let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
        let decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| H264Error::Config(e.to_string()))?;
        Ok(Self { decoder })
    }

    /// Decodes one access unit (Annex B). Returns the picture, borrowed
    /// from the decoder until the next call (no copy), or `None` if the
    /// data held no complete picture (parameter sets only, say).
    pub fn decode(&mut self, annex_b: &[u8]) -> Result<Option<Decoded<'_>>, H264Error> {
        if annex_b.is_empty() {
            return Ok(None);
        }
        let decoded = self.decoder.decode(annex_b).map_err(|e| H264Error::Decode(e.to_string()))?;
        let Some(yuv) = decoded else { return Ok(None) };
        planes(&yuv)?;
        Ok(Some(Decoded { yuv }))
    }
}

/// A decoded picture, still inside the decoder.
pub struct Decoded<'a> {
    yuv: openh264::decoder::DecodedYUV<'a>,
}

impl Decoded<'_> {
    /// The picture's planes.
    pub fn frame(&self) -> FrameRef<'_> {
        // `decode` only hands out a `Decoded` whose planes passed `planes`.
        planes(&self.yuv).expect("validated when decoded")
    }
}

/// Checks the decoder's planes and views them as an even-sized picture
/// (odd sizes are legal H.264; we show the even part).
fn planes<'a>(yuv: &'a openh264::decoder::DecodedYUV<'_>) -> Result<FrameRef<'a>, H264Error> {
    let (w, h) = yuv.dimensions();
    let (ys, us, vs) = yuv.strides();
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let picture = |e: super::frame::FrameError| H264Error::Picture(e.to_string());
    let y = PlaneRef::new(yuv.y(), w, h, ys).map_err(picture)?;
    let u = PlaneRef::new(yuv.u(), cw, ch, us).map_err(picture)?;
    let v = PlaneRef::new(yuv.v(), cw, ch, vs).map_err(picture)?;
    let (ew, eh) = (w & !1, h & !1);
    FrameRef::new(
        y.crop(0, 0, ew, eh).map_err(picture)?,
        u.crop(0, 0, ew / 2, eh / 2).map_err(picture)?,
        v.crop(0, 0, ew / 2, eh / 2).map_err(picture)?,
    )
    .map_err(picture)
}

/// The NAL units of an Annex B buffer (start codes removed).
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = annex_b;
    std::iter::from_fn(move || {
        // Skip to just past the next start code.
        let start = find_start_code(rest)?;
        rest = &rest[start..];
        let end = find_start_code_pos(rest).unwrap_or(rest.len());
        let (nal, tail) = rest.split_at(end);
        rest = tail;
        // Trailing zero bytes belong to the next 4-byte start code.
        let trimmed = nal.iter().rposition(|&b| b != 0).map_or(&nal[..0], |i| &nal[..=i]);
        Some(trimmed)
    })
    .filter(|n| !n.is_empty())
}

/// Index just past the first start code in `data`.
fn find_start_code(data: &[u8]) -> Option<usize> {
    find_start_code_pos(data).map(|p| p + 3)
}

/// Index of the first `00 00 01` in `data`.
fn find_start_code_pos(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// The NAL unit type (low five bits of the header byte).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// The picture size an access unit's sequence parameter set announces:
/// `None` if it carries no SPS, an error if the SPS cannot be read.
pub fn sps_size(annex_b: &[u8]) -> Option<Result<(u32, u32), H264Error>> {
    use h264_reader::nal::sps::SeqParameterSet;
    use h264_reader::rbsp::{decode_nal, BitReader};
    let nal = nal_units(annex_b).find(|n| nal_type(n) == Some(7))?;
    let bad = |e: String| H264Error::Decode(format!("unreadable SPS: {e}"));
    Some((|| {
        // The header byte is skipped, emulation prevention removed.
        let rbsp = decode_nal(nal).map_err(|e| bad(e.to_string()))?;
        let sps = SeqParameterSet::from_bits(BitReader::new(&*rbsp)).map_err(|e| bad(format!("{e:?}")))?;
        sps.pixel_dimensions().map_err(|e| bad(format!("{e:?}")))
    })())
}

/// Whether an access unit holds an IDR slice (type 5).
pub fn is_keyframe(annex_b: &[u8]) -> bool {
    nal_units(annex_b).any(|n| nal_type(n) == Some(5))
}

#[cfg(test)]
mod tests;
