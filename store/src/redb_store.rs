//! [`RedbStore`]: the store in one redb file, `DIR/starling.redb`.
//!
//! # The file
//!
//! A redb 5 database with these tables (integers big-endian where they are part of a byte
//! string, so that keys sort by them):
//!
//! | table | key | value |
//! |---|---|---|
//! | `sessions` | client id (`&str`) | the session's record |
//! | `outbound` | client id length (u32) ++ client id ++ seq (u64) | message id (u64) ++ meta |
//! | `inbound` | client id length (u32) ++ client id ++ packet id (u16) | `()` |
//! | `messages` | message id (`u64`) | body |
//! | `retained` | topic (`&str`) | body |
//! | `routes` | message id (u64) ++ ticket (u32) | record |
//! | `meta` | name (`&str`) | `u64`: `format_version`, `max_message_id` (the high-water mark) |
//!
//! A client's outbound entries and inbound ids are one key range, so deleting a session
//! deletes them without an index. Format version 0 is a file without a version in `meta`;
//! [`MIGRATIONS`] takes a file from any older version to [`FORMAT_VERSION`].
//!
//! # redb's behaviour this relies on
//!
//! - A commit with `Durability::Immediate` writes the pages and checksums, then makes one
//!   `fdatasync`; a `Durability::None` commit is visible to this process only, made durable
//!   by the next Immediate commit or a clean close, and lost at a crash.
//! - Every open verifies the checksum of every page (`set_check_integrity_on_open`): a plain
//!   open trusts a cleanly closed file, and may panic on one damaged since. The check reads
//!   the whole file, which [`Store::load`] does next anyway.
//! - After an I/O error redb fails every later operation until it is reopened, and the
//!   reopen rolls back to the last durable commit: the store reopens itself at the next
//!   call, and the batches buffered since the last durable one are lost.
//! - The file is locked (open file description locks) against every other open, in this
//!   process or another.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use redb::{Database, WriteTransaction};

use crate::ledger::Ledger;
use crate::{Durability, FORMAT_VERSION, Op, Recovered, Store, StoreError, StoreStats};

mod tables;

use tables::{
    FORMAT_VERSION_KEY, INBOUND, MESSAGES, META, OUTBOUND, RETAINED, ROUTES, RedbTables, SESSIONS,
    Scratch, closed, meta_value, scan,
};

/// The name of the store's file in its directory.
pub const STORE_FILE_NAME: &str = "starling.redb";

/// The permissions of a directory the store creates: the owner's only.
const DIR_MODE_BITS: u32 = 0o700;
/// `ENOSPC` on Linux, for an error the standard library does not map to `StorageFull`.
const ENOSPC_ERRNO: i32 = 28;

/// One step of the format: `MIGRATIONS[v]` turns a version `v` file into a version `v + 1`
/// one, within the transaction that then records the new version.
type Migration = fn(&WriteTransaction, &Path) -> Result<(), StoreError>;

/// The steps from version 0 (no version recorded) to [`FORMAT_VERSION`].
const MIGRATIONS: [Migration; FORMAT_VERSION as usize] = [create_tables];

/// The store in one redb file, locked against any other open while this one lives.
///
/// Dropping it closes the file cleanly (which also makes buffered batches durable);
/// [`RedbStore::close`] does the same and reports an error.
///
/// # Example
///
/// ```
/// use starling_store::{Durability, Op, RedbStore, Store};
///
/// let dir = std::env::temp_dir().join(format!("starling-store-doc-{}", std::process::id()));
/// let mut store = RedbStore::open(&dir, 4 << 20)?;
/// store.load()?;
/// let op = Op::PutRetained { topic: "a/b".into(), body: b"on".to_vec() };
/// store.apply(&[op], Durability::Durable)?;
/// store.close()?;
/// let recovered = RedbStore::open(&dir, 4 << 20)?.load()?;
/// assert_eq!(recovered.retained.len(), 1);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), starling_store::StoreError>(())
/// ```
#[derive(Debug)]
pub struct RedbStore {
    /// The store's file.
    path: PathBuf,
    cache_bytes: usize,
    /// `None` after a failed write, until the next call reopens it.
    db: Option<Database>,
    ledger: Ledger,
    /// Whether `ledger` was built from the file since it was (re)opened.
    loaded: bool,
    /// Whether a `Durability::None` commit awaits an Immediate one.
    buffered: bool,
    scratch: Scratch,
    stats: StoreStats,
}

impl RedbStore {
    /// Opens the store in `dir` (created, owner-only, if missing; the file too), with
    /// `cache_bytes` of page cache. Fails with [`StoreError::Locked`] while another
    /// `RedbStore` (in any process) has it open, [`StoreError::TooNew`] if a newer Starling
    /// wrote it, and [`StoreError::Corrupt`] if it is damaged beyond redb's repair (an
    /// older format is migrated).
    pub fn open(dir: &Path, cache_bytes: usize) -> Result<RedbStore, StoreError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE_BITS);
        builder.create(dir).map_err(|error| io_error(dir, &error))?;
        let path = dir.join(STORE_FILE_NAME);
        let db = open_database(&path, cache_bytes, true)?;
        prepare(&db, &path)?;
        Ok(RedbStore {
            path,
            cache_bytes,
            db: Some(db),
            ledger: Ledger::default(),
            loaded: false,
            buffered: false,
            scratch: Scratch::default(),
            stats: StoreStats::default(),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file (making buffered batches durable), reporting what dropping the store
    /// would ignore.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.close_file()
    }

    /// Reopens the file after a failure (the counts are then rebuilt from it).
    fn reopen_if_closed(&mut self) -> Result<(), StoreError> {
        if self.db.is_none() {
            self.db = Some(open_database(&self.path, self.cache_bytes, false)?);
            self.buffered = false;
            self.loaded = false;
        }
        Ok(())
    }

    /// Ready to write: open, with counts built from the file.
    fn ready(&mut self) -> Result<(), StoreError> {
        self.reopen_if_closed()?;
        if !self.loaded {
            self.read_all(false)?;
        }
        Ok(())
    }

    /// Reads everything, deletes the garbage (one durable commit) and rebuilds the counts;
    /// what it read (with `copy`, else only the keys).
    fn read_all(&mut self, copy: bool) -> Result<Recovered, StoreError> {
        let path = &self.path;
        let db = self.db.as_ref().ok_or_else(|| closed(path))?;
        let (recovered, ledger, garbage) = scan(db, path, copy)?;
        if !garbage.is_empty() {
            let tx = db.begin_write().at(path)?;
            garbage.collect(&mut RedbTables::new(&tx, path, &mut self.scratch))?;
            tx.commit().at(path)?;
            self.stats.syncs += 1;
            self.buffered = false;
        }
        self.ledger = ledger;
        self.loaded = true;
        Ok(recovered)
    }

    /// One write transaction: `ops` (none: an empty commit, which makes the buffered ones
    /// durable when `durability` is Durable).
    fn commit(&mut self, ops: &[Op], durability: Durability) -> Result<(), StoreError> {
        let path = &self.path;
        let db = self.db.as_ref().ok_or_else(|| closed(path))?;
        let mut tx = db.begin_write().at(path)?;
        tx.set_durability(match durability {
            Durability::Durable => redb::Durability::Immediate,
            Durability::Buffered => redb::Durability::None,
        })
        .at(path)?;
        self.ledger
            .stage(&mut RedbTables::new(&tx, path, &mut self.scratch), ops)?;
        tx.commit().at(path)?;
        self.ledger.fold();
        if durability == Durability::Durable {
            self.stats.syncs += 1;
            self.buffered = false;
        } else {
            self.buffered = true;
        }
        Ok(())
    }

    fn try_apply(&mut self, ops: &[Op], durability: Durability) -> Result<(), StoreError> {
        self.ready()?;
        match durability {
            Durability::Durable if ops.is_empty() => self.try_sync(),
            Durability::Buffered if ops.is_empty() => Ok(()),
            durability => self.commit(ops, durability),
        }
    }

    fn try_sync(&mut self) -> Result<(), StoreError> {
        self.ready()?;
        if self.buffered {
            self.commit(&[], Durability::Durable)?;
        }
        Ok(())
    }

    /// After a failure the file is closed, to be reopened by the next call (redb refuses
    /// every operation after an I/O error until then).
    fn failed<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.db = None;
        }
        result
    }
}

impl Store for RedbStore {
    fn apply(&mut self, ops: &[Op], durability: Durability) -> Result<(), StoreError> {
        let result = self.try_apply(ops, durability);
        match result {
            Ok(()) => {
                self.stats.batches += 1;
                self.stats.ops += ops.len() as u64;
            }
            Err(_) => self.stats.failures += 1,
        }
        self.failed(result)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let result = self.try_sync();
        if result.is_err() {
            self.stats.failures += 1;
        }
        self.failed(result)
    }

    fn load(&mut self) -> Result<Recovered, StoreError> {
        let result = self.reopen_if_closed().and_then(|()| self.read_all(true));
        self.failed(result)
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            disk_bytes: fs::metadata(&self.path).map_or(0, |meta| meta.len()),
            messages: self.ledger.bodies(),
            ..self.stats
        }
    }

    fn close_file(&mut self) -> Result<(), StoreError> {
        match self.db.take() {
            Some(db) => db.close().at(&self.path),
            None => Ok(()),
        }
    }
}

/// Opens the file (creating it if `create` and it does not exist), verifying every page.
fn open_database(path: &Path, cache_bytes: usize, create: bool) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder
        .set_cache_size(cache_bytes)
        .set_check_integrity_on_open(true);
    match fs::metadata(path) {
        // redb would take an empty file for a new one: a store's file is never empty.
        Ok(meta) if meta.len() == 0 => Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: "the file is empty (0 bytes)".into(),
        }),
        Ok(_) => builder.open(path).at(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
            builder.create(path).at(path)
        }
        Err(error) => Err(io_error(path, &error)),
    }
}

/// Checks the format version and migrates an older file (creating a new one's tables).
fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let tx = db.begin_write().at(path)?;
    let found = meta_value(&tx.open_table(META).at(path)?, FORMAT_VERSION_KEY, path)?;
    if found == u64::from(FORMAT_VERSION) {
        return tx.abort().at(path);
    }
    let Some(from) = u32::try_from(found)
        .ok()
        .filter(|&found| found < FORMAT_VERSION)
    else {
        tx.abort().at(path)?;
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    };
    migrate(&tx, from, path)?;
    tx.commit().at(path)
}

/// Runs the steps from version `from` to [`FORMAT_VERSION`] and records the version.
fn migrate(tx: &WriteTransaction, from: u32, path: &Path) -> Result<(), StoreError> {
    for step in MIGRATIONS.iter().skip(from as usize) {
        step(tx, path)?;
    }
    tx.open_table(META)
        .at(path)?
        .insert(FORMAT_VERSION_KEY, u64::from(FORMAT_VERSION))
        .at(path)?;
    Ok(())
}

/// Version 0 → 1: creates the tables (a new file is version 0 too).
fn create_tables(tx: &WriteTransaction, path: &Path) -> Result<(), StoreError> {
    tx.open_table(SESSIONS).at(path)?;
    tx.open_table(OUTBOUND).at(path)?;
    tx.open_table(INBOUND).at(path)?;
    tx.open_table(MESSAGES).at(path)?;
    tx.open_table(RETAINED).at(path)?;
    tx.open_table(ROUTES).at(path)?;
    tx.open_table(META).at(path)?;
    Ok(())
}

/// Maps an I/O error: a full disk (or quota) to [`StoreError::NoSpace`], data that is not a
/// redb file to [`StoreError::Corrupt`].
fn io_error(path: &Path, error: &io::Error) -> StoreError {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            StoreError::NoSpace(path.to_owned())
        }
        _ if error.raw_os_error() == Some(ENOSPC_ERRNO) => StoreError::NoSpace(path.to_owned()),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => StoreError::Corrupt {
            path: path.to_owned(),
            detail: error.to_string(),
        },
        _ => StoreError::Io {
            path: path.to_owned(),
            detail: error.to_string(),
        },
    }
}

/// Maps redb's errors to the store's.
fn store_error(path: &Path, error: redb::Error) -> StoreError {
    match error {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::Locked(path.to_owned())
        }
        redb::Error::Io(error) => io_error(path, &error),
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        error @ (redb::Error::UpgradeRequired(_)
        | redb::Error::TableDoesNotExist(_)
        | redb::Error::TableTypeMismatch(_)
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TypeDefinitionChanged(_)) => StoreError::Corrupt {
            path: path.to_owned(),
            detail: error.to_string(),
        },
        error => StoreError::Io {
            path: path.to_owned(),
            detail: error.to_string(),
        },
    }
}

/// `.at(path)`: a redb result as the store's.
trait At<T> {
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> At<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|error| store_error(path, error.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_no_space_whichever_way_it_is_reported() {
        let path = Path::new("/x");
        let enospc = io::Error::from_raw_os_error(ENOSPC_ERRNO);
        assert!(matches!(io_error(path, &enospc), StoreError::NoSpace(_)));
        let full = io::Error::new(io::ErrorKind::StorageFull, "full");
        assert!(matches!(io_error(path, &full), StoreError::NoSpace(_)));
        let wrapped = redb::Error::Io(io::Error::from_raw_os_error(ENOSPC_ERRNO));
        assert!(matches!(store_error(path, wrapped), StoreError::NoSpace(_)));
        let other = io::Error::from_raw_os_error(5);
        assert!(matches!(io_error(path, &other), StoreError::Io { .. }));
    }
}
