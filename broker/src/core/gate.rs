//! Whether a connection may be read now: the two reasons the broker stops reading a client
//! so that TCP pushes back on it.
//!
//! - **Flow-control holds** (`core::flow`): a publisher whose messages went to a congested
//!   subscriber is held until that subscriber has drained, and at most
//!   `max_publisher_hold_ms`. A publisher can feed several congested subscribers: the gate
//!   counts the holds and is open again when the last one is released or its deadline
//!   passes.
//! - **Publish rate limits** (`max_publish_rate_messages_per_sec`,
//!   `max_publish_rate_bytes_per_sec`): each PUBLISH a client sends is charged to two
//!   token buckets (written as a generic cell rate algorithm: one "theoretical arrival time"
//!   per limit, so a bucket is one integer); a client over either rate is not read until its
//!   bucket has room again. A bucket holds one second's worth of the rate, so a client may
//!   send that much in a burst.
//!
//! The gate is boxed beside the connection and allocated only when a connection is first
//! held or rate limits are configured: a connection that is never held pays one pointer.
//! Time the broker spends not reading a client never counts against its keep-alive
//! ([`Gate::credit_until`]).

use crate::core::config::CoreConfig;
use crate::core::conn::Phase;
use crate::core::{ConnId, Shard, ShardStats};

/// Microseconds per second (the buckets count in microseconds so low rates stay exact).
const MICROS_PER_SEC: u64 = 1_000_000;
/// How much of a rate one bucket holds: one second's worth.
pub const RATE_BURST_US: u64 = MICROS_PER_SEC;

/// A connection's read gate.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Congested subscribers holding this connection back (`core::flow`).
    holds: u16,
    /// When the current hold ends at the latest, in loop ms (`max_publisher_hold_ms` after
    /// it began).
    hold_until_ms: u64,
    /// Rate limits: the theoretical arrival time of the next message, in loop µs.
    messages_tat_us: u64,
    /// Rate limits: the same for bytes.
    bytes_tat_us: u64,
    /// Rate limits: reading resumes at this time, in loop ms.
    paused_until_ms: u64,
    /// Whether a rate pause was logged for this connection already.
    pause_logged: bool,
}

/// Which rate limit paused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// `max_publish_rate_messages_per_sec`.
    Messages,
    /// `max_publish_rate_bytes_per_sec`.
    Bytes,
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RateLimit::Messages => "max_publish_rate_messages_per_sec",
            RateLimit::Bytes => "max_publish_rate_bytes_per_sec",
        })
    }
}

impl Gate {
    /// Whether reading is held back at `now_ms`: by a rate pause, or (unless `exempt`) by a
    /// congested subscriber. A connection with messages in flight or queued toward it is
    /// exempt from holds: its acknowledgements are what drains the congested queues.
    pub fn blocks(&self, now_ms: u64, exempt: bool) -> bool {
        now_ms < self.paused_until_ms || (!exempt && self.held(now_ms))
    }

    /// Whether a congested subscriber holds this connection back at `now_ms`.
    pub fn held(&self, now_ms: u64) -> bool {
        self.holds > 0 && now_ms < self.hold_until_ms
    }

    /// One more congested subscriber holds this connection back. The first hold sets the
    /// deadline `max_hold_ms` from now; later ones do not extend it.
    pub fn hold(&mut self, now_ms: u64, max_hold_ms: u64) {
        if !self.held(now_ms) {
            self.holds = 0;
            self.hold_until_ms = now_ms.saturating_add(max_hold_ms);
        }
        self.holds = self.holds.saturating_add(1);
    }

    /// A congested subscriber released this connection.
    pub fn release(&mut self) {
        self.holds = self.holds.saturating_sub(1);
    }

    /// The latest time up to which the broker was not reading this connection: keep-alive
    /// counts from no earlier than this (the client may have sent its PINGREQ long ago).
    pub fn credit_until(&self, now_ms: u64) -> u64 {
        let held = if self.holds > 0 {
            self.hold_until_ms
        } else {
            0
        };
        held.max(self.paused_until_ms).min(now_ms)
    }

    /// Charges one PUBLISH of `bytes` bytes to the rate limits of `config`. Returns the
    /// limit that paused the client, if this PUBLISH took it over one (counted in `stats`).
    pub fn charge(
        &mut self,
        config: &CoreConfig,
        bytes: usize,
        now_ms: u64,
        stats: &mut ShardStats,
    ) -> Option<RateLimit> {
        let now_us = now_ms.saturating_mul(1000);
        let mut paused = None;
        let limits = [
            (
                RateLimit::Messages,
                config.max_publish_rate_messages_per_sec,
                1,
            ),
            (
                RateLimit::Bytes,
                config.max_publish_rate_bytes_per_sec,
                bytes as u64,
            ),
        ];
        for (limit, rate, amount) in limits {
            if rate == 0 {
                continue;
            }
            let tat = match limit {
                RateLimit::Messages => &mut self.messages_tat_us,
                RateLimit::Bytes => &mut self.bytes_tat_us,
            };
            let cost_us = amount.saturating_mul(MICROS_PER_SEC) / rate;
            *tat = (*tat).max(now_us).saturating_add(cost_us);
            let resume_us = tat.saturating_sub(RATE_BURST_US);
            if resume_us > now_us {
                let resume_ms = resume_us.div_ceil(1000);
                if resume_ms > self.paused_until_ms {
                    self.paused_until_ms = resume_ms;
                    paused = Some(limit);
                }
            }
        }
        if let Some(limit) = paused {
            match limit {
                RateLimit::Messages => stats.rate_paused_messages += 1,
                RateLimit::Bytes => stats.rate_paused_bytes += 1,
            }
        }
        paused
    }

    /// Whether this is the first rate pause of the connection (to log it once).
    pub fn first_pause(&mut self) -> bool {
        !std::mem::replace(&mut self.pause_logged, true)
    }
}

impl Shard {
    /// Charges a PUBLISH of `bytes` bytes (the whole packet) from `key` to the per-client
    /// publish rates; a client over one is not read until it is within it again.
    pub(crate) fn charge_publish(&mut self, key: ConnId, bytes: usize, now_ms: u64) {
        if self.config.max_publish_rate_messages_per_sec == 0
            && self.config.max_publish_rate_bytes_per_sec == 0
        {
            return;
        }
        let Ok(conn) = self.pool.get_mut(key) else {
            return;
        };
        if conn.phase != Phase::Connected {
            return;
        }
        let gate = conn.gate.get_or_insert_with(Default::default);
        if let Some(limit) = gate.charge(&self.config, bytes, now_ms, &mut self.stats)
            && gate.first_pause()
        {
            let client = self
                .sessions
                .get(conn.session)
                .map_or("", |s| &*s.client_id);
            tracing::info!(client, conn = %key, %limit, "client over its publish rate: not read until it is within it (further pauses counted, not logged)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(messages: u64, bytes: u64) -> CoreConfig {
        CoreConfig {
            max_publish_rate_messages_per_sec: messages,
            max_publish_rate_bytes_per_sec: bytes,
            ..CoreConfig::default()
        }
    }

    #[test]
    fn a_burst_of_one_seconds_worth_passes_then_the_rate_applies() {
        let config = config(10, 0);
        let mut stats = ShardStats::default();
        let mut gate = Gate::default();
        for n in 0..10 {
            assert_eq!(gate.charge(&config, 100, 1000, &mut stats), None, "{n}");
        }
        assert!(!gate.blocks(1000, false));
        assert_eq!(
            gate.charge(&config, 100, 1000, &mut stats),
            Some(RateLimit::Messages)
        );
        assert!(gate.blocks(1000, false));
        // One message's worth (100 ms) later the bucket has room again.
        assert!(gate.blocks(1099, false));
        assert!(!gate.blocks(1100, false));
        assert_eq!(stats.rate_paused_messages, 1);
    }

    #[test]
    fn the_byte_rate_is_charged_by_size() {
        let config = config(0, 1000);
        let mut stats = ShardStats::default();
        let mut gate = Gate::default();
        assert_eq!(gate.charge(&config, 1000, 0, &mut stats), None);
        assert_eq!(
            gate.charge(&config, 500, 0, &mut stats),
            Some(RateLimit::Bytes)
        );
        assert!(gate.blocks(499, false));
        assert!(!gate.blocks(500, false));
        assert_eq!(stats.rate_paused_bytes, 1);
    }

    #[test]
    fn holds_are_counted_and_bounded_in_time() {
        let mut gate = Gate::default();
        gate.hold(100, 1000);
        gate.hold(500, 1000);
        assert!(gate.blocks(600, false));
        assert!(!gate.blocks(600, true), "exempt connections are read");
        assert_eq!(gate.credit_until(600), 600, "not read up to now");
        gate.release();
        assert!(gate.blocks(600, false), "one subscriber still holds it");
        assert!(
            !gate.blocks(1100, false),
            "the first hold's deadline passed"
        );
        assert_eq!(gate.credit_until(2000), 1100, "not read until the deadline");
        gate.release();
        assert!(!gate.blocks(600, false));
    }

    #[test]
    fn a_hold_after_an_expired_one_starts_a_new_deadline() {
        let mut gate = Gate::default();
        gate.hold(0, 1000);
        assert!(!gate.held(1000));
        gate.hold(1500, 1000);
        assert!(gate.held(2499));
        assert!(!gate.held(2500));
    }
}
