//! Counters and gauges a pool keeps: its sizes, growth and shrinking, refusals, reuse.

use crate::Health;

/// A snapshot of the pool's numbers, cheap to take (plain copies).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolStats {
    /// The preheated size: what preheating builds up to (a rung of the growth ladder).
    pub preheated: usize,
    /// Objects preheating still has to construct to reach `preheated`.
    pub preheat_pending: usize,
    /// Objects in use.
    pub active: usize,
    /// Objects constructed, reset and ready.
    pub available: usize,
    /// `active + available`.
    pub live: usize,
    /// The most objects ever active at once.
    pub high_water: usize,
    /// Growth steps taken.
    pub expansions: u64,
    /// Sweeps that freed objects or lowered the preheated size.
    pub shrinks: u64,
    /// Objects constructed by preheating (start-up and steps).
    pub constructed_preheat: u64,
    /// Objects constructed inside `acquire` because none was available.
    pub constructed_on_demand: u64,
    /// Objects dropped on release because they reported themselves unhealthy.
    pub dropped_unhealthy: u64,
    /// Objects freed by sweeps.
    pub freed_idle: u64,
    /// Successful acquisitions.
    pub acquisitions: u64,
    /// Acquisitions refused at `max_live_objects`.
    pub refused: u64,
    /// `max_live_objects`.
    pub max_live: usize,
    /// The health status.
    pub health: Health,
}

impl PoolStats {
    /// Share of acquisitions served without constructing an object in the acquisition itself:
    /// `(acquisitions - constructed_on_demand) / acquisitions` (1.0 before any acquisition).
    /// Above 0.9 the preheating keeps ahead of demand.
    pub fn reuse_rate(&self) -> f64 {
        if self.acquisitions == 0 {
            return 1.0;
        }
        let warm = self.acquisitions.saturating_sub(self.constructed_on_demand);
        warm as f64 / self.acquisitions as f64
    }

    /// `active / max_live` in 0.0..=1.0.
    pub fn utilisation(&self) -> f64 {
        if self.max_live == 0 {
            return 0.0;
        }
        self.active as f64 / self.max_live as f64
    }
}
