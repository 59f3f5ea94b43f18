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
//! forwarded by other loops; the kernel's socket buffers keep the subscribers busy
//! meanwhile, and TCP pushes back on the publisher. A read is also sized so that its fan-out
//! fits under the mark ([`Pacing::read_limit`]).
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
/// The least a paced read takes (a read smaller than a packet is only copied and kept).
pub const MIN_PACED_READ_BYTES: usize = 1024;
/// How long the largest fan-out seen is remembered: reads of other connections (a
/// subscriber's acknowledgement) between two of a publisher's do not lower it.
pub const FAN_OUT_MEMORY_MS: u64 = 1000;

/// The pacing state of one loop.
#[derive(Debug)]
pub struct Pacing {
    /// Since when (loop ms) the backlog has been over the mark, if it is.
    over_since_ms: Option<u64>,
    /// The backlog stayed over the mark for [`MAX_OUTPUT_PAUSE_MS`]: not paced until it
    /// falls under it.
    given_up: bool,
    /// The most output bytes per byte read that a read produced since `fan_out_since_ms`
    /// (at least 1): the fan-out the next read is sized for.
    // Invariant: `fan_out >= 1`.
    fan_out: usize,
    /// When `fan_out` began to be collected (loop ms).
    fan_out_since_ms: u64,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            over_since_ms: None,
            given_up: false,
            fan_out: 1,
            fan_out_since_ms: 0,
        }
    }
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

    /// How many bytes the next read may take (at most `scratch_bytes`), so that its
    /// fan-out stays about under the mark.
    pub fn read_limit(&self, backlog_bytes: usize, scratch_bytes: usize) -> usize {
        if self.given_up {
            return scratch_bytes;
        }
        let headroom = OUTPUT_BACKLOG_HIGH_WATER_BYTES.saturating_sub(backlog_bytes);
        (headroom / self.fan_out).clamp(MIN_PACED_READ_BYTES.min(scratch_bytes), scratch_bytes)
    }

    /// A read of `read_bytes` at `now_ms` took the backlog from `before_bytes` to
    /// `after_bytes`. The fan-out follows a larger one at once and a smaller one only after
    /// [`FAN_OUT_MEMORY_MS`].
    pub fn observe(
        &mut self,
        read_bytes: usize,
        before_bytes: usize,
        after_bytes: usize,
        now_ms: u64,
    ) {
        if read_bytes == 0 {
            return;
        }
        let seen = (after_bytes.saturating_sub(before_bytes) / read_bytes).max(1);
        if now_ms.saturating_sub(self.fan_out_since_ms) >= FAN_OUT_MEMORY_MS {
            self.fan_out = seen;
            self.fan_out_since_ms = now_ms;
        } else {
            self.fan_out = self.fan_out.max(seen);
        }
        debug_assert!(self.fan_out >= 1);
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

    /// How much the next read may take from a socket.
    pub(super) fn read_limit(&self) -> usize {
        let backlog = self.shard.output_backlog_bytes();
        self.pacing.read_limit(backlog, self.scratch.len())
    }

    /// Feeds the `read_bytes` just read into the scratch buffer to the core, noting the
    /// fan-out they had.
    pub(super) fn receive_paced(&mut self, key: ConnId, read_bytes: usize) {
        let before = self.shard.output_backlog_bytes();
        self.shard
            .receive(key, &self.scratch[..read_bytes], self.now_ms);
        let after = self.shard.output_backlog_bytes();
        self.pacing.observe(read_bytes, before, after, self.now_ms);
    }
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
        assert_eq!(pacing.read_limit(OVER, 65536), 65536, "reads unpaced");
        assert!(!pacing.pause(0, 10 * MAX_OUTPUT_PAUSE_MS + 1));
        assert!(
            pacing.pause(OVER, 10 * MAX_OUTPUT_PAUSE_MS + 2),
            "paced again"
        );
    }

    #[test]
    fn reads_are_sized_by_the_fan_out() {
        let mut pacing = Pacing::default();
        assert_eq!(pacing.read_limit(0, 65536), 65536);
        // A 1 000-byte read became 500 000 bytes of output: 500 subscribers.
        pacing.observe(1000, 0, 500_000, 0);
        let limit = pacing.read_limit(0, 65536);
        assert_eq!(limit, OUTPUT_BACKLOG_HIGH_WATER_BYTES / 500);
        assert!(limit * 500 <= OUTPUT_BACKLOG_HIGH_WATER_BYTES);
        // At the mark a read still takes a little.
        assert_eq!(
            pacing.read_limit(OUTPUT_BACKLOG_HIGH_WATER_BYTES, 65536),
            MIN_PACED_READ_BYTES
        );
        // A read without fan-out (a subscriber's acknowledgement) does not lower it...
        pacing.observe(100, 0, 0, FAN_OUT_MEMORY_MS - 1);
        assert_eq!(pacing.fan_out, 500);
        // ... until the fan-out seen is that old.
        pacing.observe(100, 0, 0, FAN_OUT_MEMORY_MS);
        assert_eq!(pacing.fan_out, 1);
    }
}
