//! A coarse timer wheel for connect timeouts, keep-alive and partial packets, and the
//! stalls of the loop that are not counted against them.
//!
//! Each connection has at most one entry, filed under the second its deadline falls in.
//! Traffic does not touch the wheel (a packet only updates `last_seen_ms`): when an entry
//! comes due, the core recomputes the real deadline and either acts or files the connection
//! again. So the cost is O(1) per connection per keep-alive period, not per packet.
//!
//! [`Stalls`] remembers when the loop was not running (the host paused, the process
//! stopped, the thread not scheduled): a deadline counted from a moment before a stall is
//! pushed back by the stall's length, because the client's packets could not be read then.

use std::collections::{BTreeMap, VecDeque};

use starling_pool::Key;

/// Width of one wheel slot.
pub const TIMER_SLOT_MS: u64 = 1000;
/// Emptied slot vectors kept for reuse, at most.
pub const MAX_SPARE_SLOTS: usize = 16;
/// An emptied slot vector larger than this (entries) is freed rather than kept, so a connect
/// storm's slots do not pin their peak size.
pub const MAX_SPARE_SLOT_ENTRIES: usize = 4096;

/// Connections filed by the slot of their deadline.
#[derive(Default)]
pub struct Timers {
    slots: BTreeMap<u64, Vec<(Key, u64)>>,
    spare: Vec<Vec<(Key, u64)>>,
}

impl Timers {
    /// Files `conn` to be looked at when `deadline_ms` has passed.
    pub fn arm(&mut self, conn: Key, deadline_ms: u64) {
        let slot = deadline_ms.div_ceil(TIMER_SLOT_MS);
        let spare = &mut self.spare;
        self.slots
            .entry(slot)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push((conn, deadline_ms));
    }

    /// Moves every connection whose slot is due at `now_ms` into `due`.
    /// Each entry comes with the deadline it was filed for, so the caller can tell a current
    /// entry from one superseded by a later `arm`.
    pub fn expire(&mut self, now_ms: u64, due: &mut Vec<(Key, u64)>) {
        let now_slot = now_ms / TIMER_SLOT_MS;
        while let Some(entry) = self.slots.first_entry() {
            if *entry.key() > now_slot {
                break;
            }
            let mut keys = entry.remove();
            due.append(&mut keys);
            if self.spare.len() < MAX_SPARE_SLOTS && keys.capacity() <= MAX_SPARE_SLOT_ENTRIES {
                self.spare.push(keys);
            }
        }
    }

    /// When the earliest slot is due, if any.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.slots.keys().next().map(|slot| slot * TIMER_SLOT_MS)
    }

    /// Entries filed.
    pub fn len(&self) -> usize {
        self.slots.values().map(Vec::len).sum()
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// Stalls remembered. A deadline counted from before the oldest remembered stall gets no
/// credit for stalls forgotten before it (so a loop that stalls again and again still
/// closes a client that has been silent for longer than all of them).
pub const MAX_REMEMBERED_STALLS: usize = 16;

/// The loop's recent stalls: `(end_ms, stalled_ms)`, oldest first.
#[derive(Debug, Default)]
pub struct Stalls {
    recent: VecDeque<(u64, u64)>,
}

impl Stalls {
    /// The loop did not run for `stalled_ms` up to `end_ms`.
    pub fn record(&mut self, stalled_ms: u64, end_ms: u64) {
        if stalled_ms == 0 {
            return;
        }
        // Invariant: stalls are reported in time order, so `recent` stays sorted by end.
        debug_assert!(self.recent.back().is_none_or(|&(end, _)| end <= end_ms));
        if self.recent.len() == MAX_REMEMBERED_STALLS {
            self.recent.pop_front();
        }
        self.recent.push_back((end_ms, stalled_ms));
    }

    /// How much stalled time falls after `since_ms`: what a deadline counted from
    /// `since_ms` is pushed back by.
    pub fn credit_since(&self, since_ms: u64) -> u64 {
        self.recent
            .iter()
            .rev()
            .take_while(|&&(end, _)| end > since_ms)
            .map(|&(end, stalled)| end - end.saturating_sub(stalled).max(since_ms))
            .sum()
    }

    /// Whether no stall is remembered (the common case: deadlines need no credit).
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_pushed_back_by_the_stalled_time_after_its_start() {
        let mut stalls = Stalls::default();
        assert_eq!(stalls.credit_since(0), 0);
        stalls.record(5_000, 20_000); // stalled from 15 s to 20 s
        stalls.record(1_000, 30_000); // and from 29 s to 30 s
        assert_eq!(stalls.credit_since(10_000), 6_000, "both stalls after 10 s");
        assert_eq!(
            stalls.credit_since(17_000),
            4_000,
            "3 s of the first, all the second"
        );
        assert_eq!(
            stalls.credit_since(20_000),
            1_000,
            "seen when the first ended"
        );
        assert_eq!(stalls.credit_since(30_000), 0, "seen after both");
    }

    #[test]
    fn only_the_latest_stalls_are_remembered() {
        let mut stalls = Stalls::default();
        for i in 1..=(MAX_REMEMBERED_STALLS as u64 + 4) {
            stalls.record(100, i * 1_000);
        }
        assert_eq!(
            stalls.credit_since(0),
            100 * MAX_REMEMBERED_STALLS as u64,
            "the oldest four are forgotten"
        );
    }
}
