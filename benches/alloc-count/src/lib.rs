//! A counting global allocator for tests and benchmarks that must *prove* allocation and
//! memory claims ("zero allocations per cycle", "N bytes per idle client") rather than argue
//! them.
//!
//! Install it in a test binary of its own (so nothing else shares the allocator):
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: starling_alloc_count::Counting = starling_alloc_count::Counting;
//! ```
//!
//! Counters are per thread, so tests in one binary can run in parallel without seeing each
//! other's allocations. [`calls_during`] counts allocator calls around a closure;
//! [`snapshot`] reads live bytes (as requested, and as glibc's malloc would charge them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// glibc malloc's per-chunk header.
const GLIBC_HEADER_BYTES: usize = 8;
/// glibc malloc's chunk granularity.
const GLIBC_GRANULE_BYTES: usize = 16;
/// glibc malloc's smallest chunk.
const GLIBC_MIN_CHUNK_BYTES: usize = 32;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static LIVE_CHARGED: Cell<isize> = const { Cell::new(0) };
}

/// What this thread's allocations amount to at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Allocator calls (alloc, dealloc, realloc) so far.
    pub calls: u64,
    /// Allocations (alloc and realloc) so far.
    pub allocations: u64,
    /// Bytes requested and not freed.
    pub live_bytes: isize,
    /// The same, as glibc's malloc charges them (header, 16-byte granules, 32-byte minimum).
    pub live_charged_bytes: isize,
}

/// The bytes glibc's malloc sets aside for a request of `size` bytes.
pub fn glibc_charged(size: usize) -> isize {
    ((size + GLIBC_HEADER_BYTES).div_ceil(GLIBC_GRANULE_BYTES) * GLIBC_GRANULE_BYTES)
        .max(GLIBC_MIN_CHUNK_BYTES) as isize
}

/// This thread's counters.
pub fn snapshot() -> Snapshot {
    Snapshot {
        calls: CALLS.with(Cell::get),
        allocations: ALLOCATIONS.with(Cell::get),
        live_bytes: LIVE.with(Cell::get),
        live_charged_bytes: LIVE_CHARGED.with(Cell::get),
    }
}

/// Allocator calls this thread makes while `work` runs.
pub fn calls_during(work: impl FnOnce()) -> u64 {
    let before = CALLS.with(Cell::get);
    work();
    CALLS.with(Cell::get) - before
}

fn track(grown: Option<usize>, shrunk: Option<usize>) {
    // `try_with`: the counters are const-initialised with no destructor, so this never
    // allocates, and it is a no-op while the thread is being torn down.
    let _ = CALLS.try_with(|c| c.set(c.get() + 1));
    if grown.is_some() {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }
    let bytes = |size: Option<usize>| size.map_or(0, |s| s as isize);
    let charged = |size: Option<usize>| size.map_or(0, glibc_charged);
    let _ = LIVE.try_with(|c| c.set(c.get() + bytes(grown) - bytes(shrunk)));
    let _ = LIVE_CHARGED.try_with(|c| c.set(c.get() + charged(grown) - charged(shrunk)));
}

/// The counting allocator: forwards everything to [`System`] and counts.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the bookkeeping touches only const-initialised thread-locals and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(Some(layout.size()), None);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(None, Some(layout.size()));
        // SAFETY: `ptr` came from `System.alloc` with this layout (every allocation is ours).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(Some(new_size), Some(layout.size()));
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
