//! When the message phase is over, and what the deliveries that never arrived were.
//!
//! After publishing stops, the harness keeps reading until one of three things happens:
//! every expected delivery has arrived (`complete`); no delivery at all has arrived for
//! `--drain-quiet-ms` (`quiet`: the broker has stopped delivering); or `--drain-deadline-secs`
//! have passed since publishing stopped while deliveries were still arriving (`deadline`).
//!
//! A harness cannot see every broker's own drop counters, so what it calls a missing
//! delivery is judged by how the drain ended. After a quiet drain the broker had stopped
//! delivering: what is missing was **dropped**. After the deadline the broker was still
//! delivering: what is missing was **not delivered by the deadline**, and some or all of it
//! might still have arrived. The two are never mixed in one run, and the report says which
//! it is. Delivered, duplicated and missing are counted exactly per (subscriber, publisher,
//! sequence) for every QoS ([`crate::track`]); for QoS 0 "missing" is simply what had not
//! arrived when the drain ended.

use serde::Serialize;

/// Default quiet period that ends the drain: no delivery for this long, milliseconds. Longer
/// than the pauses a loaded 2-core machine shows (tens of milliseconds) and than a broker's
/// own short holds, so a quiet drain means the broker has stopped delivering.
pub const DEFAULT_DRAIN_QUIET_MS: u64 = 2_000;
/// Default limit on the drain, seconds after publishing stopped: generous, so a broker that
/// is still working through a backlog (tens of seconds for a slow one) gets to finish.
pub const DEFAULT_DRAIN_DEADLINE_SECS: u64 = 120;

/// Why the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DrainEnd {
    /// Every expected delivery arrived.
    Complete,
    /// No delivery arrived for the quiet period: the broker had stopped delivering.
    Quiet,
    /// The deadline passed while deliveries were still arriving (or before a whole quiet
    /// period without one could be seen).
    Deadline,
}

impl DrainEnd {
    /// How the report says it.
    pub fn describe(self) -> &'static str {
        match self {
            DrainEnd::Complete => "complete: every expected delivery arrived",
            DrainEnd::Quiet => "quiet: deliveries had stopped",
            DrainEnd::Deadline => "deadline: deliveries were still arriving",
        }
    }
}

/// How the drain went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drain {
    /// Why it ended.
    pub ended: DrainEnd,
    /// From the end of publishing to the end of the drain, seconds.
    pub secs: f64,
    /// The quiet period asked for (`--drain-quiet-ms`).
    pub quiet_ms: u64,
    /// The deadline asked for (`--drain-deadline-secs`).
    pub deadline_secs: u64,
}

/// Decides, from successive looks at the delivery counters, when the drain is over. Pure:
/// time is a parameter.
#[derive(Debug, Clone)]
pub struct DrainWatch {
    quiet_ns: u64,
    deadline_ns: u64,
    receipts: u64,
    last_change_ns: u64,
}

impl DrainWatch {
    /// A drain starting at `start_ns` (publishing stopped) with `receipts` deliveries (every
    /// PUBLISH received, repeats included) counted so far.
    pub fn new(start_ns: u64, quiet_ms: u64, deadline_secs: u64, receipts: u64) -> DrainWatch {
        DrainWatch {
            quiet_ns: quiet_ms.saturating_mul(1_000_000),
            deadline_ns: start_ns.saturating_add(deadline_secs.saturating_mul(1_000_000_000)),
            receipts,
            last_change_ns: start_ns,
        }
    }

    /// A look at `now_ns`: `receipts` so far, `unique` distinct deliveries of `expected`.
    /// `Some` once the drain is over.
    pub fn observe(
        &mut self,
        now_ns: u64,
        receipts: u64,
        unique: u64,
        expected: u64,
    ) -> Option<DrainEnd> {
        if unique >= expected {
            return Some(DrainEnd::Complete);
        }
        if receipts != self.receipts {
            self.receipts = receipts;
            self.last_change_ns = now_ns;
        }
        if now_ns.saturating_sub(self.last_change_ns) >= self.quiet_ns {
            return Some(DrainEnd::Quiet);
        }
        (now_ns >= self.deadline_ns).then_some(DrainEnd::Deadline)
    }
}

/// What the missing deliveries of a run were, judged by how its drain ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Missing {
    /// Missing after deliveries had stopped (a quiet drain), or in the sim transport, which
    /// runs the broker's core until it is idle.
    pub dropped: u64,
    /// Missing while deliveries were still arriving when the deadline passed.
    pub undelivered: u64,
}

impl Missing {
    /// Splits `missing` by how the drain ended (`None`: no drain, the broker ran until idle).
    pub fn classify(missing: u64, ended: Option<DrainEnd>) -> Missing {
        match ended {
            Some(DrainEnd::Deadline) => Missing {
                dropped: 0,
                undelivered: missing,
            },
            Some(DrainEnd::Complete | DrainEnd::Quiet) | None => Missing {
                dropped: missing,
                undelivered: 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_drain_ends_when_everything_arrived() {
        let mut w = DrainWatch::new(0, 100, 10, 5);
        assert_eq!(w.observe(MS, 5, 9, 10), None);
        assert_eq!(w.observe(2 * MS, 6, 10, 10), Some(DrainEnd::Complete));
    }

    #[test]
    fn a_drain_ends_quiet_only_after_a_whole_quiet_period_without_a_delivery() {
        let mut w = DrainWatch::new(0, 100, 10, 0);
        // Deliveries keep arriving: never quiet.
        for t in 1..=50 {
            assert_eq!(w.observe(t * 20 * MS, t, t, 1_000), None);
        }
        // The last delivery came at 1 000 ms; 99 ms later is not quiet yet, 100 ms is.
        assert_eq!(w.observe(1_099 * MS, 50, 50, 1_000), None);
        assert_eq!(w.observe(1_100 * MS, 50, 50, 1_000), Some(DrainEnd::Quiet));
    }

    #[test]
    fn repeats_count_as_activity_but_not_as_progress() {
        let mut w = DrainWatch::new(0, 100, 10, 0);
        // Only duplicates arrive (unique stays 3 of 4): the broker is still sending.
        assert_eq!(w.observe(90 * MS, 1, 3, 4), None);
        assert_eq!(w.observe(180 * MS, 2, 3, 4), None);
        assert_eq!(w.observe(280 * MS, 2, 3, 4), Some(DrainEnd::Quiet));
    }

    #[test]
    fn the_deadline_ends_a_drain_that_is_still_receiving() {
        let mut w = DrainWatch::new(1_000 * MS, 500, 2, 0);
        let mut ended = None;
        let mut t = 1_000;
        while ended.is_none() {
            t += 20;
            ended = w.observe(t * MS, t, t, u64::MAX);
        }
        assert_eq!((ended, t), (Some(DrainEnd::Deadline), 3_000));
    }

    #[test]
    fn missing_is_dropped_after_a_quiet_drain_and_undelivered_after_the_deadline() {
        assert_eq!(
            Missing::classify(7, Some(DrainEnd::Quiet)),
            Missing {
                dropped: 7,
                undelivered: 0
            }
        );
        assert_eq!(
            Missing::classify(7, Some(DrainEnd::Deadline)),
            Missing {
                dropped: 0,
                undelivered: 7
            }
        );
        assert_eq!(
            Missing::classify(0, Some(DrainEnd::Complete)),
            Missing::default()
        );
        assert_eq!(Missing::classify(3, None).dropped, 3);
    }
}
