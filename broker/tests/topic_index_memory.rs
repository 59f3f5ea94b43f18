//! Memory and allocation budgets of the subscription index, measured with a counting global
//! allocator (its own test binary, so the allocator affects nothing else).
//!
//! Counters are per thread, so the tests in this binary can run in parallel.
//!
//! The connection budget is 1 KiB per idle client in total; the index's share is bounded at
//! 256 B per subscription for the benchmark shape (15,000 clients, each subscribed to its own
//! `bench/{n}`), which leaves three quarters of the budget to the session, socket buffers and
//! the connection's slab slot.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use starling::topic::SubscriptionIndex;

thread_local! {
    /// Bytes requested and not yet freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The same, as glibc malloc would charge it: 8 bytes of header, 16-byte granules, and
    /// a 32-byte minimum chunk.
    static LIVE_CHARGED: Cell<isize> = const { Cell::new(0) };
    /// Allocations (including reallocations) made by this thread.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn charged(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

fn track(grow: Option<usize>, shrink: Option<usize>) {
    // `try_with`: the counters are const-initialised with no destructor, so this never
    // allocates, and it is a no-op while the thread is being torn down.
    let delta = |size: Option<usize>, f: fn(usize) -> isize| size.map_or(0, f);
    let _ = LIVE
        .try_with(|c| c.set(c.get() + delta(grow, |s| s as isize) - delta(shrink, |s| s as isize)));
    let _ =
        LIVE_CHARGED.try_with(|c| c.set(c.get() + delta(grow, charged) - delta(shrink, charged)));
    if grow.is_some() {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }
}

struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(Some(layout.size()), None);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we forward.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(None, Some(layout.size()));
        // SAFETY: `ptr` came from `System` with this layout (we forward every allocation).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(Some(new_size), Some(layout.size()));
        // SAFETY: as for `dealloc`, and the caller guarantees `new_size` is valid.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> (isize, isize) {
    (LIVE.with(Cell::get), LIVE_CHARGED.with(Cell::get))
}

const CLIENTS: u32 = 15_000;
const BYTES_PER_SUBSCRIPTION_BOUND: f64 = 256.0;

/// The benchmark shape: `CLIENTS` subscribers, each on its own `bench/{n}`; options are the
/// granted QoS (one byte), subscribers a 32-bit session handle.
#[test]
fn one_own_topic_per_client_stays_under_the_bound() {
    let before = live();
    let mut index = SubscriptionIndex::<u32, u8>::new();
    let mut filter = String::new();
    for n in 0..CLIENTS {
        filter.clear();
        filter.push_str("bench/");
        filter.push_str(&n.to_string());
        assert_eq!(index.subscribe(&filter, n, 1), Ok(None));
    }
    drop(filter);
    let after = live();
    let requested = (after.0 - before.0) as f64 / f64::from(CLIENTS);
    let charged = (after.1 - before.1) as f64 / f64::from(CLIENTS);

    for n in 0..CLIENTS {
        assert_eq!(index.unsubscribe(&format!("bench/{n}"), n), Some(1));
    }
    assert_eq!(index.node_count(), 0);
    // Checked before printing: the test harness's output capture allocates on this thread.
    assert_eq!(
        live(),
        before,
        "unsubscribing everything gives every byte back"
    );

    println!(
        "index: {requested:.1} B requested, ~{charged:.1} B as glibc charges, per subscription"
    );
    assert!(
        requested <= BYTES_PER_SUBSCRIPTION_BOUND,
        "{requested:.1} B per subscription"
    );
    assert!(
        charged <= BYTES_PER_SUBSCRIPTION_BOUND,
        "{charged:.1} B per subscription (glibc)"
    );
}

/// Once warm, routing (the QoS 0 path) performs no allocation at all, whatever the shape of
/// the trie: wide and narrow levels, `+`, `#`, `$` topics, shared filters, misses.
#[test]
fn for_each_match_never_allocates() {
    let mut index = SubscriptionIndex::<u32, u8>::new();
    for n in 0..2_000u32 {
        index
            .subscribe(&format!("bench/{n}"), n, 0)
            .expect("shallow filter");
        index
            .subscribe(&format!("dev/{}/+", n % 40), n, 1)
            .expect("shallow filter");
    }
    for (i, f) in ["#", "+/+", "bench/#", "$SYS/#", "a//b", "/+", "é/+/#"]
        .into_iter()
        .enumerate()
    {
        index
            .subscribe(f, 100_000 + i as u32, 2)
            .expect("shallow filter");
        index
            .subscribe(f, 200_000 + i as u32, 2)
            .expect("shallow filter");
    }
    let names = [
        "bench/1999",
        "bench/x",
        "dev/7/t",
        "$SYS/uptime",
        "a//b",
        "/x",
        "é/ü/v",
        "nowhere",
    ];
    let mut hits = 0usize;
    let mut qos_sum = 0u64;
    let start = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        for name in names {
            index.for_each_match(name, |s, qos| {
                hits += 1;
                qos_sum += u64::from(s % 2) + u64::from(*qos);
            });
        }
    }
    assert_eq!(ALLOCATIONS.with(Cell::get) - start, 0, "routing allocated");
    assert!(hits > 0 && qos_sum > 0);
}
