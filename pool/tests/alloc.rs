//! Zero global-allocator calls per acquire/release cycle once preheated, proven with a
//! counting allocator (this file is its own test binary, so the allocator is ours alone).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use starling_pool::PoolConfig;

struct Counting;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread-local may be gone while a thread is being torn down.
    let _ = CALLS.try_with(|calls| calls.set(calls.get() + 1));
}

// SAFETY: every method forwards to `System`, which upholds `GlobalAlloc`'s contract; the
// counter is a const-initialised thread-local `Cell`, whose access never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count();
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Global-allocator calls made on this thread while `work` runs.
fn calls_during(work: impl FnOnce()) -> u64 {
    let before = CALLS.with(Cell::get);
    work();
    CALLS.with(Cell::get) - before
}

#[test]
fn the_counter_sees_allocations() {
    assert!(calls_during(|| drop(std::hint::black_box(Box::new(7u64)))) >= 2);
}

#[test]
fn acquire_and_release_allocate_nothing_once_preheated() {
    let mut pool = common::pool(PoolConfig::default());
    let mut now_ms = 0;
    let calls = calls_during(|| {
        for _ in 0..100_000 {
            let key = pool.acquire().expect("room");
            let obj = pool.get_mut(key).expect("live");
            obj.dirty = true;
            let _ = obj.arena.alloc_slice_fill_copy(64, 1u8);
            now_ms += 1;
            pool.release(key, now_ms).expect("live");
        }
    });
    assert_eq!(calls, 0, "acquire/use/release cycles must not allocate");
}

#[test]
fn holding_many_and_cycling_allocates_nothing_below_the_trigger() {
    let mut pool = common::pool(PoolConfig::default());
    let mut held: Vec<_> = Vec::with_capacity(800);
    let calls = calls_during(|| {
        for round in 0..50u64 {
            for _ in 0..800 {
                held.push(pool.acquire().expect("room"));
            }
            for key in held.drain(..) {
                pool.release(key, round).expect("live");
            }
        }
    });
    assert_eq!(calls, 0);
    assert_eq!(pool.stats().expansions, 0);
}
