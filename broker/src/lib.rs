//! Starling, the broker.
//!
//! Layout (work in progress; see `ARCHITECTURE.md` at the repository root):
//!
//! - [`topic`]: topic-name and topic-filter validation (MQTT 3.1.1 §4.7, 5.0 §4.7),
//!   matching, and the subscription index.
//! - [`protocol`]: the codec boundary: frame checking, validation, decoding into packets and
//!   encoding them, with errors that keep "need more bytes" apart from "malformed".

pub mod core;
pub mod protocol;
pub mod topic;
