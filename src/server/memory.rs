//! Keeping the server's resident memory honest under churn (glibc only).
//!
//! Every member brings short-lived threads (its decoder) and large
//! allocations (codec state, packet buffers). With glibc's defaults each
//! thread may get its own malloc arena, and freed memory stays in them:
//! RSS climbs with churn although nothing leaks. Two arenas, a trim when a
//! room closes and one every few seconds keep it near what is in use.

/// Call once at start, before threads are spawned.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; M_ARENA_MAX with a
    // positive value is a documented, always-valid setting.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap memory to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim walks the allocator's own free lists; it has no
    // preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Heap bytes in use (allocated and not yet freed, mapped chunks
/// included): what a leak grows, unlike RSS, which also holds freed memory
/// the allocator keeps. `None` where glibc's `mallinfo2` is missing.
pub fn heap_in_use() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics; it has no
        // preconditions.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}
