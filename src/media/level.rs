//! Audio levels (RFC 6464 -dBov) and active-speaker detection.
//!
//! The detector is fed one level per participant per 20 ms tick, with the
//! tick's timestamp; it never reads a clock. A new speaker takes the floor
//! only after being the loudest active voice for the whole hold time, so a
//! cough or a short "mm-hm" does not move the big tile.

use super::frame::AudioFrame;
use std::time::Duration;

/// RFC 6464 audio level of a frame: 0 (full-scale square wave) to 127
/// (silence), in -dBov. A full-scale sine is 3.
pub fn level_dbov(frame: &AudioFrame) -> u8 {
    let rms = frame.rms();
    if rms <= 0.0 || !rms.is_finite() {
        return 127;
    }
    (-20.0 * rms.log10()).round().clamp(0.0, 127.0) as u8
}

/// Levels quieter than this (in -dBov) are not speech.
pub const DEFAULT_SPEECH_THRESHOLD: u8 = 50;

#[derive(Clone, Debug)]
struct Voice {
    id: u64,
    /// Smoothed loudness in dB (higher is louder, 0 = full scale).
    loudness: f32,
    /// Last tick it was fed.
    seen: Duration,
}

/// Picks the active speaker with hysteresis.
#[derive(Clone, Debug)]
pub struct SpeakerDetector {
    hold: Duration,
    threshold: u8,
    voices: Vec<Voice>,
    current: Option<u64>,
    candidate: Option<(u64, Duration)>,
}

impl SpeakerDetector {
    /// A detector where a challenger must lead for `hold` before taking the floor.
    pub fn new(hold: Duration) -> Self {
        Self { hold, threshold: DEFAULT_SPEECH_THRESHOLD, voices: Vec::new(), current: None, candidate: None }
    }

    /// Sets the speech threshold in -dBov (quieter levels are silence).
    pub fn with_threshold(mut self, dbov: u8) -> Self {
        self.threshold = dbov.min(127);
        self
    }

    /// The current speaker.
    pub fn speaker(&self) -> Option<u64> {
        self.current
    }

    /// Whether `id` is talking right now (above the threshold, smoothed).
    pub fn is_speaking(&self, id: u64) -> bool {
        self.voices.iter().any(|v| v.id == id && v.loudness > -(self.threshold as f32))
    }

    /// Forgets a participant who left; if they held the floor, nobody does.
    pub fn remove(&mut self, id: u64) {
        self.voices.retain(|v| v.id != id);
        if self.current == Some(id) {
            self.current = None;
        }
        if self.candidate.is_some_and(|(c, _)| c == id) {
            self.candidate = None;
        }
    }

    /// Feeds one tick of levels (`(id, -dBov)`) at time `now`; returns
    /// `Some(speaker)` when the floor changed.
    pub fn update(&mut self, now: Duration, levels: impl IntoIterator<Item = (u64, u8)>) -> Option<u64> {
        for (id, level) in levels {
            let db = -(level.min(127) as f32);
            match self.voices.iter_mut().find(|v| v.id == id) {
                // Fast rise, ~60 ms fall: syllable gaps do not drop a speaker.
                Some(v) => {
                    v.loudness = if db > v.loudness { db } else { 0.7 * v.loudness + 0.3 * db };
                    v.seen = now;
                }
                None => self.voices.push(Voice { id, loudness: db, seen: now }),
            }
        }
        let threshold = -(self.threshold as f32);
        let loudest = self
            .voices
            .iter()
            .filter(|v| v.loudness > threshold)
            .max_by(|a, b| a.loudness.total_cmp(&b.loudness))
            .map(|v| v.id);
        let Some(loudest) = loudest else {
            self.candidate = None;
            return None;
        };
        if Some(loudest) == self.current {
            self.candidate = None;
            return None;
        }
        if self.current.is_none() {
            self.current = Some(loudest);
            self.candidate = None;
            return self.current;
        }
        match self.candidate {
            Some((id, since)) if id == loudest => {
                if now.saturating_sub(since) >= self.hold {
                    self.current = Some(loudest);
                    self.candidate = None;
                    return self.current;
                }
            }
            _ => self.candidate = Some((loudest, now)),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pattern::Tone;

    #[test]
    fn levels_follow_rfc6464() {
        let mut f = AudioFrame::silence();
        assert_eq!(level_dbov(&f), 127);
        Tone::new(1000.0, 1.0).next_frame(&mut f);
        assert_eq!(level_dbov(&f), 3);
        Tone::new(1000.0, 0.01).next_frame(&mut f);
        assert_eq!(level_dbov(&f), 43);
        f.samples.fill(f32::NAN);
        assert_eq!(level_dbov(&f), 127);
    }

    #[test]
    fn the_loud_input_takes_the_floor_only_after_the_hold_time() {
        let hold = Duration::from_millis(800);
        let mut d = SpeakerDetector::new(hold);
        let tick = Duration::from_millis(20);
        let mut now = Duration::ZERO;
        let mut changes = Vec::new();
        let mut run = |d: &mut SpeakerDetector, until_ms: u64, a: u8, b: u8, now: &mut Duration| {
            while *now < Duration::from_millis(until_ms) {
                if let Some(s) = d.update(*now, [(1, a), (2, b)]) {
                    changes.push((now.as_millis(), s));
                }
                *now += tick;
            }
        };
        // A talks from the start: nobody held the floor, so A takes it at once.
        run(&mut d, 1000, 20, 127, &mut now);
        // B says something short (300 ms < hold), A keeps the floor.
        run(&mut d, 1300, 60, 15, &mut now);
        run(&mut d, 2000, 20, 127, &mut now);
        // B talks for real from 2000 ms: takes the floor after the hold.
        run(&mut d, 4000, 127, 15, &mut now);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0], (0, 1));
        let (at, who) = changes[1];
        assert_eq!(who, 2);
        assert!((2000 + 800..=2000 + 900).contains(&at), "switched at {at} ms");
    }

    #[test]
    fn silence_keeps_the_last_speaker_and_leaving_frees_the_floor() {
        let mut d = SpeakerDetector::new(Duration::from_millis(500));
        d.update(Duration::ZERO, [(7, 20)]);
        assert_eq!(d.speaker(), Some(7));
        for ms in (20..2000).step_by(20) {
            d.update(Duration::from_millis(ms), [(7, 127), (8, 127)]);
        }
        assert_eq!(d.speaker(), Some(7));
        assert!(!d.is_speaking(7));
        d.remove(7);
        assert_eq!(d.speaker(), None);
        assert_eq!(d.update(Duration::from_millis(2020), [(8, 30)]), Some(8));
    }
}
