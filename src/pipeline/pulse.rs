//! A heartbeat shared by a room's pictures and its views: every new
//! decoded picture (and every scene change) beats it, and view threads
//! wait on it, so a composite is drawn as soon as there is something new
//! to draw rather than on the next fixed tick (about half a frame period
//! sooner on average).

use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Beats counted under a lock, with a condition variable to wait on.
#[derive(Default)]
pub struct Pulse {
    beats: Mutex<u64>,
    cv: Condvar,
}

impl Pulse {
    /// No beat yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Something new: wakes every waiter.
    pub fn beat(&self) {
        *self.beats.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.cv.notify_all();
    }

    /// Beats so far.
    pub fn beats(&self) -> u64 {
        *self.beats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a beat after `seen` or until `deadline`; returns the
    /// beats counted then.
    pub fn wait(&self, seen: u64, deadline: Instant) -> u64 {
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        while *beats == seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            beats = match self.cv.wait_timeout(beats, deadline - now) {
                Ok((b, _)) => b,
                Err(e) => e.into_inner().0,
            };
        }
        *beats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_beat_wakes_a_waiter_before_its_deadline() {
        let p = Arc::new(Pulse::new());
        let seen = p.beats();
        let beater = {
            let p = p.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                p.beat();
            })
        };
        let start = Instant::now();
        let now = p.wait(seen, start + Duration::from_secs(10));
        assert_eq!(now, seen + 1);
        assert!(start.elapsed() < Duration::from_secs(5));
        beater.join().unwrap();
        // Nothing new: the wait ends at its deadline.
        let start = Instant::now();
        assert_eq!(p.wait(now, start + Duration::from_millis(30)), now);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }
}
