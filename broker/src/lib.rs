//! Starling, the broker.
//!
//! Layout (see `ARCHITECTURE.md` at the repository root for how it fits together):
//!
//! - [`topic`]: topic-name and topic-filter validation (MQTT 3.1.1 §4.7, 5.0 §4.7),
//!   matching, the subscription index and the retained store.
//! - [`protocol`]: the codec boundary: frame checking, validation, decoding into packets and
//!   encoding them (MQTT 3.1, 3.1.1 and 5.0), with errors that keep "need more
//!   bytes" apart from "malformed" and carry their reason codes.
//! - [`core`]: the sans-IO broker, one [`core::Shard`] per event loop: sessions (MQTT 3.1.1
//!   and 5.0: expiry, delayed wills), the QoS state machines, routing (subscription options
//!   and identifiers, shared subscriptions, topic aliases, message expiry), retained
//!   messages, keep-alive. Bytes in, bytes and actions out; no sockets, no clock.
//! - [`server`]: the thin mio driver: one pinned event-loop thread per core around a shard,
//!   admission limits, signals (graceful shutdown, live reload).
//! - [`config`]: the TOML file, its validation and the resolved settings (with the value
//!   types the command line shares and the sizing arithmetic the server builds its loops
//!   to); reload diffing.
//! - [`acl`]: authorization: Mosquitto's `acl_file`, checked per topic and classified per
//!   subscription.
//! - [`auth`]: authentication: password files and their hashes, SCRAM-SHA-256.
//! - [`rlimit`]: reading and raising the open-file limit.
//! - [`cli`]: the `starling` binary's command line (flags, defaults, validation).
//! - [`manual`]: the manual pages, generated from the command line and the example
//!   configuration.

pub mod acl;
pub mod auth;
pub mod cli;
pub mod config;
pub mod core;
pub mod file_error;
pub mod manual;
pub mod monitor;
pub mod protocol;
pub mod rlimit;
pub mod server;
pub mod topic;
