//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5 enhanced-authentication method, server
//! side.
//!
//! The Authentication Method is [`METHOD`] (`SCRAM-SHA-256`). The exchange (MQTT 5 §4.12):
//!
//! 1. CONNECT carries the client-first-message as Authentication Data
//!    (`n,,n=user,r=<client nonce>`).
//! 2. The server answers AUTH 0x18 with the server-first-message
//!    (`r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>`).
//! 3. The client sends AUTH 0x18 with the client-final-message
//!    (`c=biws,r=<nonce>,p=<base64 proof>`).
//! 4. The server answers CONNACK 0x00 with the server-final-message (`v=<base64 server
//!    signature>`) as Authentication Data, or refuses.
//!
//! Re-authentication (AUTH 0x19) runs the same exchange again.
//!
//! # Refusals
//!
//! - 0x87 Not authorized: the credentials are wrong (wrong proof) or the user is unknown. An
//!   unknown user is not revealed: the server answers a server-first-message with a salt
//!   derived from the user name and a per-process random key, [`DEFAULT_ITERATIONS`], and
//!   refuses at the final step exactly as for a wrong password.
//! - 0x80 Unspecified error: a SCRAM message that does not follow RFC 5802 (bad syntax,
//!   over [`MAX_SCRAM_MESSAGE_BYTES`], missing Authentication Data, channel binding
//!   requested, an authorization identity other than the user, a nonce or channel binding
//!   that does not match the first message), or no random bytes for the server nonce.
//!   The MQTT packet carrying it is well formed, so 0x81 Malformed Packet and 0x82 Protocol
//!   Error (which speak of the MQTT packet itself) would send the client looking in the
//!   wrong place; 0x86 Bad User Name or Password names the CONNECT's User Name and Password
//!   fields, which SCRAM does not use. Whether a message is malformed never depends on
//!   whether the user exists.
//!
//! # What is accepted
//!
//! - GS2 header `n,,` (no channel binding) and `y,,` (the client supports channel binding
//!   but believes the server does not: true, this server offers no `-PLUS` variant).
//!   `p=` (channel binding required) is refused.
//! - An authorization identity (`a=`) only if it is empty or equals the user name.
//! - SASLprep (RFC 4013) is not applied: ASCII printable user names and passwords are the
//!   same before and after it, and are taken as they are; non-ASCII text is passed through
//!   unnormalized (a client that normalizes it differently will fail to authenticate).
//!   Control characters in a user name are refused.
//! - User names with `=2C` (`,`) and `=3D` (`=`) escapes; any other `=` sequence is refused.
//! - Nonces of printable ASCII except `,`; the `m=` mandatory extension is refused, other
//!   extensions are ignored.
//!
//! Credentials are looked up at each exchange (the password file may be reloaded between
//! two) through a [`CredentialLookup`].

mod exchange;
mod message;
#[cfg(test)]
mod scramp_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::core::{AuthExchange, Authenticator};

pub use exchange::ScramExchange;

/// The MQTT 5 Authentication Method name this module serves.
pub const METHOD: &str = "SCRAM-SHA-256";

/// The prefix of a stored verifier (`$scram-sha-256$…`), without its `$` separators.
pub const STORED_SCHEME: &str = "scram-sha-256";

/// The fewest PBKDF2 iterations a stored verifier may have (RFC 7677 §4: at least 4096).
pub const MIN_ITERATIONS: u32 = 4096;

/// The most PBKDF2 iterations a stored verifier may have: a client must redo them at
/// every connection.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// The iterations announced for an unknown user (and a reasonable count for new
/// verifiers).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// The longest salt a stored verifier may have, in bytes.
pub const MAX_SALT_BYTES: usize = 64;

/// The length of the salt announced for an unknown user, in bytes (the usual length of a
/// generated salt, so that it does not stand out).
pub const FAKE_SALT_BYTES: usize = 16;

/// The length of a SHA-256 key (StoredKey, ServerKey, a proof), in bytes.
pub const KEY_BYTES: usize = 32;

/// The longest SCRAM message accepted from a client, in bytes.
pub const MAX_SCRAM_MESSAGE_BYTES: usize = 1024;

/// The random bytes of a server nonce (RFC 5802 asks for enough to be unpredictable; 24
/// bytes give 32 base64 characters).
pub const SERVER_NONCE_BYTES: usize = 24;

/// HMAC-SHA-256.
type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA-256 of `parts` (concatenated) under `key`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_BYTES] {
    // HMAC takes keys of any length: the error cannot happen.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; KEY_BYTES];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `data`.
fn sha256(data: &[u8]) -> [u8; KEY_BYTES] {
    Sha256::digest(data).into()
}

/// What the server keeps of a SCRAM-SHA-256 password (RFC 5802 §3): never the password.
///
/// Its textual form, as a password file holds it after `user:`, is
/// `$scram-sha-256$<iterations>$<base64 salt>$<base64 StoredKey>$<base64 ServerKey>`
/// (standard base64 with padding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// The salt.
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl ScramCredentials {
    /// Parses a stored verifier as it appears in a password file after `user:`; `None`
    /// unless it has exactly the form above, [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`]
    /// iterations (decimal digits only), a salt of 1..=[`MAX_SALT_BYTES`] bytes and keys of
    /// [`KEY_BYTES`] bytes.
    pub fn parse(hash: &str) -> Option<ScramCredentials> {
        let mut fields = hash.split('$');
        let (Some(""), Some(STORED_SCHEME)) = (fields.next(), fields.next()) else {
            return None;
        };
        let iterations = fields.next()?;
        let salt = BASE64.decode(fields.next()?).ok()?;
        let stored_key = decode_key(fields.next()?)?;
        let server_key = decode_key(fields.next()?)?;
        if fields.next().is_some()
            || iterations.is_empty()
            || !iterations.bytes().all(|b| b.is_ascii_digit())
            || salt.is_empty()
            || salt.len() > MAX_SALT_BYTES
        {
            return None;
        }
        let iterations: u32 = iterations.parse().ok()?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return None;
        }
        Some(ScramCredentials {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// The credentials of `password` with `salt` and `iterations` (RFC 5802 §3):
    /// SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations),
    /// StoredKey = SHA-256(HMAC(SaltedPassword, "Client Key")),
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    ///
    /// Slow on purpose (`iterations` HMACs): not for an event loop. The password is taken
    /// as it is (no SASLprep, see the module documentation).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> ScramCredentials {
        let salted: [u8; KEY_BYTES] =
            pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_BYTES>(password, salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramCredentials {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }

    /// The textual form [`parse`](Self::parse) reads.
    pub fn to_stored_string(&self) -> String {
        format!(
            "${STORED_SCHEME}${}${}${}${}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key),
        )
    }
}

/// A base64 key of exactly [`KEY_BYTES`] bytes.
fn decode_key(text: &str) -> Option<[u8; KEY_BYTES]> {
    BASE64.decode(text).ok()?.try_into().ok()
}

/// Finds the stored credentials of a user name (`None`: unknown user). Called once per
/// exchange, on the event loop: it must be quick (a map lookup), and may return a
/// password file's current content.
pub type CredentialLookup = Arc<dyn Fn(&str) -> Option<ScramCredentials> + Send + Sync>;

/// The SCRAM-SHA-256 [`Authenticator`]: one [`ScramExchange`] per CONNECT or
/// re-authentication, against the credentials its lookup finds.
pub struct ScramAuthenticator {
    lookup: CredentialLookup,
    /// A fixed server nonce instead of a random one (tests: the RFC 7677 vector).
    fixed_nonce: Option<Box<str>>,
}

impl ScramAuthenticator {
    /// An authenticator finding credentials with `lookup`.
    pub fn new(lookup: CredentialLookup) -> ScramAuthenticator {
        ScramAuthenticator {
            lookup,
            fixed_nonce: None,
        }
    }

    /// An authenticator whose server nonce is always `nonce` (printable ASCII without `,`):
    /// for known-answer tests only, a fixed nonce makes replays possible.
    #[cfg(test)]
    pub(crate) fn with_fixed_nonce(lookup: CredentialLookup, nonce: &str) -> ScramAuthenticator {
        ScramAuthenticator {
            lookup,
            fixed_nonce: Some(nonce.into()),
        }
    }
}

impl std::fmt::Debug for ScramAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramAuthenticator")
            .field("fixed_nonce", &self.fixed_nonce.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator for ScramAuthenticator {
    fn method(&self) -> &str {
        METHOD
    }

    fn begin(&self, _client_id: &str) -> Box<dyn AuthExchange> {
        Box::new(ScramExchange::new(
            Arc::clone(&self.lookup),
            self.fixed_nonce.clone(),
        ))
    }
}
