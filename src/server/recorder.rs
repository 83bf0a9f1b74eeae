//! A room's recording: the canvas-size view's frames (as one more watcher
//! of that view's encoder) and the full mix (as a listener who does not
//! speak), muxed to fragmented MP4 by [`Fmp4Writer`] on a thread of its
//! own: file writes never run in an async task.
//!
//! Each fragment is written whole as soon as it is cut, so after a crash
//! the file plays up to its last fragment.

use super::hls::{HlsRegistry, HlsStream};
use crate::media::fmp4::Fmp4Writer;
use crate::pipeline::tier::EncodedFrame;
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Length of one fragment: what a crash can lose at most.
pub const FRAGMENT: Duration = Duration::from_secs(1);

/// Why a recording did not start.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The folder or the file could not be made.
    #[error("cannot create recording {0}: {1}")]
    Create(PathBuf, std::io::Error),
    /// The writer thread could not start.
    #[error("cannot start the recording thread: {0}")]
    Thread(std::io::Error),
}

enum Sample {
    Video(Arc<EncodedFrame>),
    Audio(Bytes, Instant),
}

/// A running recording. Dropping it (after the view and the mixer let go
/// of its senders) ends the file.
pub struct Recorder {
    /// Give to the view as the recorder's subscription.
    pub video_tx: mpsc::Sender<Arc<EncodedFrame>>,
    /// Give to the mixer as the recorder's output.
    pub audio_tx: mpsc::Sender<Bytes>,
    /// The file.
    pub path: PathBuf,
}

impl Recorder {
    /// Opens a new file for `room` in `dir` and starts writing to it (and
    /// to a live HLS stream in `hls`, if given).
    pub fn start(
        dir: &Path,
        room: &str,
        width: u32,
        height: u32,
        hls: Option<Arc<HlsRegistry>>,
    ) -> Result<Recorder, RecordError> {
        std::fs::create_dir_all(dir).map_err(|e| RecordError::Create(dir.to_path_buf(), e))?;
        let stamp = utc_stamp(SystemTime::now());
        let (path, file) = (1..100)
            .map(|n| {
                let name = if n == 1 { format!("{room}-{stamp}.mp4") } else { format!("{room}-{stamp}-{n}.mp4") };
                dir.join(name)
            })
            .find_map(|p| std::fs::File::create_new(&p).ok().map(|f| (p, f)))
            .ok_or_else(|| {
                RecordError::Create(dir.join(format!("{room}-{stamp}.mp4")), std::io::ErrorKind::AlreadyExists.into())
            })?;
        let (video_tx, mut video_rx) = mpsc::channel::<Arc<EncodedFrame>>(64);
        let (audio_tx, mut audio_rx) = mpsc::channel::<Bytes>(256);
        let (tx, rx) = std::sync::mpsc::channel::<Sample>();
        let writer_path = path.clone();
        let live = hls.map(|reg| {
            let stream = reg.open(room);
            (reg, stream, room.to_owned())
        });
        let mut mp4 = Fmp4Writer::new(width, height, FRAGMENT);
        if live.is_some() {
            mp4 = mp4.keep_pieces();
        }
        std::thread::Builder::new()
            .name(format!("record-{room}"))
            .spawn(move || {
                write(file, &writer_path, rx, mp4, live.as_ref().map(|(_, s, _)| s));
                if let Some((reg, stream, room)) = &live {
                    reg.close(room, stream);
                }
            })
            .map_err(RecordError::Thread)?;
        // Lines both channels up into the thread's queue, stamping audio
        // with its arrival (the mixer sends one packet per 20 ms tick).
        tokio::spawn(async move {
            let (mut video_open, mut audio_open) = (true, true);
            while video_open || audio_open {
                let sample = tokio::select! {
                    f = video_rx.recv(), if video_open => match f {
                        Some(f) => Sample::Video(f),
                        None => { video_open = false; continue; }
                    },
                    p = audio_rx.recv(), if audio_open => match p {
                        Some(p) => Sample::Audio(p, Instant::now()),
                        None => { audio_open = false; continue; }
                    },
                };
                if tx.send(sample).is_err() {
                    break;
                }
            }
        });
        tracing::info!(file = %path.display(), "recording started");
        Ok(Recorder { video_tx, audio_tx, path })
    }
}

/// The writer thread: mux, append each whole fragment, finish at the end.
fn write(
    mut file: std::fs::File,
    path: &Path,
    rx: std::sync::mpsc::Receiver<Sample>,
    mut mp4: Fmp4Writer,
    live: Option<&Arc<Mutex<HlsStream>>>,
) {
    let feed = |mp4: &mut Fmp4Writer| {
        if let Some(stream) = live {
            let pieces = mp4.take_pieces();
            if !pieces.is_empty() {
                let mut s = stream.lock().unwrap_or_else(|e| e.into_inner());
                pieces.into_iter().for_each(|p| s.push(p));
            }
        }
    };
    let base = Instant::now();
    let mut failed = false;
    let mut append = |bytes: Vec<u8>, failed: &mut bool| {
        if bytes.is_empty() || *failed {
            return;
        }
        if let Err(e) = file.write_all(&bytes) {
            tracing::error!(file = %path.display(), error = %e, "recording stopped: cannot write");
            *failed = true;
        }
    };
    for sample in rx {
        let result = match &sample {
            Sample::Video(f) => mp4.video(&f.data, f.keyframe, f.rendered.saturating_duration_since(base)),
            Sample::Audio(p, at) => mp4.audio(p, at.saturating_duration_since(base)),
        };
        if let Err(e) = result {
            tracing::warn!(file = %path.display(), error = %e, "recording: sample dropped");
        }
        append(mp4.take(), &mut failed);
        feed(&mut mp4);
    }
    append(mp4.finish(), &mut failed);
    feed(&mut mp4);
    let (frames, packets) = mp4.counts();
    tracing::info!(file = %path.display(), frames, audio_packets = packets, "recording ended");
}

/// `YYYYMMDDTHHMMSSZ` for a file name.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_utc_time() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_796_263_322)), "20261203T020202Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "20000229T000000Z");
    }
}
