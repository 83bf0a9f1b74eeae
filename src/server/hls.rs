//! Live HLS of recorded rooms: the recording's fMP4 fragments, grouped
//! into segments that each start on a keyframe, with a playlist of the
//! last few. Passive viewers (any number, no WebRTC) play it over HTTP.
//!
//! The recorder pushes [`Piece`]s into a room's [`HlsStream`]; the HTTP
//! listener reads it through the [`HlsRegistry`]. Neither knows the other.

use crate::media::fmp4::Piece;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Segments a playlist lists (older ones are dropped).
const WINDOW: usize = 6;
/// An open segment longer than this (no keyframe came) is dropped.
const MAX_SEGMENT: Duration = Duration::from_secs(30);
/// How often the recorder asks for a keyframe while a room is on HLS:
/// about the segment length.
pub const SEGMENT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Segment {
    seq: u64,
    duration: Duration,
    data: Arc<Vec<u8>>,
}

/// One room's live stream.
#[derive(Default)]
pub struct HlsStream {
    init: Option<Arc<Vec<u8>>>,
    segments: VecDeque<Segment>,
    /// The segment being filled: its start and its fragments so far.
    open: Option<(Duration, Vec<u8>)>,
    next_seq: u64,
}

impl HlsStream {
    /// Takes the recorder's next piece.
    pub fn push(&mut self, piece: Piece) {
        match piece {
            Piece::Init(data) => self.init = Some(Arc::new(data)),
            Piece::Fragment { start, keyframe, data } => {
                if keyframe {
                    if let Some((from, bytes)) = self.open.take() {
                        self.close(start.saturating_sub(from), bytes);
                    }
                    self.open = Some((start, data));
                } else if let Some((from, bytes)) = self.open.as_mut() {
                    if start.saturating_sub(*from) > MAX_SEGMENT {
                        self.open = None; // no keyframe for too long: start again at the next
                    } else {
                        bytes.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    fn close(&mut self, duration: Duration, data: Vec<u8>) {
        self.segments.push_back(Segment { seq: self.next_seq, duration, data: Arc::new(data) });
        self.next_seq += 1;
        while self.segments.len() > WINDOW {
            self.segments.pop_front();
        }
    }

    /// The live playlist, once a segment is complete.
    pub fn playlist(&self) -> Option<String> {
        let first = self.segments.front()?;
        self.init.as_ref()?;
        let target = self.segments.iter().map(|s| s.duration.as_secs_f64().ceil() as u64).max().unwrap_or(1).max(1);
        let mut p = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"\n",
            first.seq
        );
        for s in &self.segments {
            p.push_str(&format!("#EXTINF:{:.3},\nseg-{}.m4s\n", s.duration.as_secs_f64(), s.seq));
        }
        Some(p)
    }

    /// The init segment.
    pub fn init(&self) -> Option<Arc<Vec<u8>>> {
        self.init.clone()
    }

    /// Segment `seq`, while the playlist still lists it.
    pub fn segment(&self, seq: u64) -> Option<Arc<Vec<u8>>> {
        self.segments.iter().find(|s| s.seq == seq).map(|s| s.data.clone())
    }
}

/// The live streams by room.
#[derive(Default)]
pub struct HlsRegistry {
    rooms: Mutex<HashMap<String, Arc<Mutex<HlsStream>>>>,
}

impl HlsRegistry {
    /// A fresh stream for `room` (a new recording replaces the last).
    pub fn open(&self, room: &str) -> Arc<Mutex<HlsStream>> {
        let s = Arc::new(Mutex::new(HlsStream::default()));
        lock(&self.rooms).insert(room.to_owned(), s.clone());
        s
    }

    /// The recording of `room` ended: its stream goes (if it is still `stream`).
    pub fn close(&self, room: &str, stream: &Arc<Mutex<HlsStream>>) {
        let mut rooms = lock(&self.rooms);
        if rooms.get(room).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            rooms.remove(room);
        }
    }

    /// Runs `f` on `room`'s stream, if it has one.
    pub fn with<T>(&self, room: &str, f: impl FnOnce(&HlsStream) -> Option<T>) -> Option<T> {
        let stream = lock(&self.rooms).get(room).cloned()?;
        let s = lock(&stream);
        f(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(ms: u64, keyframe: bool, byte: u8) -> Piece {
        Piece::Fragment { start: Duration::from_millis(ms), keyframe, data: vec![byte; 4] }
    }

    #[test]
    fn segments_run_from_keyframe_to_keyframe_and_the_window_slides() {
        let mut s = HlsStream::default();
        assert!(s.playlist().is_none(), "nothing until a segment is whole");
        s.push(Piece::Init(vec![1, 2, 3]));
        s.push(frag(0, false, 9)); // before any keyframe: not playable, dropped
        s.push(frag(100, true, 1));
        s.push(frag(1100, false, 2));
        assert!(s.playlist().is_none());
        s.push(frag(2100, true, 3));
        let p = s.playlist().unwrap();
        assert!(p.contains("#EXT-X-MAP:URI=\"init.mp4\"") && p.contains("#EXTINF:2.000,\nseg-0.m4s"), "{p}");
        assert_eq!(s.segment(0).unwrap().as_slice(), &[1, 1, 1, 1, 2, 2, 2, 2]);
        for i in 2..12u64 {
            s.push(frag(i * 2000 + 100, true, i as u8));
        }
        let p = s.playlist().unwrap();
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:5"), "{p}");
        assert_eq!(p.matches("#EXTINF").count(), WINDOW);
        assert!(s.segment(0).is_none(), "dropped from the window");
    }

    #[test]
    fn a_new_recording_replaces_the_stream_and_only_its_own_end_removes_it() {
        let reg = HlsRegistry::default();
        let first = reg.open("r");
        let second = reg.open("r");
        reg.close("r", &first);
        assert!(reg.with("r", |s| Some(s.next_seq)).is_some(), "the second is still there");
        reg.close("r", &second);
        assert!(reg.with("r", |s| Some(s.next_seq)).is_none());
    }
}
