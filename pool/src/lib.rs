//! `starling-pool`: a slab-backed, preheated, self-growing object pool.
//!
//! Every Starling connection's state is drawn from one of these pools (one per event loop)
//! instead of being built and torn down per connection. The pool knows nothing of MQTT.
//!
//! Layout:
//! - [`config`]: [`PoolConfig`], its validation ([`ConfigError`]) and the deployment-size
//!   [`Preset`]s.
//! - [`growth`]: the growth rule as pure functions: the trigger (`active >= preheated * 80 /
//!   100`), the next size (`min(preheated * 3 / 2, cap)`) and the ladder of sizes.
//! - [`pool`]: [`Pool`] itself: acquire / release / get, incremental
//!   [`Pool::preheat_step`], the idle [`Pool::sweep`], live [`Pool::reconfigure`], and the
//!   [`Poolable`] hook trait.
//! - [`key`]: generation-checked [`Key`]s ([`StaleKey`] when one outlives its object) and
//!   [`AcquireError`].
//! - [`stats`], [`health`], [`event`]: what the pool reports: [`PoolStats`] (with the reuse
//!   rate), the four-state [`Health`], and [`PoolEvent`]s for an observer, each also logged
//!   (`[POOL] Expand: 1024->1536 (trigger at 819/1024 connections)`).
//!
//! The rules, the growth tables and the measured costs are in `docs/pool.md`.
//!
//! ```
//! use starling_pool::{Pool, PoolConfig, Poolable};
//!
//! struct Conn { scratch: Vec<u8> }
//! impl Poolable for Conn {
//!     fn reset(&mut self) { self.scratch.clear() }
//! }
//!
//! let mut pool = Pool::new(PoolConfig::default(), || Conn { scratch: Vec::with_capacity(64) })?;
//! assert_eq!(pool.stats().available, 1024);
//! let key = pool.acquire()?;
//! pool.get_mut(key)?.scratch.push(1);
//! pool.release(key, 0)?;
//! assert!(pool.get(key).is_err(), "a released key is stale");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod event;
pub mod growth;
pub mod health;
pub mod key;
pub mod pool;
pub mod stats;

pub use config::{ConfigError, PoolConfig, Preset};
pub use event::{Limit, PoolEvent};
pub use health::Health;
pub use key::{AcquireError, Key, StaleKey};
pub use pool::{Pool, Poolable, Released, SweepOutcome};
pub use stats::PoolStats;
