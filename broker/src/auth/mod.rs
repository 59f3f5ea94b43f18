//! Authentication: who a client is.
//!
//! - [`password`]: Mosquitto's `password_file` (its `$6$` and `$7$` hashes, PHC `$argon2id$`
//!   strings, and Starling's SCRAM-SHA-256 verifiers), verified in constant time, and the
//!   edits `starling passwd` makes.
//! - [`scram`]: SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5 enhanced-authentication
//!   method, against the stored verifiers of the same file.
//!
//! Hashing is slow on purpose: nothing here runs on an event loop except the SCRAM steps
//! (which use stored keys: a few HMACs).

pub mod password;
pub mod scram;
