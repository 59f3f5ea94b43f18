//! A counting global allocator that tells the broker's heap from the harness's own.
//!
//! The `sim` transport runs Starling's shards in this process. Code that calls into a shard
//! does so inside a [`BrokerScope`]; every byte allocated or freed while a scope is open on
//! the current thread counts as the broker's, everything else as the harness's. The binary
//! installs [`CountingAlloc`] as its global allocator; without it (e.g. in library tests)
//! [`installed`] is false and the figures are not reported.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static BROKER_BYTES: AtomicI64 = AtomicI64::new(0);
static HARNESS_BYTES: AtomicI64 = AtomicI64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static IN_BROKER: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting.
pub struct CountingAlloc;

fn count(delta: i64) {
    let broker = IN_BROKER.try_with(Cell::get).unwrap_or(false);
    let counter = if broker {
        &BROKER_BYTES
    } else {
        &HARNESS_BYTES
    };
    counter.fetch_add(delta, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; counting has no effect on memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        count(layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        count(layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Whether the counting allocator is the global allocator of this process.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::Relaxed)
}

/// Heap bytes held by broker code (allocated inside a [`BrokerScope`]).
pub fn broker_bytes() -> i64 {
    BROKER_BYTES.load(Ordering::Relaxed)
}

/// Heap bytes held by everything else.
pub fn harness_bytes() -> i64 {
    HARNESS_BYTES.load(Ordering::Relaxed)
}

/// While alive, this thread's allocations count as the broker's.
pub struct BrokerScope {
    was: bool,
}

impl BrokerScope {
    /// Opens a scope on the current thread.
    pub fn enter() -> BrokerScope {
        let was = IN_BROKER.with(|c| c.replace(true));
        BrokerScope { was }
    }
}

impl Drop for BrokerScope {
    fn drop(&mut self) {
        IN_BROKER.with(|c| c.set(self.was));
    }
}
