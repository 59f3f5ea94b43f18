//! Which loop holds each client id's session: the one table every loop consults at CONNECT.
//!
//! A session lives on the loop that accepted its first CONNECT, so a new client is served
//! where the kernel's `SO_REUSEPORT` hash put its socket, with no handover between threads.
//! A later CONNECT for the same client id on another loop is handed over to the loop that
//! holds the session ([`Route::There`]), so takeover and resumption still happen on one
//! thread.
//!
//! The table maps a keyed hash of the client id (one key per process, shared by all loops)
//! to its loop and a reference count: the sessions on that loop whose ids have that hash
//! (distinct ids whose hashes collide simply live on the same loop) plus the CONNECTs being
//! served there right now ([`Reservation`]). An entry goes when its count reaches zero.
//! It is split into [`DIRECTORY_SHARDS`] mutexes by hash so that loops seldom meet on one.
//! With one loop there is nothing to decide and the table stays empty.
//!
//! Invariant: an entry naming loop `L` is changed only by `L` (its count up or down), except
//! that any loop may create an absent entry for itself. So two CONNECTs racing on two loops
//! for a new id agree: the first to lock the shard owns it, the other is handed over.
//!
//! Cost: one 8-byte entry per client id with a session (44 bits of the id's hash, the loop
//! and the count packed into a `u64`) plus the table's control byte: 10–19 B per id with
//! the table's slack, depending on where it is in its growth. Two ids whose 50 hash bits
//! (the shard's 6 and the entry's 44) agree simply share a loop: about one pair in 2 000
//! runs of a million clients.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::HashTable;

/// Mutexes the table is split into (a power of two).
pub const DIRECTORY_SHARDS: usize = 64;
/// Bits of an entry that hold the loop index.
const LOOP_BITS: u32 = 10;
/// Loops the table can name.
pub const DIRECTORY_MAX_LOOPS: usize = 1 << LOOP_BITS;
/// Bits of an entry that hold the reference count.
const REFS_BITS: u32 = 10;
/// Bits of an entry that hold the id's hash (the rest of the 64).
const KEY_BITS: u32 = 64 - LOOP_BITS - REFS_BITS;
/// A count that has reached this stays: the entry is never removed (it stays correct, the
/// id just keeps its loop), so no count can wrap. A count is the sessions with the key on
/// the loop (one, bar collisions) plus the CONNECTs being served there for it (one at a
/// time, plus enhanced-authentication exchanges in progress), so this takes a thousand
/// concurrent exchanges for one client id.
const REFS_STUCK: u64 = (1 << REFS_BITS) - 1;

/// One key's entry: the id's hash bits (high [`KEY_BITS`]), the loop holding it (next
/// [`LOOP_BITS`]) and its references (low [`REFS_BITS`]): the sessions on that loop whose
/// ids have this key, plus the reservations held there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry(u64);

impl Entry {
    fn new(key: u64, loop_index: usize) -> Entry {
        Entry((key << (LOOP_BITS + REFS_BITS)) | ((loop_index as u64) << REFS_BITS))
    }
    /// The entry's key: the id's hash bits it is filed under.
    fn key(self) -> u64 {
        self.0 >> (LOOP_BITS + REFS_BITS)
    }
    fn loop_index(self) -> usize {
        ((self.0 >> REFS_BITS) & ((1 << LOOP_BITS) - 1)) as usize
    }
    fn refs(self) -> u64 {
        self.0 & REFS_STUCK
    }
    fn add_ref(&mut self) {
        if self.refs() < REFS_STUCK {
            self.0 += 1;
        }
    }
    /// Drops one reference; false once none is left.
    fn drop_ref(&mut self) -> bool {
        match self.refs() {
            REFS_STUCK => true,
            0 => false,
            _ => {
                self.0 -= 1;
                self.refs() > 0
            }
        }
    }
}

/// The table's hash of a key (already a keyed hash: spread it over all 64 bits).
fn spread(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A cache line of its own for each shard's mutex.
#[derive(Default)]
#[repr(align(64))]
struct Padded(Mutex<HashTable<Entry>>);

impl std::fmt::Debug for Padded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Padded(..)")
    }
}

/// The client id → loop table, shared by every loop.
#[derive(Debug)]
pub struct Directory {
    shards: Box<[Padded]>,
    hasher: RandomState,
    /// False with one loop: every route is [`Route::Here`] and nothing is stored.
    enabled: bool,
}

/// Where a CONNECT is to be served.
#[derive(Debug)]
pub enum Route {
    /// On this loop; the reservation keeps the id here until the session exists or the
    /// CONNECT is given up (drop it after the session is created).
    Here(Reservation),
    /// On that loop, which holds the id's session.
    There(usize),
}

/// A hold on a client id's entry for a CONNECT being served, released on drop.
#[derive(Debug)]
pub struct Reservation {
    held: Option<(Arc<Directory>, u64, usize)>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some((directory, hash, loop_index)) = self.held.take() {
            directory.release(hash, loop_index);
        }
    }
}

impl Directory {
    /// The table for `loops` event loops (at most [`DIRECTORY_MAX_LOOPS`]).
    pub fn new(loops: usize) -> Directory {
        assert!(
            loops <= DIRECTORY_MAX_LOOPS,
            "{loops} loops: the directory names {DIRECTORY_MAX_LOOPS}"
        );
        Directory {
            shards: (0..DIRECTORY_SHARDS).map(|_| Padded::default()).collect(),
            hasher: RandomState::new(),
            enabled: loops > 1,
        }
    }

    /// The keyed hash the table files `client_id` under.
    pub fn hash(&self, client_id: &str) -> u64 {
        self.hasher.hash_one(client_id)
    }

    /// The shard of `hash` and the key the entry is filed under in it.
    fn shard(&self, hash: u64) -> (MutexGuard<'_, HashTable<Entry>>, u64) {
        // The high bits pick the shard, the low ones are the key.
        let i = (hash >> 58) as usize % DIRECTORY_SHARDS;
        let key = hash & ((1 << KEY_BITS) - 1);
        // A loop that panicked while holding the lock left the map consistent: every
        // change under it is a single insert, update or remove.
        let map = self.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (map, key)
    }

    /// Where a CONNECT for `client_id` arriving on loop `here` is served: here (the id is
    /// new, or its session is here) with a reservation, or on the loop holding its session.
    pub fn route(self: &Arc<Self>, client_id: &str, here: usize) -> Route {
        if !self.enabled {
            return Route::Here(Reservation { held: None });
        }
        let hash = self.hash(client_id);
        let (mut shard, key) = self.shard(hash);
        let owner = entry(&mut shard, key, here);
        if owner.loop_index() != here {
            return Route::There(owner.loop_index());
        }
        owner.add_ref();
        Route::Here(Reservation {
            held: Some((Arc::clone(self), hash, here)),
        })
    }

    /// A session for `client_id` was created on loop `here` (which holds a reservation).
    pub fn session_created(&self, client_id: &str, here: usize) {
        if !self.enabled {
            return;
        }
        let (mut shard, key) = self.shard(self.hash(client_id));
        let owner = entry(&mut shard, key, here);
        // Invariant: the CONNECT that creates a session holds a reservation on its loop.
        debug_assert_eq!(owner.loop_index(), here, "session created off its loop");
        owner.add_ref();
    }

    /// A session for `client_id` on loop `here` ended.
    pub fn session_ended(&self, client_id: &str, here: usize) {
        if self.enabled {
            self.release(self.hash(client_id), here);
        }
    }

    fn release(&self, hash: u64, here: usize) {
        let (mut shard, key) = self.shard(hash);
        let Ok(mut found) = shard.find_entry(spread(key), |e| e.key() == key) else {
            debug_assert!(false, "released an id the directory does not hold");
            return;
        };
        let owner = found.get_mut();
        debug_assert_eq!(owner.loop_index(), here, "released from another loop");
        if !owner.drop_ref() {
            found.remove();
        }
    }

    /// Entries held (client ids with a session or a CONNECT in progress, up to collisions).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the table holds (its maps' allocations: key, value and control byte per
    /// bucket).
    pub fn heap_bytes(&self) -> usize {
        const BUCKET_BYTES: usize = size_of::<Entry>() + 1;
        self.shards
            .iter()
            .map(|s| {
                let map = s.0.lock().unwrap_or_else(PoisonError::into_inner);
                map.capacity() * BUCKET_BYTES
            })
            .sum()
    }

    /// Gives back slack after a spike (called by the loops' idle sweep).
    pub fn shrink_if_sparse(&self) {
        for s in self.shards.iter() {
            let mut map = s.0.lock().unwrap_or_else(PoisonError::into_inner);
            if map.capacity() > 4 * map.len().max(16) {
                map.shrink_to_fit(|e| spread(e.key()));
            }
        }
    }
}

/// The entry filed under `key`, created for loop `here` (with no reference) if absent.
fn entry(table: &mut HashTable<Entry>, key: u64, here: usize) -> &mut Entry {
    table
        .entry(spread(key), |e| e.key() == key, |e| spread(e.key()))
        .or_insert(Entry::new(key, here))
        .into_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// One step of a model run: a CONNECT for id `id` on loop `at`, the session of the
    /// oldest live reservation created (or the reservation given up), or a session ended.
    #[derive(Debug, Clone)]
    enum Op {
        Connect { id: u8, at: u8 },
        Settle { create: bool },
        End { pick: u8 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, 0u8..3).prop_map(|(id, at)| Op::Connect { id, at }),
            any::<bool>().prop_map(|create| Op::Settle { create }),
            any::<u8>().prop_map(|pick| Op::End { pick }),
        ]
    }

    proptest! {
        /// Against a model (each id: the loop holding it, its sessions and reservations):
        /// a CONNECT is routed to the holding loop if any, else stays; no id is ever held
        /// by two loops; an id is dropped exactly when nothing holds it.
        #[test]
        fn routes_agree_with_a_model(ops in proptest::collection::vec(op(), 1..200)) {
            let d = Arc::new(Directory::new(3));
            // id -> (loop, sessions, reservations)
            let mut model: HashMap<u8, (usize, u32, u32)> = HashMap::new();
            let mut pending: Vec<(u8, usize, Reservation)> = Vec::new();
            let mut sessions: Vec<(u8, usize)> = Vec::new();
            for op in ops {
                match op {
                    Op::Connect { id, at } => {
                        let name = format!("id-{id}");
                        let (at, want) = (usize::from(at), model.get(&id).map(|m| m.0));
                        match d.route(&name, at) {
                            Route::Here(r) => {
                                prop_assert!(want.is_none() || want == Some(at));
                                model.entry(id).or_insert((at, 0, 0)).2 += 1;
                                pending.push((id, at, r));
                            }
                            Route::There(l) => prop_assert_eq!(Some(l), want.filter(|&w| w != at)),
                        }
                    }
                    Op::Settle { create } => {
                        if pending.is_empty() {
                            continue;
                        }
                        let (id, at, r) = pending.remove(0);
                        if create {
                            d.session_created(&format!("id-{id}"), at);
                            sessions.push((id, at));
                            model.get_mut(&id).expect("reserved").1 += 1;
                        }
                        drop(r);
                        model.get_mut(&id).expect("reserved").2 -= 1;
                    }
                    Op::End { pick } => {
                        if sessions.is_empty() {
                            continue;
                        }
                        let (id, at) = sessions.remove(usize::from(pick) % sessions.len());
                        d.session_ended(&format!("id-{id}"), at);
                        model.get_mut(&id).expect("held").1 -= 1;
                    }
                }
                model.retain(|_, m| m.1 + m.2 > 0);
                prop_assert_eq!(d.len(), model.len());
            }
        }
    }

    fn here(route: Route) -> Reservation {
        match route {
            Route::Here(r) => r,
            Route::There(l) => panic!("routed to loop {l}"),
        }
    }

    #[test]
    fn a_new_id_stays_where_it_arrived_and_later_connects_follow_it() {
        let d = Arc::new(Directory::new(2));
        let r = here(d.route("a", 1));
        assert!(matches!(d.route("a", 0), Route::There(1)));
        d.session_created("a", 1);
        drop(r);
        assert!(
            matches!(d.route("a", 0), Route::There(1)),
            "the session holds it"
        );
        let again = here(d.route("a", 1));
        drop(again);
        d.session_ended("a", 1);
        assert!(d.is_empty());
        let r = here(d.route("a", 0));
        assert!(
            matches!(d.route("a", 1), Route::There(0)),
            "free again: first come"
        );
        drop(r);
        assert!(d.is_empty(), "a CONNECT given up leaves nothing behind");
    }

    #[test]
    fn a_stuck_count_keeps_its_entry_rather_than_wrapping() {
        let key = (1 << KEY_BITS) - 1;
        let mut owner = Entry::new(key, DIRECTORY_MAX_LOOPS - 1);
        owner.0 |= REFS_STUCK;
        owner.add_ref();
        assert!(owner.drop_ref(), "stuck: still held");
        assert_eq!(owner.refs(), REFS_STUCK);
        assert_eq!(
            (owner.key(), owner.loop_index()),
            (key, DIRECTORY_MAX_LOOPS - 1)
        );
        let mut one = Entry::new(5, 3);
        one.add_ref();
        assert!(!one.drop_ref());
        assert_eq!((one.key(), one.loop_index()), (5, 3));
    }

    #[test]
    fn one_loop_stores_nothing() {
        let d = Arc::new(Directory::new(1));
        let r = here(d.route("a", 0));
        d.session_created("a", 0);
        assert!(d.is_empty());
        drop(r);
        d.session_ended("a", 0);
    }

    #[test]
    fn reservations_and_sessions_count_separately() {
        let d = Arc::new(Directory::new(4));
        let first = here(d.route("x", 2));
        let second = here(d.route("x", 2));
        drop(first);
        assert!(matches!(d.route("x", 3), Route::There(2)), "still reserved");
        d.session_created("x", 2);
        drop(second);
        assert_eq!(d.len(), 1);
        d.session_ended("x", 2);
        assert!(d.is_empty());
        assert!(d.heap_bytes() > 0);
        d.shrink_if_sparse();
    }
}
