//! Starling, the broker.
//!
//! Layout (work in progress; see `ARCHITECTURE.md` at the repository root):
//!
//! - [`topic`]: topic-name and topic-filter validation (MQTT 3.1.1 §4.7, 5.0 §4.7),
//!   matching, and the subscription index.
//! - [`protocol`]: the codec boundary: frame checking, validation, decoding into packets and
//!   encoding them, with errors that keep "need more bytes" apart from "malformed".
//! - [`server`]: the thin mio driver: one pinned event-loop thread per core around a shard.
//! - [`cli`]: the `starling` binary's command line (flags, defaults, validation).

pub mod cli;
pub mod config;
pub mod core;
pub mod protocol;
pub mod server;
pub mod topic;
