//! What the store's tests share: temporary directories, op builders, the invariant checks,
//! the two stores behind one interface, and child processes of the test binary.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use starling_store::{Durability, Op, Recovered, RedbStore, SimStore, Store, StoreError};

// The broker's tests' temporary directories (`starling-NAME-PID`, removed when dropped): a
// test binary gives each directory alive at a time its own name.
#[path = "../../../broker/tests/tempdir_common/mod.rs"]
mod tempdir_common;

pub use tempdir_common::TempDir;

/// The page cache the tests give redb.
pub const CACHE_BYTES: usize = 4 << 20;

/// The environment variable that tells a child process of a test binary what to do.
pub const CHILD_ROLE_VAR: &str = "STARLING_STORE_TEST_CHILD";
/// The environment variable that gives a child process its store directory.
pub const CHILD_DIR_VAR: &str = "STARLING_STORE_TEST_DIR";

pub fn put_session(client_id: &str, record: &[u8]) -> Op {
    Op::PutSession {
        client_id: client_id.into(),
        record: record.to_vec(),
    }
}

pub fn delete_session(client_id: &str) -> Op {
    Op::DeleteSession {
        client_id: client_id.into(),
    }
}

pub fn put_message(id: u64, body: &[u8]) -> Op {
    Op::PutMessage {
        id,
        body: body.to_vec(),
    }
}

pub fn put_outbound(client_id: &str, seq: u64, message: u64, meta: &[u8]) -> Op {
    Op::PutOutbound {
        client_id: client_id.into(),
        seq,
        message,
        meta: meta.to_vec(),
    }
}

pub fn delete_outbound(client_id: &str, seq: u64) -> Op {
    Op::DeleteOutbound {
        client_id: client_id.into(),
        seq,
    }
}

pub fn put_inbound(client_id: &str, packet_id: u16) -> Op {
    Op::PutInbound {
        client_id: client_id.into(),
        packet_id,
    }
}

pub fn delete_inbound(client_id: &str, packet_id: u16) -> Op {
    Op::DeleteInbound {
        client_id: client_id.into(),
        packet_id,
    }
}

pub fn put_retained(topic: &str, body: &[u8]) -> Op {
    Op::PutRetained {
        topic: topic.into(),
        body: body.to_vec(),
    }
}

pub fn delete_retained(topic: &str) -> Op {
    Op::DeleteRetained {
        topic: topic.into(),
    }
}

pub fn put_route(message: u64, ticket: u32, record: &[u8]) -> Op {
    Op::PutRoute {
        message,
        ticket,
        record: record.to_vec(),
    }
}

pub fn delete_route(message: u64, ticket: u32) -> Op {
    Op::DeleteRoute { message, ticket }
}

/// A message queued to a session: its body and the entry referencing it.
pub fn queued(client_id: &str, seq: u64, message: u64) -> [Op; 2] {
    [
        put_message(message, format!("body {message}").as_bytes()),
        put_outbound(client_id, seq, message, &seq.to_be_bytes()),
    ]
}

/// The message ids referenced by outbound entries and routes.
pub fn referenced(recovered: &Recovered) -> BTreeSet<u64> {
    let outbound = recovered
        .sessions
        .iter()
        .flat_map(|session| session.outbound.iter().map(|entry| entry.message));
    let routes = recovered.routes.iter().map(|route| route.message);
    outbound.chain(routes).collect()
}

/// Asserts that a body is held exactly when something references it (every reference's
/// body having been put).
pub fn assert_bodies_referenced(recovered: &Recovered) {
    let held: BTreeSet<u64> = recovered.messages.keys().copied().collect();
    assert_eq!(held, referenced(recovered), "bodies held vs referenced");
}

/// Opens (creating) a redb store and loads it.
pub fn open_loaded(dir: &Path) -> (RedbStore, Recovered) {
    let mut store = RedbStore::open(dir, CACHE_BYTES).expect("open the store");
    let recovered = store.load().expect("load the store");
    (store, recovered)
}

/// Closes a redb store, checks on the file that its bodies are referenced (before a load
/// collects any garbage), and opens it again: the new store and what it loads.
pub fn reopen(store: RedbStore) -> (RedbStore, Recovered) {
    let file = store.path().to_owned();
    store.close().expect("close the store");
    assert_file_bodies_referenced(&file);
    open_loaded(file.parent().expect("the file is in a directory"))
}

/// One of the two stores, with what "restart" means for it. (Two of them live at a time:
/// their size does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Either {
    /// The store (`None` only while it restarts) and its directory.
    Redb(Option<RedbStore>, TempDir),
    Sim(SimStore),
}

impl Either {
    /// Both kinds, fresh and loaded.
    pub fn both(name: &str) -> [Either; 2] {
        let dir = TempDir::new(name);
        let (store, _) = open_loaded(dir.path());
        let mut sim = SimStore::new();
        sim.load().expect("load the simulated store");
        [Either::Redb(Some(store), dir), Either::Sim(sim)]
    }

    /// The store.
    pub fn store(&mut self) -> &mut dyn Store {
        match self {
            Either::Redb(store, _) => store.as_mut().expect("the store is open"),
            Either::Sim(sim) => sim,
        }
    }

    /// Which kind, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Either::Redb(..) => "redb",
            Either::Sim(_) => "sim",
        }
    }

    /// A restart after a clean stop: redb closed and reopened; the simulated store loaded.
    pub fn restart(&mut self) -> Recovered {
        match self {
            Either::Redb(slot, _) => {
                let (store, recovered) = reopen(slot.take().expect("the store is open"));
                *slot = Some(store);
                recovered
            }
            Either::Sim(sim) => sim.load().expect("load the simulated store"),
        }
    }

    /// Applies a batch, which must succeed.
    pub fn apply(&mut self, ops: &[Op], durability: Durability) {
        let name = self.name();
        self.store()
            .apply(ops, durability)
            .unwrap_or_else(|error| panic!("{name}: apply: {error}"));
    }
}

/// The role this process was started for by [`run_child`], and its directory.
pub fn child_role(role: &str) -> Option<PathBuf> {
    let wanted = std::env::var(CHILD_ROLE_VAR).ok()?;
    (wanted == role).then(|| std::env::var_os(CHILD_DIR_VAR).map(PathBuf::from))?
}

/// Runs the test `test` of this test binary alone in a child process, in `role` on `dir`.
pub fn child_command(test: &str, role: &str, dir: &Path) -> Command {
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ROLE_VAR, role)
        .env(CHILD_DIR_VAR, dir);
    command
}

/// [`child_command`], waited for.
pub fn run_child(test: &str, role: &str, dir: &Path) -> ExitStatus {
    run_captured(&mut child_command(test, role, dir))
}

/// Runs a child process with its output captured into this test's (shown if it fails).
pub fn run_captured(command: &mut Command) -> ExitStatus {
    let output = command.output().expect("run the child process");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    output.status
}

/// Whether an error is [`StoreError::Corrupt`] naming `file` and saying what to do.
pub fn is_clear_corrupt(error: &StoreError, file: &Path) -> bool {
    let message = error.to_string();
    matches!(error, StoreError::Corrupt { path, .. } if path == file)
        && message.contains(&file.display().to_string())
        && message.contains("restore it from a backup")
}

/// Asserts, reading a closed store's file directly, that it holds a body exactly when an
/// outbound entry (of any client) or a route references it: what the reference counts of
/// the batches that wrote it must have kept, before any load collects garbage.
pub fn assert_file_bodies_referenced(file: &Path) {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
    const OUTBOUND: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbound");
    const ROUTES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("routes");
    let message_id =
        |bytes: &[u8]| u64::from_be_bytes(*bytes.first_chunk().expect("a message id first"));
    let db = redb::Database::builder()
        .open_read_only(file)
        .expect("open the file read-only");
    let tx = db.begin_read().expect("read");
    let held: BTreeSet<u64> = tx
        .open_table(MESSAGES)
        .expect("messages")
        .iter()
        .expect("iterate")
        .map(|entry| entry.expect("an entry").0.value())
        .collect();
    // The message id: first in an outbound entry's value, first in a route's key.
    let mut referenced = BTreeSet::new();
    for (table, in_value) in [(OUTBOUND, true), (ROUTES, false)] {
        for entry in tx
            .open_table(table)
            .expect("a table")
            .iter()
            .expect("iterate")
        {
            let (key, value) = entry.expect("an entry");
            let bytes = if in_value { value.value() } else { key.value() };
            referenced.insert(message_id(bytes));
        }
    }
    assert_eq!(held, referenced, "bodies in the file vs referenced in it");
}
