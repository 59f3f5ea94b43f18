//! The one interface both stores are driven through: an atomic batch of puts and deletes over
//! five tables, committed durably (one fsync) or not, and a `sync` that makes every earlier
//! commit durable.

use std::ops::Range;
use std::path::Path;

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The broker's tables. Every store gets the same keys and values.
#[derive(Clone, Copy, Debug)]
pub enum Table {
    /// message id (u64 BE) → header + payload, written once per message
    Msgs = 0,
    /// message id (u64 BE) → remaining references (u32), only for messages with more than one
    Rc = 1,
    /// session id (u64 BE) ++ sequence (u64 BE) → message id, packet id, QoS (11 B)
    Queue = 2,
    /// client id → session state with its expiry (64 B)
    Sessions = 3,
    /// topic → retained message
    Retained = 4,
}

pub const TABLES: [(&str, Table); 5] = [
    ("msgs", Table::Msgs),
    ("rc", Table::Rc),
    ("queue", Table::Queue),
    ("sessions", Table::Sessions),
    ("retained", Table::Retained),
];

/// One commit's operations, keys and values packed in one buffer (so building a batch costs the
/// same whichever store takes it).
#[derive(Default)]
pub struct Batch {
    buf: Vec<u8>,
    ops: Vec<(Table, Range<usize>, Option<Range<usize>>)>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ops.clear();
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn put(&mut self, t: Table, key: &[u8], value: &[u8]) {
        let k = self.push(key);
        let v = self.push(value);
        self.ops.push((t, k, Some(v)));
    }

    pub fn del(&mut self, t: Table, key: &[u8]) {
        let k = self.push(key);
        self.ops.push((t, k, None));
    }

    fn push(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        start..self.buf.len()
    }

    /// (table, key, Some(value) for a put, None for a delete)
    pub fn iter(&self) -> impl Iterator<Item = (Table, &[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(t, k, v)| {
            (
                *t,
                &self.buf[k.clone()],
                v.as_ref().map(|v| &self.buf[v.clone()]),
            )
        })
    }
}

pub trait Store {
    /// Applies the batch atomically; with `durable`, it is on disk when this returns.
    fn commit(&mut self, batch: &Batch, durable: bool) -> Res<()>;
    /// Makes every earlier commit durable.
    fn sync(&mut self) -> Res<()>;
    /// Reads every table through: (entries, key + value bytes).
    fn scan(&mut self) -> Res<(u64, u64)>;
    /// fjall: writes the memtables out to tables so that the next open has no journal to
    /// replay (through `Keyspace::rotate_memtable_and_wait`, a `#[doc(hidden)]` API). redb:
    /// nothing to do.
    fn flush_memtables(&mut self) -> Res<()> {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Redb,
    Fjall,
}

impl Kind {
    pub fn parse(s: &str) -> Res<Kind> {
        match s {
            "redb" => Ok(Kind::Redb),
            "fjall" => Ok(Kind::Fjall),
            _ => Err(format!("unknown store {s:?} (redb or fjall)").into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Redb => "redb",
            Kind::Fjall => "fjall",
        }
    }
}

pub struct Options {
    pub cache_bytes: u64,
    /// fjall: fdatasync instead of fsync for a durable commit
    pub sync_data: bool,
    pub fjall_workers: usize,
    /// redb: `set_quick_repair(true)` on every durable commit (allocator state saved with each
    /// commit, 2-phase commit) so that an open after a crash needs no full repair
    pub redb_quick_repair: bool,
    /// fjall: `max_journaling_size` (0: fjall's default, 512 MiB)
    pub fjall_journal_bytes: u64,
    /// fjall: `max_memtable_size` per keyspace (0: fjall's default, 64 MiB)
    pub fjall_memtable_bytes: u64,
}

/// Opens (creating if needed) the store at `dir` (redb: `dir/store.redb`).
pub fn open(kind: Kind, dir: &Path, o: &Options) -> Res<Box<dyn Store>> {
    std::fs::create_dir_all(dir)?;
    match kind {
        #[cfg(feature = "redb")]
        Kind::Redb => Ok(Box::new(redb_store::RedbStore::open(dir, o)?)),
        #[cfg(feature = "fjall")]
        Kind::Fjall => Ok(Box::new(fjall_store::FjallStore::open(dir, o)?)),
        #[allow(unreachable_patterns)]
        _ => Err(format!("built without the {} feature", kind.name()).into()),
    }
}

#[cfg(feature = "redb")]
mod redb_store {
    use super::*;
    use redb::{
        Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
    };

    type Def = TableDefinition<'static, &'static [u8], &'static [u8]>;
    const DEFS: [Def; 5] = [
        TableDefinition::new("msgs"),
        TableDefinition::new("rc"),
        TableDefinition::new("queue"),
        TableDefinition::new("sessions"),
        TableDefinition::new("retained"),
    ];

    pub struct RedbStore {
        db: Database,
        quick_repair: bool,
    }

    impl RedbStore {
        pub fn open(dir: &Path, o: &Options) -> Res<Self> {
            let db = Database::builder()
                .set_cache_size(o.cache_bytes as usize)
                .create(dir.join("store.redb"))?;
            let tx = db.begin_write()?;
            for d in DEFS {
                tx.open_table(d)?;
            }
            tx.commit()?;
            Ok(RedbStore {
                db,
                quick_repair: o.redb_quick_repair,
            })
        }
    }

    fn apply(tx: &WriteTransaction, batch: &Batch) -> Res<()> {
        let mut tables: [Option<redb::Table<'_, &'static [u8], &'static [u8]>>; 5] =
            Default::default();
        for (t, k, v) in batch.iter() {
            let slot = &mut tables[t as usize];
            if slot.is_none() {
                *slot = Some(tx.open_table(DEFS[t as usize])?);
            }
            let table = slot.as_mut().expect("opened above");
            match v {
                Some(v) => {
                    table.insert(k, v)?;
                }
                None => {
                    table.remove(k)?;
                }
            }
        }
        Ok(())
    }

    impl Store for RedbStore {
        fn commit(&mut self, batch: &Batch, durable: bool) -> Res<()> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            if durable && self.quick_repair {
                tx.set_quick_repair(true);
            }
            apply(&tx, batch)?;
            tx.commit()?;
            Ok(())
        }

        fn sync(&mut self) -> Res<()> {
            // An empty write transaction with Durability::Immediate (the default) makes the
            // non-durable commits before it durable.
            let mut tx = self.db.begin_write()?;
            if self.quick_repair {
                tx.set_quick_repair(true);
            }
            tx.commit()?;
            Ok(())
        }

        fn scan(&mut self) -> Res<(u64, u64)> {
            let tx = self.db.begin_read()?;
            let (mut n, mut bytes) = (0, 0);
            for d in DEFS {
                let table = tx.open_table(d)?;
                for kv in table.iter()? {
                    let (k, v) = kv?;
                    n += 1;
                    bytes += (k.value().len() + v.value().len()) as u64;
                }
            }
            Ok((n, bytes))
        }
    }
}

#[cfg(feature = "fjall")]
mod fjall_store {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    pub struct FjallStore {
        // Field order: the keyspaces go before the database.
        ks: Vec<Keyspace>,
        db: Database,
        mode: PersistMode,
    }

    impl FjallStore {
        pub fn open(dir: &Path, o: &Options) -> Res<Self> {
            let mut builder = Database::builder(dir)
                .cache_size(o.cache_bytes)
                .worker_threads(o.fjall_workers);
            if o.fjall_journal_bytes > 0 {
                builder = builder.max_journaling_size(o.fjall_journal_bytes);
            }
            let db = builder.open()?;
            let mut ks = Vec::new();
            for (name, _) in TABLES {
                ks.push(db.keyspace(name, || {
                    let opts = KeyspaceCreateOptions::default();
                    if o.fjall_memtable_bytes > 0 {
                        opts.max_memtable_size(o.fjall_memtable_bytes)
                    } else {
                        opts
                    }
                })?);
            }
            let mode = if o.sync_data {
                PersistMode::SyncData
            } else {
                PersistMode::SyncAll
            };
            Ok(FjallStore { ks, db, mode })
        }
    }

    impl Store for FjallStore {
        fn commit(&mut self, batch: &Batch, durable: bool) -> Res<()> {
            // Without `durability(...)` a committed batch is left in the journal's user-space
            // buffer (8 KiB BufWriter): not even handed to the OS.
            let mut b = self.db.batch().durability(Some(if durable {
                self.mode
            } else {
                PersistMode::Buffer
            }));
            for (t, k, v) in batch.iter() {
                let ks = &self.ks[t as usize];
                match v {
                    Some(v) => b.insert(ks, k, v),
                    None => b.remove(ks, k),
                }
            }
            b.commit()?;
            Ok(())
        }

        fn sync(&mut self) -> Res<()> {
            self.db.persist(self.mode)?;
            Ok(())
        }

        fn scan(&mut self) -> Res<(u64, u64)> {
            let (mut n, mut bytes) = (0, 0);
            for ks in &self.ks {
                for guard in ks.iter() {
                    let (k, v) = guard.into_inner()?;
                    n += 1;
                    bytes += (k.len() + v.len()) as u64;
                }
            }
            Ok((n, bytes))
        }

        fn flush_memtables(&mut self) -> Res<()> {
            for ks in &self.ks {
                ks.rotate_memtable_and_wait()?;
            }
            Ok(())
        }
    }
}
