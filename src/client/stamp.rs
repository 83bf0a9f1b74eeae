//! The process clock that stamps what this process sends (pictures carry
//! it in their pixels, beeps start on its whole seconds), and the senders
//! of this process: a receiver reads latency from their tiles because they
//! share the clock. The send side writes here, the receive side reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Milliseconds on the process clock, for stamps (every client in one
/// process shares it, so any of their tiles gives a latency).
pub fn clock_ms() -> u64 {
    clock_ms_f64() as u64
}

/// [`clock_ms`] with its fraction.
pub fn clock_ms_f64() -> f64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// Whether a sender of this process beeps (so beeps heard by its
/// receivers started on this process's clock and measure audio latency).
pub fn beeping() -> bool {
    BEEPING.load(Ordering::Relaxed)
}

/// Notes that a sender of this process beeps.
pub fn set_beeping() {
    BEEPING.store(true, Ordering::Relaxed);
}

static BEEPING: AtomicBool = AtomicBool::new(false);

/// Senders in this process and their picture sizes.
fn locals() -> &'static Mutex<HashMap<String, (u32, u32)>> {
    static LOCALS: OnceLock<Mutex<HashMap<String, (u32, u32)>>> = OnceLock::new();
    LOCALS.get_or_init(Default::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a sender of this process with the size it sends.
pub fn register_local(peer: &str, size: (u32, u32)) {
    lock(locals()).insert(peer.to_owned(), size);
}

/// Forgets a sender of this process.
pub fn unregister_local(peer: &str) {
    lock(locals()).remove(peer);
}

/// The senders of this process and their sizes, now.
pub fn local_senders() -> HashMap<String, (u32, u32)> {
    lock(locals()).clone()
}
