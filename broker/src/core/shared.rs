//! The little state the event loops share: the retained store, the connected-client count
//! (for the global connection limit), the summary of each loop's subscriptions' first
//! levels (so a loop forwards a PUBLISH only to loops that may have a matching subscriber:
//! `core::summary`), the shared-subscription groups and the client-id directory.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::directory::Directory;
use crate::core::groups::SharedGroups;
use crate::core::message::SharedMessage;
use crate::topic::RetainedStore;

/// Shared by every loop of one broker (behind an `Arc`).
pub struct Shared {
    /// Retained messages by topic. Written on a retained PUBLISH, read on SUBSCRIBE.
    pub retained: Mutex<RetainedStore<SharedMessage>>,
    /// Clients past CONNECT, across all loops.
    pub connected: AtomicUsize,
    /// Each loop's `TopicSummary` bits (`core::summary`).
    pub summary_per_loop: Vec<AtomicU64>,
    /// Shared-subscription groups (locked only while `group_count` is non-zero).
    pub groups: Mutex<SharedGroups>,
    /// Groups in `groups`.
    pub group_count: AtomicUsize,
    /// Which loop holds each client id's session.
    pub directory: Arc<Directory>,
}

impl Shared {
    /// State for `loops` event loops.
    pub fn new(loops: usize) -> Shared {
        Shared {
            retained: Mutex::new(RetainedStore::new()),
            connected: AtomicUsize::new(0),
            summary_per_loop: (0..loops).map(|_| AtomicU64::new(0)).collect(),
            groups: Mutex::new(SharedGroups::default()),
            group_count: AtomicUsize::new(0),
            directory: Arc::new(Directory::new(loops)),
        }
    }

    /// Claims one connection slot if fewer than `max` are taken.
    pub fn try_connect(&self, max: usize) -> bool {
        self.connected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Frees a slot claimed by [`Shared::try_connect`].
    pub fn disconnected(&self) {
        self.connected.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether any shared-subscription group exists.
    pub fn has_groups(&self) -> bool {
        self.group_count.load(Ordering::Acquire) > 0
    }

    /// Records the number of groups.
    pub fn set_group_count(&self, count: usize) {
        self.group_count.store(count, Ordering::Release);
    }

    /// Loop `index`'s summary bits (`core::summary`): 0 when it holds no subscription. A
    /// topic whose `topic_bits` share none of them matches none of its subscriptions.
    pub fn summary(&self, index: usize) -> u64 {
        self.summary_per_loop
            .get(index)
            .map_or(0, |bits| bits.load(Ordering::Relaxed))
    }

    /// Records loop `index`'s summary bits.
    pub fn set_summary(&self, index: usize, summary_bits: u64) {
        if let Some(bits) = self.summary_per_loop.get(index) {
            bits.store(summary_bits, Ordering::Relaxed);
        }
    }
}
