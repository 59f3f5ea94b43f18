//! Health: four states from the utilisation `active / max_live_objects`.
//!
//! | status      | utilisation            | meaning                                   |
//! |-------------|------------------------|-------------------------------------------|
//! | healthy     | below 75 %             | room to spare                             |
//! | degraded    | 75 % up to 90 %        | still serving; plan capacity              |
//! | overloaded  | 90 % up to 100 %       | close to refusing                         |
//! | unavailable | 100 % (at the limit)   | the next acquisition is refused           |

use std::fmt;

/// Utilisation (percent of `max_live_objects`) from which the pool reports degraded.
pub const DEGRADED_FROM_PERCENT: usize = 75;
/// Utilisation (percent of `max_live_objects`) from which the pool reports overloaded.
pub const OVERLOADED_FROM_PERCENT: usize = 90;
/// A better status is reported only once the utilisation is this many points of
/// `max_live_objects` below where it begins (a worse one at once): a pool that hovers at a
/// boundary (at its limit, one object released and taken again per connection) would
/// otherwise report, and log, a change per connection.
pub const RECOVERY_MARGIN_PERCENT: usize = 5;

/// The pool's health status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Health {
    /// Below [`DEGRADED_FROM_PERCENT`].
    #[default]
    Healthy,
    /// From [`DEGRADED_FROM_PERCENT`] up to [`OVERLOADED_FROM_PERCENT`].
    Degraded,
    /// From [`OVERLOADED_FROM_PERCENT`] up to, not including, the limit.
    Overloaded,
    /// At `max_live_objects`: acquisitions are refused.
    Unavailable,
}

impl Health {
    /// The status for `active` out of `max_live` objects.
    pub fn classify(active: usize, max_live: usize) -> Health {
        if active >= max_live {
            Health::Unavailable
        } else if active * 100 >= max_live * OVERLOADED_FROM_PERCENT {
            Health::Overloaded
        } else if active * 100 >= max_live * DEGRADED_FROM_PERCENT {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    /// The status after a change of `active`, from `before`: worse at once, better only
    /// [`RECOVERY_MARGIN_PERCENT`] below the boundary.
    pub fn settle(before: Health, active: usize, max_live: usize) -> Health {
        let now = Health::classify(active, max_live);
        if now >= before {
            return now;
        }
        let margin = (max_live * RECOVERY_MARGIN_PERCENT / 100).max(1);
        Health::classify(active.saturating_add(margin), max_live).min(before)
    }

    /// The lower-case name used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Overloaded => "overloaded",
            Health::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(Health::classify(0, 100), Health::Healthy);
        assert_eq!(Health::classify(74, 100), Health::Healthy);
        assert_eq!(Health::classify(75, 100), Health::Degraded);
        assert_eq!(Health::classify(89, 100), Health::Degraded);
        assert_eq!(Health::classify(90, 100), Health::Overloaded);
        assert_eq!(Health::classify(99, 100), Health::Overloaded);
        assert_eq!(Health::classify(100, 100), Health::Unavailable);
    }

    #[test]
    fn worse_at_once_better_past_a_margin() {
        use Health::*;
        assert_eq!(Health::settle(Healthy, 100, 100), Unavailable);
        // One released at the limit: still unavailable, no change to report.
        assert_eq!(Health::settle(Unavailable, 99, 100), Unavailable);
        assert_eq!(Health::settle(Unavailable, 94, 100), Overloaded);
        assert_eq!(Health::settle(Overloaded, 85, 100), Overloaded);
        assert_eq!(Health::settle(Overloaded, 84, 100), Degraded);
        assert_eq!(Health::settle(Degraded, 70, 100), Degraded);
        assert_eq!(Health::settle(Degraded, 69, 100), Healthy);
        assert_eq!(Health::settle(Unavailable, 0, 100), Healthy);
        // A margin of at least one object for small pools.
        assert_eq!(Health::settle(Unavailable, 19, 20), Unavailable);
        assert_eq!(Health::settle(Unavailable, 18, 20), Overloaded);
    }
}
