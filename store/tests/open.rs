//! Opening a `RedbStore`: the directory and file it creates, the lock against a second open
//! (in this process and from another), the format version (too new refused, older
//! migrated), and damaged files (truncated, a page overwritten, empty, not redb), which must
//! give `StoreError::Corrupt` naming the file, or every durable batch back, never less.

mod common;

use std::path::Path;

use common::*;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use starling_store::{
    Durability, FORMAT_VERSION, Recovered, RedbStore, STORE_FILE_NAME, Store, StoreError,
};

/// The exit code of a child whose open was refused as `Locked`.
const LOCKED_EXIT_CODE: i32 = 17;
/// The exit code of a child that opened the store.
const OPENED_EXIT_CODE: i32 = 18;
/// redb's page size (bytes): the unit a damaged disk loses.
const PAGE_BYTES: usize = 4096;
/// Durable batches written before a file is damaged.
const DAMAGE_BATCHES: u64 = 20;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

#[test]
fn open_creates_an_owner_only_directory_and_the_file() {
    let dir = TempDir::new("create");
    let store_dir = dir.join("a/b");
    let store = RedbStore::open(&store_dir, CACHE_BYTES).expect("open");
    assert_eq!(store.path(), store_dir.join(STORE_FILE_NAME));
    assert!(store.path().is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store_dir)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn a_second_open_in_this_process_is_refused_while_the_first_lives() {
    let dir = TempDir::new("lock");
    let (store, _) = open_loaded(dir.path());
    let error = RedbStore::open(dir.path(), CACHE_BYTES).expect_err("a second open");
    let file = dir.join(STORE_FILE_NAME);
    assert!(
        matches!(&error, StoreError::Locked(path) if *path == file),
        "{error}"
    );
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );
    drop(store);
    RedbStore::open(dir.path(), CACHE_BYTES).expect("open once the first is closed");
}

/// In a child process: tries to open the store its parent holds.
#[test]
fn lock_child() {
    let Some(dir) = child_role("lock") else {
        return;
    };
    match RedbStore::open(&dir, CACHE_BYTES) {
        Err(StoreError::Locked(_)) => std::process::exit(LOCKED_EXIT_CODE),
        Err(error) => panic!("not refused as locked: {error}"),
        Ok(_) => std::process::exit(OPENED_EXIT_CODE),
    }
}

#[test]
fn another_process_cannot_open_the_store_while_this_one_holds_it() {
    let dir = TempDir::new("lock-process");
    let (store, _) = open_loaded(dir.path());
    let status = run_child("lock_child", "lock", dir.path());
    assert_eq!(status.code(), Some(LOCKED_EXIT_CODE), "the child: {status}");
    store.close().expect("close");
    let status = run_child("lock_child", "lock", dir.path());
    assert_eq!(status.code(), Some(OPENED_EXIT_CODE), "the child: {status}");
}

/// Writes `version` into a closed store's `meta` table, with redb directly.
fn write_version(file: &Path, version: Option<u64>) {
    let db = redb::Database::open(file).expect("open with redb");
    let tx = db.begin_write().expect("write");
    {
        let mut meta = tx.open_table(META).expect("meta");
        match version {
            Some(version) => meta.insert("format_version", version).map(drop),
            None => meta.remove("format_version").map(drop),
        }
        .expect("write the version");
    }
    tx.commit().expect("commit");
}

fn read_version(file: &Path) -> Option<u64> {
    let db = redb::Database::open(file).expect("open with redb");
    let tx = db.begin_read().expect("read");
    let meta = tx.open_table(META).expect("meta");
    meta.get("format_version").expect("get").map(|v| v.value())
}

/// What the broker does at a clean stop, through the trait it holds the store by: the file
/// is closed (another open may take it), and a later call on the same store reopens it.
#[test]
fn close_file_releases_the_file_and_a_later_call_reopens_it() {
    let dir = TempDir::new("close-file");
    let (store, _) = open_loaded(dir.path());
    let mut store: Box<dyn Store> = Box::new(store);
    let first = [put_session("a", b"a")];
    store.apply(&first, Durability::Durable).expect("apply");
    store.close_file().expect("close");
    let (other, recovered) = open_loaded(dir.path());
    assert_eq!(
        recovered.sessions.len(),
        1,
        "what was durable is in the closed file"
    );
    drop(other);
    let second = [put_session("b", b"b")];
    store
        .apply(&second, Durability::Durable)
        .expect("a call after close_file reopens");
    store.close_file().expect("close again");
    let (_, recovered) = open_loaded(dir.path());
    assert_eq!(recovered.sessions.len(), 2);
}

#[test]
fn a_store_written_by_a_newer_starling_is_refused_untouched() {
    let dir = TempDir::new("too-new");
    let (mut store, _) = open_loaded(dir.path());
    store
        .apply(&[put_session("c", b"s")], Durability::Durable)
        .expect("apply");
    store.close().expect("close");
    let file = dir.join(STORE_FILE_NAME);
    let newer = u64::from(FORMAT_VERSION) + 1;
    write_version(&file, Some(newer));
    let error = RedbStore::open(dir.path(), CACHE_BYTES).expect_err("too new");
    assert!(
        matches!(&error, StoreError::TooNew { path, found } if *path == file && u64::from(*found) == newer),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("format version {newer}")),
        "{message}"
    );
    assert!(message.contains("run a newer starling"), "{message}");
    assert_eq!(read_version(&file), Some(newer), "left as it was");
}

#[test]
fn an_older_format_is_migrated() {
    // Version 0: a file without a version (here, one table with a session, and no `meta`).
    let dir = TempDir::new("migrate");
    let file = dir.join(STORE_FILE_NAME);
    {
        let db = redb::Database::create(&file).expect("create with redb");
        let tx = db.begin_write().expect("write");
        tx.open_table(SESSIONS)
            .expect("sessions")
            .insert("old", b"record".as_slice())
            .expect("insert");
        tx.commit().expect("commit");
    }
    let (store, recovered) = open_loaded(dir.path());
    assert_eq!(recovered.sessions.len(), 1);
    assert_eq!(&*recovered.sessions[0].client_id, "old");
    drop(store);
    assert_eq!(read_version(&file), Some(u64::from(FORMAT_VERSION)));

    // The same from a version 0 written as such, after the tables exist.
    write_version(&file, Some(0));
    let (mut store, again) = open_loaded(dir.path());
    assert_eq!(again, recovered);
    store
        .apply(&[put_session("new", b"s")], Durability::Durable)
        .expect("a migrated store takes batches");
    drop(store);
    assert_eq!(read_version(&file), Some(u64::from(FORMAT_VERSION)));

    write_version(&file, None);
    let (_, again) = open_loaded(dir.path());
    assert_eq!(again.sessions.len(), 2);
}

/// A store of [`DAMAGE_BATCHES`] durable batches, closed cleanly or not (the handle leaked,
/// as a crash leaves it: the last commit is then not a two-phase one); what it holds.
fn damaged_fixture(dir: &Path, clean: bool) -> Recovered {
    let (mut store, _) = open_loaded(dir);
    for i in 1..=DAMAGE_BATCHES {
        let mut ops = vec![put_session(&format!("c{}", i % 3), &[7; 100])];
        ops.extend(queued(&format!("c{}", i % 3), i, i));
        ops.push(put_retained(&format!("t/{i}"), &[9; 200]));
        store.apply(&ops, Durability::Durable).expect("apply");
    }
    let recovered = store.load().expect("load");
    if clean {
        store.close().expect("close");
    } else {
        // The lock goes with the leaked handle: the damaged copies are other files.
        std::mem::forget(store);
    }
    recovered
}

/// Copies the store in `from` to a new directory below `base`, applying `damage` to the
/// file's bytes; what opening and loading the copy gives.
fn open_damaged(
    from: &Path,
    base: &TempDir,
    name: &str,
    damage: impl FnOnce(&mut Vec<u8>),
) -> (std::path::PathBuf, Result<Recovered, StoreError>) {
    let mut bytes = std::fs::read(from.join(STORE_FILE_NAME)).expect("read the file");
    damage(&mut bytes);
    let dir = base.join(name);
    std::fs::create_dir_all(&dir).expect("create");
    let file = dir.join(STORE_FILE_NAME);
    std::fs::write(&file, &bytes).expect("write the copy");
    let result = RedbStore::open(&dir, CACHE_BYTES).and_then(|mut store| store.load());
    (file, result)
}

#[test]
fn a_truncated_file_is_corrupt() {
    let base = TempDir::new("truncated");
    for clean in [true, false] {
        let source = base.join(&format!("source-{clean}"));
        damaged_fixture(&source, clean);
        let name = format!("half-{clean}");
        let (file, result) = open_damaged(&source, &base, &name, |bytes| {
            bytes.truncate(bytes.len() / 2);
        });
        let error = result.expect_err("a truncated file");
        assert!(is_clear_corrupt(&error, &file), "{error}");
    }
}

/// Overwrites every page of the file in turn (one copy per page). redb verifies every
/// checksum at open: a damaged page in use is `Corrupt`, one not in use changes nothing.
/// After a crash (the last commit one-phase), redb also takes a damaged page of the last
/// commit for a torn write and falls back to the commit before: the last durable batch is
/// lost without an error. Nothing else may happen: never less data, never an empty store.
#[test]
fn a_damaged_page_is_corrupt_or_changes_nothing_and_never_empties_the_store() {
    let base = TempDir::new("damaged");
    for clean in [true, false] {
        let source = base.join(&format!("source-{clean}"));
        let full = damaged_fixture(&source, clean);
        let pages = std::fs::metadata(source.join(STORE_FILE_NAME))
            .expect("stat")
            .len() as usize
            / PAGE_BYTES;
        let (mut corrupt, mut intact, mut rolled_back) = (0, 0, 0);
        for page in 0..pages {
            let name = format!("page-{clean}-{page}");
            let (file, result) = open_damaged(&source, &base, &name, |bytes| {
                for byte in &mut bytes[page * PAGE_BYTES..(page + 1) * PAGE_BYTES] {
                    *byte ^= 0x5a;
                }
            });
            match result {
                Err(error) => {
                    assert!(is_clear_corrupt(&error, &file), "page {page}: {error}");
                    corrupt += 1;
                }
                Ok(recovered) if recovered == full => intact += 1,
                Ok(recovered) => {
                    assert!(!clean, "page {page}: a cleanly closed file lost data");
                    assert_eq!(
                        recovered.max_message_id,
                        DAMAGE_BATCHES - 1,
                        "page {page}: only the last batch may be lost"
                    );
                    assert_eq!(recovered.messages.len(), full.messages.len() - 1);
                    rolled_back += 1;
                }
            }
            std::fs::remove_dir_all(base.join(&name)).expect("remove the copy");
        }
        println!(
            "closed cleanly: {clean}; {pages} pages: {corrupt} corrupt, {intact} intact, \
             {rolled_back} rolled back to the previous commit"
        );
        assert!(corrupt > 0, "some page in use was damaged");
    }
}

#[test]
fn an_empty_file_or_one_that_is_not_redb_is_corrupt() {
    let base = TempDir::new("not-redb");
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("text", b"not a store\n".repeat(1000)),
    ] {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir).expect("create");
        let file = dir.join(STORE_FILE_NAME);
        std::fs::write(&file, &bytes).expect("write");
        let error = RedbStore::open(&dir, CACHE_BYTES).expect_err(name);
        assert!(is_clear_corrupt(&error, &file), "{name}: {error}");
        assert_eq!(
            std::fs::read(&file).expect("read"),
            bytes,
            "{name}: left as it was"
        );
    }
}

#[test]
fn a_store_loads_with_nothing_but_what_was_put() {
    let dir = TempDir::new("fresh");
    let (mut store, recovered) = open_loaded(dir.path());
    assert_eq!(recovered, Recovered::default());
    assert_eq!(store.stats().messages, 0);
    store.sync().expect("a sync with nothing to do");
}
