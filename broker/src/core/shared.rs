//! The little state the event loops share: the retained store, the connected-client count
//! (for the global connection limit), the summary of each loop's subscriptions' first
//! levels (so a loop forwards a PUBLISH only to loops that may have a matching subscriber:
//! `core::summary`), the shared-subscription groups, the client-id directory and the key
//! assigned client ids are derived with.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::directory::Directory;
use crate::core::groups::SharedGroups;
use crate::core::message::SharedMessage;
use crate::topic::RetainedStore;

/// Bytes of the secret key assigned client ids are derived with (128 bits).
pub const ASSIGNED_ID_KEY_BYTES: usize = 16;
/// What every assigned client id starts with.
pub const ASSIGNED_ID_PREFIX: &str = "starling-";
/// Bytes of keyed hash in an assigned client id (128 bits), written as twice as many
/// lowercase hex digits after [`ASSIGNED_ID_PREFIX`].
pub const ASSIGNED_ID_HASH_BYTES: usize = 16;
/// Length of an assigned client id in bytes: the prefix and 32 hex digits (41 bytes, like
/// Mosquitto's `auto-` and a UUID).
pub const ASSIGNED_ID_LENGTH_BYTES: usize = ASSIGNED_ID_PREFIX.len() + 2 * ASSIGNED_ID_HASH_BYTES;

/// The secret key assigned client ids are derived with.
pub type AssignedIdKey = [u8; ASSIGNED_ID_KEY_BYTES];

/// A fresh key from the operating system's random source, for one broker's [`Shared`].
pub fn random_assigned_id_key() -> std::io::Result<AssignedIdKey> {
    let mut key = [0u8; ASSIGNED_ID_KEY_BYTES];
    getrandom::fill(&mut key).map_err(std::io::Error::other)?;
    Ok(key)
}

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
    /// Persistence: whether it is on, message ids, retained ops in order (`core::persist`).
    pub persist: crate::core::persist::PersistShared,
    /// The secret the loops derive assigned client ids from ([`Shared::assigned_client_id`]).
    assigned_id_key: AssignedIdKey,
}

impl Shared {
    /// State for `loops` event loops, assigning client ids derived from `assigned_id_key`
    /// (the broker's is random: [`random_assigned_id_key`]; tests that replay pass a fixed
    /// one, which keeps the core deterministic).
    pub fn new(loops: usize, assigned_id_key: AssignedIdKey) -> Shared {
        Shared {
            retained: Mutex::new(RetainedStore::new()),
            connected: AtomicUsize::new(0),
            summary_per_loop: (0..loops).map(|_| AtomicU64::new(0)).collect(),
            groups: Mutex::new(SharedGroups::default()),
            group_count: AtomicUsize::new(0),
            directory: Arc::new(Directory::new(loops)),
            persist: Default::default(),
            assigned_id_key,
        }
    }

    /// The same state, recording what the store must hear of (`core::persist`).
    pub fn with_persistence(mut self, persist: crate::core::persist::PersistShared) -> Shared {
        self.persist = persist;
        self
    }

    /// The client id assigned as loop `loop_index`'s `counter`th: [`ASSIGNED_ID_PREFIX`] and
    /// the first 128 bits of SHA-256(key ‖ loop index ‖ counter) in lowercase hex. Unique
    /// per (loop, counter) short of a hash collision, and unguessable without the key, so
    /// nobody can take over the session of a client that was given its id. (The hash is
    /// truncated, so SHA-256's length extension reveals nothing.)
    ///
    /// 41 bytes, more than the 23 every server must accept (MQTT-3.1.3-5): an MQTT 5 client
    /// takes the id it is given whatever its length, and an MQTT 3.1.1 client is never told
    /// its id (it can only use it with Clean Session 1, where nothing is resumed). Hex,
    /// not base64, so the id is the same in every topic, log and ACL pattern it appears in.
    pub fn assigned_client_id(&self, loop_index: usize, counter: u64) -> String {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(self.assigned_id_key);
        hash.update((loop_index as u64).to_le_bytes());
        hash.update(counter.to_le_bytes());
        let digest = hash.finalize();
        let mut id = String::with_capacity(ASSIGNED_ID_LENGTH_BYTES);
        id.push_str(ASSIGNED_ID_PREFIX);
        for byte in &digest[..ASSIGNED_ID_HASH_BYTES] {
            let _ = write!(id, "{byte:02x}");
        }
        id
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Assignments checked for uniqueness.
    const ASSIGNMENTS: u64 = 10_000;

    fn is_assigned_format(id: &str) -> bool {
        id.len() == ASSIGNED_ID_LENGTH_BYTES
            && id.strip_prefix(ASSIGNED_ID_PREFIX).is_some_and(|hex| {
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
    }

    #[test]
    fn assigned_ids_are_the_prefix_and_32_hex_digits() {
        let shared = Shared::new(2, [7; ASSIGNED_ID_KEY_BYTES]);
        let id = shared.assigned_client_id(0, 1);
        assert!(is_assigned_format(&id), "{id}");
        assert_eq!(id.len(), 41);
        assert_eq!(id, shared.assigned_client_id(0, 1), "derived, not drawn");
    }

    #[test]
    fn assigned_ids_are_unique_across_loops_and_counters() {
        let shared = Shared::new(2, [1; ASSIGNED_ID_KEY_BYTES]);
        let mut seen = HashSet::new();
        for loop_index in 0..2 {
            for counter in 1..=ASSIGNMENTS {
                let id = shared.assigned_client_id(loop_index, counter);
                assert!(is_assigned_format(&id), "{id}");
                assert!(seen.insert(id), "loop {loop_index}, counter {counter}");
            }
        }
    }

    #[test]
    fn brokers_with_different_keys_assign_different_ids() {
        let a = Shared::new(1, [0; ASSIGNED_ID_KEY_BYTES]);
        let b = Shared::new(1, random_assigned_id_key().expect("random source"));
        let from_a: HashSet<String> = (1..=ASSIGNMENTS)
            .map(|n| a.assigned_client_id(0, n))
            .collect();
        assert!((1..=ASSIGNMENTS).all(|n| !from_a.contains(&b.assigned_client_id(0, n))));
        assert_ne!(
            random_assigned_id_key().expect("random source"),
            random_assigned_id_key().expect("random source")
        );
    }
}
