//! The growth rule: exact sequence, trigger points, cap, presets, incremental preheating.

mod common;

use common::{expansions, pool, preheat_all, record_events};
use starling_pool::{Limit, PoolConfig, PoolEvent, Preset, growth};

const DEFAULT_LADDER: [usize; 13] = [
    1024, 1536, 2304, 3456, 5184, 7776, 11664, 17496, 26244, 39366, 59049, 88573, 100_000,
];

#[test]
fn starts_with_initial_objects_constructed() {
    let pool = pool(PoolConfig::default());
    let stats = pool.stats();
    assert_eq!(stats.preheated, 1024);
    assert_eq!(stats.available, 1024);
    assert_eq!(stats.live, 1024);
    assert_eq!(stats.constructed_preheat, 1024);
    assert_eq!(stats.preheat_pending, 0);
}

#[test]
fn ladder_for_defaults_and_presets() {
    let ladder: Vec<usize> = growth::ladder(&PoolConfig::default()).collect();
    assert_eq!(ladder, DEFAULT_LADDER);
    let small: Vec<usize> = growth::ladder(&PoolConfig::preset(Preset::Small)).collect();
    assert_eq!(
        small,
        [
            256, 384, 576, 864, 1296, 1944, 2916, 4374, 6561, 9841, 10_000
        ]
    );
    let medium: Vec<usize> = growth::ladder(&PoolConfig::preset(Preset::Medium)).collect();
    assert_eq!(
        medium,
        [
            2048, 3072, 4608, 6912, 10368, 15552, 23328, 34992, 52488, 78732, 100_000
        ]
    );
    let large: Vec<usize> = growth::ladder(&PoolConfig::preset(Preset::Large)).collect();
    assert_eq!(
        large,
        [10_000, 15_000, 22_500, 33_750, 50_625, 75_937, 100_000]
    );
}

/// Acquires one object at a time, letting the loop preheat between acquisitions, up to the
/// cap: every expansion fires exactly at `preheated * 80 / 100` active objects.
#[test]
fn grows_through_the_exact_sequence_at_the_exact_triggers() {
    let mut pool = pool(PoolConfig::default());
    let events = record_events(&mut pool);
    let mut keys = Vec::new();
    for _ in 0..90_000 {
        keys.push(pool.acquire().expect("below max_live"));
        preheat_all(&mut pool, 0);
    }
    let expected: Vec<(usize, usize, usize)> = DEFAULT_LADDER
        .windows(2)
        .map(|w| (w[0], w[1], w[0] * 80 / 100))
        .collect();
    assert_eq!(expansions(&events.borrow()), expected);
    assert_eq!(
        expected[0],
        (1024, 1536, 819),
        "first trigger at 819 active"
    );
    assert_eq!(expected[1], (1536, 2304, 1228));
    let stats = pool.stats();
    assert_eq!(stats.expansions, 12);
    assert_eq!(stats.preheated, 100_000);
    assert_eq!(
        stats.constructed_on_demand, 0,
        "preheating kept ahead of demand"
    );
    assert!(events.borrow().contains(&PoolEvent::LimitReached {
        limit: Limit::MaxPreheated,
        value: 100_000
    }));
}

#[test]
fn the_expansion_log_line_has_its_fixed_form() {
    let mut pool = pool(PoolConfig::default());
    let events = record_events(&mut pool);
    let _keys: Vec<_> = (0..819).map(|_| pool.acquire().expect("room")).collect();
    let first = events
        .borrow()
        .iter()
        .find(|e| matches!(e, PoolEvent::Expanded { .. }))
        .map(ToString::to_string);
    assert_eq!(
        first.as_deref(),
        Some("[POOL] Expand: 1024->1536 (trigger at 819/1024 connections)")
    );
}

#[test]
fn no_growth_one_below_the_trigger() {
    let mut pool = pool(PoolConfig::default());
    let _keys: Vec<_> = (0..818).map(|_| pool.acquire().expect("room")).collect();
    assert_eq!(pool.stats().expansions, 0);
    assert_eq!(pool.preheated(), 1024);
    let _one_more = pool.acquire().expect("room");
    assert_eq!(pool.preheated(), 1536);
}

/// Growth only raises the target: objects are built by bounded `preheat_step`s, and
/// acquisitions are served (from what exists, then on demand) while preheating is pending.
#[test]
fn preheating_is_incremental_and_bounded_by_the_budget() {
    let config = PoolConfig {
        initial_objects: 50_000,
        max_preheated_objects: 200_000,
        ..PoolConfig::default()
    };
    let mut pool = pool(config);
    let _keys: Vec<_> = (0..40_000).map(|_| pool.acquire().expect("room")).collect();
    assert_eq!(
        pool.preheated(),
        75_000,
        "50 000 -> 75 000 at 40 000 active"
    );
    assert_eq!(pool.stats().live, 50_000, "acquire itself built nothing");
    assert_eq!(pool.preheat_pending(), 25_000);
    assert_eq!(pool.preheat_step(256, 0), 256);
    assert_eq!(pool.preheat_pending(), 25_000 - 256);
    let _more: Vec<_> = (0..5_000).map(|_| pool.acquire().expect("room")).collect();
    assert_eq!(pool.stats().active, 45_000);
    preheat_all(&mut pool, 0);
    assert_eq!(pool.stats().live, 75_000);
    assert_eq!(pool.stats().constructed_on_demand, 0);
}

#[test]
fn acquisitions_are_served_on_demand_when_preheating_lags() {
    let config = PoolConfig {
        initial_objects: 10,
        max_preheated_objects: 100,
        max_live_objects: 100,
        ..PoolConfig::default()
    };
    let mut pool = pool(config);
    let _keys: Vec<_> = (0..30).map(|_| pool.acquire().expect("room")).collect();
    let stats = pool.stats();
    assert_eq!(stats.active, 30);
    assert_eq!(stats.constructed_on_demand, 20);
    assert!(stats.expansions >= 1);
}

#[test]
fn beyond_the_cap_objects_are_built_on_demand_and_recycled() {
    let config = PoolConfig {
        initial_objects: 100,
        max_preheated_objects: 150,
        max_live_objects: 400,
        ..PoolConfig::default()
    };
    let mut pool = pool(config);
    let mut keys = Vec::new();
    for _ in 0..300 {
        keys.push(pool.acquire().expect("below max_live"));
        preheat_all(&mut pool, 0);
    }
    let stats = pool.stats();
    assert_eq!(stats.preheated, 150, "preheating stopped at the cap");
    assert_eq!(stats.constructed_preheat, 150);
    assert_eq!(stats.constructed_on_demand, 150);
    for key in keys.drain(..) {
        pool.release(key, 1).expect("live key");
    }
    for _ in 0..300 {
        keys.push(pool.acquire().expect("below max_live"));
    }
    let stats = pool.stats();
    assert_eq!(
        stats.constructed_on_demand, 150,
        "on-demand objects are recycled too"
    );
    assert_eq!(stats.live, 300);
    assert_eq!(stats.acquisitions, 600);
    assert!((stats.reuse_rate() - 0.75).abs() < 1e-9);
}

/// Every preset grows through its ladder at `preheated * 80 / 100`, driven by acquisitions.
#[test]
fn every_preset_grows_at_its_triggers() {
    for preset in [Preset::Small, Preset::Medium, Preset::Large] {
        let config = PoolConfig::preset(preset);
        let ladder: Vec<usize> = growth::ladder(&config).collect();
        let last_trigger = ladder[ladder.len() - 2] * 80 / 100;
        let mut pool = pool(config);
        let events = record_events(&mut pool);
        let _keys: Vec<_> = (0..last_trigger)
            .map(|_| {
                let key = pool.acquire().expect("room");
                preheat_all(&mut pool, 0);
                key
            })
            .collect();
        let expected: Vec<(usize, usize, usize)> = ladder
            .windows(2)
            .map(|w| (w[0], w[1], w[0] * 80 / 100))
            .collect();
        assert_eq!(expansions(&events.borrow()), expected, "{preset:?}");
    }
}
