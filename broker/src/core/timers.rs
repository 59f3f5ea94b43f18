//! A coarse timer wheel for connect timeouts and keep-alive.
//!
//! Each connection has at most one entry, filed under the second its deadline falls in.
//! Traffic does not touch the wheel (a packet only updates `last_seen_ms`): when an entry
//! comes due, the core recomputes the real deadline and either acts or files the connection
//! again. So the cost is O(1) per connection per keep-alive period, not per packet.

use std::collections::BTreeMap;

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
