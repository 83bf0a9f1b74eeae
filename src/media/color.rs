//! Colours: `#rrggbb` parsing and RGB <-> Y'CbCr (BT.601, limited range).
//!
//! BT.601 limited range is what H.264 decoders (browsers included) assume
//! when a stream carries no colour description, so it is what we paint with.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::str::FromStr;

/// An 8-bit sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Rgb {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
}

/// A colour as the three I420 sample values (BT.601 limited range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Yuv {
    /// Luma.
    pub y: u8,
    /// Blue-difference chroma.
    pub u: u8,
    /// Red-difference chroma.
    pub v: u8,
}

/// A colour string that is not `#rrggbb`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a colour: expected #rrggbb")]
pub struct ParseColorError(pub String);

impl Rgb {
    /// Black.
    pub const BLACK: Rgb = Rgb::new(0, 0, 0);
    /// White.
    pub const WHITE: Rgb = Rgb::new(255, 255, 255);

    /// A colour from its three components.
    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// The I420 sample values of this colour.
    pub fn to_yuv(self) -> Yuv {
        let (r, g, b) = (self.r as f32, self.g as f32, self.b as f32);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        Yuv { y: clamp_u8(y), u: clamp_u8(u), v: clamp_u8(v) }
    }

    /// Euclidean distance in RGB space, used by tests and probes that ask
    /// "is this pixel roughly that colour?".
    pub fn distance(self, other: Rgb) -> f32 {
        let dr = self.r as f32 - other.r as f32;
        let dg = self.g as f32 - other.g as f32;
        let db = self.b as f32 - other.b as f32;
        (dr * dr + dg * dg + db * db).sqrt()
    }
}

impl Yuv {
    /// Back to RGB (for previews and probes; never on the media path).
    pub fn to_rgb(self) -> Rgb {
        let y = (self.y as f32 - 16.0) * 255.0 / 219.0;
        let u = (self.u as f32 - 128.0) * 255.0 / 224.0;
        let v = (self.v as f32 - 128.0) * 255.0 / 224.0;
        Rgb { r: clamp_u8(y + 1.402 * v), g: clamp_u8(y - 0.344_136 * u - 0.714_136 * v), b: clamp_u8(y + 1.772 * u) }
    }
}

fn clamp_u8(x: f32) -> u8 {
    x.round().clamp(0.0, 255.0) as u8
}

impl FromStr for Rgb {
    type Err = ParseColorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseColorError(s.to_owned());
        let hex = s.strip_prefix('#').ok_or_else(err)?;
        if hex.len() != 6 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(err());
        }
        let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| err());
        Ok(Rgb::new(channel(0)?, channel(2)?, channel(4)?))
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }
}

impl<'de> Deserialize<'de> for Rgb {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Rgb {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_hex() {
        let c: Rgb = "#FF8000".parse().unwrap();
        assert_eq!(c, Rgb::new(255, 128, 0));
        assert_eq!(c.to_string(), "#ff8000");
        for bad in ["ff8000", "#ff800", "#gg0000", "#ff80000", "", "#é0000"] {
            assert!(bad.parse::<Rgb>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn yuv_round_trip_is_close() {
        for c in [
            Rgb::new(255, 0, 0),
            Rgb::new(0, 255, 0),
            Rgb::new(0, 0, 255),
            Rgb::new(200, 200, 30),
            Rgb::BLACK,
            Rgb::WHITE,
        ] {
            let back = c.to_yuv().to_rgb();
            assert!(c.distance(back) < 4.0, "{c} -> {back}");
        }
        assert_eq!(Rgb::BLACK.to_yuv(), Yuv { y: 16, u: 128, v: 128 });
        assert_eq!(Rgb::WHITE.to_yuv(), Yuv { y: 235, u: 128, v: 128 });
    }
}
