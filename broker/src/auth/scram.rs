//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5 enhanced-authentication method.

/// What the server keeps of a SCRAM-SHA-256 password (RFC 5802 §3): never the password.
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
    /// Parses a stored verifier as it appears in a password file after `user:`.
    pub fn parse(_hash: &str) -> Option<ScramCredentials> {
        None
    }
}

/// Looks up a user's SCRAM credentials.
pub type Lookup = std::sync::Arc<dyn Fn(&str) -> Option<ScramCredentials> + Send + Sync>;

/// SCRAM-SHA-256 (placeholder until the exchange lands).
pub struct ScramAuthenticator {
    _lookup: Lookup,
}

impl ScramAuthenticator {
    /// Against `lookup`.
    pub fn new(lookup: Lookup) -> ScramAuthenticator {
        ScramAuthenticator { _lookup: lookup }
    }
}

impl crate::core::Authenticator for ScramAuthenticator {
    fn method(&self) -> &str {
        "SCRAM-SHA-256"
    }
    fn begin(&self, _client_id: &str) -> Box<dyn crate::core::AuthExchange> {
        unimplemented!()
    }
}
