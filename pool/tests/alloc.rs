//! Zero global-allocator calls per acquire/release cycle once preheated, proven with a
//! counting allocator (this file is its own test binary, so the allocator is ours alone).

mod common;

use starling_alloc_count::{Counting, calls_during};
use starling_pool::PoolConfig;

#[global_allocator]
static GLOBAL: Counting = Counting;

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
