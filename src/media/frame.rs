//! Raw media frames: I420 video with per-plane strides, 20 ms audio at 48 kHz.
//!
//! A [`VideoFrame`] owns one buffer holding its three planes; it is meant to
//! be reused (see [`VideoFrame::reshape`]) rather than reallocated per frame.
//! A [`FrameRef`] borrows three planes from anywhere (a [`VideoFrame`], a
//! decoder's internal picture, a test pattern) so the compositor and the
//! encoder never need to own what they read.

use super::color::Yuv;
use std::time::Duration;

/// Audio sample rate, everywhere in tessera.
pub const SAMPLE_RATE: u32 = 48_000;
/// Audio frame length.
pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// Samples in one 20 ms audio frame (per channel; the mix is mono).
pub const SAMPLES_PER_FRAME: usize = 960;

/// Errors building frames or plane views.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// I420 needs even dimensions so chroma lines up with luma.
    #[error("{width}x{height} is not a valid I420 size: width and height must be even and at least 2")]
    OddOrEmpty {
        /// Requested width.
        width: usize,
        /// Requested height.
        height: usize,
    },
    /// A plane's buffer is smaller than its geometry says.
    #[error("plane buffer too small: {len} bytes for {width}x{height} with stride {stride}")]
    ShortPlane {
        /// Buffer length.
        len: usize,
        /// Plane width.
        width: usize,
        /// Plane height.
        height: usize,
        /// Plane stride.
        stride: usize,
    },
    /// A sub-rectangle that does not lie inside its plane.
    #[error("rectangle {w}x{h} at ({x},{y}) is outside a {width}x{height} plane")]
    OutOfBounds {
        /// Left.
        x: usize,
        /// Top.
        y: usize,
        /// Width.
        w: usize,
        /// Height.
        h: usize,
        /// Plane width.
        width: usize,
        /// Plane height.
        height: usize,
    },
}

fn check_plane(len: usize, width: usize, height: usize, stride: usize) -> Result<(), FrameError> {
    let needed = if height == 0 {
        0
    } else {
        stride.checked_mul(height - 1).and_then(|n| n.checked_add(width)).unwrap_or(usize::MAX)
    };
    if stride < width || len < needed {
        return Err(FrameError::ShortPlane { len, width, height, stride });
    }
    Ok(())
}

/// Checks that `width` x `height` is a valid I420 size.
pub fn check_i420_size(width: usize, height: usize) -> Result<(), FrameError> {
    if width < 2 || height < 2 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(FrameError::OddOrEmpty { width, height });
    }
    Ok(())
}

/// A read-only view of one image plane.
#[derive(Clone, Copy, Debug)]
pub struct PlaneRef<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
}

impl<'a> PlaneRef<'a> {
    /// A view of `width` x `height` samples, rows `stride` bytes apart.
    pub fn new(data: &'a [u8], width: usize, height: usize, stride: usize) -> Result<Self, FrameError> {
        check_plane(data.len(), width, height, stride)?;
        Ok(Self { data, width, height, stride })
    }

    /// Width in samples.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Bytes from one row to the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The underlying bytes (rows are `stride` apart; the last row may be short).
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Row `y`, exactly `width` samples long.
    ///
    /// # Panics
    /// If `y >= height` (a programming error, never driven by input).
    pub fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width]
    }

    /// The sample at (`x`, `y`).
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.row(y)[x]
    }

    /// A sub-rectangle of this plane.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Result<PlaneRef<'a>, FrameError> {
        if x + w > self.width || y + h > self.height {
            return Err(FrameError::OutOfBounds { x, y, w, h, width: self.width, height: self.height });
        }
        let start = y * self.stride + x;
        let data = if h == 0 { &self.data[..0] } else { &self.data[start..] };
        PlaneRef::new(data, w, h, self.stride)
    }
}

/// A mutable view of one image plane (or of a rectangle inside one).
#[derive(Debug)]
pub struct PlaneMut<'a> {
    data: &'a mut [u8],
    width: usize,
    height: usize,
    stride: usize,
}

impl<'a> PlaneMut<'a> {
    /// A mutable view of `width` x `height` samples, rows `stride` bytes apart.
    pub fn new(data: &'a mut [u8], width: usize, height: usize, stride: usize) -> Result<Self, FrameError> {
        check_plane(data.len(), width, height, stride)?;
        Ok(Self { data, width, height, stride })
    }

    /// Width in samples.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Bytes from one row to the next.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The underlying bytes.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.data
    }

    /// A read-only view of the same samples.
    pub fn as_ref(&self) -> PlaneRef<'_> {
        PlaneRef { data: self.data, width: self.width, height: self.height, stride: self.stride }
    }

    /// Row `y`, exactly `width` samples long.
    ///
    /// # Panics
    /// If `y >= height` (a programming error, never driven by input).
    pub fn row_mut(&mut self, y: usize) -> &mut [u8] {
        let start = y * self.stride;
        &mut self.data[start..start + self.width]
    }

    /// A mutable sub-rectangle of this plane.
    pub fn crop_mut(&mut self, x: usize, y: usize, w: usize, h: usize) -> Result<PlaneMut<'_>, FrameError> {
        if x + w > self.width || y + h > self.height {
            return Err(FrameError::OutOfBounds { x, y, w, h, width: self.width, height: self.height });
        }
        let start = y * self.stride + x;
        let data = if h == 0 { &mut self.data[..0] } else { &mut self.data[start..] };
        PlaneMut::new(data, w, h, self.stride)
    }

    /// Sets every sample to `value`.
    pub fn fill(&mut self, value: u8) {
        for y in 0..self.height {
            self.row_mut(y).fill(value);
        }
    }

    /// Copies `src` (same size) into this plane.
    ///
    /// # Panics
    /// If the sizes differ (a programming error).
    pub fn copy_from(&mut self, src: &PlaneRef<'_>) {
        assert_eq!((self.width, self.height), (src.width, src.height));
        // Rows back to back on both sides (a whole plane into a whole
        // plane): one copy, which the C library does with its bulk-copy
        // instruction.
        let n = self.width * self.height;
        if self.stride == self.width && src.stride == src.width && self.data.len() >= n && src.data.len() >= n {
            self.data[..n].copy_from_slice(&src.data[..n]);
            return;
        }
        for y in 0..self.height {
            self.row_mut(y).copy_from_slice(src.row(y));
        }
    }
}

/// Borrowed I420 picture: three planes, chroma at half resolution.
#[derive(Clone, Copy, Debug)]
pub struct FrameRef<'a> {
    /// Luma.
    pub y: PlaneRef<'a>,
    /// Cb.
    pub u: PlaneRef<'a>,
    /// Cr.
    pub v: PlaneRef<'a>,
}

impl<'a> FrameRef<'a> {
    /// Groups three planes, checking that they form an I420 picture.
    pub fn new(y: PlaneRef<'a>, u: PlaneRef<'a>, v: PlaneRef<'a>) -> Result<Self, FrameError> {
        check_i420_size(y.width, y.height)?;
        let (cw, ch) = (y.width / 2, y.height / 2);
        for p in [&u, &v] {
            if p.width != cw || p.height != ch {
                return Err(FrameError::ShortPlane { len: p.data.len(), width: cw, height: ch, stride: p.stride });
            }
        }
        Ok(Self { y, u, v })
    }

    /// Luma width.
    pub fn width(&self) -> usize {
        self.y.width
    }

    /// Luma height.
    pub fn height(&self) -> usize {
        self.y.height
    }

    /// The colour at luma position (`x`, `y`).
    pub fn yuv_at(&self, x: usize, y: usize) -> Yuv {
        Yuv { y: self.y.at(x, y), u: self.u.at(x / 2, y / 2), v: self.v.at(x / 2, y / 2) }
    }

    /// A sub-picture; `x`, `y`, `w`, `h` must be even.
    pub fn crop(&self, x: usize, y: usize, w: usize, h: usize) -> Result<FrameRef<'a>, FrameError> {
        check_i420_size(w, h)?;
        if !x.is_multiple_of(2) || !y.is_multiple_of(2) {
            return Err(FrameError::OddOrEmpty { width: x, height: y });
        }
        Ok(FrameRef {
            y: self.y.crop(x, y, w, h)?,
            u: self.u.crop(x / 2, y / 2, w / 2, h / 2)?,
            v: self.v.crop(x / 2, y / 2, w / 2, h / 2)?,
        })
    }
}

impl openh264::formats::YUVSource for FrameRef<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.y.width, self.y.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.y.stride, self.u.stride, self.v.stride)
    }

    fn y(&self) -> &[u8] {
        self.y.data
    }

    fn u(&self) -> &[u8] {
        self.u.data
    }

    fn v(&self) -> &[u8] {
        self.v.data
    }
}

/// An owned I420 picture in one reusable buffer.
#[derive(Clone, Debug, Default)]
pub struct VideoFrame {
    width: usize,
    height: usize,
    data: Vec<u8>,
    /// Presentation time of this picture on its sender's media clock.
    pub pts: Duration,
}

impl VideoFrame {
    /// A new frame filled with `color`.
    pub fn new(width: usize, height: usize, color: Yuv) -> Result<Self, FrameError> {
        let mut frame = Self::default();
        frame.reshape(width, height)?;
        frame.fill(color);
        Ok(frame)
    }

    /// Changes the frame's size, reusing the buffer (it is given back when
    /// the picture shrinks to under half). The contents are unspecified
    /// afterwards.
    pub fn reshape(&mut self, width: usize, height: usize) -> Result<(), FrameError> {
        check_i420_size(width, height)?;
        self.width = width;
        self.height = height;
        let len = width * height * 3 / 2;
        if self.data.len() != len {
            self.data.resize(len, 0);
            // A picture that shrank for good (a sender asked for its tile
            // size) should not keep its old buffer's memory.
            if self.data.capacity() > 2 * len {
                self.data.shrink_to_fit();
            }
        }
        Ok(())
    }

    /// Luma width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Luma height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// All three planes, packed (Y, then U, then V, no padding).
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    fn split(&self) -> (&[u8], &[u8], &[u8]) {
        let ylen = self.width * self.height;
        let clen = ylen / 4;
        let (y, rest) = self.data.split_at(ylen);
        let (u, v) = rest.split_at(clen);
        (y, u, v)
    }

    /// Borrows the three planes.
    pub fn as_frame(&self) -> FrameRef<'_> {
        let (y, u, v) = self.split();
        let (w, h) = (self.width, self.height);
        FrameRef {
            y: PlaneRef { data: y, width: w, height: h, stride: w },
            u: PlaneRef { data: u, width: w / 2, height: h / 2, stride: w / 2 },
            v: PlaneRef { data: v, width: w / 2, height: h / 2, stride: w / 2 },
        }
    }

    /// Borrows the three planes mutably.
    pub fn planes_mut(&mut self) -> [PlaneMut<'_>; 3] {
        let (w, h) = (self.width, self.height);
        let ylen = w * h;
        let (y, rest) = self.data.split_at_mut(ylen);
        let (u, v) = rest.split_at_mut(ylen / 4);
        [
            PlaneMut { data: y, width: w, height: h, stride: w },
            PlaneMut { data: u, width: w / 2, height: h / 2, stride: w / 2 },
            PlaneMut { data: v, width: w / 2, height: h / 2, stride: w / 2 },
        ]
    }

    /// Paints the whole frame one colour.
    pub fn fill(&mut self, color: Yuv) {
        let [mut y, mut u, mut v] = self.planes_mut();
        y.fill(color.y);
        u.fill(color.u);
        v.fill(color.v);
    }

    /// Makes this frame a copy of `src`, reusing the buffer. Odd sizes (a
    /// decoder may report them) are cropped down to even.
    pub fn copy_from(&mut self, src: &FrameRef<'_>) -> Result<(), FrameError> {
        let (w, h) = (src.width() & !1, src.height() & !1);
        self.reshape(w, h)?;
        let [mut y, mut u, mut v] = self.planes_mut();
        y.copy_from(&src.y.crop(0, 0, w, h)?);
        u.copy_from(&src.u.crop(0, 0, w / 2, h / 2)?);
        v.copy_from(&src.v.crop(0, 0, w / 2, h / 2)?);
        Ok(())
    }
}

/// 20 ms of mono audio at 48 kHz, samples in -1.0..=1.0.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioFrame {
    /// The samples.
    pub samples: [f32; SAMPLES_PER_FRAME],
}

impl Default for AudioFrame {
    fn default() -> Self {
        Self::silence()
    }
}

impl AudioFrame {
    /// A silent frame.
    pub const fn silence() -> Self {
        Self { samples: [0.0; SAMPLES_PER_FRAME] }
    }

    /// Root mean square of the samples (full scale = 1.0).
    pub fn rms(&self) -> f32 {
        let sum: f32 = self.samples.iter().map(|s| s * s).sum();
        (sum / SAMPLES_PER_FRAME as f32).sqrt()
    }

    /// Largest absolute sample.
    pub fn peak(&self) -> f32 {
        self.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::color::Rgb;

    #[test]
    fn rejects_odd_and_empty_sizes() {
        assert!(VideoFrame::new(3, 2, Yuv::default()).is_err());
        assert!(VideoFrame::new(2, 0, Yuv::default()).is_err());
        assert!(VideoFrame::new(2, 2, Yuv::default()).is_ok());
    }

    #[test]
    fn plane_views_check_their_buffers() {
        let buf = [0u8; 10];
        assert!(PlaneRef::new(&buf, 4, 3, 4).is_err());
        assert!(PlaneRef::new(&buf, 4, 3, 3).is_err());
        assert!(PlaneRef::new(&buf, 4, 2, 6).is_ok());
        let p = PlaneRef::new(&buf, 4, 2, 6).unwrap();
        assert!(p.crop(2, 1, 2, 1).is_ok());
        assert!(p.crop(3, 1, 2, 1).is_err());
    }

    #[test]
    fn copy_crops_odd_decoder_sizes_and_reuses_buffer() {
        let red = Rgb::new(255, 0, 0).to_yuv();
        let mut data = vec![red.y; 7 * 5];
        data.extend(vec![red.u; 4 * 3]);
        data.extend(vec![red.v; 4 * 3]);
        let (y, rest) = data.split_at(35);
        let (u, v) = rest.split_at(12);
        let src = FrameRef {
            y: PlaneRef::new(y, 7, 5, 7).unwrap(),
            u: PlaneRef::new(u, 3, 2, 4).unwrap(),
            v: PlaneRef::new(v, 3, 2, 4).unwrap(),
        };
        let mut dst = VideoFrame::new(64, 64, Yuv::default()).unwrap();
        let ptr = dst.as_bytes().as_ptr();
        dst.copy_from(&src).unwrap();
        assert_eq!((dst.width(), dst.height()), (6, 4));
        assert_eq!(dst.as_frame().yuv_at(5, 3), red);
        assert_eq!(ptr, dst.as_bytes().as_ptr(), "buffer was reallocated");
    }
}
