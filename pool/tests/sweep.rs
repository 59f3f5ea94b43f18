//! The idle sweep: memory comes back after a spike, down to a floor, without thrash.

mod common;

use common::{pool, preheat_all, record_events};
use starling_pool::{Key, Pool, PoolConfig, PoolEvent, SweepOutcome};

const TTL_MS: u64 = 300_000;

fn spike_to(pool: &mut Pool<common::TestObj>, active: usize) -> Vec<Key> {
    let mut keys = Vec::new();
    for _ in 0..active {
        keys.push(pool.acquire().expect("room"));
        preheat_all(pool, 0);
    }
    keys
}

fn shrinks(events: &[PoolEvent]) -> Vec<(usize, usize, usize, usize)> {
    events
        .iter()
        .filter_map(|e| match *e {
            PoolEvent::Shrunk {
                from,
                to,
                freed,
                live,
            } => Some((from, to, freed, live)),
            _ => None,
        })
        .collect()
}

#[test]
fn after_a_spike_idle_objects_are_freed_down_to_the_floor() {
    let mut pool = pool(PoolConfig::default());
    let events = record_events(&mut pool);
    let keys = spike_to(&mut pool, 3000);
    assert_eq!(pool.preheated(), 5184);
    for key in keys {
        pool.release(key, 1_000).expect("live");
    }
    assert_eq!(
        pool.sweep(1_000 + TTL_MS - 1, usize::MAX),
        SweepOutcome::default()
    );
    assert_eq!(
        pool.stats().live,
        5184,
        "nothing is idle for a whole TTL yet"
    );
    let outcome = pool.sweep(1_000 + TTL_MS, usize::MAX);
    assert_eq!(
        outcome,
        SweepOutcome {
            freed: 4160,
            more: false
        }
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.live, stats.preheated, stats.shrinks),
        (1024, 1024, 1)
    );
    assert_eq!(
        stats.preheat_pending, 0,
        "nothing is rebuilt after a shrink"
    );
    assert_eq!(shrinks(&events.borrow()), [(5184, 1024, 4160, 1024)]);
    assert_eq!(
        events.borrow().last().map(ToString::to_string).as_deref(),
        Some("[POOL] Shrink: 5184->1024 (freed 4160 idle objects, 1024 live)")
    );
    assert_eq!(
        pool.sweep(10 * TTL_MS, usize::MAX).freed,
        0,
        "the floor holds"
    );
}

#[test]
fn a_budgeted_sweep_frees_in_steps_and_reports_one_shrink() {
    let mut pool = pool(PoolConfig::default());
    let events = record_events(&mut pool);
    for key in spike_to(&mut pool, 3000) {
        pool.release(key, 0).expect("live");
    }
    let mut calls = 0;
    loop {
        calls += 1;
        let outcome = pool.sweep(TTL_MS, 1000);
        assert!(outcome.freed <= 1000);
        if !outcome.more {
            break;
        }
    }
    assert_eq!(calls, 5, "4160 objects at 1000 per call");
    assert_eq!(pool.stats().live, 1024);
    assert_eq!(shrinks(&events.borrow()), [(5184, 1024, 4160, 1024)]);
}

#[test]
fn the_floor_is_configurable_and_rounded_up_to_the_ladder() {
    let mut pool = pool(PoolConfig {
        shrink_floor_objects: Some(2000),
        ..PoolConfig::default()
    });
    for key in spike_to(&mut pool, 3000) {
        pool.release(key, 0).expect("live");
    }
    pool.sweep(TTL_MS, usize::MAX);
    assert_eq!(pool.stats().live, 2304);
    assert_eq!(pool.preheated(), 2304);
}

#[test]
fn a_sweep_keeps_what_the_recent_peak_needs() {
    let mut pool = pool(PoolConfig::default());
    let mut keys = spike_to(&mut pool, 3000);
    for key in keys.split_off(1000) {
        pool.release(key, 0).expect("live");
    }
    pool.sweep(TTL_MS, usize::MAX);
    let stats = pool.stats();
    assert_eq!(stats.active, 1000);
    assert_eq!(
        stats.preheated, 1536,
        "1000 active would re-trigger growth at 1024 (trigger 819), not at 1536 (1228)"
    );
    assert_eq!(stats.live, 1536);
    let before = pool.stats().expansions;
    let _more: Vec<_> = (0..200).map(|_| pool.acquire().expect("room")).collect();
    assert_eq!(
        pool.stats().expansions,
        before,
        "no growth right after the shrink"
    );
}

/// A tiny deterministic generator for the load walks below.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Simulates `hours` of a load that random-walks within `low..=high` active objects, one
/// connect or disconnect per second, with the loop's preheat each tick and a sweep every
/// 30 s. Returns (expansions, shrinks).
fn steady_load(low: usize, high: usize, hours: u64, seed: u64) -> (u64, u64) {
    let mut pool = pool(PoolConfig::default());
    let mut rng = Lcg(seed);
    let mut keys: Vec<Key> = (0..low).map(|_| pool.acquire().expect("room")).collect();
    for second in 0..hours * 3600 {
        let now_ms = second * 1000;
        let up = rng.next().is_multiple_of(2);
        if (up && keys.len() < high) || keys.len() <= low {
            keys.push(pool.acquire().expect("room"));
        } else {
            let at = rng.next() as usize % keys.len();
            let key = keys.swap_remove(at);
            pool.release(key, now_ms).expect("live");
        }
        pool.preheat_step(256, now_ms);
        if second.is_multiple_of(30) {
            pool.sweep(now_ms, 256);
        }
    }
    let stats = pool.stats();
    (stats.expansions, stats.shrinks)
}

#[test]
fn no_thrash_under_a_steady_load_across_the_first_trigger() {
    assert_eq!(steady_load(800, 840, 6, 1), (1, 0));
}

#[test]
fn no_thrash_under_a_steady_load_across_the_second_trigger() {
    assert_eq!(steady_load(1200, 1260, 6, 2), (2, 0));
}

#[test]
fn no_thrash_under_a_steady_load_just_below_a_trigger() {
    assert_eq!(steady_load(700, 818, 6, 3), (0, 0));
}

#[test]
fn a_real_drop_in_load_shrinks_once() {
    let mut pool = pool(PoolConfig::default());
    let events = record_events(&mut pool);
    let mut keys = spike_to(&mut pool, 830);
    for key in keys.split_off(100) {
        pool.release(key, 600_000).expect("live");
    }
    for minute in 10..60u64 {
        pool.sweep(minute * 60_000, 256);
    }
    assert_eq!(shrinks(&events.borrow()), [(1536, 1024, 512, 1024)]);
}

/// A spike of 20 000, then all released but the objects at `keep` (marked), then swept
/// to the end. Returns the pool, the kept keys and the slab capacity at the peak.
fn spike_keep_and_sweep(keep: &[usize]) -> (Pool<common::TestObj>, Vec<(Key, u64)>, usize) {
    let mut pool = pool(PoolConfig::default());
    let keys = spike_to(&mut pool, 20_000);
    let capacity_at_peak = pool.slot_capacity();
    let kept: Vec<(Key, u64)> = keep
        .iter()
        .map(|&i| {
            let object = pool.get_mut(keys[i]).expect("active");
            object.dirty = true;
            (keys[i], object.serial)
        })
        .collect();
    for key in keys.iter().filter(|k| !kept.iter().any(|(kk, _)| kk == *k)) {
        pool.release(*key, 1_000).expect("live");
    }
    while pool.sweep(1_000 + TTL_MS, 256).more {}
    (pool, kept, capacity_at_peak)
}

#[test]
fn a_completed_shrink_compacts_the_slab_down_to_its_live_objects() {
    let (mut pool, kept, capacity_at_peak) = spike_keep_and_sweep(&[10]);
    assert!(capacity_at_peak >= 20_000);
    assert_eq!(pool.stats().live, 1024, "shrunk to the initial rung");
    assert!(
        pool.slot_capacity() <= 4 * pool.stats().live,
        "capacity {} for {} live objects (peak {capacity_at_peak})",
        pool.slot_capacity(),
        pool.stats().live
    );
    let (key, serial) = kept[0];
    let object = pool.get(key).expect("an active key survives compaction");
    assert!(object.dirty);
    assert_eq!(object.serial, serial);
    // The moved objects are served again, reset, as usual.
    let again = pool.acquire().expect("room");
    assert!(!pool.get(again).expect("active").dirty);
    assert_eq!(pool.stats().active, 2);
}

#[test]
fn compaction_never_moves_an_active_object() {
    // An object still in use near the top pins the slab there (its key is out).
    let (pool, kept, capacity_at_peak) = spike_keep_and_sweep(&[10, 19_990]);
    assert_eq!(pool.stats().live, 1024);
    assert!(pool.slot_capacity() <= capacity_at_peak);
    for (key, serial) in kept {
        let object = pool.get(key).expect("an active key survives compaction");
        assert!(object.dirty);
        assert_eq!(object.serial, serial);
    }
}
