//! A counting global allocator: how many allocations a client makes per
//! request.
//!
//! This is the one module of the workspace with `unsafe` code: implementing
//! [`GlobalAlloc`] is an `unsafe impl` by definition. It only forwards each
//! call to the system allocator unchanged (the same pointer, layout and
//! size), so it adds no safety obligation of its own. The harness is not
//! published, and the crate's lints deny `unsafe_code` everywhere else.
//!
//! Counting is off by default and costs one relaxed load per allocation
//! then; the timed runs leave it off (a shared counter would add
//! cache-line traffic between the cores to every allocation) and a separate
//! untimed pass turns it on.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The system allocator, counting calls while [`set_counting`] is on.
pub(crate) struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

#[inline]
fn count(bytes: usize) {
    if ON.load(Ordering::Relaxed) {
        CALLS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees are this allocator's.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr` came from `System`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Turn counting on or off.
pub(crate) fn set_counting(on: bool) {
    ON.store(on, Ordering::SeqCst);
}

/// Allocator calls (alloc, alloc_zeroed and realloc) and bytes requested,
/// counted while counting was on.
pub(crate) fn snapshot() -> (u64, u64) {
    (CALLS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_while_on() {
        // Other tests may allocate concurrently: compare lower bounds only.
        set_counting(true);
        let before = snapshot();
        let v: Vec<u64> = Vec::with_capacity(1000);
        let after = snapshot();
        set_counting(false);
        drop(v);
        assert!(after.0 > before.0, "{before:?} {after:?}");
        assert!(after.1 - before.1 >= 8000, "{before:?} {after:?}");
    }
}
