//! [`SimStore`]: the store's semantics in memory, for deterministic crash tests.
//!
//! It keeps two states: the durable one (what a crash keeps) and the live one (what
//! [`Store::load`] returns), with the buffered batches applied since the last durable
//! apply or sync in between. The ops are carried out by the same code as
//! [`RedbStore`](crate::RedbStore)'s (`ledger`), on `BTreeMap`s.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use crate::ledger::{Garbage, Ledger, Named, Outbound, Scan, Tables};
use crate::{Durability, Op, Recovered, Store, StoreError, StoreStats};

/// A store in memory that simulates crashes and failures.
///
/// A durable apply (or a sync) makes every batch applied so far survive
/// [`SimStore::crash`]; a buffered one survives only if the crash keeps it. A failure set
/// by [`SimStore::fail_next`] applies nothing of its batch and also loses the batches
/// buffered since the last durable one, as an I/O error does to
/// [`RedbStore`](crate::RedbStore) (redb must then be reopened, which rolls back to the last
/// durable commit): the live state goes back to the durable one.
///
/// # Example
///
/// ```
/// use starling_store::{Durability, Op, SimStore, Store};
///
/// let mut store = SimStore::new();
/// let put = |client: &str| Op::PutSession { client_id: client.into(), record: vec![1] };
/// store.apply(&[put("a")], Durability::Durable)?;
/// store.apply(&[put("b")], Durability::Buffered)?;
/// store.crash(0);
/// let recovered = store.load()?;
/// assert_eq!(recovered.sessions.len(), 1);
/// # Ok::<(), starling_store::StoreError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimStore {
    /// What a crash keeps.
    durable: SimState,
    /// What the process sees: `durable` with `buffered` applied.
    live: SimState,
    /// The batches applied as buffered since the last durable apply or sync, in order.
    buffered: Vec<Vec<Op>>,
    /// How many more writes fail, and with what.
    failing: Option<(usize, fn() -> StoreError)>,
    stats: StoreStats,
}

impl SimStore {
    /// An empty store.
    pub fn new() -> SimStore {
        SimStore::default()
    }

    /// Simulates a crash of the process (or the machine): the store keeps its durable
    /// state plus the first `keep_buffered` batches buffered since (a write is atomic per
    /// batch, so a torn write loses a whole batch, never part of one), and forgets the
    /// rest. `keep_buffered` past [`SimStore::buffered_batches`] keeps them all. The
    /// statistics and any failures set by [`SimStore::fail_next`] carry on.
    pub fn crash(&mut self, keep_buffered: usize) {
        let keep = keep_buffered.min(self.buffered.len());
        for ops in self.buffered.drain(..keep) {
            self.durable.apply(&ops);
        }
        self.rollback();
    }

    /// The batches applied as buffered since the last durable apply or sync.
    pub fn buffered_batches(&self) -> usize {
        self.buffered.len()
    }

    /// Makes the next `count` writes (an [`Store::apply`], or a [`Store::sync`] with
    /// batches to make durable) fail with `error()`, as a full disk would. Each failure
    /// applies nothing of its batch and loses the buffered batches, as with redb.
    pub fn fail_next(&mut self, count: usize, error: fn() -> StoreError) {
        self.failing = (count > 0).then_some((count, error));
    }

    /// The error of the next write, if it is to fail (and the bookkeeping of a failure).
    fn injected_failure(&mut self) -> Result<(), StoreError> {
        let Some((count, error)) = self.failing else {
            return Ok(());
        };
        self.failing = (count > 1).then_some((count - 1, error));
        self.stats.failures += 1;
        self.rollback();
        Err(error())
    }

    /// Back to the durable state: the buffered batches are lost.
    fn rollback(&mut self) {
        self.buffered.clear();
        self.live = self.durable.clone();
    }

    /// Makes every buffered batch durable.
    fn make_durable(&mut self) {
        for ops in self.buffered.drain(..) {
            self.durable.apply(&ops);
        }
        self.stats.syncs += 1;
    }
}

impl Store for SimStore {
    fn apply(&mut self, ops: &[Op], durability: Durability) -> Result<(), StoreError> {
        let durable = durability == Durability::Durable;
        if ops.is_empty() {
            if durable {
                self.sync()?;
            }
            self.stats.batches += 1;
            return Ok(());
        }
        self.injected_failure()?;
        self.live.apply(ops);
        if durable {
            self.make_durable();
            self.durable.apply(ops);
        } else {
            self.buffered.push(ops.to_vec());
        }
        self.stats.batches += 1;
        self.stats.ops += ops.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        self.injected_failure()?;
        self.make_durable();
        Ok(())
    }

    fn load(&mut self) -> Result<Recovered, StoreError> {
        let (recovered, ledger, garbage) = self.live.tables.scan();
        self.live.ledger = ledger;
        if !garbage.is_empty() {
            // RedbStore deletes the garbage in a durable commit.
            let Ok(()) = garbage.collect(&mut self.live.tables);
            self.buffered.clear();
            self.durable = self.live.clone();
            self.stats.syncs += 1;
        }
        Ok(recovered)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            messages: self.live.ledger.bodies(),
            disk_bytes: 0,
            ..self.stats
        }
    }
}

/// One state of the simulated store: its tables and their reference counts.
#[derive(Debug, Clone, Default)]
struct SimState {
    tables: SimTables,
    ledger: Ledger,
}

impl SimState {
    fn apply(&mut self, ops: &[Op]) {
        let Ok(()) = self.ledger.stage(&mut self.tables, ops);
        self.ledger.fold();
    }
}

/// A client's outbound entries: seq → (message, meta).
type Queue = BTreeMap<u64, (u64, Vec<u8>)>;

/// The tables, in memory. A client's entries are grouped under its id (no empty groups).
#[derive(Debug, Clone, Default)]
struct SimTables {
    sessions: BTreeMap<Box<str>, Vec<u8>>,
    outbound: BTreeMap<Box<str>, Queue>,
    inbound: BTreeMap<Box<str>, BTreeSet<u16>>,
    messages: BTreeMap<u64, Vec<u8>>,
    retained: BTreeMap<Box<str>, Vec<u8>>,
    routes: BTreeMap<(u64, u32), Vec<u8>>,
    high_water: u64,
}

impl SimTables {
    fn named(&mut self, table: Named) -> &mut BTreeMap<Box<str>, Vec<u8>> {
        match table {
            Named::Sessions => &mut self.sessions,
            Named::Retained => &mut self.retained,
        }
    }

    /// Everything, through the shared [`Scan`].
    fn scan(&self) -> (Recovered, Ledger, Garbage) {
        let mut scan = Scan::new(true);
        for (client_id, record) in &self.sessions {
            scan.session(client_id, record);
        }
        for (client_id, entries) in &self.outbound {
            for (&seq, (message, meta)) in entries {
                scan.outbound(client_id, seq, *message, meta);
            }
        }
        for (client_id, packet_ids) in &self.inbound {
            for &packet_id in packet_ids {
                scan.inbound(client_id, packet_id);
            }
        }
        for (&(message, ticket), record) in &self.routes {
            scan.route(message, ticket, record);
        }
        for (topic, body) in &self.retained {
            scan.retained(topic, body);
        }
        for (&id, body) in &self.messages {
            scan.message(id, body);
        }
        scan.finish(self.high_water)
    }
}

impl Tables for SimTables {
    type Error = Infallible;

    fn put_named(&mut self, table: Named, name: &str, bytes: &[u8]) -> Result<(), Infallible> {
        self.named(table).insert(name.into(), bytes.to_vec());
        Ok(())
    }

    fn delete_named(&mut self, table: Named, name: &str) -> Result<(), Infallible> {
        self.named(table).remove(name);
        Ok(())
    }

    fn delete_client_outbound(
        &mut self,
        client_id: &str,
        mut release: impl FnMut(u64),
    ) -> Result<(), Infallible> {
        for (message, _) in self
            .outbound
            .remove(client_id)
            .into_iter()
            .flat_map(BTreeMap::into_values)
        {
            release(message);
        }
        Ok(())
    }

    fn delete_client_inbound(&mut self, client_id: &str) -> Result<(), Infallible> {
        self.inbound.remove(client_id);
        Ok(())
    }

    fn put_message(&mut self, id: u64, body: &[u8]) -> Result<bool, Infallible> {
        let absent = !self.messages.contains_key(&id);
        if absent {
            self.messages.insert(id, body.to_vec());
        }
        Ok(absent)
    }

    fn delete_message(&mut self, id: u64) -> Result<bool, Infallible> {
        Ok(self.messages.remove(&id).is_some())
    }

    fn put_outbound(&mut self, entry: Outbound<'_>) -> Result<Option<u64>, Infallible> {
        let entries = self.outbound.entry(entry.client_id.into()).or_default();
        let value = (entry.message, entry.meta.to_vec());
        Ok(entries.insert(entry.seq, value).map(|(old, _)| old))
    }

    fn delete_outbound(&mut self, client_id: &str, seq: u64) -> Result<Option<u64>, Infallible> {
        let Some(entries) = self.outbound.get_mut(client_id) else {
            return Ok(None);
        };
        let old = entries.remove(&seq).map(|(old, _)| old);
        if entries.is_empty() {
            self.outbound.remove(client_id);
        }
        Ok(old)
    }

    fn put_inbound(&mut self, client_id: &str, packet_id: u16) -> Result<(), Infallible> {
        self.inbound
            .entry(client_id.into())
            .or_default()
            .insert(packet_id);
        Ok(())
    }

    fn delete_inbound(&mut self, client_id: &str, packet_id: u16) -> Result<(), Infallible> {
        if let Some(packet_ids) = self.inbound.get_mut(client_id) {
            packet_ids.remove(&packet_id);
            if packet_ids.is_empty() {
                self.inbound.remove(client_id);
            }
        }
        Ok(())
    }

    fn put_route(&mut self, message: u64, ticket: u32, record: &[u8]) -> Result<bool, Infallible> {
        Ok(self
            .routes
            .insert((message, ticket), record.to_vec())
            .is_none())
    }

    fn delete_route(&mut self, message: u64, ticket: u32) -> Result<bool, Infallible> {
        Ok(self.routes.remove(&(message, ticket)).is_some())
    }

    fn set_high_water(&mut self, id: u64) -> Result<(), Infallible> {
        self.high_water = id;
        Ok(())
    }
}
