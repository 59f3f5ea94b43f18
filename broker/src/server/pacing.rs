//! Pacing a loop's intake by its own output backlog.
//!
//! One PUBLISH read from a publisher becomes one PUBLISH per subscriber: a 64 KiB read of
//! 64-byte messages fanned out to 500 subscribers is 28 MB of output. When the subscribers'
//! sockets are full, that output waits in the broker, up to `max_output_buffer_bytes` per
//! subscriber (256 KiB by default: 250 MB for 1 000 subscribers), while the publisher is
//! read as fast as before. So the loop takes in no more than its sockets take out: while its
//! connections have more than [`OUTPUT_BACKLOG_HIGH_WATER_BYTES`] of output waiting, it
//! neither reads a connection that has no output of its own (a publisher; a subscriber with
//! output waiting is read, its acknowledgements drain queues) nor fans out messages
//! forwarded by other loops, and a read that crosses the mark stops before its next PUBLISH
//! (`core::intake`; the rest is handled before the socket is read again). The kernel's
//! socket buffers keep the subscribers busy meanwhile, and TCP pushes back on the publisher.
//!
//! A backlog that does not drain (subscribers that stopped reading) must not stop the loop:
//! after [`MAX_OUTPUT_PAUSE_MS`] over the mark pacing gives up until the backlog falls under
//! it again, and the per-publisher flow control of `core::flow` (queues, holds bounded by
//! `max_publisher_hold_ms`, then the queue limit) decides as it does without pacing.

use super::event_loop::EventLoop;
use crate::core::ConnId;

/// Output bytes a loop's connections may have waiting for their sockets, all together,
/// before the loop stops taking in more until its writes catch up.
pub const OUTPUT_BACKLOG_HIGH_WATER_BYTES: usize = 2 * 1024 * 1024;
/// Longest a loop keeps its intake paused while the backlog stays over the mark; then it
/// reads as if unpaced until the backlog has fallen under the mark.
pub const MAX_OUTPUT_PAUSE_MS: u64 = 100;

/// The pacing state of one loop.
#[derive(Debug, Default)]
pub struct Pacing {
    /// Since when (loop ms) the backlog has been over the mark, if it is.
    over_since_ms: Option<u64>,
    /// The backlog stayed over the mark for [`MAX_OUTPUT_PAUSE_MS`]: not paced until it
    /// falls under it.
    given_up: bool,
}

impl Pacing {
    /// Whether the loop should take in nothing more now, with `backlog_bytes` of output
    /// waiting at `now_ms`.
    pub fn pause(&mut self, backlog_bytes: usize, now_ms: u64) -> bool {
        if backlog_bytes <= OUTPUT_BACKLOG_HIGH_WATER_BYTES {
            self.over_since_ms = None;
            self.given_up = false;
            return false;
        }
        if self.given_up {
            return false;
        }
        let since = *self.over_since_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) >= MAX_OUTPUT_PAUSE_MS {
            self.given_up = true;
            tracing::debug!(
                backlog_bytes,
                "output backlog not draining: reading unpaced until it does"
            );
            return false;
        }
        true
    }

    /// The backlog over which a read stops before its next PUBLISH.
    pub fn read_limit_bytes(&self) -> usize {
        if self.given_up {
            usize::MAX
        } else {
            OUTPUT_BACKLOG_HIGH_WATER_BYTES
        }
    }
}

impl EventLoop {
    /// Whether `key` is not to be read now: the loop's output backlog is over the mark and
    /// `key` has no output of its own waiting (a connection with output waiting is read: its
    /// acknowledgements and keep-alives are how its backlog drains).
    pub(super) fn intake_paused(&mut self, key: ConnId) -> bool {
        let backlog = self.shard.output_backlog_bytes();
        if !self.pacing.pause(backlog, self.now_ms) || !self.shard.output(key).is_empty() {
            return false;
        }
        self.reads_held = true;
        true
    }

    /// Whether messages forwarded by other loops wait in the mailbox for now (holds,
    /// handovers and controls behind them wait at most [`MAX_OUTPUT_PAUSE_MS`]).
    pub(super) fn inbox_paused(&mut self) -> bool {
        let backlog = self.shard.output_backlog_bytes();
        let paused = self.pacing.pause(backlog, self.now_ms);
        self.reads_held |= paused;
        paused
    }

    /// Feeds the bytes just read into the scratch buffer (`range` of it) to the core, which
    /// stops before a PUBLISH once the backlog is over the mark.
    pub(super) fn receive_paced(&mut self, key: ConnId, range: std::ops::Range<usize>) {
        let Some(bytes) = self.scratch.get(range) else {
            return;
        };
        receive_under(&mut self.shard, &self.pacing, key, bytes, self.now_ms);
    }

    /// Handles what a paced read of `key` left, as far as the mark allows.
    pub(super) fn resume_paced(&mut self, key: ConnId) {
        self.shard
            .set_output_backlog_limit_bytes(self.pacing.read_limit_bytes());
        self.shard.resume(key, self.now_ms);
        self.shard.set_output_backlog_limit_bytes(usize::MAX);
    }
}

/// Hands `bytes` of `key` to the core with the output backlog's mark in force (the core
/// stops handling packets there and keeps the rest for `resume_paced`).
pub(super) fn receive_under(
    shard: &mut crate::core::Shard,
    pacing: &Pacing,
    key: ConnId,
    bytes: &[u8],
    now_ms: u64,
) {
    shard.set_output_backlog_limit_bytes(pacing.read_limit_bytes());
    shard.receive(key, bytes, now_ms);
    shard.set_output_backlog_limit_bytes(usize::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVER: usize = OUTPUT_BACKLOG_HIGH_WATER_BYTES + 1;

    #[test]
    fn pauses_over_the_mark_and_not_under_it() {
        let mut pacing = Pacing::default();
        assert!(!pacing.pause(OUTPUT_BACKLOG_HIGH_WATER_BYTES, 0));
        assert!(pacing.pause(OVER, 0));
        assert!(pacing.pause(OVER, MAX_OUTPUT_PAUSE_MS - 1));
        assert!(!pacing.pause(0, MAX_OUTPUT_PAUSE_MS));
        // A new episode counts from its own start.
        assert!(pacing.pause(OVER, 1000));
        assert!(pacing.pause(OVER, 1000 + MAX_OUTPUT_PAUSE_MS - 1));
        assert_eq!(pacing.read_limit_bytes(), OUTPUT_BACKLOG_HIGH_WATER_BYTES);
    }

    #[test]
    fn a_backlog_that_does_not_drain_stops_pacing_until_it_does() {
        let mut pacing = Pacing::default();
        assert!(pacing.pause(OVER, 0));
        assert!(!pacing.pause(OVER, MAX_OUTPUT_PAUSE_MS), "gave up");
        assert!(
            !pacing.pause(OVER, 10 * MAX_OUTPUT_PAUSE_MS),
            "still given up"
        );
        assert_eq!(pacing.read_limit_bytes(), usize::MAX, "reads unpaced");
        assert!(!pacing.pause(0, 10 * MAX_OUTPUT_PAUSE_MS + 1));
        assert!(
            pacing.pause(OVER, 10 * MAX_OUTPUT_PAUSE_MS + 2),
            "paced again"
        );
        assert_eq!(pacing.read_limit_bytes(), OUTPUT_BACKLOG_HIGH_WATER_BYTES);
    }
}
