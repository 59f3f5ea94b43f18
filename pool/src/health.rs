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
}
