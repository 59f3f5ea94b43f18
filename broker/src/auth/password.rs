//! Mosquitto's `password_file`: `username:hash` per line.
//! (placeholder until the parser lands)

use std::path::Path;

use crate::auth::scram::ScramCredentials;

/// A parsed password file.
#[derive(Debug, Default)]
pub struct PasswordFile {}

/// A stored hash.
#[derive(Debug)]
pub struct PasswordHash {}

impl PasswordHash {
    /// Whether `password` matches.
    pub fn verify(&self, _password: &[u8]) -> bool {
        false
    }
}

/// A malformed password file.
#[derive(Debug)]
pub struct PasswordFileError {}

impl std::fmt::Display for PasswordFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("password file")
    }
}

impl PasswordFile {
    /// Reads `path`.
    pub fn load(_path: &Path) -> Result<PasswordFile, PasswordFileError> {
        Ok(PasswordFile {})
    }
    /// `username`'s hash.
    pub fn get(&self, _username: &str) -> Option<&PasswordHash> {
        None
    }
    /// `username`'s SCRAM credentials.
    pub fn scram(&self, _username: &str) -> Option<&ScramCredentials> {
        None
    }
}
