//! Video that arrives as Y4M (8-bit 4:2:0): a file played in a loop, or a
//! live pipe (our stdin, or `ffmpeg` capturing a V4L2 camera) read on its
//! own thread. A live source hands over only its newest picture: one that
//! runs faster than the client's `--fps` is thinned, never queued.

use super::source::SourceError;
use crate::media::frame::{FrameRef, PlaneRef, VideoFrame};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Checks a Y4M header: 8-bit 4:2:0, even size of at least 16x16.
fn check_header<R: Read>(decoder: &y4m::Decoder<R>) -> Result<(usize, usize), String> {
    let c420 = matches!(
        decoder.get_colorspace(),
        y4m::Colorspace::C420 | y4m::Colorspace::C420jpeg | y4m::Colorspace::C420paldv | y4m::Colorspace::C420mpeg2
    );
    if decoder.get_bit_depth() != 8 || !c420 {
        return Err("only 8-bit 4:2:0 Y4M is supported".into());
    }
    let (w, h) = (decoder.get_width(), decoder.get_height());
    if w % 2 != 0 || h % 2 != 0 || w < 16 || h < 16 {
        return Err(format!("{w}x{h}: width and height must be even and at least 16"));
    }
    Ok((w, h))
}

/// Copies a Y4M picture into `frame` (which must have its size).
fn copy_picture(picture: &y4m::Frame<'_>, w: usize, h: usize, frame: &mut VideoFrame) -> Result<(), String> {
    let bad = |e: crate::media::frame::FrameError| e.to_string();
    let src = FrameRef::new(
        PlaneRef::new(picture.get_y_plane(), w, h, w).map_err(bad)?,
        PlaneRef::new(picture.get_u_plane(), w / 2, h / 2, w / 2).map_err(bad)?,
        PlaneRef::new(picture.get_v_plane(), w / 2, h / 2, w / 2).map_err(bad)?,
    )
    .map_err(bad)?;
    frame.copy_from(&src).map_err(bad)
}

/// A Y4M file, looped.
pub struct Y4mLoop {
    path: PathBuf,
    decoder: y4m::Decoder<std::io::BufReader<std::fs::File>>,
    frame: VideoFrame,
}

impl Y4mLoop {
    /// Opens `path` and checks its header.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let err = |e: String| SourceError::File(path.to_path_buf(), e);
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let decoder = y4m::Decoder::new(std::io::BufReader::new(file)).map_err(|e| err(format!("{e:?}")))?;
        let (w, h) = check_header(&decoder).map_err(err)?;
        let frame = VideoFrame::new(w, h, Default::default()).map_err(|e| err(e.to_string()))?;
        Ok(Self { path: path.to_path_buf(), decoder, frame })
    }

    /// The next picture, from the start again after the last.
    pub fn next(&mut self) -> Result<&mut VideoFrame, SourceError> {
        let (w, h) = (self.frame.width(), self.frame.height());
        let err = |e: String| SourceError::File(self.path.clone(), e);
        let picture = match self.decoder.read_frame() {
            Ok(f) => f,
            Err(y4m::Error::EOF) => {
                *self = Self::open(&self.path.clone())?;
                self.decoder.read_frame().map_err(|e| SourceError::File(self.path.clone(), format!("{e:?}")))?
            }
            Err(e) => return Err(err(format!("{e:?}"))),
        };
        copy_picture(&picture, w, h, &mut self.frame).map_err(|e| SourceError::File(self.path.clone(), e))?;
        Ok(&mut self.frame)
    }
}

/// Where the reader thread leaves the newest picture.
#[derive(Default)]
struct Slot {
    frame: Option<VideoFrame>,
    fresh: bool,
}

/// A live Y4M stream. Three pictures circulate between the reader thread,
/// the slot and the consumer; none is allocated per frame.
pub struct LiveY4m {
    slot: Arc<Mutex<Slot>>,
    current: Option<VideoFrame>,
    child: Option<Child>,
}

impl LiveY4m {
    /// Y4M on this process's standard input (`ffmpeg ... -f yuv4mpegpipe - | tessera client --video -`).
    pub fn stdin() -> Result<Self, SourceError> {
        Self::start(Box::new(std::io::stdin()), "stdin".into(), None)
    }

    /// A V4L2 camera, captured by `ffmpeg` at about `width`x`height` and
    /// `fps` (the driver picks the nearest mode it has; the picture keeps
    /// the size the camera gives).
    pub fn camera(device: &Path, width: u32, height: u32, fps: u32) -> Result<Self, SourceError> {
        let err = |e: String| SourceError::File(device.to_path_buf(), e);
        std::fs::metadata(device).map_err(|e| err(format!("no such camera ({e})")))?;
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-f", "v4l2"])
            .args(["-framerate", &fps.to_string(), "-video_size", &format!("{width}x{height}"), "-i"])
            .arg(device)
            .args(["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                err(format!("cannot run ffmpeg, which captures cameras (install it: apt install ffmpeg): {e}"))
            })?;
        let stdout = child.stdout.take().ok_or_else(|| err("ffmpeg has no output".into()))?;
        let label = device.display().to_string();
        Self::start(Box::new(stdout), label, Some(child))
    }

    fn start(input: Box<dyn Read + Send>, label: String, mut child: Option<Child>) -> Result<Self, SourceError> {
        let slot = Arc::new(Mutex::new(Slot::default()));
        let stderr = child.as_mut().and_then(|c| c.stderr.take());
        let shared = slot.clone();
        // Not joined: a read from stdin cannot be interrupted. It ends with
        // its input (ffmpeg is killed on drop; stdin closes at exit).
        std::thread::Builder::new()
            .name("live-video".into())
            .spawn(move || {
                let ended = read(input, &shared);
                // ffmpeg's last words (its error is at the end).
                let detail = stderr.map(|mut s| {
                    let mut text = String::new();
                    let _ = s.read_to_string(&mut text);
                    let text = text.trim();
                    let from = text.char_indices().rev().nth(399).map_or(0, |(i, _)| i);
                    text[from..].to_owned()
                });
                match detail.filter(|d| !d.is_empty()) {
                    Some(d) => tracing::error!(source = %label, "live video ended: {ended}: {d}"),
                    None => tracing::warn!(source = %label, "live video ended: {ended}"),
                }
            })
            .map_err(|e| SourceError::Codec(e.to_string()))?;
        Ok(Self { slot, current: None, child })
    }

    /// The newest picture, if one arrived since the last call.
    pub fn take(&mut self) -> Option<&mut VideoFrame> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if !slot.fresh {
            return None;
        }
        slot.fresh = false;
        std::mem::swap(&mut slot.frame, &mut self.current);
        drop(slot);
        self.current.as_mut()
    }
}

impl Drop for LiveY4m {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads pictures into the slot until the input ends; returns why it did.
fn read(input: Box<dyn Read + Send>, slot: &Mutex<Slot>) -> String {
    let mut decoder = match y4m::Decoder::new(std::io::BufReader::new(input)) {
        Ok(d) => d,
        Err(e) => return format!("not a Y4M stream ({e:?})"),
    };
    let (w, h) = match check_header(&decoder) {
        Ok(size) => size,
        Err(e) => return e,
    };
    tracing::info!(width = w, height = h, "live video started");
    let mut back: Option<VideoFrame> = None;
    loop {
        let picture = match decoder.read_frame() {
            Ok(p) => p,
            Err(y4m::Error::EOF) => return "end of stream".into(),
            Err(e) => return format!("{e:?}"),
        };
        let frame = match back.as_mut() {
            Some(f) => f,
            None => match VideoFrame::new(w, h, Default::default()) {
                Ok(f) => back.insert(f),
                Err(e) => return e.to_string(),
            },
        };
        if let Err(e) = copy_picture(&picture, w, h, frame) {
            return e;
        }
        let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut s.frame, &mut back);
        s.fresh = true;
    }
}
