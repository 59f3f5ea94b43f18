//! Memory and allocation budgets of the subscription index, measured with a counting global
//! allocator (its own test binary, so the allocator affects nothing else).
//!
//! Counters are per thread, so the tests in this binary can run in parallel.
//!
//! The connection budget is 1 KiB per idle client in total; the index's share is bounded at
//! 256 B per subscription for the benchmark shape (15,000 clients, each subscribed to its own
//! `bench/{n}`), which leaves three quarters of the budget to the session, socket buffers and
//! the connection's slab slot.

use starling::topic::SubscriptionIndex;
use starling_alloc_count::{Counting, snapshot};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live bytes of this thread: (requested, as glibc charges them).
fn live() -> (isize, isize) {
    let now = snapshot();
    (now.live_bytes, now.live_charged_bytes)
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
    let start = snapshot().allocations;
    for _ in 0..100 {
        for name in names {
            index.for_each_match(name, |s, qos| {
                hits += 1;
                qos_sum += u64::from(s % 2) + u64::from(*qos);
            });
        }
    }
    assert_eq!(snapshot().allocations - start, 0, "routing allocated");
    assert!(hits > 0 && qos_sum > 0);
}
