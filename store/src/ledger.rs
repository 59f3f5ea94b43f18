//! The semantics both stores share, written once.
//!
//! A store implements [`Tables`] over its own storage (a redb write transaction, or
//! `BTreeMap`s in memory) and lets the shared code decide what a batch does:
//! [`Ledger::stage`] carries out the ops on the tables and works out how the message
//! reference counts change, without changing them; [`Ledger::fold`] makes those changes
//! once the store has committed (a failed commit leaves the counts as they were, so they
//! always describe what the storage holds). At start-up [`Scan`] is fed every entry the
//! storage holds and builds the [`Recovered`] state, the counts and the [`Garbage`] to
//! delete.
//!
//! The rules, in one place:
//! - an outbound entry and a route each hold one reference on their message; replacing an
//!   outbound entry keeps its reference (or moves it, if the message id differs);
//! - a body whose count is zero at the end of a batch is deleted in that batch, whether it
//!   lost its last reference or was put in the batch and never referenced;
//! - putting a body that is stored already changes nothing;
//! - deleting a session deletes its record, its outbound entries (releasing each
//!   reference) and its inbound packet ids;
//! - every batch that puts a message raises the high-water mark of message ids, so that an
//!   id is never reused even once every body is gone;
//! - at load, a body nothing references, and an outbound entry or inbound id whose session
//!   has no record, are garbage: nothing could ever use them.

use std::collections::HashMap;

use crate::{Op, Recovered, RecoveredOutbound, RecoveredRoute, RecoveredSession};

/// The two tables of byte strings by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    /// Session records, by client id.
    Sessions,
    /// Retained messages, by topic.
    Retained,
}

/// An outbound entry to write.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outbound<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) seq: u64,
    pub(crate) message: u64,
    pub(crate) meta: &'a [u8],
}

/// The tables of a store, as the shared logic drives them within one transaction.
pub(crate) trait Tables {
    /// What a failed operation returns (`Infallible` for the simulated store).
    type Error;

    /// Inserts or replaces a session's record or a retained message.
    fn put_named(&mut self, table: Named, name: &str, bytes: &[u8]) -> Result<(), Self::Error>;
    /// Deletes a session's record (its entries are deleted by the two calls below) or a
    /// retained message.
    fn delete_named(&mut self, table: Named, name: &str) -> Result<(), Self::Error>;
    /// Deletes every outbound entry of a client, calling `release` with each one's message.
    fn delete_client_outbound(
        &mut self,
        client_id: &str,
        release: impl FnMut(u64),
    ) -> Result<(), Self::Error>;
    /// Deletes every inbound packet id of a client.
    fn delete_client_inbound(&mut self, client_id: &str) -> Result<(), Self::Error>;
    /// Stores a body unless one is stored under `id`; true when it was stored now.
    fn put_message(&mut self, id: u64, body: &[u8]) -> Result<bool, Self::Error>;
    /// Deletes a body; true when there was one.
    fn delete_message(&mut self, id: u64) -> Result<bool, Self::Error>;
    /// Inserts or replaces an outbound entry; the message of the entry it replaced.
    fn put_outbound(&mut self, entry: Outbound<'_>) -> Result<Option<u64>, Self::Error>;
    /// Deletes an outbound entry; the message of the entry it deleted.
    fn delete_outbound(&mut self, client_id: &str, seq: u64) -> Result<Option<u64>, Self::Error>;
    /// Records an inbound packet id.
    fn put_inbound(&mut self, client_id: &str, packet_id: u16) -> Result<(), Self::Error>;
    /// Forgets an inbound packet id.
    fn delete_inbound(&mut self, client_id: &str, packet_id: u16) -> Result<(), Self::Error>;
    /// Inserts or replaces a route; true when there was none.
    fn put_route(&mut self, message: u64, ticket: u32, record: &[u8]) -> Result<bool, Self::Error>;
    /// Deletes a route; true when there was one.
    fn delete_route(&mut self, message: u64, ticket: u32) -> Result<bool, Self::Error>;
    /// Records the high-water mark of message ids.
    fn set_high_water(&mut self, id: u64) -> Result<(), Self::Error>;
}

/// The message reference counts of a store and what it holds, kept in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    /// References per message id (absent: none).
    refs: HashMap<u64, u32>,
    /// Bodies held.
    bodies: u64,
    /// The highest message id ever put (the high-water mark the storage holds).
    high_water: u64,
    /// The changes of the batch being applied (kept between batches for its capacity).
    staged: Staged,
}

/// What the batch being applied changes in a [`Ledger`].
#[derive(Debug, Clone, Default)]
struct Staged {
    /// Change of the reference count per message id the batch touched (a body put in the
    /// batch is here too, with no change of its own).
    refs: HashMap<u64, i64>,
    /// Change of the number of bodies held.
    bodies: i64,
    /// The high-water mark after the batch.
    high_water: u64,
}

impl Staged {
    fn change(&mut self, message: u64, by: i64) {
        *self.refs.entry(message).or_insert(0) += by;
    }
}

impl Ledger {
    /// Bodies held.
    pub(crate) fn bodies(&self) -> u64 {
        self.bodies
    }

    /// Carries out `ops` on `tables` (one transaction) and stages the changes of the
    /// counts, for [`Ledger::fold`] once the transaction has committed. On an error the
    /// transaction must be abandoned; the next `stage` forgets what this one staged.
    pub(crate) fn stage<T: Tables>(&mut self, tables: &mut T, ops: &[Op]) -> Result<(), T::Error> {
        let Ledger {
            refs,
            high_water,
            staged,
            ..
        } = self;
        staged.refs.clear();
        staged.bodies = 0;
        staged.high_water = *high_water;
        for op in ops {
            match op {
                Op::PutSession { client_id, record } => {
                    tables.put_named(Named::Sessions, client_id, record)?;
                }
                Op::DeleteSession { client_id } => {
                    tables.delete_named(Named::Sessions, client_id)?;
                    tables.delete_client_outbound(client_id, |message| {
                        staged.change(message, -1);
                    })?;
                    tables.delete_client_inbound(client_id)?;
                }
                Op::PutMessage { id, body } => {
                    if tables.put_message(*id, body)? {
                        staged.bodies += 1;
                    }
                    // Listed, so that the end of the batch sees whether anything references it.
                    staged.change(*id, 0);
                    staged.high_water = staged.high_water.max(*id);
                }
                Op::PutOutbound {
                    client_id,
                    seq,
                    message,
                    meta,
                } => {
                    let old = tables.put_outbound(Outbound {
                        client_id,
                        seq: *seq,
                        message: *message,
                        meta,
                    })?;
                    if old != Some(*message) {
                        if let Some(old) = old {
                            staged.change(old, -1);
                        }
                        staged.change(*message, 1);
                    }
                }
                Op::DeleteOutbound { client_id, seq } => {
                    if let Some(old) = tables.delete_outbound(client_id, *seq)? {
                        staged.change(old, -1);
                    }
                }
                Op::PutInbound {
                    client_id,
                    packet_id,
                } => tables.put_inbound(client_id, *packet_id)?,
                Op::DeleteInbound {
                    client_id,
                    packet_id,
                } => tables.delete_inbound(client_id, *packet_id)?,
                Op::PutRetained { topic, body } => {
                    tables.put_named(Named::Retained, topic, body)?
                }
                Op::DeleteRetained { topic } => tables.delete_named(Named::Retained, topic)?,
                Op::PutRoute {
                    message,
                    ticket,
                    record,
                } => {
                    if tables.put_route(*message, *ticket, record)? {
                        staged.change(*message, 1);
                    }
                }
                Op::DeleteRoute { message, ticket } => {
                    if tables.delete_route(*message, *ticket)? {
                        staged.change(*message, -1);
                    }
                }
            }
        }
        for (&id, &change) in &staged.refs {
            let count = i64::from(refs.get(&id).copied().unwrap_or(0)) + change;
            if count <= 0 && tables.delete_message(id)? {
                staged.bodies -= 1;
            }
        }
        if staged.high_water > *high_water {
            tables.set_high_water(staged.high_water)?;
        }
        Ok(())
    }

    /// Makes the changes the last [`Ledger::stage`] staged (its transaction committed).
    pub(crate) fn fold(&mut self) {
        let Ledger {
            refs,
            bodies,
            high_water,
            staged,
        } = self;
        for (id, change) in staged.refs.drain() {
            let count = i64::from(refs.get(&id).copied().unwrap_or(0)) + change;
            debug_assert!(
                count >= 0,
                "message {id} released more often than referenced"
            );
            match u32::try_from(count) {
                Ok(count) if count > 0 => {
                    refs.insert(id, count);
                }
                _ => {
                    refs.remove(&id);
                }
            }
        }
        *bodies = bodies.saturating_add_signed(staged.bodies);
        staged.bodies = 0;
        *high_water = (*high_water).max(staged.high_water);
    }
}

/// Builds the [`Recovered`] state, the [`Ledger`] and the [`Garbage`] from every entry a
/// store holds. Feed sessions first (ascending client id), then outbound entries, inbound
/// ids and routes (any order), then bodies; retained messages at any time.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Whether to copy records, metas and bodies (not when only the counts are wanted: the
    /// `Recovered` then holds every key with empty values).
    copy: bool,
    recovered: Recovered,
    refs: HashMap<u64, u32>,
    garbage: Garbage,
    /// The index of the session the last entry belonged to (entries come grouped by client).
    hint: usize,
    /// The highest message id among the bodies.
    highest_id: u64,
}

impl Scan {
    /// A scan that builds the whole [`Recovered`] state (`copy`), or only the counts.
    pub(crate) fn new(copy: bool) -> Scan {
        Scan {
            copy,
            ..Scan::default()
        }
    }

    fn copy(&self, bytes: &[u8]) -> Vec<u8> {
        if self.copy {
            bytes.to_vec()
        } else {
            Vec::new()
        }
    }

    /// A session's record.
    pub(crate) fn session(&mut self, client_id: &str, record: &[u8]) {
        debug_assert!(
            self.recovered
                .sessions
                .last()
                .is_none_or(|last| &*last.client_id < client_id),
            "sessions fed out of order"
        );
        self.recovered.sessions.push(RecoveredSession {
            client_id: client_id.into(),
            record: self.copy(record),
            outbound: Vec::new(),
            inbound: Vec::new(),
        });
    }

    fn find(&mut self, client_id: &str) -> Option<&mut RecoveredSession> {
        let sessions = &mut self.recovered.sessions;
        let index = match sessions.get(self.hint) {
            Some(session) if &*session.client_id == client_id => self.hint,
            _ => sessions
                .binary_search_by(|session| (*session.client_id).cmp(client_id))
                .ok()?,
        };
        self.hint = index;
        sessions.get_mut(index)
    }

    /// An outbound entry (garbage if its session has no record).
    pub(crate) fn outbound(&mut self, client_id: &str, seq: u64, message: u64, meta: &[u8]) {
        let meta = self.copy(meta);
        match self.find(client_id) {
            Some(session) => {
                session
                    .outbound
                    .push(RecoveredOutbound { seq, message, meta });
                *self.refs.entry(message).or_insert(0) += 1;
            }
            None => self.garbage.outbound.push((client_id.into(), seq)),
        }
    }

    /// An inbound packet id (garbage if its session has no record).
    pub(crate) fn inbound(&mut self, client_id: &str, packet_id: u16) {
        match self.find(client_id) {
            Some(session) => session.inbound.push(packet_id),
            None => self.garbage.inbound.push((client_id.into(), packet_id)),
        }
    }

    /// A route.
    pub(crate) fn route(&mut self, message: u64, ticket: u32, record: &[u8]) {
        let record = self.copy(record);
        self.recovered.routes.push(RecoveredRoute {
            message,
            ticket,
            record,
        });
        *self.refs.entry(message).or_insert(0) += 1;
    }

    /// A retained message.
    pub(crate) fn retained(&mut self, topic: &str, body: &[u8]) {
        let body = self.copy(body);
        self.recovered.retained.push((topic.into(), body));
    }

    /// A message body (garbage if nothing fed before references it).
    pub(crate) fn message(&mut self, id: u64, body: &[u8]) {
        self.highest_id = self.highest_id.max(id);
        if self.refs.contains_key(&id) {
            let body = self.copy(body);
            self.recovered.messages.insert(id, body);
        } else {
            self.garbage.messages.push(id);
        }
    }

    /// The state, sorted as [`Recovered`] promises, the counts, and the garbage, given the
    /// high-water mark the store holds.
    pub(crate) fn finish(mut self, stored_high_water: u64) -> (Recovered, Ledger, Garbage) {
        let high_water = stored_high_water.max(self.highest_id);
        if high_water > stored_high_water {
            self.garbage.high_water = Some(high_water);
        }
        let mut recovered = self.recovered;
        recovered.max_message_id = high_water;
        for session in &mut recovered.sessions {
            session.outbound.sort_by_key(|entry| entry.seq);
            session.inbound.sort_unstable();
        }
        recovered
            .routes
            .sort_by_key(|route| (route.message, route.ticket));
        recovered.retained.sort_by(|a, b| a.0.cmp(&b.0));
        let ledger = Ledger {
            refs: self.refs,
            bodies: recovered.messages.len() as u64,
            high_water,
            staged: Staged::default(),
        };
        (recovered, ledger, self.garbage)
    }
}

/// What a load found that nothing can use, to delete in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Garbage {
    /// Outbound entries of clients with no session record.
    outbound: Vec<(Box<str>, u64)>,
    /// Inbound ids of clients with no session record.
    inbound: Vec<(Box<str>, u16)>,
    /// Bodies nothing references.
    messages: Vec<u64>,
    /// A high-water mark to record: a body's id was above the one stored.
    high_water: Option<u64>,
}

impl Garbage {
    /// Nothing to delete or record.
    pub(crate) fn is_empty(&self) -> bool {
        self.outbound.is_empty()
            && self.inbound.is_empty()
            && self.messages.is_empty()
            && self.high_water.is_none()
    }

    /// Deletes the garbage (the entries it deletes hold no counted reference).
    pub(crate) fn collect<T: Tables>(&self, tables: &mut T) -> Result<(), T::Error> {
        for (client_id, seq) in &self.outbound {
            tables.delete_outbound(client_id, *seq)?;
        }
        for (client_id, packet_id) in &self.inbound {
            tables.delete_inbound(client_id, *packet_id)?;
        }
        for &id in &self.messages {
            tables.delete_message(id)?;
        }
        if let Some(high_water) = self.high_water {
            tables.set_high_water(high_water)?;
        }
        Ok(())
    }
}
