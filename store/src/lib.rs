//! Starling's embedded store.
//!
//! The broker's core records what its acknowledgements promise as [`Op`]s; the driver
//! applies each turn's ops as one batch ([`Store::apply`]) and, in `sync` mode, makes the
//! batch durable before any acknowledgement of that turn leaves. At start-up
//! [`Store::load`] gives back everything that was made durable ([`Recovered`]).
//!
//! The store knows keys, message references and byte strings, never MQTT: the broker
//! encodes its records (sessions, message bodies, queue entries) itself. What the store
//! does understand is that an outbound entry or a route references a message body by id:
//! a body is written once however many queues hold it, and deleted in the batch that drops
//! its last reference. Reference counts are kept in memory and rebuilt by [`Store::load`]
//! (every write is blind except the removals, which read the entry they remove).
//!
//! Two implementations: [`RedbStore`] (a directory holding one redb file, locked against a
//! second process) and [`SimStore`] (in memory, for deterministic crash tests: at a
//! simulated crash it keeps only what was made durable, plus optionally a prefix of the
//! buffered batches).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

mod ledger;
mod redb_store;
mod sim;

pub use redb_store::{RedbStore, STORE_FILE_NAME};
pub use sim::SimStore;

/// The on-disk format this build writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// One change to the store. Applied in order within a batch; a batch is atomic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Inserts or replaces a session's record.
    PutSession {
        /// The client identifier.
        client_id: Box<str>,
        /// The broker's encoding of the session.
        record: Vec<u8>,
    },
    /// Deletes a session: its record, every outbound entry it holds (releasing their
    /// message references) and every inbound packet id.
    DeleteSession {
        /// The client identifier.
        client_id: Box<str>,
    },
    /// Stores a message body under `id`. Putting an id that is stored already changes
    /// nothing. A body that no outbound entry or route references at the end of the batch
    /// is not kept.
    PutMessage {
        /// The message id (unique for the store's life).
        id: u64,
        /// The broker's encoding of the message.
        body: Vec<u8>,
    },
    /// Inserts or replaces outbound entry `seq` of a session (a message queued or in flight
    /// toward the client). A new entry takes a reference on `message`; a replaced one keeps
    /// the reference it had (`message` must be the same).
    PutOutbound {
        /// The client identifier.
        client_id: Box<str>,
        /// The entry's sequence number within the session (delivery order).
        seq: u64,
        /// The message body it references (put in this batch or an earlier one).
        message: u64,
        /// The broker's encoding of the entry (QoS, packet id, state...).
        meta: Vec<u8>,
    },
    /// Deletes an outbound entry and releases its message reference (no entry: nothing).
    DeleteOutbound {
        /// The client identifier.
        client_id: Box<str>,
        /// The entry's sequence number.
        seq: u64,
    },
    /// Records an inbound QoS 2 packet id awaiting PUBREL.
    PutInbound {
        /// The client identifier.
        client_id: Box<str>,
        /// The packet id.
        packet_id: u16,
    },
    /// Forgets an inbound QoS 2 packet id (PUBREL received).
    DeleteInbound {
        /// The client identifier.
        client_id: Box<str>,
        /// The packet id.
        packet_id: u16,
    },
    /// Inserts or replaces the retained message of a topic (the body is stored inline).
    PutRetained {
        /// The topic name.
        topic: Box<str>,
        /// The broker's encoding of the message.
        body: Vec<u8>,
    },
    /// Clears the retained message of a topic.
    DeleteRetained {
        /// The topic name.
        topic: Box<str>,
    },
    /// Records a message handed to another event loop and not yet routed there; takes a
    /// reference on `message`.
    PutRoute {
        /// The message body it references.
        message: u64,
        /// Which hand-over of the message this is (unique per message).
        ticket: u32,
        /// The broker's encoding of where the message was going.
        record: Vec<u8>,
    },
    /// The hand-over is routed: deletes the route and releases its reference.
    DeleteRoute {
        /// The message body it references.
        message: u64,
        /// Which hand-over.
        ticket: u32,
    },
}

/// How far an [`Store::apply`] goes before returning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (one fsync for the batch, and for every buffered batch before it).
    Durable,
    /// Applied (visible to a later [`Store::load`] in this process) but made durable only
    /// by a later durable apply or [`Store::sync`].
    Buffered,
}

/// One outbound entry as recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredOutbound {
    /// The entry's sequence number.
    pub seq: u64,
    /// The message body it references (in [`Recovered::messages`]).
    pub message: u64,
    /// The broker's encoding of the entry.
    pub meta: Vec<u8>,
}

/// One session as recovered, with what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    /// The client identifier.
    pub client_id: Box<str>,
    /// The broker's encoding of the session.
    pub record: Vec<u8>,
    /// Its outbound entries, by sequence number.
    pub outbound: Vec<RecoveredOutbound>,
    /// Its inbound QoS 2 packet ids awaiting PUBREL, ascending.
    pub inbound: Vec<u16>,
}

/// One route as recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredRoute {
    /// The message body it references.
    pub message: u64,
    /// Which hand-over.
    pub ticket: u32,
    /// The broker's encoding of where it was going.
    pub record: Vec<u8>,
}

/// Everything the store held durably (or applied, in this process) when it was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Sessions, by client id.
    pub sessions: Vec<RecoveredSession>,
    /// Message bodies referenced by an outbound entry or a route, by id.
    pub messages: HashMap<u64, Vec<u8>>,
    /// Retained messages, by topic.
    pub retained: Vec<(Box<str>, Vec<u8>)>,
    /// Routes not yet completed, by (message, ticket).
    pub routes: Vec<RecoveredRoute>,
    /// The highest message id the store has ever held (0: none): new ids start above it.
    pub max_message_id: u64,
}

/// What a store has done, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Batches applied.
    pub batches: u64,
    /// Durable commits (fsyncs).
    pub syncs: u64,
    /// Ops applied.
    pub ops: u64,
    /// Failed applies.
    pub failures: u64,
    /// Bytes the store occupies on disk (0 for the simulated store).
    pub disk_bytes: u64,
    /// Message bodies held.
    pub messages: u64,
}

/// Why the store could not be opened, written or read. Every variant names the file and
/// says what to do.
#[derive(Debug)]
pub enum StoreError {
    /// Another process holds the store open.
    Locked(PathBuf),
    /// The file is damaged (truncated, a checksum failed) and could not be repaired.
    Corrupt {
        /// The store's file.
        path: PathBuf,
        /// What the store library said.
        detail: String,
    },
    /// The file was written by a newer Starling (a format this build does not know).
    TooNew {
        /// The store's file.
        path: PathBuf,
        /// The format version found.
        found: u32,
    },
    /// The disk is full.
    NoSpace(PathBuf),
    /// Any other I/O or store failure.
    Io {
        /// The store's file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Locked(path) => write!(
                f,
                "{}: the store is open in another process (another starling with the same [persistence] path?); stop it or choose another path",
                path.display()
            ),
            StoreError::Corrupt { path, detail } => write!(
                f,
                "{}: the store is damaged ({detail}); restore it from a backup, or move the directory aside to start with an empty store",
                path.display()
            ),
            StoreError::TooNew { path, found } => write!(
                f,
                "{}: the store has format version {found}, and this starling reads up to {FORMAT_VERSION}; run a newer starling, or restore a backup made by this version",
                path.display()
            ),
            StoreError::NoSpace(path) => write!(
                f,
                "{}: no space left on the device; free space and the store carries on",
                path.display()
            ),
            StoreError::Io { path, detail } => write!(f, "{}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

/// A store of sessions, queued messages and retained messages.
pub trait Store: Send {
    /// Applies `ops` as one atomic batch, durable or buffered. On an error nothing of the
    /// batch is applied.
    fn apply(&mut self, ops: &[Op], durability: Durability) -> Result<(), StoreError>;

    /// Makes every buffered batch durable (one fsync; nothing when none is buffered).
    fn sync(&mut self) -> Result<(), StoreError>;

    /// Everything the store holds. Call once, at start-up, before any apply.
    fn load(&mut self) -> Result<Recovered, StoreError>;

    /// What the store has done so far.
    fn stats(&self) -> StoreStats;

    /// Closes the store's file cleanly, as a clean stop must (a file left open is, to
    /// redb, one whose process crashed: the next open repairs it, and may take a damaged
    /// last commit for a torn write and roll it back without an error). A later call
    /// reopens it. Nothing to do for a store without a file.
    fn close_file(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}
