//! Shared test objects and helpers for the pool's integration tests.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use starling_pool::{Pool, PoolConfig, PoolEvent, Poolable};

/// A pooled object that records what happened to it.
pub struct TestObj {
    /// Unique per construction.
    pub serial: u64,
    /// Set by users; must be cleared by `reset`.
    pub dirty: bool,
    /// What `is_healthy` answers.
    pub healthy: bool,
    /// How often `reset` ran.
    pub resets: u32,
    /// A bump arena, as the broker's objects own one.
    pub arena: bumpalo::Bump,
}

impl Poolable for TestObj {
    fn reset(&mut self) {
        self.dirty = false;
        self.resets += 1;
        self.arena.reset();
    }
    fn is_healthy(&self) -> bool {
        self.healthy
    }
}

/// A pool of `TestObj` whose factory numbers objects from 0.
pub fn pool(config: PoolConfig) -> Pool<TestObj> {
    let serial = Cell::new(0u64);
    Pool::new(config, move || {
        let n = serial.get();
        serial.set(n + 1);
        TestObj {
            serial: n,
            dirty: false,
            healthy: true,
            resets: 0,
            arena: bumpalo::Bump::with_capacity(256),
        }
    })
    .expect("valid config")
}

/// Records every event the pool emits.
pub fn record_events<T: Poolable>(pool: &mut Pool<T>) -> Rc<RefCell<Vec<PoolEvent>>> {
    let events = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&events);
    pool.set_observer(move |event| sink.borrow_mut().push(event.clone()));
    events
}

/// The expansions among recorded events, as (from, to, trigger_active).
pub fn expansions(events: &[PoolEvent]) -> Vec<(usize, usize, usize)> {
    events
        .iter()
        .filter_map(|event| match *event {
            PoolEvent::Expanded {
                from,
                to,
                trigger_active,
            } => Some((from, to, trigger_active)),
            _ => None,
        })
        .collect()
}

/// Runs preheating to completion, as the event loop would over several ticks.
pub fn preheat_all<T: Poolable>(pool: &mut Pool<T>, now_ms: u64) {
    let budget = pool.config().preheat_budget_objects;
    while pool.preheat_step(budget, now_ms) > 0 {}
}
