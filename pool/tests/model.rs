//! Model-based property test: random sequences of acquire / release / sweep / preheat_step
//! against a simple reference model, with the invariants checked after every step.

mod common;

use std::collections::HashSet;

use common::{TestObj, pool};
use proptest::prelude::*;
use starling_pool::{AcquireError, Key, Pool, PoolConfig, Released, growth};

#[derive(Debug, Clone)]
enum Op {
    Acquire,
    Release { pick: usize, healthy: bool },
    UseStale { pick: usize },
    PreheatStep { budget: usize },
    Sweep { budget: usize },
    Advance { ms: u64 },
    Reconfigure { which: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Acquire),
        3 => (any::<usize>(), prop::bool::weighted(0.9))
            .prop_map(|(pick, healthy)| Op::Release { pick, healthy }),
        1 => any::<usize>().prop_map(|pick| Op::UseStale { pick }),
        2 => (1usize..8).prop_map(|budget| Op::PreheatStep { budget }),
        1 => (1usize..8).prop_map(|budget| Op::Sweep { budget }),
        1 => (1u64..150).prop_map(|ms| Op::Advance { ms }),
        1 => (0usize..3).prop_map(|which| Op::Reconfigure { which }),
    ]
}

/// The configurations a running pool is switched between.
fn alternative(which: usize) -> PoolConfig {
    match which {
        0 => config(),
        1 => PoolConfig {
            initial_objects: 2,
            growth_factor_percent: 200,
            max_preheated_objects: 12,
            max_live_objects: 16,
            ..config()
        },
        _ => PoolConfig {
            growth_threshold_percent: 50,
            max_preheated_objects: 30,
            max_live_objects: 40,
            idle_ttl_ms: 20,
            ..config()
        },
    }
}

fn config() -> PoolConfig {
    PoolConfig {
        initial_objects: 4,
        max_preheated_objects: 20,
        max_live_objects: 30,
        idle_ttl_ms: 100,
        preheat_budget_objects: 3,
        ..PoolConfig::default()
    }
}

/// The reference model: what is held, what was released, and the counters that follow.
#[derive(Default)]
struct Model {
    held: Vec<Key>,
    spent: Vec<Key>,
    acquisitions: u64,
    refused: u64,
    dropped: u64,
    now_ms: u64,
}

fn check_invariants(pool: &Pool<TestObj>, model: &Model) {
    let stats = pool.stats();
    let config = pool.config();
    assert_eq!(stats.active, model.held.len(), "active matches the model");
    assert_eq!(stats.active + stats.available, stats.live);
    assert_eq!(stats.acquisitions, model.acquisitions);
    assert_eq!(stats.refused, model.refused);
    assert_eq!(stats.dropped_unhealthy, model.dropped);
    assert!(
        growth::ladder(config).any(|rung| rung == stats.preheated),
        "preheated {} is a rung",
        stats.preheated
    );
    let mut indices = HashSet::new();
    let mut serials = HashSet::new();
    for &key in &model.held {
        assert!(indices.insert(key.index()), "slot {key} handed out twice");
        let obj = pool.get(key).expect("held keys are live");
        assert!(
            serials.insert(obj.serial),
            "object {} handed out twice",
            obj.serial
        );
    }
    for &key in &model.spent {
        assert!(pool.get(key).is_err(), "spent key {key} must be stale");
    }
}

fn apply(pool: &mut Pool<TestObj>, model: &mut Model, op: Op) {
    match op {
        Op::Acquire => match pool.acquire() {
            Ok(key) => {
                model.acquisitions += 1;
                let obj = pool.get_mut(key).expect("fresh key");
                assert!(!obj.dirty, "an acquired object comes back reset");
                obj.dirty = true;
                model.held.push(key);
            }
            Err(AcquireError::AtCapacity { max_live_objects }) => {
                // A reconfiguration may have lowered the limit below what is held.
                assert!(
                    model.held.len() >= max_live_objects,
                    "refused only at the limit"
                );
                model.refused += 1;
            }
        },
        Op::Release { pick, healthy } if !model.held.is_empty() => {
            let key = model.held.swap_remove(pick % model.held.len());
            pool.get_mut(key).expect("held").healthy = healthy;
            let outcome = pool.release(key, model.now_ms).expect("held keys release");
            assert_eq!(outcome == Released::Recycled, healthy);
            model.dropped += u64::from(!healthy);
            model.spent.push(key);
        }
        Op::UseStale { pick } if !model.spent.is_empty() => {
            let key = model.spent[pick % model.spent.len()];
            assert!(pool.release(key, model.now_ms).is_err());
            assert!(pool.get_mut(key).is_err());
        }
        Op::PreheatStep { budget } => {
            let pending = pool.preheat_pending();
            assert_eq!(pool.preheat_step(budget, model.now_ms), pending.min(budget));
        }
        Op::Sweep { budget } => {
            let before = pool.stats();
            let outcome = pool.sweep(model.now_ms, budget);
            let after = pool.stats();
            assert!(outcome.freed <= budget);
            assert_eq!(after.live, before.live - outcome.freed);
            assert_eq!(
                after.active, before.active,
                "a sweep never touches active objects"
            );
            let floor = growth::rung_at_least(pool.config(), pool.config().shrink_floor());
            assert!(after.live >= floor.min(before.live), "the floor holds");
        }
        Op::Advance { ms } => model.now_ms += ms,
        Op::Reconfigure { which } => {
            let before = pool.stats();
            pool.reconfigure(alternative(which)).expect("valid");
            assert_eq!(
                pool.stats().active,
                before.active,
                "nothing active is touched"
            );
            assert_eq!(pool.stats().live, before.live);
        }
        Op::Release { .. } | Op::UseStale { .. } => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn pool_matches_the_model(ops in prop::collection::vec(op(), 1..300)) {
        let mut pool = pool(config());
        let mut model = Model::default();
        check_invariants(&pool, &model);
        for op in ops {
            apply(&mut pool, &mut model, op);
            check_invariants(&pool, &model);
        }
    }
}
