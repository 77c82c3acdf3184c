//! Giving memory back after a traffic burst (issue 12).
//!
//! A burst of 1,000 connections takes the heap to ~48 MB (pingora's per-connection futures
//! and buffers, see benches/results/separate-runs.md); once the connections close, less than 2 MB
//! is still in use, but glibc's malloc keeps the freed chunks: they are spread across its
//! arenas and pinned by a few long-lived allocations above them, so the heap top never
//! shrinks and RSS stays at the burst's peak for good. `malloc_trim(0)` hands every free
//! page of every arena back to the kernel (`MADV_DONTNEED`), including the ones in the middle
//! of a heap.
//!
//! Trimming costs page faults when the memory is used again, so it is not done blindly on
//! a timer: every `interval` this looks at glibc's own accounting (`mallinfo2`) and trims
//! only when the free bytes it holds exceed both [`MIN_FREE_TO_TRIM`] and the bytes in use,
//! which is the case after a burst has ended (or mostly ended) and not while a steady load
//! keeps its memory busy. It runs on the background service's thread, never on a proxy
//! worker.
//!
//! With the `jemalloc` build feature the allocator returns memory itself (decay with a
//! background thread, configured in `main.rs`) and this service does nothing.

use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tracing::debug;

/// Free bytes glibc must hold before a trim is worth its page faults.
pub const MIN_FREE_TO_TRIM: usize = 8 << 20;

pub struct AllocatorTrimmer {
    pub interval: Duration,
}

/// Free and in-use bytes of glibc's arenas (not counting mmap'd chunks, which are returned
/// on free anyway).
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
pub fn heap_free_and_used() -> Option<(usize, usize)> {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics.
    let mi = unsafe { libc::mallinfo2() };
    Some((mi.fordblks, mi.uordblks))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc"))))]
pub fn heap_free_and_used() -> Option<(usize, usize)> {
    None
}

/// Whether a trim is due for this much free and in-use heap.
pub fn should_trim(free: usize, used: usize) -> bool {
    free > MIN_FREE_TO_TRIM && free > used
}

/// Trims when due; returns the free bytes that were handed back to the kernel (as glibc
/// counted them before the trim), or `None` when nothing was done.
pub fn trim_if_due() -> Option<usize> {
    let (free, used) = heap_free_and_used()?;
    if !should_trim(free, used) {
        return None;
    }
    trim();
    Some(free)
}

#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory; it takes the arena locks itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc"))))]
fn trim() {}

#[async_trait]
impl BackgroundService for AllocatorTrimmer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if self.interval.is_zero() || heap_free_and_used().is_none() {
            return;
        }
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(free) = trim_if_due() {
                        debug!(free_bytes = free, "returned free heap to the kernel (malloc_trim)");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_when_free_heap_is_large_and_exceeds_what_is_in_use() {
        assert!(!should_trim(4 << 20, 1 << 20), "small free heap: not worth it");
        assert!(!should_trim(20 << 20, 40 << 20), "under load: memory is busy");
        assert!(should_trim(55 << 20, 2 << 20), "after a burst");
    }

    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
    #[test]
    fn glibc_reports_its_heap() {
        let v: Vec<u8> = vec![1; 1 << 16];
        let (_, used) = heap_free_and_used().unwrap();
        assert!(used >= v.len());
    }
}
