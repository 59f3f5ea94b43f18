//! Keys, release, health-checked recycling, the hard limit, health states and config errors.

mod common;

use common::{pool, record_events};
use starling_pool::{
    AcquireError, ConfigError, Health, Key, Limit, PoolConfig, PoolEvent, Released, StaleKey,
};

fn small(max_live: usize) -> PoolConfig {
    PoolConfig {
        initial_objects: 4,
        max_preheated_objects: 8,
        max_live_objects: max_live,
        ..PoolConfig::default()
    }
}

#[test]
fn a_released_key_is_stale_even_after_its_slot_is_reused() {
    let mut pool = pool(small(10));
    let old = pool.acquire().expect("room");
    let serial = pool.get(old).expect("live").serial;
    pool.release(old, 0).expect("live");
    let new = pool.acquire().expect("room");
    assert_eq!(
        new.index(),
        old.index(),
        "LIFO reuse hands the same slot back"
    );
    assert_ne!(new, old);
    assert_eq!(pool.get(old).err(), Some(StaleKey(old)));
    assert!(pool.get_mut(old).is_err());
    assert_eq!(
        pool.release(old, 0),
        Err(StaleKey(old)),
        "no double release"
    );
    assert_eq!(pool.get(new).expect("live").serial, serial);
}

#[test]
fn keys_that_were_never_issued_are_stale() {
    let mut pool = pool(small(10));
    let forged = Key::from_u64(3);
    assert!(
        pool.get(forged).is_err(),
        "an available slot is not reachable"
    );
    assert!(pool.get(Key::from_u64(u64::MAX)).is_err());
    let key = pool.acquire().expect("room");
    assert_eq!(Key::from_u64(key.to_u64()), key);
}

#[test]
fn a_stale_key_is_refused_after_its_slot_was_freed_and_rebuilt() {
    let mut pool = pool(PoolConfig {
        shrink_floor_objects: Some(1),
        idle_ttl_ms: 10,
        ..small(10)
    });
    let keys: Vec<_> = (0..4).map(|_| pool.acquire().expect("room")).collect();
    for &key in &keys {
        pool.release(key, 0).expect("live");
    }
    pool.sweep(100, usize::MAX);
    let again: Vec<_> = (0..4).map(|_| pool.acquire().expect("room")).collect();
    for key in keys {
        assert!(pool.get(key).is_err(), "{key} must be stale");
    }
    for key in again {
        assert!(pool.get(key).is_ok());
    }
}

#[test]
fn release_resets_the_object_and_keeps_its_arena_chunk() {
    let mut pool = pool(small(10));
    let key = pool.acquire().expect("room");
    let obj = pool.get_mut(key).expect("live");
    obj.dirty = true;
    let _ = obj.arena.alloc_slice_fill_copy(200, 7u8);
    let chunk_bytes = obj.arena.allocated_bytes();
    let free_while_used = obj.arena.chunk_capacity();
    assert_eq!(pool.release(key, 0), Ok(Released::Recycled));
    let again = pool.acquire().expect("room");
    let obj = pool.get_mut(again).expect("live");
    assert!(!obj.dirty, "state cleared");
    assert_eq!(obj.resets, 1);
    assert_eq!(
        obj.arena.allocated_bytes(),
        chunk_bytes,
        "chunk kept, not freed"
    );
    assert!(
        obj.arena.chunk_capacity() >= free_while_used + 200,
        "space reclaimed"
    );
}

#[test]
fn an_unhealthy_object_is_dropped_and_counted() {
    let mut pool = pool(small(10));
    let key = pool.acquire().expect("room");
    let serial = pool.get(key).expect("live").serial;
    pool.get_mut(key).expect("live").healthy = false;
    assert_eq!(pool.release(key, 0), Ok(Released::Dropped));
    let stats = pool.stats();
    assert_eq!(stats.dropped_unhealthy, 1);
    assert_eq!(stats.live, 3);
    assert_eq!(stats.available, 3);
    let keys: Vec<_> = (0..4).map(|_| pool.acquire().expect("room")).collect();
    for key in keys {
        assert_ne!(
            pool.get(key).expect("live").serial,
            serial,
            "never handed out again"
        );
    }
}

#[test]
fn past_max_live_acquire_is_refused_with_a_distinct_error() {
    let mut pool = pool(small(8));
    let events = record_events(&mut pool);
    let keys: Vec<_> = (0..8).map(|_| pool.acquire().expect("room")).collect();
    for _ in 0..3 {
        assert_eq!(
            pool.acquire(),
            Err(AcquireError::AtCapacity {
                max_live_objects: 8
            })
        );
    }
    let limit_events = events
        .borrow()
        .iter()
        .filter(|e| {
            matches!(
                e,
                PoolEvent::LimitReached {
                    limit: Limit::MaxLive,
                    ..
                }
            )
        })
        .count();
    assert_eq!(limit_events, 1, "edge-triggered, not once per refusal");
    assert_eq!(pool.stats().refused, 3);
    pool.release(keys[0], 0).expect("live");
    assert!(pool.acquire().is_ok(), "a release makes room again");
}

#[test]
fn health_walks_through_all_four_states() {
    let mut pool = pool(PoolConfig {
        initial_objects: 10,
        max_preheated_objects: 20,
        max_live_objects: 20,
        ..PoolConfig::default()
    });
    let events = record_events(&mut pool);
    let mut keys = Vec::new();
    let mut seen = vec![pool.stats().health];
    for _ in 0..20 {
        keys.push(pool.acquire().expect("room"));
        let health = pool.stats().health;
        if seen.last() != Some(&health) {
            seen.push(health);
        }
    }
    assert_eq!(
        seen,
        [
            Health::Healthy,
            Health::Degraded,
            Health::Overloaded,
            Health::Unavailable
        ]
    );
    assert_eq!(pool.stats().utilisation(), 1.0);
    for key in keys.drain(..) {
        pool.release(key, 0).expect("live");
    }
    assert_eq!(pool.stats().health, Health::Healthy);
    let changes: Vec<String> = events
        .borrow()
        .iter()
        .filter(|e| matches!(e, PoolEvent::HealthChanged { .. }))
        .map(ToString::to_string)
        .collect();
    assert_eq!(changes.len(), 6);
    assert_eq!(
        changes[0],
        "[POOL] Health: healthy -> degraded (15/20 active)"
    );
}

#[test]
fn invalid_configs_are_refused_with_a_clear_error() {
    let cases = [
        (
            PoolConfig {
                initial_objects: 0,
                ..PoolConfig::default()
            },
            ConfigError::InitialZero,
        ),
        (
            PoolConfig {
                initial_objects: 200_000,
                ..PoolConfig::default()
            },
            ConfigError::InitialAboveCap {
                initial_objects: 200_000,
                max_preheated_objects: 100_000,
            },
        ),
        (
            PoolConfig {
                growth_threshold_percent: 0,
                ..PoolConfig::default()
            },
            ConfigError::ThresholdOutOfRange(0),
        ),
        (
            PoolConfig {
                growth_threshold_percent: 101,
                ..PoolConfig::default()
            },
            ConfigError::ThresholdOutOfRange(101),
        ),
        (
            PoolConfig {
                growth_factor_percent: 100,
                ..PoolConfig::default()
            },
            ConfigError::FactorNotAboveOne(100),
        ),
        (
            PoolConfig {
                max_live_objects: 50_000,
                ..PoolConfig::default()
            },
            ConfigError::CapAboveMaxLive {
                max_preheated_objects: 100_000,
                max_live_objects: 50_000,
            },
        ),
        (
            PoolConfig {
                preheat_budget_objects: 0,
                ..PoolConfig::default()
            },
            ConfigError::BudgetZero,
        ),
        (
            PoolConfig {
                idle_ttl_ms: 0,
                ..PoolConfig::default()
            },
            ConfigError::IdleTtlZero,
        ),
        (
            PoolConfig {
                shrink_floor_objects: Some(100_001),
                ..PoolConfig::default()
            },
            ConfigError::FloorAboveCap {
                shrink_floor_objects: 100_001,
                max_preheated_objects: 100_000,
            },
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected.clone()));
        let refused = starling_pool::Pool::new(config, || common::TestObj {
            serial: 0,
            dirty: false,
            healthy: true,
            resets: 0,
            arena: bumpalo::Bump::new(),
        });
        assert_eq!(refused.err(), Some(expected));
    }
    assert_eq!(
        ConfigError::ThresholdOutOfRange(0).to_string(),
        "growth_threshold_percent (0) must be within 1..=100"
    );
    assert_eq!(
        ConfigError::FactorNotAboveOne(100).to_string(),
        "growth_factor_percent (100) must be above 100 (a factor above 1)"
    );
}

#[test]
fn a_running_pool_can_be_reconfigured_without_touching_active_objects() {
    let mut pool = pool(PoolConfig::default());
    let keys: Vec<_> = (0..1000).map(|_| pool.acquire().expect("room")).collect();
    assert_eq!(pool.preheated(), 1536);
    let invalid = PoolConfig {
        growth_factor_percent: 100,
        ..PoolConfig::default()
    };
    assert_eq!(
        pool.reconfigure(invalid),
        Err(ConfigError::FactorNotAboveOne(100))
    );
    assert_eq!(
        pool.config(),
        &PoolConfig::default(),
        "a refused config changes nothing"
    );
    // A lower hard limit refuses newcomers but keeps every active object.
    let lower = PoolConfig {
        initial_objects: 512,
        max_preheated_objects: 1000,
        max_live_objects: 1000,
        ..PoolConfig::default()
    };
    pool.reconfigure(lower).expect("valid");
    assert_eq!(pool.preheated(), 1000, "capped to the new cap");
    assert!(matches!(
        pool.acquire(),
        Err(AcquireError::AtCapacity { .. })
    ));
    for &key in &keys {
        assert!(pool.get(key).is_ok(), "{key} still active");
    }
    assert_eq!(pool.stats().health, Health::Unavailable);
    pool.release(keys[0], 0).expect("live");
    assert!(pool.acquire().is_ok());
    // A new growth rule applies from the next acquisition.
    let faster = PoolConfig {
        growth_factor_percent: 200,
        max_live_objects: 100_000,
        ..PoolConfig::default()
    };
    pool.reconfigure(faster).expect("valid");
    assert_eq!(
        pool.preheated(),
        1024,
        "1000 moves to the new ladder's 1024 rung"
    );
    let _more: Vec<_> = (0..700).map(|_| pool.acquire().expect("room")).collect();
    assert_eq!(
        pool.preheated(),
        4096,
        "grew x2 at 80 % of 1024, then of 2048"
    );
}

#[test]
fn recycling_at_the_limit_hands_the_object_over_without_events() {
    let mut pool = pool(PoolConfig {
        max_preheated_objects: 4,
        ..small(4)
    });
    let keys: Vec<_> = (0..4).map(|_| pool.acquire().expect("room")).collect();
    pool.get_mut(keys[0]).expect("live").dirty = true;
    let events = record_events(&mut pool);
    let before = pool.stats();
    let new = pool.recycle(keys[0], 5).expect("live");
    assert_eq!(new.index(), keys[0].index(), "the same object");
    assert_ne!(new, keys[0]);
    assert_eq!(pool.get(keys[0]).err(), Some(StaleKey(keys[0])));
    let object = pool.get(new).expect("live under its new key");
    assert!(!object.dirty, "reset for its new user");
    assert_eq!(object.resets, 1);
    let after = pool.stats();
    assert_eq!(after.active, 4);
    assert_eq!(after.health, Health::Unavailable);
    assert_eq!(after.acquisitions, before.acquisitions + 1);
    assert!(events.borrow().is_empty(), "{:?}", events.borrow());
    assert_eq!(pool.recycle(keys[0], 5), Err(StaleKey(keys[0])));
    // An unhealthy object is replaced by a new one.
    pool.get_mut(new).expect("live").healthy = false;
    let serial = pool.get(new).expect("live").serial;
    let replaced = pool.recycle(new, 6).expect("rebuilt");
    assert_ne!(pool.get(replaced).expect("live").serial, serial);
    assert_eq!(pool.stats().active, 4);
}
