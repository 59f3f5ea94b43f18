//! What the main thread asks of a running loop (a live reload, a graceful shutdown), and the
//! loop's side of both.
//!
//! A graceful shutdown, per loop: the listeners are closed (no new connections; the kernel
//! refuses them), then every connection is closed as soon as it has nothing left to send
//! (output written and session queue empty; the loop keeps reading, so acknowledgements
//! still open in-flight windows). At the deadline whatever is left is closed and its queued
//! messages counted as dropped. MQTT 3.1.1 has no server DISCONNECT: clients are told by the
//! close. The loop then reports its numbers and its thread ends.

use std::time::Instant;

use crossbeam_channel::Sender;

use super::event_loop::EventLoop;
use crate::core::{ConnId, CoreConfig, ShardStats};
use crate::monitor::LoopSnapshot;

/// A request from the main thread.
#[derive(Debug)]
pub enum Control {
    /// New limits (`Shard::update_config`); the loop answers on the channel once they are in
    /// force.
    Reload(Box<CoreConfig>, Sender<usize>),
    /// A new access policy (re-read password and ACL files, `Shard::set_access`); the loop
    /// answers on the channel once it is in force.
    Access(Box<crate::core::access::AccessPolicy>, Sender<usize>),
    /// Stop accepting, drain, close everything by `deadline`, then report and end.
    Shutdown {
        /// When whatever is left is closed.
        deadline: Instant,
        /// Where the loop reports.
        report: Sender<ShutdownReport>,
    },
    /// Send this loop's numbers (a metrics scrape, a health check, a `$SYS` round).
    Snapshot(Sender<LoopSnapshot>),
    /// Publish these `$SYS` messages (topic, payload) through this loop's routing.
    PublishSys(Vec<(String, String)>),
}

/// What one loop did during a graceful shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The loop.
    pub loop_index: usize,
    /// Connections closed (drained or not).
    pub clients_closed: u64,
    /// Of those, closed at the deadline with something still to send.
    pub clients_forced: u64,
    /// PUBLISH packets written to clients while draining.
    pub messages_flushed: u64,
    /// Messages still queued at the deadline, or dropped while draining.
    pub messages_dropped: u64,
    /// The loop's counters over its whole life (refusals by reason among them).
    pub stats: ShardStats,
}

/// A loop's shutdown in progress.
#[derive(Debug)]
pub struct Draining {
    deadline: Instant,
    report: Sender<ShutdownReport>,
    summary: ShutdownReport,
    sent_before: u64,
    dropped_before: u64,
}

impl EventLoop {
    /// Carries out a request from the main thread.
    pub(super) fn control(&mut self, control: Control) {
        match control {
            Control::Reload(core, applied) => {
                self.shard.update_config(&core);
                tracing::debug!(loop_index = self.index, "limits reloaded");
                let _ = applied.send(self.index);
            }
            Control::Access(policy, applied) => {
                self.shard.set_access(*policy, self.now_ms);
                self.install_scram();
                self.act();
                tracing::debug!(loop_index = self.index, "access policy reloaded");
                let _ = applied.send(self.index);
            }
            Control::Snapshot(reply) => {
                let _ = reply.send(self.snapshot());
            }
            Control::PublishSys(messages) => {
                for (topic, payload) in &messages {
                    self.shard
                        .publish_sys(topic, payload.as_bytes(), self.now_ms);
                }
            }
            Control::Shutdown { deadline, report } => {
                if self.draining.is_some() {
                    return;
                }
                for mut listener in self.listeners.drain(..) {
                    let _ = self.poll.registry().deregister(&mut listener);
                }
                let stats = self.shard.stats();
                self.draining = Some(Draining {
                    deadline,
                    report,
                    summary: ShutdownReport {
                        loop_index: self.index,
                        ..ShutdownReport::default()
                    },
                    sent_before: stats.publish_sent,
                    dropped_before: stats.dropped,
                });
            }
        }
    }

    /// One round of a graceful shutdown: closes every connection with nothing left to send
    /// (all of them at the deadline). Returns true once none is left and the report is sent.
    pub(super) fn drain_step(&mut self) -> bool {
        let Some(deadline) = self.draining.as_ref().map(|d| d.deadline) else {
            return false;
        };
        let overdue = Instant::now() >= deadline;
        let keys: Vec<ConnId> = self.conns.iter().flatten().map(|slot| slot.key).collect();
        let (mut closed, mut forced, mut dropped) = (0u64, 0u64, 0u64);
        for key in keys {
            let pending = self.shard.pending(key);
            let drained = pending.output_bytes == 0 && pending.queued == 0;
            if !drained && !overdue {
                continue;
            }
            if !drained {
                forced += 1;
                // A session that ends with its connection counts its queue as dropped
                // itself; a persistent one keeps it, and the process exit loses it
                // (unless the store keeps it).
                if pending.session_persists && self.persister.is_none() {
                    dropped += pending.queued as u64;
                }
            }
            closed += 1;
            self.shard.notify_shutdown(key);
            self.close(key);
        }
        self.settle();
        if overdue {
            self.close_all_outside();
        }
        let stats = self.shard.stats();
        // Lingering sockets finish first (bounded by their own timeout and the deadline).
        let left = self.conns.iter().flatten().count() + self.outside.len();
        let Some(draining) = self.draining.as_mut() else {
            return false;
        };
        draining.summary.clients_closed += closed;
        draining.summary.clients_forced += forced;
        draining.summary.messages_dropped += dropped;
        if left > 0 {
            return false;
        }
        self.shard.flush_refusal_log(self.now_ms);
        let Some(draining) = self.draining.as_mut() else {
            return false;
        };
        let mut summary = draining.summary;
        summary.stats = stats;
        summary.messages_flushed = stats.publish_sent - draining.sent_before;
        summary.messages_dropped += stats.dropped - draining.dropped_before;
        let report = draining.report.clone();
        // The store has everything before the supervisor hears the loop is done (it exits
        // the process once every loop has reported).
        self.persist_at_exit();
        let _ = report.send(summary);
        true
    }
}
