//! The pool itself: slab storage, LIFO reuse, growth on acquire, incremental preheating,
//! health-checked release and the idle sweep.

use std::collections::VecDeque;

use slab::Slab;

use crate::growth::{next_size, rung_at_least, trigger_active};
use crate::{
    AcquireError, ConfigError, Health, Key, Limit, PoolConfig, PoolEvent, PoolStats, StaleKey,
};

/// A shrink only goes down to a rung whose growth trigger, scaled by this percentage, is still
/// above the recent peak of active objects. The 10 % margin keeps a load that hovers just
/// under a trigger from shrinking the pool and growing it back (hysteresis).
pub const SHRINK_HEADROOM_PERCENT: usize = 90;

/// After a shrink, the slab is compacted when its capacity is at least this many times its
/// live objects (it is then mostly vacant slots, which cost a whole slot each).
pub const COMPACT_WHEN_CAPACITY_OVER_LIVE: usize = 4;

/// What the pool needs from the objects it holds.
pub trait Poolable {
    /// Makes a released object ready for its next user: clear per-user state, `reset()` the
    /// bump arena (which keeps its largest chunk), keep the buffers. Must not allocate.
    fn reset(&mut self);

    /// Whether the object may be reused. An unhealthy object is dropped on release and
    /// counted in [`PoolStats::dropped_unhealthy`]. Called before [`Poolable::reset`].
    fn is_healthy(&self) -> bool {
        true
    }
}

/// Boxing a large pooled type keeps the slab's entries small, so the slab's occasional
/// reallocation while growing copies little (see `docs/pool.md`).
impl<T: Poolable + ?Sized> Poolable for Box<T> {
    fn reset(&mut self) {
        (**self).reset();
    }
    fn is_healthy(&self) -> bool {
        (**self).is_healthy()
    }
}

/// What became of a released object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// Reset and back in the available set.
    Recycled,
    /// Reported itself unhealthy and was dropped.
    Dropped,
}

/// The result of one [`Pool::sweep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepOutcome {
    /// Objects freed by this call.
    pub freed: usize,
    /// More idle objects are due to be freed: call `sweep` again (next tick).
    pub more: bool,
}

struct Slot<T> {
    object: T,
    generation: u32,
    active: bool,
    /// When the object last became available (construction or release), in the caller's ms.
    available_since_ms: u64,
}

/// The hook that sees every event.
type Observer = Box<dyn FnMut(&PoolEvent)>;

struct ShrinkInProgress {
    from: usize,
    freed: usize,
}

/// A pool of `T`, one per event loop. Not `Send`: per-core state stays on its core.
///
/// Time is the caller's: every `now_ms` is milliseconds on one monotonic clock whose zero is
/// at or before the pool's creation (the broker's loop clock, or a simulated one in tests).
pub struct Pool<T> {
    config: PoolConfig,
    slots: Slab<Slot<T>>,
    // Invariant: holds exactly the indices of inactive slots, ordered by
    // `available_since_ms` (oldest at the front); reuse pops from the back (LIFO), the sweep
    // frees from the front. Its capacity is kept >= `slots.len()`, so pushes never allocate.
    available: VecDeque<u32>,
    factory: Box<dyn FnMut() -> T>,
    observer: Option<Observer>,
    // Invariant: always a rung of the growth ladder, initial_objects..=max_preheated_objects.
    preheated: usize,
    next_generation: u32,
    last_now_ms: u64,
    at_live_limit: bool,
    shrink: Option<ShrinkInProgress>,
    stats: PoolStats,
}

impl<T: Poolable> Pool<T> {
    /// Validates `config` and constructs `initial_objects` objects with `factory`.
    pub fn new(
        config: PoolConfig,
        factory: impl FnMut() -> T + 'static,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let initial = config.initial_objects;
        let mut pool = Pool {
            slots: Slab::with_capacity(initial),
            available: VecDeque::with_capacity(initial),
            factory: Box::new(factory),
            observer: None,
            preheated: initial,
            next_generation: 0,
            last_now_ms: 0,
            at_live_limit: false,
            shrink: None,
            stats: PoolStats {
                max_live: config.max_live_objects,
                ..PoolStats::default()
            },
            config,
        };
        pool.preheat_step(initial, 0);
        Ok(pool)
    }

    /// Hooks an observer that sees every [`PoolEvent`] (they are logged either way).
    pub fn set_observer(&mut self, observer: impl FnMut(&PoolEvent) + 'static) {
        self.observer = Some(Box::new(observer));
    }

    /// The configuration in force.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Changes the configuration of a running pool (a live reload). An invalid `config` is
    /// refused and the old one stays. Nothing active is touched: the preheated size moves to
    /// the new ladder's rung at or above `min(preheated, new cap)` (built by the following
    /// `preheat_step`s, or freed by later sweeps); a lower `max_live_objects` refuses new
    /// acquisitions until enough are released; the TTL, floor and budget apply from the next
    /// call that uses them.
    pub fn reconfigure(&mut self, config: PoolConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let from = self.preheated;
        self.preheated = rung_at_least(&config, from.min(config.max_preheated_objects));
        // Invariant: `preheated` is a rung of the ladder of the configuration in force.
        debug_assert!(crate::growth::ladder(&config).any(|rung| rung == self.preheated));
        self.stats.max_live = config.max_live_objects;
        self.config = config;
        if self.active() < self.config.max_live_objects {
            self.at_live_limit = false;
        }
        self.update_health();
        tracing::info!(
            preheated_from = from,
            preheated_to = self.preheated,
            max_preheated_objects = self.config.max_preheated_objects,
            max_live_objects = self.config.max_live_objects,
            "[POOL] Reconfigured"
        );
        Ok(())
    }

    /// Objects in use.
    pub fn active(&self) -> usize {
        self.slots.len() - self.available.len()
    }

    /// Slots the slab has room for, live or vacant (each costs a slot's size); compaction
    /// brings it back toward `live` after a shrink.
    pub fn slot_capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// The preheated size (a rung of the growth ladder).
    pub fn preheated(&self) -> usize {
        self.preheated
    }

    /// Objects preheating still has to construct.
    pub fn preheat_pending(&self) -> usize {
        self.preheated.saturating_sub(self.slots.len())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            preheated: self.preheated,
            preheat_pending: self.preheat_pending(),
            active: self.active(),
            available: self.available.len(),
            live: self.slots.len(),
            ..self.stats
        }
    }

    /// Takes an object: the most recently released one, or a new one when none is available.
    /// May raise the preheated size (growth rule); the objects follow in [`Pool::preheat_step`].
    pub fn acquire(&mut self) -> Result<Key, AcquireError> {
        if self.active() >= self.config.max_live_objects {
            return Err(self.refuse());
        }
        let index = match self.available.pop_back() {
            Some(index) => index,
            None => {
                self.stats.constructed_on_demand += 1;
                self.construct(self.last_now_ms)
            }
        };
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let slot = &mut self.slots[index as usize];
        debug_assert!(!slot.active, "an available index named an active slot");
        slot.active = true;
        slot.generation = generation;
        self.stats.acquisitions += 1;
        self.stats.high_water = self.stats.high_water.max(self.active());
        self.grow_if_due();
        self.update_health();
        Ok(Key { index, generation })
    }

    /// Gives an object back. Healthy objects are reset and become available; unhealthy ones
    /// are dropped. The key is spent either way.
    pub fn release(&mut self, key: Key, now_ms: u64) -> Result<Released, StaleKey> {
        self.observe_time(now_ms);
        let slot = self.slot_mut(key)?;
        let outcome = if slot.object.is_healthy() {
            slot.object.reset();
            slot.active = false;
            slot.available_since_ms = now_ms;
            self.available.push_back(key.index);
            Released::Recycled
        } else {
            self.slots.remove(key.index as usize);
            self.stats.dropped_unhealthy += 1;
            Released::Dropped
        };
        if self.active() < self.config.max_live_objects {
            self.at_live_limit = false;
        }
        self.update_health();
        Ok(outcome)
    }

    /// Hands the object behind `key` straight to a new user: it is reset and stays in use
    /// under a fresh key (`key` is spent), without passing through the available set. What a
    /// caller that evicts one user to make room for another does at `max_live_objects`: a
    /// release and an acquire would cross the limit twice, each time a health change and a
    /// limit event logged. An unhealthy object is dropped and a new one built in its place.
    pub fn recycle(&mut self, key: Key, now_ms: u64) -> Result<Key, StaleKey> {
        self.observe_time(now_ms);
        let generation = self.next_generation;
        let slot = self.slot_mut(key)?;
        if !slot.object.is_healthy() {
            let _ = self.release(key, now_ms);
            return self.acquire().map_err(|_| StaleKey(key));
        }
        slot.object.reset();
        slot.generation = generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        self.stats.acquisitions += 1;
        Ok(Key {
            index: key.index,
            generation,
        })
    }

    /// The active object behind `key`.
    pub fn get(&self, key: Key) -> Result<&T, StaleKey> {
        match self.slots.get(key.index as usize) {
            Some(slot) if slot.active && slot.generation == key.generation => Ok(&slot.object),
            _ => Err(StaleKey(key)),
        }
    }

    /// The active object behind `key`, mutably.
    pub fn get_mut(&mut self, key: Key) -> Result<&mut T, StaleKey> {
        self.slot_mut(key).map(|slot| &mut slot.object)
    }

    /// Constructs up to `budget` objects toward the preheated size and returns how many.
    ///
    /// Bound on one call: `budget` calls of the factory, `budget` slab insertions and
    /// available-set pushes, plus at most one reallocation each of the slab and of the
    /// available set (amortised doubling; it copies `live` entries of `size_of::<T>() + 16`
    /// and 4 bytes). The broker calls this once per event-loop tick while
    /// [`Pool::preheat_pending`] is non-zero, so acquisitions keep being served between steps.
    pub fn preheat_step(&mut self, budget: usize, now_ms: u64) -> usize {
        self.observe_time(now_ms);
        let count = self.preheat_pending().min(budget);
        self.slots.reserve(count);
        for _ in 0..count {
            let index = self.construct(now_ms);
            self.available.push_back(index);
        }
        self.stats.constructed_preheat += count as u64;
        count
    }

    /// Frees available objects idle for at least `idle_ttl_ms`, at most `budget` of them per
    /// call, down to the smallest ladder rung that still holds the recent peak with headroom
    /// (and never below the shrink floor); lowers the preheated size to that rung. One
    /// [`PoolEvent::Shrunk`] is emitted when a shrink completes.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) -> SweepOutcome {
        self.observe_time(now_ms);
        let live = self.slots.len();
        let expired = self.expired_count(now_ms);
        // With LIFO reuse, every object not idle for a whole TTL was needed (or built) within
        // it, so `live - expired` is the peak of active objects over the last TTL.
        let peak = live - expired;
        // Invariant: the rung is above `peak`, so `live - target <= expired` below.
        let target = self.shrink_rung(peak).min(self.preheated.max(live));
        let free = live.saturating_sub(target).min(expired).min(budget);
        for _ in 0..free {
            if let Some(index) = self.available.pop_front() {
                self.slots.remove(index as usize);
            }
        }
        self.stats.freed_idle += free as u64;
        let from = self.preheated;
        if target < self.preheated {
            self.preheated = target;
        }
        if free > 0 || self.preheated < from {
            let progress = self
                .shrink
                .get_or_insert(ShrinkInProgress { from, freed: 0 });
            progress.freed += free;
        }
        let more = self.slots.len() > target && self.expired_count(now_ms) > 0;
        if !more {
            self.finish_shrink();
        }
        SweepOutcome { freed: free, more }
    }

    fn finish_shrink(&mut self) {
        if let Some(progress) = self.shrink.take() {
            if self.slots.capacity() >= COMPACT_WHEN_CAPACITY_OVER_LIVE * self.slots.len().max(1) {
                self.compact();
            }
            self.stats.shrinks += 1;
            self.emit(PoolEvent::Shrunk {
                from: progress.from,
                to: self.preheated,
                freed: progress.freed,
                live: self.slots.len(),
            });
        }
    }

    /// Gives back the capacity of a mostly vacant slab: available objects (which no key names)
    /// move to the lowest vacant slots, then the vacant tail is freed. Active objects keep
    /// their slots (their keys are out), so the slab shrinks down to the highest active one.
    /// Runs only when a shrink completes, in O(capacity) of the slab.
    fn compact(&mut self) {
        let order: Vec<u32> = self.available.drain(..).collect();
        let mut by_index = order.clone();
        by_index.sort_unstable_by(|a, b| b.cmp(a));
        // Removed highest index first, so the slab's vacant list lists the lowest first and
        // re-insertion fills the slab from the bottom.
        let mut objects: Vec<(u32, Slot<T>)> = by_index
            .iter()
            .map(|&index| (index, self.slots.remove(index as usize)))
            .collect();
        self.slots.shrink_to_fit();
        let mut moved_to = std::collections::HashMap::with_capacity(objects.len());
        for (old, slot) in objects.drain(..).rev() {
            let new = self.slots.insert(slot);
            // Invariant: the slab held `old` before, so it has room below u32::MAX.
            debug_assert!(new <= u32::MAX as usize);
            moved_to.insert(old, new as u32);
        }
        self.slots.shrink_to_fit();
        self.available.extend(
            order
                .iter()
                .map(|old| moved_to.get(old).copied().unwrap_or(*old)),
        );
        self.available.shrink_to(self.slots.len());
        // Invariant: the available set still lists every inactive slot, oldest first.
        debug_assert_eq!(self.available.len(), self.slots.len() - self.active_count());
    }

    /// Active slots, counted (for the compaction's invariant check).
    fn active_count(&self) -> usize {
        self.slots.iter().filter(|(_, slot)| slot.active).count()
    }

    /// Available objects idle for at least the TTL: a prefix of `available`.
    fn expired_count(&self, now_ms: u64) -> usize {
        let ttl = self.config.idle_ttl_ms;
        self.available.partition_point(|&index| {
            now_ms.saturating_sub(self.slots[index as usize].available_since_ms) >= ttl
        })
    }

    /// The smallest rung, not below the floor, whose trigger (with headroom) `peak` stays under.
    fn shrink_rung(&self, peak: usize) -> usize {
        let floor = rung_at_least(&self.config, self.config.shrink_floor());
        crate::growth::ladder(&self.config)
            .filter(|&rung| rung >= floor)
            .find(|&rung| {
                peak * 100
                    < trigger_active(rung, self.config.growth_threshold_percent)
                        * SHRINK_HEADROOM_PERCENT
            })
            .unwrap_or(self.config.max_preheated_objects)
    }

    fn grow_if_due(&mut self) {
        let active = self.active();
        let cap = self.config.max_preheated_objects;
        if self.preheated >= cap
            || active < trigger_active(self.preheated, self.config.growth_threshold_percent)
        {
            return;
        }
        let from = self.preheated;
        self.preheated = next_size(from, self.config.growth_factor_percent, cap);
        self.stats.expansions += 1;
        self.emit(PoolEvent::Expanded {
            from,
            to: self.preheated,
            trigger_active: active,
        });
        if self.preheated == cap {
            self.emit(PoolEvent::LimitReached {
                limit: Limit::MaxPreheated,
                value: cap,
            });
        }
    }

    fn refuse(&mut self) -> AcquireError {
        self.stats.refused += 1;
        let max_live_objects = self.config.max_live_objects;
        if !self.at_live_limit {
            self.at_live_limit = true;
            self.emit(PoolEvent::LimitReached {
                limit: Limit::MaxLive,
                value: max_live_objects,
            });
        }
        AcquireError::AtCapacity { max_live_objects }
    }

    /// Builds one object into a new, inactive slot and returns its index.
    fn construct(&mut self, now_ms: u64) -> u32 {
        let object = (self.factory)();
        let index = self.slots.insert(Slot {
            object,
            generation: 0,
            active: false,
            available_since_ms: now_ms,
        });
        if self.available.capacity() < self.slots.len() {
            self.available
                .reserve(self.slots.len() - self.available.len());
        }
        // Invariant: slots.len() <= max_live_objects <= u32::MAX (validated), and a slab's
        // keys are below its entry count, so the index fits.
        debug_assert!(index <= u32::MAX as usize);
        index as u32
    }

    fn slot_mut(&mut self, key: Key) -> Result<&mut Slot<T>, StaleKey> {
        match self.slots.get_mut(key.index as usize) {
            Some(slot) if slot.active && slot.generation == key.generation => Ok(slot),
            _ => Err(StaleKey(key)),
        }
    }

    fn update_health(&mut self) {
        let before = self.stats.health;
        let now = Health::settle(before, self.active(), self.config.max_live_objects);
        if now != before {
            self.stats.health = now;
            self.emit(PoolEvent::HealthChanged {
                from: before,
                to: now,
                active: self.active(),
                max_live: self.config.max_live_objects,
            });
        }
    }

    fn observe_time(&mut self, now_ms: u64) {
        debug_assert!(
            now_ms >= self.last_now_ms,
            "the pool's clock went backwards"
        );
        self.last_now_ms = self.last_now_ms.max(now_ms);
    }

    fn emit(&mut self, event: PoolEvent) {
        event.log();
        if let Some(observer) = self.observer.as_mut() {
            observer(&event);
        }
    }
}
