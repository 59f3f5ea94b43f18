//! The loop's side of persistence: no output is written before what it promises is
//! durable.
//!
//! A settle round (the core's actions, then the output of every connection it marked)
//! hands the ops the core recorded to the store and, in `sync` mode, waits for them to be
//! durable before the round's first write (`EventLoop::may_write`). Everything a round
//! writes was produced before that commit, so one commit covers the round.
//!
//! When the commit fails (the disk is full, a write failed), the round's connections, and
//! every connection the core has marked since, are held: their output stays in the core
//! until a later commit succeeds (`EventLoop::retry_store`, at most every
//! [`STORE_RETRY_INTERVAL_MS`]). Rounds that record nothing (QoS 0 traffic) write as usual,
//! and the core refuses QoS 1/2 PUBLISHes meanwhile, so nothing new needs the store.

use std::collections::HashSet;

use super::event_loop::EventLoop;
use crate::config::persistence::PersistenceMode;
use crate::core::ConnId;

/// While the store fails, a commit is tried again at most this often.
pub const STORE_RETRY_INTERVAL_MS: u64 = 500;
/// Ops no output promises (an acknowledged message's entry deleted, a QoS 1 message moved
/// into the window) wait at most this long for a commit in `sync` mode.
pub const LAZY_COMMIT_INTERVAL_MS: u64 = 50;

/// A loop's connections whose output waits for the store.
#[derive(Debug, Default)]
pub struct Held {
    /// Connections whose output depends on ops not yet durable.
    conns: HashSet<ConnId>,
    /// The current round's commit failed: its remaining connections are held too.
    round_failed: bool,
    /// No commit is tried before this (loop ms) after a failure.
    next_retry_ms: u64,
    /// The highest ticket this loop submitted, and the highest it knows durable.
    submitted: u64,
    durable: u64,
    /// The highest ticket queued for a hand-over to another loop, not waited for then.
    handed_over: u64,
    /// The highest ticket of ops no output promised (`Journal::needs_commit`), and when
    /// they are committed at the latest (loop ms).
    lazy: u64,
    next_lazy_ms: u64,
    /// Whether the loop is settling (its rounds commit once for all their writes).
    settling: bool,
    /// Connections a write outside a settle round would have had to commit for: written
    /// in the next round instead, so the turn's commit covers them too.
    later: Vec<ConnId>,
}

impl Held {
    /// Whether any connection waits for the store (the loop then wakes to retry).
    pub fn waiting(&self) -> bool {
        !self.conns.is_empty()
    }
}

impl EventLoop {
    /// A settle round begins: its connections are judged by its own commit, and the
    /// writes put off until the round are added to its list.
    pub(super) fn begin_round(&mut self, into: &mut Vec<ConnId>) {
        self.held.round_failed = false;
        self.held.settling = true;
        into.append(&mut self.held.later);
    }

    /// The settle is over: writes outside it commit for themselves again.
    pub(super) fn end_settle(&mut self) {
        self.held.settling = false;
    }

    /// Whether a write of `key` now (outside a settle round, e.g. a writable socket or a
    /// TLS read) would need a commit of its own (ops recorded, or queued and not yet
    /// durable in `sync` mode): then it waits for the turn's settle, where
    /// one commit covers every connection (a busy loop would otherwise sync once per
    /// writable event).
    pub(super) fn put_off_write(&mut self, key: ConnId) -> bool {
        let pending = self.shard.has_persist_ops() || self.held.handed_over > self.held.durable;
        if self.persister.is_none() || self.held.settling || !pending {
            return false;
        }
        self.held.later.push(key);
        true
    }

    /// Whether `key`'s output may be written now: it does not wait for the store, and what
    /// the core recorded since the last commit is durable (committed now if need be). On a
    /// failed commit, `key` and every connection with new output are held.
    pub(super) fn may_write(&mut self, key: ConnId) -> bool {
        if self.persister.is_none() {
            return true;
        }
        if self.held.conns.contains(&key) {
            return false;
        }
        if !self.held.round_failed && self.store_recorded() {
            return true;
        }
        self.held.conns.insert(key);
        false
    }

    /// Hands what the core recorded to the store (made durable in `sync` mode); if that
    /// fails, the round fails: every connection with new output is held.
    pub(super) fn store_recorded(&mut self) -> bool {
        if self.durable_before_output() {
            return true;
        }
        self.held.round_failed = true;
        let mut marked = std::mem::take(&mut self.dirty_spare);
        self.shard.drain_dirty(&mut marked);
        self.held.conns.extend(marked.drain(..));
        self.dirty_spare = marked;
        false
    }

    /// Hands what the core recorded to the store; in `sync` mode waits until it is
    /// durable (with every other loop's ops queued before it). False if the commit failed
    /// (or a retry is not due yet while the store fails).
    fn durable_before_output(&mut self) -> bool {
        let Some(persister) = self.persister.clone() else {
            return true;
        };
        if !self.shard.has_persist_ops() {
            // Ops only queued for a hand-over still need their commit; ops of a commit that
            // failed do not: the output that waits for them is held already.
            let handed_over = self.held.handed_over > self.held.durable;
            return persister.mode() != PersistenceMode::Sync
                || !handed_over
                || self.commit_submitted();
        }
        let urgent = self.shard.persist_ops_urgent();
        self.shard.take_persist_ops(&mut self.persist_ops);
        let ticket = persister.submit(&mut self.persist_ops);
        if persister.mode() != PersistenceMode::Sync {
            return true;
        }
        if !urgent {
            self.note_lazy(ticket);
            return true;
        }
        self.held.submitted = self.held.submitted.max(ticket);
        self.commit_submitted()
    }

    /// Ops that no output promises were queued under `ticket`: committed with the next
    /// commit, or within [`LAZY_COMMIT_INTERVAL_MS`].
    fn note_lazy(&mut self, ticket: u64) {
        if self.held.lazy <= self.held.durable {
            self.held.next_lazy_ms = self.now_ms + LAZY_COMMIT_INTERVAL_MS;
        }
        self.held.lazy = self.held.lazy.max(ticket);
    }

    /// Whether ops no output promised wait for a commit (the loop then wakes for it).
    pub(super) fn lazy_pending(&self) -> bool {
        self.held.lazy > self.held.durable
    }

    /// Commits the ops no output promised once they have waited
    /// [`LAZY_COMMIT_INTERVAL_MS`] (`sync` mode; in `async` the flusher does).
    pub(super) fn commit_lazy(&mut self) {
        if !self.lazy_pending() || self.now_ms < self.held.next_lazy_ms {
            return;
        }
        self.held.submitted = self.held.submitted.max(self.held.lazy);
        if !self.commit_submitted() {
            self.held.next_lazy_ms = self.now_ms + STORE_RETRY_INTERVAL_MS;
        }
    }

    /// Queues what the core recorded, without waiting for a commit: enough for a message
    /// handed to another loop (the other loop's ops queue after these, and its commit
    /// takes them along); the turn's writes still wait for the commit (`sync`).
    pub(super) fn queue_recorded(&mut self) {
        let Some(persister) = self.persister.clone() else {
            return;
        };
        if !self.shard.has_persist_ops() {
            return;
        }
        let urgent = self.shard.persist_ops_urgent();
        self.shard.take_persist_ops(&mut self.persist_ops);
        let ticket = persister.submit(&mut self.persist_ops);
        if persister.mode() != PersistenceMode::Sync {
            return;
        }
        if urgent {
            self.held.submitted = self.held.submitted.max(ticket);
            self.held.handed_over = self.held.handed_over.max(ticket);
        } else {
            self.note_lazy(ticket);
        }
    }

    /// Makes this loop's submitted ops durable, unless a failed commit's retry is not due.
    fn commit_submitted(&mut self) -> bool {
        let Some(persister) = self.persister.as_ref() else {
            return true;
        };
        if self.held.submitted <= self.held.durable {
            return true;
        }
        if persister.degraded() && self.now_ms < self.held.next_retry_ms {
            return false;
        }
        match persister.make_durable(self.held.submitted) {
            Ok(()) => {
                // The commit took the whole queue: this loop's lazy ops queued before too.
                self.held.durable = self.held.submitted.max(persister.committed());
                true
            }
            Err(_) => {
                // The output that waited for these ops is held now: later rounds that
                // record nothing need not wait for them.
                self.held.handed_over = 0;
                self.held.next_retry_ms = self.now_ms + STORE_RETRY_INTERVAL_MS;
                false
            }
        }
    }

    /// While connections wait for the store: tries the commit again when due, and once it
    /// succeeds writes what they hold.
    pub(super) fn retry_store(&mut self) {
        if !self.held.waiting() || self.now_ms < self.held.next_retry_ms {
            return;
        }
        if let Some(persister) = self.persister.clone() {
            // Whatever else the loops queued goes in the same commit.
            let mut none = Vec::new();
            self.held.submitted = self.held.submitted.max(persister.submit(&mut none));
        }
        if !self.commit_submitted() {
            return;
        }
        let released: Vec<ConnId> = self.held.conns.drain().collect();
        for key in released {
            self.flush(key);
        }
        self.settle();
    }

    /// `key` is gone: it no longer waits for anything.
    pub(super) fn forget_held(&mut self, key: ConnId) {
        if self.held.waiting() {
            self.held.conns.remove(&key);
        }
    }
}
