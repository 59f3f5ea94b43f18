//! Driving the store: the ops each loop's core recorded go into one queue, in the order
//! the loops handed them over, and are applied as batches.
//!
//! - `sync`: a loop that is about to write output makes everything it queued durable first
//!   ([`Persister::make_durable`]). Whoever takes the store's lock commits the whole queue,
//!   other loops' ops included, in one transaction with one fsync: a loop that finds its
//!   ops committed by another when it gets the lock has nothing left to do (group commit
//!   across loops as well as across a turn's connections).
//! - `async`: loops only queue; a thread beside them commits the queue every
//!   `flush_interval_ms`, and once more at a clean stop.
//!
//! A failed commit puts its ops back at the front of the queue (the store applied nothing
//! of the batch) and marks the store degraded, counted and logged; the next commit tries
//! them again, and a success clears the state.

pub mod inspect;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use starling_store::{Durability, Op, Store, StoreError, StoreStats};

use crate::config::persistence::{PersistenceMode, PersistenceSettings};
use crate::core::Shared;
use crate::core::persist::codec::WallClock;
use crate::core::persist::restore::{self, Plan};

/// A failed commit is logged at most this often (the failures are all counted).
const FAILURE_LOG_INTERVAL_MS: u64 = 10_000;

/// Ops waiting for a commit.
#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    /// The ticket of the last ops queued (tickets count up from 1).
    last_ticket: u64,
}

/// What the metrics show of the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct PersistStats {
    /// The store's own counters.
    pub store: StoreStats,
    /// Commits that failed.
    pub failed_commits: u64,
    /// Whether the last commit failed.
    pub degraded: bool,
    /// How long the recovery at start-up took, in ms.
    pub recovery_ms: u64,
    /// What the recovery found.
    pub recovered: restore::Counts,
    /// Total time spent in commits, in µs.
    pub commit_micros: u64,
}

/// The store shared by the loops.
pub struct Persister {
    mode: PersistenceMode,
    /// The loops' shared state: its retained ops are queued with each submission, and its
    /// degraded flag tells the cores to refuse QoS 1/2 while the store fails.
    shared: Arc<Shared>,
    store: Mutex<Box<dyn Store>>,
    queue: Mutex<Queue>,
    /// The highest ticket whose ops are committed.
    committed: AtomicU64,
    failed_commits: AtomicU64,
    degraded: AtomicBool,
    commit_micros: AtomicU64,
    last_failure_log_ms: AtomicU64,
    recovery_ms: u64,
    recovered: restore::Counts,
    started: Instant,
}

impl Persister {
    /// A persister over `store`, in `mode`, for the loops sharing `shared`.
    pub fn new(
        mode: PersistenceMode,
        store: Box<dyn Store>,
        shared: Arc<Shared>,
        recovery_ms: u64,
        recovered: restore::Counts,
    ) -> Persister {
        Persister {
            mode,
            shared,
            store: Mutex::new(store),
            queue: Mutex::new(Queue::default()),
            committed: AtomicU64::new(0),
            failed_commits: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            commit_micros: AtomicU64::new(0),
            last_failure_log_ms: AtomicU64::new(0),
            recovery_ms,
            recovered,
            started: Instant::now(),
        }
    }

    /// The mode.
    pub fn mode(&self) -> PersistenceMode {
        self.mode
    }

    /// Queues `ops` (emptied), with the retained messages any loop set or cleared since
    /// the last submission, and returns the ticket that covers them (the last ticket when
    /// there was nothing to queue). A loop that recorded a retained change before calling
    /// this is covered by the ticket, whichever loop's submission carried the change.
    pub fn submit(&self, ops: &mut Vec<Op>) -> u64 {
        let Ok(mut queue) = self.queue.lock() else {
            return 0;
        };
        let before = queue.ops.len();
        queue.ops.append(ops);
        self.shared.persist.take_retained(&mut queue.ops);
        if queue.ops.len() != before {
            queue.last_ticket += 1;
        }
        queue.last_ticket
    }

    /// Makes every op queued up to `ticket` durable (and whatever else is queued with it).
    pub fn make_durable(&self, ticket: u64) -> Result<(), StoreError> {
        if self.committed.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        let Ok(mut store) = self.store.lock() else {
            return Ok(());
        };
        if self.committed.load(Ordering::Acquire) >= ticket {
            return Ok(()); // another loop committed it while this one waited
        }
        self.commit(&mut **store)
    }

    /// Commits the whole queue in one durable transaction (the async flusher, a clean
    /// stop).
    pub fn flush(&self) -> Result<(), StoreError> {
        let Ok(mut store) = self.store.lock() else {
            return Ok(());
        };
        self.commit(&mut **store)
    }

    /// Takes the queue and commits it; the caller holds the store.
    fn commit(&self, store: &mut dyn Store) -> Result<(), StoreError> {
        let (ops, upto) = match self.queue.lock() {
            Ok(mut queue) => (std::mem::take(&mut queue.ops), queue.last_ticket),
            Err(_) => return Ok(()),
        };
        if ops.is_empty() {
            self.committed.fetch_max(upto, Ordering::AcqRel);
            return Ok(());
        }
        let began = Instant::now();
        let result = store.apply(&ops, Durability::Durable);
        self.commit_micros
            .fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.committed.fetch_max(upto, Ordering::AcqRel);
                self.shared.persist.set_degraded(false);
                if self.degraded.swap(false, Ordering::AcqRel) {
                    tracing::warn!("store writes succeed again: persistence restored");
                }
                Ok(())
            }
            Err(error) => {
                // Nothing of the batch was applied: its ops go back before what came since.
                if let Ok(mut queue) = self.queue.lock() {
                    let newer = std::mem::replace(&mut queue.ops, ops);
                    queue.ops.extend(newer);
                }
                self.failed_commits.fetch_add(1, Ordering::Relaxed);
                self.degraded.store(true, Ordering::Release);
                self.shared.persist.set_degraded(true);
                self.log_failure(&error);
                Err(error)
            }
        }
    }

    fn log_failure(&self, error: &StoreError) {
        // Stored as ms since start + 1, so 0 means "never logged".
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_failure_log_ms.load(Ordering::Relaxed);
        if last == 0 || now >= last + FAILURE_LOG_INTERVAL_MS {
            self.last_failure_log_ms.store(now, Ordering::Relaxed);
            tracing::error!(%error, failed_commits = self.failed_commits.load(Ordering::Relaxed), "store write failed: persistence degraded (retrying)");
        }
    }

    /// A clean stop, once every loop has made what it recorded durable: closes the store's
    /// file, so that the next start finds it closed cleanly rather than as a crash left it.
    pub fn close(&self) {
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        if let Err(error) = store.close_file() {
            tracing::error!(%error, "store: the file could not be closed cleanly");
        }
    }

    /// The highest ticket committed.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Whether the last commit failed.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// The numbers for the metrics.
    pub fn stats(&self) -> PersistStats {
        let store = self.store.lock().map(|s| s.stats()).unwrap_or_default();
        PersistStats {
            store,
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
            degraded: self.degraded(),
            recovery_ms: self.recovery_ms,
            recovered: self.recovered,
            commit_micros: self.commit_micros.load(Ordering::Relaxed),
        }
    }
}

/// The clock the stored times are written in: Unix ms at the loops' time 0.
pub fn wall_clock(epoch: Instant) -> WallClock {
    let now_wall = unix_ms();
    let since_epoch = epoch.elapsed().as_millis() as u64;
    WallClock {
        offset_ms: now_wall.saturating_sub(since_epoch),
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The store, opened and read, with the recovery planned.
pub struct Opened {
    /// The store.
    pub store: Box<dyn Store>,
    /// What each loop rebuilds.
    pub plan: Plan,
    /// How long opening, reading and planning took, in ms.
    pub recovery_ms: u64,
}

/// Opens the store of `settings`, loads it and plans the recovery for `loops` loops. The
/// error names the store's file and says what to do.
pub fn open(
    settings: &PersistenceSettings,
    loops: usize,
    clock: WallClock,
) -> Result<Opened, String> {
    let began = Instant::now();
    let mut store = starling_store::RedbStore::open(&settings.path, settings.cache_bytes)
        .map_err(|e| e.to_string())?;
    let recovered = store.load().map_err(|e| e.to_string())?;
    let path = settings.path.join(starling_store::STORE_FILE_NAME);
    let plan = restore::plan(recovered, loops, clock, unix_ms()).map_err(|e| {
        format!(
            "{}: {e}; restore the store from a backup, or move the directory aside to start with an empty store",
            path.display()
        )
    })?;
    Ok(Opened {
        store: Box::new(store),
        plan,
        recovery_ms: began.elapsed().as_millis() as u64,
    })
}

impl Persister {
    /// The persister over an opened store: deletes (durably) what expired while the broker
    /// was down, before anyone connects, and logs what was recovered.
    pub fn start(
        settings: &PersistenceSettings,
        store: Box<dyn Store>,
        plan: &mut Plan,
        recovery_ms: u64,
        shared: Arc<Shared>,
    ) -> Result<Persister, String> {
        let counts = plan.counts;
        let persister = Persister::new(settings.mode, store, shared, recovery_ms, counts);
        let mut purge = std::mem::take(&mut plan.purge);
        let ticket = persister.submit(&mut purge);
        persister.make_durable(ticket).map_err(|e| e.to_string())?;
        tracing::info!(
            path = %settings.path.join(starling_store::STORE_FILE_NAME).display(),
            mode = settings.mode.name(),
            sessions = counts.sessions,
            sessions_expired = counts.sessions_expired,
            messages = counts.outbound,
            retained = counts.retained,
            retained_expired = counts.retained_expired,
            routes = counts.routes,
            recovery_ms,
            "store opened and recovered"
        );
        Ok(persister)
    }
}

/// The async mode's flusher: commits the queue every `interval_ms`, for the life of the
/// process (the loops flush what they recorded last as they exit).
pub fn spawn_flusher(
    persister: Arc<Persister>,
    interval_ms: u64,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("starling-store".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(interval_ms));
                let mut none = Vec::new();
                persister.submit(&mut none);
                let _ = persister.flush();
            }
        })
}

/// What start-up recovered, before the loops exist.
pub struct Recovery {
    clock: WallClock,
    opened: Option<Opened>,
}

/// One loop's share of the recovery, and the barrier every loop meets at between
/// rebuilding its sessions and routing what was in transit between loops.
pub struct LoopRestore {
    sessions: Vec<restore::RestoredSession>,
    routes: Vec<restore::RestoredRoute>,
    barrier: Arc<std::sync::Barrier>,
}

/// Every loop's share ([`Restores::take`] hands each its own).
#[derive(Default)]
pub struct Restores(Vec<Option<LoopRestore>>);

impl Restores {
    /// Loop `index`'s share (`None` when persistence is off).
    pub fn take(&mut self, index: usize) -> Option<LoopRestore> {
        self.0.get_mut(index).and_then(Option::take)
    }
}

impl Recovery {
    /// Opens and reads the store when persistence is on (`loops` loops; times against
    /// `epoch`, the loops' time 0).
    pub fn open(
        settings: &PersistenceSettings,
        loops: usize,
        epoch: Instant,
    ) -> Result<Recovery, super::StartError> {
        let clock = wall_clock(epoch);
        let opened = match settings.enabled() {
            true => Some(open(settings, loops, clock).map_err(super::StartError::Store)?),
            false => None,
        };
        Ok(Recovery { clock, opened })
    }

    /// The core's broker-wide persistence state: off, or on with the first free ids.
    pub fn persist_shared(&self) -> crate::core::persist::PersistShared {
        match &self.opened {
            None => Default::default(),
            Some(opened) => crate::core::persist::PersistShared::enabled(
                self.clock,
                opened.plan.first_message_id,
                opened.plan.first_seq,
            ),
        }
    }

    /// Puts the retained messages back, starts the persister (and the async flusher) and
    /// deals out each loop's sessions and routes.
    pub fn start(
        self,
        settings: &PersistenceSettings,
        shared: &Arc<Shared>,
    ) -> Result<(Option<Arc<Persister>>, Restores), super::StartError> {
        let Some(Opened {
            store,
            mut plan,
            recovery_ms,
        }) = self.opened
        else {
            return Ok((None, Restores::default()));
        };
        if let Ok(mut retained) = shared.retained.lock() {
            for (topic, message) in std::mem::take(&mut plan.retained) {
                let _ = retained.set(&topic, message);
            }
        }
        let persister =
            Persister::start(settings, store, &mut plan, recovery_ms, Arc::clone(shared))
                .map_err(super::StartError::Store)?;
        let persister = Arc::new(persister);
        if settings.mode == PersistenceMode::Async {
            spawn_flusher(Arc::clone(&persister), settings.flush_interval_ms)
                .map_err(super::StartError::Io)?;
        }
        let barrier = Arc::new(std::sync::Barrier::new(plan.sessions.len()));
        let restores = plan
            .sessions
            .into_iter()
            .zip(plan.routes)
            .map(|(sessions, routes)| {
                Some(LoopRestore {
                    sessions,
                    routes,
                    barrier: Arc::clone(&barrier),
                })
            })
            .collect();
        Ok((Some(persister), Restores(restores)))
    }
}

impl super::event_loop::EventLoop {
    /// Rebuilds this loop's recovered sessions, waits until every loop has, then routes
    /// what was in transit to this loop at the crash. Before the loop serves anyone.
    pub fn restore(&mut self, restore: Option<LoopRestore>) {
        let Some(LoopRestore {
            sessions,
            routes,
            barrier,
        }) = restore
        else {
            return;
        };
        let now_ms = self.now_ms;
        self.shard.restore_sessions(sessions, now_ms);
        barrier.wait();
        self.shard.restore_routes(routes, now_ms);
    }

    /// The loop is done (a graceful shutdown drained it): what it recorded last is made
    /// durable, whatever the mode.
    pub fn persist_at_exit(&mut self) {
        let Some(persister) = self.persister.clone() else {
            return;
        };
        self.shard.take_persist_ops(&mut self.persist_ops);
        persister.submit(&mut self.persist_ops);
        if let Err(error) = persister.flush() {
            tracing::error!(%error, "store: the last changes could not be written at shutdown");
        }
    }
}
