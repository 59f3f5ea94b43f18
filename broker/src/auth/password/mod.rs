//! Mosquitto's `password_file`: `username:hash` per line.
//!
//! - Blank lines (empty or only spaces and tabs) and lines starting with `#` are ignored; a
//!   trailing `\r` is tolerated.
//! - The username is everything before the first `:`: non-empty, valid UTF-8, at most
//!   [`MAX_USERNAME_BYTES`] (it cannot contain `:`, and cannot start with `#`, which makes
//!   a comment). The hash is everything after it, in one of the forms of [`hash`]:
//!   `$7$` (PBKDF2-HMAC-SHA512, what `mosquitto_passwd` 2.0 writes), `$6$` (salted SHA-512,
//!   Mosquitto 1.6), PHC `$argon2id$` strings and Starling's `$scram-sha-256$` verifiers.
//! - A file with anything wrong is refused whole: [`PasswordFileError`] names the file, the
//!   1-based line and the fault (`passwords:3: unknown hash format "$5$" (accepted: …)`).
//!   Duplicate usernames, lines over [`MAX_PASSWORD_FILE_LINE_BYTES`] and hashes whose
//!   costs exceed the limits of [`hash`] (so a hostile file cannot make one verification
//!   take minutes) are faults too.
//!
//! [`PasswordFile::load`] reads a file; [`PasswordHash::verify`] checks a password (slowly,
//! on purpose, in constant time); [`hash_password`] writes a new hash; [`edit`] makes the
//! changes of `starling passwd`, keeping every other line as it was.

use std::collections::HashMap;
use std::path::Path;

use crate::auth::scram::ScramCredentials;

pub mod edit;
pub mod hash;
pub mod prompt;

pub use hash::{HashError, HashFormat, PasswordHash, hash_password, scram_verifier};

/// Longest username, in bytes: MQTT's own limit for a UTF-8 string, so any username a
/// client can send can be listed.
pub const MAX_USERNAME_BYTES: usize = 65_535;

/// Longest hash accepted after `username:`, in bytes (an Argon2id PHC string with the
/// largest salt and output is under 200).
pub const MAX_HASH_BYTES: usize = 1024;

/// Longest line of a password file, in bytes, its line ending excluded: the longest
/// username, the `:` and the longest hash.
pub const MAX_PASSWORD_FILE_LINE_BYTES: usize = MAX_USERNAME_BYTES + 1 + MAX_HASH_BYTES;

/// Why a password file was refused: `file:line: message` (`line` is 1-based; 0 when the
/// file could not be read at all).
pub type PasswordFileError = crate::file_error::FileError;

/// A parsed password file: username → stored hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: HashMap<String, PasswordHash>,
}

/// One line of a password file, as [`lines`] splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// Blank or a comment.
    Ignored,
    /// `username:hash`, the username still bytes (unchecked), `hash` `None` without a `:`.
    Entry {
        username: &'a [u8],
        hash: Option<&'a [u8]>,
    },
}

/// Splits `bytes` into lines, each without its `\n` (a `\r` before it is kept).
pub(crate) fn raw_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    (!bytes.is_empty())
        .then(|| body.split(|&b| b == b'\n'))
        .into_iter()
        .flatten()
}

/// A line without the `\r` a CRLF line ending leaves.
pub(crate) fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// What kind of line `line` (without its line ending) is.
pub(crate) fn classify(line: &[u8]) -> Line<'_> {
    if line.iter().all(|&b| b == b' ' || b == b'\t') || line.first() == Some(&b'#') {
        return Line::Ignored;
    }
    match line.iter().position(|&b| b == b':') {
        Some(colon) => Line::Entry {
            username: &line[..colon],
            hash: Some(&line[colon + 1..]),
        },
        None => Line::Entry {
            username: line,
            hash: None,
        },
    }
}

/// Checks a username for a password file: non-empty, at most [`MAX_USERNAME_BYTES`], no
/// `:`, no line break, not starting with `#`.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("empty username".to_string());
    }
    if username.len() > MAX_USERNAME_BYTES {
        return Err(format!(
            "the username is {} bytes long (at most {MAX_USERNAME_BYTES})",
            username.len()
        ));
    }
    if username.contains(':') {
        return Err("a username may not contain ':'".to_string());
    }
    if username.contains(['\n', '\r']) {
        return Err("a username may not contain a line break".to_string());
    }
    if username.starts_with('#') {
        return Err("a username may not start with '#' (it would be a comment)".to_string());
    }
    Ok(())
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        let file = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => PasswordFile::parse(&bytes, &file),
            Err(error) => Err(PasswordFileError {
                file,
                line: 0,
                message: format!("cannot read: {error}"),
            }),
        }
    }

    /// Parses the contents of a password file; `file` names it in errors. The whole file is
    /// refused at its first fault.
    pub fn parse(bytes: &[u8], file: &str) -> Result<PasswordFile, PasswordFileError> {
        let mut users: HashMap<String, PasswordHash> = HashMap::new();
        let mut first_lines: HashMap<String, usize> = HashMap::new();
        for (index, line) in raw_lines(bytes).enumerate() {
            let (number, line) = (index + 1, without_cr(line));
            let error = |message: String| PasswordFileError {
                file: file.to_string(),
                line: number,
                message,
            };
            if line.len() > MAX_PASSWORD_FILE_LINE_BYTES {
                return Err(error(format!(
                    "the line is {} bytes long (at most {MAX_PASSWORD_FILE_LINE_BYTES})",
                    line.len()
                )));
            }
            let Line::Entry { username, hash } = classify(line) else {
                continue;
            };
            let username = std::str::from_utf8(username)
                .map_err(|_| error("the username is not valid UTF-8".to_string()))?;
            let hash = hash.ok_or_else(|| error("no ':' between username and hash".to_string()))?;
            check_username(username).map_err(&error)?;
            if let Some(first) = first_lines.get(username) {
                return Err(error(format!(
                    "duplicate username \"{}\" (first on line {first})",
                    username.escape_debug()
                )));
            }
            if hash.len() > MAX_HASH_BYTES {
                return Err(error(format!(
                    "the hash is {} bytes long (at most {MAX_HASH_BYTES})",
                    hash.len()
                )));
            }
            let hash = std::str::from_utf8(hash)
                .map_err(|_| error("the hash is not valid UTF-8".to_string()))?;
            let hash = PasswordHash::parse(hash).map_err(&error)?;
            first_lines.insert(username.to_string(), number);
            users.insert(username.to_string(), hash);
        }
        Ok(PasswordFile { users })
    }

    /// The stored hash of `username`.
    pub fn get(&self, username: &str) -> Option<&PasswordHash> {
        self.users.get(username)
    }

    /// The SCRAM-SHA-256 verifier of `username`, if its hash is one.
    pub fn scram(&self, username: &str) -> Option<&ScramCredentials> {
        match self.users.get(username) {
            Some(PasswordHash::Scram(scram)) => Some(scram),
            _ => None,
        }
    }

    /// Whether `username` is listed and `password` matches its hash. Slow on purpose: keep
    /// it off the event loops.
    pub fn verify(&self, username: &str, password: &[u8]) -> bool {
        self.get(username).is_some_and(|hash| hash.verify(password))
    }

    /// The usernames, in no particular order.
    pub fn usernames(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file lists no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests;
