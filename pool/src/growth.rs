//! The growth rule as pure functions, so the pool, the docs' tables and the tests share one
//! definition.

use crate::PoolConfig;

/// The active count at which an acquisition triggers growth from `preheated`:
/// `preheated * threshold_percent / 100` (integer arithmetic).
pub fn trigger_active(preheated: usize, threshold_percent: u32) -> usize {
    preheated * threshold_percent as usize / 100
}

/// The preheated size after one growth step from `preheated`:
/// `min(preheated * factor_percent / 100, cap)`, and at least one more than `preheated`
/// (so a tiny pool with a small factor still grows) unless already at the cap.
pub fn next_size(preheated: usize, factor_percent: u32, cap: usize) -> usize {
    let grown = (preheated * factor_percent as usize / 100).max(preheated + 1);
    grown.min(cap).max(preheated)
}

/// The sizes the pool passes through as it grows from `initial_objects` to the cap, both
/// ends included: the "growth ladder". For the defaults:
/// 1024, 1536, 2304, 3456, 5184, 7776, 11664, 17496, 26244, 39366, 59049, 88573, 100000.
pub fn ladder(config: &PoolConfig) -> impl Iterator<Item = usize> + '_ {
    let mut next = Some(config.initial_objects);
    std::iter::from_fn(move || {
        let current = next?;
        let following = next_size(
            current,
            config.growth_factor_percent,
            config.max_preheated_objects,
        );
        next = (following > current).then_some(following);
        Some(current)
    })
}

/// The smallest rung of the ladder that is at least `objects` (the cap when none is).
pub fn rung_at_least(config: &PoolConfig, objects: usize) -> usize {
    ladder(config)
        .find(|&rung| rung >= objects)
        .unwrap_or(config.max_preheated_objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_is_integer_eighty_percent() {
        assert_eq!(trigger_active(1024, 80), 819);
        assert_eq!(trigger_active(1536, 80), 1228);
        assert_eq!(trigger_active(1, 80), 0);
    }

    #[test]
    fn next_size_is_capped_and_always_progresses() {
        assert_eq!(next_size(1024, 150, 100_000), 1536);
        assert_eq!(next_size(88_573, 150, 100_000), 100_000);
        assert_eq!(next_size(100_000, 150, 100_000), 100_000);
        assert_eq!(
            next_size(1, 150, 10),
            2,
            "1 * 1.5 rounds down to 1: grow by one"
        );
    }
}
