//! What the pool tells its observer: expansions, shrinks, limits reached, health changes.
//!
//! Every event is also logged through `tracing` at `info` (health changes to overloaded or
//! unavailable at `warn`) in the form its `Display` gives, so an expansion always produces
//! one line of a fixed form: `[POOL] Expand: 1024->1536 (trigger at 819/1024 connections)`.

use std::fmt;

use crate::Health;

/// Which limit an acquisition ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Preheating has reached `max_preheated_objects`: further objects are built on demand.
    MaxPreheated,
    /// `max_live_objects` objects are active: acquisitions are refused.
    MaxLive,
}

/// One thing that happened to the pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    /// The preheated size was raised by the growth rule (objects follow in `preheat_step`s).
    Expanded {
        /// Preheated size before.
        from: usize,
        /// Preheated size after.
        to: usize,
        /// Active objects when the rule fired.
        trigger_active: usize,
    },
    /// A sweep freed idle objects and lowered the preheated size.
    Shrunk {
        /// Preheated size before.
        from: usize,
        /// Preheated size after.
        to: usize,
        /// Objects freed by this sweep.
        freed: usize,
        /// Live objects after the sweep.
        live: usize,
    },
    /// A limit was reached (edge-triggered: once per crossing, not per acquisition).
    LimitReached {
        /// Which limit.
        limit: Limit,
        /// Its value.
        value: usize,
    },
    /// The health status changed.
    HealthChanged {
        /// Status before.
        from: Health,
        /// Status now.
        to: Health,
        /// Active objects now.
        active: usize,
        /// `max_live_objects`.
        max_live: usize,
    },
}

impl fmt::Display for PoolEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PoolEvent::Expanded {
                from,
                to,
                trigger_active,
            } => write!(
                f,
                "[POOL] Expand: {from}->{to} (trigger at {trigger_active}/{from} connections)"
            ),
            PoolEvent::Shrunk {
                from,
                to,
                freed,
                live,
            } => write!(
                f,
                "[POOL] Shrink: {from}->{to} (freed {freed} idle objects, {live} live)"
            ),
            PoolEvent::LimitReached {
                limit: Limit::MaxPreheated,
                value,
            } => write!(
                f,
                "[POOL] Limit: preheating stopped at max_preheated_objects={value}; further objects are built on demand"
            ),
            PoolEvent::LimitReached {
                limit: Limit::MaxLive,
                value,
            } => write!(
                f,
                "[POOL] Limit: max_live_objects={value} reached; acquisitions are refused"
            ),
            PoolEvent::HealthChanged {
                from,
                to,
                active,
                max_live,
            } => write!(
                f,
                "[POOL] Health: {from} -> {to} ({active}/{max_live} active)"
            ),
        }
    }
}

impl PoolEvent {
    /// Logs the event through `tracing`.
    pub(crate) fn log(&self) {
        match self {
            PoolEvent::HealthChanged {
                to: Health::Overloaded | Health::Unavailable,
                ..
            }
            | PoolEvent::LimitReached {
                limit: Limit::MaxLive,
                ..
            } => tracing::warn!("{self}"),
            _ => tracing::info!("{self}"),
        }
    }
}
